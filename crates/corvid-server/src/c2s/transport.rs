//! The byte stream under an XMPP stream: plain TCP until STARTTLS, then TLS. A TLS 1.3
//! session is rustls's only for its handshake; its records are then protected by
//! [`Records`], which keeps no buffer while the session is idle.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::records::{self, HandshakeIo, Records, Secured, TrafficSecrets};

pub enum Transport {
    Plain(TcpStream),
    /// TLS kept by rustls (TLS 1.2).
    Tls(Box<TlsStream<HandshakeIo>>),
    /// TLS 1.3 after the handshake.
    Records(Box<Records>),
    /// Briefly, while the TCP stream is handed to the TLS acceptor.
    Upgrading,
}

const READ_BUFFER: usize = 4096;

thread_local! {
    /// One read buffer per runtime thread instead of one per session: an idle session
    /// keeps no read buffer (DESIGN.md: no large per-session buffers while idle).
    static READ_BUF: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; READ_BUFFER].into_boxed_slice());
}

/// A TLS handshake's outcome: the secured transport and, on TLS 1.3, the RFC 9266
/// `tls-exporter` channel binding.
pub struct Secure {
    pub transport: Transport,
    pub tls_exporter: Option<Vec<u8>>,
}

/// Runs the TLS handshake on `tcp` and hands TLS 1.3 sessions over to [`Records`].
pub async fn accept_tls(config: &Arc<ServerConfig>, tcp: TcpStream) -> io::Result<Secure> {
    // This connection's own copy of the config, whose key log keeps the traffic secrets
    // that a later KeyUpdate needs (rustls hands out only the current keys).
    let secrets = Arc::new(TrafficSecrets::default());
    let mut config = ServerConfig::clone(config);
    config.key_log = secrets.clone();
    let tls = TlsAcceptor::from(Arc::new(config))
        .accept(HandshakeIo::new(tcp))
        .await?;
    let conn = tls.get_ref().1;
    // RFC 9266: tls-exporter is defined for TLS 1.3 (and 1.2 only with extended master
    // secret, which we cannot confirm from here), so offer it on 1.3 only.
    let tls_exporter = (conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
        .then(|| {
            conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                .ok()
        })
        .flatten()
        .map(|k| k.to_vec());
    let transport = match records::take_over(tls, &secrets) {
        Secured::Records(records) => Transport::Records(records),
        Secured::Rustls(tls) => Transport::Tls(tls),
        Secured::Failed => return Err(io::Error::other("TLS keys could not be taken over")),
    };
    Ok(Secure {
        transport,
        tls_exporter,
    })
}

impl Transport {
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_) | Transport::Records(_))
    }

    /// Reads what the transport has into `into` (replacing its contents); `Ok(0)` is the
    /// end of the stream. Plain and rustls streams read through the thread's shared
    /// buffer, which is never held across a suspension point.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        let stream: Pin<&mut (dyn AsyncRead + Unpin)> = match self {
            Transport::Records(records) => return records.poll_read_into(cx, into, READ_BUFFER),
            Transport::Plain(s) => Pin::new(s),
            Transport::Tls(s) => Pin::new(s.as_mut()),
            Transport::Upgrading => return Poll::Ready(Err(gone())),
        };
        READ_BUF.with_borrow_mut(|buf| {
            let mut read = ReadBuf::new(buf);
            match stream.poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    into.clear();
                    into.extend_from_slice(read.filled());
                    Poll::Ready(Ok(read.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    }

    fn writer(&mut self) -> Option<Pin<&mut (dyn AsyncWrite + Unpin)>> {
        match self {
            Transport::Plain(s) => Some(Pin::new(s)),
            Transport::Tls(s) => Some(Pin::new(s.as_mut())),
            Transport::Records(s) => Some(Pin::new(s.as_mut())),
            Transport::Upgrading => None,
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "transport is being upgraded")
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().writer() {
            Some(w) => w.poll_write(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().writer() {
            Some(w) => w.poll_flush(cx),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().writer() {
            Some(w) => w.poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}
