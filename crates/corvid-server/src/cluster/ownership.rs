//! Who runs what: a room (and the pubsub service, as a whole) lives in one node's memory,
//! so its stanzas are routed to that node, named by `P:owner:KEY`. The first node to need
//! it takes it; when its owner dies, the next node to need it takes it over (the room is
//! loaded from storage there, as at a first start: persistent rooms keep their
//! configuration and history, their occupants join again).
//!
//! Each node remembers which rooms run elsewhere its own users entered, and under which
//! nickname; when such a room's node dies, it tells them they were removed from it, as a
//! service shutting down does (XEP-0045 status 332), so that their clients join again.

use std::sync::Arc;

use corvid_proto::{Bare, FullJid, ns};
use corvid_xml::Element;
use dashmap::DashMap;

use super::Cluster;
use crate::server::Server;
use crate::sessions::NodeName;

/// Returns the owner named in KEYS[1] if its alive key (ARGV[2] .. owner) exists; else
/// names ARGV[1] the owner and returns it.
const TAKE_OWNER: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[2] .. owner) == 1 then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]";

/// Where a room's or service's stanzas are handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Here,
    Node(NodeName),
}

/// The owners this node has looked up, and what it owns.
#[derive(Default)]
pub(super) struct Owners {
    known: DashMap<String, NodeName>,
    /// This node's users in rooms run elsewhere: user → (room, nickname) for each.
    entered: DashMap<FullJid, Vec<(String, String)>>,
}

impl Owners {
    /// Forgets what a dead node owned: the next stanza for it looks again (and takes it).
    /// Returns the rooms and services it owned.
    pub(super) fn forget_node(&self, node: &str) -> Vec<String> {
        let mut owned = Vec::new();
        self.known.retain(|key, owner| {
            let keep = &**owner != node;
            if !keep {
                owned.push(key.clone());
            }
            keep
        });
        owned
    }

    /// Notes a user's presence to a room run by another node: entered (or a new nickname),
    /// or left.
    fn note_presence(&self, user: FullJid, room: &str, nick: &str, available: bool) {
        let mut rooms = self.entered.entry(user).or_default();
        rooms.retain(|(r, _)| r != room);
        if available {
            rooms.push((room.to_owned(), nick.to_owned()));
        }
        let empty = rooms.is_empty();
        let user = rooms.key().clone();
        drop(rooms);
        if empty {
            self.entered.remove_if(&user, |_, rooms| rooms.is_empty());
        }
    }

    /// Takes the users in any of `rooms`, with the room and their nickname.
    fn take_occupants(&self, rooms: &[String]) -> Vec<(FullJid, String, String)> {
        let mut found = Vec::new();
        self.entered.retain(|user, entered| {
            entered.retain(|(room, nick)| {
                let lost = rooms.contains(room);
                if lost {
                    found.push((user.clone(), room.clone(), nick.clone()));
                }
                !lost
            });
            !entered.is_empty()
        });
        found
    }
}

impl Cluster {
    /// The node that runs `key` (a room's bare JID, a service's domain), taking it when
    /// no live node does. Without Redis, this node handles it.
    pub async fn owner_of(&self, key: &str) -> Owner {
        let owner = match self.owners.known.get(key) {
            Some(owner) => owner.clone(),
            None => {
                let mut redis = self.redis();
                let taken: Result<String, _> = redis::Script::new(TAKE_OWNER)
                    .key(self.keys.owner(key))
                    .arg(&*self.node)
                    .arg(self.keys.alive(""))
                    .invoke_async(&mut redis)
                    .await;
                match taken {
                    Ok(owner) => {
                        let owner: NodeName = owner.into();
                        self.owners.known.insert(key.to_owned(), owner.clone());
                        owner
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, key, "cluster: cannot look up an owner");
                        return Owner::Here;
                    }
                }
            }
        };
        if owner == self.node {
            Owner::Here
        } else {
            Owner::Node(owner)
        }
    }
}

impl Cluster {
    /// A presence from one of this node's users to a room run by another node (see the
    /// module's documentation).
    pub fn note_room_presence(&self, stanza: &Element, room: &corvid_proto::Jid) {
        let (Some(nick), Some(Ok(user))) = (room.resource(), stanza.attr("from").map(FullJid::new))
        else {
            return;
        };
        let available = match stanza.attr("type") {
            None => true,
            Some("unavailable") => false,
            Some(_) => return,
        };
        self.owners
            .note_presence(user, &room.bare().to_string(), nick.as_str(), available);
    }

    /// A user of this node's session ended: the rooms it had entered elsewhere hear it
    /// from the registry, this node forgets them.
    pub fn session_ended(&self, user: &FullJid) {
        self.owners.entered.remove(user);
    }

    /// A node died: what it owned is looked up again, and this node's users in its rooms
    /// are told they are out of them.
    pub(super) async fn owner_died(&self, server: &Arc<Server>, node: &str) {
        let owned = self.owners.forget_node(node);
        if owned.is_empty() {
            return;
        }
        for (user, room, nick) in self.owners.take_occupants(&owned) {
            let Ok(from) = FullJid::new(&format!("{room}/{nick}")) else {
                continue;
            };
            let x = Element::new("x", ns::MUC_USER)
                .with_child(
                    Element::new("item", ns::MUC_USER)
                        .with_attr("affiliation", "none")
                        .with_attr("role", "none"),
                )
                .with_child(Element::new("status", ns::MUC_USER).with_attr("code", "110"))
                .with_child(Element::new("status", ns::MUC_USER).with_attr("code", "332"));
            let presence = Element::new("presence", ns::CLIENT)
                .with_attr("from", from.as_str())
                .with_attr("to", user.as_str())
                .with_attr("type", "unavailable")
                .with_child(x);
            crate::router::route(server, presence).await;
        }
    }
}

impl Cluster {
    /// After the link to Redis was lost (Redis may have come back empty): forgets every
    /// owner looked up, and claims again what this node runs, so that every node looks
    /// owners up afresh in Redis and they agree again. (While Redis was away, each node
    /// ran what its users needed itself.)
    pub(super) async fn claim_again(&self) {
        let mine: Vec<String> = self
            .owners
            .known
            .iter()
            .filter(|entry| *entry.value() == self.node)
            .map(|entry| entry.key().clone())
            .collect();
        self.owners.known.clear();
        for key in mine {
            if let Owner::Node(node) = self.owner_of(&key).await {
                tracing::warn!(key, %node, "cluster: another node took over what this node ran");
            }
        }
    }
}

/// Adds to `pipe` the release of everything this node owns (it is leaving).
pub(super) fn release_all(cluster: &Cluster, pipe: &mut redis::Pipeline) {
    for entry in cluster.owners.known.iter() {
        if *entry.value() == cluster.node {
            pipe.cmd("DEL")
                .arg(cluster.keys.owner(entry.key()))
                .ignore();
        }
    }
}

/// Handles a stanza another node routed here because this node runs its target.
pub(super) async fn route_here(server: &Arc<Server>, stanza: &[u8]) {
    let parsed = std::str::from_utf8(stanza)
        .ok()
        .and_then(|text| corvid_xml::parse_element(text, corvid_proto::ns::CLIENT).ok());
    match parsed {
        Some(stanza) => crate::router::route(server, stanza).await,
        None => tracing::warn!("cluster: a routed stanza did not parse"),
    }
}
