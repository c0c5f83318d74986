//! The server side of a SCRAM exchange (RFC 5802 §5, RFC 7677) with channel binding
//! (RFC 5929 `tls-server-end-point`, RFC 9266 `tls-exporter`).
//!
//! A state machine with no I/O and no storage access: the caller feeds it the client's
//! messages, looks the user up between the first two steps, and sends back what it
//! returns. Any error ends the exchange; later calls fail too.

use std::fmt;

use subtle::ConstantTimeEq;

use super::credentials::fake_credentials;
use super::hash::xor;
use super::scram::{
    CbFlag, format_server_final, format_server_first, parse_client_final, parse_client_first,
    random_nonce, utf8,
};
use super::{Credentials, HashAlg, Mechanism, SaslError, ScramKeys};

/// The channel binding data this connection can verify; both `None` on a connection
/// without TLS.
///
/// The stream layer decides what to put here: RFC 9266 §3 allows `tls-exporter` only on
/// TLS 1.3, or TLS 1.2 with extended master secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelBindings {
    /// RFC 9266: the 32-byte exporter with label "EXPORTER-Channel-Binding" and no context.
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929 §4: the hash of the server's certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// The `cb-name` of RFC 9266 channel binding.
    pub const TLS_EXPORTER: &'static str = "tls-exporter";
    /// The `cb-name` of RFC 5929 §4 channel binding.
    pub const TLS_SERVER_END_POINT: &'static str = "tls-server-end-point";

    /// The data for channel binding type `cb_name`, if this connection has it.
    pub fn data(&self, cb_name: &str) -> Option<&[u8]> {
        match cb_name {
            Self::TLS_EXPORTER => self.tls_exporter.as_deref(),
            Self::TLS_SERVER_END_POINT => self.tls_server_end_point.as_deref(),
            _ => None,
        }
    }

    /// Whether any binding type is available, i.e. whether -PLUS mechanisms can be offered.
    pub fn any(&self) -> bool {
        self.tls_exporter.is_some() || self.tls_server_end_point.is_some()
    }
}

/// What client-first-message says about who is authenticating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFirst {
    /// The authentication identity, with `=2C`/`=3D` unescaped. Not SASLprep'd.
    pub username: String,
    /// The authorization identity, if the client asked for one; the caller decides
    /// whether `username` may act as it (else [`SaslError::InvalidAuthzid`]).
    pub authzid: Option<String>,
}

/// One server-side SCRAM exchange.
pub struct ScramServer {
    mechanism: Mechanism,
    bindings: ChannelBindings,
    plus_advertised: bool,
    /// Replaces the random server nonce, for the RFC test vectors.
    fixed_server_nonce: Option<String>,
    state: State,
}

enum State {
    AwaitingClientFirst,
    AwaitingCredentials(AfterClientFirst),
    AwaitingClientFinal(AfterServerFirst),
    /// Succeeded, failed, or used out of order.
    Finished,
}

struct AfterClientFirst {
    hash: HashAlg,
    /// GS2 header followed by channel binding data: what client-final's `c=` must be.
    cbind_input: Vec<u8>,
    client_first_bare: String,
    client_nonce: String,
    username: String,
}

struct AfterServerFirst {
    hash: HashAlg,
    cbind_input: Vec<u8>,
    nonce: String,
    /// `client-first-message-bare "," server-first-message ","`
    auth_message_prefix: String,
    keys: ScramKeys,
    /// False when `keys` are fake; the exchange then fails at the last step.
    user_exists: bool,
}

impl ScramServer {
    /// Starts an exchange for `mechanism` on a connection offering `bindings`.
    /// `plus_advertised` says whether this server offered any -PLUS mechanism, which
    /// turns a client's `y` flag into a detected downgrade (RFC 5802 §6).
    pub fn new(mechanism: Mechanism, bindings: ChannelBindings, plus_advertised: bool) -> Self {
        ScramServer {
            mechanism,
            bindings,
            plus_advertised,
            fixed_server_nonce: None,
            state: State::AwaitingClientFirst,
        }
    }

    /// Like [`ScramServer::new`], with a fixed server nonce part.
    #[cfg(test)]
    pub(crate) fn with_server_nonce(mechanism: Mechanism, server_nonce: &str) -> Self {
        let mut server = Self::new(mechanism, ChannelBindings::default(), false);
        server.fixed_server_nonce = Some(server_nonce.to_owned());
        server
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Parses client-first-message; returns who is authenticating, so the caller can
    /// look up their credentials for [`ScramServer::server_first`].
    pub fn client_first(&mut self, msg: &[u8]) -> Result<ClientFirst, SaslError> {
        let State::AwaitingClientFirst = std::mem::replace(&mut self.state, State::Finished) else {
            return Err(SaslError::MalformedRequest);
        };
        let hash = self.mechanism.hash().ok_or(SaslError::InvalidMechanism)?;
        let parsed = parse_client_first(utf8(msg)?)?;
        let mut cbind_input = parsed.gs2_raw.as_bytes().to_vec();
        cbind_input.extend_from_slice(self.channel_binding_data(&parsed.gs2.flag)?);

        self.state = State::AwaitingCredentials(AfterClientFirst {
            hash,
            cbind_input,
            client_first_bare: parsed.bare.to_owned(),
            client_nonce: parsed.nonce.to_owned(),
            username: parsed.username.clone(),
        });
        Ok(ClientFirst {
            username: parsed.username,
            authzid: parsed.gs2.authzid,
        })
    }

    /// The channel binding data the client must have used, given its GS2 flag: none for
    /// plain SCRAM, the connection's data of the named type for -PLUS.
    fn channel_binding_data(&self, flag: &CbFlag) -> Result<&[u8], SaslError> {
        match (flag, self.mechanism.is_plus()) {
            // A type we cannot verify (or a connection without TLS) is RFC 5802's
            // "unsupported-channel-binding-type" server-error.
            (CbFlag::Binding(name), true) => {
                self.bindings.data(name).ok_or(SaslError::NotAuthorized)
            }
            // RFC 5802 §6: "p" is only valid with -PLUS, and -PLUS requires "p".
            (CbFlag::Binding(_), false) | (_, true) => Err(SaslError::MalformedRequest),
            // RFC 5802 §6: "y" means the client could have bound but saw no -PLUS offer;
            // if we did offer one, someone removed it on the way.
            (CbFlag::ClientOnly, false) if self.plus_advertised => Err(SaslError::NotAuthorized),
            (CbFlag::ClientOnly | CbFlag::NotSupported, false) => Ok(&[]),
        }
    }

    /// Returns server-first-message, given the stored credentials of the user named in
    /// client-first-message, or `None` if there is no such user. An unknown user gets
    /// made-up credentials that stay the same across attempts, so the exchange does not
    /// reveal which accounts exist; it fails with NotAuthorized at
    /// [`ScramServer::client_final`].
    ///
    /// Called out of order it returns an empty message and the exchange fails.
    pub fn server_first(&mut self, creds: Option<&Credentials>) -> Vec<u8> {
        let State::AwaitingCredentials(first) = std::mem::replace(&mut self.state, State::Finished)
        else {
            return Vec::new();
        };
        let user_exists = creds.is_some();
        let fake;
        let creds = match creds {
            Some(creds) => creds,
            None => {
                fake = fake_credentials(&first.username);
                &fake
            }
        };
        let server_nonce = self.fixed_server_nonce.take().unwrap_or_else(random_nonce);
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format_server_first(&nonce, &creds.salt, creds.iterations);

        self.state = State::AwaitingClientFinal(AfterServerFirst {
            hash: first.hash,
            cbind_input: first.cbind_input,
            auth_message_prefix: format!("{},{server_first},", first.client_first_bare),
            nonce,
            keys: creds.keys(first.hash).clone(),
            user_exists,
        });
        server_first.into_bytes()
    }

    /// Verifies client-final-message: the channel binding, the nonce, and the proof.
    /// Returns server-final-message (`v=…`) on success.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<Vec<u8>, SaslError> {
        let State::AwaitingClientFinal(expected) =
            std::mem::replace(&mut self.state, State::Finished)
        else {
            return Err(SaslError::MalformedRequest);
        };
        let parsed = parse_client_final(utf8(msg)?)?;
        if !bool::from(parsed.cbind_input.ct_eq(&expected.cbind_input)) {
            return Err(SaslError::NotAuthorized);
        }
        if parsed.nonce != expected.nonce {
            return Err(SaslError::NotAuthorized);
        }
        if parsed.proof.len() != expected.hash.output_len() {
            return Err(SaslError::MalformedRequest);
        }

        // RFC 5802 §3: recover ClientKey from the proof and check it against StoredKey.
        let hash = expected.hash;
        let auth_message = format!("{}{}", expected.auth_message_prefix, parsed.without_proof);
        let client_signature = hash.hmac(&expected.keys.stored_key, auth_message.as_bytes());
        let client_key = xor(&parsed.proof, &client_signature);
        let proof_ok = hash.digest(&client_key).ct_eq(&expected.keys.stored_key);
        if !bool::from(proof_ok & subtle::Choice::from(u8::from(expected.user_exists))) {
            return Err(SaslError::NotAuthorized);
        }
        let server_signature = hash.hmac(&expected.keys.server_key, auth_message.as_bytes());
        Ok(format_server_final(&server_signature).into_bytes())
    }
}

impl fmt::Debug for ScramServer {
    // Hand-written so that stored keys never end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.state {
            State::AwaitingClientFirst => "awaiting client-first",
            State::AwaitingCredentials(_) => "awaiting credentials",
            State::AwaitingClientFinal(_) => "awaiting client-final",
            State::Finished => "finished",
        };
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .field("step", &step)
            .finish_non_exhaustive()
    }
}
