//! One direction of a TLS 1.3 connection's record protection: the AEAD key, the IV and the
//! sequence number (RFC 8446 §5.3). The keys come from rustls ([`ConnectionTrafficSecrets`],
//! handed out by its kernel API at the handover and at each KeyUpdate); nothing here
//! derives keys.
//!
//! The key is kept as its bytes (at most 32), and ring's key (for AES-GCM its expanded key
//! schedule and GHASH table, about 540 bytes) is built for each record from them: that
//! takes well under a microsecond, and saves about 1 KiB per idle session for the two
//! directions, which is what a session mostly is.

use ring::aead::{self, LessSafeKey, Nonce, UnboundKey};
use rustls::ConnectionTrafficSecrets;
use zeroize::Zeroize;

/// The longest key of the three suites (AES-256-GCM, ChaCha20-Poly1305).
const MAX_KEY_LEN: usize = 32;

pub(crate) struct Direction {
    aead: &'static aead::Algorithm,
    key: [u8; MAX_KEY_LEN],
    iv: [u8; aead::NONCE_LEN],
    /// The next record's sequence number: 0 for the first record under a key (§5.3).
    pub(crate) seq: u64,
}

impl Direction {
    /// A direction from rustls's secrets; `None` for a suite ring cannot run (rustls only
    /// negotiates the three AEAD suites of its ring provider, so this does not happen).
    pub(crate) fn from_secrets(seq: u64, keys: ConnectionTrafficSecrets) -> Option<Direction> {
        let (aead, key, iv) = match keys {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return None,
        };
        let iv: [u8; aead::NONCE_LEN] = iv.as_ref().try_into().ok()?;
        // rustls zeroizes `key` when it is dropped here; ring's key schedule has no
        // zeroizing Drop (ring 0.17), which we cannot change.
        Direction::new(aead, key.as_ref(), iv, seq)
    }

    pub(crate) fn new(
        aead: &'static aead::Algorithm,
        key: &[u8],
        iv: [u8; aead::NONCE_LEN],
        seq: u64,
    ) -> Option<Direction> {
        // Checks the key's length for the algorithm once, here.
        UnboundKey::new(aead, key).ok()?;
        let mut bytes = [0; MAX_KEY_LEN];
        bytes.get_mut(..key.len())?.copy_from_slice(key);
        Some(Direction {
            aead,
            key: bytes,
            iv,
            seq,
        })
    }

    /// ring's key for the next records.
    pub(crate) fn key(&self) -> Option<LessSafeKey> {
        let key = self.key.get(..self.aead.key_len())?;
        Some(LessSafeKey::new(UnboundKey::new(self.aead, key).ok()?))
    }

    /// RFC 8446 §5.3: the per-record nonce is the IV XORed with the sequence number,
    /// left-padded to the IV's length; then the sequence number moves on. `None` once the
    /// sequence number would wrap, which §5.3 forbids.
    pub(crate) fn next_nonce(&mut self) -> Option<Nonce> {
        let mut nonce = self.iv;
        for (n, s) in nonce[aead::NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        self.seq = self.seq.checked_add(1)?;
        Some(Nonce::assume_unique_for_key(nonce))
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::aead::Aad;

    /// §5.3 worked through: the nonce for seq 0 is the IV itself, for seq 1 the IV with its
    /// last byte XORed with 1, and so on; a wrapping sequence number stops the direction.
    #[test]
    fn nonces_follow_the_sequence_number() {
        let iv = [0x10u8; 12];
        let mut tx = Direction::new(&aead::AES_128_GCM, &[7; 16], iv, 0).unwrap();
        let mut rx = Direction::new(&aead::AES_128_GCM, &[7; 16], iv, 0).unwrap();
        let mut sealed = Vec::new();
        for i in 0..3u8 {
            let mut data = vec![i; 4];
            let nonce = tx.next_nonce().unwrap();
            tx.key()
                .unwrap()
                .seal_in_place_append_tag(nonce, Aad::empty(), &mut data)
                .unwrap();
            sealed.push(data);
        }
        // Opening out of order fails: each record is bound to its sequence number.
        let mut second = sealed[1].clone();
        assert!(
            rx.key()
                .unwrap()
                .open_in_place(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut second)
                .is_err()
        );
        for (i, mut data) in sealed.into_iter().enumerate() {
            let nonce = rx.next_nonce().unwrap();
            let plain = rx
                .key()
                .unwrap()
                .open_in_place(nonce, Aad::empty(), &mut data)
                .unwrap();
            assert_eq!(plain, vec![i as u8; 4]);
        }
        let mut last = Direction::new(&aead::AES_128_GCM, &[7; 16], iv, u64::MAX).unwrap();
        assert!(last.next_nonce().is_none());
    }
}
