//! A client stream carried by messages instead of a byte stream: WebSocket (RFC 7395) and
//! BOSH (XEP-0124/0206). The session's state machine is the one TCP clients get; only its
//! transport differs. Inbound, the carrier hands the session stream bytes (its
//! translation of `<open/>` into a stream header, `<close/>` into the closing tag, the
//! stanzas as they came). Outbound, what the session writes is cut back into top-level
//! elements ([`Frame`]s), each made to stand alone (the namespaces the stream header
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
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// The RFC 7395 framing namespace of `<open/>` and `<close/>`.
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// One unit of what the session sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The stream header's attributes.
    Open {
        from: String,
        id: String,
        lang: Option<String>,
    },
    /// One top-level element, standing alone (`jabber:client` and the `stream:` prefix
    /// declared where it relies on them).
    Element(Bytes),
    /// The end of the stream.
    Close,
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
        this.cutter.feed(buf, &mut this.pending);
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

/// Cuts the session's output into top-level elements. It reads only what the server
/// itself serialized: quotes in attributes are respected, text never holds a raw `<`,
/// and there are no comments or CDATA sections.
#[derive(Default)]
struct Cutter {
    /// The element being cut (from its `<`), or the tag being read at the top level.
    buf: Vec<u8>,
    /// Elements open within the current one.
    depth: usize,
    /// Where the tag being read starts in `buf`, while inside one.
    tag: Option<usize>,
    /// The quote an attribute value is open with.
    quote: Option<u8>,
}

impl Cutter {
    fn feed(&mut self, data: &[u8], out: &mut VecDeque<Frame>) {
        for &byte in data {
            match self.tag {
                None if byte == b'<' => {
                    self.tag = Some(self.buf.len());
                    self.buf.push(byte);
                }
                // Text inside an element is kept; between elements (keepalives) it is not.
                None => {
                    if self.depth > 0 {
                        self.buf.push(byte);
                    }
                }
                Some(start) => {
                    self.buf.push(byte);
                    match (self.quote, byte) {
                        (Some(q), b) if b == q => self.quote = None,
                        (Some(_), _) => {}
                        (None, b'"' | b'\'') => self.quote = Some(byte),
                        (None, b'>') => {
                            self.tag = None;
                            self.end_of_tag(start, out);
                        }
                        (None, _) => {}
                    }
                }
            }
        }
    }

    fn end_of_tag(&mut self, start: usize, out: &mut VecDeque<Frame>) {
        let tag = &self.buf[start..];
        if tag.starts_with(b"<?") {
            self.buf.truncate(start);
            return;
        }
        if tag.starts_with(b"</") {
            if self.depth == 0 {
                // Only the stream's own end closes at the top level.
                self.buf.clear();
                out.push_back(Frame::Close);
                return;
            }
            self.depth -= 1;
        } else if tag.starts_with(b"<stream:stream") && self.depth == 0 {
            let header = std::mem::take(&mut self.buf);
            out.push_back(open_frame(&header));
            return;
        } else if !tag.ends_with(b"/>") {
            self.depth += 1;
        }
        if self.depth == 0 {
            let element = std::mem::take(&mut self.buf);
            out.push_back(Frame::Element(standalone(element)));
        }
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
    Frame::Open {
        from: attr("from").unwrap_or_default(),
        id: attr("id").unwrap_or_default(),
        lang: attr("xml:lang"),
    }
}

/// An element as the session wrote it inside its stream, made to stand alone: the
/// `stream:` prefix declared on `<stream:…>` elements, `jabber:client` on stanzas that
/// relied on the stream's default namespace.
fn standalone(element: Vec<u8>) -> Bytes {
    let name_end = element
        .iter()
        .position(|b| matches!(b, b' ' | b'>' | b'/' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(element.len());
    let start_tag_end = element
        .iter()
        .position(|&b| b == b'>')
        .unwrap_or(element.len());
    let name = &element[1..name_end];
    let start_tag = &element[..start_tag_end];
    let declaration = if name.starts_with(b"stream:") {
        Some(format!(" xmlns:stream='{}'", ns::STREAM))
    } else if !contains(start_tag, b" xmlns=") {
        Some(format!(" xmlns='{}'", ns::CLIENT))
    } else {
        None
    };
    let Some(declaration) = declaration else {
        return Bytes::from(element);
    };
    let mut out = Vec::with_capacity(element.len() + declaration.len());
    out.extend_from_slice(&element[..name_end]);
    out.extend_from_slice(declaration.as_bytes());
    out.extend_from_slice(&element[name_end..]);
    Bytes::from(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(chunks: &[&str]) -> Vec<Frame> {
        let mut cutter = Cutter::default();
        let mut out = VecDeque::new();
        for chunk in chunks {
            cutter.feed(chunk.as_bytes(), &mut out);
        }
        out.into_iter().collect()
    }

    fn element(text: &str) -> Frame {
        Frame::Element(Bytes::from(text.to_owned()))
    }

    #[test]
    fn the_header_becomes_open_and_elements_stand_alone() {
        let frames = cut(&[
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='localhost' \
             version='1.0' xml:lang='en'>",
            "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
             <mechanism>PLAIN</mechanism></mechanisms></stream:features>",
            "<message to='a@b/c' type='chat'><body>1 &lt; 2 &gt; 0</body></message> ",
            "<presence/><r xmlns='urn:xmpp:sm:3'/>",
        ]);
        assert_eq!(
            frames,
            [
                Frame::Open {
                    from: "localhost".into(),
                    id: "abc".into(),
                    lang: Some("en".into())
                },
                element(
                    "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
                     <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                     <mechanism>PLAIN</mechanism></mechanisms></stream:features>"
                ),
                element(
                    "<message xmlns='jabber:client' to='a@b/c' type='chat'>\
                     <body>1 &lt; 2 &gt; 0</body></message>"
                ),
                element("<presence xmlns='jabber:client'/>"),
                element("<r xmlns='urn:xmpp:sm:3'/>"),
            ]
        );
    }

    #[test]
    fn elements_are_cut_wherever_the_writes_split_them() {
        let text = "<iq type='result' id='a&apos;>b'><query xmlns='jabber:iq:roster'>\
                    <item jid='x@y' name='a &gt; b'/></query></iq>";
        let whole = cut(&[text]);
        for at in 1..text.len() {
            assert_eq!(cut(&[&text[..at], &text[at..]]), whole, "split at {at}");
        }
        assert_eq!(whole.len(), 1);
    }

    #[test]
    fn errors_and_the_end_of_the_stream() {
        let frames = cut(&[
            "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             </stream:error></stream:stream>",
        ]);
        assert_eq!(frames.len(), 2);
        assert!(
            matches!(&frames[0], Frame::Element(e) if e.starts_with(b"<stream:error xmlns:stream="))
        );
        assert_eq!(frames[1], Frame::Close);
    }

    #[test]
    fn a_quoted_gt_in_an_attribute_does_not_end_the_tag() {
        let frames = cut(&["<message id=\"a>b\"><body>x</body></message>"]);
        assert_eq!(
            frames,
            [element(
                "<message xmlns='jabber:client' id=\"a>b\"><body>x</body></message>"
            )]
        );
    }
}
