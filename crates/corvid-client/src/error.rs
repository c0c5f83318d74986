//! What can go wrong, and the conditions servers give.

use corvid_proto::ns;
use corvid_xml::Element;

/// Why connecting or logging in failed (XMPPStream's `didNotAuthenticate` and
/// `didReceiveError`, as one error).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection could not be made, or broke.
    #[error("cannot reach the server: {0}")]
    Io(#[from] std::io::Error),
    /// TLS could not be set up, or the certificate was not trusted.
    #[error("TLS: {0}")]
    Tls(String),
    /// SASL failed: the server's condition (`not-authorized` …) or why no mechanism fits.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The server answered a login step (resource binding, session) with an error.
    #[error("the server refused {step}: {condition}")]
    Refused {
        /// The step (`bind`, `sess`).
        step: String,
        /// The error's condition.
        condition: String,
    },
    /// The server ended the stream with this condition during the login.
    #[error("stream error from the server: {0}")]
    StreamError(String),
    /// The server sent something a login does not expect.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The builder's settings cannot work (a JID without a username, no DNS …).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// [`crate::Client::connect`] on a client already connected (or reconnecting).
    #[error("already connected")]
    AlreadyConnected,
}

/// Why a request ([`crate::Client::request`]) got no result.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The answer was an error: its RFC 6120 §8.3 condition and the whole stanza.
    #[error("error reply: {condition}")]
    Error {
        /// The condition (`item-not-found` …).
        condition: String,
        /// The error stanza.
        stanza: Element,
    },
    /// No answer came within the timeout.
    #[error("no answer in time")]
    Timeout,
    /// The client is not connected, or the connection ended before the answer came.
    #[error("not connected")]
    NotConnected,
    /// What was given to [`crate::Client::request`] is not an IQ get or set.
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
