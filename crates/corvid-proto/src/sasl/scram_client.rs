//! The client side of a SCRAM exchange (RFC 5802 §5), used by the SDK and by tests.
//!
//! Like the server side, it does no I/O: the caller sends what it returns and feeds it
//! the server's replies.

use std::fmt;

use subtle::ConstantTimeEq;

use super::hash::xor;
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
    /// [`ScramClient::handle_server_first`].
    misuse: Option<SaslError>,
    client_nonce: String,
    /// Set by [`ScramClient::client_first`].
    client_first_bare: Option<String>,
    /// Set by [`ScramClient::handle_server_first`]; what server-final must prove.
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts an exchange as `username` with `password` (used as given; no SASLprep).
    ///
    /// `binding` is the channel binding type and data of this connection, if it has one.
    /// A -PLUS mechanism needs it; a plain SCRAM mechanism given one sends the `y` flag,
    /// telling the server we could have bound (RFC 5802 §6), so that a server which did
    /// offer -PLUS detects the downgrade. A -PLUS mechanism without a binding, or PLAIN,
    /// makes [`ScramClient::handle_server_first`] fail with InvalidMechanism.
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

    /// Checks server-first-message and returns client-final-message with our proof.
    pub fn handle_server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, SaslError> {
        if let Some(misuse) = self.misuse {
            return Err(misuse);
        }
        let hash = self.mechanism.hash().ok_or(SaslError::InvalidMechanism)?;
        let bare = self
            .client_first_bare
            .as_ref()
            .ok_or(SaslError::MalformedRequest)?;
        let server_first_msg = utf8(msg)?;
        let server_first = parse_server_first(server_first_msg)?;
        // RFC 5802 §5.1: the server must extend our nonce, not replace it.
        let nonce = server_first.nonce;
        if nonce.len() <= self.client_nonce.len() || !nonce.starts_with(&self.client_nonce) {
            return Err(SaslError::NotAuthorized);
        }

        let salted = hash.salted_password(
            self.password.as_bytes(),
            &server_first.salt,
            server_first.iterations,
        );
        let client_key = hash.client_key(&salted);
        let stored_key = hash.digest(&client_key);
        let server_key = hash.server_key(&salted);

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
