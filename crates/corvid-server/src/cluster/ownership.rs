//! Who runs what: a room (and the pubsub service, as a whole) lives in one node's memory,
//! so its stanzas are routed to that node, named by `P:owner:KEY`. The first node to need
//! it takes it; when its owner dies, the next node to need it takes it over (the room is
//! loaded from storage there, as at a first start: persistent rooms keep their
//! configuration and history, their occupants join again).

use std::sync::Arc;

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
}

impl Owners {
    /// Forgets what a dead node owned: the next stanza for it looks again (and takes it).
    pub(super) fn forget_node(&self, node: &str) {
        self.known.retain(|_, owner| &**owner != node);
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
