//! External components (XEP-0114, "Jabber Component Protocol"): trusted programs, a
//! gateway say, that connect to the server and serve a domain of their own.
//!
//! A component opens a stream in `jabber:component:accept` to its domain, proves it knows
//! the shared secret (`<handshake>` = hex SHA-1 of the stream id and the secret), and then
//! exchanges stanzas: what is addressed to its domain reaches it; what it sends, from its
//! domain only, is routed like anything else (to local users, other components, remote
//! servers). While it is away, stanzas for it are bounced with `service-unavailable`, and
//! those queued for it when it goes are bounced too: nothing is silently lost.
//!
//! Components are trusted with their domain, not with the server: a stanza whose `from` is
//! outside the component's domain ends the stream with `invalid-from`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use corvid_proto::{Jid, StanzaError, StreamError, StreamErrorCondition as Cond, ns};
use corvid_xml::{Element, Limits, StreamEvent, StreamParser, escape};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::server::Server;

/// XEP-0114's namespace.
pub const NS_ACCEPT: &str = "jabber:component:accept";

/// Stanzas waiting to be written to a component, at most; beyond that they are bounced
/// (`resource-constraint`) rather than holding up the router.
const QUEUE: usize = 4096;
/// How long a component has to open its stream and hand over the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read at a time.
const READ_BUFFER: usize = 16 * 1024;

/// The components connected now, by domain.
#[derive(Debug, Default)]
pub struct Components {
    live: RwLock<HashMap<String, mpsc::Sender<Element>>>,
}

/// Why a stanza could not be handed to a component.
#[derive(Debug, PartialEq, Eq)]
pub enum Undelivered {
    /// No component serves this domain (it is not configured).
    NotAComponent,
    /// The component is configured but not connected.
    Away,
    /// The component's queue is full.
    Full,
}

impl Components {
    /// Hands `stanza` to the component serving `domain`.
    pub fn deliver(
        &self,
        server: &Server,
        domain: &str,
        stanza: Element,
    ) -> Result<(), (Undelivered, Element)> {
        let sender = read(&self.live).get(domain).cloned();
        match sender {
            Some(sender) => sender.try_send(stanza).map_err(|e| match e {
                mpsc::error::TrySendError::Full(stanza) => (Undelivered::Full, stanza),
                mpsc::error::TrySendError::Closed(stanza) => (Undelivered::Away, stanza),
            }),
            None if server.config.component(domain).is_some() => Err((Undelivered::Away, stanza)),
            None => Err((Undelivered::NotAComponent, stanza)),
        }
    }

    /// The domains of the components connected now.
    pub fn connected(&self) -> Vec<String> {
        let mut domains: Vec<String> = read(&self.live).keys().cloned().collect();
        domains.sort();
        domains
    }

    fn register(&self, domain: &str, sender: mpsc::Sender<Element>) -> bool {
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        if live.get(domain).is_some_and(|s| !s.is_closed()) {
            return false;
        }
        live.insert(domain.to_owned(), sender);
        true
    }

    fn unregister(&self, domain: &str, sender: &mpsc::Sender<Element>) {
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        if live.get(domain).is_some_and(|s| s.same_channel(sender)) {
            live.remove(domain);
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// The handshake a component must send: hex SHA-1 of the stream id and the secret
/// (XEP-0114 §2).
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let digest = Sha1::new()
        .chain_update(stream_id.as_bytes())
        .chain_update(secret.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A component's connection: its stream, and the parser over it.
struct Link {
    tcp: TcpStream,
    parser: StreamParser,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// How a component's stream ended, for the log.
#[derive(Debug)]
enum End {
    /// The component closed its stream, or the connection.
    Closed,
    /// We ended it with this stream error.
    Error(StreamError),
    Io(std::io::Error),
    Shutdown,
}

impl Link {
    async fn next(&mut self) -> Result<StreamEvent, End> {
        loop {
            if self.start < self.end {
                let mut input = &self.buf[self.start..self.end];
                let before = input.len();
                let event = self.parser.next_event(&mut input);
                self.start += before - input.len();
                match event {
                    Ok(Some(event)) => return Ok(event),
                    Ok(None) => {}
                    Err(e) => {
                        let condition = if e.to_string().contains("limit") {
                            Cond::PolicyViolation
                        } else {
                            Cond::NotWellFormed
                        };
                        return Err(End::Error(StreamError::with_text(condition, e.to_string())));
                    }
                }
            }
            self.start = 0;
            let n = self.tcp.read(&mut self.buf).await.map_err(End::Io)?;
            if n == 0 {
                return Err(End::Closed);
            }
            self.end = n;
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.tcp.write_all(bytes).await.map_err(End::Io)
    }
}

/// Serves one component connection (the server's listener calls it for each).
pub async fn serve(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr) {
    let mut link = Link {
        tcp,
        parser: StreamParser::new(Limits {
            max_stanza_bytes: server.config.limits.max_stanza_bytes,
            max_depth: 64,
        }),
        buf: vec![0; READ_BUFFER],
        start: 0,
        end: 0,
    };
    let domain =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, authenticate(&server, &mut link)).await {
            Ok(Ok(domain)) => domain,
            Ok(Err(end)) => return finish(&mut link, end, None, &peer).await,
            Err(_) => {
                let end = End::Error(StreamError::with_text(
                    Cond::ConnectionTimeout,
                    "No handshake in time",
                ));
                return finish(&mut link, end, None, &peer).await;
            }
        };
    let (sender, mut queue) = mpsc::channel(QUEUE);
    if !server.components.register(&domain, sender.clone()) {
        let end = End::Error(StreamError::with_text(
            Cond::Conflict,
            "Another component serves this domain",
        ));
        return finish(&mut link, end, None, &peer).await;
    }
    if let Err(end) = link.write(b"<handshake/>").await {
        server.components.unregister(&domain, &sender);
        return finish(&mut link, end, None, &peer).await;
    }
    tracing::info!(%domain, %peer, "component connected");
    let end = exchange(&server, &mut link, &domain, &mut queue).await;
    server.components.unregister(&domain, &sender);
    // What was queued for it and never written is bounced, so senders know.
    queue.close();
    while let Ok(stanza) = queue.try_recv() {
        crate::router::bounce(&server, &stanza, StanzaError::service_unavailable()).await;
    }
    finish(&mut link, end, Some(&domain), &peer).await;
}

/// The stream header and the handshake; the component's domain.
async fn authenticate(server: &Server, link: &mut Link) -> Result<String, End> {
    let header = match link.next().await? {
        StreamEvent::Open(header) => header,
        _ => return Err(End::Closed),
    };
    let id = crate::random_id();
    let to = header.attr("to").unwrap_or_default().to_ascii_lowercase();
    let reply = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_ACCEPT}' xmlns:stream='{}' id='{id}' from='{}'>",
        ns::STREAM,
        escape(&to)
    );
    link.write(reply.as_bytes()).await?;
    if header.name != "stream" || header.ns != ns::STREAM {
        return Err(End::Error(StreamError::new(Cond::InvalidNamespace)));
    }
    if header.default_ns != NS_ACCEPT {
        return Err(End::Error(StreamError::with_text(
            Cond::InvalidNamespace,
            format!("Components speak {NS_ACCEPT}"),
        )));
    }
    let Some(secret) = server.config.component(&to).map(|c| c.secret.clone()) else {
        return Err(End::Error(StreamError::with_text(
            Cond::HostUnknown,
            "No component is configured for this domain",
        )));
    };
    let handshake = match link.next().await? {
        StreamEvent::Stanza(el) if el.is("handshake", NS_ACCEPT) => el.text(),
        StreamEvent::Stanza(_) => {
            return Err(End::Error(StreamError::with_text(
                Cond::NotAuthorized,
                "The handshake comes first",
            )));
        }
        StreamEvent::Close | StreamEvent::Open(_) => return Err(End::Closed),
    };
    let expected = handshake_digest(&id, &secret);
    if !constant_time_eq(
        handshake.trim().to_ascii_lowercase().as_bytes(),
        expected.as_bytes(),
    ) {
        return Err(End::Error(StreamError::with_text(
            Cond::NotAuthorized,
            "Wrong handshake",
        )));
    }
    Ok(to)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Stanzas both ways until the stream ends.
async fn exchange(
    server: &Arc<Server>,
    link: &mut Link,
    domain: &str,
    queue: &mut mpsc::Receiver<Element>,
) -> End {
    let mut shutdown = server.shutdown_signal();
    loop {
        // Parse what is buffered before waiting on anything.
        if link.start < link.end {
            match link.next().await {
                Ok(event) => match incoming(server, domain, event).await {
                    Ok(()) => continue,
                    Err(end) => return end,
                },
                Err(end) => return end,
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return End::Shutdown,
            read = link.tcp.read(&mut link.buf) => match read {
                Ok(0) => return End::Closed,
                Ok(n) => {
                    link.start = 0;
                    link.end = n;
                }
                Err(e) => return End::Io(e),
            },
            stanza = queue.recv() => {
                let Some(stanza) = stanza else { return End::Closed };
                // A jabber:client stanza written without its namespace declaration takes
                // the stream's default, jabber:component:accept.
                if let Err(end) = link.write(&stanza.to_bytes(ns::CLIENT)).await {
                    crate::router::bounce(server, &stanza, StanzaError::service_unavailable()).await;
                    return end;
                }
            }
        }
    }
}

/// One event from the component.
async fn incoming(server: &Arc<Server>, domain: &str, event: StreamEvent) -> Result<(), End> {
    let stanza = match event {
        StreamEvent::Stanza(stanza) => stanza,
        StreamEvent::Close => return Err(End::Closed),
        StreamEvent::Open(_) => {
            return Err(End::Error(StreamError::new(Cond::NotWellFormed)));
        }
    };
    if stanza.ns() != NS_ACCEPT || !matches!(stanza.name(), "message" | "presence" | "iq") {
        return Err(End::Error(StreamError::with_text(
            Cond::UnsupportedStanzaType,
            format!("<{}/> is not a stanza", stanza.name()),
        )));
    }
    // XEP-0114 §3: a component addresses its stanzas, from its own domain.
    let from = stanza.attr("from").map(Jid::new);
    let from_ok = matches!(&from, Some(Ok(jid)) if jid.domain().as_str() == domain);
    if !from_ok {
        return Err(End::Error(StreamError::with_text(
            Cond::InvalidFrom,
            format!("A component sends from {domain}"),
        )));
    }
    if stanza.attr("to").is_none() {
        return Err(End::Error(StreamError::with_text(
            Cond::ImproperAddressing,
            "A component's stanza needs a 'to'",
        )));
    }
    crate::router::route(server, into_client_ns(stanza)).await;
    Ok(())
}

/// A stanza read in `jabber:component:accept`, moved to `jabber:client`, the namespace
/// the server carries stanzas in (children in the stream's namespace move with it).
fn into_client_ns(stanza: Element) -> Element {
    stanza.map_ns(NS_ACCEPT, ns::CLIENT)
}

async fn finish(link: &mut Link, end: End, domain: Option<&str>, peer: &SocketAddr) {
    match &end {
        End::Error(error) => {
            tracing::info!(?domain, %peer, %error, "component stream ended with an error");
            let mut bytes = b"<stream:error>".to_vec();
            for child in error.to_element().children() {
                bytes.extend_from_slice(&child.to_bytes(ns::STREAM));
            }
            bytes.extend_from_slice(b"</stream:error></stream:stream>");
            let _ = link.write(&bytes).await;
        }
        End::Shutdown => {
            let error = StreamError::new(Cond::SystemShutdown).to_element();
            let mut bytes = b"<stream:error>".to_vec();
            for child in error.children() {
                bytes.extend_from_slice(&child.to_bytes(ns::STREAM));
            }
            bytes.extend_from_slice(b"</stream:error></stream:stream>");
            let _ = link.write(&bytes).await;
        }
        End::Closed => {
            tracing::info!(?domain, %peer, "component closed its stream");
            let _ = link.write(b"</stream:stream>").await;
        }
        End::Io(e) => tracing::info!(?domain, %peer, error = %e, "component connection lost"),
    }
    let _ = link.tcp.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_is_the_hex_sha1_of_id_and_secret() {
        // XEP-0114 §3's example: stream id 3BF96D32, secret "test".
        assert_eq!(
            handshake_digest("3BF96D32", "test"),
            "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"
        );
        // Computed independently (Python's hashlib.sha1(b"3BF96D32secret")).
        assert_eq!(
            handshake_digest("3BF96D32", "secret"),
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        );
    }

    #[test]
    fn comparison_needs_equal_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
