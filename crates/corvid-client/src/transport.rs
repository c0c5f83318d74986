//! One client connection's bytes: the socket (plain or TLS), the incremental XML
//! framer, and a small read buffer whose unparsed tail survives between calls. Shared by
//! the SDK's stream and the load generator, which keeps thousands of these open at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use corvid_xml::{Limits, StreamEvent, StreamParser, XmlError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub mod websocket;

/// Bytes read at a time. Small on purpose: an idle session keeps it for its lifetime.
const READ_BUFFER: usize = 4096;

/// The socket under a stream: TCP, then TLS on it.
pub enum Io {
    /// Before STARTTLS (or with no TLS at all).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
    /// A WebSocket (RFC 7395) over either.
    WebSocket(Box<websocket::WebSocketIo>),
    /// Only while STARTTLS swaps the socket.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost during STARTTLS",
    )
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::WebSocket(s) => s.poll_read(cx, buf),
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::WebSocket(s) => s.poll_write(cx, buf),
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::WebSocket(s) => s.poll_flush(cx),
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::WebSocket(s) => s.poll_shutdown(cx),
            Io::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// Why reading the stream failed.
#[derive(Debug)]
pub enum ReadError {
    /// The socket failed.
    Io(io::Error),
    /// The peer closed the TCP connection.
    Eof,
    /// The peer sent bad XML (or broke a parser limit).
    Xml(XmlError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "I/O error: {e}"),
            ReadError::Eof => f.write_str("connection closed"),
            ReadError::Xml(e) => write!(f, "bad XML: {e}"),
        }
    }
}

/// An XML stream over a socket: reads into a small buffer and parses incrementally.
pub struct Conn {
    /// The socket.
    pub io: Io,
    parser: StreamParser,
    buf: Box<[u8]>,
    /// `buf[start..end]` is read but not yet parsed.
    start: usize,
    end: usize,
}

impl Conn {
    /// A stream over `io`, before any header.
    pub fn new(io: Io) -> Conn {
        Conn {
            io,
            parser: new_parser(),
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Starts a new stream (after STARTTLS or SASL success, RFC 6120 §4.3.3).
    pub fn reset_parser(&mut self) {
        self.parser.reset();
    }

    /// Forgets unparsed bytes (RFC 6120 §5.4.3.3: nothing from before the TLS handshake
    /// carries over).
    pub fn discard_buffered(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// The next event from bytes already read, if they complete one.
    pub fn parse_buffered(&mut self) -> Result<Option<StreamEvent>, ReadError> {
        if self.start == self.end {
            return Ok(None);
        }
        let mut input = &self.buf[self.start..self.end];
        let before = input.len();
        let event = self.parser.next_event(&mut input).map_err(ReadError::Xml)?;
        self.start += before - input.len();
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(event)
    }

    /// Reads more bytes once everything buffered has been parsed. Cancel-safe, so it
    /// can race a command channel in `select!`.
    pub async fn fill(&mut self) -> Result<(), ReadError> {
        debug_assert_eq!(self.start, self.end, "parse what is buffered first");
        let n = self.io.read(&mut self.buf).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Eof);
        }
        self.start = 0;
        self.end = n;
        Ok(())
    }

    /// The next stream event, reading as needed.
    pub async fn next_event(&mut self) -> Result<StreamEvent, ReadError> {
        loop {
            if let Some(event) = self.parse_buffered()? {
                return Ok(event);
            }
            self.fill().await?;
        }
    }

    /// Writes `bytes` and flushes them.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }
}

fn new_parser() -> StreamParser {
    StreamParser::new(Limits {
        // Room occupant lists and rosters arrive as many stanzas, none large.
        max_stanza_bytes: 1024 * 1024,
        max_depth: 64,
    })
}
