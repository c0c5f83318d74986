//! SASL mechanisms (RFC 4422) for both sides of the stream: SCRAM-SHA-1/-256 and their
//! -PLUS variants (RFC 5802, RFC 7677, RFC 9266 channel binding), and PLAIN (RFC 4616).

/// A user's stored secrets: SCRAM salted keys for every hash we offer, never the password.
///
/// Both hashes share one salt and iteration count, so one password change updates all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

/// StoredKey and ServerKey for one hash function (RFC 5802 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys {
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}
