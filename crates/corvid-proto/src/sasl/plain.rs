//! PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, for clients that cannot do
//! SCRAM. Only safe over TLS; the server checks the password with
//! [`Credentials::verify_password`](super::Credentials::verify_password).

use std::fmt;

use super::SaslError;

/// The parts of a PLAIN message.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The authorization identity; `None` when the client sent none (empty).
    pub authzid: Option<String>,
    /// The authentication identity (`authcid`).
    pub username: String,
    pub password: String,
}

/// Parses a PLAIN message. Exactly two NULs, a non-empty username and password, and
/// valid UTF-8 throughout; anything else is MalformedRequest.
pub fn parse_plain(msg: &[u8]) -> Result<PlainCredentials, SaslError> {
    let mut fields = msg.split(|&b| b == 0);
    let (Some(authzid), Some(username), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::MalformedRequest);
    };
    if username.is_empty() || password.is_empty() {
        return Err(SaslError::MalformedRequest);
    }
    let text =
        |field: &[u8]| String::from_utf8(field.to_vec()).map_err(|_| SaslError::MalformedRequest);
    Ok(PlainCredentials {
        authzid: if authzid.is_empty() {
            None
        } else {
            Some(text(authzid)?)
        },
        username: text(username)?,
        password: text(password)?,
    })
}

/// Builds a PLAIN message, for clients.
pub fn encode_plain(authzid: Option<&str>, username: &str, password: &str) -> Vec<u8> {
    let authzid = authzid.unwrap_or_default();
    let mut msg = Vec::with_capacity(authzid.len() + username.len() + password.len() + 2);
    msg.extend_from_slice(authzid.as_bytes());
    msg.push(0);
    msg.extend_from_slice(username.as_bytes());
    msg.push(0);
    msg.extend_from_slice(password.as_bytes());
    msg
}

impl fmt::Debug for PlainCredentials {
    // Hand-written so that the password never ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_authzid() {
        let creds = parse_plain(b"\0juliet\0r0m30myr0m30").unwrap();
        assert_eq!(creds.authzid, None);
        assert_eq!(creds.username, "juliet");
        assert_eq!(creds.password, "r0m30myr0m30");

        let creds = parse_plain("admin@example.org\0jürgen\0pässword".as_bytes()).unwrap();
        assert_eq!(creds.authzid.as_deref(), Some("admin@example.org"));
        assert_eq!(creds.username, "jürgen");
        assert_eq!(creds.password, "pässword");
    }

    #[test]
    fn rejects_malformed_messages() {
        for bad in [
            &b""[..],
            b"juliet",
            b"\0juliet",
            b"\0\0password",
            b"\0juliet\0",
            b"\0juliet\0pass\0",
            b"\0\0juliet\0pass",
            b"a\0b\0c\0d",
            b"\0jul\xffiet\0pass",
            b"\0juliet\0pa\xc3",
            b"\xc3\0juliet\0pass",
        ] {
            assert_eq!(
                parse_plain(bad),
                Err(SaslError::MalformedRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn encode_round_trips() {
        let msg = encode_plain(Some("authz"), "user", "pw");
        assert_eq!(msg, b"authz\0user\0pw");
        let creds = parse_plain(&msg).unwrap();
        assert_eq!(
            creds,
            PlainCredentials {
                authzid: Some("authz".into()),
                username: "user".into(),
                password: "pw".into()
            }
        );
        assert_eq!(encode_plain(None, "user", "pw"), b"\0user\0pw");
    }

    #[test]
    fn debug_hides_the_password() {
        let creds = parse_plain(b"\0juliet\0secret-pw").unwrap();
        assert!(!format!("{creds:?}").contains("secret-pw"));
    }
}
