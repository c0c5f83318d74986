//! Incremental UTF-8 validation of a byte stream that arrives in chunks.
//!
//! rxml checks UTF-8 only when a token (a text run, an attribute value) is
//! complete, which for a long token can be hundreds of kilobytes later. XMPP
//! streams are UTF-8 only (RFC 6120 §11.6), so the framer checks every byte
//! as it is consumed and rejects garbage at once, e.g. a peer speaking a
//! binary protocol at the XML port.

/// Validates consecutive chunks as one UTF-8 byte sequence.
#[derive(Debug, Default)]
pub(crate) struct Utf8Validator {
    /// The start of a character cut by the previous chunk's end.
    partial: [u8; 4],
    partial_len: usize,
}

impl Utf8Validator {
    /// Whether no character is cut off at the end of the last chunk.
    pub(crate) fn is_clean(&self) -> bool {
        self.partial_len == 0
    }

    /// Checks the next chunk; on error returns the first byte of the invalid
    /// sequence.
    pub(crate) fn check(&mut self, mut chunk: &[u8]) -> Result<(), u8> {
        if self.partial_len > 0 {
            chunk = self.complete_partial(chunk)?;
            if self.partial_len > 0 {
                return Ok(());
            }
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) => {
                let tail = &chunk[e.valid_up_to()..];
                if e.error_len().is_some() {
                    return Err(tail.first().copied().unwrap_or_default());
                }
                // An incomplete character at the end: at most 3 bytes.
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len();
                Ok(())
            }
        }
    }

    /// Feeds bytes to the cut character; returns the rest of `chunk`.
    fn complete_partial<'a>(&mut self, chunk: &'a [u8]) -> Result<&'a [u8], u8> {
        let needed = sequence_len(self.partial[0]).saturating_sub(self.partial_len);
        let take = needed.min(chunk.len());
        self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&chunk[..take]);
        self.partial_len += take;
        match std::str::from_utf8(&self.partial[..self.partial_len]) {
            Ok(_) => self.partial_len = 0,
            Err(e) if e.error_len().is_some() => return Err(self.partial[e.valid_up_to()]),
            // Still incomplete: `chunk` was shorter than the missing bytes.
            Err(_) => {}
        }
        Ok(&chunk[take..])
    }
}

/// Length of the sequence a (valid) lead byte starts.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split(bytes: &[u8]) -> Vec<bool> {
        (0..=bytes.len())
            .map(|split| {
                let mut v = Utf8Validator::default();
                v.check(&bytes[..split]).is_ok() && v.check(&bytes[split..]).is_ok()
            })
            .collect()
    }

    #[test]
    fn valid_text_passes_at_every_split() {
        let text = "aé中😀z".as_bytes();
        assert!(check_split(text).into_iter().all(|ok| ok));
        let mut v = Utf8Validator::default();
        for byte in text {
            assert_eq!(v.check(std::slice::from_ref(byte)), Ok(()));
        }
    }

    #[test]
    fn invalid_bytes_fail_at_every_split() {
        for bad in [
            &b"a\xffb"[..],
            b"\xc3\x28",
            b"\xe2\x28\xa1",
            b"\xf0\x9f\x98\x41",
            b"\xed\xa0\x80",
        ] {
            assert!(check_split(bad).into_iter().all(|ok| !ok), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_continuation_fails_before_the_character_could_end() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.check(b"\xf0"), Ok(()));
        assert_eq!(v.check(b"\x41"), Err(0xf0));
    }
}
