//! One server-to-server connection at the byte level: TCP, upgraded in place to TLS by
//! STARTTLS or before any XMPP (direct TLS), as a client or a server; the stream parser
//! over it, and the writing of stream headers and stream errors. Both directions build on
//! it.

use std::sync::Arc;

use corvid_proto::{StreamError, StreamErrorCondition as Cond, ns};
pub use corvid_xml::escape;
use corvid_xml::{Limits, StreamEvent, StreamParser};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// XEP-0220's namespace, bound to the `db` prefix in every stream header we write.
pub const NS_DIALBACK: &str = "jabber:server:dialback";
/// XEP-0220 §2.4: the stream feature announcing dialback (with error support).
pub const NS_DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";

/// Bytes read at a time.
const READ_BUFFER: usize = 16 * 1024;

enum Io {
    Plain(TcpStream),
    Accepted(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Connected(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Only while the TCP stream is handed to the TLS layer.
    Upgrading,
}

/// How a stream ended.
#[derive(Debug)]
pub enum End {
    /// The peer closed its stream or the connection (or sent a stream error).
    Closed,
    /// We end it with this stream error.
    Error(StreamError),
    Io(std::io::Error),
    /// The server is stopping.
    Shutdown,
    /// Nothing went either way for `idle_timeout_secs`.
    Idle,
}

impl End {
    pub fn error(condition: Cond, text: impl Into<String>) -> End {
        End::Error(StreamError::with_text(condition, text))
    }
}

pub struct Link {
    io: Io,
    parser: StreamParser,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The certificate chain the peer presented in the TLS handshake, if any.
    pub peer_certs: Vec<CertificateDer<'static>>,
}

impl Link {
    pub fn new(tcp: TcpStream, max_stanza_bytes: usize) -> Link {
        Link {
            io: Io::Plain(tcp),
            parser: StreamParser::new(Limits {
                max_stanza_bytes,
                max_depth: 64,
            }),
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            peer_certs: Vec::new(),
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.io {
            Io::Plain(s) => s.peer_addr().ok(),
            Io::Accepted(s) => s.get_ref().0.peer_addr().ok(),
            Io::Connected(s) => s.get_ref().0.peer_addr().ok(),
            Io::Upgrading => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Accepted(_) | Io::Connected(_))
    }

    /// Whether received bytes wait to be parsed.
    pub fn buffered(&self) -> bool {
        self.start < self.end
    }

    /// The next event, reading as needed.
    pub async fn next(&mut self) -> Result<StreamEvent, End> {
        loop {
            if let Some(event) = self.parse_buffered()? {
                return Ok(event);
            }
            self.read_more().await?;
        }
    }

    /// The next event from what was already read, if it completes one.
    pub fn parse_buffered(&mut self) -> Result<Option<StreamEvent>, End> {
        while self.start < self.end {
            let mut input = &self.buf[self.start..self.end];
            let before = input.len();
            let event = self.parser.next_event(&mut input);
            self.start += before - input.len();
            match event {
                Ok(Some(event)) => return Ok(Some(event)),
                Ok(None) => {}
                Err(e) => {
                    let condition = Cond::from_name(e.condition()).unwrap_or(Cond::NotWellFormed);
                    return Err(End::Error(StreamError::with_text(condition, e.to_string())));
                }
            }
        }
        Ok(None)
    }

    /// Reads once more from the connection; only when nothing is buffered. Cancel-safe.
    pub async fn read_more(&mut self) -> Result<(), End> {
        debug_assert!(!self.buffered());
        let n = match &mut self.io {
            Io::Plain(s) => s.read(&mut self.buf).await,
            Io::Accepted(s) => s.read(&mut self.buf).await,
            Io::Connected(s) => s.read(&mut self.buf).await,
            Io::Upgrading => Ok(0),
        }
        .map_err(End::Io)?;
        if n == 0 {
            return Err(End::Closed);
        }
        self.start = 0;
        self.end = n;
        Ok(())
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        let written = match &mut self.io {
            Io::Plain(s) => s.write_all(bytes).await,
            Io::Accepted(s) => match s.write_all(bytes).await {
                Ok(()) => s.flush().await,
                Err(e) => Err(e),
            },
            Io::Connected(s) => match s.write_all(bytes).await {
                Ok(()) => s.flush().await,
                Err(e) => Err(e),
            },
            Io::Upgrading => Err(std::io::ErrorKind::NotConnected.into()),
        };
        written.map_err(End::Io)
    }

    /// A new stream on the same connection (after TLS or SASL): a fresh parser.
    pub fn restart(&mut self) {
        self.parser.reset();
    }

    fn take_tcp(&mut self) -> Result<TcpStream, End> {
        if self.buffered() {
            // RFC 6120 §5.4.3.3: nothing may follow <starttls/> before the handshake.
            return Err(End::error(Cond::NotWellFormed, "Data after STARTTLS"));
        }
        match std::mem::replace(&mut self.io, Io::Upgrading) {
            Io::Plain(tcp) => Ok(tcp),
            _ => Err(End::error(Cond::UndefinedCondition, "TLS is already on")),
        }
    }

    /// The server side of STARTTLS, after `<proceed/>` was written; or of direct TLS, first.
    pub async fn accept_tls(&mut self, config: Arc<rustls::ServerConfig>) -> Result<(), End> {
        let tcp = self.take_tcp()?;
        let tls = tokio_rustls::TlsAcceptor::from(config)
            .accept(tcp)
            .await
            .map_err(End::Io)?;
        self.peer_certs = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        self.io = Io::Accepted(Box::new(tls));
        self.restart();
        Ok(())
    }

    /// The client side of STARTTLS to `domain`, after `<proceed/>` was read; or of direct
    /// TLS, first (`domain` is the SNI either way).
    pub async fn connect_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        domain: &str,
    ) -> Result<(), End> {
        let tcp = self.take_tcp()?;
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|_| End::error(Cond::HostUnknown, "Not a domain name"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(End::Io)?;
        self.peer_certs = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        self.io = Io::Connected(Box::new(tls));
        self.restart();
        Ok(())
    }

    /// Ends the stream as `end` says (stream error, close tag) and the connection.
    pub async fn finish(&mut self, end: &End) {
        let error = match end {
            End::Error(error) => Some(error.clone()),
            End::Shutdown => Some(StreamError::new(Cond::SystemShutdown)),
            End::Idle => None,
            End::Closed => None,
            End::Io(_) => {
                self.shutdown().await;
                return;
            }
        };
        let mut bytes = Vec::new();
        if let Some(error) = error {
            bytes.extend_from_slice(b"<stream:error>");
            for child in error.to_element().children() {
                bytes.extend_from_slice(&child.to_bytes(ns::STREAM));
            }
            bytes.extend_from_slice(b"</stream:error>");
        }
        bytes.extend_from_slice(b"</stream:stream>");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.write(&bytes)).await;
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        let _ = match &mut self.io {
            Io::Plain(s) => s.shutdown().await,
            Io::Accepted(s) => s.shutdown().await,
            Io::Connected(s) => s.shutdown().await,
            Io::Upgrading => Ok(()),
        };
    }
}

/// A stream header in `jabber:server` with the dialback prefix declared (RFC 6120 §4.7,
/// XEP-0220 §2.1); `id` only on the receiving side.
pub fn header(from: &str, to: Option<&str>, id: Option<&str>) -> String {
    let to = to
        .map(|to| format!(" to='{}'", escape(to)))
        .unwrap_or_default();
    let id = id
        .map(|id| format!(" id='{}'", escape(id)))
        .unwrap_or_default();
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' xmlns:db='{NS_DIALBACK}' from='{}'{to}{id} version='1.0'>",
        ns::SERVER,
        ns::STREAM,
        escape(from),
    )
}
