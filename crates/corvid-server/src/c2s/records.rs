//! TLS 1.3 application data after the handshake, without rustls's connection state.
//!
//! rustls keeps about 8 KiB per connection for as long as it lives: a 4 KiB receive buffer
//! that is never freed, its handshake and state machine allocations, and buffers of queued
//! records. An idle XMPP session needs none of it, only the two traffic keys. So once a
//! TLS 1.3 handshake is done (rustls does all of it, and computes the channel bindings),
//! the keys are taken out of rustls (`dangerous_extract_secrets`, the kTLS interface) and
//! records are protected here, RFC 8446 §5.2–5.3, with ring's AEAD: about 1 KiB per
//! session, and no buffer at all while idle.
//!
//! For the handover to be exact, rustls must not have read past the handshake: during it
//! the socket is read one record at a time ([`HandshakeIo`]). TLS 1.2 sessions, and any
//! session where the handover's conditions do not hold, stay with rustls.
//!
//! After the handshake only application data, alerts and KeyUpdate (RFC 8446 §4.6.3) may
//! arrive. rustls hands out the current keys but not the traffic secrets the next keys
//! derive from, so each connection's config logs them to a [`TrafficSecrets`] of its own.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use std::sync::Mutex;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use rustls::{ConnectionTrafficSecrets, ProtocolVersion, ServerConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// RFC 8446 §5.1 record header: type, legacy version, length.
const HEADER_LEN: usize = 5;
const TAG_LEN: usize = 16;
/// RFC 8446 §5.1: at most 2^14 bytes of plaintext per record.
const MAX_PLAINTEXT: usize = 1 << 14;
/// RFC 8446 §5.2: the ciphertext may exceed the plaintext limit by at most 256 bytes.
const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
const MAX_RECORD: usize = HEADER_LEN + MAX_CIPHERTEXT;

const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
/// RFC 8446 §4: handshake type key_update, and its one-byte body.
const KEY_UPDATE: u8 = 24;
const UPDATE_NOT_REQUESTED: u8 = 0;
const UPDATE_REQUESTED: u8 = 1;
/// RFC 8446 §6: alert level warning, description close_notify.
const CLOSE_NOTIFY: [u8; 2] = [1, 0];

thread_local! {
    /// Ciphertext being read: one record left over from the last read plus one read.
    static CIPHERTEXT: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; 2 * MAX_RECORD].into_boxed_slice());
}

/// The TCP stream under a TLS handshake, read so that rustls never holds a partial record:
/// each read stops at the end of the current record's header or body.
pub struct HandshakeIo {
    tcp: TcpStream,
    /// Bytes of the current record's header seen so far.
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Bytes of the current record's body still to come.
    body_left: usize,
    /// Once the connection stays with rustls, reads are no longer cut at records.
    passthrough: bool,
}

impl HandshakeIo {
    pub fn new(tcp: TcpStream) -> Self {
        HandshakeIo {
            tcp,
            header: [0; HEADER_LEN],
            header_len: 0,
            body_left: 0,
            passthrough: false,
        }
    }

    fn at_record_boundary(&self) -> bool {
        self.header_len == 0 && self.body_left == 0
    }

    /// How much the next read may take without passing the end of a header or body.
    fn read_limit(&self) -> usize {
        if self.header_len < HEADER_LEN {
            HEADER_LEN - self.header_len
        } else {
            self.body_left
        }
    }

    fn account(&mut self, mut read: &[u8]) {
        while !read.is_empty() {
            if self.header_len < HEADER_LEN {
                let take = read.len().min(HEADER_LEN - self.header_len);
                self.header[self.header_len..self.header_len + take].copy_from_slice(&read[..take]);
                self.header_len += take;
                read = &read[take..];
                if self.header_len == HEADER_LEN {
                    self.body_left =
                        usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                    if self.body_left == 0 {
                        self.header_len = 0;
                    }
                }
            } else {
                let take = read.len().min(self.body_left);
                self.body_left -= take;
                read = &read[take..];
                if self.body_left == 0 {
                    self.header_len = 0;
                }
            }
        }
    }
}

impl AsyncRead for HandshakeIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.passthrough {
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        }
        let limit = this.read_limit().min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(limit));
        ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        this.account(limited.filled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HandshakeIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// One connection's TLS 1.3 application traffic secrets, as rustls logs them during the
/// handshake (its `KeyLog` interface, given to this connection's config only).
#[derive(Debug, Default)]
pub struct TrafficSecrets {
    client: Mutex<Option<Vec<u8>>>,
    server: Mutex<Option<Vec<u8>>>,
}

impl rustls::KeyLog for TrafficSecrets {
    fn will_log(&self, label: &str) -> bool {
        matches!(label, "CLIENT_TRAFFIC_SECRET_0" | "SERVER_TRAFFIC_SECRET_0")
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let slot = match label {
            "CLIENT_TRAFFIC_SECRET_0" => &self.client,
            "SERVER_TRAFFIC_SECRET_0" => &self.server,
            _ => return,
        };
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(secret.to_vec());
    }
}

impl TrafficSecrets {
    fn take(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let take =
            |slot: &Mutex<Option<Vec<u8>>>| slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        (take(&self.client), take(&self.server))
    }
}

/// One direction's key, IV and sequence number (RFC 8446 §5.3), and the traffic secret the
/// next key derives from.
struct Direction {
    key: LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
    aead: &'static aead::Algorithm,
    hkdf: hkdf::Algorithm,
    secret: Vec<u8>,
}

/// An output length for ring's HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// RFC 8446 §7.1 HKDF-Expand-Label with an empty context.
fn expand_label(
    hkdf: hkdf::Algorithm,
    secret: &[u8],
    label: &[u8],
    len: usize,
) -> io::Result<Vec<u8>> {
    let prk = hkdf::Prk::new_less_safe(hkdf, secret);
    let length = (len as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    let mut out = vec![0; len];
    prk.expand(&info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| invalid("TLS key derivation failed"))?;
    Ok(out)
}

impl Direction {
    fn new(
        seq: u64,
        keys: ConnectionTrafficSecrets,
        hkdf: hkdf::Algorithm,
        secret: Vec<u8>,
    ) -> Option<Direction> {
        let (aead, key, iv) = match keys {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return None,
        };
        let key = LessSafeKey::new(UnboundKey::new(aead, key.as_ref()).ok()?);
        Some(Direction {
            key,
            iv: iv.as_ref().try_into().ok()?,
            seq,
            aead,
            hkdf,
            secret,
        })
    }

    /// RFC 8446 §7.2: the next generation of traffic secret, key and IV.
    fn update(&mut self) -> io::Result<()> {
        let secret = expand_label(self.hkdf, &self.secret, b"traffic upd", self.secret.len())?;
        let key = expand_label(self.hkdf, &secret, b"key", self.aead.key_len())?;
        let iv = expand_label(self.hkdf, &secret, b"iv", aead::NONCE_LEN)?;
        let key =
            UnboundKey::new(self.aead, &key).map_err(|_| invalid("TLS key derivation failed"))?;
        self.key = LessSafeKey::new(key);
        self.iv = iv
            .try_into()
            .map_err(|_| invalid("TLS key derivation failed"))?;
        self.seq = 0;
        self.secret = secret;
        Ok(())
    }

    /// The per-record nonce: the IV XORed with the padded sequence number; then the next.
    fn next_nonce(&mut self) -> io::Result<Nonce> {
        let mut nonce = self.iv;
        for (n, s) in nonce[aead::NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        // RFC 8446 §5.3: a sequence number must never wrap.
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| invalid("TLS sequence number exhausted"))?;
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A TLS 1.3 connection after its handshake: the socket and the two traffic keys.
pub struct Records {
    tcp: TcpStream,
    rx: Direction,
    tx: Direction,
    /// Decrypted application data not read yet: what rustls decrypted before the
    /// handover, or the rest of a large read.
    plain: Vec<u8>,
    /// An incomplete record left from the last read (empty, unallocated, while idle).
    partial: Vec<u8>,
    /// Sealed records not yet written (empty, unallocated, while idle).
    out: Vec<u8>,
    /// The client sent close_notify.
    closed: bool,
    /// We sent close_notify.
    close_sent: bool,
}

/// What a finished handshake becomes.
pub enum Secured {
    /// TLS 1.3, taken over from rustls.
    Records(Box<Records>),
    /// Left with rustls: TLS 1.2, or the handover would not have been exact.
    Rustls(Box<TlsStream<HandshakeIo>>),
    /// The keys could not be extracted (a bug): the connection must end.
    Failed,
}

/// Takes a finished TLS 1.3 handshake over from rustls, or leaves it there when the
/// handover cannot be exact (TLS 1.2, data already buffered in rustls).
pub fn take_over(tls: TlsStream<HandshakeIo>, secrets: &TrafficSecrets) -> Secured {
    let mut tls = Box::new(tls);
    let (io, conn) = tls.get_mut();
    let hkdf = conn
        .negotiated_cipher_suite()
        .and_then(|s| match s.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            | rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => Some(hkdf::HKDF_SHA256),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => Some(hkdf::HKDF_SHA384),
            _ => None,
        });
    let (client_secret, server_secret) = secrets.take();
    let exact = conn.protocol_version() == Some(ProtocolVersion::TLSv1_3)
        && hkdf.is_some()
        && client_secret.is_some()
        && server_secret.is_some()
        && !conn.is_handshaking()
        && !conn.wants_write()
        && io.at_record_boundary();
    if !exact {
        io.passthrough = true;
        return Secured::Rustls(tls);
    }
    let (io, mut conn) = tls.into_inner();
    // The handshake reads on until the socket is drained, so the client's first records
    // (its stream header, often sent with its Finished) may already be decrypted.
    let early = match drain_plaintext(&mut conn) {
        Ok(early) => early,
        Err(_) => return Secured::Failed,
    };
    // Secret extraction only fails if the config did not enable it or the suite is not an
    // AEAD one; both were ruled out, so a failure here is a bug, and the connection ends.
    let secrets = conn.dangerous_extract_secrets().ok();
    let directions = match (secrets, hkdf, client_secret, server_secret) {
        (Some(s), Some(hkdf), Some(client), Some(server)) => {
            Direction::new(s.rx.0, s.rx.1, hkdf, client)
                .zip(Direction::new(s.tx.0, s.tx.1, hkdf, server))
        }
        _ => None,
    };
    let Some((rx, tx)) = directions else {
        tracing::error!("TLS secret extraction failed after the handshake");
        return Secured::Failed;
    };
    Secured::Records(Box::new(Records {
        tcp: io.tcp,
        rx,
        tx,
        plain: early,
        partial: Vec::new(),
        out: Vec::new(),
        closed: false,
        close_sent: false,
    }))
}

/// The application data rustls has already decrypted.
fn drain_plaintext(conn: &mut ServerConnection) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut early = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match conn.reader().read(&mut chunk) {
            Ok(0) => return Ok(early),
            Ok(n) => early.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(early),
            Err(e) => return Err(e),
        }
    }
}

impl Records {
    /// Reads and decrypts what the socket has into `into` (replacing its contents), at
    /// most `max` bytes of it at a time so the caller's rate limit sees input in small
    /// steps, as from a plain socket. `Ok(0)` is the end of the stream.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut Vec<u8>,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        let max = max.max(1);
        if self.plain.is_empty() {
            ready!(self.poll_read_records(cx, into))?;
            if into.len() > max {
                self.plain = into.split_off(max);
            }
            return Poll::Ready(Ok(into.len()));
        }
        into.clear();
        let take = self.plain.len().min(max);
        into.extend_from_slice(&self.plain[..take]);
        self.plain.drain(..take);
        if self.plain.is_empty() {
            self.plain = Vec::new();
        }
        Poll::Ready(Ok(take))
    }

    fn poll_read_records(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        into.clear();
        CIPHERTEXT.with_borrow_mut(|buf| {
            loop {
                if self.closed {
                    return Poll::Ready(Ok(0));
                }
                let kept = self.partial.len();
                buf[..kept].copy_from_slice(&self.partial);
                let mut read = ReadBuf::new(&mut buf[kept..kept + MAX_RECORD]);
                match Pin::new(&mut self.tcp).poll_read(cx, &mut read) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                let n = read.filled().len();
                if n == 0 {
                    // RFC 8446 §6.1: a stream cut without close_notify may be truncated; for
                    // XMPP, whose own closing tag says whether the stream ended cleanly, an EOF
                    // between records is just the end.
                    return Poll::Ready(if kept == 0 {
                        Ok(0)
                    } else {
                        Err(invalid("TLS record cut off"))
                    });
                }
                let used = self.open_records(&mut buf[..kept + n], into)?;
                self.partial.clear();
                self.partial.extend_from_slice(&buf[used..kept + n]);
                if self.partial.is_empty() {
                    self.partial = Vec::new();
                }
                if !into.is_empty() {
                    return Poll::Ready(Ok(into.len()));
                }
            }
        })
    }

    /// Decrypts every complete record at the start of `data`; returns how many bytes they took.
    fn open_records(&mut self, data: &mut [u8], into: &mut Vec<u8>) -> io::Result<usize> {
        let mut pos = 0;
        while data.len() - pos >= HEADER_LEN {
            let header: [u8; HEADER_LEN] = data[pos..pos + HEADER_LEN]
                .try_into()
                .expect("five bytes were checked");
            // RFC 8446 §5.2: protected records all say application_data outside.
            if header[0] != CONTENT_APPLICATION_DATA {
                return Err(invalid("unexpected TLS record type after the handshake"));
            }
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if !(TAG_LEN + 1..=MAX_CIPHERTEXT).contains(&len) {
                return Err(invalid("TLS record of an impossible size"));
            }
            if data.len() - pos < HEADER_LEN + len {
                break;
            }
            let body = &mut data[pos + HEADER_LEN..pos + HEADER_LEN + len];
            let nonce = self.rx.next_nonce()?;
            let plain = self
                .rx
                .key
                .open_in_place(nonce, Aad::from(header), body)
                .map_err(|_| invalid("TLS record failed authentication"))?;
            // RFC 8446 §5.4: the content type is the last non-zero byte; zeros are padding.
            let Some(end) = plain.iter().rposition(|&b| b != 0) else {
                return Err(invalid("TLS record without content type"));
            };
            if end > MAX_PLAINTEXT {
                return Err(invalid("TLS record overflow"));
            }
            match plain[end] {
                CONTENT_APPLICATION_DATA => into.extend_from_slice(&plain[..end]),
                CONTENT_ALERT if plain[..end] == CLOSE_NOTIFY => {
                    self.closed = true;
                    return Ok(pos + HEADER_LEN + len);
                }
                CONTENT_ALERT => return Err(invalid("TLS alert from the client")),
                CONTENT_HANDSHAKE => self.key_update(&plain[..end])?,
                _ => return Err(invalid("unexpected TLS content type")),
            }
            pos += HEADER_LEN + len;
        }
        Ok(pos)
    }

    /// RFC 8446 §4.6.3: the client's next records use new keys; if it asks, ours do too,
    /// announced by our own KeyUpdate before our next record. Only a record holding exactly
    /// one KeyUpdate is accepted (no other handshake message is expected after the handshake).
    fn key_update(&mut self, message: &[u8]) -> io::Result<()> {
        let request = match message {
            [
                KEY_UPDATE,
                0,
                0,
                1,
                request @ (UPDATE_NOT_REQUESTED | UPDATE_REQUESTED),
            ] => *request,
            _ => {
                return Err(invalid(
                    "unexpected TLS handshake message after the handshake",
                ));
            }
        };
        self.rx.update()?;
        if request == UPDATE_REQUESTED {
            self.seal(
                CONTENT_HANDSHAKE,
                &[KEY_UPDATE, 0, 0, 1, UPDATE_NOT_REQUESTED],
            )?;
            self.tx.update()?;
        }
        Ok(())
    }

    /// Seals `data` as records of `content_type` onto the output queue.
    fn seal(&mut self, content_type: u8, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(MAX_PLAINTEXT) {
            let len = chunk.len() + 1 + TAG_LEN;
            let header = [CONTENT_APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
            self.out.reserve(HEADER_LEN + len);
            self.out.extend_from_slice(&header);
            let start = self.out.len();
            self.out.extend_from_slice(chunk);
            self.out.push(content_type);
            let nonce = self.tx.next_nonce()?;
            let tag = self
                .tx
                .key
                .seal_in_place_separate_tag(nonce, Aad::from(header), &mut self.out[start..])
                .map_err(|_| invalid("TLS record could not be sealed"))?;
            self.out.extend_from_slice(tag.as_ref());
        }
        Ok(())
    }

    /// Writes queued records until none is left or the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        // Nothing is kept for an idle session.
        self.out = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Records {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.seal(CONTENT_APPLICATION_DATA, buf)?;
        // The data is sealed and queued, so it is accepted whether or not the socket takes
        // it now; `poll_flush` finishes the job.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            // RFC 8446 §6.1: close_notify before closing the write side.
            this.seal(CONTENT_ALERT, &CLOSE_NOTIFY)?;
            this.close_sent = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
