//! Server-to-server federation (RFC 6120): stanzas for domains this server does not serve
//! go to the servers that do, and theirs come in.
//!
//! - [`send`] is where the router hands a stanza for a remote domain. One outgoing
//!   connection carries the stanzas of one (local domain, remote domain) pair; while it is
//!   being set up they wait in its bounded queue, and if it cannot be set up they are
//!   bounced (`remote-server-not-found`, `remote-server-timeout`). The router never waits.
//! - `outgoing.rs` connects (`resolve.rs`: the `[s2s] hosts` map, then DNS), with TLS at
//!   once where the target says so (XEP-0368 direct TLS) or else STARTTLS, then authenticates with SASL EXTERNAL when the peer accepts our certificate,
//!   else with Server Dialback (`dialback.rs`).
//! - `incoming.rs` serves the `[s2s] listen` addresses (and, after a TLS handshake, the
//!   `direct_tls_listen` ones, where STARTTLS is not offered): STARTTLS, SASL EXTERNAL for peers
//!   whose certificate proves their domain (`tls.rs`), dialback otherwise, then holds every
//!   stanza to the authenticated domains before routing it.
//! - [`S2s::connections`] lists the live connections, for administration.

pub mod dialback;
mod incoming;
pub mod link;
mod outgoing;
pub mod resolve;
pub mod tls;

use crate::lock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use corvid_proto::{Jid, StanzaError};
use corvid_xml::Element;
use tokio::sync::mpsc;

pub use incoming::{serve as serve_incoming, serve_direct_tls as serve_incoming_direct_tls};

use crate::server::Server;

/// Federation's shared state.
pub struct S2s {
    pub(crate) tls: tls::S2sTls,
    /// Where remote domains are reached; [`resolve::Resolver::map_host`] changes it live.
    pub resolver: resolve::Resolver,
    pub(crate) secret: dialback::Secret,
    /// The queue of each outgoing connection, by (local domain, remote domain).
    outgoing: Mutex<HashMap<(String, String), mpsc::Sender<Element>>>,
    registry: Mutex<HashMap<u64, Connection>>,
    next_id: AtomicU64,
}

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// How the peer (incoming) or we (outgoing) authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// SASL EXTERNAL with the certificate of the TLS layer (RFC 6120 §6, XEP-0178).
    SaslExternal,
    /// Server Dialback (XEP-0220).
    Dialback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Resolving and connecting (outgoing only).
    Connecting,
    /// Stream, TLS and authentication being negotiated.
    Negotiating,
    /// Authenticated: stanzas flow.
    Established,
}

/// One live server-to-server connection, as administration sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub id: u64,
    pub direction: Direction,
    /// Our domain on it (empty until the peer's stream header names it).
    pub local: String,
    /// The remote domain (empty until known).
    pub remote: String,
    pub auth: Option<AuthMethod>,
    pub state: State,
    /// Whether TLS is on.
    pub tls: bool,
    /// Whether TLS was on from the first byte (XEP-0368), rather than after STARTTLS.
    pub direct_tls: bool,
    pub since: SystemTime,
    pub peer: Option<SocketAddr>,
}

impl S2s {
    /// The dialback key (XEP-0185) this server makes for a stream: the same on every node
    /// of a cluster, which share the secret.
    pub fn dialback_key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        self.secret.key(receiving, originating, stream_id)
    }

    pub fn new(
        config: &crate::config::Config,
        tls: &crate::tls::Tls,
    ) -> Result<S2s, crate::tls::TlsError> {
        Ok(S2s {
            tls: tls::S2sTls::new(&config.s2s, tls)?,
            resolver: resolve::Resolver::new(&config.s2s.hosts, Box::new(resolve::Dns)),
            secret: dialback::Secret::random(),
            outgoing: Mutex::default(),
            registry: Mutex::default(),
            next_id: AtomicU64::new(1),
        })
    }

    /// The live connections, oldest first (for `corvid s2s list`).
    pub fn connections(&self) -> Vec<Connection> {
        let mut list: Vec<Connection> = lock(&self.registry).values().cloned().collect();
        list.sort_by_key(|c| c.id);
        list
    }

    fn register(self: &Arc<Self>, connection: Connection) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.registry).insert(id, Connection { id, ..connection });
        Registration {
            s2s: self.clone(),
            id,
        }
    }

    /// Forgets the outgoing queue of a pair once its connection has closed it.
    fn forget_closed(&self, pair: &(String, String)) {
        let mut outgoing = lock(&self.outgoing);
        if outgoing.get(pair).is_some_and(|s| s.is_closed()) {
            outgoing.remove(pair);
        }
    }
}

/// A connection's entry in the registry, removed when dropped.
struct Registration {
    s2s: Arc<S2s>,
    id: u64,
}

impl Registration {
    fn update(&self, change: impl FnOnce(&mut Connection)) {
        if let Some(connection) = lock(&self.s2s.registry).get_mut(&self.id) {
            change(connection);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.s2s.registry).remove(&self.id);
    }
}

/// Whether stanzas to or from `domain` are ours to take: a served domain, a service's
/// (MUC, PubSub) or a configured component's.
pub fn is_local(server: &Server, domain: &str) -> bool {
    server.config.serves(domain)
        || server.modules.for_service_domain(domain).is_some()
        || server.config.component(domain).is_some()
}

/// Hands a stanza to the outgoing connection for its `to` domain (opening one if needed).
/// It comes back with the error to bounce it with when it cannot even be queued.
#[allow(clippy::result_large_err)] // the stanza comes back, to be bounced
pub fn send(server: &Arc<Server>, stanza: Element, to: &str) -> Result<(), (Element, StanzaError)> {
    let config = &server.config.s2s;
    if !config.enabled {
        return Err((stanza, StanzaError::remote_server_not_found()));
    }
    let from = stanza
        .attr("from")
        .and_then(|f| Jid::new(f).ok())
        .map(|j| j.domain().as_str().to_owned());
    let Some(from) = from.filter(|d| is_local(server, d)) else {
        // Not ours to relay: a server speaks only for its own domains.
        return Err((stanza, StanzaError::remote_server_not_found()));
    };
    if !config.permits(to) {
        let error = StanzaError::not_allowed().with_text(format!("No federation with {to}"));
        return Err((stanza, error));
    }
    let pair = (from, to.to_ascii_lowercase());
    let mut stanza = stanza;
    // Twice at most: a queue found closed belongs to a connection that just ended.
    for _ in 0..2 {
        let sender = {
            let mut outgoing = lock(&server.s2s.outgoing);
            match outgoing.get(&pair) {
                Some(sender) if !sender.is_closed() => sender.clone(),
                _ => {
                    let (sender, queue) = mpsc::channel(config.max_queue);
                    outgoing.insert(pair.clone(), sender.clone());
                    tokio::spawn(outgoing::run(
                        server.clone(),
                        pair.0.clone(),
                        pair.1.clone(),
                        queue,
                    ));
                    sender
                }
            }
        };
        match sender.try_send(stanza) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(s)) => {
                server
                    .metrics
                    .s2s_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                let error = StanzaError::resource_constraint()
                    .with_text(format!("Too many stanzas waiting for {to}"));
                return Err((s, error));
            }
            Err(mpsc::error::TrySendError::Closed(s)) => stanza = s,
        }
    }
    Err((stanza, StanzaError::remote_server_not_found()))
}
