//! Opening a stream (RFC 6120): TCP, STARTTLS or direct TLS, SASL, stream restart,
//! resource binding, and the legacy session IQ where a server still requires it.
//!
//! SASL prefers SCRAM-SHA-256-PLUS, then SCRAM-SHA-1-PLUS (with the tls-exporter channel
//! binding, when TLS 1.3 gives one), then SCRAM-SHA-256, SCRAM-SHA-1, and PLAIN last, and
//! PLAIN only over TLS. A -PLUS attempt the server refuses, when it never named its binding
//! types (XEP-0440), is followed by one without binding. A server whose final SCRAM message
//! does not prove it knows the password is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use corvid_proto::sasl::{Mechanism, ScramClient};
use corvid_proto::{FullJid, ns};
use corvid_xml::{Element, StreamEvent};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::ConnectError;
use crate::tls;
use crate::transport::{Conn, Io, ReadError};

/// How TLS comes on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Security {
    /// STARTTLS on the client port (5222), required: a server that does not offer it is
    /// refused.
    #[default]
    StartTls,
    /// TLS from the first byte (XEP-0368, port 5223), ALPN `xmpp-client`.
    DirectTls,
    /// No TLS at all, for loopback tests; PLAIN is never used without TLS.
    DangerPlaintext,
}

/// XEP-0440 SASL channel-binding type capability.
const SASL_CB: &str = "urn:xmpp:sasl-cb:0";

/// What a login needs.
pub(crate) struct Params<'a> {
    pub domain: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub security: Security,
    pub connector: Option<&'a TlsConnector>,
}

/// An authenticated stream, not yet bound (or resumed).
pub(crate) struct Authenticated {
    pub conn: Conn,
    /// The features offered after authentication (bind, stream management, CSI …).
    pub features: Element,
    pub mechanism: Mechanism,
}

/// TLS, SASL and the stream restart after it, over an open TCP connection.
pub(crate) async fn authenticate(
    tcp: TcpStream,
    params: &Params<'_>,
) -> Result<Authenticated, ConnectError> {
    let _ = tcp.set_nodelay(true);
    let mut binding = None;
    let io = match params.security {
        Security::DirectTls => {
            let tls = handshake(params, tcp).await?;
            binding = tls::channel_binding(&tls);
            Io::Tls(Box::new(tls))
        }
        Security::StartTls | Security::DangerPlaintext => Io::Plain(tcp),
    };
    let mut conn = Conn::new(io);
    let mut features = open_stream(&mut conn, params.domain).await?;
    if params.security == Security::StartTls {
        if !features.has_child("starttls", ns::TLS) {
            return Err(ConnectError::Tls(
                "the server does not offer STARTTLS".into(),
            ));
        }
        conn.send(format!("<starttls xmlns='{}'/>", ns::TLS).as_bytes())
            .await?;
        let answer = next_element(&mut conn).await?;
        if !answer.is("proceed", ns::TLS) {
            return Err(ConnectError::Tls(format!(
                "STARTTLS refused: <{}>",
                answer.name()
            )));
        }
        let Io::Plain(tcp) = std::mem::replace(&mut conn.io, Io::Gone) else {
            return Err(ConnectError::Tls("TLS is already on".into()));
        };
        let tls = handshake(params, tcp).await?;
        binding = tls::channel_binding(&tls);
        conn.io = Io::Tls(Box::new(tls));
        // RFC 6120 §5.4.3.3: nothing from before the handshake carries over.
        conn.discard_buffered();
        conn.reset_parser();
        features = open_stream(&mut conn, params.domain).await?;
    }
    let encrypted = matches!(conn.io, Io::Tls(_));
    let mechanism = authenticate_sasl(&mut conn, &features, params, binding, encrypted).await?;
    conn.reset_parser();
    let features = open_stream(&mut conn, params.domain).await?;
    Ok(Authenticated {
        conn,
        features,
        mechanism,
    })
}

/// Binds a resource and, where a server still requires it, establishes the RFC 3921
/// session; the bound JID.
pub(crate) async fn bind_session(
    conn: &mut Conn,
    features: &Element,
    resource: Option<&str>,
) -> Result<FullJid, ConnectError> {
    let jid = bind(conn, resource).await?;
    // RFC 3921 session establishment, only where it is not marked optional.
    if features
        .get_child("session", ns::SESSION)
        .is_some_and(|s| !s.has_child("optional", ns::SESSION))
    {
        let iq = format!(
            "<iq type='set' id='sess'><session xmlns='{}'/></iq>",
            ns::SESSION
        );
        conn.send(iq.as_bytes()).await?;
        expect_result(conn, "sess").await?;
    }
    Ok(jid)
}

/// What the server made of a XEP-0198 `<resume/>`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resumption {
    /// The old session goes on; the server had `h` of our stanzas.
    Resumed { h: u32 },
    /// It is gone; a new one must be bound. `h`, when the server says, is how many of
    /// our stanzas it had.
    Failed { h: Option<u32> },
}

/// Asks the server to resume the stream-management session `previd`, telling it we had
/// `h` of its stanzas (XEP-0198 §5).
pub(crate) async fn resume(
    conn: &mut Conn,
    previd: &str,
    h: u32,
) -> Result<Resumption, ConnectError> {
    let request = Element::new("resume", ns::SM)
        .with_attr("previd", previd)
        .with_attr("h", h.to_string());
    conn.send(&request.to_bytes(ns::CLIENT)).await?;
    let answer = next_element(conn).await?;
    let h = answer.attr("h").and_then(|h| h.parse().ok());
    if answer.is("resumed", ns::SM) {
        let h = h.ok_or_else(|| ConnectError::Protocol("<resumed/> without h".into()))?;
        return Ok(Resumption::Resumed { h });
    }
    if answer.is("failed", ns::SM) {
        return Ok(Resumption::Failed { h });
    }
    Err(ConnectError::Protocol(format!(
        "unexpected <{}> after <resume/>",
        answer.name()
    )))
}

async fn handshake(
    params: &Params<'_>,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
    let connector = params
        .connector
        .ok_or_else(|| ConnectError::Tls("no TLS configuration".into()))?;
    tls::handshake(connector, params.domain, tcp)
        .await
        .map_err(|e| ConnectError::Tls(e.to_string()))
}

/// Sends our stream header and returns the server's `<stream:features/>`.
async fn open_stream(conn: &mut Conn, domain: &str) -> Result<Element, ConnectError> {
    let header = format!(
        "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xml:lang='en' xmlns='{}' xmlns:stream='{}'>",
        escape_attr(domain),
        ns::CLIENT,
        ns::STREAM
    );
    conn.send(header.as_bytes()).await?;
    match conn.next_event().await {
        Ok(StreamEvent::Open(_)) => {}
        Ok(other) => {
            return Err(ConnectError::Protocol(format!(
                "expected a stream header, got {other:?}"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let features = next_element(conn).await?;
    if !features.is("features", ns::STREAM) {
        return Err(ConnectError::Protocol(format!(
            "expected stream features, got <{}>",
            features.name()
        )));
    }
    Ok(features)
}

/// `text` as an attribute value between single quotes.
fn escape_attr(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('\'', "&apos;")
        .replace('<', "&lt;")
}

/// The mechanisms a server offers, in its order.
fn offered(features: &Element) -> Vec<String> {
    features
        .get_child("mechanisms", ns::SASL)
        .map(|m| {
            m.children()
                .filter(|c| c.is("mechanism", ns::SASL))
                .map(|c| c.text().trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The best mechanism both sides can use (see the module notes).
fn choose(offered: &[String], can_bind: bool, encrypted: bool) -> Option<Mechanism> {
    let preference = [
        (Mechanism::ScramSha256Plus, can_bind),
        (Mechanism::ScramSha1Plus, can_bind),
        (Mechanism::ScramSha256, true),
        (Mechanism::ScramSha1, true),
        (Mechanism::Plain, encrypted),
    ];
    preference
        .into_iter()
        .find(|(m, usable)| *usable && offered.iter().any(|o| o == m.name()))
        .map(|(m, _)| m)
}

async fn authenticate_sasl(
    conn: &mut Conn,
    features: &Element,
    params: &Params<'_>,
    binding: Option<(String, Vec<u8>)>,
    encrypted: bool,
) -> Result<Mechanism, ConnectError> {
    let offered = offered(features);
    let listed = features.get_child("sasl-channel-binding", SASL_CB);
    // XEP-0440: a server that lists its channel-binding types must list ours.
    let binding = binding.filter(|(name, _)| {
        listed.is_none_or(|types| {
            types
                .children()
                .any(|t| t.is("channel-binding", SASL_CB) && t.attr("type") == Some(name))
        })
    });
    let no_mechanism = || ConnectError::Auth(format!("no mechanism we can use among {offered:?}"));
    let mechanism = choose(&offered, binding.is_some(), encrypted).ok_or_else(no_mechanism)?;
    let bound = mechanism.is_plus();
    match exchange(conn, mechanism, params, binding).await {
        // A server that offers -PLUS without naming its binding types may bind to another
        // type than ours: ejabberd 23.01 offers -PLUS under TLS 1.3 but binds to
        // tls-unique, which TLS 1.3 does not have, and fails every -PLUS exchange. The
        // stream allows another attempt (RFC 6120 §6.4.5): once more without binding,
        // telling it we do not bind (`n`), since we share no binding type it would take.
        Err(ConnectError::Auth(condition))
            if bound && listed.is_none() && condition == "not-authorized" =>
        {
            let fallback = choose(&offered, false, encrypted).ok_or_else(no_mechanism)?;
            exchange(conn, fallback, params, None).await?;
            Ok(fallback)
        }
        outcome => outcome.map(|()| mechanism),
    }
}

/// One SASL exchange with `mechanism`, to its `<success/>` (and, with SCRAM, the server's
/// proof checked).
async fn exchange(
    conn: &mut Conn,
    mechanism: Mechanism,
    params: &Params<'_>,
    binding: Option<(String, Vec<u8>)>,
) -> Result<(), ConnectError> {
    let name = mechanism.name();
    if mechanism == Mechanism::Plain {
        let data = corvid_proto::sasl::encode_plain(None, params.username, params.password);
        send_sasl(conn, &format!("auth mechanism='{name}'"), &data).await?;
        return sasl_outcome(&next_element(conn).await?);
    }
    let mut scram = ScramClient::new(mechanism, params.username, params.password, binding);
    let scram_error = |e: corvid_proto::sasl::SaslError| ConnectError::Auth(format!("SCRAM: {e}"));
    send_sasl(
        conn,
        &format!("auth mechanism='{name}'"),
        &scram.client_first(),
    )
    .await?;
    let challenge = next_element(conn).await?;
    if !challenge.is("challenge", ns::SASL) {
        sasl_outcome(&challenge)?;
        return Err(ConnectError::Auth(
            "success without a SCRAM exchange".into(),
        ));
    }
    let params_needed = scram
        .read_server_first(&sasl_data(&challenge)?)
        .map_err(scram_error)?;
    // PBKDF2: seconds of CPU at high iteration counts, off the async threads.
    let password = params.password.to_owned();
    let salted = tokio::task::spawn_blocking(move || params_needed.derive(&password))
        .await
        .map_err(|e| ConnectError::Auth(format!("key derivation: {e}")))?;
    let response = scram.client_final(&salted).map_err(scram_error)?;
    send_sasl(conn, "response", &response).await?;
    let answer = next_element(conn).await?;
    let server_final = if answer.is("challenge", ns::SASL) {
        // RFC 6120 §6.3.10: server-final may come as a last challenge.
        let data = sasl_data(&answer)?;
        send_sasl(conn, "response", &[]).await?;
        sasl_outcome(&next_element(conn).await?)?;
        data
    } else {
        sasl_outcome(&answer)?;
        sasl_data(&answer)?
    };
    scram
        .verify_server_final(&server_final)
        .map_err(scram_error)?;
    Ok(())
}

async fn send_sasl(conn: &mut Conn, open_tag: &str, data: &[u8]) -> Result<(), ConnectError> {
    Ok(conn.send(sasl_xml(open_tag, data).as_bytes()).await?)
}

/// A SASL element (`auth mechanism='…'`, `response`) carrying `data` in base64 (RFC 6120
/// §6.4.2: `=` for empty data).
pub fn sasl_xml(open_tag: &str, data: &[u8]) -> String {
    let name = open_tag.split(' ').next().unwrap_or(open_tag);
    let text = if data.is_empty() {
        "=".to_owned()
    } else {
        B64.encode(data)
    };
    format!("<{open_tag} xmlns='{}'>{text}</{name}>", ns::SASL)
}

fn sasl_outcome(el: &Element) -> Result<(), ConnectError> {
    if el.is("success", ns::SASL) {
        return Ok(());
    }
    if el.is("failure", ns::SASL) {
        let condition = el
            .children()
            .find(|c| c.name() != "text")
            .map_or_else(|| "failure".to_owned(), |c| c.name().to_owned());
        return Err(ConnectError::Auth(condition));
    }
    Err(ConnectError::Protocol(format!(
        "unexpected <{}> during SASL",
        el.name()
    )))
}

fn sasl_data(el: &Element) -> Result<Vec<u8>, ConnectError> {
    sasl_payload(el).ok_or_else(|| ConnectError::Protocol("bad base64 in SASL data".into()))
}

/// The data a SASL challenge or success carries; `None` if it is not base64.
pub fn sasl_payload(el: &Element) -> Option<Vec<u8>> {
    match el.text().trim() {
        "" | "=" => Some(Vec::new()),
        text => B64.decode(text).ok(),
    }
}

/// RFC 6120 §7: binds `resource` (or one the server picks) and returns the full JID.
async fn bind(conn: &mut Conn, resource: Option<&str>) -> Result<FullJid, ConnectError> {
    let mut request = Element::new("bind", ns::BIND);
    if let Some(resource) = resource {
        request.append_child(Element::new("resource", ns::BIND).with_text(resource));
    }
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", "bind")
        .with_child(request);
    conn.send(&iq.to_bytes(ns::CLIENT)).await?;
    let reply = expect_result(conn, "bind").await?;
    let jid = reply
        .get_child("bind", ns::BIND)
        .and_then(|b| b.get_child("jid", ns::BIND))
        .map(Element::text)
        .ok_or_else(|| ConnectError::Protocol("bind result without a JID".into()))?;
    FullJid::new(jid.trim()).map_err(|e| ConnectError::Protocol(format!("bound JID {jid:?}: {e}")))
}

/// Waits for the result of the IQ `id` (nothing else is sent before it arrives).
async fn expect_result(conn: &mut Conn, id: &str) -> Result<Element, ConnectError> {
    loop {
        let el = next_element(conn).await?;
        if !el.is("iq", ns::CLIENT) || el.attr("id") != Some(id) {
            continue;
        }
        return match el.attr("type") {
            Some("result") => Ok(el),
            _ => Err(ConnectError::Refused {
                step: id.to_owned(),
                condition: crate::error::stanza_error_condition(&el),
            }),
        };
    }
}

/// The next top-level element; a stream error or close ends the login.
async fn next_element(conn: &mut Conn) -> Result<Element, ConnectError> {
    match conn.next_event().await? {
        StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => Err(ConnectError::StreamError(
            crate::error::stream_error_condition(&el),
        )),
        StreamEvent::Stanza(el) => Ok(el),
        StreamEvent::Close => Err(ConnectError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the server closed the stream",
        ))),
        StreamEvent::Open(_) => Err(ConnectError::Protocol("unexpected stream header".into())),
    }
}

impl From<ReadError> for ConnectError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => ConnectError::Io(e),
            ReadError::Eof => ConnectError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            )),
            ReadError::Xml(e) => ConnectError::Protocol(format!("bad XML: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn plus_first_when_bound_and_plain_only_over_tls() {
        let all = names(&[
            "PLAIN",
            "SCRAM-SHA-1",
            "SCRAM-SHA-256",
            "SCRAM-SHA-256-PLUS",
        ]);
        assert_eq!(choose(&all, true, true), Some(Mechanism::ScramSha256Plus));
        assert_eq!(choose(&all, false, true), Some(Mechanism::ScramSha256));
        let prosody = names(&["SCRAM-SHA-1", "PLAIN"]);
        assert_eq!(choose(&prosody, true, true), Some(Mechanism::ScramSha1));
        let plain = names(&["PLAIN"]);
        assert_eq!(choose(&plain, false, true), Some(Mechanism::Plain));
        assert_eq!(choose(&plain, false, false), None);
        assert_eq!(choose(&[], true, true), None);
    }
}
