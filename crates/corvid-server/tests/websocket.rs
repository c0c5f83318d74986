//! XMPP over WebSocket (RFC 7395) against a real server over a real socket: the `xmpp`
//! subprotocol, `<open/>`/`<close/>` framing, one standalone element per message, the same
//! stream as TCP behind it (SASL, restart, bind, stanzas to and from a TCP client), and the
//! limits: browsers' `Origin`, binary messages, oversized messages, garbage.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use common::{TestServer, TlsOptions, client_tls_config, message, message_body, start_server_with};
use corvid_client::transport::Io;
use corvid_proto::ns;
use corvid_xml::Element;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;

const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
const WAIT: Duration = Duration::from_secs(5);

struct Ws {
    socket: WebSocketStream<Io>,
    /// The subprotocol the server chose.
    protocol: Option<String>,
}

impl Ws {
    async fn connect(ts: &TestServer, origin: Option<&str>) -> Result<Ws> {
        let addr = ts.http_addr.context("no HTTP listener")?;
        let io = Io::Plain(TcpStream::connect(addr).await?);
        Ws::over(io, &format!("ws://{addr}/xmpp-websocket"), origin).await
    }

    /// Over the HTTPS listener (`wss://`).
    async fn connect_tls(ts: &TestServer) -> Result<Ws> {
        let addr = ts.https_addr.context("no HTTPS listener")?;
        let options = TlsOptions {
            alpn: vec![b"http/1.1".to_vec()],
            ..TlsOptions::starttls()
        };
        let connector = tokio_rustls::TlsConnector::from(client_tls_config(&options));
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let tls = connector.connect(name, tcp).await?;
        Ws::over(
            Io::Tls(Box::new(tls)),
            &format!("wss://localhost:{}/xmpp-websocket", addr.port()),
            None,
        )
        .await
    }

    async fn over(io: Io, url: &str, origin: Option<&str>) -> Result<Ws> {
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "xmpp".parse()?);
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse()?);
        }
        let (socket, response) = tokio_tungstenite::client_async(request, io).await?;
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|p| p.to_str().ok())
            .map(str::to_owned);
        Ok(Ws { socket, protocol })
    }

    async fn send(&mut self, text: &str) -> Result<()> {
        self.socket.send(Message::text(text)).await?;
        Ok(())
    }

    /// The next text message, parsed on its own (so it must stand alone).
    async fn recv(&mut self) -> Result<Element> {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .context("nothing from the server in time")?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    return corvid_xml::parse_element(text.as_str(), "")
                        .with_context(|| format!("a message that does not stand alone: {text}"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => bail!("not a text message: {other:?}"),
            }
        }
    }

    /// Waits for the server to close the WebSocket.
    async fn closed(&mut self) -> Result<()> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Err(_) => bail!("not closed in time"),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Ok(()),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    async fn open(&mut self) -> Result<Element> {
        self.send(&format!(
            "<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
        ))
        .await?;
        let open = self.recv().await?;
        ensure!(open.is("open", FRAMING), "{open}");
        let features = self.recv().await?;
        ensure!(features.is("features", ns::STREAM), "{features}");
        Ok(features)
    }

    /// SASL PLAIN, the restart, and a bound resource.
    async fn login(&mut self, user: &str, password: &str) -> Result<String> {
        let features = self.open().await?;
        let mechanisms: Vec<String> = features
            .get_child("mechanisms", ns::SASL)
            .map(|m| m.children().map(Element::text).collect())
            .unwrap_or_default();
        ensure!(
            mechanisms.iter().any(|m| m == "PLAIN"),
            "loopback is secure: PLAIN offered ({mechanisms:?})"
        );
        ensure!(
            features.get_child("starttls", ns::TLS).is_none(),
            "no STARTTLS over WebSocket"
        );
        let initial =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{initial}</auth>",
            ns::SASL
        ))
        .await?;
        let success = self.recv().await?;
        ensure!(success.is("success", ns::SASL), "{success}");
        let features = self.open().await?;
        ensure!(features.get_child("bind", ns::BIND).is_some(), "{features}");
        self.send(&format!(
            "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{}'><resource>web</resource></bind></iq>",
            ns::BIND
        ))
        .await?;
        let bound = self.recv().await?;
        ensure!(
            bound.is("iq", ns::CLIENT) && bound.attr("type") == Some("result"),
            "{bound}"
        );
        let jid = bound
            .get_child("bind", ns::BIND)
            .and_then(|b| b.get_child("jid", ns::BIND))
            .map(Element::text)
            .context("no JID bound")?;
        Ok(jid)
    }
}

async fn server() -> Result<TestServer> {
    let ts = start_server_with(|config| {
        config.http.origins = vec!["https://chat.example.org".into()];
    })
    .await?;
    ts.create_user("juliet", "pw").await?;
    ts.create_user("romeo", "pw").await?;
    Ok(ts)
}

#[tokio::test]
async fn a_websocket_client_logs_in_and_chats_with_a_tcp_client() -> Result<()> {
    let ts = server().await?;
    let mut ws = Ws::connect(&ts, Some("https://chat.example.org")).await?;
    ensure!(ws.protocol.as_deref() == Some("xmpp"), "{:?}", ws.protocol);
    let jid = ws.login("juliet", "pw").await?;
    ensure!(jid == "juliet@localhost/web", "{jid}");
    ws.send("<presence xmlns='jabber:client'/>").await?;

    let mut romeo = ts.login("romeo", "pw", Some("tcp")).await?;
    romeo.send(&Element::new("presence", ns::CLIENT)).await?;
    romeo
        .send(&message("juliet@localhost/web", "chat", "over the socket"))
        .await?;
    let got = loop {
        let el = ws.recv().await?;
        if el.is("message", ns::CLIENT) {
            break el;
        }
    };
    ensure!(
        message_body(&got).as_deref() == Some("over the socket")
            && got.attr("from") == Some("romeo@localhost/tcp"),
        "{got}"
    );
    ws.send(
        "<message xmlns='jabber:client' to='romeo@localhost/tcp' type='chat'><body>and back</body></message>",
    )
    .await?;
    let back = romeo.recv_skipping_presence().await?;
    ensure!(
        message_body(&back).as_deref() == Some("and back")
            && back.attr("from") == Some("juliet@localhost/web"),
        "{back}"
    );

    // The client closes: <close/> back, then the socket closes.
    ws.send(&format!("<close xmlns='{FRAMING}'/>")).await?;
    let close = loop {
        let el = ws.recv().await?;
        if el.name() == "close" {
            break el;
        }
    };
    ensure!(close.is("close", FRAMING), "{close}");
    ws.closed().await?;
    Ok(())
}

#[tokio::test]
async fn a_page_from_another_origin_is_refused() -> Result<()> {
    let ts = server().await?;
    let refused = Ws::connect(&ts, Some("https://evil.example.com")).await;
    let error = refused.err().context("connected from a foreign origin")?;
    ensure!(error.to_string().contains("403"), "{error}");
    // Not from a browser (no Origin): let through.
    Ws::connect(&ts, None).await?;
    Ok(())
}

#[tokio::test]
async fn binary_messages_end_the_connection() -> Result<()> {
    let ts = server().await?;
    let mut ws = Ws::connect(&ts, None).await?;
    ws.open().await?;
    ws.socket
        .send(Message::binary(b"<presence/>".to_vec()))
        .await?;
    ws.closed().await
}

#[tokio::test]
async fn garbage_gets_a_stream_error_and_a_close() -> Result<()> {
    let ts = server().await?;
    let mut ws = Ws::connect(&ts, None).await?;
    ws.open().await?;
    ws.send("<message><unclosed").await?;
    ws.send("</wrong>").await?;
    let error = ws.recv().await?;
    ensure!(error.is("error", ns::STREAM), "{error}");
    let close = ws.recv().await?;
    ensure!(close.is("close", FRAMING), "{close}");
    ws.closed().await
}

#[tokio::test]
async fn an_oversized_message_closes_the_connection() -> Result<()> {
    let ts = server().await?;
    let max = ts.server.config.limits.max_stanza_bytes;
    let mut ws = Ws::connect(&ts, None).await?;
    ws.open().await?;
    let body = "x".repeat(max + 1);
    let _ = ws
        .send(&format!(
            "<message xmlns='jabber:client'><body>{body}</body></message>"
        ))
        .await;
    ws.closed().await
}

#[tokio::test]
async fn host_meta_points_at_the_websocket_and_bosh_endpoints() -> Result<()> {
    let ts = server().await?;
    let addr = ts.http_addr.context("no HTTP listener")?;
    for path in ["/.well-known/host-meta", "/.well-known/host-meta.json"] {
        let body = http_get(addr, path).await?;
        ensure!(
            body.contains(&format!("ws://{addr}/xmpp-websocket")),
            "{path}: {body}"
        );
        ensure!(
            body.contains(&format!("http://{addr}/http-bind")),
            "{path}: {body}"
        );
    }
    Ok(())
}

/// A GET over HTTP/1.1; the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut response = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut response)).await??;
    ensure!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").context("no body")?;
    Ok(body.to_owned())
}

#[tokio::test]
async fn a_websocket_over_https_logs_in() -> Result<()> {
    let ts = server().await?;
    let mut ws = Ws::connect_tls(&ts).await?;
    ensure!(ws.protocol.as_deref() == Some("xmpp"), "{:?}", ws.protocol);
    let jid = ws.login("juliet", "pw").await?;
    ensure!(jid == "juliet@localhost/web", "{jid}");
    Ok(())
}

/// Stream management (XEP-0198) works over WebSocket as over TCP: a socket that is lost
/// with a message unacknowledged is resumed on a new socket, which gets the message again.
#[tokio::test]
async fn a_lost_websocket_session_is_resumed_on_a_new_one() -> Result<()> {
    let ts = server().await?;
    let mut ws = Ws::connect(&ts, None).await?;
    ws.login("juliet", "pw").await?;
    ws.send(&format!("<enable xmlns='{}' resume='true'/>", ns::SM))
        .await?;
    let enabled = ws.recv().await?;
    ensure!(enabled.is("enabled", ns::SM), "{enabled}");
    let previd = enabled.attr("id").context("no resumption id")?.to_owned();
    ws.send("<presence xmlns='jabber:client'/>").await?;

    let mut romeo = ts.login("romeo", "pw", Some("tcp")).await?;
    romeo
        .send(&message("juliet@localhost/web", "chat", "are you there?"))
        .await?;
    loop {
        let el = ws.recv().await?;
        if el.is("message", ns::CLIENT) {
            break;
        }
    }
    // Lost without a word, the message never acknowledged.
    drop(ws);

    let mut again = Ws::connect(&ts, None).await?;
    let features = again.open().await?;
    ensure!(features.get_child("mechanisms", ns::SASL).is_some());
    let initial = base64::engine::general_purpose::STANDARD.encode("\0juliet\0pw");
    again
        .send(&format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{initial}</auth>",
            ns::SASL
        ))
        .await?;
    ensure!(again.recv().await?.is("success", ns::SASL));
    again.open().await?;
    again
        .send(&format!(
            "<resume xmlns='{}' previd='{previd}' h='0'/>",
            ns::SM
        ))
        .await?;
    let resumed = again.recv().await?;
    ensure!(resumed.is("resumed", ns::SM), "{resumed}");
    let resent = loop {
        let el = again.recv().await?;
        if el.is("message", ns::CLIENT) {
            break el;
        }
    };
    ensure!(
        message_body(&resent).as_deref() == Some("are you there?"),
        "{resent}"
    );
    Ok(())
}
