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

use crate::lock;
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

mod recovery;
mod stream;

use recovery::*;
use stream::*;

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
