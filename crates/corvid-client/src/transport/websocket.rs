//! XMPP over WebSocket (RFC 7395) under the same byte-stream interface as TCP: what the
//! stream writes is cut into standalone elements (`corvid_xml::cut`), one text message
//! each, with the stream header sent as `<open/>` and its end as `<close/>`; what comes
//! back is read as stream bytes, `<open/>` and `<close/>` turned back into the header and
//! end the stream parser expects. The rest of the client (SASL, bind, stanzas) does not
//! know the difference.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use corvid_proto::ns;
use corvid_xml::Element;
use corvid_xml::cut::{Cut, Cutter, standalone};
use futures_util::{Sink, Stream};
use tokio::io::ReadBuf;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::Io;

/// The framing namespace of `<open/>` and `<close/>`.
const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// A WebSocket carrying one XMPP stream.
pub struct WebSocketIo {
    socket: WebSocketStream<Io>,
    /// Stream bytes read but not yet taken.
    read: Vec<u8>,
    taken: usize,
    cutter: Cutter,
    /// Messages cut but not yet handed to the socket.
    outgoing: VecDeque<Utf8Bytes>,
}

/// Opens the WebSocket at `url` (`ws://host:port/xmpp-websocket`, or `wss://` over `io`
/// already secured) with the `xmpp` subprotocol.
pub async fn connect(url: &str, io: Io) -> io::Result<Io> {
    let mut request = url.into_client_request().map_err(io::Error::other)?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static("xmpp"),
    );
    let (socket, response) = tokio_tungstenite::client_async(request, io)
        .await
        .map_err(io::Error::other)?;
    let protocol = response.headers().get("sec-websocket-protocol");
    if protocol.and_then(|p| p.to_str().ok()) != Some("xmpp") {
        // RFC 7395 §3.3.1: a server that did not agree to `xmpp` is not ours to talk to.
        return Err(io::Error::other(
            "the server did not accept the xmpp subprotocol",
        ));
    }
    Ok(Io::WebSocket(Box::new(WebSocketIo {
        socket,
        read: Vec::new(),
        taken: 0,
        cutter: Cutter::default(),
        outgoing: VecDeque::new(),
    })))
}

/// A server message as stream bytes.
fn inbound(text: &str) -> Vec<u8> {
    let head = text.trim_start();
    if (head.starts_with("<open") || head.starts_with("<close"))
        && let Ok(el) = corvid_xml::parse_element(text, FRAMING)
        && el.ns() == FRAMING
    {
        if el.name() == "close" {
            return b"</stream:stream>".to_vec();
        }
        let mut header = format!(
            "<stream:stream xmlns='{}' xmlns:stream='{}'",
            ns::CLIENT,
            ns::STREAM
        );
        for name in ["from", "id", "version", "xml:lang"] {
            if let Some(value) = el.attr(name) {
                header.push_str(&format!(" {name}='{}'", corvid_xml::escape(value)));
            }
        }
        header.push('>');
        return header.into_bytes();
    }
    text.as_bytes().to_vec()
}

/// A piece of what the client wrote as a message.
fn outbound(cut: Cut) -> Utf8Bytes {
    let text = match cut {
        Cut::Header(header) => {
            let text = String::from_utf8_lossy(&header);
            let closed = format!("{}</stream:stream>", text.trim_end());
            let to = corvid_xml::parse_element(&closed, ns::CLIENT)
                .ok()
                .and_then(|el: Element| el.attr("to").map(str::to_owned))
                .unwrap_or_default();
            format!(
                "<open xmlns='{FRAMING}' to='{}' version='1.0'/>",
                corvid_xml::escape(&to)
            )
        }
        Cut::Element(element) => String::from_utf8_lossy(&standalone(element, ns::CLIENT)).into(),
        Cut::End => format!("<close xmlns='{FRAMING}'/>"),
    };
    Utf8Bytes::from(text)
}

impl WebSocketIo {
    /// Hands queued messages to the socket, as far as it takes them.
    fn poll_send_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            ready!(Pin::new(&mut self.socket).poll_ready(cx)).map_err(io::Error::other)?;
            let message = self.outgoing.pop_front().expect("not empty");
            Pin::new(&mut self.socket)
                .start_send(Message::Text(message))
                .map_err(io::Error::other)?;
        }
        Poll::Ready(Ok(()))
    }

    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.taken == self.read.len() {
            match ready!(Pin::new(&mut self.socket).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => {
                    self.read = inbound(text.as_str());
                    self.taken = 0;
                }
                Some(Ok(Message::Binary(_))) => {
                    return Poll::Ready(Err(io::Error::other("a binary WebSocket message")));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // The end of the stream: as TCP's end of file.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
        let n = buf.remaining().min(self.read.len() - self.taken);
        buf.put_slice(&self.read[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.read.len() {
            self.read = Vec::new();
            self.taken = 0;
        }
        Poll::Ready(Ok(()))
    }

    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_send_queued(cx))?;
        let outgoing = &mut self.outgoing;
        self.cutter
            .feed(buf, &mut |cut| outgoing.push_back(outbound(cut)));
        // Taken: what was cut waits for the next write or flush.
        let _ = self.poll_send_queued(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_queued(cx))?;
        Pin::new(&mut self.socket)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    pub(super) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_queued(cx))?;
        Pin::new(&mut self.socket)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_header_and_end_travel_as_open_and_close() {
        let header = outbound(Cut::Header(
            b"<stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                .to_vec(),
        ));
        assert_eq!(
            header.as_str(),
            format!("<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
        );
        assert_eq!(
            outbound(Cut::Element(b"<presence/>".to_vec())).as_str(),
            "<presence xmlns='jabber:client'/>"
        );
        let back = inbound(&format!(
            "<open xmlns='{FRAMING}' from='localhost' id='x' version='1.0'/>"
        ));
        let back = String::from_utf8(back).unwrap();
        assert!(
            back.starts_with("<stream:stream xmlns='jabber:client'"),
            "{back}"
        );
        assert!(back.contains("from='localhost'") && back.contains("id='x'"));
        assert_eq!(
            inbound(&format!("<close xmlns='{FRAMING}'/>")),
            b"</stream:stream>"
        );
    }
}
