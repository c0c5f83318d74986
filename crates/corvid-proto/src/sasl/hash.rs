//! The hash functions behind SCRAM and the three primitives RFC 5802 §2.2 builds on
//! them: H, HMAC and Hi (PBKDF2).

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The hash function of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha1,
    Sha256,
}

impl HashAlg {
    /// Output size in bytes; also the size of every SCRAM key and proof.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// H(data).
    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => hmac_of::<Hmac<Sha1>>(key, data),
            Self::Sha256 => hmac_of::<Hmac<Sha256>>(key, data),
        }
    }

    /// SaltedPassword = Hi(Normalize(password), salt, iterations) (RFC 5802 §3): PBKDF2
    /// with HMAC-H and one output block, over the SASLprep'd password.
    pub(crate) fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let password = normalize(password);
        let password = password.as_bytes();
        let mut out = vec![0; self.output_len()];
        match self {
            Self::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            Self::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
        }
        out
    }

    /// ClientKey = HMAC(SaltedPassword, "Client Key").
    pub(crate) fn client_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.hmac(salted_password, b"Client Key")
    }

    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    pub(crate) fn server_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.hmac(salted_password, b"Server Key")
    }
}

fn hmac_of<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `a XOR b` for equal-length keys, proofs and signatures.
pub(crate) fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Normalize(str) of RFC 5802 §2.2: SASLprep (RFC 4013). A password SASLprep refuses
/// (prohibited or unassigned characters) is used as given, on both sides alike, rather than
/// refused: what matters is that client and server derive the same bytes.
pub(crate) fn normalize(password: &str) -> std::borrow::Cow<'_, str> {
    if password.is_ascii() && password.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        // Printable ASCII without spaces is its own SASLprep.
        return std::borrow::Cow::Borrowed(password);
    }
    stringprep::saslprep(password).unwrap_or(std::borrow::Cow::Borrowed(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_len_matches_digest() {
        for h in [HashAlg::Sha1, HashAlg::Sha256] {
            assert_eq!(h.digest(b"x").len(), h.output_len());
            assert_eq!(h.hmac(b"k", b"x").len(), h.output_len());
            assert_eq!(h.salted_password("p", b"s", 1).len(), h.output_len());
        }
    }

    #[test]
    fn pbkdf2_sha1_matches_rfc6070() {
        // RFC 6070 test case 2: P = "password", S = "salt", c = 2.
        let dk = HashAlg::Sha1.salted_password("password", b"salt", 2);
        let expected = [
            0xea, 0x6c, 0x01, 0x4d, 0xc7, 0x2d, 0x6f, 0x8c, 0xcd, 0x1e, 0xd9, 0x2a, 0xce, 0x1d,
            0x41, 0xf0, 0xd8, 0xde, 0x89, 0x57,
        ];
        assert_eq!(dk, expected);
    }

    #[test]
    fn passwords_are_saslprepped() {
        // RFC 4013 §3 examples: soft hyphen mapped to nothing, NFKC, non-ASCII space to space.
        assert_eq!(normalize("I\u{AD}X"), "IX");
        assert_eq!(normalize("\u{AA}"), "a");
        assert_eq!(normalize("a\u{A0}b"), "a b");
        assert_eq!(normalize("user"), "user");
        // Prohibited (a control character): used as given.
        assert_eq!(normalize("a\u{7}b"), "a\u{7}b");
        let h = HashAlg::Sha256;
        assert_eq!(
            h.salted_password("I\u{AD}X", b"s", 2),
            h.salted_password("IX", b"s", 2)
        );
        assert_ne!(
            h.salted_password("IX", b"s", 2),
            h.salted_password("ix", b"s", 2)
        );
    }
}
