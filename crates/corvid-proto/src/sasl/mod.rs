//! SASL mechanisms (RFC 4422) for both sides of the stream: SCRAM-SHA-1/-256 and their
//! -PLUS variants (RFC 5802, RFC 7677, RFC 9266 channel binding), and PLAIN (RFC 4616).
//!
//! Everything here is pure computation: no I/O, no storage. The stream layer decodes the
//! outer base64 of `<auth/>`/`<response/>`, feeds the bytes to [`ScramServer`] or
//! [`parse_plain`], looks credentials up itself, and maps a [`SaslError`] to `<failure/>`
//! with [`SaslError::condition`].
//!
//! Usernames and passwords are not SASLprep'd (RFC 4013); they are used as the UTF-8
//! given, which is exact for ASCII.

mod credentials;
mod error;
mod hash;
mod mechanism;
mod plain;
mod scram;
mod scram_client;
mod scram_server;
#[cfg(test)]
mod scram_tests;

pub use credentials::DEFAULT_ITERATIONS;
pub use error::SaslError;
pub use hash::HashAlg;
pub use mechanism::Mechanism;
pub use plain::{PlainCredentials, encode_plain, parse_plain};
pub use scram_client::{SaltedPasswordParams, ScramClient};
pub use scram_server::{ChannelBindings, ClientFirst, ScramServer};

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
