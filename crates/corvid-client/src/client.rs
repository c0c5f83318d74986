//! The stream: XMPPFramework's `XMPPStream` in async Rust.
//!
//! [`Client::builder`] takes the account and how to reach its server; [`ClientBuilder::build`]
//! returns the [`Client`] and its [`Events`], the one typed stream of everything that
//! happens (XMPPStream's delegate callbacks). [`Client::connect`] logs in
//! ([`crate::login`]) and starts the stream task, which owns the connection: it reads
//! stanzas and turns them into events, writes what [`Client::send`] queues, and matches
//! IQ replies to [`Client::request`]s. Events are delivered in order and the stream task
//! waits for the application to take them (a full [`Events`] buffer pauses reading, and
//! TCP pushes back on the server), so nothing is dropped: take the events before
//! connecting and keep reading them.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use corvid_proto::sasl::Mechanism;
use corvid_proto::{BareJid, FullJid, Jid, ns};
use corvid_xml::{Element, StreamEvent};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::error::{ConnectError, RequestError, stanza_error_condition, stream_error_condition};
use crate::login::{self, Security};
use crate::tls::{self, Verification};
use crate::transport::{Conn, ReadError};

/// Events waiting for the application, at most.
const EVENTS: usize = 256;
/// Stanzas waiting to be written, at most; `send` waits beyond that.
const OUTGOING: usize = 256;
/// How long [`Client::request`] waits for an answer unless told otherwise.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Client::disconnect`] waits for the server to close its side.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the stream reports, in order (XMPPStreamDelegate).
#[derive(Clone, Debug)]
pub enum Event {
    /// Connecting to `host`:`port` (`xmppStreamWillConnect:`).
    Connecting { host: String, port: u16 },
    /// The TCP connection is up (`xmppStreamDidConnect:`).
    Connected,
    /// Logged in and bound (`xmppStreamDidAuthenticate:`).
    Authenticated { jid: FullJid, mechanism: Mechanism },
    /// A `<message/>` (`xmppStream:didReceiveMessage:`).
    Message(Element),
    /// A `<presence/>` (`xmppStream:didReceivePresence:`).
    Presence(Element),
    /// An IQ that answers no request of ours (`xmppStream:didReceiveIQ:`); a get or set
    /// deserves an answer from the application (RFC 6120 §8.2.3).
    Iq(Element),
    /// Any other top-level element (stream management's `<r/>` and `<a/>`, say).
    Other(Element),
    /// The server ended the stream with an error (`xmppStream:didReceiveError:`).
    StreamError {
        condition: String,
        text: Option<String>,
    },
    /// The stream is gone (`xmppStreamDidDisconnect:withError:`).
    Disconnected(DisconnectReason),
}

/// Why a stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// [`Client::disconnect`], or the [`Client`] was dropped.
    Requested,
    /// The server closed the stream without an error.
    ServerClosed,
    /// The server sent a stream error (its condition).
    StreamError(String),
    /// The connection broke (I/O error or end of file).
    ConnectionLost(String),
    /// The server sent something that is not XMPP.
    Protocol(String),
}

/// What a module ([`Client::add_handler`]) made of an incoming stanza.
#[derive(Debug)]
pub enum Handled {
    /// Not its business, or it only looked: the next handler, then the application, get it.
    No,
    /// Taken: nobody else sees it.
    Yes,
    /// Taken, and this is the answer (an IQ result, say), written at once.
    Reply(Element),
    /// Not taken (others see it too), and this is written at once (a receipt, say).
    Also(Element),
}

/// A module's view of the incoming stanzas (XMPPModule's stream delegate). Called on the
/// stream task, in order, before the stanza becomes an [`Event`]: it must not block; work
/// that waits (storage, requests) goes to a task of the module's own.
pub trait StanzaHandler: Send + Sync + std::fmt::Debug {
    fn handle(&self, stanza: &Element) -> Handled;
}

/// The application's end of the event stream.
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the [`Client`] is gone.
    pub async fn next(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }

    /// The next event if one is already waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }
}

/// How to reach the account's server and log in (XMPPStream's `myJID`, `hostName`,
/// `hostPort` and the TLS settings).
#[derive(Debug)]
pub struct ClientBuilder {
    jid: BareJid,
    password: String,
    resource: Option<String>,
    server: Option<(String, u16)>,
    security: Security,
    verification: Verification,
    request_timeout: Duration,
}

impl ClientBuilder {
    /// The server's host and port, instead of the account's domain on the default port
    /// (5222, or 5223 with [`Security::DirectTls`]).
    pub fn server(mut self, host: impl Into<String>, port: u16) -> Self {
        self.server = Some((host.into(), port));
        self
    }

    /// The resource to bind; by default the server picks one.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// STARTTLS (the default), direct TLS, or none.
    pub fn security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// How the server's certificate is checked (by default against the system's roots).
    pub fn verification(mut self, verification: Verification) -> Self {
        self.verification = verification;
        self
    }

    /// How long [`Client::request`] waits for an answer (30 s by default).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The client, not yet connected, and its events.
    pub fn build(self) -> (Client, Events) {
        let (events, receiver) = mpsc::channel(EVENTS);
        let shared = Arc::new(Shared {
            settings: self,
            events,
            stream: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            id_key: std::collections::hash_map::RandomState::new(),
            handlers: Mutex::new(Vec::new()),
        });
        (Client { shared }, Events { receiver })
    }
}

/// An XMPP client connection (XMPPStream). Cheap to clone; every clone drives the same
/// stream.
#[derive(Clone, Debug)]
pub struct Client {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: ClientBuilder,
    events: mpsc::Sender<Event>,
    stream: Mutex<Option<Stream>>,
    /// Requests waiting for their answer, by id.
    pending: Mutex<HashMap<String, Pending>>,
    next_id: AtomicU64,
    /// A random key the ids are hashed with, so they cannot be guessed from the count.
    id_key: std::collections::hash_map::RandomState,
    handlers: Mutex<Vec<Arc<dyn StanzaHandler>>>,
}

/// The running stream.
#[derive(Debug)]
struct Stream {
    jid: FullJid,
    features: Element,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Pending {
    /// Whom the request went to; the answer must come from there (RFC 6120 §8.1.2.1).
    to: Option<String>,
    answer: oneshot::Sender<Element>,
}

#[derive(Debug)]
enum Command {
    Send(Bytes),
    /// Sends unavailable presence, closes the stream, waits for the server to close.
    Close,
    /// Drops the connection as dead, for this reason.
    Abort(String),
}

impl Client {
    /// A client for the account `jid` (a bare JID, `user@domain`) with `password`.
    pub fn builder(jid: BareJid, password: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            jid,
            password: password.into(),
            resource: None,
            server: None,
            security: Security::default(),
            verification: Verification::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Connects, secures the stream, authenticates and binds (XMPPStream's `connect` then
    /// `authenticateWithPassword:`). Returns once the stream is ready for stanzas; the
    /// events tell the steps.
    pub async fn connect(&self) -> Result<(), ConnectError> {
        if self.jid().is_some() {
            return Err(ConnectError::AlreadyConnected);
        }
        let settings = &self.shared.settings;
        let domain = settings.jid.domain().as_str().to_owned();
        let default_port = match settings.security {
            Security::DirectTls => 5223,
            Security::StartTls | Security::DangerPlaintext => 5222,
        };
        let (host, port) = settings
            .server
            .clone()
            .unwrap_or_else(|| (domain.clone(), default_port));
        let connector = match settings.security {
            Security::DangerPlaintext => None,
            Security::StartTls => Some(connector(&settings.verification, None)?),
            Security::DirectTls => Some(connector(&settings.verification, Some(b"xmpp-client"))?),
        };
        self.emit(Event::Connecting {
            host: host.clone(),
            port,
        })
        .await;
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        self.emit(Event::Connected).await;
        let username = settings
            .jid
            .node()
            .map(|node| node.as_str().to_owned())
            .ok_or_else(|| ConnectError::Config("the account JID has no username".into()))?;
        let params = login::Params {
            domain: &domain,
            username: &username,
            password: &settings.password,
            resource: settings.resource.as_deref(),
            security: settings.security,
            connector: connector.as_ref(),
        };
        let logged_in = login::login(tcp, &params).await?;
        let jid = logged_in.jid.clone();
        self.emit(Event::Authenticated {
            jid: jid.clone(),
            mechanism: logged_in.mechanism,
        })
        .await;
        let (commands, receiver) = mpsc::channel(OUTGOING);
        // Held while the task starts: a stream that ends at once finds itself stored.
        let mut slot = lock(&self.shared.stream);
        let task = tokio::spawn(run(logged_in.conn, receiver, self.shared.clone()));
        *slot = Some(Stream {
            jid,
            features: logged_in.features,
            commands,
            task,
        });
        Ok(())
    }

    /// The bound JID while connected (XMPPStream's `myJID` after binding).
    pub fn jid(&self) -> Option<FullJid> {
        lock(&self.shared.stream).as_ref().map(|s| s.jid.clone())
    }

    /// The stream features the server offered after authentication (stream management,
    /// client state indication …), while connected.
    pub fn features(&self) -> Option<Element> {
        lock(&self.shared.stream)
            .as_ref()
            .map(|s| s.features.clone())
    }

    /// Sends a stanza (XMPPStream's `sendElement:`); waits only if many are queued.
    pub async fn send(&self, stanza: &Element) -> Result<(), RequestError> {
        self.command(Command::Send(stanza.to_bytes(ns::CLIENT)))
            .await
    }

    /// Sends an IQ get or set and waits for its answer: the result, or
    /// [`RequestError::Error`] with the error's condition. An id is added if it has none.
    pub async fn request(&self, iq: Element) -> Result<Element, RequestError> {
        let timeout = self.shared.settings.request_timeout;
        self.request_with_timeout(iq, timeout).await
    }

    /// [`Client::request`] with its own timeout.
    pub async fn request_with_timeout(
        &self,
        mut iq: Element,
        timeout: Duration,
    ) -> Result<Element, RequestError> {
        if !iq.is("iq", ns::CLIENT) || !matches!(iq.attr("type"), Some("get" | "set")) {
            return Err(RequestError::NotARequest);
        }
        let id = match iq.attr("id") {
            Some(id) => id.to_owned(),
            None => {
                let id = self.new_id();
                iq.set_attr("id", id.clone());
                id
            }
        };
        let (answer, answered) = oneshot::channel();
        let to = iq.attr("to").map(str::to_owned);
        lock(&self.shared.pending).insert(id.clone(), Pending { to, answer });
        let forget = || lock(&self.shared.pending).remove(&id);
        if let Err(e) = self.send(&iq).await {
            forget();
            return Err(e);
        }
        let reply = match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(RequestError::NotConnected),
            Err(_) => {
                forget();
                return Err(RequestError::Timeout);
            }
        };
        if reply.attr("type") == Some("result") {
            Ok(reply)
        } else {
            Err(RequestError::Error {
                condition: stanza_error_condition(&reply),
                stanza: reply,
            })
        }
    }

    /// Lets a module see incoming stanzas before the application does (XMPPFramework's
    /// `[module activate:stream]`); handlers run in the order they were added.
    pub fn add_handler(&self, handler: Arc<dyn StanzaHandler>) {
        lock(&self.shared.handlers).push(handler);
    }

    /// The account this client logs in to.
    pub fn account(&self) -> &BareJid {
        &self.shared.settings.jid
    }

    /// A new stanza id, unique in this process and hard to guess.
    pub fn new_id(&self) -> String {
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        format!("c{n}-{:x}", self.shared.id_key.hash_one(n))
    }

    /// Goes offline gracefully (XMPPStream's `disconnectAfterSending`): unavailable
    /// presence, the stream's close, then waits (briefly) for the server to close its side.
    pub async fn disconnect(&self) {
        let stream = lock(&self.shared.stream).take();
        let Some(stream) = stream else {
            return;
        };
        if stream.commands.send(Command::Close).await.is_ok() {
            let _ = stream.task.await;
        } else {
            stream.task.abort();
        }
    }

    /// Drops the connection without a goodbye, as one found dead (a ping unanswered, say);
    /// the stream ends with [`DisconnectReason::ConnectionLost`].
    pub fn drop_stream(&self, reason: &str) {
        let commands = lock(&self.shared.stream)
            .as_ref()
            .map(|s| s.commands.clone());
        if let Some(commands) = commands {
            let reason = reason.to_owned();
            tokio::spawn(async move {
                let _ = commands.send(Command::Abort(reason)).await;
            });
        }
    }

    async fn command(&self, command: Command) -> Result<(), RequestError> {
        let commands = lock(&self.shared.stream)
            .as_ref()
            .map(|s| s.commands.clone())
            .ok_or(RequestError::NotConnected)?;
        commands
            .send(command)
            .await
            .map_err(|_| RequestError::NotConnected)
    }

    async fn emit(&self, event: Event) {
        let _ = self.shared.events.send(event).await;
    }
}

fn connector(
    verification: &Verification,
    alpn: Option<&[u8]>,
) -> Result<TlsConnector, ConnectError> {
    let config =
        tls::client_config(verification, alpn).map_err(|e| ConnectError::Tls(e.to_string()))?;
    Ok(TlsConnector::from(Arc::new(config)))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stream task: reads and dispatches, writes what is queued, until the stream ends.
async fn run(mut conn: Conn, mut commands: mpsc::Receiver<Command>, shared: Arc<Shared>) {
    let reason = loop {
        match conn.parse_buffered() {
            Ok(Some(event)) => match dispatch(&mut conn, &shared, event).await {
                Some(reason) => break reason,
                None => continue,
            },
            Ok(None) => {}
            Err(e) => break lost(e),
        }
        tokio::select! {
            filled = conn.fill() => {
                if let Err(e) = filled {
                    break lost(e);
                }
            }
            command = commands.recv() => match command {
                Some(Command::Send(bytes)) => {
                    if let Err(e) = conn.send(&bytes).await {
                        break DisconnectReason::ConnectionLost(e.to_string());
                    }
                }
                Some(Command::Abort(reason)) => break DisconnectReason::ConnectionLost(reason),
                Some(Command::Close) | None => {
                    close(&mut conn).await;
                    break DisconnectReason::Requested;
                }
            },
        }
    };
    // Requests still waiting learn that no answer will come.
    lock(&shared.pending).clear();
    // A stream that ended by itself is no longer the client's.
    {
        let mut stream = lock(&shared.stream);
        if stream
            .as_ref()
            .is_some_and(|s| s.task.id() == tokio::task::id())
        {
            *stream = None;
        }
    }
    let _ = shared.events.send(Event::Disconnected(reason)).await;
}

/// Handles one stream event; the reason the stream ends, if it does.
async fn dispatch(
    conn: &mut Conn,
    shared: &Shared,
    event: StreamEvent,
) -> Option<DisconnectReason> {
    let stanza = match event {
        StreamEvent::Stanza(stanza) => stanza,
        StreamEvent::Close => {
            let _ = conn.send(b"</stream:stream>").await;
            return Some(DisconnectReason::ServerClosed);
        }
        StreamEvent::Open(_) => {
            return Some(DisconnectReason::Protocol("a second stream header".into()));
        }
    };
    if stanza.is("error", ns::STREAM) {
        let condition = stream_error_condition(&stanza);
        let text = stanza
            .get_child("text", ns::STREAM_ERRORS)
            .map(Element::text);
        let _ = shared
            .events
            .send(Event::StreamError {
                condition: condition.clone(),
                text,
            })
            .await;
        let _ = conn.send(b"</stream:stream>").await;
        return Some(DisconnectReason::StreamError(condition));
    }
    // Answers to our requests go to them first.
    let stanza = if stanza.is("iq", ns::CLIENT) {
        answer_for(shared, stanza)?
    } else {
        stanza
    };
    let is_stanza =
        stanza.ns() == ns::CLIENT && matches!(stanza.name(), "message" | "presence" | "iq");
    if is_stanza {
        match handled(conn, shared, &stanza).await {
            Some(true) => {}
            Some(false) => return None,
            None => return Some(DisconnectReason::ConnectionLost("cannot write".into())),
        }
    }
    let event = match stanza.name() {
        "message" if is_stanza => Event::Message(stanza),
        "presence" if is_stanza => Event::Presence(stanza),
        "iq" if is_stanza && is_ping(&stanza) => {
            let pong = reply_to(&stanza);
            if let Err(e) = conn.send(&pong.to_bytes(ns::CLIENT)).await {
                return Some(DisconnectReason::ConnectionLost(e.to_string()));
            }
            return None;
        }
        "iq" if is_stanza => Event::Iq(stanza),
        _ => Event::Other(stanza),
    };
    let _ = shared.events.send(event).await;
    None
}

/// Offers a stanza to the modules: `Some(true)` if it is still to be dispatched, `Some(false)`
/// if a module took it, `None` (the stream's end) if writing a module's reply failed.
async fn handled(conn: &mut Conn, shared: &Shared, stanza: &Element) -> Option<bool> {
    let handlers = lock(&shared.handlers).clone();
    for handler in handlers {
        match handler.handle(stanza) {
            Handled::No => {}
            Handled::Yes => return Some(false),
            Handled::Reply(reply) => {
                conn.send(&reply.to_bytes(ns::CLIENT)).await.ok()?;
                return Some(false);
            }
            Handled::Also(extra) => {
                conn.send(&extra.to_bytes(ns::CLIENT)).await.ok()?;
            }
        }
    }
    Some(true)
}

/// Hands an IQ answer to the request waiting for it; the IQ back if it answers none.
fn answer_for(shared: &Shared, iq: Element) -> Option<Element> {
    if !matches!(iq.attr("type"), Some("result" | "error")) {
        return Some(iq);
    }
    let Some(id) = iq.attr("id") else {
        return Some(iq);
    };
    let mut pending = lock(&shared.pending);
    let Some(waiting) = pending.get(id) else {
        return Some(iq);
    };
    let own = lock(&shared.stream).as_ref().map(|s| s.jid.clone());
    if !from_addressee(iq.attr("from"), waiting.to.as_deref(), own.as_ref()) {
        // Someone else answering our request's id: not the answer.
        return Some(iq);
    }
    let waiting = pending.remove(&iq.attr("id").unwrap_or_default().to_owned())?;
    let _ = waiting.answer.send(iq);
    None
}

/// Whether an answer from `from` can be the answer to a request sent to `to` (RFC 6120
/// §8.1.2.1: the answer comes from whom the request went to; a request without `to` went
/// to the account, answered by the server for it with no `from`, or the bare JID, or the
/// domain).
fn from_addressee(from: Option<&str>, to: Option<&str>, own: Option<&FullJid>) -> bool {
    let same = |a: &str, b: &str| match (Jid::new(a), Jid::new(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    match (from, to) {
        (None, None) => true,
        (Some(from), Some(to)) => same(from, to),
        (None, Some(to)) => own.is_some_and(|own| same(to, own.to_bare().as_str())),
        (Some(from), None) => own.is_some_and(|own| {
            same(from, own.to_bare().as_str())
                || same(from, own.domain().as_str())
                || same(from, own.as_str())
        }),
    }
}

/// A XEP-0199 ping addressed to us, which the stream answers itself.
fn is_ping(iq: &Element) -> bool {
    iq.attr("type") == Some("get") && iq.has_child("ping", ns::PING)
}

/// An empty result for `iq`.
fn reply_to(iq: &Element) -> Element {
    let mut reply = Element::new("iq", ns::CLIENT).with_attr("type", "result");
    if let Some(id) = iq.attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(from) = iq.attr("from") {
        reply.set_attr("to", from);
    }
    reply
}

/// Ends the stream politely: unavailable presence, our close, then the server's close (or
/// the end of the connection) for a short while.
async fn close(conn: &mut Conn) {
    let goodbye = format!(
        "<presence type='unavailable' xmlns='{}'/></stream:stream>",
        ns::CLIENT
    );
    if conn.send(goodbye.as_bytes()).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        loop {
            match conn.next_event().await {
                Ok(StreamEvent::Close) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut conn.io).await;
}

fn lost(e: ReadError) -> DisconnectReason {
    match e {
        ReadError::Xml(e) => DisconnectReason::Protocol(e.to_string()),
        other => DisconnectReason::ConnectionLost(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_must_come_from_whom_the_request_went_to() {
        let own = FullJid::new("juliet@capulet.example/balcony").unwrap();
        let own = Some(&own);
        assert!(from_addressee(
            Some("capulet.example"),
            Some("capulet.example"),
            own
        ));
        assert!(!from_addressee(
            Some("evil.example"),
            Some("capulet.example"),
            own
        ));
        // To the account: no `from`, the bare JID, the domain.
        assert!(from_addressee(None, None, own));
        assert!(from_addressee(Some("juliet@capulet.example"), None, own));
        assert!(from_addressee(Some("capulet.example"), None, own));
        assert!(!from_addressee(Some("romeo@montague.example"), None, own));
        // To our own bare JID, answered without `from`.
        assert!(from_addressee(None, Some("juliet@capulet.example"), own));
        assert!(!from_addressee(None, Some("romeo@montague.example"), own));
    }
}
