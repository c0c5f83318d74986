//! The session manager: bare JID → bound resources, and the RFC 6121 §8 delivery rules.
//!
//! A session is reached through its [`SessionControl`]: a bounded queue of pre-serialized
//! stanzas (so a stanza fanned out to many sessions is serialized once) plus a control
//! slot for closing it. Delivery never waits: a full queue is a slow consumer, handled by
//! the configured policy, so one stuck client cannot stall the router.
//!
//! Every stanza queued here carries its class ([`Queued`]) and passes the modules'
//! [`OutboundFilter`]s first: the one choke point for whatever must see (or hold back) what
//! reaches a client. Only what the session task writes itself (stream features, its own
//! replies, the idle ping) does not pass it.

use corvid_proto::Bare;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use corvid_proto::{BareJid, FullJid, StreamError, StreamErrorCondition};
use dashmap::DashMap;

use crate::config::SlowConsumerPolicy;
use crate::metrics::Metrics;

mod queue;
mod queued;
mod remote;

pub use queue::{Outbound, QueueLimits, SessionControl};
pub use queued::{Queued, StanzaClass};
pub(crate) use remote::shared as shared_state;
pub use remote::{ClusterLink, NodeName, SharedState};

/// One session's identity: unique for the life of the process. Two sessions may briefly
/// share a full JID (a new login replacing an old one); they never share an id.
pub type SessionId = u64;

#[derive(Clone)]
struct Resource {
    id: SessionId,
    jid: FullJid,
    home: Home,
    state: ResourceState,
    origin: Origin,
}

/// Where a resource's session runs.
#[derive(Clone)]
enum Home {
    /// Here: its queue.
    Local(Arc<SessionControl>),
    /// On another node of the cluster (`cluster/`): what is known of it there, from the
    /// shared registry. Its `id` is that node's.
    Node(remote::RemoteSession),
}

impl Resource {
    fn local(&self) -> Option<&Arc<SessionControl>> {
        match &self.home {
            Home::Local(control) => Some(control),
            Home::Node(_) => None,
        }
    }

    /// Closes the session, wherever it runs.
    fn close(&self, link: Option<&Arc<dyn ClusterLink>>, error: StreamError) {
        match (&self.home, link) {
            (Home::Local(control), _) => control.close(error),
            (Home::Node(remote), Some(link)) => link.close(&remote.node, &self.jid, error),
            (Home::Node(_), None) => {}
        }
    }
}

/// Where a session comes from, for operators (the admin API's session list, metrics).
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// The client's address (behind a trusted proxy: the address the proxy names).
    pub ip: std::net::IpAddr,
    /// What carries the stream: `tcp`, `websocket` or `bosh`.
    pub transport: &'static str,
    pub since: std::time::SystemTime,
}

impl Default for Origin {
    fn default() -> Self {
        Origin {
            ip: std::net::IpAddr::from([0, 0, 0, 0]),
            transport: "tcp",
            since: std::time::SystemTime::now(),
        }
    }
}

/// One bound session, as the session list shows it.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub jid: FullJid,
    /// Where the client connected from; `None` for a session on another node, which knows.
    pub origin: Option<Origin>,
    /// When it was bound.
    pub since: std::time::SystemTime,
    /// The node it runs on, in a cluster (`None` for this one).
    pub node: Option<NodeName>,
}

/// What modules track about one bound resource (RFC 6121 presence state and XEP flags).
#[derive(Clone, Debug, Default)]
pub struct ResourceState {
    /// Sent initial presence and not yet unavailable (RFC 6121 §4.2).
    pub available: bool,
    pub priority: i8,
    /// The last available presence broadcast by this resource.
    pub presence: Option<StoredPresence>,
    /// Requested the roster, so it gets roster pushes (RFC 6121 §2.1.6 "interested resource").
    pub interested: bool,
    /// Enabled message carbons (XEP-0280).
    pub carbons: bool,
    /// Requested the blocklist, so it gets blocklist pushes (XEP-0191 §3.2).
    pub blocklist: bool,
    /// Where it sent directed presence, to send them unavailable at logout (RFC 6121 §4.6.3);
    /// at most `limits.max_directed_presences`.
    pub directed: std::collections::HashSet<corvid_proto::Jid>,
    /// The ids of the messages it fetched from its account's archive (XEP-0313) before its
    /// initial presence: offline storage does not deliver those a second time (XEP-0313
    /// §7.1.1). Taken when the offline backlog is delivered.
    pub fetched_from_archive: Option<Arc<std::sync::Mutex<std::collections::HashSet<String>>>>,
}

/// A resource's last available presence, kept serialized: a few dozen bytes for an idle
/// session instead of an element tree, and cheap to copy.
#[derive(Clone, Debug)]
pub struct StoredPresence(Bytes);

impl StoredPresence {
    pub fn new(presence: &corvid_xml::Element) -> Self {
        let mut out = Vec::new();
        presence.write_to(&mut out, corvid_proto::ns::CLIENT);
        StoredPresence(Bytes::from(out.into_boxed_slice()))
    }

    /// The presence as an element again (it was serialized by us, so it parses).
    pub fn element(&self) -> Option<corvid_xml::Element> {
        let text = std::str::from_utf8(&self.0).ok()?;
        corvid_xml::parse_element(text, corvid_proto::ns::CLIENT).ok()
    }
}

/// The receiving half a session task keeps after binding.
pub struct BoundSession {
    pub id: SessionId,
    pub control: Arc<SessionControl>,
    /// The session this one replaced (same full JID), already unbound and told to close:
    /// its cleanup is the new session's to run, before anything else happens on the JID.
    pub replaced: Option<(SessionId, ResourceState)>,
}

/// Whether a stanza reached a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    NoSuchResource,
}

/// Sees every stanza about to be queued for a session, synchronously and in the sender's
/// task (so: cheap, no I/O), and may withhold it. What CSI (XEP-0352), stream management
/// (XEP-0198) accounting or push (XEP-0357) triggers hook into, instead of each of the
/// paths that deliver (routing, presence fan-out, MUC, roster pushes, offline backlogs).
pub trait OutboundFilter: Send + Sync + 'static {
    /// False withholds `stanza` from session `id` (bound on `jid`); a filter that holds it
    /// back to send later keeps its own copy.
    fn admit(&self, jid: &FullJid, id: SessionId, stanza: &Queued) -> bool;
}

/// One session a stanza is about to be queued for.
struct Target {
    jid: FullJid,
    id: SessionId,
    home: Home,
}

impl Target {
    fn of(r: &Resource) -> Target {
        Target {
            jid: r.jid.clone(),
            id: r.id,
            home: r.home.clone(),
        }
    }
}

pub struct SessionManager {
    users: DashMap<BareJid, Vec<Resource>>,
    next_id: AtomicU64,
    queue_limits: QueueLimits,
    policy: SlowConsumerPolicy,
    filters: Vec<Arc<dyn OutboundFilter>>,
    metrics: Arc<Metrics>,
    /// The other nodes, when this one is part of a cluster: set once, at startup.
    cluster: std::sync::OnceLock<Arc<dyn ClusterLink>>,
}

impl SessionManager {
    pub fn new(queue_limits: QueueLimits, policy: SlowConsumerPolicy) -> Self {
        SessionManager {
            users: DashMap::new(),
            next_id: AtomicU64::new(1),
            queue_limits,
            policy,
            filters: Vec::new(),
            metrics: Arc::default(),
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// Where deliveries and slow consumers are counted.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The outbound filters, in the order they run (the enabled modules', at startup).
    pub fn with_outbound_filters(mut self, filters: Vec<Arc<dyn OutboundFilter>>) -> Self {
        self.filters = filters;
        self
    }

    /// Binds a resource. If the same full JID is already bound, the new session wins and
    /// the old one is closed with `conflict` (RFC 6120 §7.7.2.2, the "override" policy).
    /// `None` when the account already has `max_resources` other resources bound.
    pub fn bind(&self, jid: FullJid, max_resources: usize) -> Option<BoundSession> {
        self.bind_from(jid, max_resources, Origin::default())
    }

    /// [`Self::bind`], remembering where the session comes from.
    pub fn bind_from(
        &self,
        jid: FullJid,
        max_resources: usize,
        origin: Origin,
    ) -> Option<BoundSession> {
        self.bind_with(jid, max_resources, origin, ResourceState::default())
    }

    /// [`Self::bind_from`] for a session that already has a state: one moved here from
    /// another node of the cluster (`SessionManager::move_out` there).
    pub fn bind_with(
        &self,
        jid: FullJid,
        max_resources: usize,
        origin: Origin,
        state: ResourceState,
    ) -> Option<BoundSession> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let control = Arc::new(SessionControl::default());
        let resource = Resource {
            id,
            jid: jid.clone(),
            home: Home::Local(control.clone()),
            state,
            origin,
        };
        // Most accounts have one resource: no room for four (Vec's first growth) per session.
        let mut entry = self
            .users
            .entry(jid.bare())
            .or_insert_with(|| Vec::with_capacity(1));
        let mut replaced = None;
        let existing = entry.iter().position(|r| r.jid == jid);
        if existing.is_none() && entry.len() >= max_resources {
            let empty = entry.is_empty();
            drop(entry);
            if empty {
                // Only with a limit of 0: do not leave an empty entry behind.
                self.users.remove_if(&jid.bare(), |_, rs| rs.is_empty());
            }
            return None;
        }
        let link = self.cluster.get();
        if let Some(link) = link {
            link.announce(
                &jid,
                Some(&remote::shared(id, &resource.state, origin.since)),
            );
        }
        if let Some(pos) = existing {
            let old = std::mem::replace(&mut entry[pos], resource);
            old.close(
                link,
                StreamError::with_text(
                    StreamErrorCondition::Conflict,
                    "Replaced by a new connection for the same resource",
                ),
            );
            // A session on another node is cleaned up there, quietly (`remote.rs`).
            if old.local().is_some() {
                replaced = Some((old.id, old.state));
            }
        } else {
            entry.push(resource);
        }
        Some(BoundSession {
            id,
            control,
            replaced,
        })
    }

    /// Removes a session and returns its last state, or `None` if it was no longer bound
    /// (replaced by a newer one, whose bind took over its cleanup). Its control is closed,
    /// so whoever waits on its queue (a backlog being delivered) stops waiting.
    pub fn unbind(&self, jid: &FullJid, id: SessionId) -> Option<ResourceState> {
        let bare = jid.bare();
        let mut removed = None;
        self.users.remove_if_mut(&bare, |_, resources| {
            if let Some(pos) = resources
                .iter()
                .position(|r| r.id == id && r.local().is_some())
            {
                removed = Some(resources.remove(pos));
                if let Some(link) = self.cluster.get() {
                    link.announce(jid, None);
                }
            }
            resources.is_empty()
        });
        let r = removed?;
        r.close(
            None,
            StreamError::with_text(StreamErrorCondition::Reset, "Session ended"),
        );
        Some(r.state)
    }

    /// The queue of one bound session, for a sender that waits for room in it
    /// ([`SessionControl::offer_wait`]); `None` once that session is gone or replaced.
    pub fn control(&self, jid: &FullJid, id: SessionId) -> Option<Arc<SessionControl>> {
        let resources = self.users.get(&jid.bare())?;
        resources
            .iter()
            .filter(|r| r.id == id)
            .find_map(|r| r.local().cloned())
    }

    /// How much may wait in one session's queue.
    pub fn queue_limits(&self) -> QueueLimits {
        self.queue_limits
    }

    /// Records a session's own presence (availability and priority).
    pub fn set_presence(&self, jid: &FullJid, available: bool, priority: i8) {
        self.update(jid, |state| {
            state.available = available;
            state.priority = priority;
        });
    }

    /// Changes the state of one bound resource; `None` if it is not bound.
    pub fn update<T>(&self, jid: &FullJid, f: impl FnOnce(&mut ResourceState) -> T) -> Option<T> {
        self.update_session(jid, f).map(|(_, t)| t)
    }

    /// Like [`Self::update`], and says which session the resource currently is.
    pub fn update_session<T>(
        &self,
        jid: &FullJid,
        f: impl FnOnce(&mut ResourceState) -> T,
    ) -> Option<(SessionId, T)> {
        let mut resources = self.users.get_mut(&jid.bare())?;
        let r = resources
            .iter_mut()
            .find(|r| &r.jid == jid && r.local().is_some())?;
        let Some(link) = self.cluster.get() else {
            return Some((r.id, f(&mut r.state)));
        };
        // What other nodes see of it is announced when it changes, under the same lock, so
        // announcements of one resource go out in the order of its changes.
        let before = remote::shared(r.id, &r.state, r.origin.since);
        let result = f(&mut r.state);
        let after = remote::shared(r.id, &r.state, r.origin.since);
        if after != before {
            link.announce(jid, Some(&after));
        }
        Some((r.id, result))
    }

    /// The state of every bound resource of a user (a copy).
    pub fn states(&self, bare: &BareJid) -> Vec<(FullJid, ResourceState)> {
        self.users
            .get(bare)
            .map(|rs| {
                rs.iter()
                    .map(|r| (r.jid.clone(), r.state.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The resources of a user for which `pick` holds.
    pub fn resources_where(
        &self,
        bare: &BareJid,
        pick: impl Fn(&ResourceState) -> bool,
    ) -> Vec<FullJid> {
        self.users
            .get(bare)
            .map(|rs| {
                rs.iter()
                    .filter(|r| pick(&r.state))
                    .map(|r| r.jid.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether any resource of the user is available.
    pub fn is_available(&self, bare: &BareJid) -> bool {
        self.users
            .get(bare)
            .is_some_and(|rs| rs.iter().any(|r| r.state.available))
    }

    /// Delivers to one bound resource. A stanza given as bytes alone is classified by its
    /// element name ([`Queued`]); senders that know better pass a [`Queued`].
    pub fn deliver_to_full(&self, jid: &FullJid, stanza: impl Into<Queued>) -> Delivery {
        let target = self
            .users
            .get(&jid.bare())
            .and_then(|resources| resources.iter().find(|r| &r.jid == jid).map(Target::of));
        match target {
            Some(target) => {
                self.push(&target, stanza.into());
                Delivery::Delivered
            }
            None => Delivery::NoSuchResource,
        }
    }

    /// RFC 6121 §8.5.2.1.1: a message to the bare JID goes to the available resources with
    /// the highest non-negative priority (all of them when several share it). Returns how
    /// many sessions received it.
    pub fn deliver_message_to_bare(
        &self,
        bare: &BareJid,
        stanza: impl Into<Queued>,
    ) -> Vec<FullJid> {
        let targets: Vec<Target> = match self.users.get(bare) {
            None => return Vec::new(),
            Some(resources) => {
                let eligible = |r: &&Resource| r.state.available && r.state.priority >= 0;
                let Some(best) = resources
                    .iter()
                    .filter(eligible)
                    .map(|r| r.state.priority)
                    .max()
                else {
                    return Vec::new();
                };
                resources
                    .iter()
                    .filter(|r| r.state.available && r.state.priority == best)
                    .map(Target::of)
                    .collect()
            }
        };
        let stanza = stanza.into();
        for target in &targets {
            self.push(target, stanza.clone());
        }
        targets.into_iter().map(|t| t.jid).collect()
    }

    /// Delivers to every available resource of a user (presence to a bare JID, RFC 6121 §8.5.2.1.2).
    pub fn deliver_to_available(&self, bare: &BareJid, stanza: impl Into<Queued>) -> usize {
        let targets: Vec<Target> = match self.users.get(bare) {
            None => return 0,
            Some(resources) => resources
                .iter()
                .filter(|r| r.state.available)
                .map(Target::of)
                .collect(),
        };
        let stanza = stanza.into();
        for target in &targets {
            self.push(target, stanza.clone());
        }
        targets.len()
    }

    /// Whether the outbound filters let `stanza` reach session `id` on `jid`. Every queued
    /// stanza passes them: those delivered here, and backlogs queued with
    /// [`SessionControl::offer_wait`] (whose sender asks this first).
    pub fn admits(&self, jid: &FullJid, id: SessionId, stanza: &Queued) -> bool {
        self.filters.iter().all(|f| f.admit(jid, id, stanza))
    }

    /// The bound resources of a user.
    pub fn resources(&self, bare: &BareJid) -> Vec<FullJid> {
        self.users
            .get(bare)
            .map(|rs| rs.iter().map(|r| r.jid.clone()).collect())
            .unwrap_or_default()
    }

    /// Closes every session of a user (e.g. after the account was removed), on every node.
    pub fn close_user(&self, bare: &BareJid, error: StreamError) {
        if let Some(resources) = self.users.get(bare) {
            for r in resources.iter() {
                r.close(self.cluster.get(), error.clone());
            }
        }
    }

    /// Number of sessions bound on this node.
    pub fn count(&self) -> usize {
        self.users
            .iter()
            .map(|e| e.value().iter().filter(|r| r.local().is_some()).count())
            .sum()
    }

    /// Every bound session, sorted by JID: this node's and, in a cluster, the others'.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut list: Vec<SessionInfo> = self
            .users
            .iter()
            .flat_map(|e| {
                e.value()
                    .iter()
                    .map(|r| match &r.home {
                        Home::Local(_) => SessionInfo {
                            jid: r.jid.clone(),
                            origin: Some(r.origin),
                            since: r.origin.since,
                            node: None,
                        },
                        Home::Node(remote) => SessionInfo {
                            jid: r.jid.clone(),
                            origin: None,
                            since: std::time::UNIX_EPOCH
                                + std::time::Duration::from_millis(remote.since_ms),
                            node: Some(remote.node.clone()),
                        },
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        list.sort_by(|a, b| a.jid.as_str().cmp(b.jid.as_str()));
        list
    }

    /// How many sessions each transport carries (every transport seen, and `tcp` and
    /// `websocket` always).
    pub fn count_by_transport(&self) -> Vec<(&'static str, usize)> {
        let mut counts: Vec<(&'static str, usize)> = vec![("tcp", 0), ("websocket", 0)];
        for entry in self.users.iter() {
            for r in entry.value().iter().filter(|r| r.local().is_some()) {
                match counts.iter_mut().find(|(t, _)| *t == r.origin.transport) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((r.origin.transport, 1)),
                }
            }
        }
        counts
    }

    /// Closes one session with `error`, on whichever node it is; false when no session
    /// has that full JID.
    pub fn close_session(&self, jid: &FullJid, error: StreamError) -> bool {
        let Some(resources) = self.users.get(&jid.bare()) else {
            return false;
        };
        match resources.iter().find(|r| &r.jid == jid) {
            Some(r) => {
                r.close(self.cluster.get(), error);
                true
            }
            None => false,
        }
    }

    /// The one place stanzas enter a session's queue from the session manager. A session
    /// on another node gets it through the cluster; that node's filters see it there.
    fn push(&self, target: &Target, stanza: Queued) {
        let control = match &target.home {
            Home::Local(control) => control,
            Home::Node(remote) => {
                if let Some(link) = self.cluster.get() {
                    link.forward(&remote.node, &target.jid, stanza);
                }
                return;
            }
        };
        if !self.admits(&target.jid, target.id, &stanza) {
            return;
        }
        let class = stanza.class;
        if control.offer(stanza, self.queue_limits) {
            self.metrics.stanzas_out.count_class(class);
            return;
        }
        match self.policy {
            SlowConsumerPolicy::Close => {
                if !control.is_closed() {
                    self.metrics
                        .slow_consumer_closed
                        .fetch_add(1, Ordering::Relaxed);
                }
                control.close(StreamError::with_text(
                    StreamErrorCondition::PolicyViolation,
                    "Too many unread stanzas: the connection is too slow",
                ))
            }
            SlowConsumerPolicy::Drop => {
                self.metrics
                    .slow_consumer_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!("dropped a stanza for a slow session");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> FullJid {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn bind_conflict_closes_the_old_session() {
        let sm = SessionManager::new(
            QueueLimits {
                stanzas: 8,
                bytes: 1 << 20,
            },
            SlowConsumerPolicy::Close,
        );
        let old = sm.bind(full("a@x/r"), 100).unwrap();
        let new = sm.bind(full("a@x/r"), 100).unwrap();
        assert_eq!(
            old.control.closed().await.condition,
            StreamErrorCondition::Conflict
        );
        assert_eq!(new.replaced.map(|(id, _)| id), Some(old.id));
        // The old session's late unbind must not remove the new one, nor say it did (its
        // cleanup would then run against the new session).
        assert!(sm.unbind(&full("a@x/r"), old.id).is_none());
        assert_eq!(sm.resources(&"a@x".parse().unwrap()).len(), 1);
        assert!(sm.unbind(&full("a@x/r"), new.id).is_some());
        assert_eq!(sm.count(), 0);
    }

    #[test]
    fn binding_beyond_the_resource_limit_is_refused_but_replacing_is_not() {
        let sm = SessionManager::new(
            QueueLimits {
                stanzas: 8,
                bytes: 1 << 20,
            },
            SlowConsumerPolicy::Close,
        );
        assert!(sm.bind(full("a@x/1"), 2).is_some());
        assert!(sm.bind(full("a@x/2"), 2).is_some());
        assert!(sm.bind(full("a@x/3"), 2).is_none());
        assert!(
            sm.bind(full("a@x/2"), 2).is_some(),
            "a replacement adds nothing"
        );
        assert!(
            sm.bind(full("b@x/1"), 2).is_some(),
            "the limit is per account"
        );
        assert_eq!(sm.count(), 3);
    }

    #[tokio::test]
    async fn bare_delivery_prefers_highest_non_negative_priority() {
        let sm = SessionManager::new(
            QueueLimits {
                stanzas: 8,
                bytes: 1 << 20,
            },
            SlowConsumerPolicy::Close,
        );
        let low = sm.bind(full("a@x/low"), 100).unwrap();
        let high = sm.bind(full("a@x/high"), 100).unwrap();
        let neg = sm.bind(full("a@x/neg"), 100).unwrap();
        sm.set_presence(&full("a@x/low"), true, 1);
        sm.set_presence(&full("a@x/high"), true, 5);
        sm.set_presence(&full("a@x/neg"), true, -1);
        let bare: BareJid = "a@x".parse().unwrap();
        assert_eq!(
            sm.deliver_message_to_bare(&bare, &Bytes::from_static(b"m")),
            vec![full("a@x/high")]
        );
        assert!(high.control.pop().is_some());
        assert!(low.control.pop().is_none());
        assert!(neg.control.pop().is_none());
        sm.set_presence(&full("a@x/high"), true, -2);
        sm.set_presence(&full("a@x/low"), true, -2);
        assert!(
            sm.deliver_message_to_bare(&bare, &Bytes::from_static(b"m"))
                .is_empty()
        );
        assert_eq!(sm.deliver_to_available(&bare, &Bytes::from_static(b"p")), 3);
    }

    /// Withholds presence from sessions on resource `quiet`, and records what it saw.
    #[derive(Default)]
    struct QuietPresence(std::sync::Mutex<Vec<(String, SessionId, StanzaClass)>>);

    impl OutboundFilter for QuietPresence {
        fn admit(&self, jid: &FullJid, id: SessionId, stanza: &Queued) -> bool {
            let mut seen = self.0.lock().unwrap();
            seen.push((jid.to_string(), id, stanza.class));
            !(jid.resource().as_str() == "quiet" && stanza.class == StanzaClass::Presence)
        }
    }

    #[test]
    fn every_delivery_passes_the_outbound_filters_with_its_class() {
        let filter = Arc::new(QuietPresence::default());
        let sm = SessionManager::new(
            QueueLimits {
                stanzas: 8,
                bytes: 1 << 20,
            },
            SlowConsumerPolicy::Close,
        )
        .with_outbound_filters(vec![filter.clone()]);
        let quiet = sm.bind(full("a@x/quiet"), 100).unwrap();
        let loud = sm.bind(full("a@x/loud"), 100).unwrap();
        sm.set_presence(&full("a@x/quiet"), true, 0);
        sm.set_presence(&full("a@x/loud"), true, 0);
        let bare: BareJid = "a@x".parse().unwrap();
        let presence = Bytes::from_static(b"<presence from='b@x/r'/>");
        assert_eq!(sm.deliver_to_available(&bare, &presence), 2);
        let chat = corvid_xml::Element::new("message", corvid_proto::ns::CLIENT)
            .with_child(corvid_xml::Element::new("body", corvid_proto::ns::CLIENT).with_text("hi"));
        sm.deliver_message_to_bare(&bare, Queued::of(&chat));
        // The quiet session got the message only; the loud one both.
        assert!(
            quiet
                .control
                .pop()
                .is_some_and(|b| b.starts_with(b"<message"))
        );
        assert!(quiet.control.pop().is_none());
        assert!(
            loud.control
                .pop()
                .is_some_and(|b| b.starts_with(b"<presence"))
        );
        assert!(
            loud.control
                .pop()
                .is_some_and(|b| b.starts_with(b"<message"))
        );
        let seen = filter.0.lock().unwrap();
        assert_eq!(seen.len(), 4);
        assert!(seen.contains(&(
            "a@x/quiet".to_string(),
            quiet.id,
            StanzaClass::Message { body: true }
        )));
        assert!(seen.contains(&("a@x/loud".to_string(), loud.id, StanzaClass::Presence)));
    }

    #[tokio::test]
    async fn full_queue_closes_slow_consumer() {
        let sm = SessionManager::new(
            QueueLimits {
                stanzas: 2,
                bytes: 1 << 20,
            },
            SlowConsumerPolicy::Close,
        );
        let s = sm.bind(full("a@x/r"), 100).unwrap();
        for _ in 0..3 {
            sm.deliver_to_full(&full("a@x/r"), &Bytes::from_static(b"m"));
        }
        assert_eq!(
            s.control.closed().await.condition,
            StreamErrorCondition::PolicyViolation
        );
    }

    #[tokio::test]
    async fn queued_bytes_are_bounded_too() {
        let sm = SessionManager::new(
            QueueLimits {
                stanzas: 100,
                bytes: 10,
            },
            SlowConsumerPolicy::Drop,
        );
        let s = sm.bind(full("a@x/r"), 100).unwrap();
        let big = Bytes::from(vec![b'x'; 25]);
        // One stanza larger than the limit still goes through an empty queue …
        sm.deliver_to_full(&full("a@x/r"), &big);
        // … but nothing more fits behind it, until it was written.
        sm.deliver_to_full(&full("a@x/r"), &Bytes::from_static(b"m"));
        assert_eq!(s.control.pop().map(|b| b.len()), Some(25));
        assert_eq!(s.control.pop(), None);
        for _ in 0..3 {
            sm.deliver_to_full(&full("a@x/r"), &Bytes::from_static(b"1234"));
        }
        assert_eq!(s.control.pop().map(|b| b.len()), Some(4));
        assert_eq!(s.control.pop().map(|b| b.len()), Some(4));
        assert_eq!(
            s.control.pop(),
            None,
            "a third 4-byte stanza passes 10 bytes"
        );
    }
}
