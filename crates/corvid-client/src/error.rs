//! What can go wrong, and the conditions servers give.

use corvid_proto::ns;
use corvid_xml::Element;

/// Why connecting or logging in failed (XMPPStream's `didNotAuthenticate` and
/// `didReceiveError`, as one error).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach the server: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("the server refused {step}: {condition}")]
    Refused { step: String, condition: String },
    #[error("stream error from the server: {0}")]
    StreamError(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("already connected")]
    AlreadyConnected,
}

/// Why a request ([`crate::Client::request`]) got no result.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The answer was an error: its RFC 6120 §8.3 condition and the whole stanza.
    #[error("error reply: {condition}")]
    Error { condition: String, stanza: Element },
    #[error("no answer in time")]
    Timeout,
    #[error("not connected")]
    NotConnected,
    #[error("the request is not an IQ get or set")]
    NotARequest,
}

/// The RFC 6120 §8.3 condition of an error stanza.
pub fn stanza_error_condition(el: &Element) -> String {
    el.get_child("error", ns::CLIENT)
        .and_then(|e| {
            e.children()
                .find(|c| c.ns() == ns::STANZA_ERRORS && c.name() != "text")
        })
        .map_or_else(|| "undefined-condition".into(), |c| c.name().to_owned())
}

/// The RFC 6120 §4.9.3 condition of a stream error.
pub fn stream_error_condition(el: &Element) -> String {
    el.children()
        .find(|c| c.ns() == ns::STREAM_ERRORS && c.name() != "text")
        .map_or_else(|| "undefined-condition".into(), |c| c.name().to_owned())
}
