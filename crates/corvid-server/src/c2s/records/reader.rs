//! The record reader: opens a stream of TLS 1.3 records (RFC 8446 §5.1–5.4) with one
//! direction's key and says what they carried. No I/O and no key schedule: the caller reads
//! the socket, and gives the next key when a KeyUpdate arrives. Kept apart so a fuzz target
//! and a randomized test can drive the same code a connection runs.

use rustls::AlertDescription;

use super::direction::Direction;
use super::{
    CONTENT_ALERT, CONTENT_APPLICATION_DATA, CONTENT_HANDSHAKE, HEADER_LEN, MAX_CIPHERTEXT,
    MAX_PLAINTEXT, TAG_LEN,
};

/// RFC 8446 §5.4: the whole TLSInnerPlaintext (content, type and padding) is at most
/// 2^14 + 1 bytes.
const MAX_INNER_PLAINTEXT: usize = MAX_PLAINTEXT + 1;
/// Records in a row that carry nothing for the session (empty or padding-only application
/// data, KeyUpdate, user_canceled): as rustls (after BoringSSL), at most 32.
pub(crate) const MAX_CONTENTLESS_IN_A_ROW: u8 = 32;
/// RFC 8446 §4: handshake type key_update.
const KEY_UPDATE: u8 = 24;
/// RFC 8446 §6: the alert descriptions the client may send without ending the connection.
const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;

/// Why the records cannot be read on: the fatal alert we owe the client (RFC 8446 §6.2),
/// or the alert it sent us.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("TLS record refused ({alert:?}): {what}")]
    Refused {
        alert: AlertDescription,
        what: &'static str,
    },
    #[error("TLS alert from the client: {0:?}")]
    AlertReceived(AlertDescription),
}

impl RecordError {
    fn refused(alert: AlertDescription, what: &'static str) -> RecordError {
        RecordError::Refused { alert, what }
    }

    pub(crate) fn internal(what: &'static str) -> RecordError {
        RecordError::refused(AlertDescription::InternalError, what)
    }

    /// The alert to send; none in answer to the client's own alert.
    pub(crate) fn alert_to_send(&self) -> Option<AlertDescription> {
        match self {
            RecordError::Refused { alert, .. } => Some(*alert),
            RecordError::AlertReceived(_) => None,
        }
    }
}

/// What [`Reader::open_records`] did with a buffer.
pub(crate) struct Opened {
    /// Bytes taken: complete records; the rest is an incomplete record.
    pub(crate) used: usize,
    /// A KeyUpdate among them asked for ours (RFC 8446 §4.6.3).
    pub(crate) update_requested: bool,
}

/// One record's content.
enum Content<'a> {
    /// Application data, possibly empty (RFC 8446 §5.4 allows that).
    Data(&'a [u8]),
    /// A handshake message or a fragment of one.
    Handshake(&'a [u8]),
    CloseNotify,
    /// Something that changes nothing (user_canceled).
    Nothing,
}

/// RFC 8446 §4.6.3: a KeyUpdate is 5 bytes: type, 3-byte length (1), request.
const KEY_UPDATE_LEN: usize = 5;

/// The client's direction of one connection, and what its records may still do.
pub(crate) struct Reader {
    rx: Direction,
    /// Records in a row that carried nothing.
    contentless: u8,
    /// The start of a KeyUpdate split across records (RFC 8446 §5.1 lets a handshake
    /// message span records): its bytes so far.
    fragment: [u8; KEY_UPDATE_LEN],
    fragment_len: usize,
    /// The client sent close_notify: nothing after it is read.
    pub(crate) closed: bool,
}

/// The length of the record at the start of `data`, once it has all arrived; checks the
/// header as soon as it is there, so an impossible record is refused before its body is
/// waited for (RFC 8446 §5.1, §5.2).
pub(crate) fn record_len(data: &[u8]) -> Result<Option<usize>, RecordError> {
    let Some(header) = data.get(..HEADER_LEN) else {
        return Ok(None);
    };
    // RFC 8446 §5: after the handshake every record says application_data outside; a
    // change_cipher_spec or a plaintext alert is refused.
    if header[0] != CONTENT_APPLICATION_DATA {
        return Err(RecordError::refused(
            AlertDescription::UnexpectedMessage,
            "unprotected TLS record after the handshake",
        ));
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len > MAX_CIPHERTEXT {
        return Err(RecordError::refused(
            AlertDescription::RecordOverflow,
            "TLS record longer than 2^14 + 256",
        ));
    }
    Ok((data.len() >= HEADER_LEN + len).then_some(HEADER_LEN + len))
}

impl Reader {
    pub(crate) fn new(rx: Direction) -> Reader {
        Reader {
            rx,
            contentless: 0,
            fragment: [0; KEY_UPDATE_LEN],
            fragment_len: 0,
            closed: false,
        }
    }

    /// Opens every complete record at the start of `data`, appending application data to
    /// `into`; `next_key` gives the client's next key after a KeyUpdate. Stops after a
    /// close_notify.
    pub(crate) fn open_records(
        &mut self,
        data: &mut [u8],
        into: &mut Vec<u8>,
        next_key: &mut dyn FnMut() -> Result<Direction, RecordError>,
    ) -> Result<Opened, RecordError> {
        let mut used = 0;
        let mut update_requested = false;
        while !self.closed
            && let Some(len) = record_len(&data[used..])?
        {
            let record = &mut data[used..used + len];
            used += len;
            let content = open(&mut self.rx, record)?;
            // RFC 8446 §5.1: a handshake message split across records may not be
            // interleaved with records of another type.
            if self.fragment_len > 0 && !matches!(content, Content::Handshake(_)) {
                return Err(RecordError::refused(
                    AlertDescription::UnexpectedMessage,
                    "TLS record inside a split handshake message",
                ));
            }
            match content {
                Content::Data(data) if !data.is_empty() => {
                    self.contentless = 0;
                    into.extend_from_slice(data);
                }
                Content::Data(_) | Content::Nothing => self.count_contentless()?,
                Content::Handshake(fragment) => {
                    self.count_contentless()?;
                    if let Some(requested) = self.key_update_fragment(fragment)? {
                        self.rx = next_key()?;
                        update_requested |= requested;
                    }
                }
                Content::CloseNotify => self.closed = true,
            }
        }
        Ok(Opened {
            used,
            update_requested,
        })
    }

    /// Adds a handshake record's content to the KeyUpdate being received; once it is
    /// whole, says whether it requests ours.
    fn key_update_fragment(&mut self, fragment: &[u8]) -> Result<Option<bool>, RecordError> {
        let have = self.fragment_len;
        if have + fragment.len() < KEY_UPDATE_LEN {
            self.fragment[have..have + fragment.len()].copy_from_slice(fragment);
            self.fragment_len += fragment.len();
            // Only the start of a KeyUpdate may wait for the rest.
            if self.fragment[..self.fragment_len] != [KEY_UPDATE, 0, 0, 1][..self.fragment_len] {
                return key_update(&self.fragment[..self.fragment_len]).map(|_| None);
            }
            return Ok(None);
        }
        let mut message = [0u8; KEY_UPDATE_LEN + 1];
        let whole: &[u8] = if have == 0 {
            fragment
        } else {
            let take = fragment.len().min(KEY_UPDATE_LEN + 1 - have);
            message[..have].copy_from_slice(&self.fragment[..have]);
            message[have..have + take].copy_from_slice(&fragment[..take]);
            &message[..have + take]
        };
        self.fragment_len = 0;
        key_update(whole).map(Some)
    }

    fn count_contentless(&mut self) -> Result<(), RecordError> {
        self.contentless += 1;
        if self.contentless > MAX_CONTENTLESS_IN_A_ROW {
            return Err(RecordError::refused(
                AlertDescription::UnexpectedMessage,
                "too many TLS records without content in a row",
            ));
        }
        Ok(())
    }
}

/// Decrypts one whole record (header and body) in place and says what it holds.
fn open<'a>(rx: &mut Direction, record: &'a mut [u8]) -> Result<Content<'a>, RecordError> {
    let (header, body) = record.split_at_mut(HEADER_LEN);
    if body.len() < TAG_LEN {
        return Err(RecordError::refused(
            AlertDescription::BadRecordMac,
            "TLS record shorter than its tag",
        ));
    }
    let nonce = rx
        .next_nonce()
        .ok_or_else(|| RecordError::internal("TLS sequence number exhausted"))?;
    let aad = ring::aead::Aad::from(&*header);
    // RFC 8446 §5.2: a record that fails authentication ends the connection with
    // bad_record_mac.
    let key = rx
        .key()
        .ok_or_else(|| RecordError::internal("TLS key unusable"))?;
    let inner = key.open_in_place(nonce, aad, body).map_err(|_| {
        RecordError::refused(
            AlertDescription::BadRecordMac,
            "TLS record failed authentication",
        )
    })?;
    if inner.len() > MAX_INNER_PLAINTEXT {
        return Err(RecordError::refused(
            AlertDescription::RecordOverflow,
            "TLS inner plaintext longer than 2^14 + 1",
        ));
    }
    // RFC 8446 §5.4: the content type is the last non-zero byte; zeros after it are padding.
    let Some(end) = inner.iter().rposition(|&b| b != 0) else {
        return Err(RecordError::refused(
            AlertDescription::UnexpectedMessage,
            "TLS record without content type",
        ));
    };
    let (content, content_type) = (&inner[..end], inner[end]);
    match content_type {
        CONTENT_APPLICATION_DATA => Ok(Content::Data(content)),
        CONTENT_ALERT => alert(content),
        // RFC 8446 §5.4: no zero-length handshake fragments.
        CONTENT_HANDSHAKE if content.is_empty() => Err(RecordError::refused(
            AlertDescription::UnexpectedMessage,
            "empty TLS handshake record",
        )),
        CONTENT_HANDSHAKE => Ok(Content::Handshake(content)),
        _ => Err(RecordError::refused(
            AlertDescription::UnexpectedMessage,
            "unexpected TLS content type after the handshake",
        )),
    }
}

/// RFC 8446 §6: an alert is two bytes, level then description. In TLS 1.3 the level can be
/// ignored; close_notify ends the client's side, user_canceled changes nothing, anything
/// else is an error alert and ends the connection.
fn alert(content: &[u8]) -> Result<Content<'_>, RecordError> {
    match content {
        [_, CLOSE_NOTIFY] => Ok(Content::CloseNotify),
        [_, USER_CANCELED] => Ok(Content::Nothing),
        [_, other] => Err(RecordError::AlertReceived(AlertDescription::from(*other))),
        _ => Err(RecordError::refused(
            AlertDescription::DecodeError,
            "malformed TLS alert",
        )),
    }
}

/// RFC 8446 §4.6.3: after the handshake the only handshake message a server accepts is
/// KeyUpdate, alone in its record (§5.1: a key change must line up with a record's end).
/// The request byte must be 0 or 1 (else illegal_parameter); a wrong length is a
/// decode_error; any other message (a ClientHello trying to renegotiate, a
/// NewSessionTicket, an empty fragment) is unexpected.
fn key_update(content: &[u8]) -> Result<bool, RecordError> {
    match content {
        [KEY_UPDATE, 0, 0, 1, request] => match request {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError::refused(
                AlertDescription::IllegalParameter,
                "KeyUpdate with an unknown request",
            )),
        },
        [KEY_UPDATE, a, b, c, ..] if [*a, *b, *c] == [0, 0, 1] => Err(RecordError::refused(
            AlertDescription::UnexpectedMessage,
            "KeyUpdate not alone in its record",
        )),
        [KEY_UPDATE, _, _, _, ..] => Err(RecordError::refused(
            AlertDescription::DecodeError,
            "KeyUpdate of the wrong length",
        )),
        _ => Err(RecordError::refused(
            AlertDescription::UnexpectedMessage,
            "unexpected TLS handshake message after the handshake",
        )),
    }
}

/// The fuzz target's body (and the randomized test's): `data` is a record stream read in
/// pieces whose sizes the input also chooses, by the reader with a fixed AES-128-GCM key.
/// The first byte picks how many of the following bytes are sealed as records by the test
/// itself (so the fuzzer gets past authentication); the rest is raw.
pub(crate) fn fuzz(data: &[u8]) {
    use super::MAX_RECORD;
    const KEY: [u8; 16] = [0x42; 16];
    const IV: [u8; 12] = [0x24; 12];
    let new_direction = || Direction::new(&ring::aead::AES_128_GCM, &KEY, IV, 0);
    let (Some(rx), Some(mut tx)) = (new_direction(), new_direction()) else {
        return;
    };
    let mut stream = Vec::new();
    let (control, rest) = data.split_first().unwrap_or((&0, &[]));
    // Sealed records: each takes a length byte and that many bytes as inner plaintext.
    let mut rest = rest;
    for _ in 0..*control % 16 {
        let Some((&len, tail)) = rest.split_first() else {
            break;
        };
        let (inner, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        let mut body = inner.to_vec();
        let len = body.len() + TAG_LEN;
        let header = [CONTENT_APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        let (Some(key), Some(nonce)) = (tx.key(), tx.next_nonce()) else {
            return;
        };
        let Ok(tag) =
            key.seal_in_place_separate_tag(nonce, ring::aead::Aad::from(header), &mut body)
        else {
            return;
        };
        stream.extend_from_slice(&header);
        stream.extend_from_slice(&body);
        stream.extend_from_slice(tag.as_ref());
        if inner.starts_with(&[KEY_UPDATE, 0, 0, 1]) {
            // Mirrors the reader's key change (the "next key" here is the same key, anew).
            match new_direction() {
                Some(next) => tx = next,
                None => return,
            }
        }
    }
    stream.extend_from_slice(rest);
    let mut reader = Reader::new(rx);
    let mut partial: Vec<u8> = Vec::new();
    let mut into = Vec::new();
    // Read in pieces of a size taken from the control byte, as a socket would deliver.
    let step = usize::from(*control / 16).max(1) * 97;
    for piece in stream.chunks(step) {
        let mut buf = partial.clone();
        buf.extend_from_slice(piece);
        assert!(buf.len() <= 2 * MAX_RECORD, "one record left plus one read");
        match reader.open_records(&mut buf, &mut into, &mut || {
            new_direction().ok_or_else(|| RecordError::internal("key"))
        }) {
            Ok(opened) => partial = buf[opened.used..].to_vec(),
            Err(_) => return,
        }
        if reader.closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's body on deterministic pseudo-random inputs, so CI runs the record
    /// reader on hostile streams even where cargo-fuzz is not available: it must not panic.
    /// Half the inputs start with well-formed records (sealed with the fixed key, whose
    /// inner plaintext is random: padding, types, KeyUpdates, alerts), half are raw noise.
    #[test]
    fn the_reader_survives_random_record_streams() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for round in 0..3000 {
            let len = (next() % 2048) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = data.first_mut() {
                *first = if round % 2 == 0 {
                    *first | 0x0f
                } else {
                    *first & 0xf0
                };
            }
            // Sprinkle the bytes that matter: content types, KeyUpdate, alert codes.
            for _ in 0..len / 16 {
                let at = (next() as usize) % len.max(1);
                if let Some(b) = data.get_mut(at) {
                    *b = [0, 1, 2, 21, 22, 23, 24, 90][(next() % 8) as usize];
                }
            }
            fuzz(&data);
        }
    }

    /// A record sealed as the fuzz harness seals them (fixed key, header as AAD) is opened:
    /// the harness's records get past authentication, so fuzzing explores the content.
    #[test]
    fn a_record_sealed_like_the_harness_does_is_opened() {
        const KEY: [u8; 16] = [0x42; 16];
        const IV: [u8; 12] = [0x24; 12];
        let mut tx = Direction::new(&ring::aead::AES_128_GCM, &KEY, IV, 0).unwrap();
        let rx = Direction::new(&ring::aead::AES_128_GCM, &KEY, IV, 0).unwrap();
        let mut body = b"hi\x17".to_vec();
        let header = [CONTENT_APPLICATION_DATA, 3, 3, 0, 19];
        let nonce = tx.next_nonce().unwrap();
        let tag = tx
            .key()
            .unwrap()
            .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(header), &mut body)
            .unwrap();
        let mut record = [&header[..], &body, tag.as_ref()].concat();
        let mut reader = Reader::new(rx);
        let mut into = Vec::new();
        let opened = reader
            .open_records(&mut record, &mut into, &mut || {
                Err(RecordError::internal("no key update here"))
            })
            .unwrap();
        assert_eq!((opened.used, &into[..]), (24, &b"hi"[..]));
    }
}
