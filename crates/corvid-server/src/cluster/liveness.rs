//! Which nodes are alive: this node's heartbeat, and the check of the others at each beat.
//! A dead node's sessions are removed by one live node (the one that takes its cleanup
//! lock), which says them unavailable to their contacts as if they had logged out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corvid_proto::FullJid;

use super::{Cluster, ClusterError, Keys, NodeInfo, lock, wire};
use crate::module::{Ctx, SessionEvent};
use crate::server::Server;
use crate::sessions::NodeName;

/// Checks of a node's channel that must find no subscriber, in a row, before it is dead.
const SILENT_BEATS: u32 = 2;

/// Deletes a node's entry and sessions only if the entry is still the life that died (a
/// restart under the same name may have put a new one in already).
const FORGET_NODE: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if redis.call('GET', KEYS[3]) == ARGV[3] then
  redis.call('DEL', KEYS[3])
end
redis.call('DEL', KEYS[2])
return 1";

/// Extends a slot's claim only while this node holds it.
const KEEP_SLOT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Says this node is alive at every heartbeat and checks the others.
pub(super) async fn run(cluster: Arc<Cluster>) {
    let mut beat = tokio::time::interval(Duration::from_millis(cluster.config.heartbeat_ms));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut silent: HashMap<String, u32> = HashMap::new();
    loop {
        beat.tick().await;
        let Some(server) = cluster.server() else {
            return;
        };
        if let Err(e) = heartbeat(&cluster, &server, &mut silent).await {
            tracing::warn!(error = %e, "cluster: heartbeat failed");
        }
    }
}

/// One check of the others, before this node takes part: who is alive.
pub(super) async fn check_once(
    cluster: &Arc<Cluster>,
    server: &Arc<Server>,
) -> Result<(), redis::RedisError> {
    heartbeat(cluster, server, &mut HashMap::new()).await
}

async fn heartbeat(
    cluster: &Arc<Cluster>,
    server: &Arc<Server>,
    silent: &mut HashMap<String, u32>,
) -> Result<(), redis::RedisError> {
    if cluster.register().await? {
        tracing::warn!("cluster: this node had been taken for dead; announcing its sessions");
        server.sessions.announce_all();
    }
    keep_slot(cluster).await?;
    let mut redis = cluster.redis();
    let nodes: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(cluster.keys.nodes())
        .query_async(&mut redis)
        .await?;
    let others: Vec<(String, NodeInfo)> = nodes
        .into_iter()
        .filter(|(name, _)| *name != *cluster.node)
        .filter_map(|(name, info)| Some((name, NodeInfo::parse(&info)?)))
        .collect();
    let mut pipe = redis::pipe();
    for (name, _) in &others {
        pipe.cmd("GET").arg(cluster.keys.alive(name));
        pipe.cmd("PUBSUB").arg("NUMSUB").arg(cluster.keys.to(name));
    }
    let answers: Vec<redis::Value> = if others.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(&mut redis).await?
    };
    let mut live: Vec<NodeName> = vec![cluster.node.clone()];
    silent.retain(|name, _| others.iter().any(|(n, _)| n == name));
    for ((name, info), answer) in others.iter().zip(answers.chunks(2)) {
        let alive: Option<String> = redis::from_redis_value(answer[0].clone()).unwrap_or(None);
        let subscribers = numsub(&answer[1]);
        let expired = alive.and_then(|a| a.parse::<u64>().ok()) != Some(info.incarnation);
        let count = silent.entry(name.clone()).or_insert(0);
        *count = if subscribers == 0 { *count + 1 } else { 0 };
        if expired || *count >= SILENT_BEATS {
            silent.remove(name);
            node_died(cluster, server, name, info).await;
        } else {
            live.push(name.as_str().into());
        }
    }
    live.sort();
    *lock(&cluster.live) = live;
    Ok(())
}

/// The subscriber count in a `PUBSUB NUMSUB` answer for one channel: `[name, count]`.
pub(super) fn numsub(answer: &redis::Value) -> i64 {
    let pair: Vec<redis::Value> = redis::from_redis_value(answer.clone()).unwrap_or_default();
    pair.get(1)
        .and_then(|count| redis::from_redis_value::<i64>(count.clone()).ok())
        .unwrap_or(0)
}

/// How many subscribers a node's channel has now.
pub(super) async fn subscribers(
    redis: &mut redis::aio::ConnectionManager,
    keys: &Keys,
    node: &str,
) -> Result<i64, redis::RedisError> {
    let answer: redis::Value = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(keys.to(node))
        .query_async(redis)
        .await?;
    Ok(numsub(&answer))
}

/// A node died (or a previous life of this one did). This node forgets its sessions; if it
/// is the one to clean up (the first to take the lock), it removes them from the registry,
/// tells every node, and runs their end as if each had logged out here.
pub(super) async fn node_died(
    cluster: &Cluster,
    server: &Arc<Server>,
    node: &str,
    info: &NodeInfo,
) {
    server.sessions.drop_node(node);
    cluster.owner_died(server, node).await;
    cluster.inbound.forget(node, info.incarnation);
    super::acks::reroute_unacked(cluster, node);
    let mut redis = cluster.redis();
    let locked: Result<Option<String>, _> = redis::cmd("SET")
        .arg(cluster.keys.cleanup(node, info.incarnation))
        .arg(&*cluster.node)
        .arg("NX")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut redis)
        .await;
    if !matches!(locked, Ok(Some(_))) {
        return;
    }
    let sessions: HashMap<String, Vec<u8>> = match redis::cmd("HGETALL")
        .arg(cluster.keys.sessions(node))
        .query_async(&mut redis)
        .await
    {
        Ok(sessions) => sessions,
        Err(e) => {
            tracing::warn!(error = %e, node, "cluster: cannot read a dead node's sessions");
            HashMap::new()
        }
    };
    let forgotten: Result<i64, _> = redis::Script::new(FORGET_NODE)
        .key(cluster.keys.nodes())
        .key(cluster.keys.sessions(node))
        .key(cluster.keys.alive(node))
        .arg(node)
        .arg(info.text())
        .arg(info.incarnation.to_string())
        .invoke_async(&mut redis)
        .await;
    if let Err(e) = forgotten {
        tracing::warn!(error = %e, node, "cluster: cannot remove a dead node");
    }
    cluster.broadcast(&wire::ToAll::NodeDown {
        node: node.to_owned(),
        incarnation: info.incarnation,
    });
    tracing::warn!(
        node,
        sessions = sessions.len(),
        "cluster: a node died; its sessions are ended"
    );
    let ctx = Ctx {
        server: server.clone(),
    };
    for (jid, value) in sessions {
        let (Ok(jid), Some((_, Some(state)))) =
            (FullJid::new(&jid), wire::decode_registry_value(&value))
        else {
            continue;
        };
        // Its user logged in again elsewhere, on the same resource, before the death was
        // noticed: that session is the resource now, and must not be said gone.
        if server.sessions.resources(&jid.to_bare()).contains(&jid) {
            continue;
        }
        let closed = SessionEvent::Closed {
            jid,
            id: state.id,
            last: state.resource_state(),
        };
        server.modules.on_session(&ctx, &closed).await;
    }
}

/// Takes a free archive slot (`corvid_store::ArchiveIds`), held while this node lives.
pub(super) async fn claim_slot(cluster: &Cluster) -> Result<u32, ClusterError> {
    let mut redis = cluster.redis();
    for slot in 0..corvid_store::ARCHIVE_SLOTS {
        let taken: Option<String> = redis::cmd("SET")
            .arg(cluster.keys.slot(slot))
            .arg(slot_owner(cluster))
            .arg("NX")
            .arg("PX")
            .arg(cluster.config.dead_after_ms)
            .query_async(&mut redis)
            .await?;
        if taken.is_some() {
            return Ok(slot);
        }
    }
    Err(ClusterError::NoSlot(corvid_store::ARCHIVE_SLOTS))
}

fn slot_owner(cluster: &Cluster) -> String {
    format!("{} {}", cluster.node, cluster.info.incarnation)
}

/// Extends this node's slot; one lost meanwhile (a stall longer than `dead_after_ms`) is
/// replaced, so that no two live nodes number archived messages alike.
async fn keep_slot(cluster: &Cluster) -> Result<(), redis::RedisError> {
    let Some(slot) = *lock(&cluster.slot) else {
        return Ok(());
    };
    let mut redis = cluster.redis();
    let kept: i64 = redis::Script::new(KEEP_SLOT)
        .key(cluster.keys.slot(slot))
        .arg(slot_owner(cluster))
        .arg(cluster.config.dead_after_ms)
        .invoke_async(&mut redis)
        .await?;
    if kept == 0 {
        tracing::warn!(
            slot,
            "cluster: this node's archive slot was lost; taking another"
        );
        match claim_slot(cluster).await {
            Ok(new) => {
                if let Some(server) = cluster.server() {
                    server.store.archive_ids().use_slot(Some(new));
                }
                *lock(&cluster.slot) = Some(new);
            }
            Err(e) => tracing::error!(error = %e, "cluster: no archive slot"),
        }
    }
    Ok(())
}
