//! The raw test client: real TCP (and TLS), bytes in, parsed top-level elements out, plus
//! the steps of a client stream built on them (STARTTLS, bind, IQs; SASL is in `sasl.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use corvid_proto::ns;
use corvid_xml::{Element, Limits, StreamEvent, StreamHeader, StreamParser};
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::tls::{CbType, TlsOptions, client_tls_config};
use super::{DOMAIN, READ_TIMEOUT, message_body, stanza_error, stream_error_condition};

enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// While the TCP stream is handed to the TLS connector.
    Upgrading,
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Upgrading => Ok(0),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Conn::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Conn::Upgrading => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

/// What the server sent next.
#[derive(Debug)]
pub enum Incoming {
    /// A top-level element (stanza, features, SASL or stream error element).
    Element(Element),
    /// `</stream:stream>`.
    StreamClosed,
    /// The connection ended (EOF, reset, or a broken TLS layer).
    Disconnected,
    /// A stream header, for [`Client::read_stream_header`] only.
    HeaderRead,
}

/// How a connection ended, for tests that read whatever is left.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A stream error with this condition, then the stream was closed.
    StreamError(String),
    /// The connection was dropped without a stream error.
    Dropped,
}

/// A raw XMPP client over real TCP, for tests.
pub struct Client {
    conn: Conn,
    parser: StreamParser,
    /// Received bytes the parser has not consumed yet.
    pending: Vec<u8>,
    eof: bool,
    next_id: u64,
    /// How long each read waits for the server.
    pub timeout: Duration,
    /// The server's last stream header.
    pub header: Option<StreamHeader>,
    /// The server's last `<stream:features/>`.
    pub features: Option<Element>,
    /// The full JID bound on this stream.
    pub jid: Option<String>,
    /// `next_incoming` returns [`Incoming::HeaderRead`] on a stream header.
    stop_at_header: bool,
}

async fn tcp_from(local: std::net::IpAddr, addr: SocketAddr) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local, 0))?;
    let tcp = socket
        .connect(addr)
        .await
        .with_context(|| format!("connect from {local} to {addr}"))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

fn client_parser() -> StreamParser {
    // The server may send us a lot at once (floods, big stanzas): be generous.
    StreamParser::new(Limits {
        max_stanza_bytes: 16 * 1024 * 1024,
        max_depth: 256,
    })
}

impl Client {
    fn new(conn: Conn) -> Client {
        Client {
            conn,
            parser: client_parser(),
            pending: Vec::new(),
            eof: false,
            next_id: 1,
            timeout: READ_TIMEOUT,
            header: None,
            features: None,
            jid: None,
            stop_at_header: false,
        }
    }

    /// A plain TCP connection; nothing sent yet.
    pub async fn connect(addr: SocketAddr) -> Result<Client> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        Ok(Client::new(Conn::Plain(tcp)))
    }

    /// A plain TCP connection from the loopback address `local` (127.x.y.z: each is its
    /// own client address to the server's limits).
    pub async fn connect_from(local: std::net::IpAddr, addr: SocketAddr) -> Result<Client> {
        let tcp = tcp_from(local, addr).await?;
        Ok(Client::new(Conn::Plain(tcp)))
    }

    /// A direct-TLS connection from the loopback address `local`, handshake done.
    pub async fn connect_tls_from(
        local: std::net::IpAddr,
        addr: SocketAddr,
        options: &TlsOptions,
    ) -> Result<Client> {
        let tcp = tcp_from(local, addr).await?;
        let tls = tls_handshake(tcp, options).await?;
        Ok(Client::new(Conn::Tls(Box::new(tls))))
    }

    /// A plain TCP connection with a small receive buffer, so that a client that stops
    /// reading fills up quickly.
    pub async fn connect_with_recv_buffer(addr: SocketAddr, bytes: u32) -> Result<Client> {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(bytes)?;
        let tcp = socket
            .connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        Ok(Client::new(Conn::Plain(tcp)))
    }

    /// A direct-TLS connection (XEP-0368), handshake done; nothing sent yet.
    pub async fn connect_tls(addr: SocketAddr, options: &TlsOptions) -> Result<Client> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let tls = tls_handshake(tcp, options).await?;
        Ok(Client::new(Conn::Tls(Box::new(tls))))
    }

    /// Connected to the STARTTLS port, TLS negotiated, stream (re)opened: ready for SASL.
    pub async fn starttls_session(addr: SocketAddr) -> Result<Client> {
        let mut client = Client::connect(addr).await?;
        client.open_stream().await?;
        client.starttls().await?;
        Ok(client)
    }

    /// Connected to the direct-TLS port with ALPN `xmpp-client`, stream opened: ready for SASL.
    pub async fn direct_tls_session(addr: SocketAddr) -> Result<Client> {
        let mut client = Client::connect_tls(addr, &TlsOptions::direct()).await?;
        client.open_stream().await?;
        Ok(client)
    }

    /// Starts parsing a new stream from the server (after STARTTLS or SASL success).
    pub fn reset_parser(&mut self) {
        self.parser.reset();
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.conn, Conn::Tls(_))
    }

    pub fn bare_jid(&self) -> Option<String> {
        self.jid
            .as_ref()
            .map(|j| j.split('/').next().unwrap_or_default().to_string())
    }

    // --- sending -------------------------------------------------------------------------

    pub async fn send_raw(&mut self, data: impl AsRef<[u8]>) -> Result<()> {
        self.conn
            .write_all(data.as_ref())
            .await
            .context("send to server")
    }

    /// Sends an element as a top-level child of a `jabber:client` stream.
    pub async fn send(&mut self, el: &Element) -> Result<()> {
        let mut out = Vec::new();
        el.write_to(&mut out, ns::CLIENT);
        self.send_raw(out).await
    }

    /// A fresh stanza id.
    pub fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("t{}", self.next_id)
    }

    /// The initial stream header to `to`.
    pub fn stream_header(to: &str) -> String {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{to}' version='1.0' xml:lang='en'>",
            ns::CLIENT,
            ns::STREAM
        )
    }

    /// Opens (or restarts) the stream to `localhost` and reads the header and features.
    pub async fn open_stream(&mut self) -> Result<&Element> {
        self.send_raw(Client::stream_header(DOMAIN)).await?;
        self.read_features().await
    }

    /// Reads the stream header and features the server sends after our header.
    pub async fn read_features(&mut self) -> Result<&Element> {
        let features = self.recv().await.context("waiting for stream features")?;
        ensure!(self.header.is_some(), "features without a stream header");
        ensure!(
            features.is("features", ns::STREAM),
            "expected <stream:features/>, got {features}"
        );
        Ok(self.features.insert(features))
    }

    // --- receiving -----------------------------------------------------------------------

    /// Reads the server's stream header, when nothing else is expected before it (a
    /// component stream has no features to wait for).
    pub async fn read_stream_header(&mut self) -> Result<StreamHeader> {
        self.header = None;
        self.stop_at_header = true;
        let next = self.next_incoming().await;
        self.stop_at_header = false;
        match next? {
            Incoming::HeaderRead => self.header.clone().context("no header"),
            other => bail!("expected a stream header, got {other:?}"),
        }
    }

    /// The next thing the server sent: an element, the stream close or the disconnect.
    /// Stream headers are recorded in `self.header` and skipped.
    pub async fn next_incoming(&mut self) -> Result<Incoming> {
        let deadline = Instant::now() + self.timeout;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let mut input = &self.pending[..];
            let event = self.parser.next_event(&mut input);
            let consumed = self.pending.len() - input.len();
            self.pending.drain(..consumed);
            match event.map_err(|e| anyhow!("the server sent XML we cannot parse: {e}"))? {
                Some(StreamEvent::Open(header)) => {
                    self.header = Some(header);
                    if self.stop_at_header {
                        return Ok(Incoming::HeaderRead);
                    }
                    continue;
                }
                Some(StreamEvent::Stanza(el)) => return Ok(Incoming::Element(el)),
                Some(StreamEvent::Close) => return Ok(Incoming::StreamClosed),
                None => {}
            }
            if self.eof {
                return Ok(Incoming::Disconnected);
            }
            let n = match tokio::time::timeout_at(deadline, self.conn.read(&mut buf)).await {
                Err(_) => bail!("no data from the server within {:?}", self.timeout),
                Ok(Ok(n)) => n,
                // A reset, or TLS ending without close_notify: the connection is gone.
                Ok(Err(_)) => 0,
            };
            if n == 0 {
                self.eof = true;
            } else {
                self.pending.extend_from_slice(&buf[..n]);
            }
        }
    }

    /// The next top-level element; the stream ending instead is an error.
    pub async fn recv(&mut self) -> Result<Element> {
        match self.next_incoming().await? {
            Incoming::Element(el) => Ok(el),
            other => bail!("expected an element, but the server ended the stream: {other:?}"),
        }
    }

    /// The next element that is not a presence. The server reflects a session's own
    /// presence and broadcasts its siblings' (RFC 6121 §4.2.2), which tests about messages
    /// and IQs do not care about.
    pub async fn recv_skipping_presence(&mut self) -> Result<Element> {
        loop {
            let el = self.recv().await?;
            if !el.is("presence", ns::CLIENT) {
                return Ok(el);
            }
        }
    }

    /// Reads until an element matching `wanted` arrives; returns it and what was skipped.
    pub async fn recv_until(
        &mut self,
        wanted: impl Fn(&Element) -> bool,
    ) -> Result<(Element, Vec<Element>)> {
        let mut skipped = Vec::new();
        loop {
            let el = self.recv().await?;
            if wanted(&el) {
                return Ok((el, skipped));
            }
            skipped.push(el);
        }
    }

    /// Asserts the next element is a stream error with `condition`, followed by the
    /// closing stream tag and the end of the connection.
    pub async fn expect_stream_error(&mut self, condition: &str) -> Result<()> {
        let el = self
            .recv()
            .await
            .with_context(|| format!("waiting for stream error <{condition}/>"))?;
        let got = stream_error_condition(&el)
            .ok_or_else(|| anyhow!("expected stream error <{condition}/>, got {el}"))?;
        ensure!(
            got == condition,
            "expected stream error <{condition}/>, got <{got}/>: {el}"
        );
        self.expect_closed().await
    }

    /// Asserts the server sends `</stream:stream>` and then closes the connection.
    pub async fn expect_closed(&mut self) -> Result<()> {
        match self.next_incoming().await? {
            Incoming::StreamClosed => {}
            Incoming::Disconnected => bail!("the connection ended without </stream:stream>"),
            Incoming::Element(el) => bail!("expected </stream:stream>, got {el}"),
            Incoming::HeaderRead => bail!("expected </stream:stream>, got a stream header"),
        }
        match self.next_incoming().await? {
            Incoming::Disconnected => Ok(()),
            other => {
                bail!("expected the connection to close after </stream:stream>, got {other:?}")
            }
        }
    }

    /// Skips everything until the stream ends; says how it ended and what came before.
    pub async fn read_to_end(&mut self) -> Result<(Ending, Vec<Element>)> {
        let mut skipped = Vec::new();
        loop {
            match self.next_incoming().await? {
                Incoming::Element(el) => match stream_error_condition(&el) {
                    Some(cond) => {
                        // What follows a stream error is the close; it is not under test here.
                        let _ = self.next_incoming().await;
                        return Ok((Ending::StreamError(cond), skipped));
                    }
                    None => skipped.push(el),
                },
                Incoming::StreamClosed | Incoming::Disconnected | Incoming::HeaderRead => {
                    return Ok((Ending::Dropped, skipped));
                }
            }
        }
    }

    // --- TLS -----------------------------------------------------------------------------

    /// `<starttls/>`, `<proceed/>`, the handshake, and the stream restart.
    pub async fn starttls(&mut self) -> Result<()> {
        self.send_raw(format!("<starttls xmlns='{}'/>", ns::TLS))
            .await?;
        self.finish_starttls().await
    }

    /// The rest of STARTTLS once `<starttls/>` was sent: `<proceed/>`, the handshake, and
    /// the stream restart.
    pub async fn finish_starttls(&mut self) -> Result<()> {
        let reply = self.recv().await?;
        ensure!(
            reply.is("proceed", ns::TLS),
            "expected <proceed/>, got {reply}"
        );
        ensure!(
            self.pending.is_empty(),
            "the server sent data after <proceed/> before TLS"
        );
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Upgrading) else {
            bail!("STARTTLS on a connection that is not plain TCP");
        };
        let tls = tls_handshake(tcp, &TlsOptions::starttls()).await?;
        self.conn = Conn::Tls(Box::new(tls));
        self.parser.reset();
        self.open_stream().await?;
        Ok(())
    }

    fn tls_connection(&self) -> Option<&rustls::ClientConnection> {
        match &self.conn {
            Conn::Tls(tls) => Some(tls.get_ref().1),
            _ => None,
        }
    }

    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        self.tls_connection().and_then(|c| c.protocol_version())
    }

    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.tls_connection()
            .and_then(|c| c.alpn_protocol().map(|p| p.to_vec()))
    }

    /// This connection's channel binding data of type `cb`, computed on the client side.
    pub fn channel_binding(&self, cb: CbType) -> Result<(String, Vec<u8>)> {
        let conn = self
            .tls_connection()
            .ok_or_else(|| anyhow!("channel binding needs TLS"))?;
        let data = match cb {
            CbType::TlsExporter => conn
                .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                .map_err(|e| anyhow!("exporter: {e}"))?
                .to_vec(),
            CbType::TlsServerEndPoint => {
                let cert = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .ok_or_else(|| anyhow!("no server certificate"))?;
                // RFC 5929 §4.1: SHA-256 for certificates signed with SHA-1 or SHA-256.
                Sha256::digest(cert.as_ref()).to_vec()
            }
        };
        Ok((cb.name().to_string(), data))
    }

    // --- IQs and stanzas -----------------------------------------------------------------

    /// Sends an IQ request and returns the reply with the same id (result or error),
    /// which must be the next element the server sends, presence aside.
    pub async fn iq(&mut self, kind: &str, to: Option<&str>, payload: Element) -> Result<Element> {
        let id = self.next_id();
        let mut iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", kind)
            .with_attr("id", id.as_str());
        if let Some(to) = to {
            iq.set_attr("to", to);
        }
        iq.append_child(payload);
        self.send(&iq).await?;
        let reply = self
            .recv_skipping_presence()
            .await
            .with_context(|| format!("waiting for the reply to {iq}"))?;
        ensure!(
            reply.is("iq", ns::CLIENT) && reply.attr("id") == Some(id.as_str()),
            "expected the reply to {iq}, got {reply}"
        );
        Ok(reply)
    }

    /// An IQ that must succeed; returns the result.
    pub async fn iq_result(
        &mut self,
        kind: &str,
        to: Option<&str>,
        payload: Element,
    ) -> Result<Element> {
        let reply = self.iq(kind, to, payload).await?;
        ensure!(
            reply.attr("type") == Some("result"),
            "expected an IQ result, got {reply}"
        );
        Ok(reply)
    }

    /// An IQ that must fail; returns (error type, condition).
    pub async fn iq_error(
        &mut self,
        kind: &str,
        to: Option<&str>,
        payload: Element,
    ) -> Result<(String, String)> {
        let reply = self.iq(kind, to, payload).await?;
        ensure!(
            reply.attr("type") == Some("error"),
            "expected an IQ error, got {reply}"
        );
        stanza_error(&reply)
            .ok_or_else(|| anyhow!("error reply without a defined condition: {reply}"))
    }

    /// Binds `resource` (or lets the server choose) and returns the full JID.
    pub async fn bind(&mut self, resource: Option<&str>) -> Result<String> {
        let mut bind = Element::new("bind", ns::BIND);
        if let Some(resource) = resource {
            bind.append_child(Element::new("resource", ns::BIND).with_text(resource));
        }
        let reply = self.iq_result("set", None, bind).await?;
        let jid = reply
            .get_child("bind", ns::BIND)
            .and_then(|b| b.get_child("jid", ns::BIND))
            .map(|j| j.text())
            .ok_or_else(|| anyhow!("bind result without a JID: {reply}"))?;
        self.jid = Some(jid.clone());
        Ok(jid)
    }

    /// Pings the server and waits for the answer: since the server handles a stream's
    /// stanzas in order, everything sent before has been processed when this returns.
    pub async fn sync(&mut self) -> Result<()> {
        self.iq_result("get", Some(DOMAIN), Element::new("ping", ns::PING))
            .await
            .map(|_| ())
    }

    /// Initial presence with `priority`, processed by the server when this returns.
    pub async fn send_presence(&mut self, priority: i8) -> Result<()> {
        let presence = Element::new("presence", ns::CLIENT)
            .with_child(Element::new("priority", ns::CLIENT).with_text(priority.to_string()));
        self.send(&presence).await?;
        self.sync().await
    }

    /// Receives the next element and checks it is a message with `body`.
    pub async fn expect_message(&mut self, body: &str) -> Result<Element> {
        let el = self
            .recv_skipping_presence()
            .await
            .with_context(|| format!("waiting for the message {body:?}"))?;
        ensure!(
            el.is("message", ns::CLIENT),
            "expected a message with {body:?}, got {el}"
        );
        ensure!(
            message_body(&el).as_deref() == Some(body),
            "expected body {body:?}, got {el}"
        );
        Ok(el)
    }
}

async fn tls_handshake(
    tcp: TcpStream,
    options: &TlsOptions,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(client_tls_config(options));
    let name = ServerName::try_from(DOMAIN).expect("valid server name");
    tokio::time::timeout(READ_TIMEOUT, connector.connect(name, tcp))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake failed")
}
