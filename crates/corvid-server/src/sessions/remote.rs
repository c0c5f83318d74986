//! The sessions of the cluster's other nodes, as this node knows them from the shared
//! registry (`cluster/`), beside its own in the same map: routing, presence and the modules
//! see one user's resources wherever they are bound, and a stanza for a resource on another
//! node is handed to the [`ClusterLink`] instead of a local queue.
//!
//! Each node announces its own sessions (bound, changed as others see them, ended), numbered
//! in the order of their changes; what others apply is never older than what they have.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use corvid_proto::{Bare, FullJid, StreamError, StreamErrorCondition};

use super::{
    Delivery, Home, Origin, Queued, Resource, ResourceState, SessionId, SessionManager,
    StoredPresence, Target,
};

/// A node's name in the cluster.
pub type NodeName = Arc<str>;

/// Where a resource bound on another node is, and the number of the latest announcement
/// applied for it.
#[derive(Clone, Debug)]
pub(super) struct RemoteSession {
    pub node: NodeName,
    pub seq: u64,
    pub since_ms: u64,
}

/// What other nodes know of a session: what routing and the modules read of another
/// node's resources. Its directed presences and other private state stay on its node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedState {
    /// The session's id on its node.
    pub id: SessionId,
    /// When it was bound (milliseconds since the epoch): of two sessions bound on one full
    /// JID on two nodes at once, the later wins.
    pub since_ms: u64,
    pub available: bool,
    pub priority: i8,
    pub carbons: bool,
    pub interested: bool,
    pub blocklist: bool,
    /// Its last available presence, serialized.
    pub presence: Option<Bytes>,
}

/// The part of a local session's state other nodes see.
pub(crate) fn shared(id: SessionId, state: &ResourceState, since: SystemTime) -> SharedState {
    SharedState {
        id,
        since_ms: since
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        available: state.available,
        priority: state.priority,
        carbons: state.carbons,
        interested: state.interested,
        blocklist: state.blocklist,
        presence: state.presence.as_ref().map(|p| p.0.clone()),
    }
}

impl SharedState {
    /// The state modules see of the session.
    pub fn resource_state(&self) -> ResourceState {
        ResourceState {
            available: self.available,
            priority: self.priority,
            presence: self.presence.clone().map(StoredPresence),
            interested: self.interested,
            carbons: self.carbons,
            blocklist: self.blocklist,
            ..ResourceState::default()
        }
    }
}

/// How the session manager reaches the rest of the cluster. Called synchronously, under
/// the session map's locks: implementations queue and return.
pub trait ClusterLink: Send + Sync + 'static {
    /// This node's name.
    fn node(&self) -> &NodeName;
    /// Hands a stanza to a session bound on another node.
    fn forward(&self, node: &NodeName, to: &FullJid, stanza: Queued);
    /// Asks another node to close one of its sessions; with `conflict`, the session was
    /// replaced here and its node ends it quietly (no unavailable presence).
    fn close(&self, node: &NodeName, to: &FullJid, error: StreamError);
    /// Tells the other nodes that a session of this node was bound or changed (`Some`), or
    /// ended (`None`).
    fn announce(&self, jid: &FullJid, state: Option<&SharedState>);
    /// Takes a session out of this node's registry without telling the others: it moved
    /// to another node, whose announcement replaces it there.
    fn forget(&self, jid: &FullJid);
}

impl SessionManager {
    /// Makes this node part of a cluster. Once only; false if it already was.
    pub fn join_cluster(&self, link: Arc<dyn ClusterLink>) -> bool {
        self.cluster.set(link).is_ok()
    }

    /// Whether this node is part of a cluster.
    pub fn clustered(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// Takes a session of this node out quietly, returning its state: it moves to another
    /// node (a resumption there, XEP-0198), whose announcement takes its place on every
    /// node, without the session seeming to end. `None` if it is no longer bound here.
    pub fn move_out(&self, jid: &FullJid, id: SessionId) -> Option<ResourceState> {
        let mut removed = None;
        self.users.remove_if_mut(&jid.bare(), |_, resources| {
            if let Some(pos) = resources
                .iter()
                .position(|r| r.id == id && r.local().is_some())
            {
                removed = Some(resources.remove(pos));
            }
            resources.is_empty()
        });
        let removed = removed?;
        if let Some(link) = self.cluster.get() {
            link.forget(jid);
        }
        Some(removed.state)
    }

    /// Delivers to a session bound on this node only: what another node handed over.
    pub fn deliver_local(&self, jid: &FullJid, stanza: Queued) -> Delivery {
        let target = self.users.get(&jid.bare()).and_then(|resources| {
            resources
                .iter()
                .find(|r| &r.jid == jid && r.local().is_some())
                .map(Target::of)
        });
        match target {
            Some(target) => {
                self.push(&target, stanza);
                Delivery::Delivered
            }
            None => Delivery::NoSuchResource,
        }
    }

    /// Ends a local session quietly because it was bound again on another node: it leaves
    /// the map now, so that its task's cleanup finds it gone (no unavailable presence, which
    /// would contradict the new session's), and what it never sent goes to the account's
    /// resources, the new one among them. False when it is not bound here.
    pub fn yield_to_other_node(&self, jid: &FullJid) -> bool {
        let mut removed = None;
        self.users.remove_if_mut(&jid.bare(), |_, resources| {
            if let Some(pos) = resources
                .iter()
                .position(|r| &r.jid == jid && r.local().is_some())
            {
                removed = Some(resources.remove(pos));
            }
            resources.is_empty()
        });
        let Some(r) = removed else {
            return false;
        };
        r.close(
            None,
            StreamError::with_text(
                StreamErrorCondition::Conflict,
                "Replaced by a new connection for the same resource",
            ),
        );
        true
    }

    /// Applies what `node` announced of one of its sessions (`None`: it ended), unless this
    /// node already applied a later announcement. A session this node has on the same full
    /// JID, bound earlier, yields to it (two logins on two nodes at once). True when an
    /// ended session was removed.
    pub fn apply_remote(
        &self,
        node: &NodeName,
        seq: u64,
        jid: &FullJid,
        state: Option<SharedState>,
    ) -> bool {
        let Some(link) = self.cluster.get() else {
            return false;
        };
        let bare = jid.bare();
        let Some(state) = state else {
            let mut removed = false;
            self.users.remove_if_mut(&bare, |_, resources| {
                resources.retain(|r| match &r.home {
                    Home::Node(remote)
                        if &r.jid == jid && remote.node == *node && remote.seq < seq =>
                    {
                        removed = true;
                        false
                    }
                    _ => true,
                });
                resources.is_empty()
            });
            return removed;
        };
        let resource = Resource {
            id: state.id,
            jid: jid.clone(),
            home: Home::Node(RemoteSession {
                node: node.clone(),
                seq,
                since_ms: state.since_ms,
            }),
            state: state.resource_state(),
            origin: Origin::default(),
        };
        let mut entry = self
            .users
            .entry(bare)
            .or_insert_with(|| Vec::with_capacity(1));
        let Some(pos) = entry.iter().position(|r| &r.jid == jid) else {
            entry.push(resource);
            return false;
        };
        match &entry[pos].home {
            Home::Node(known) if known.node == *node => {
                if known.seq < seq {
                    entry[pos] = resource;
                }
            }
            // Bound on two other nodes: the later login holds the JID (its node closes the
            // other), whatever order their announcements come in.
            Home::Node(known) => {
                if (state.since_ms, &**node) > (known.since_ms, &*known.node) {
                    entry[pos] = resource;
                }
            }
            Home::Local(_) => {
                let ours = shared(entry[pos].id, &entry[pos].state, entry[pos].origin.since);
                let theirs_later = (state.since_ms, &**node) > (ours.since_ms, &**link.node());
                if theirs_later {
                    let old = std::mem::replace(&mut entry[pos], resource);
                    drop(entry);
                    old.close(
                        None,
                        StreamError::with_text(
                            StreamErrorCondition::Conflict,
                            "Replaced by a new connection for the same resource",
                        ),
                    );
                }
            }
        }
        false
    }

    /// Closes a session bound on this node; false when there is none.
    pub fn close_local(&self, jid: &FullJid, error: StreamError) -> bool {
        let Some(resources) = self.users.get(&jid.bare()) else {
            return false;
        };
        match resources
            .iter()
            .find_map(|r| (&r.jid == jid).then(|| r.local()).flatten())
        {
            Some(control) => {
                control.close(error);
                true
            }
            None => false,
        }
    }

    /// Announces every session of this node again (after the link to the registry was
    /// lost, or another node took this one for dead), each under its entry's lock, so that
    /// no change made meanwhile is overtaken by an older state.
    pub fn announce_all(&self) {
        let Some(link) = self.cluster.get() else {
            return;
        };
        for entry in self.users.iter() {
            for r in entry.value().iter().filter(|r| r.local().is_some()) {
                link.announce(&r.jid, Some(&shared(r.id, &r.state, r.origin.since)));
            }
        }
    }

    /// Forgets every session of a node that left the cluster (it died, or restarted), and
    /// returns them with their last known state, for whoever announces their end.
    pub fn drop_node(&self, node: &str) -> Vec<(FullJid, SessionId, ResourceState)> {
        let mut dropped = Vec::new();
        self.users.retain(|_, resources| {
            resources.retain(|r| match &r.home {
                Home::Node(remote) if &*remote.node == node => {
                    dropped.push((r.jid.clone(), r.id, r.state.clone()));
                    false
                }
                _ => true,
            });
            !resources.is_empty()
        });
        dropped
    }

    /// This node's own sessions as other nodes see them: announced again after the link to
    /// the registry was lost.
    pub fn shared_states(&self) -> Vec<(FullJid, SharedState)> {
        let mut states = Vec::new();
        for entry in self.users.iter() {
            for r in entry.value().iter().filter(|r| r.local().is_some()) {
                states.push((r.jid.clone(), shared(r.id, &r.state, r.origin.since)));
            }
        }
        states
    }

    /// How many sessions of each other node this node knows.
    pub fn remote_counts(&self) -> Vec<(NodeName, usize)> {
        let mut counts: Vec<(NodeName, usize)> = Vec::new();
        for entry in self.users.iter() {
            for r in entry.value() {
                if let Home::Node(remote) = &r.home {
                    match counts.iter_mut().find(|(n, _)| *n == remote.node) {
                        Some((_, count)) => *count += 1,
                        None => counts.push((remote.node.clone(), 1)),
                    }
                }
            }
        }
        counts.sort();
        counts
    }
}
