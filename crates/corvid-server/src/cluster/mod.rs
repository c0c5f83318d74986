//! Clustering: several nodes serving the same domains, sharing one database and one Redis
//! (`[cluster]`, DESIGN.md "Storage"). Redis holds what the nodes must agree on, and carries
//! what they say to each other; no consensus is made here:
//!
//! - **Registry**: each node keeps its sessions (as others see them, [`SharedState`]) in a
//!   hash of its own, `P:sessions:NODE`, and announces every change on the broadcast channel
//!   `P:all`; every node keeps a replica of the others' sessions in its session manager
//!   (`sessions/remote.rs`), so routing never waits for Redis.
//! - **Delivery**: a stanza for a session on another node is published on that node's
//!   channel `P:to:NODE`, from one connection in order, so the order between a sender and a
//!   recipient is kept. Redis says how many subscribers got a publish: none means the node
//!   is gone, and the stanza is rerouted here as undeliverable (other resources, or offline
//!   storage) instead of lost. A copy stays here until the receiving node acknowledges it
//!   (`acks.rs`): what a node that dies never settled is rerouted the same way.
//! - **Liveness**: each node refreshes `P:alive:NODE` every heartbeat; a node whose key
//!   expired, or whose channel has no subscriber at two heartbeats in a row (its process is
//!   gone: Redis closed its connection), is dead. One live node (whoever takes the cleanup
//!   lock) removes its sessions, tells every node, and says them unavailable to their
//!   contacts; its users can log in on another node at once.
//! - **Ownership**: a room (and the whole pubsub service) is run by one node at a time, the
//!   one named by `P:owner:KEY` (`ownership.rs`); stanzas for it are routed there, and a live
//!   node takes it over when its owner dies.
//! - **Caches**: writes that other nodes' caches depend on (rosters, the offline and photo
//!   indexes) are told on `P:all` ([`corvid_store::StoreChange`]).

mod acks;
mod link;
mod liveness;
mod ownership;
mod receive;
mod resume;
pub mod status;
pub mod wire;

use crate::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, Weak};

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::config::ClusterConfig;
use crate::server::Server;
use crate::sessions::NodeName;

pub use acks::Receipt;
pub use ownership::Owner;
pub use status::{NodeStatus, cluster_status};

/// Redis key and channel names, all under the configured prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// Hash: node name → its [`NodeInfo`].
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// String with a TTL: the node's incarnation while it is alive.
    pub fn alive(&self, node: &str) -> String {
        format!("{}:alive:{node}", self.prefix)
    }

    /// Hash: full JID → registry value (`wire::registry_value`), the node's sessions.
    pub fn sessions(&self, node: &str) -> String {
        format!("{}:sessions:{node}", self.prefix)
    }

    /// Channel: frames for one node.
    pub fn to(&self, node: &str) -> String {
        format!("{}:to:{node}", self.prefix)
    }

    /// Channel: frames for every node.
    pub fn all(&self) -> String {
        format!("{}:all", self.prefix)
    }

    fn cleanup(&self, node: &str, incarnation: u64) -> String {
        format!("{}:cleanup:{node}:{incarnation}", self.prefix)
    }

    fn slot(&self, slot: u32) -> String {
        format!("{}:slot:{slot}", self.prefix)
    }

    fn owner(&self, key: &str) -> String {
        format!("{}:owner:{key}", self.prefix)
    }
}

/// What the nodes hash says of a node: `INCARNATION STARTED_UNIX PID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Random, new at every start: tells a node's lives apart.
    pub incarnation: u64,
    pub started_unix: u64,
    pub pid: u32,
}

impl NodeInfo {
    pub fn parse(text: &str) -> Option<NodeInfo> {
        let mut fields = text.split(' ');
        let info = NodeInfo {
            incarnation: fields.next()?.parse().ok()?,
            started_unix: fields.next()?.parse().ok()?,
            pid: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(info)
    }

    fn text(&self) -> String {
        format!("{} {} {}", self.incarnation, self.started_unix, self.pid)
    }
}

/// This node's part in the cluster.
pub struct Cluster {
    node: NodeName,
    info: NodeInfo,
    keys: Keys,
    config: ClusterConfig,
    redis: ConnectionManager,
    client: redis::Client,
    server: Weak<Server>,
    /// To the publisher task (`link.rs`), in order.
    out: mpsc::UnboundedSender<link::Out>,
    /// Stanzas for other nodes not yet published (bounded by `max_pending`).
    pending: AtomicUsize,
    /// Stanzas published to other nodes and not yet acknowledged, and those from other
    /// nodes not yet settled here (`acks.rs`).
    unacked: acks::Unacked,
    inbound: acks::Inbound,
    /// Resumptions (XEP-0198) of sessions held by other nodes (`resume.rs`).
    resumptions: resume::Resumptions,
    /// The dialback secret this node uses, as shared through Redis.
    dialback: Mutex<Option<Vec<u8>>>,
    /// Numbers this node's announcements, so others apply them in order.
    seq: AtomicU64,
    /// While the other nodes' sessions are being loaded: the sessions announced ended in
    /// the meantime (node, JID → number), which the loaded snapshot must not bring back.
    loading: Mutex<Option<HashMap<(String, String), u64>>>,
    /// The nodes alive at the last heartbeat (this one included).
    live: Mutex<Vec<NodeName>>,
    /// Rooms and services and which node runs them, as far as this node knows.
    owners: ownership::Owners,
    /// Where this node's archive numbers come from (`corvid_store::ArchiveIds`).
    slot: Mutex<Option<u32>>,
    /// Set when the node starts leaving: nothing puts it back in the registry then.
    leaving: std::sync::atomic::AtomicBool,
    /// Publishing, receiving, the heartbeat: stopped when the node leaves.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster: Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cluster: node {0} is alive already; give this node another name")]
    NameTaken(String),
    #[error("cluster: every archive slot ({0}) is taken by a live node")]
    NoSlot(u32),
}

impl Cluster {
    /// Joins the cluster: connects to Redis, takes this node's place (cleaning up after a
    /// previous life under the same name), loads the other nodes' sessions and starts the
    /// tasks that keep all of it current. Called before any listener accepts.
    pub async fn join(server: &Arc<Server>) -> Result<Arc<Cluster>, ClusterError> {
        let config = server.config.cluster.clone();
        let url = config.redis.clone().unwrap_or_default();
        let client = redis::Client::open(url.as_str())?;
        let redis = ConnectionManager::new(client.clone()).await?;
        let node: NodeName = config.node_name().into();
        let info = NodeInfo {
            incarnation: u64::from_be_bytes(crate::random_bytes::<8>()),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            pid: std::process::id(),
        };
        let (out, outgoing) = mpsc::unbounded_channel();
        let cluster = Arc::new(Cluster {
            node: node.clone(),
            info,
            keys: Keys::new(&config.prefix),
            config,
            redis,
            client,
            server: Arc::downgrade(server),
            out,
            pending: AtomicUsize::new(0),
            unacked: acks::Unacked::default(),
            inbound: acks::Inbound::default(),
            resumptions: resume::Resumptions::default(),
            dialback: Mutex::new(None),
            seq: AtomicU64::new(1),
            loading: Mutex::new(None),
            live: Mutex::new(Vec::new()),
            owners: ownership::Owners::default(),
            slot: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            leaving: std::sync::atomic::AtomicBool::new(false),
        });
        let previous_life = cluster.take_place(server).await?;
        cluster.share_dialback_secret(server).await?;
        let subscribed = receive::subscribe(&cluster).await?;
        cluster.register().await?;
        server.sessions.join_cluster(cluster.clone());
        server.iq_tracker.set_node(&cluster.node);
        server.resumption.set_node(&cluster.node);
        server.store.share_with_other_writers();
        let store_link = Arc::downgrade(&cluster);
        server.store.watch_changes(Arc::new(move |change| {
            if let Some(cluster) = store_link.upgrade() {
                cluster.broadcast(&wire::ToAll::Changed {
                    node: cluster.node.to_string(),
                    change,
                });
            }
        }));
        let tasks = [
            tokio::spawn(link::publish(cluster.clone(), outgoing)),
            tokio::spawn(receive::run(cluster.clone(), subscribed)),
            tokio::spawn(liveness::run(cluster.clone())),
            tokio::spawn(acks::run(cluster.clone())),
        ];
        cluster.load_others().await?;
        if let Some(previous) = previous_life {
            liveness::node_died(&cluster, server, &cluster.node, &previous).await;
        }
        liveness::check_once(&cluster, server).await?;
        lock(&cluster.tasks).extend(tasks);
        tracing::info!(node = %cluster.node, "joined the cluster");
        Ok(cluster)
    }

    pub fn node(&self) -> &NodeName {
        &self.node
    }

    /// Stanzas this node published to others that they have not acknowledged yet.
    pub fn unacknowledged(&self) -> usize {
        self.unacked.count()
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn server(&self) -> Option<Arc<Server>> {
        self.server.upgrade()
    }

    fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Refuses a name a live node holds; cleans up after this node's previous life (a
    /// crash: its sessions are said gone, as for any dead node); takes an archive slot.
    async fn take_place(&self, server: &Arc<Server>) -> Result<Option<NodeInfo>, ClusterError> {
        let mut redis = self.redis();
        let previous: Option<String> = redis::cmd("HGET")
            .arg(self.keys.nodes())
            .arg(&*self.node)
            .query_async(&mut redis)
            .await?;
        let previous = previous.as_deref().and_then(NodeInfo::parse);
        if previous.is_some() {
            let alive: Option<String> = redis::cmd("GET")
                .arg(self.keys.alive(&self.node))
                .query_async(&mut redis)
                .await?;
            let subscribers = liveness::subscribers(&mut redis, &self.keys, &self.node).await?;
            if alive.is_some() && subscribers > 0 {
                return Err(ClusterError::NameTaken(self.node.to_string()));
            }
        }
        let slot = liveness::claim_slot(self).await?;
        server.store.archive_ids().use_slot(Some(slot));
        *lock(&self.slot) = Some(slot);
        Ok(previous)
    }

    /// The nodes make and check dialback keys (XEP-0220) with one secret, kept in Redis: a
    /// remote server may connect back to any of them to verify a key another one sent. A
    /// node offers the secret it uses (a new one at first), and uses whichever Redis has.
    async fn share_dialback_secret(&self, server: &Arc<Server>) -> Result<(), redis::RedisError> {
        let mut redis = self.redis();
        let key = format!("{}:dialback", self.keys.prefix);
        let mine = lock(&self.dialback)
            .clone()
            .unwrap_or_else(|| crate::random_bytes::<32>().to_vec());
        let secret: Vec<u8> = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(&mine[..])
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&key)
            .query_async::<(Vec<u8>,)>(&mut redis)
            .await?
            .0;
        server.s2s.secret.replace(&secret);
        *lock(&self.dialback) = Some(secret);
        Ok(())
    }

    /// Puts this node in the nodes hash and says it is alive; `true` if it was missing
    /// (another node had taken it for dead, and removed its sessions).
    async fn register(&self) -> Result<bool, redis::RedisError> {
        if self.leaving.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(false);
        }
        let mut redis = self.redis();
        let (added,): (i64,) = redis::pipe()
            .cmd("HSET")
            .arg(self.keys.nodes())
            .arg(&*self.node)
            .arg(self.info.text())
            .cmd("SET")
            .arg(self.keys.alive(&self.node))
            .arg(self.info.incarnation)
            .arg("PX")
            .arg(self.config.dead_after_ms)
            .ignore()
            .query_async(&mut redis)
            .await?;
        Ok(added == 1)
    }

    /// Loads the sessions of every other node into the session manager. Announcements that
    /// arrive meanwhile are applied as they come; an end announced meanwhile is remembered
    /// so that the (possibly older) snapshot does not bring the session back.
    async fn load_others(&self) -> Result<(), redis::RedisError> {
        let Some(server) = self.server() else {
            return Ok(());
        };
        *lock(&self.loading) = Some(HashMap::new());
        let result = self.load_snapshot(&server).await;
        *lock(&self.loading) = None;
        result
    }

    async fn load_snapshot(&self, server: &Arc<Server>) -> Result<(), redis::RedisError> {
        let mut redis = self.redis();
        let nodes: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.nodes())
            .query_async(&mut redis)
            .await?;
        for node in nodes.keys().filter(|n| **n != *self.node) {
            let sessions: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
                .arg(self.keys.sessions(node))
                .query_async(&mut redis)
                .await?;
            let name: NodeName = node.as_str().into();
            for (jid, value) in sessions {
                let Some((seq, Some(state))) = wire::decode_registry_value(&value) else {
                    continue;
                };
                let Ok(full) = corvid_proto::FullJid::new(&jid) else {
                    continue;
                };
                let ended = lock(&self.loading)
                    .as_ref()
                    .and_then(|ended| ended.get(&(node.clone(), jid.clone())).copied());
                if ended.is_some_and(|ended| ended >= seq) {
                    continue;
                }
                server.sessions.apply_remote(&name, seq, &full, Some(state));
            }
        }
        Ok(())
    }

    /// Queues a frame for every node.
    fn broadcast(&self, frame: &wire::ToAll) {
        let _ = self.out.send(link::Out::Broadcast(frame.encode()));
    }

    /// Leaves the cluster at shutdown, once this node's sessions ended: its registry entry
    /// goes, and the others are told at once instead of at the next heartbeat.
    pub async fn leave(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::Release);
        // Sessions end (and announce it) while the server drains; wait for that, bounded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while let Some(server) = self.server() {
            if server.sessions.count() == 0 || std::time::Instant::now() > deadline {
                break;
            }
            drop(server);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // What the sessions said as they ended goes out before the node says it left.
        let (flushed, published) = tokio::sync::oneshot::channel();
        if self.out.send(link::Out::Flush(flushed)).is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), published).await;
        }
        // No heartbeat may put the node back after it left.
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        let mut redis = self.redis();
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL")
            .arg(self.keys.nodes())
            .arg(&*self.node)
            .ignore()
            .cmd("DEL")
            .arg(self.keys.alive(&self.node))
            .arg(self.keys.sessions(&self.node))
            .ignore()
            .cmd("PUBLISH")
            .arg(self.keys.all())
            .arg(
                wire::ToAll::NodeDown {
                    node: self.node.to_string(),
                    incarnation: self.info.incarnation,
                }
                .encode(),
            )
            .ignore();
        if let Some(slot) = *lock(&self.slot) {
            pipe.cmd("DEL").arg(self.keys.slot(slot)).ignore();
        }
        ownership::release_all(self, &mut pipe);
        if let Err(e) = pipe.query_async::<()>(&mut redis).await {
            tracing::warn!(error = %e, "cluster: could not say this node is leaving");
        }
        tracing::info!(node = %self.node, "left the cluster");
    }
}
