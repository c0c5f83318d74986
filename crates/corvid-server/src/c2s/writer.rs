//! The output side of a client stream: stanzas and stream elements written in order,
//! batches drained from the session's queue, and the stream error that ends a stream.
//! Writes are bounded in time, and a session told to close gets only a short grace.

use std::time::{Duration, Instant};

use bytes::Bytes;
use corvid_proto::{StreamError, StreamErrorCondition, ns};
use corvid_xml::Element;
use tokio::io::AsyncWriteExt;

use super::session::{End, Session, closed};
use crate::sessions::Queued;

/// Queued stanzas written in one go, at most.
const WRITE_BATCH: usize = 64 * 1024;
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a session that was told to close may still spend on one write.
const CLOSING_WRITE_GRACE: Duration = Duration::from_secs(1);

impl Session {
    /// Writes one stanza (in the `jabber:client` default namespace).
    pub(super) async fn send(&mut self, el: &Element) -> Result<(), End> {
        let mut out = std::mem::take(&mut self.out);
        el.write_to(&mut out, ns::CLIENT);
        if let Some(sm) = &mut self.sm {
            sm.record(Bytes::copy_from_slice(&out), Instant::now());
        }
        self.ask_for_ack_if_due(&mut out);
        let res = self.write_raw(&out).await;
        out.clear();
        self.out = out;
        res?;
        self.check_unacked().await
    }

    /// XEP-0198 §4: asks for an ack (appending `<r/>` to what is about to be written)
    /// once enough stanzas are unacknowledged.
    fn ask_for_ack_if_due(&mut self, out: &mut Vec<u8>) {
        let every = self.server.config.stream_management.ack_request_stanzas;
        if let Some(sm) = &mut self.sm
            && sm.ack_due(every, Instant::now())
        {
            sm.asked();
            out.extend_from_slice(super::sm::ACK_REQUEST);
        }
    }

    /// A client that does not acknowledge what it gets cannot make the server keep it all:
    /// past `max_unacked_bytes` the stream is closed (and the unacknowledged messages go
    /// to other resources or offline storage as it ends).
    async fn check_unacked(&mut self) -> Result<(), End> {
        let max = self.server.config.stream_management.max_unacked_bytes;
        if self.sm.as_ref().is_some_and(|sm| sm.over(max)) {
            return Err(self
                .fail(StreamError::with_text(
                    StreamErrorCondition::PolicyViolation,
                    "Too many unacknowledged stanzas",
                ))
                .await);
        }
        Ok(())
    }

    /// Writes `<stream:NAME>children</stream:NAME>` with the conventional prefix.
    pub(super) async fn write_stream_element(
        &mut self,
        name: &str,
        children: &[Element],
    ) -> Result<(), End> {
        let mut out = format!("<stream:{name}>").into_bytes();
        for child in children {
            child.write_to(&mut out, ns::CLIENT);
        }
        out.extend_from_slice(format!("</stream:{name}>").as_bytes());
        self.write_raw(&out).await
    }

    pub(super) async fn write_raw(&mut self, data: &[u8]) -> Result<(), End> {
        let transport = &mut self.transport;
        let write = async {
            transport.write_all(data).await?;
            transport.flush().await
        };
        // A session told to close (a slow consumer above all, whose socket is full) gets
        // only a short grace to finish writing, not WRITE_TIMEOUT: meanwhile it stays
        // bound and stanzas for it are lost instead of bounced.
        let control = self.control.clone();
        let closing = async {
            closed(&control).await;
            tokio::time::sleep(CLOSING_WRITE_GRACE).await;
        };
        // A resuming connection asking for the session need not wait for a write into a
        // connection that is, most likely, dead (XEP-0198 §5).
        let taken_over = Session::takeover_wanted(&self.sm);
        tokio::select! {
            _ = taken_over => Err(End::TakenOver),
            written = tokio::time::timeout(WRITE_TIMEOUT, write) => match written {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(End::Io(e)),
                Err(_) => Err(End::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))),
            },
            _ = closing => Err(End::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "write blocked while closing"))),
        }
    }

    /// Writes a queued stanza and whatever else is already queued, in one batch (less
    /// what an inactive client is spared for now, XEP-0352).
    pub(super) async fn write_queued(&mut self, first: Queued) -> Result<(), End> {
        let mut out = std::mem::take(&mut self.out);
        let now = Instant::now();
        let mut next = Some(first);
        // Stanzas from other nodes are settled once written (`cluster/acks.rs`).
        let mut receipts = Vec::new();
        while out.len() < WRITE_BATCH {
            let Some(mut stanza) = next
                .take()
                .or_else(|| self.control.as_ref().and_then(|c| c.pop_queued()))
            else {
                break;
            };
            if let Some(receipt) = stanza.receipt.take() {
                receipts.push(receipt);
            }
            let held = self.csi_holds(&stanza);
            for earlier in self.take_held(!held) {
                self.put(&mut out, earlier, now);
            }
            if !held {
                self.put(&mut out, stanza.bytes, now);
            }
        }
        let written = self.write_out(out).await;
        drop(receipts);
        written
    }

    /// Writes stanzas in one go.
    pub(super) async fn write_stanzas(&mut self, stanzas: Vec<Bytes>) -> Result<(), End> {
        let mut out = std::mem::take(&mut self.out);
        let now = Instant::now();
        for stanza in stanzas {
            self.put(&mut out, stanza, now);
        }
        self.write_out(out).await
    }

    /// Adds a stanza to what is about to be written, counting it for stream management
    /// (XEP-0198: kept until acknowledged; a reference, not a copy).
    fn put(&mut self, out: &mut Vec<u8>, stanza: Bytes, now: Instant) {
        out.extend_from_slice(&stanza);
        if let Some(sm) = &mut self.sm {
            sm.record(stanza, now);
        }
    }

    /// Writes `out` (asking for an ack if one is due) and keeps its buffer unless large.
    async fn write_out(&mut self, mut out: Vec<u8>) -> Result<(), End> {
        let res = if out.is_empty() {
            Ok(())
        } else {
            self.ask_for_ack_if_due(&mut out);
            self.write_raw(&out).await
        };
        out.clear();
        if out.capacity() > WRITE_BATCH {
            out = Vec::new();
        }
        self.out = out;
        res?;
        self.check_unacked().await
    }

    /// Writes what is already queued (before closing, so an IQ result precedes the close).
    pub(super) async fn flush_queue(&mut self) {
        let first = self.control.as_ref().and_then(|c| c.pop_queued());
        if let Some(first) = first {
            let _ = self.write_queued(first).await;
        }
    }

    /// Sends a stream error and the closing tag (RFC 6120 §4.9.1.1), opening the stream
    /// first if the client's header has not been answered yet (§4.9.1.2).
    pub(super) async fn fail(&mut self, err: StreamError) -> End {
        tracing::debug!(error = %err, "stream error");
        let mut out = Vec::new();
        if !self.header_sent {
            out.extend_from_slice(
                format!(
                    "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' id='{}' from='{}' version='1.0'>",
                    ns::CLIENT,
                    ns::STREAM,
                    crate::random_id(),
                    self.domain
                )
                .as_bytes(),
            );
            self.header_sent = true;
        }
        let error = err.to_element();
        out.extend_from_slice(b"<stream:error>");
        for child in error.children() {
            child.write_to(&mut out, ns::STREAM);
        }
        out.extend_from_slice(b"</stream:error></stream:stream>");
        let _ = self.write_raw(&out).await;
        End::StreamError(err.condition)
    }
}
