//! TLS 1.3 application data after the handshake, without rustls's connection state.
//!
//! rustls keeps about 8 KiB per buffered connection for as long as it lives: a receive
//! buffer that is never freed, its state machine, and buffers of queued records. An idle
//! XMPP session needs none of it. So the handshake runs on rustls's unbuffered connection
//! ([`handshake`]), which is then turned into a [`KernelConnection`] (rustls's kTLS
//! interface, `rustls::kernel`): rustls keeps the key schedule, and hands out the keys at
//! the handover and at each KeyUpdate. The records themselves are protected here, RFC 8446
//! §5.2–5.4, with ring's AEAD: no buffer at all while idle.
//!
//! What rustls would do with records and this layer therefore does (RFC 8446 §4.6.3, §5,
//! §6): answer a KeyUpdate lazily, once, before our next record; refresh our own key before
//! the suite's confidentiality limit (§5.5); refuse more than 32 records in a row that
//! carry nothing (empty, padding only, KeyUpdate); end a connection with the right fatal
//! alert and no close_notify after it.
//!
//! TLS 1.2 sessions stay on rustls's unbuffered connection for their life ([`Tls12`]).

mod direction;
mod exporter;
mod handshake;
mod reader;
mod tls12;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustls::SupportedCipherSuite;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use zeroize::Zeroize;

use direction::Direction;
pub use exporter::ExporterSecret;
pub use handshake::{Handshaken, handshake};
pub(crate) use reader::{Reader, RecordError};
pub use tls12::Tls12;

/// RFC 8446 §5.1 record header: type, legacy version, length.
const HEADER_LEN: usize = 5;
const TAG_LEN: usize = 16;
/// RFC 8446 §5.1: at most 2^14 bytes of plaintext per record.
const MAX_PLAINTEXT: usize = 1 << 14;
/// RFC 8446 §5.2: the ciphertext may exceed the plaintext limit by at most 256 bytes.
const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
const MAX_RECORD: usize = HEADER_LEN + MAX_CIPHERTEXT;

const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
/// RFC 8446 §4.6.3: KeyUpdate(update_not_requested), as a handshake message.
const KEY_UPDATE_NOT_REQUESTED: [u8; 5] = [24, 0, 0, 1, 0];
/// RFC 8446 §6: alert level warning, description close_notify.
const CLOSE_NOTIFY: [u8; 2] = [1, 0];
/// RFC 8446 §6: alert level fatal.
const FATAL: u8 = 2;

/// RFC 8446 §5.5: records sealed under one key before we move to the next. Tests lower it
/// to see the refresh happen.
#[cfg(not(test))]
const fn key_limit(confidentiality_limit: u64) -> u64 {
    confidentiality_limit
}
#[cfg(test)]
const fn key_limit(confidentiality_limit: u64) -> u64 {
    if confidentiality_limit < 64 {
        confidentiality_limit
    } else {
        64
    }
}

thread_local! {
    /// Ciphertext being read: one record left over from the last read plus one read.
    static CIPHERTEXT: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; 2 * MAX_RECORD].into_boxed_slice());
}

/// A TLS 1.3 connection after its handshake: the socket, rustls's key schedule and the two
/// directions' keys.
pub struct Records {
    tcp: TcpStream,
    kernel: KernelConnection<ServerConnectionData>,
    reader: Reader,
    tx: Direction,
    /// When `tx.seq` reaches this, our next record goes under a new key (RFC 8446 §5.5).
    tx_limit: u64,
    /// The client asked for a KeyUpdate (RFC 8446 §4.6.3): ours goes out, once, before our
    /// next application data, however many requests arrived meanwhile.
    tx_update_pending: bool,
    /// Decrypted application data not read yet (the rest of a large read).
    plain: Vec<u8>,
    /// An incomplete record left from the last read (empty, unallocated, while idle).
    partial: Vec<u8>,
    /// Sealed records not yet written (empty, unallocated, while idle).
    out: Vec<u8>,
    /// We sent close_notify or a fatal alert: nothing more is sealed (RFC 8446 §6).
    close_sent: bool,
}

impl Records {
    /// Takes a finished TLS 1.3 handshake over from rustls.
    pub fn take_over(hs: Handshaken) -> io::Result<Records> {
        let (secrets, kernel) = hs
            .conn
            .dangerous_into_kernel_connection()
            .map_err(io::Error::other)?;
        let SupportedCipherSuite::Tls13(suite) = kernel.negotiated_cipher_suite() else {
            return Err(io::Error::other("TLS 1.3 handover of a TLS 1.2 connection"));
        };
        let tx_limit = key_limit(suite.common.confidentiality_limit).saturating_sub(1);
        let (Some(rx), Some(tx)) = (
            Direction::from_secrets(secrets.rx.0, secrets.rx.1),
            Direction::from_secrets(secrets.tx.0, secrets.tx.1),
        ) else {
            return Err(io::Error::other("TLS suite without a ring AEAD"));
        };
        // What the client sent after its Finished is records of ours; never more than
        // one read's worth, so less than a record.
        let mut partial = hs.rest;
        if partial.is_empty() {
            partial = Vec::new();
        }
        Ok(Records {
            tcp: hs.tcp,
            kernel,
            reader: Reader::new(rx),
            tx,
            tx_limit,
            tx_update_pending: false,
            plain: Vec::new(),
            partial,
            out: Vec::new(),
            close_sent: false,
        })
    }

    /// Reads and decrypts what the socket has into `into` (replacing its contents), at most
    /// `max` bytes of it at a time so the caller's rate limit sees input in small steps.
    /// `Ok(Some(n))`: `n` bytes came off the socket (what a rate limit should count; `into`
    /// may be empty, when the records carried nothing). `Ok(None)` is the end of the stream.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut Vec<u8>,
        max: usize,
    ) -> Poll<io::Result<Option<usize>>> {
        let max = max.max(1);
        into.clear();
        if self.plain.is_empty() {
            let wire = ready!(self.poll_read_records(cx, into))?;
            if into.len() > max {
                self.plain = into.split_off(max);
            }
            return Poll::Ready(Ok(wire));
        }
        let take = self.plain.len().min(max);
        into.extend_from_slice(&self.plain[..take]);
        self.plain.drain(..take);
        if self.plain.is_empty() {
            self.plain.zeroize();
            self.plain = Vec::new();
        }
        Poll::Ready(Ok(Some(0)))
    }

    fn poll_read_records(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut Vec<u8>,
    ) -> Poll<io::Result<Option<usize>>> {
        if self.reader.closed {
            return Poll::Ready(Ok(None));
        }
        let opened = CIPHERTEXT.with_borrow_mut(|buf| {
            let kept = self.partial.len();
            buf[..kept].copy_from_slice(&self.partial);
            // Records the client sent with its Finished are opened before reading more.
            let n = if matches!(reader::record_len(&self.partial), Ok(None)) {
                let mut read = ReadBuf::new(&mut buf[kept..kept + MAX_RECORD]);
                ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read))?;
                read.filled().len()
            } else {
                0
            };
            if n == 0 && kept == 0 {
                // RFC 8446 §6.1: a stream cut without close_notify may be truncated; for
                // XMPP, whose own closing tag says whether the stream ended cleanly, an EOF
                // between records is just the end.
                return Poll::Ready(Ok(None));
            }
            if n == 0 && matches!(reader::record_len(&self.partial), Ok(None)) {
                return Poll::Ready(Err(invalid("TLS record cut off")));
            }
            let data = &mut buf[..kept + n];
            let kernel = &mut self.kernel;
            let opened = self.reader.open_records(data, into, &mut || {
                let (seq, secrets) = kernel
                    .update_rx_secret()
                    .map_err(|_| RecordError::internal("KeyUpdate refused by rustls"))?;
                Direction::from_secrets(seq, secrets)
                    .ok_or_else(|| RecordError::internal("TLS key derivation failed"))
            });
            if let Ok(opened) = &opened {
                self.partial.clear();
                // RFC 8446 §6.1: whatever follows close_notify is ignored, not kept.
                if !self.reader.closed {
                    self.partial.extend_from_slice(&data[opened.used..]);
                }
                if self.partial.is_empty() {
                    self.partial = Vec::new();
                }
            }
            // The plaintext is in `into` now; none stays in the shared buffer.
            data.zeroize();
            Poll::Ready(Ok(Some(opened.map(|o| (n, o.update_requested)))))
        });
        match ready!(opened)? {
            None => Poll::Ready(Ok(None)),
            Some(Ok((n, update_requested))) => {
                self.tx_update_pending |= update_requested;
                Poll::Ready(Ok(Some(n)))
            }
            Some(Err(e)) => Poll::Ready(Err(self.fail(cx, e))),
        }
    }

    /// Ends the connection after a record error: RFC 8446 §6.2, the fatal alert goes out
    /// (once, as far as the socket takes it now; shutdown finishes the job) and nothing
    /// after it, not even close_notify. An alert from the client gets no answer.
    fn fail(&mut self, cx: &mut Context<'_>, e: RecordError) -> io::Error {
        if let Some(alert) = e.alert_to_send()
            && !self.close_sent
        {
            let _ = self.seal_record(CONTENT_ALERT, &[FATAL, u8::from(alert)]);
            let _ = self.poll_drain(cx);
        }
        self.close_sent = true;
        self.plain.zeroize();
        invalid(&e.to_string())
    }

    /// Seals `data` as application data records onto the output queue.
    fn seal_data(&mut self, data: &[u8]) -> io::Result<()> {
        if self.close_sent {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS connection closed",
            ));
        }
        for chunk in data.chunks(MAX_PLAINTEXT) {
            self.refresh_tx_key_if_due()?;
            self.seal_record(CONTENT_APPLICATION_DATA, chunk)?;
        }
        Ok(())
    }

    /// RFC 8446 §4.6.3: our KeyUpdate, sealed under the old key, and the new key for every
    /// record after it; when the client asked for it, or when the key has protected as many
    /// records as the suite allows (§5.5).
    fn refresh_tx_key_if_due(&mut self) -> io::Result<()> {
        if !self.tx_update_pending && self.tx.seq < self.tx_limit {
            return Ok(());
        }
        self.seal_record(CONTENT_HANDSHAKE, &KEY_UPDATE_NOT_REQUESTED)?;
        let (seq, secrets) = self.kernel.update_tx_secret().map_err(io::Error::other)?;
        self.tx = Direction::from_secrets(seq, secrets)
            .ok_or_else(|| io::Error::other("TLS key derivation failed"))?;
        self.tx_update_pending = false;
        Ok(())
    }

    /// Seals one record (RFC 8446 §5.2: TLSInnerPlaintext is the content then its type, no
    /// padding; the outer type is application_data) onto the output queue.
    fn seal_record(&mut self, content_type: u8, chunk: &[u8]) -> io::Result<()> {
        let len = chunk.len() + 1 + TAG_LEN;
        let header = [CONTENT_APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        let key = self.tx.key().ok_or_else(|| invalid("TLS key unusable"))?;
        let nonce = self
            .tx
            .next_nonce()
            .ok_or_else(|| invalid("TLS sequence number exhausted"))?;
        self.out.reserve(HEADER_LEN + len);
        self.out.extend_from_slice(&header);
        let start = self.out.len();
        self.out.extend_from_slice(chunk);
        self.out.push(content_type);
        let tag = key
            .seal_in_place_separate_tag(
                nonce,
                ring::aead::Aad::from(header),
                &mut self.out[start..],
            )
            .map_err(|_| invalid("TLS record could not be sealed"))?;
        self.out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Writes queued records until none is left or the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        // Nothing is kept for an idle session.
        self.out = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        self.plain.zeroize();
    }
}

pub(crate) fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl AsyncWrite for Records {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.seal_data(buf)?;
        // The data is sealed and queued, so it is accepted whether or not the socket takes
        // it now; `poll_flush` finishes the job.
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
            // RFC 8446 §6.1: close_notify before closing the write side, unless a fatal
            // alert went out already.
            this.seal_record(CONTENT_ALERT, &CLOSE_NOTIFY)?;
            this.close_sent = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// For the record reader's fuzz target: `data` is a stream of TLS 1.3 records, opened with
/// fixed AES-128-GCM keys by the same reader as a real connection's. It must never panic.
#[doc(hidden)]
pub fn fuzz_record_stream(data: &[u8]) {
    reader::fuzz(data);
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hostile;
