//! A client stream carried by messages instead of a byte stream: WebSocket (RFC 7395) and
//! BOSH (XEP-0124/0206). The session's state machine is the one TCP clients get; only its
//! transport differs. Inbound, the carrier hands the session stream bytes (its
//! translation of `<open/>` into a stream header, `<close/>` into the closing tag, the
//! stanzas as they came). Outbound, what the session writes is cut back into top-level
//! elements ([`Frame`]s, by `corvid_xml::cut`), each made to stand alone (the namespaces the stream header
//! declared are declared on it), for the carrier to send one per message (WebSocket) or
//! many per response (BOSH).
//!
//! Nothing is buffered while idle: an element being cut is held only until its end
//! arrives, and frames wait only while the carrier is slower than the session.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use corvid_proto::ns;
use corvid_xml::cut::{Cut, Cutter, standalone};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// The RFC 7395 framing namespace of `<open/>` and `<close/>`.
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// One unit of what the session sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The stream header's attributes (boxed: frames wait in a channel, whose slots are
    /// as large as the largest frame).
    Open(Box<Opened>),
    /// One top-level element, standing alone (`jabber:client` and the `stream:` prefix
    /// declared where it relies on them).
    Element(Bytes),
    /// The end of the stream.
    Close,
}

/// What the session's stream header said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub from: String,
    pub id: String,
    pub lang: Option<String>,
}

/// The session's side: read stream bytes from the carrier, write frames to it.
pub struct Bridge {
    incoming: mpsc::Receiver<Bytes>,
    out: PollSender<Frame>,
    cutter: Cutter,
    /// Frames cut but not yet taken by the carrier.
    pending: VecDeque<Frame>,
    /// Whether the carrier is confidential (HTTPS, loopback, or a trusted TLS proxy).
    secure: bool,
}

/// The carrier's side of a [`Bridge`].
pub struct Carrier {
    /// Stream bytes for the session (see [`open_header`], [`CLOSE`]).
    pub to_session: mpsc::Sender<Bytes>,
    /// What the session sends; ends when the session does.
    pub from_session: mpsc::Receiver<Frame>,
}

/// The closing tag a `<close/>` stands for.
pub const CLOSE: &[u8] = b"</stream:stream>";

/// A bridge and its carrier's ends.
pub fn bridge(secure: bool) -> (Bridge, Carrier) {
    // A few messages each way: the carrier waits when the session is busy (and so stops
    // reading its client), the session when the carrier is.
    let (to_session, incoming) = mpsc::channel(8);
    let (out, from_session) = mpsc::channel(64);
    let bridge = Bridge {
        incoming,
        out: PollSender::new(out),
        cutter: Cutter::default(),
        pending: VecDeque::new(),
        secure,
    };
    (
        bridge,
        Carrier {
            to_session,
            from_session,
        },
    )
}

/// The stream header a client's `<open/>` (or BOSH session request) stands for.
pub fn open_header(to: Option<&str>, lang: Option<&str>) -> Bytes {
    let mut header = format!(
        "<stream:stream xmlns='{}' xmlns:stream='{}' version='1.0'",
        ns::CLIENT,
        ns::STREAM
    );
    for (name, value) in [("to", to), ("xml:lang", lang)] {
        if let Some(value) = value {
            header.push_str(&format!(" {name}='{}'", corvid_xml::escape(value)));
        }
    }
    header.push('>');
    Bytes::from(header)
}

impl Bridge {
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Stream bytes from the carrier; `None` once it is gone.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut Vec<u8>,
    ) -> Poll<io::Result<Option<usize>>> {
        match ready!(self.incoming.poll_recv(cx)) {
            Some(bytes) => {
                into.clear();
                into.extend_from_slice(&bytes);
                Poll::Ready(Ok(Some(bytes.len())))
            }
            None => Poll::Ready(Ok(None)),
        }
    }

    /// Hands pending frames to the carrier, as far as it takes them.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            if ready!(self.out.poll_reserve(cx)).is_err() {
                return Poll::Ready(Err(gone()));
            }
            let frame = self.pending.pop_front().expect("not empty");
            if self.out.send_item(frame).is_err() {
                return Poll::Ready(Err(gone()));
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the client's carrier is gone")
}

impl AsyncWrite for Bridge {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let pending = &mut this.pending;
        this.cutter.feed(buf, &mut |cut| {
            pending.push_back(match cut {
                Cut::Header(header) => open_frame(&header),
                Cut::Element(element) => {
                    Frame::Element(Bytes::from(standalone(element, ns::CLIENT)))
                }
                Cut::End => Frame::Close,
            })
        });
        // Taken: what is cut waits in `pending` for the next write or flush.
        let _ = this.poll_drain(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.out.close();
        Poll::Ready(Ok(()))
    }
}

/// The attributes of the session's stream header.
fn open_frame(header: &[u8]) -> Frame {
    let text = String::from_utf8_lossy(header);
    let closed = format!("{}</stream:stream>", text.trim_end());
    let parsed = corvid_xml::parse_element(&closed, ns::CLIENT).ok();
    let attr = |name: &str| {
        parsed
            .as_ref()
            .and_then(|el| el.attr(name))
            .map(str::to_owned)
    };
    Frame::Open(Box::new(Opened {
        from: attr("from").unwrap_or_default(),
        id: attr("id").unwrap_or_default(),
        lang: attr("xml:lang"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_becomes_open_and_elements_stand_alone() {
        let (mut bridge, mut carrier) = bridge(true);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let text = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='localhost' \
             version='1.0' xml:lang='en'><presence/></stream:stream>";
        let written = Pin::new(&mut bridge).poll_write(&mut cx, text.as_bytes());
        assert!(matches!(written, Poll::Ready(Ok(n)) if n == text.len()));
        let mut frames = Vec::new();
        while let Ok(frame) = carrier.from_session.try_recv() {
            frames.push(frame);
        }
        assert_eq!(
            frames,
            [
                Frame::Open(Box::new(Opened {
                    from: "localhost".into(),
                    id: "abc".into(),
                    lang: Some("en".into())
                })),
                Frame::Element(Bytes::from_static(b"<presence xmlns='jabber:client'/>")),
                Frame::Close,
            ]
        );
    }
}
