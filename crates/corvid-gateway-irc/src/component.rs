//! The XEP-0114 stream to the XMPP server: open a `jabber:component:accept` stream, prove
//! the shared secret with the `<handshake/>` digest (§3), then exchange stanzas.
//!
//! Inside the gateway every stanza is in `jabber:client`, as corvid-proto builds them; this
//! module renames that namespace to `jabber:component:accept` on the way out and back on
//! the way in, so nothing else needs to know which stream a stanza travels on.

use std::time::Duration;

use corvid_client::transport::{Conn, Io, ReadError};
use corvid_proto::ns;
use corvid_xml::{Element, Node, StreamEvent};
use sha1::{Digest, Sha1};
use thiserror::Error;
use tokio::net::TcpStream;

use crate::config::ComponentConfig;

/// The namespace of a component stream the server accepts (XEP-0114 §3).
pub const ACCEPT: &str = "jabber:component:accept";

/// How long the server may take to answer each step of the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the stream could not be opened.
#[derive(Debug, Error)]
pub enum ComponentError {
    #[error("cannot reach the XMPP server: {0}")]
    Connect(std::io::Error),
    #[error("the XMPP server refused the component: {condition}{}", text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Refused {
        condition: String,
        text: Option<String>,
    },
    #[error("the XMPP server broke the handshake: {0}")]
    Protocol(String),
    #[error("no answer from the XMPP server within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
}

impl From<ReadError> for ComponentError {
    fn from(e: ReadError) -> Self {
        ComponentError::Protocol(e.to_string())
    }
}

/// The handshake digest: the lower-case hex SHA-1 of the stream id followed by the secret
/// (XEP-0114 §3, example 3).
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(stream_id.as_bytes());
    hasher.update(secret.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Connects to the XMPP server and authenticates as the component.
pub async fn connect(config: &ComponentConfig) -> Result<Conn, ComponentError> {
    let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(&config.server))
        .await
        .map_err(|_| ComponentError::Timeout)?
        .map_err(ComponentError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let mut conn = Conn::new(Io::Plain(tcp));
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut conn, config))
        .await
        .map_err(|_| ComponentError::Timeout)??;
    Ok(conn)
}

async fn handshake(conn: &mut Conn, config: &ComponentConfig) -> Result<(), ComponentError> {
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{ACCEPT}' xmlns:stream='{}' to='{}'>",
        ns::STREAM,
        xml_attr(&config.domain)
    );
    send(conn, header.as_bytes()).await?;
    let stream_id = match conn.next_event().await? {
        StreamEvent::Open(header) => header
            .attr("id")
            .map(str::to_string)
            .ok_or_else(|| ComponentError::Protocol("stream header without an id".into()))?,
        other => return Err(unexpected(&other)),
    };
    let digest =
        Element::new("handshake", ACCEPT).with_text(handshake_digest(&stream_id, &config.secret));
    send(conn, &digest.to_bytes(ACCEPT)).await?;
    match conn.next_event().await? {
        StreamEvent::Stanza(el) if el.is("handshake", ACCEPT) => Ok(()),
        other => Err(unexpected(&other)),
    }
}

async fn send(conn: &mut Conn, bytes: &[u8]) -> Result<(), ComponentError> {
    conn.send(bytes)
        .await
        .map_err(|e| ComponentError::Protocol(e.to_string()))
}

/// A stream error becomes `Refused` (Prosody answers a wrong secret with `not-authorized`).
fn unexpected(event: &StreamEvent) -> ComponentError {
    match event {
        StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => {
            let condition = el
                .children()
                .find(|c| c.ns() == ns::STREAM_ERRORS && c.name() != "text")
                .map(|c| c.name().to_string())
                .unwrap_or_else(|| "undefined-condition".into());
            let text = el.get_child("text", ns::STREAM_ERRORS).map(Element::text);
            ComponentError::Refused { condition, text }
        }
        StreamEvent::Close => ComponentError::Protocol("stream closed".into()),
        StreamEvent::Open(_) => ComponentError::Protocol("second stream header".into()),
        StreamEvent::Stanza(el) => ComponentError::Protocol(format!("unexpected <{}/>", el.name())),
    }
}

fn xml_attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('\'', "&apos;")
        .replace('<', "&lt;")
}

/// The bytes of a stanza built in `jabber:client`, for the component stream.
pub fn to_wire(stanza: &Element) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    renamed(stanza, ns::CLIENT, ACCEPT).write_to(&mut out, ACCEPT);
    out
}

/// A stanza read from the component stream, in `jabber:client` like every other.
pub fn from_wire(stanza: &Element) -> Element {
    renamed(stanza, ACCEPT, ns::CLIENT)
}

/// A copy of `el` with namespace `from` renamed to `to` wherever it appears.
fn renamed(el: &Element, from: &str, to: &str) -> Element {
    let ns = if el.ns() == from { to } else { el.ns() };
    let mut out = Element::new(el.name(), ns);
    for (name, value) in el.attrs() {
        out.set_attr(name, value);
    }
    for node in el.nodes() {
        match node {
            Node::Element(child) => {
                out.append_child(renamed(child, from, to));
            }
            Node::Text(text) => out.append_text(text.as_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0114 §3, examples 2 and 3: stream id `3BF96D32`; the secret there is `test`.
    #[test]
    fn digest_matches_the_xep_example() {
        assert_eq!(
            handshake_digest("3BF96D32", "test"),
            "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"
        );
    }

    #[test]
    fn stanzas_travel_in_the_component_namespace() {
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("to", "a@b")
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"))
            .with_child(Element::new("x", ns::MUC_USER));
        let wire = String::from_utf8(to_wire(&msg)).unwrap();
        assert_eq!(
            wire,
            "<message to='a@b'><body>hi</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>"
        );
        let parsed = corvid_xml::parse_element(
            &format!(
                "<message to='a@b'><body>hi</body><x xmlns='{}'/></message>",
                ns::MUC_USER
            ),
            ACCEPT,
        )
        .unwrap();
        assert_eq!(from_wire(&parsed), msg);
    }
}
