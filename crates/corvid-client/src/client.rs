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
//!
//! Where the server offers it, the stream enables stream management (XEP-0198, with
//! resumption): both sides count the stanzas they handled, and what the server has not
//! acknowledged is kept, to be sent again after a lost connection. With a
//! [`Reconnect`] policy ([`ClientBuilder::reconnect`]) the stream task comes back by
//! itself after such a loss; the [`crate::reconnect`] module tells how.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use corvid_proto::sasl::Mechanism;
use corvid_proto::{BareJid, FullJid, Jid, ns};
use corvid_xml::{Element, StreamEvent};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::dns;
use crate::error::{ConnectError, RequestError, stanza_error_condition, stream_error_condition};
use crate::login::{self, Authenticated, Resumption, Security};
use crate::mam::{Mam, MamQuery};
use crate::reconnect::{self, Reconnect, Seen};
use crate::sm::Sm;
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
/// A page of an archive catch-up, and how many pages one fetches at most.
const CATCH_UP_PAGE: usize = 100;
const CATCH_UP_PAGES: usize = 50;

/// Everything the stream reports, in order (XMPPStreamDelegate).
#[derive(Clone, Debug)]
pub enum Event {
    /// Connecting to `host`:`port` (`xmppStreamWillConnect:`).
    Connecting {
        /// The host name or address.
        host: String,
        /// The port.
        port: u16,
    },
    /// The TCP connection is up (`xmppStreamDidConnect:`).
    Connected,
    /// Logged in and bound (`xmppStreamDidAuthenticate:`).
    Authenticated {
        /// The full JID the server bound.
        jid: FullJid,
        /// The SASL mechanism that logged in.
        mechanism: Mechanism,
    },
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
        /// The defined condition (`conflict`, `system-shutdown` …).
        condition: String,
        /// The server's explanation, if it gave one.
        text: Option<String>,
    },
    /// The stream is gone (`xmppStreamDidDisconnect:withError:`). With a [`Reconnect`]
    /// policy, [`Event::Reconnecting`] follows unless the loss was asked for.
    Disconnected(DisconnectReason),
    /// A reconnection attempt starts after `delay` (XMPPReconnect's
    /// `xmppReconnect:shouldAttemptAutoReconnect:`); `Connecting` … follow.
    Reconnecting {
        /// 1 for the first attempt after the loss, then 2 …
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// A reconnection attempt failed (`xmppReconnect:didDetectAccidentalDisconnect:`);
    /// another follows unless `gave_up`.
    ReconnectFailed {
        /// Which attempt.
        attempt: u32,
        /// What went wrong.
        error: String,
        /// No more attempts follow (the policy's limit, or a refused login).
        gave_up: bool,
    },
    /// The stream-management session was resumed (XEP-0198): nothing was lost; `resent` of
    /// our stanzas the server had not had were sent again.
    Resumed {
        /// How many of our stanzas were sent again.
        resent: usize,
    },
    /// After a reconnection with a new session, `messages` that came while we were away
    /// were fetched from the archive (and delivered as [`Event::Message`]s before this),
    /// and our presence was restored.
    CaughtUp {
        /// How many messages the archive gave that had not been delivered.
        messages: usize,
    },
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

impl DisconnectReason {
    /// Whether a [`Reconnect`] policy comes back after this loss: not after
    /// [`Client::disconnect`], nor after a stream error saying another login would be
    /// refused or fight another session. With a policy, [`Event::Reconnecting`] follows
    /// exactly when this is true.
    pub fn reconnects(&self) -> bool {
        match self {
            DisconnectReason::Requested => false,
            DisconnectReason::StreamError(condition) => !matches!(
                condition.as_str(),
                "conflict" | "not-authorized" | "policy-violation" | "host-unknown"
            ),
            DisconnectReason::ServerClosed
            | DisconnectReason::ConnectionLost(_)
            | DisconnectReason::Protocol(_) => true,
        }
    }
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
    /// Looks at an incoming stanza (`xmppStream:didReceiveMessage:` and its kin).
    fn handle(&self, stanza: &Element) -> Handled;

    /// The stream came back after a loss: `resumed` if the stream-management session went
    /// on (nothing was lost), else a new session was bound (what the server kept for the
    /// old one, such as room occupancy or directed presence, is gone).
    fn restarted(&self, resumed: bool) {
        let _ = resumed;
    }
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
    dns_server: Option<std::net::SocketAddr>,
    security: Security,
    verification: Verification,
    request_timeout: Duration,
    stream_management: bool,
    reconnect: Option<Reconnect>,
}

impl ClientBuilder {
    /// The server's host and port. Without it, the account's domain is looked up in DNS:
    /// SRV records for direct TLS (`_xmpps-client._tcp`), then for STARTTLS
    /// (`_xmpp-client._tcp`), then the domain itself on port 5222 (5223 with
    /// [`Security::DirectTls`]).
    pub fn server(mut self, host: impl Into<String>, port: u16) -> Self {
        self.server = Some((host.into(), port));
        self
    }

    /// The DNS server that finds the account's server (by SRV records) when no
    /// [`ClientBuilder::server`] is given; by default the system's.
    pub fn dns_server(mut self, server: std::net::SocketAddr) -> Self {
        self.dns_server = Some(server);
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

    /// Whether to enable stream management (XEP-0198) when the server offers it (on by
    /// default; XMPPStreamManagement).
    pub fn stream_management(mut self, on: bool) -> Self {
        self.stream_management = on;
        self
    }

    /// Reconnect by this policy after a lost connection (XMPPReconnect); by default a lost
    /// connection stays lost.
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = Some(policy);
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
            seen: Mutex::new(Seen::default()),
            presence: Mutex::new(None),
            first_login: OnceLock::new(),
            mam: OnceLock::new(),
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
    /// Stanza-ids of messages delivered, so none is delivered twice.
    seen: Mutex<Seen>,
    /// The last broadcast presence sent, restored on a new session.
    presence: Mutex<Option<Bytes>>,
    /// When the first login happened: an archive catch-up with no message seen starts there.
    first_login: OnceLock<SystemTime>,
    /// The archive queries of catch-ups.
    mam: OnceLock<Arc<Mam>>,
}

/// The stream task and how to reach it; kept while the task reconnects.
#[derive(Debug)]
struct Stream {
    /// The bound session, while connected.
    session: Option<Session>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Session {
    jid: FullJid,
    features: Element,
    /// False while reconnecting: the JID is the one to resume.
    live: bool,
}

#[derive(Debug)]
struct Pending {
    /// Whom the request went to; the answer must come from there (RFC 6120 §8.1.2.1).
    to: Option<String>,
    answer: oneshot::Sender<Element>,
}

#[derive(Debug)]
enum Command {
    /// A stanza: counted and kept by stream management.
    Stanza(Bytes),
    /// Anything else (a nonza such as CSI's `<active/>`); dropped while reconnecting.
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
            dns_server: None,
            security: Security::default(),
            verification: Verification::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            stream_management: true,
            reconnect: None,
        }
    }

    /// Connects, secures the stream, authenticates and binds (XMPPStream's `connect` then
    /// `authenticateWithPassword:`). Returns once the stream is ready for stanzas; the
    /// events tell the steps.
    pub async fn connect(&self) -> Result<(), ConnectError> {
        if lock(&self.shared.stream).is_some() {
            return Err(ConnectError::AlreadyConnected);
        }
        let Authenticated {
            mut conn,
            features,
            mechanism,
        } = open(&self.shared).await?;
        let settings = &self.shared.settings;
        let jid = login::bind_session(&mut conn, &features, settings.resource.as_deref()).await?;
        self.shared.first_login.get_or_init(SystemTime::now);
        self.emit(Event::Authenticated {
            jid: jid.clone(),
            mechanism,
        })
        .await;
        let (commands, receiver) = mpsc::channel(OUTGOING);
        // Held while the task starts: a stream that ends at once finds itself stored.
        let mut slot = lock(&self.shared.stream);
        if slot.is_some() {
            return Err(ConnectError::AlreadyConnected);
        }
        let link = Link { conn, sm: None };
        let task = tokio::spawn(supervise(link, receiver, self.shared.clone()));
        *slot = Some(Stream {
            session: Some(Session {
                jid,
                features,
                live: true,
            }),
            commands,
            task,
        });
        Ok(())
    }

    /// The bound JID while connected (XMPPStream's `myJID` after binding).
    pub fn jid(&self) -> Option<FullJid> {
        session_jid(&self.shared)
    }

    /// The stream features the server offered after authentication (stream management,
    /// client state indication …), while connected.
    pub fn features(&self) -> Option<Element> {
        lock(&self.shared.stream)
            .as_ref()
            .and_then(|s| s.session.as_ref())
            .map(|s| s.features.clone())
    }

    /// Sends a stanza (XMPPStream's `sendElement:`); waits only if many are queued. While
    /// a [`Reconnect`] policy is bringing the stream back, stanzas are kept and sent once
    /// it is back (other elements are dropped).
    pub async fn send(&self, stanza: &Element) -> Result<(), RequestError> {
        let bytes = stanza.to_bytes(ns::CLIENT);
        if !is_stanza(stanza) {
            return self.command(Command::Send(bytes)).await;
        }
        if stanza.name() == "presence" && stanza.attr("to").is_none() {
            // The broadcast presence, restored after a new session.
            let available = stanza.attr("type").is_none();
            *lock(&self.shared.presence) = available.then(|| bytes.clone());
        }
        self.command(Command::Stanza(bytes)).await
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
        *lock(&self.shared.presence) = None;
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

/// The bound JID while connected.
fn session_jid(shared: &Shared) -> Option<FullJid> {
    lock(&shared.stream)
        .as_ref()
        .and_then(|s| s.session.as_ref())
        .filter(|s| s.live)
        .map(|s| s.jid.clone())
}

/// The JID of the session, live or lost.
fn last_jid(shared: &Shared) -> Option<FullJid> {
    lock(&shared.stream)
        .as_ref()
        .and_then(|s| s.session.as_ref())
        .map(|s| s.jid.clone())
}

fn is_stanza(el: &Element) -> bool {
    el.ns() == ns::CLIENT && matches!(el.name(), "message" | "presence" | "iq")
}

/// Connects to the server and authenticates, telling the steps as events: to the host
/// and port given, else to each place DNS gives for the domain ([`crate::dns`]) until one
/// answers. A server that refuses the login is not tried again elsewhere.
async fn open(shared: &Shared) -> Result<Authenticated, ConnectError> {
    let settings = &shared.settings;
    let domain = settings.jid.domain().as_str().to_owned();
    let username = settings
        .jid
        .node()
        .map(|node| node.as_str().to_owned())
        .ok_or_else(|| ConnectError::Config("the account JID has no username".into()))?;
    let places = match &settings.server {
        Some((host, port)) => vec![dns::Candidate {
            host: host.clone(),
            port: *port,
            security: settings.security,
        }],
        None => {
            dns::candidates(
                &domain,
                settings.security,
                settings.dns_server,
                &mut reconnect::random,
            )
            .await?
        }
    };
    let mut last_error = None;
    for place in places {
        let connector = match place.security {
            Security::DangerPlaintext => None,
            Security::StartTls => Some(connector(&settings.verification, None)?),
            Security::DirectTls => Some(connector(&settings.verification, Some(b"xmpp-client"))?),
        };
        let _ = shared
            .events
            .send(Event::Connecting {
                host: place.host.clone(),
                port: place.port,
            })
            .await;
        let tcp = match TcpStream::connect((place.host.as_str(), place.port)).await {
            Ok(tcp) => tcp,
            Err(e) => {
                last_error = Some(ConnectError::Io(e));
                continue;
            }
        };
        let _ = shared.events.send(Event::Connected).await;
        let params = login::Params {
            domain: &domain,
            username: &username,
            password: &settings.password,
            security: place.security,
            connector: connector.as_ref(),
        };
        match login::authenticate(tcp, &params).await {
            Ok(authenticated) => return Ok(authenticated),
            // This place does not work; another may.
            Err(e @ (ConnectError::Io(_) | ConnectError::Tls(_) | ConnectError::Protocol(_))) => {
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| ConnectError::Config("nowhere to connect".into())))
}

/// A connection and its stream-management session.
struct Link {
    conn: Conn,
    sm: Option<Sm>,
}

impl Link {
    /// Writes a stanza, keeping it until the server acknowledges it.
    async fn send_stanza(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.conn.send(&bytes).await?;
        if let Some(sm) = &mut self.sm {
            sm.sent(bytes);
            if sm.should_ask() {
                sm.asked = true;
                self.conn
                    .send(format!("<r xmlns='{}'/>", ns::SM).as_bytes())
                    .await?;
            }
        }
        Ok(())
    }
}

/// How a stream (re)starts.
enum Start {
    /// The first login.
    First,
    /// A resumed stream-management session; `held` were sent while we were away.
    Resumed { held: Vec<Bytes> },
    /// A new session after a loss: `resend` the server never had, then catch up.
    Fresh { resend: Vec<Bytes> },
}

/// The stream task: runs the stream and, by the [`Reconnect`] policy, brings it back after
/// a loss.
async fn supervise(mut link: Link, mut commands: mpsc::Receiver<Command>, shared: Arc<Shared>) {
    let mut start = Start::First;
    loop {
        let reason = run(&mut link, start, &mut commands, &shared).await;
        // Requests still waiting learn that no answer will come.
        lock(&shared.pending).clear();
        let policy = shared
            .settings
            .reconnect
            .clone()
            .filter(|_| reason.reconnects());
        {
            let mut stream = lock(&shared.stream);
            let ours = stream
                .as_ref()
                .is_some_and(|s| s.task.id() == tokio::task::id());
            if ours && policy.is_some() {
                if let Some(session) = stream.as_mut().and_then(|s| s.session.as_mut()) {
                    session.live = false;
                }
            } else if ours {
                // A stream that ended by itself is no longer the client's.
                *stream = None;
            }
        }
        let _ = shared.events.send(Event::Disconnected(reason)).await;
        let Some(policy) = policy else {
            return;
        };
        match come_back(&policy, link.sm.take(), &mut commands, &shared).await {
            Some((next, next_start)) => {
                link = next;
                start = next_start;
            }
            None => {
                let mut stream = lock(&shared.stream);
                if stream
                    .as_ref()
                    .is_some_and(|s| s.task.id() == tokio::task::id())
                {
                    *stream = None;
                }
                return;
            }
        }
    }
}

/// Reconnects by `policy`: the new link and how it starts, or `None` if the client gave up
/// or was told to disconnect meanwhile.
async fn come_back(
    policy: &Reconnect,
    mut sm: Option<Sm>,
    commands: &mut mpsc::Receiver<Command>,
    shared: &Arc<Shared>,
) -> Option<(Link, Start)> {
    // Stanzas the application sent while we were away, and those of a session that could
    // not be resumed, in order.
    let mut held: Vec<Bytes> = Vec::new();
    let mut resend: Vec<Bytes> = Vec::new();
    for attempt in 1.. {
        let delay = policy.delay(attempt, reconnect::random());
        let _ = shared
            .events
            .send(Event::Reconnecting { attempt, delay })
            .await;
        let wait = tokio::time::sleep(delay);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                command = commands.recv() => match command {
                    Some(Command::Stanza(bytes)) => held.push(bytes),
                    Some(Command::Send(_) | Command::Abort(_)) => {}
                    Some(Command::Close) | None => return None,
                },
            }
        }
        match attempt_once(shared, &mut sm, &mut resend).await {
            Ok((link, resumed)) => {
                let start = if resumed {
                    Start::Resumed { held }
                } else {
                    resend.append(&mut held);
                    Start::Fresh { resend }
                };
                return Some((link, start));
            }
            Err(e) => {
                let gave_up = matches!(e, ConnectError::Auth(_) | ConnectError::Config(_))
                    || policy.gives_up_after(attempt + 1);
                let _ = shared
                    .events
                    .send(Event::ReconnectFailed {
                        attempt,
                        error: e.to_string(),
                        gave_up,
                    })
                    .await;
                if gave_up {
                    return None;
                }
            }
        }
    }
    None
}

/// One reconnection: resumes the stream-management session `sm` if the server can, else
/// binds a new session (what `sm` never had acknowledged moves to `resend`). True if
/// resumed.
async fn attempt_once(
    shared: &Shared,
    sm: &mut Option<Sm>,
    resend: &mut Vec<Bytes>,
) -> Result<(Link, bool), ConnectError> {
    let Authenticated {
        mut conn,
        features,
        mechanism,
    } = open(shared).await?;
    let offered = features.has_child("sm", ns::SM);
    if let Some(mut old) = sm.take_if(|old| old.resumable() && offered) {
        let previd = old.id.clone().unwrap_or_default();
        match login::resume(&mut conn, &previd, old.inbound).await {
            Ok(Resumption::Resumed { h }) => {
                if old.acknowledged(h).is_ok() {
                    old.asked = false;
                    if let Some(jid) = last_jid(shared) {
                        set_session(shared, jid, features);
                    }
                    return Ok((
                        Link {
                            conn,
                            sm: Some(old),
                        },
                        true,
                    ));
                }
                // The server claims stanzas we never sent: start afresh.
                resend.extend(old.into_unacked());
                return Err(ConnectError::Protocol(
                    "the server acknowledged more than we sent".into(),
                ));
            }
            Ok(Resumption::Failed { h }) => {
                if let Some(h) = h {
                    let _ = old.acknowledged(h);
                }
                resend.extend(old.into_unacked());
            }
            Err(e) => {
                // Keep the session for the next attempt.
                *sm = Some(old);
                return Err(e);
            }
        }
    } else if let Some(old) = sm.take() {
        resend.extend(old.into_unacked());
    }
    // The resource we had, so the application's address stays the same.
    let resource = last_resource(shared);
    let jid = login::bind_session(&mut conn, &features, resource.as_deref()).await?;
    let _ = shared
        .events
        .send(Event::Authenticated {
            jid: jid.clone(),
            mechanism,
        })
        .await;
    set_session(shared, jid, features);
    Ok((Link { conn, sm: None }, false))
}

fn set_session(shared: &Shared, jid: FullJid, features: Element) {
    if let Some(stream) = lock(&shared.stream).as_mut() {
        stream.session = Some(Session {
            jid,
            features,
            live: true,
        });
    }
}

fn last_resource(shared: &Shared) -> Option<String> {
    last_jid(shared)
        .map(|jid| jid.resource().as_str().to_owned())
        .or_else(|| shared.settings.resource.clone())
}

/// Runs one connection: reads and dispatches, writes what is queued, until it ends.
async fn run(
    link: &mut Link,
    start: Start,
    commands: &mut mpsc::Receiver<Command>,
    shared: &Arc<Shared>,
) -> DisconnectReason {
    if let Err(e) = begin(link, start, shared).await {
        return DisconnectReason::ConnectionLost(e.to_string());
    }
    loop {
        match link.conn.parse_buffered() {
            Ok(Some(event)) => match dispatch(link, shared, event).await {
                Some(reason) => return reason,
                None => continue,
            },
            Ok(None) => {}
            Err(e) => return lost(e),
        }
        tokio::select! {
            filled = link.conn.fill() => {
                if let Err(e) = filled {
                    return lost(e);
                }
            }
            command = commands.recv() => {
                let written = match command {
                    Some(Command::Stanza(bytes)) => link.send_stanza(bytes).await,
                    Some(Command::Send(bytes)) => link.conn.send(&bytes).await,
                    Some(Command::Abort(reason)) => return DisconnectReason::ConnectionLost(reason),
                    Some(Command::Close) | None => {
                        close(&mut link.conn).await;
                        return DisconnectReason::Requested;
                    }
                };
                if let Err(e) = written {
                    return DisconnectReason::ConnectionLost(e.to_string());
                }
            }
        }
    }
}

/// What a stream does first: enables stream management on a new session, sends again what
/// was not acknowledged, and, on a new session after a loss, catches up.
async fn begin(link: &mut Link, start: Start, shared: &Arc<Shared>) -> std::io::Result<()> {
    let offered = lock(&shared.stream)
        .as_ref()
        .and_then(|s| s.session.as_ref())
        .is_some_and(|s| s.features.has_child("sm", ns::SM));
    if link.sm.is_none() && offered && shared.settings.stream_management {
        let enable = Element::new("enable", ns::SM).with_attr("resume", "true");
        link.conn.send(&enable.to_bytes(ns::CLIENT)).await?;
        link.sm = Some(Sm::default());
    }
    match start {
        Start::First => {}
        Start::Resumed { held } => {
            let unacked: Vec<Bytes> = link
                .sm
                .as_ref()
                .map(|sm| sm.unacked().cloned().collect())
                .unwrap_or_default();
            let resent = unacked.len();
            for bytes in unacked {
                link.conn.send(&bytes).await?;
            }
            for bytes in held {
                link.send_stanza(bytes).await?;
            }
            if let Some(sm) = &mut link.sm
                && sm.should_ask()
            {
                sm.asked = true;
                link.conn
                    .send(format!("<r xmlns='{}'/>", ns::SM).as_bytes())
                    .await?;
            }
            let _ = shared.events.send(Event::Resumed { resent }).await;
            restarted(shared, true);
        }
        Start::Fresh { resend } => {
            for bytes in resend {
                link.send_stanza(bytes).await?;
            }
            restarted(shared, false);
            tokio::spawn(catch_up(Client {
                shared: shared.clone(),
            }));
        }
    }
    Ok(())
}

fn restarted(shared: &Shared, resumed: bool) {
    let handlers = lock(&shared.handlers).clone();
    for handler in handlers {
        handler.restarted(resumed);
    }
}

/// After a new session: what came while we were away, from the archive, then our
/// presence again.
async fn catch_up(client: Client) {
    let shared = &client.shared;
    let policy_catches_up = shared
        .settings
        .reconnect
        .as_ref()
        .is_some_and(Reconnect::catches_up);
    let mut delivered = 0;
    if policy_catches_up {
        delivered = fetch_missed(&client).await;
    }
    let presence = lock(&shared.presence).clone();
    if let Some(presence) = presence {
        let _ = client.command(Command::Stanza(presence)).await;
    }
    let _ = shared
        .events
        .send(Event::CaughtUp {
            messages: delivered,
        })
        .await;
}

/// Delivers the messages the archive has since the last one seen (or since the first
/// login); how many. A server without an archive has none.
async fn fetch_missed(client: &Client) -> usize {
    let shared = &client.shared;
    let mam = shared.mam.get_or_init(|| Mam::attach(client)).clone();
    let own = shared.settings.jid.clone();
    let mut query = MamQuery {
        max: Some(CATCH_UP_PAGE),
        ..MamQuery::default()
    };
    match lock(&shared.seen).last.clone() {
        Some(last) => query.after = Some(last),
        None => query.start = shared.first_login.get().copied(),
    }
    let mut delivered = 0;
    for _ in 0..CATCH_UP_PAGES {
        let Ok(page) = mam.query(&query).await else {
            break;
        };
        for archived in page.messages {
            if !lock(&shared.seen).insert(&archived.id) {
                continue;
            }
            let incoming = archived
                .message
                .attr("from")
                .and_then(|from| Jid::new(from).ok())
                .is_some_and(|from| from.to_bare() != own);
            if !incoming || archived.message.attr("type") == Some("groupchat") {
                continue;
            }
            let message = with_archive_marks(archived.message, &own, &archived.id, archived.stamp);
            let _ = shared.events.send(Event::Message(message)).await;
            delivered += 1;
        }
        if page.complete || page.last.is_none() {
            break;
        }
        query.after = page.last;
        query.start = None;
    }
    delivered
}

/// An archived message as it would have come: with its stanza-id and, if it has none, a
/// delay stamp (XEP-0203) of when the archive took it.
fn with_archive_marks(
    mut message: Element,
    own: &BareJid,
    id: &str,
    stamp: Option<SystemTime>,
) -> Element {
    let has_id = message
        .children()
        .any(|c| c.is("stanza-id", ns::STANZA_ID) && c.attr("by") == Some(own.as_str()));
    if !has_id {
        message.append_child(
            Element::new("stanza-id", ns::STANZA_ID)
                .with_attr("by", own.as_str())
                .with_attr("id", id),
        );
    }
    if let Some(stamp) = stamp
        && !message.has_child("delay", ns::DELAY)
    {
        message.append_child(
            Element::new("delay", ns::DELAY)
                .with_attr("stamp", corvid_proto::time::format_datetime(stamp)),
        );
    }
    message
}

/// The stanza-id the account's server gave a message (XEP-0359).
fn own_stanza_id<'a>(message: &'a Element, own: &BareJid) -> Option<&'a str> {
    message
        .children()
        .find(|c| {
            c.is("stanza-id", ns::STANZA_ID)
                && c.attr("by")
                    .and_then(|by| BareJid::new(by).ok())
                    .is_some_and(|by| &by == own)
        })
        .and_then(|c| c.attr("id"))
}

/// Handles one stream event; the reason the stream ends, if it does.
async fn dispatch(
    link: &mut Link,
    shared: &Shared,
    event: StreamEvent,
) -> Option<DisconnectReason> {
    let stanza = match event {
        StreamEvent::Stanza(stanza) => stanza,
        StreamEvent::Close => {
            let _ = link.conn.send(b"</stream:stream>").await;
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
        let _ = link.conn.send(b"</stream:stream>").await;
        return Some(DisconnectReason::StreamError(condition));
    }
    if stanza.ns() == ns::SM {
        return stream_management(link, &stanza).await;
    }
    let is_stanza = is_stanza(&stanza);
    if is_stanza && let Some(sm) = &mut link.sm {
        sm.received();
    }
    // A message delivered already (resent after a resumption, or fetched from the archive
    // and then from offline storage) is not delivered again.
    if stanza.is("message", ns::CLIENT)
        && let Some(id) = own_stanza_id(&stanza, &shared.settings.jid)
        && !lock(&shared.seen).insert(id)
    {
        return None;
    }
    // Answers to our requests go to them first.
    let stanza = if stanza.is("iq", ns::CLIENT) {
        answer_for(shared, stanza)?
    } else {
        stanza
    };
    if is_stanza {
        match handled(link, shared, &stanza).await {
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
            if let Err(e) = link.send_stanza(pong.to_bytes(ns::CLIENT)).await {
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

/// XEP-0198's elements: `<enabled/>`, `<failed/>`, `<r/>`, `<a/>`.
async fn stream_management(link: &mut Link, el: &Element) -> Option<DisconnectReason> {
    let Some(sm) = &mut link.sm else {
        return None;
    };
    match el.name() {
        "enabled" => {
            sm.enabled = true;
            let resumable = matches!(el.attr("resume"), Some("true" | "1"));
            sm.id = el.attr("id").filter(|_| resumable).map(str::to_owned);
        }
        "failed" => link.sm = None,
        "r" => {
            let ack = Element::new("a", ns::SM).with_attr("h", sm.inbound.to_string());
            if let Err(e) = link.conn.send(&ack.to_bytes(ns::CLIENT)).await {
                return Some(DisconnectReason::ConnectionLost(e.to_string()));
            }
        }
        "a" => {
            let h = el.attr("h").and_then(|h| h.parse().ok());
            if h.is_none_or(|h| sm.acknowledged(h).is_err()) {
                let error = format!(
                    "<stream:error><undefined-condition xmlns='{}'/><handled-count-too-high xmlns='{}' h='{}' send-count='{}'/></stream:error></stream:stream>",
                    ns::STREAM_ERRORS,
                    ns::SM,
                    h.unwrap_or_default(),
                    sm.unacked_len()
                );
                let _ = link.conn.send(error.as_bytes()).await;
                return Some(DisconnectReason::Protocol(
                    "the server acknowledged stanzas we never sent".into(),
                ));
            }
        }
        _ => {}
    }
    None
}

/// Offers a stanza to the modules: `Some(true)` if it is still to be dispatched, `Some(false)`
/// if a module took it, `None` (the stream's end) if writing a module's reply failed.
async fn handled(link: &mut Link, shared: &Shared, stanza: &Element) -> Option<bool> {
    let handlers = lock(&shared.handlers).clone();
    for handler in handlers {
        match handler.handle(stanza) {
            Handled::No => {}
            Handled::Yes => return Some(false),
            Handled::Reply(reply) => {
                link.send_stanza(reply.to_bytes(ns::CLIENT)).await.ok()?;
                return Some(false);
            }
            Handled::Also(extra) => {
                link.send_stanza(extra.to_bytes(ns::CLIENT)).await.ok()?;
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
    let own = session_jid(shared);
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
