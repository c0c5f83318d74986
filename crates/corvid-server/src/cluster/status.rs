//! `corvid cluster status`: the cluster as Redis knows it, read by any node's CLI.

use std::collections::HashMap;

use super::{Keys, NodeInfo};
use crate::config::ClusterConfig;

/// One node, as the registry has it.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub name: String,
    pub info: Option<NodeInfo>,
    /// Its heartbeat is current.
    pub alive: bool,
    /// Its channel has a subscriber (its process holds a connection to Redis).
    pub subscribed: bool,
    pub sessions: u64,
}

/// Every node in the registry, sorted by name.
pub async fn cluster_status(config: &ClusterConfig) -> Result<Vec<NodeStatus>, redis::RedisError> {
    let url = config.redis.clone().unwrap_or_default();
    let client = redis::Client::open(url.as_str())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let keys = Keys::new(&config.prefix);
    let nodes: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.nodes())
        .query_async(&mut redis)
        .await?;
    let mut status = Vec::new();
    for (name, info) in nodes {
        let info = NodeInfo::parse(&info);
        let (alive, subscribers, sessions): (Option<String>, redis::Value, u64) = redis::pipe()
            .cmd("GET")
            .arg(keys.alive(&name))
            .cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(keys.to(&name))
            .cmd("HLEN")
            .arg(keys.sessions(&name))
            .query_async(&mut redis)
            .await?;
        let alive = match (&info, alive.and_then(|a| a.parse::<u64>().ok())) {
            (Some(info), Some(incarnation)) => info.incarnation == incarnation,
            _ => false,
        };
        status.push(NodeStatus {
            name,
            info,
            alive,
            subscribed: super::liveness::numsub(&subscribers) > 0,
            sessions,
        });
    }
    status.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(status)
}
