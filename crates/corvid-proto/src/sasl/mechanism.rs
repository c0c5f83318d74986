//! The SASL mechanisms Corvid speaks, by their IANA names, strongest first.

use super::HashAlg;

/// A SASL mechanism supported by Corvid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    /// Every mechanism, in order of preference (strongest first).
    pub const ALL: [Mechanism; 5] = [
        Self::ScramSha256Plus,
        Self::ScramSha1Plus,
        Self::ScramSha256,
        Self::ScramSha1,
        Self::Plain,
    ];

    /// The registered mechanism name, as sent in `<mechanism/>` and `<auth mechanism=…/>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Self::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha1 => "SCRAM-SHA-1",
            Self::Plain => "PLAIN",
        }
    }

    /// The mechanism with this exact name (RFC 4422 §3.1: names are upper case, so
    /// matching is case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether this is a SCRAM mechanism with channel binding.
    pub fn is_plus(self) -> bool {
        matches!(self, Self::ScramSha256Plus | Self::ScramSha1Plus)
    }

    /// The hash function of a SCRAM mechanism; `None` for PLAIN.
    pub fn hash(self) -> Option<HashAlg> {
        match self {
            Self::ScramSha256Plus | Self::ScramSha256 => Some(HashAlg::Sha256),
            Self::ScramSha1Plus | Self::ScramSha1 => Some(HashAlg::Sha1),
            Self::Plain => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(Mechanism::ScramSha1Plus.name(), "SCRAM-SHA-1-PLUS");
        assert_eq!(Mechanism::from_name("scram-sha-1"), None);
        assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
    }

    #[test]
    fn plus_and_hash() {
        assert!(Mechanism::ScramSha256Plus.is_plus());
        assert!(!Mechanism::ScramSha256.is_plus());
        assert!(!Mechanism::Plain.is_plus());
        assert_eq!(Mechanism::ScramSha1Plus.hash(), Some(HashAlg::Sha1));
        assert_eq!(Mechanism::ScramSha256.hash(), Some(HashAlg::Sha256));
        assert_eq!(Mechanism::Plain.hash(), None);
    }
}
