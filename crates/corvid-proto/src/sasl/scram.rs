//! SCRAM message syntax (RFC 5802 §7), shared by the client and server sides: parsing
//! each of the four messages into typed parts, and formatting them back.
//!
//! Parsing is strict where the grammar is (attribute order, `=2C`/`=3D` escapes,
//! printable nonces, positive iteration counts) and never panics on any input. The
//! reserved `m=` attribute fails the exchange (RFC 5802 §5.1); other extension
//! attributes are checked for syntax and ignored.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::SaslError;
use super::credentials::fill_random;

/// Random bytes in a nonce we generate (RFC 5802 only asks for "sufficiently random";
/// 24 bytes is 32 base64 characters, no padding).
const NONCE_BYTES: usize = 24;

/// The channel-binding flag of the GS2 header (`gs2-cbind-flag`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CbFlag {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports channel binding but thinks the server does not.
    ClientOnly,
    /// `p=<cb-name>`: the client binds to this channel binding type.
    Binding(String),
}

/// The GS2 header that starts client-first-message (RFC 5802 §7 `gs2-header`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Gs2Header {
    pub flag: CbFlag,
    pub authzid: Option<String>,
}

impl Gs2Header {
    /// The header as sent: `n,,`, `y,,` or `p=<cb-name>,[a=<authzid>],`.
    pub fn format(&self) -> String {
        let flag = match &self.flag {
            CbFlag::NotSupported => "n".to_owned(),
            CbFlag::ClientOnly => "y".to_owned(),
            CbFlag::Binding(name) => format!("p={name}"),
        };
        let authzid = match &self.authzid {
            Some(authzid) => format!("a={}", escape_saslname(authzid)),
            None => String::new(),
        };
        format!("{flag},{authzid},")
    }
}

/// A parsed client-first-message.
#[derive(Debug)]
pub(crate) struct ClientFirstMessage<'a> {
    pub gs2: Gs2Header,
    /// The GS2 header exactly as received; client-final's `c=` must repeat it.
    pub gs2_raw: &'a str,
    /// client-first-message-bare, which is part of AuthMessage.
    pub bare: &'a str,
    pub username: String,
    pub nonce: &'a str,
}

pub(crate) fn parse_client_first(msg: &str) -> Result<ClientFirstMessage<'_>, SaslError> {
    let mut header = msg.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(bare)) = (header.next(), header.next(), header.next())
    else {
        return Err(SaslError::MalformedRequest);
    };
    let gs2 = Gs2Header {
        flag: parse_cb_flag(flag)?,
        authzid: parse_authzid(authzid)?,
    };
    let gs2_raw = &msg[..flag.len() + authzid.len() + 2];

    let mut attrs = bare.split(',');
    let username = unescape_saslname(attribute(attrs.next(), b'n')?)?;
    let nonce = parse_nonce(attrs.next())?;
    check_extensions(attrs)?;
    Ok(ClientFirstMessage {
        gs2,
        gs2_raw,
        bare,
        username,
        nonce,
    })
}

fn parse_cb_flag(flag: &str) -> Result<CbFlag, SaslError> {
    match flag {
        "n" => Ok(CbFlag::NotSupported),
        "y" => Ok(CbFlag::ClientOnly),
        _ => match flag.strip_prefix("p=") {
            Some(name) if is_cb_name(name) => Ok(CbFlag::Binding(name.to_owned())),
            _ => Err(SaslError::MalformedRequest),
        },
    }
}

fn parse_authzid(authzid: &str) -> Result<Option<String>, SaslError> {
    if authzid.is_empty() {
        return Ok(None);
    }
    match authzid.strip_prefix("a=") {
        Some(name) => unescape_saslname(name).map(Some),
        None => Err(SaslError::MalformedRequest),
    }
}

/// `cb-name = 1*(ALPHA / DIGIT / "." / "-")`
pub(crate) fn is_cb_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// A parsed server-first-message.
#[derive(Debug)]
pub(crate) struct ServerFirstMessage<'a> {
    pub nonce: &'a str,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

pub(crate) fn format_server_first(nonce: &str, salt: &[u8], iterations: u32) -> String {
    format!("r={nonce},s={},i={iterations}", BASE64.encode(salt))
}

pub(crate) fn parse_server_first(msg: &str) -> Result<ServerFirstMessage<'_>, SaslError> {
    let mut attrs = msg.split(',');
    let nonce = parse_nonce(attrs.next())?;
    let salt = decode_base64(attribute(attrs.next(), b's')?)?;
    let iterations = parse_iterations(attribute(attrs.next(), b'i')?)?;
    check_extensions(attrs)?;
    if salt.is_empty() {
        return Err(SaslError::MalformedRequest);
    }
    Ok(ServerFirstMessage {
        nonce,
        salt,
        iterations,
    })
}

/// `posit-number = %x31-39 *DIGIT`, within u32.
fn parse_iterations(value: &str) -> Result<u32, SaslError> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SaslError::MalformedRequest);
    }
    value.parse().map_err(|_| SaslError::MalformedRequest)
}

/// A parsed client-final-message.
#[derive(Debug)]
pub(crate) struct ClientFinalMessage<'a> {
    /// The decoded `c=` value: GS2 header followed by channel binding data.
    pub cbind_input: Vec<u8>,
    pub nonce: &'a str,
    pub proof: Vec<u8>,
    /// client-final-message-without-proof, which is part of AuthMessage.
    pub without_proof: &'a str,
}

pub(crate) fn format_client_final_without_proof(cbind_input: &[u8], nonce: &str) -> String {
    format!("c={},r={nonce}", BASE64.encode(cbind_input))
}

pub(crate) fn format_client_final(without_proof: &str, proof: &[u8]) -> String {
    format!("{without_proof},p={}", BASE64.encode(proof))
}

pub(crate) fn parse_client_final(msg: &str) -> Result<ClientFinalMessage<'_>, SaslError> {
    // The proof is always the last attribute, and everything before it is signed.
    let (without_proof, proof) = msg.rsplit_once(',').ok_or(SaslError::MalformedRequest)?;
    let proof = decode_base64(attribute(Some(proof), b'p')?)?;

    let mut attrs = without_proof.split(',');
    let cbind_input = decode_base64(attribute(attrs.next(), b'c')?)?;
    let nonce = parse_nonce(attrs.next())?;
    check_extensions(attrs)?;
    Ok(ClientFinalMessage {
        cbind_input,
        nonce,
        proof,
        without_proof,
    })
}

pub(crate) fn format_server_final(server_signature: &[u8]) -> String {
    format!("v={}", BASE64.encode(server_signature))
}

/// Parses server-final-message into the ServerSignature; a server-error (`e=…`) is
/// NotAuthorized.
pub(crate) fn parse_server_final(msg: &str) -> Result<Vec<u8>, SaslError> {
    let mut attrs = msg.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("e=") {
        return Err(SaslError::NotAuthorized);
    }
    let signature = decode_base64(attribute(Some(first), b'v')?)?;
    check_extensions(attrs)?;
    Ok(signature)
}

/// The value of attribute `name` (`name=value`), which must be next in the message.
fn attribute(part: Option<&str>, name: u8) -> Result<&str, SaslError> {
    let part = part.ok_or(SaslError::MalformedRequest)?;
    match part.as_bytes() {
        // Both bytes are ASCII, so 2 is a char boundary.
        [n, b'=', ..] if *n == name => Ok(&part[2..]),
        _ => Err(SaslError::MalformedRequest),
    }
}

/// `nonce = "r=" c-nonce [s-nonce]`, where nonces are `printable`: ASCII 0x21–0x7E
/// except `,` (which cannot occur here, as attributes are split on it).
fn parse_nonce(part: Option<&str>) -> Result<&str, SaslError> {
    let nonce = attribute(part, b'r')?;
    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(SaslError::MalformedRequest);
    }
    Ok(nonce)
}

/// `extensions = attr-val *("," attr-val)`, `attr-val = ALPHA "=" value`. RFC 5802 §5.1:
/// the reserved `m=` must fail authentication, wherever it appears.
fn check_extensions<'a>(attrs: impl Iterator<Item = &'a str>) -> Result<(), SaslError> {
    for attr in attrs {
        match attr.as_bytes() {
            [b'm', b'=', ..] => return Err(SaslError::MalformedRequest),
            [name, b'=', value @ ..]
                if name.is_ascii_alphabetic() && !value.is_empty() && !value.contains(&0) => {}
            _ => return Err(SaslError::MalformedRequest),
        }
    }
    Ok(())
}

/// `saslname` with `,` and `=` escaped as `=2C` and `=3D`.
pub(crate) fn escape_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Reverses [`escape_saslname`]; any other `=` sequence, a NUL, or an empty name is
/// malformed (`saslname = 1*(value-safe-char / "=2C" / "=3D")`).
pub(crate) fn unescape_saslname(escaped: &str) -> Result<String, SaslError> {
    if escaped.is_empty() || escaped.contains('\0') {
        return Err(SaslError::MalformedRequest);
    }
    let mut name = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('=') {
        name.push_str(&rest[..at]);
        match rest.get(at + 1..at + 3) {
            Some("2C") => name.push(','),
            Some("3D") => name.push('='),
            _ => return Err(SaslError::MalformedRequest),
        }
        rest = &rest[at + 3..];
    }
    name.push_str(rest);
    Ok(name)
}

/// Base64 as SCRAM uses it: standard alphabet, padded, canonical.
pub(crate) fn decode_base64(value: &str) -> Result<Vec<u8>, SaslError> {
    BASE64
        .decode(value)
        .map_err(|_| SaslError::IncorrectEncoding)
}

/// A fresh nonce of printable characters (base64 has no `,`).
pub(crate) fn random_nonce() -> String {
    let mut bytes = [0; NONCE_BYTES];
    fill_random(&mut bytes);
    BASE64.encode(bytes)
}

/// SCRAM messages are UTF-8 (RFC 5802 §7); anything else is malformed.
pub(crate) fn utf8(msg: &[u8]) -> Result<&str, SaslError> {
    std::str::from_utf8(msg).map_err(|_| SaslError::MalformedRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslname_escapes_round_trip() {
        assert_eq!(escape_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(unescape_saslname("a=2Cb=3Dc").as_deref(), Ok("a,b=c"));
        assert_eq!(unescape_saslname("=3D=2C").as_deref(), Ok("=,"));
        assert_eq!(unescape_saslname("jürgen").as_deref(), Ok("jürgen"));
    }

    #[test]
    fn bad_saslnames_are_malformed() {
        for bad in ["", "a=", "a=2", "a=2c", "a=41", "a\0b", "=é"] {
            assert_eq!(
                unescape_saslname(bad),
                Err(SaslError::MalformedRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn client_first_parts() {
        let msg = "p=tls-exporter,a=admin=2Cx,n=us=3Der,r=abc,x=ext";
        let parsed = parse_client_first(msg).unwrap();
        assert_eq!(parsed.gs2.flag, CbFlag::Binding("tls-exporter".into()));
        assert_eq!(parsed.gs2.authzid.as_deref(), Some("admin,x"));
        assert_eq!(parsed.gs2_raw, "p=tls-exporter,a=admin=2Cx,");
        assert_eq!(parsed.gs2.format(), parsed.gs2_raw);
        assert_eq!(parsed.bare, "n=us=3Der,r=abc,x=ext");
        assert_eq!(parsed.username, "us=er");
        assert_eq!(parsed.nonce, "abc");
    }

    #[test]
    fn malformed_client_first() {
        for bad in [
            "",
            "n,,",
            "n,n=user,r=abc",
            "x,,n=user,r=abc",
            "p=,,n=user,r=abc",
            "p=tls_unique,,n=user,r=abc",
            "n,b=x,n=user,r=abc",
            "n,a=,n=user,r=abc",
            "n,,m=ext,n=user,r=abc",
            "n,,n=user,r=abc,m=ext",
            "n,,n=user,r=",
            "n,,n=user,r=a b",
            "n,,n=user",
            "n,,r=abc,n=user",
            "n,,n=,r=abc",
            "n,,n=user,r=abc,",
            "n,,n=user,r=abc,1=x",
            "n,,n=user,r=abc,x=",
        ] {
            assert_eq!(
                parse_client_first(bad).err(),
                Some(SaslError::MalformedRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_first_round_trip() {
        let msg = format_server_first("abcdef", b"salt", 4096);
        assert_eq!(msg, "r=abcdef,s=c2FsdA==,i=4096");
        let parsed = parse_server_first(&msg).unwrap();
        assert_eq!(
            (parsed.nonce, parsed.salt.as_slice(), parsed.iterations),
            ("abcdef", &b"salt"[..], 4096)
        );
    }

    #[test]
    fn malformed_server_first() {
        for bad in [
            "r=a,s=c2FsdA==",
            "r=a,s=,i=1",
            "r=a,s=c2FsdA==,i=0",
            "r=a,s=c2FsdA==,i=01",
            "r=a,s=c2FsdA==,i=-1",
            "r=a,s=c2FsdA==,i=99999999999",
            "m=x,r=a,s=c2FsdA==,i=1",
        ] {
            assert_eq!(
                parse_server_first(bad).err(),
                Some(SaslError::MalformedRequest),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_server_first("r=a,s=c2FsdA,i=1").err(),
            Some(SaslError::IncorrectEncoding)
        );
    }

    #[test]
    fn client_final_splits_off_the_proof() {
        let msg = "c=biws,r=abc,x=ext,p=AAEC";
        let parsed = parse_client_final(msg).unwrap();
        assert_eq!(parsed.cbind_input, b"n,,");
        assert_eq!(parsed.nonce, "abc");
        assert_eq!(parsed.proof, [0, 1, 2]);
        assert_eq!(parsed.without_proof, "c=biws,r=abc,x=ext");
        for bad in [
            "c=biws,r=abc",
            "r=abc,c=biws,p=AAEC",
            "c=biws,p=AAEC",
            "c=biws,r=abc,p=AAEC,x=y",
        ] {
            assert_eq!(
                parse_client_final(bad).err(),
                Some(SaslError::MalformedRequest),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_client_final("c=biws,r=abc,p=AAE").err(),
            Some(SaslError::IncorrectEncoding)
        );
        assert_eq!(
            parse_client_final("c=bi!s,r=abc,p=AAEC").err(),
            Some(SaslError::IncorrectEncoding)
        );
    }

    #[test]
    fn server_final_verifier_or_error() {
        assert_eq!(parse_server_final("v=AAEC"), Ok(vec![0, 1, 2]));
        assert_eq!(
            parse_server_final("e=invalid-proof"),
            Err(SaslError::NotAuthorized)
        );
        assert_eq!(
            parse_server_final("x=AAEC"),
            Err(SaslError::MalformedRequest)
        );
        assert_eq!(parse_server_final(""), Err(SaslError::MalformedRequest));
    }

    #[test]
    fn random_nonces_are_printable_and_distinct() {
        let (a, b) = (random_nonce(), random_nonce());
        assert_ne!(a, b);
        assert!(a.len() >= 24 && a.bytes().all(|c| (0x21..=0x7e).contains(&c) && c != b','));
    }
}
