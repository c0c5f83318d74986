//! XMPP over WebSocket (RFC 7395) at `/xmpp-websocket`: subprotocol `xmpp`, one element
//! per text message, `<open/>` and `<close/>` for the stream's ends. The stream itself is
//! the c2s state machine TCP clients get (SASL, bind, stream management, CSI …), over a
//! [`Bridge`](crate::c2s::bridge::Bridge); this file only carries messages both ways.
//!
//! Limits: browsers' `Origin` is checked against `[http] origins`; the connection is
//! admitted like a TCP one (per-address limits, counted against the connection limit);
//! messages are bounded by `limits.max_stanza_bytes`; binary messages end the connection
//! (RFC 7395 §3.2: text only). A session without traffic is pinged and closed by the
//! stream's own timers, as on TCP.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use corvid_xml::escape;

use super::{ClientInfo, Peer, client_of};
use crate::admission::ConnectionGuard;
#[cfg(test)]
use crate::c2s::bridge::Opened;
use crate::c2s::bridge::{self, CLOSE, Carrier, FRAMING, Frame};
use crate::server::Server;

/// The WebSocket close code for data of a type not accepted (RFC 6455 §7.4.1).
const UNSUPPORTED_DATA: u16 = 1003;

pub fn routes() -> Router<Arc<Server>> {
    Router::new().route("/xmpp-websocket", get(upgrade))
}

async fn upgrade(
    State(server): State<Arc<Server>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let config = &server.config.http;
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !config.allows_origin(origin)
    {
        tracing::debug!(origin, "WebSocket from an origin not allowed");
        return (StatusCode::FORBIDDEN, "This origin may not connect\n").into_response();
    }
    let client = client_of(config, &peer, &headers);
    let guard = match server.connections.admit(client.ip) {
        Ok(guard) => guard,
        Err(_) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "Too many connections\n").into_response();
        }
    };
    let max = server.config.limits.max_stanza_bytes;
    ws.protocols(["xmpp"])
        .max_message_size(max)
        .max_frame_size(max)
        // Small buffers: a browser's session is mostly idle, and what the socket keeps
        // it keeps for the session's life.
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(server, socket, client, guard))
}

async fn run(server: Arc<Server>, socket: WebSocket, client: ClientInfo, guard: ConnectionGuard) {
    if socket.protocol().is_none() {
        tracing::debug!(ip = %client.ip, "WebSocket client did not ask for the xmpp subprotocol");
    }
    let (bridge, carrier) = bridge::bridge(client.secure);
    let peer = SocketAddr::new(client.ip, 0);
    tokio::spawn(crate::c2s::run_bridged(
        server,
        bridge,
        peer,
        "websocket",
        guard,
    ));
    carry(socket, carrier).await;
}

/// Messages both ways until either side ends. One inbound message waits at most while the
/// session is busy; meanwhile the socket is not read, and what the session sends still
/// goes out.
async fn carry(mut socket: WebSocket, mut carrier: Carrier) {
    let mut inbound: Option<Bytes> = None;
    loop {
        tokio::select! {
            frame = carrier.from_session.recv() => {
                let Some(frame) = frame else {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                };
                let last = frame == Frame::Close;
                if socket.send(Message::Text(outbound(frame))).await.is_err() {
                    return;
                }
                if last {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            }
            permit = carrier.to_session.reserve(), if inbound.is_some() => {
                let Ok(permit) = permit else { return };
                permit.send(inbound.take().expect("waiting"));
            }
            message = socket.recv(), if inbound.is_none() => match message {
                Some(Ok(Message::Text(text))) => inbound = Some(self::inbound(text.as_str())),
                Some(Ok(Message::Binary(_))) => {
                    let close = CloseFrame {
                        code: UNSUPPORTED_DATA,
                        reason: Utf8Bytes::from_static("XMPP over WebSocket is text"),
                    };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            },
        }
    }
}

/// A client's message as stream bytes: `<open/>` and `<close/>` become the stream's
/// header and end; anything else goes as it came (the stream's parser judges it).
fn inbound(text: &str) -> Bytes {
    let head = text.trim_start();
    if (head.starts_with("<open") || head.starts_with("<close"))
        && let Ok(el) = corvid_xml::parse_element(text, FRAMING)
        && el.ns() == FRAMING
    {
        match el.name() {
            "open" => return bridge::open_header(el.attr("to"), el.attr("xml:lang")),
            "close" => return Bytes::from_static(CLOSE),
            _ => {}
        }
    }
    Bytes::copy_from_slice(text.as_bytes())
}

/// A frame of the session as a message.
fn outbound(frame: Frame) -> Utf8Bytes {
    match frame {
        Frame::Open(opened) => Utf8Bytes::from(format!(
            "<open xmlns='{FRAMING}' from='{}' id='{}' version='1.0' xml:lang='{}'/>",
            escape(&opened.from),
            escape(&opened.id),
            escape(opened.lang.as_deref().unwrap_or("en"))
        )),
        Frame::Element(bytes) => {
            Utf8Bytes::try_from(bytes).unwrap_or_else(|_| Utf8Bytes::from_static(""))
        }
        Frame::Close => Utf8Bytes::from(format!("<close xmlns='{FRAMING}'/>")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_and_close_become_the_stream_header_and_end() {
        let header = inbound(&format!(
            "<open xmlns='{FRAMING}' to='localhost' version='1.0' xml:lang='fr'/>"
        ));
        let header = std::str::from_utf8(&header).unwrap();
        assert!(
            header.starts_with("<stream:stream xmlns='jabber:client'"),
            "{header}"
        );
        assert!(header.contains("to='localhost'") && header.contains("xml:lang='fr'"));
        assert_eq!(&inbound(&format!("<close xmlns='{FRAMING}'/>"))[..], CLOSE);
        // An <open/> in another namespace is just an element, for the stream to refuse.
        assert_eq!(&inbound("<open xmlns='x'/>")[..], b"<open xmlns='x'/>");
        assert_eq!(&inbound("<presence/>")[..], b"<presence/>");
    }

    #[test]
    fn the_session_header_becomes_open() {
        let open = outbound(Frame::Open(Box::new(Opened {
            from: "localhost".into(),
            id: "a'b".into(),
            lang: None,
        })));
        assert_eq!(
            open.as_str(),
            format!(
                "<open xmlns='{FRAMING}' from='localhost' id='a&apos;b' version='1.0' xml:lang='en'/>"
            )
        );
    }
}
