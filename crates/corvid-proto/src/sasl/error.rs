//! Why a SASL exchange failed, as the RFC 6120 §6.5 failure conditions.
//!
//! Every mechanism reports failures as one of these, so the stream layer can put the
//! element name from [`SaslError::condition`] straight into `<failure/>`.

/// A SASL failure condition (RFC 6120 §6.5).
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslError {
    /// The initiating entity aborted the exchange (§6.5.1).
    #[error("authentication aborted")]
    Aborted,
    /// The account has been disabled (§6.5.2).
    #[error("account disabled")]
    AccountDisabled,
    /// The credentials have expired (§6.5.3).
    #[error("credentials expired")]
    CredentialsExpired,
    /// The mechanism needs an encrypted stream (§6.5.4).
    #[error("encryption required")]
    EncryptionRequired,
    /// Base64 data in the exchange could not be decoded (§6.5.5).
    #[error("incorrect base64 encoding")]
    IncorrectEncoding,
    /// The authorization identity is malformed or not permitted (§6.5.6).
    #[error("invalid authorization identity")]
    InvalidAuthzid,
    /// The mechanism is unknown or was not offered (§6.5.7).
    #[error("invalid mechanism")]
    InvalidMechanism,
    /// A message of the exchange does not follow the mechanism's syntax (§6.5.8).
    #[error("malformed request")]
    MalformedRequest,
    /// The mechanism is weaker than server policy allows (§6.5.9).
    #[error("mechanism too weak")]
    MechanismTooWeak,
    /// The credentials are wrong, or a security check (nonce, channel binding) failed
    /// (§6.5.10).
    #[error("not authorized")]
    NotAuthorized,
    /// A temporary error on the receiving side; the client may retry (§6.5.11).
    #[error("temporary authentication failure")]
    TemporaryAuthFailure,
}

impl SaslError {
    /// The child element name of `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`.
    pub fn condition(&self) -> &'static str {
        match self {
            Self::Aborted => "aborted",
            Self::AccountDisabled => "account-disabled",
            Self::CredentialsExpired => "credentials-expired",
            Self::EncryptionRequired => "encryption-required",
            Self::IncorrectEncoding => "incorrect-encoding",
            Self::InvalidAuthzid => "invalid-authzid",
            Self::InvalidMechanism => "invalid-mechanism",
            Self::MalformedRequest => "malformed-request",
            Self::MechanismTooWeak => "mechanism-too-weak",
            Self::NotAuthorized => "not-authorized",
            Self::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SaslError;

    #[test]
    fn conditions_are_rfc6120_element_names() {
        assert_eq!(SaslError::NotAuthorized.condition(), "not-authorized");
        assert_eq!(SaslError::MalformedRequest.condition(), "malformed-request");
        assert_eq!(
            SaslError::IncorrectEncoding.condition(),
            "incorrect-encoding"
        );
        assert_eq!(
            SaslError::TemporaryAuthFailure.condition(),
            "temporary-auth-failure"
        );
        assert_eq!(SaslError::InvalidAuthzid.condition(), "invalid-authzid");
    }
}
