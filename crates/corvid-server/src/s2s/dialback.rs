//! Server Dialback (XEP-0220): weak identity verification through DNS, for peers whose
//! certificates do not prove their domain.
//!
//! Keys are made as XEP-0185 recommends: HMAC-SHA256 keyed with the hex SHA-256 of a
//! secret, over "receiving originating stream-id", so the authoritative server (this
//! process) can check a key without remembering it. The secret is random per process:
//! a key outlives neither a restart nor the stream it was made for.

use ring::hmac;
use sha2::{Digest, Sha256};

/// The secret behind our dialback keys. A cluster's nodes share one (`cluster/`): the
/// remote server may verify a key with any of them.
pub struct Secret(std::sync::RwLock<hmac::Key>);

impl Secret {
    pub fn random() -> Secret {
        let secret: [u8; 32] = crate::random_bytes();
        Secret::from_bytes(&secret)
    }

    pub fn from_bytes(secret: &[u8]) -> Secret {
        Secret(std::sync::RwLock::new(hmac_key(secret)))
    }

    /// Uses `secret` from now on (the cluster's, at startup, before any key was made).
    pub fn replace(&self, secret: &[u8]) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = hmac_key(secret);
    }

    fn hmac(&self) -> hmac::Key {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// XEP-0185 §3: the key `originating` sends to `receiving` on stream `stream_id`.
    pub fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        let text = format!("{receiving} {originating} {stream_id}");
        hex(hmac::sign(&self.hmac(), text.as_bytes()).as_ref())
    }

    /// Whether `key` is the one we would make (compared in constant time).
    pub fn verify(&self, receiving: &str, originating: &str, stream_id: &str, key: &str) -> bool {
        let Some(tag) = unhex(key.trim()) else {
            return false;
        };
        let text = format!("{receiving} {originating} {stream_id}");
        hmac::verify(&self.hmac(), text.as_bytes(), &tag).is_ok()
    }
}

fn hmac_key(secret: &[u8]) -> hmac::Key {
    let hex_digest = hex(&Sha256::digest(secret));
    hmac::Key::new(hmac::HMAC_SHA256, hex_digest.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 256 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected key was computed independently (Python's hmac and hashlib) from
    /// XEP-0185's recipe.
    /// Two nodes of a cluster: once both use the shared secret, each verifies the other's keys.
    #[test]
    fn a_replaced_secret_verifies_the_other_nodes_keys() {
        let (a, b) = (Secret::random(), Secret::random());
        let key = a.key("example.net", "example.com", "s1");
        assert!(!b.verify("example.net", "example.com", "s1", &key));
        a.replace(b"the cluster's");
        b.replace(b"the cluster's");
        let key = a.key("example.net", "example.com", "s1");
        assert!(b.verify("example.net", "example.com", "s1", &key));
    }

    #[test]
    fn keys_are_those_of_xep_0185() {
        let secret = Secret::from_bytes(b"s3cr3tf0rd14lb4ck");
        let key = secret.key("example.net", "example.com", "D60000229F");
        assert_eq!(
            key,
            "008c689ff366b50c63d69a3e2d2c0e0e1f8404b0118eb688a0102c87cb691bdc"
        );
        assert!(secret.verify("example.net", "example.com", "D60000229F", &key));
        assert!(!secret.verify("example.net", "example.com", "D60000229G", &key));
        assert!(!secret.verify("example.net", "example.com", "D60000229F", "zz"));
        assert!(!Secret::random().verify("example.net", "example.com", "D60000229F", &key));
    }
}
