//! A TLS 1.2 session, on rustls's unbuffered connection for its whole life.
//!
//! The handshake runs on the unbuffered connection before the version is known, and an
//! unbuffered connection cannot become a buffered one; the record layer of this crate is
//! TLS 1.3 only. So a TLS 1.2 session keeps rustls's connection and only the byte buffers
//! live here (none allocated while idle). rustls does all the protocol: it refuses a
//! renegotiation with a no_renegotiation alert (RFC 5746 §4.4 lets a server do so), sends
//! its fatal alerts, and handles close_notify.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustls::server::ServerConnectionData;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncryptError, InsufficientSizeError, WriteTraffic};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use zeroize::Zeroize;

use super::handshake::{Handshaken, encode, send_alert};
use super::invalid;

/// RFC 5246 §6.2.3: a TLS 1.2 record is at most 2^14 + 2048 bytes after its header; the
/// buffer holds at most one incomplete record and one read.
const READ_CHUNK: usize = 4096;
const MAX_BUFFERED: usize = 5 + (1 << 14) + 2048 + READ_CHUNK;

pub struct Tls12 {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    /// Received records rustls has not discarded yet.
    incoming: Vec<u8>,
    /// Decrypted application data not read yet.
    plain: Vec<u8>,
    /// Records to send.
    out: Vec<u8>,
    /// `incoming` holds records not shown to rustls yet (sent with the client's Finished).
    unprocessed: bool,
    peer_closed: bool,
    close_sent: bool,
}

impl Tls12 {
    pub fn new(hs: Handshaken) -> Tls12 {
        Tls12 {
            unprocessed: !hs.rest.is_empty(),
            tcp: hs.tcp,
            conn: hs.conn,
            incoming: hs.rest,
            plain: Vec::new(),
            out: Vec::new(),
            peer_closed: false,
            close_sent: false,
        }
    }

    /// As [`super::Records::poll_read_into`].
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut Vec<u8>,
        max: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        let max = max.max(1);
        into.clear();
        if self.plain.is_empty() {
            if self.peer_closed {
                return Poll::Ready(Ok(None));
            }
            let mut n = 0;
            // Bytes that came with the client's Finished are processed before reading more.
            if !std::mem::take(&mut self.unprocessed) {
                let mut chunk = [0u8; READ_CHUNK];
                let mut read = ReadBuf::new(&mut chunk);
                ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read))?;
                n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(if self.incoming.is_empty() {
                        Ok(None)
                    } else {
                        Err(invalid("TLS record cut off"))
                    });
                }
                self.incoming.extend_from_slice(read.filled());
            }
            let processed = self.process();
            let _ = self.poll_drain(cx);
            processed?;
            if self.incoming.len() > MAX_BUFFERED {
                return Poll::Ready(Err(invalid("TLS record too large")));
            }
            if self.incoming.is_empty() {
                self.incoming = Vec::new();
            }
            if self.plain.is_empty() && self.peer_closed {
                return Poll::Ready(Ok(None));
            }
            self.give(into, max);
            return Poll::Ready(Ok(Some(n)));
        }
        self.give(into, max);
        Poll::Ready(Ok(Some(0)))
    }

    fn give(&mut self, into: &mut Vec<u8>, max: usize) {
        let take = self.plain.len().min(max);
        into.extend_from_slice(&self.plain[..take]);
        self.plain.drain(..take);
        if self.plain.is_empty() {
            self.plain.zeroize();
            self.plain = Vec::new();
        }
    }

    /// Lets rustls process every complete record in `incoming`: application data goes to
    /// `plain`, records rustls wants to send (alerts) to `out`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let mut discard = status.discard;
            let more = match status.state {
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    while let Some(record) = records.next_record() {
                        let record =
                            record.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        discard += record.discard;
                        self.plain.extend_from_slice(record.payload);
                    }
                    true
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut self.out, |o| data.encode(o))?;
                    true
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    // `out` goes out with the next drain.
                    data.done();
                    true
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    true
                }
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    false
                }
                Ok(_) => false,
                Err(e) => {
                    send_alert(&mut self.conn, &mut self.out);
                    self.close_sent = true;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            };
            self.incoming.drain(..discard);
            if !more {
                return Ok(());
            }
        }
    }

    /// Runs `f` with rustls's write side, once it is available. rustls sees the same
    /// buffer as when reading (it may hold part of a record, or of a handshake message
    /// rustls is joining); everything complete in it was processed by the last read.
    fn with_writer(
        &mut self,
        f: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut f = Some(f);
        for _ in 0..8 {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let mut discard = status.discard;
            let result = match status.state {
                Ok(ConnectionState::WriteTraffic(mut w)) => match f.take() {
                    Some(f) => Some(f(&mut w, &mut self.out)),
                    None => Some(Err(io::ErrorKind::BrokenPipe.into())),
                },
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    while let Some(record) = records.next_record() {
                        let record =
                            record.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        discard += record.discard;
                        self.plain.extend_from_slice(record.payload);
                    }
                    None
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut self.out, |o| data.encode(o))?;
                    None
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    None
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    None
                }
                Ok(_) => Some(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "TLS connection cannot send",
                ))),
                Err(e) => Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
            };
            self.incoming.drain(..discard);
            if let Some(result) = result {
                return result;
            }
        }
        Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "TLS connection cannot send",
        ))
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        self.out = Vec::new();
        Poll::Ready(Ok(()))
    }
}

/// Encrypts into the free end of `out`, growing it as rustls asks.
fn encrypt(
    out: &mut Vec<u8>,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
    hint: usize,
) -> io::Result<()> {
    let start = out.len();
    out.resize(start + hint, 0);
    loop {
        match encrypt(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                out.resize(start + required_size, 0);
            }
            Err(e) => {
                out.truncate(start);
                return Err(io::Error::other(e));
            }
        }
    }
}

impl Drop for Tls12 {
    fn drop(&mut self) {
        self.plain.zeroize();
    }
}

impl AsyncWrite for Tls12 {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        this.with_writer(|w, out| encrypt(out, |o| w.encrypt(buf, o), buf.len() + 64))?;
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.close_sent = true;
            // RFC 5246 §7.2.1: close_notify before closing.
            let _ = this.with_writer(|w, out| encrypt(out, |o| w.queue_close_notify(o), 64));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}
