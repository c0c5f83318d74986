//! Deriving and checking a user's stored SCRAM secrets (RFC 5802 §3).
//!
//! Passwords are SASLprep'd (RFC 4013) before they are salted, as RFC 5802 §2.2 asks, so a
//! password matches whatever Unicode normalization form the client typed it in.

use std::sync::OnceLock;

use subtle::ConstantTimeEq;

use super::{Credentials, HashAlg, ScramKeys};

/// Iteration count for new credentials: RFC 5802 §5.1 and RFC 7677 §4 both ask for at
/// least 4096.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Salt length for new credentials, in bytes.
const SALT_LEN: usize = 16;

impl Credentials {
    /// Derives the stored keys for `password` for every hash we offer.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Credentials {
        Credentials {
            salt: salt.to_vec(),
            iterations,
            sha1: ScramKeys::derive(HashAlg::Sha1, password, salt, iterations),
            sha256: ScramKeys::derive(HashAlg::Sha256, password, salt, iterations),
        }
    }

    /// Derives credentials for `password` with a fresh random 16-byte salt.
    pub fn new_random(password: &str, iterations: u32) -> Credentials {
        let mut salt = [0; SALT_LEN];
        fill_random(&mut salt);
        Self::derive(password, &salt, iterations)
    }

    /// The keys for one hash function.
    pub fn keys(&self, hash: HashAlg) -> &ScramKeys {
        match hash {
            HashAlg::Sha1 => &self.sha1,
            HashAlg::Sha256 => &self.sha256,
        }
    }

    /// Stand-in credentials for a user that does not exist (see [`fake_credentials`]): a
    /// PLAIN check against them costs what a real one does and never succeeds, so timing
    /// does not tell which accounts exist.
    pub fn unknown_user(username: &str) -> Credentials {
        fake_credentials(username)
    }

    /// Whether `password` is this user's password (for PLAIN). Recomputes the SHA-256
    /// StoredKey, so it costs one PBKDF2 run; compares in constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let candidate = ScramKeys::derive(HashAlg::Sha256, password, &self.salt, self.iterations);
        candidate.stored_key.ct_eq(&self.sha256.stored_key).into()
    }
}

impl ScramKeys {
    /// StoredKey = H(ClientKey) and ServerKey, from the password.
    pub(crate) fn derive(hash: HashAlg, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password, salt, iterations);
        ScramKeys {
            stored_key: hash.digest(&hash.client_key(&salted)),
            server_key: hash.server_key(&salted),
        }
    }
}

/// Plausible credentials for a user that does not exist, so that a SCRAM exchange for
/// an unknown name looks like one for a real account (RFC 5802 §9 asks servers not to
/// reveal which accounts exist).
///
/// The salt is keyed by a per-process secret: the same name always gets the same salt
/// (a prober sees no difference between two attempts), but nobody outside can compute
/// it and compare. Keys are random-looking; no password matches them.
pub(crate) fn fake_credentials(username: &str) -> Credentials {
    let secret = fake_secret();
    let derive =
        |hash: HashAlg, label: &str| hash.hmac(secret, format!("{label}\0{username}").as_bytes());
    let salt = derive(HashAlg::Sha256, "salt")[..SALT_LEN].to_vec();
    let keys = |hash: HashAlg| ScramKeys {
        stored_key: derive(hash, "stored-key"),
        server_key: derive(hash, "server-key"),
    };
    Credentials {
        salt,
        iterations: DEFAULT_ITERATIONS,
        sha1: keys(HashAlg::Sha1),
        sha256: keys(HashAlg::Sha256),
    }
}

fn fake_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0; 32];
        fill_random(&mut secret);
        secret
    })
}

/// Fills `buf` from the OS random number generator.
pub(crate) fn fill_random(buf: &mut [u8]) {
    // Without an OS RNG we could hand out neither salts nor nonces that are safe to use,
    // and there is nothing sensible to fall back to.
    getrandom::fill(buf).expect("the OS random number generator is available");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_password_accepts_only_the_password() {
        let creds = Credentials::derive("pencil", b"salt", 64);
        assert!(creds.verify_password("pencil"));
        assert!(!creds.verify_password("pencil "));
        assert!(!creds.verify_password("Pencil"));
        assert!(!creds.verify_password(""));
    }

    #[test]
    fn new_random_uses_a_fresh_salt() {
        let a = Credentials::new_random("pw", 16);
        let b = Credentials::new_random("pw", 16);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.sha256, b.sha256);
        assert!(a.verify_password("pw") && b.verify_password("pw"));
        assert_eq!(a.iterations, 16);
    }

    #[test]
    fn keys_have_the_hash_output_size() {
        let creds = Credentials::derive("pw", b"salt", 1);
        for hash in [HashAlg::Sha1, HashAlg::Sha256] {
            assert_eq!(creds.keys(hash).stored_key.len(), hash.output_len());
            assert_eq!(creds.keys(hash).server_key.len(), hash.output_len());
        }
        assert_eq!(creds.keys(HashAlg::Sha1), &creds.sha1);
    }

    #[test]
    fn fake_credentials_are_stable_per_name() {
        assert_eq!(fake_credentials("ghost"), fake_credentials("ghost"));
        assert_ne!(
            fake_credentials("ghost").salt,
            fake_credentials("ghost2").salt
        );
        assert_eq!(fake_credentials("ghost").salt.len(), SALT_LEN);
    }
}
