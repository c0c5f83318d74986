//! The TLS handshake, on rustls's unbuffered server connection, driven over the socket by a
//! small loop that hands rustls exactly one complete record at a time.
//!
//! Why one record at a time: once the client's Finished is processed the handshake is over,
//! and every later record (application data, a KeyUpdate, close_notify) belongs to the
//! record layer that takes over from rustls ([`super::Records`]). Had rustls been given two
//! records, it would have processed the second too, and its effect (new keys, a queued
//! KeyUpdate reply) would be lost at the handover (records review, finding 2). So the loop
//! stops as soon as rustls says the handshake is done, and what follows in the buffer is
//! the record layer's.

use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, InsufficientSizeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::HEADER_LEN;

/// RFC 8446 §5.1 and RFC 5246 §6.2.3: the largest record rustls accepts during a handshake
/// (TLS 1.2 ciphertext: 2^14 + 2048).
const MAX_HANDSHAKE_RECORD: usize = (1 << 14) + 2048;
/// A handshake message may span records; rustls joins them in our buffer. It refuses
/// messages over 64 KiB, so the buffer never needs more than that and one record.
const MAX_HANDSHAKE_BUFFER: usize = 0x1_0000 + HEADER_LEN + MAX_HANDSHAKE_RECORD;

/// A finished handshake: rustls's connection, the socket, and the bytes the client sent
/// after its Finished (not seen by rustls).
pub struct Handshaken {
    pub conn: UnbufferedServerConnection,
    pub tcp: TcpStream,
    pub rest: Vec<u8>,
}

/// Runs the server side of a TLS handshake on `tcp`.
pub async fn handshake(config: Arc<ServerConfig>, mut tcp: TcpStream) -> io::Result<Handshaken> {
    let mut conn = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
    // `buf[..fed]` is what rustls has been given and has not discarded yet.
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut out: Vec<u8> = Vec::new();
    loop {
        let status = conn.process_tls_records(&mut buf[..fed]);
        let discard = status.discard;
        let step = match status.state {
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                encode(&mut out, |o| data.encode(o))?;
                Step::Next
            }
            Ok(ConnectionState::TransmitTlsData(data)) => {
                data.done();
                Step::Transmit
            }
            Ok(ConnectionState::BlockedHandshake) => Step::Read,
            Ok(ConnectionState::WriteTraffic(_)) => Step::Done,
            Ok(other) => {
                return Err(invalid(&format!(
                    "unexpected TLS state during the handshake: {other:?}"
                )));
            }
            Err(e) => {
                // rustls queued its alert; send it before giving up.
                send_alert(&mut conn, &mut out);
                let _ = tcp.write_all(&out).await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        };
        buf.drain(..discard);
        fed -= discard;
        match step {
            Step::Next => {}
            Step::Transmit => {
                tcp.write_all(&out).await?;
                out.clear();
            }
            Step::Read => fed = next_record(&mut tcp, &mut buf, fed).await?,
            // The server may send once its own Finished is out, before the client's arrived:
            // that is still the handshake.
            Step::Done if conn.is_handshaking() => {
                fed = next_record(&mut tcp, &mut buf, fed).await?
            }
            Step::Done => {
                if fed != 0 {
                    return Err(invalid("TLS handshake left undiscarded bytes"));
                }
                return Ok(Handshaken {
                    conn,
                    tcp,
                    rest: buf,
                });
            }
        }
    }
}

enum Step {
    Next,
    Transmit,
    Read,
    Done,
}

/// Encodes into the free end of `out`, growing it as rustls asks.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> io::Result<()> {
    let start = out.len();
    out.resize(start + 1024, 0);
    loop {
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                out.resize(start + required_size, 0);
            }
            Err(e) => {
                out.truncate(start);
                return Err(io::Error::other(e));
            }
        }
    }
}

/// Collects the records rustls queued after an error (its fatal alert).
pub(crate) fn send_alert(conn: &mut UnbufferedServerConnection, out: &mut Vec<u8>) {
    for _ in 0..4 {
        match conn.process_tls_records(&mut []).state {
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                if encode(out, |o| data.encode(o)).is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// Makes sure `buf` holds one more complete record after `buf[..fed]`, reading from the
/// socket as needed; returns the end of that record. A header announcing more than any
/// handshake record may hold is handed over alone, so that rustls refuses it with its
/// alert instead of our waiting for the body.
async fn next_record(tcp: &mut TcpStream, buf: &mut Vec<u8>, fed: usize) -> io::Result<usize> {
    loop {
        let pending = &buf[fed..];
        if pending.len() >= HEADER_LEN {
            let len = usize::from(u16::from_be_bytes([pending[3], pending[4]]));
            if len > MAX_HANDSHAKE_RECORD {
                return Ok(fed + HEADER_LEN);
            }
            if pending.len() >= HEADER_LEN + len {
                return Ok(fed + HEADER_LEN + len);
            }
        }
        if buf.len() >= MAX_HANDSHAKE_BUFFER {
            return Err(invalid("TLS handshake message too large"));
        }
        let start = buf.len();
        buf.resize(start + 4096, 0);
        let n = tcp.read(&mut buf[start..]).await;
        buf.truncate(start + *n.as_ref().unwrap_or(&0));
        match n? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => continue,
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}
