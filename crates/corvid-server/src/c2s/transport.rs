//! The byte stream under an XMPP stream: plain TCP until STARTTLS, then TLS. The handshake
//! runs on rustls's unbuffered connection ([`records::handshake`]); a TLS 1.3 session is
//! then handed to [`Records`], which keeps rustls's key schedule and no buffer while the
//! session is idle, and a TLS 1.2 session stays on rustls ([`Tls12`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::{ProtocolVersion, ServerConfig, SupportedCipherSuite};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::bridge::Bridge;
use super::records::{self, ExporterSecret, Records, Tls12};

pub enum Transport {
    Plain(TcpStream),
    /// TLS 1.2, kept by rustls.
    Tls12(Box<Tls12>),
    /// TLS 1.3 after the handshake.
    Records(Box<Records>),
    /// Messages from a WebSocket or BOSH carrier (`bridge.rs`).
    Bridge(Box<Bridge>),
    /// Briefly, while the TCP stream is handed to the TLS handshake.
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

/// Runs the TLS handshake on `tcp`; TLS 1.3 sessions go to [`Records`].
pub async fn accept_tls(config: &Arc<ServerConfig>, tcp: TcpStream) -> io::Result<Secure> {
    // This connection's own copy of the config, whose key log keeps the exporter secret
    // the tls-exporter binding derives from (see records::exporter). rustls drops the copy
    // with the handshake state.
    let exporter = Arc::new(ExporterSecret::default());
    let mut config = ServerConfig::clone(config);
    config.key_log = exporter.clone();
    let hs = records::handshake(Arc::new(config), tcp).await?;
    if hs.conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        // RFC 9266 §3: tls-exporter is defined for TLS 1.3 (and 1.2 only with extended
        // master secret, which rustls does not report), so it is offered on 1.3 only.
        return Ok(Secure {
            transport: Transport::Tls12(Box::new(Tls12::new(hs))),
            tls_exporter: None,
        });
    }
    let tls_exporter = match hs.conn.negotiated_cipher_suite() {
        Some(SupportedCipherSuite::Tls13(suite)) => exporter.take_binding(suite),
        _ => None,
    };
    Ok(Secure {
        transport: Transport::Records(Box::new(Records::take_over(hs)?)),
        tls_exporter,
    })
}

impl Transport {
    /// Whether what the client sends is protected from eavesdroppers (TLS here, or the
    /// carrier's own HTTPS, loopback or trusted proxy).
    pub fn is_tls(&self) -> bool {
        match self {
            Transport::Tls12(_) | Transport::Records(_) => true,
            Transport::Bridge(bridge) => bridge.is_secure(),
            Transport::Plain(_) | Transport::Upgrading => false,
        }
    }

    /// Whether STARTTLS can be offered: on plain TCP only (a carrier secures itself).
    pub fn can_starttls(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    /// Reads what the transport has into `into` (replacing its contents). `Ok(Some(n))`:
    /// `n` bytes came off the socket, which is what a rate limit counts (under TLS, `into`
    /// holds the plaintext, possibly none); `Ok(None)` is the end of the stream. Plain
    /// streams read through the thread's shared buffer, never held across a suspension.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut Vec<u8>,
    ) -> Poll<io::Result<Option<usize>>> {
        let stream = match self {
            Transport::Records(records) => return records.poll_read_into(cx, into, READ_BUFFER),
            Transport::Tls12(tls) => return tls.poll_read_into(cx, into, READ_BUFFER),
            Transport::Bridge(bridge) => return bridge.poll_read_into(cx, into),
            Transport::Plain(s) => Pin::new(s),
            Transport::Upgrading => return Poll::Ready(Err(gone())),
        };
        READ_BUF.with_borrow_mut(|buf| {
            let mut read = ReadBuf::new(buf);
            match stream.poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    into.clear();
                    into.extend_from_slice(read.filled());
                    let n = read.filled().len();
                    Poll::Ready(Ok((n > 0).then_some(n)))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    }

    fn writer(&mut self) -> Option<Pin<&mut (dyn AsyncWrite + Unpin)>> {
        match self {
            Transport::Plain(s) => Some(Pin::new(s)),
            Transport::Tls12(s) => Some(Pin::new(s.as_mut())),
            Transport::Records(s) => Some(Pin::new(s.as_mut())),
            Transport::Bridge(s) => Some(Pin::new(s.as_mut())),
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
