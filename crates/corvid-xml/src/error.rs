//! Why an incoming XML stream was rejected, and the RFC 6120 stream error
//! condition (§4.9.3) each reason maps to.
//!
//! This is the one place where parser errors become protocol conditions; the
//! server only calls [`XmlError::condition`].

/// A fatal error in an incoming XML stream. After it the stream must be
/// closed with the stream error named by [`condition`](Self::condition).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum XmlError {
    /// Not well-formed XML or XML namespaces: bad syntax, mismatched tags,
    /// undeclared prefixes, invalid UTF-8 or characters, premature end.
    #[error("not well-formed XML: {0}")]
    NotWellFormed(String),
    /// A construct RFC 6120 §11.1 forbids: DTD or other markup declarations,
    /// comments, processing instructions, entity references other than the
    /// five predefined ones.
    #[error("restricted XML: {0}")]
    Restricted(String),
    /// The XML declaration names an encoding other than UTF-8 (RFC 6120 §11.6).
    #[error("unsupported encoding: only UTF-8 is allowed")]
    UnsupportedEncoding,
    /// A stanza (or the stream header) grew beyond the configured size.
    #[error("stanza exceeds the limit of {limit} bytes")]
    StanzaTooBig {
        /// The configured `max_stanza_bytes`.
        limit: usize,
    },
    /// A stanza nests elements deeper than allowed (the stanza is level 1).
    #[error("elements nested deeper than {limit} levels")]
    TooDeep {
        /// The configured `max_depth`.
        limit: usize,
    },
    /// Non-whitespace character data directly inside the stream element.
    #[error("text outside of a stanza")]
    TextOutsideStanza,
}

impl XmlError {
    /// The RFC 6120 §4.9.3 stream error condition to send for this error.
    pub fn condition(&self) -> &'static str {
        match self {
            // §4.9.3.13
            XmlError::NotWellFormed(_) => "not-well-formed",
            // §4.9.3.18 and §11.1
            XmlError::Restricted(_) => "restricted-xml",
            // §4.9.3.22 and §11.6
            XmlError::UnsupportedEncoding => "unsupported-encoding",
            // §4.9.3.14: a local service policy (size and depth limits)
            XmlError::StanzaTooBig { .. } | XmlError::TooDeep { .. } => "policy-violation",
            // §4.9.3.1: XML that cannot be processed as an XMPP stream
            XmlError::TextOutsideStanza => "bad-format",
        }
    }

    /// Classifies an error reported by rxml.
    ///
    /// rxml reports several restricted constructs through generic variants,
    /// told apart by their (stable, unit-tested) messages.
    pub(crate) fn from_rxml(error: rxml::Error, limit: usize) -> Self {
        match error {
            rxml::Error::UndeclaredEntity => XmlError::Restricted(error.to_string()),
            // `<!` followed by neither `--` nor `[CDATA[` can only begin a
            // markup declaration: `<!DOCTYPE`, `<!ENTITY`, `<!ELEMENT` …
            rxml::Error::InvalidSyntax("malformed cdata or comment section start") => {
                XmlError::Restricted("document type or markup declaration".to_owned())
            }
            rxml::Error::RestrictedXml("only utf-8 encoding is allowed") => {
                XmlError::UnsupportedEncoding
            }
            // A name or attribute value longer than max_token_length, which
            // the parser sets to the stanza limit.
            rxml::Error::RestrictedXml("long name or reference" | "event too long") => {
                XmlError::StanzaTooBig { limit }
            }
            rxml::Error::RestrictedXml(_) => XmlError::Restricted(error.to_string()),
            other => XmlError::NotWellFormed(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_names_a_stream_condition() {
        let cases = [
            (XmlError::NotWellFormed("x".into()), "not-well-formed"),
            (XmlError::Restricted("x".into()), "restricted-xml"),
            (XmlError::UnsupportedEncoding, "unsupported-encoding"),
            (XmlError::StanzaTooBig { limit: 1 }, "policy-violation"),
            (XmlError::TooDeep { limit: 1 }, "policy-violation"),
            (XmlError::TextOutsideStanza, "bad-format"),
        ];
        for (error, condition) in cases {
            assert_eq!(error.condition(), condition, "{error}");
        }
    }
}
