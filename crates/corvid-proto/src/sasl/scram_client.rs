//! The client side of a SCRAM exchange (RFC 5802 §5), used by the SDK, the load
//! generator and tests.
//!
//! Like the server side, it does no I/O: the caller sends what it returns and feeds it
//! the server's replies. Deriving the salted password (PBKDF2, RFC 5802 §2.2 `Hi`) is by
//! far the costliest step, so server-first can be handled in two halves:
//! [`ScramClient::read_server_first`] says what to derive ([`SaltedPasswordParams`]) and
//! [`ScramClient::client_final`] takes the result, which a caller logging in many accounts
//! that share a password may have cached.

use std::fmt;

use subtle::ConstantTimeEq;

use super::hash::{HashAlg, xor};
use super::scram::{
    CbFlag, Gs2Header, escape_saslname, format_client_final, format_client_final_without_proof,
    is_cb_name, parse_server_final, parse_server_first, random_nonce, utf8,
};
use super::{Mechanism, SaslError};

/// One client-side SCRAM exchange.
pub struct ScramClient {
    mechanism: Mechanism,
    username: String,
    password: String,
    gs2_header: String,
    cb_data: Vec<u8>,
    /// Set when `new` was given a combination that cannot work; reported by
    /// [`ScramClient::read_server_first`].
    misuse: Option<SaslError>,
    client_nonce: String,
    /// Set by [`ScramClient::client_first`].
    client_first_bare: Option<String>,
    /// server-first-message and the combined nonce, set by [`ScramClient::read_server_first`].
    server_first: Option<(String, String)>,
    /// Set by [`ScramClient::client_final`]; what server-final must prove.
    expected_server_signature: Option<Vec<u8>>,
}

/// What `SaltedPassword := Hi(Normalize(password), salt, i)` (RFC 5802 §3) is derived
/// from for one exchange, as server-first-message gives it. The same password with the
/// same parameters always yields the same salted password.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SaltedPasswordParams {
    pub hash: HashAlg,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl SaltedPasswordParams {
    /// Hi(password, salt, i): PBKDF2, CPU work worth keeping off an async runtime's threads.
    pub fn derive(&self, password: &str) -> Vec<u8> {
        self.hash
            .salted_password(password, &self.salt, self.iterations)
    }
}

impl ScramClient {
    /// Starts an exchange as `username` with `password` (SASLprep'd when salted).
    ///
    /// `binding` is the channel binding type and data of this connection, if it has one.
    /// A -PLUS mechanism needs it; a plain SCRAM mechanism given one sends the `y` flag,
    /// telling the server we could have bound (RFC 5802 §6), so that a server which did
    /// offer -PLUS detects the downgrade. A -PLUS mechanism without a binding, or PLAIN,
    /// makes [`ScramClient::handle_server_first`] (and `read_server_first`) fail with
    /// InvalidMechanism.
    pub fn new(
        mechanism: Mechanism,
        username: &str,
        password: &str,
        binding: Option<(String, Vec<u8>)>,
    ) -> Self {
        let (flag, cb_data, misuse) = match (mechanism.hash(), mechanism.is_plus(), binding) {
            (None, _, _) => (
                CbFlag::NotSupported,
                Vec::new(),
                Some(SaslError::InvalidMechanism),
            ),
            (Some(_), true, Some((name, data))) if is_cb_name(&name) => {
                (CbFlag::Binding(name), data, None)
            }
            (Some(_), true, _) => (
                CbFlag::NotSupported,
                Vec::new(),
                Some(SaslError::InvalidMechanism),
            ),
            (Some(_), false, Some(_)) => (CbFlag::ClientOnly, Vec::new(), None),
            (Some(_), false, None) => (CbFlag::NotSupported, Vec::new(), None),
        };
        ScramClient {
            mechanism,
            username: username.to_owned(),
            password: password.to_owned(),
            gs2_header: Gs2Header {
                flag,
                authzid: None,
            }
            .format(),
            cb_data,
            misuse,
            client_nonce: random_nonce(),
            client_first_bare: None,
            server_first: None,
            expected_server_signature: None,
        }
    }

    /// Replaces the random client nonce, for the RFC test vectors.
    #[cfg(test)]
    pub(crate) fn with_nonce(mut self, nonce: &str) -> Self {
        self.client_nonce = nonce.to_owned();
        self
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// client-first-message, the initial response of `<auth/>`.
    pub fn client_first(&mut self) -> Vec<u8> {
        let bare = format!(
            "n={},r={}",
            escape_saslname(&self.username),
            self.client_nonce
        );
        let msg = format!("{}{bare}", self.gs2_header);
        self.client_first_bare = Some(bare);
        msg.into_bytes()
    }

    /// Checks server-first-message and returns client-final-message with our proof,
    /// deriving the salted password: [`read_server_first`](Self::read_server_first) then
    /// [`client_final`](Self::client_final).
    pub fn handle_server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, SaslError> {
        let params = self.read_server_first(msg)?;
        let salted = params.derive(&self.password);
        self.client_final(&salted)
    }

    /// Checks server-first-message and returns what the salted password is derived from,
    /// for [`client_final`](Self::client_final).
    pub fn read_server_first(&mut self, msg: &[u8]) -> Result<SaltedPasswordParams, SaslError> {
        if let Some(misuse) = self.misuse {
            return Err(misuse);
        }
        let hash = self.mechanism.hash().ok_or(SaslError::InvalidMechanism)?;
        if self.client_first_bare.is_none() {
            return Err(SaslError::MalformedRequest);
        }
        let server_first_msg = utf8(msg)?;
        let server_first = parse_server_first(server_first_msg)?;
        // RFC 5802 §5.1: the server must extend our nonce, not replace it.
        let nonce = server_first.nonce;
        if nonce.len() <= self.client_nonce.len() || !nonce.starts_with(&self.client_nonce) {
            return Err(SaslError::NotAuthorized);
        }
        self.server_first = Some((server_first_msg.to_owned(), nonce.to_owned()));
        Ok(SaltedPasswordParams {
            hash,
            salt: server_first.salt,
            iterations: server_first.iterations,
        })
    }

    /// client-final-message with our proof, from the salted password of this exchange's
    /// [`SaltedPasswordParams`] (derived with [`SaltedPasswordParams::derive`], or cached).
    pub fn client_final(&mut self, salted_password: &[u8]) -> Result<Vec<u8>, SaslError> {
        let hash = self.mechanism.hash().ok_or(SaslError::InvalidMechanism)?;
        let (Some(bare), Some((server_first_msg, nonce))) =
            (&self.client_first_bare, &self.server_first)
        else {
            return Err(SaslError::MalformedRequest);
        };
        if salted_password.len() != hash.output_len() {
            return Err(SaslError::MalformedRequest);
        }
        let client_key = hash.client_key(salted_password);
        let stored_key = hash.digest(&client_key);
        let server_key = hash.server_key(salted_password);

        let mut cbind_input = self.gs2_header.as_bytes().to_vec();
        cbind_input.extend_from_slice(&self.cb_data);
        let without_proof = format_client_final_without_proof(&cbind_input, nonce);
        let auth_message = format!("{bare},{server_first_msg},{without_proof}");
        let client_signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);

        self.expected_server_signature = Some(hash.hmac(&server_key, auth_message.as_bytes()));
        Ok(format_client_final(&without_proof, &proof).into_bytes())
    }

    /// Checks that server-final-message proves the server knows our credentials
    /// (RFC 5802 §3 ServerSignature). Authentication is only complete if this succeeds.
    pub fn verify_server_final(&self, msg: &[u8]) -> Result<(), SaslError> {
        let expected = self
            .expected_server_signature
            .as_ref()
            .ok_or(SaslError::NotAuthorized)?;
        let signature = parse_server_final(utf8(msg)?)?;
        if signature.ct_eq(expected).into() {
            Ok(())
        } else {
            Err(SaslError::NotAuthorized)
        }
    }
}

impl fmt::Debug for ScramClient {
    // Hand-written so that the password never ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;

    use super::*;
    use crate::sasl::{ChannelBindings, Credentials, ScramServer};

    /// RFC 5802 §5 and RFC 7677 §3: (mechanism, client nonce, salt, the four messages).
    const VECTORS: [(Mechanism, &str, &str, [&str; 4]); 2] = [
        (
            Mechanism::ScramSha1,
            "fyko+d2lbbFgONRv9qkxdawL",
            "QSXCR+Q6sek8bf92",
            [
                "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
            ],
        ),
        (
            Mechanism::ScramSha256,
            "rOprNGfwEbeRWgbNEkqO",
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            [
                "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                 p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            ],
        ),
    ];

    #[test]
    fn the_two_halves_reproduce_the_rfc_vectors() {
        for (mechanism, nonce, salt, [first, server_first, client_final, server_final]) in VECTORS {
            let mut client = ScramClient::new(mechanism, "user", "pencil", None).with_nonce(nonce);
            assert_eq!(client.client_first(), first.as_bytes());
            let params = client.read_server_first(server_first.as_bytes()).unwrap();
            assert_eq!(
                params,
                SaltedPasswordParams {
                    hash: mechanism.hash().unwrap(),
                    salt: BASE64.decode(salt).unwrap(),
                    iterations: 4096,
                }
            );
            let salted = params.derive("pencil");
            assert_eq!(
                client.client_final(&salted).unwrap(),
                client_final.as_bytes()
            );
            assert_eq!(client.verify_server_final(server_final.as_bytes()), Ok(()));
        }
    }

    #[test]
    fn a_cached_salted_password_gives_the_same_messages() {
        for (mechanism, nonce, _, [_, server_first, _, server_final]) in VECTORS {
            let mut deriving =
                ScramClient::new(mechanism, "user", "pencil", None).with_nonce(nonce);
            deriving.client_first();
            let expected = deriving
                .handle_server_first(server_first.as_bytes())
                .unwrap();

            let mut client = ScramClient::new(mechanism, "user", "pencil", None).with_nonce(nonce);
            client.client_first();
            let params = client.read_server_first(server_first.as_bytes()).unwrap();
            // As a cache filled by an earlier exchange would hold it.
            let cached = params.clone().derive("pencil");
            assert_eq!(client.client_final(&cached).unwrap(), expected);
            assert_eq!(client.verify_server_final(server_final.as_bytes()), Ok(()));
        }
    }

    /// Logs in to Corvid's server side three times with one derivation of the salted password.
    #[test]
    fn one_derivation_serves_many_logins() {
        let creds = Credentials::derive("pencil", b"one-salt-for-all", 64);
        let mut cache: Option<(SaltedPasswordParams, Vec<u8>)> = None;
        let mut derivations = 0;
        for _ in 0..3 {
            let mechanism = Mechanism::ScramSha256;
            let mut server = ScramServer::new(mechanism, ChannelBindings::default(), false);
            let mut client = ScramClient::new(mechanism, "user", "pencil", None);
            server.client_first(&client.client_first()).unwrap();
            let params = client
                .read_server_first(&server.server_first(Some(&creds)))
                .unwrap();
            let salted = match &cache {
                Some((cached, salted)) if *cached == params => salted.clone(),
                _ => {
                    derivations += 1;
                    let salted = params.derive("pencil");
                    cache = Some((params, salted.clone()));
                    salted
                }
            };
            let server_final = server
                .client_final(&client.client_final(&salted).unwrap())
                .unwrap();
            assert_eq!(client.verify_server_final(&server_final), Ok(()));
        }
        assert_eq!(derivations, 1);
    }

    #[test]
    fn a_wrong_salted_password_is_not_authorized() {
        let creds = Credentials::derive("pencil", b"salt", 64);
        let mut server =
            ScramServer::new(Mechanism::ScramSha256, ChannelBindings::default(), false);
        let mut client = ScramClient::new(Mechanism::ScramSha256, "user", "pencil", None);
        server.client_first(&client.client_first()).unwrap();
        let params = client
            .read_server_first(&server.server_first(Some(&creds)))
            .unwrap();
        let stale = params.derive("old password");
        let client_final = client.client_final(&stale).unwrap();
        assert_eq!(
            server.client_final(&client_final),
            Err(SaslError::NotAuthorized)
        );
    }

    #[test]
    fn client_final_needs_server_first_and_a_salted_password_of_the_right_size() {
        let (mechanism, nonce, _, [_, server_first, _, _]) = VECTORS[0];
        let mut client = ScramClient::new(mechanism, "user", "pencil", None).with_nonce(nonce);
        client.client_first();
        assert_eq!(
            client.client_final(&[0; 20]),
            Err(SaslError::MalformedRequest)
        );
        client.read_server_first(server_first.as_bytes()).unwrap();
        assert_eq!(
            client.client_final(&[0; 32]),
            Err(SaslError::MalformedRequest)
        );
        assert!(client.client_final(&[0; 20]).is_ok());
    }
}
