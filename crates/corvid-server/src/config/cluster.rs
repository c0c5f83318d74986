//! The configuration of clustering (`[cluster]`): several Corvid nodes serving the same
//! domains, sharing one database (`[storage] url`, PostgreSQL) and one Redis, which holds
//! the session registry and carries stanzas between the nodes (`cluster/`).

use serde::Deserialize;

/// Off unless `redis` is set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The Redis every node of the cluster uses, e.g. `redis://127.0.0.1:6379/`;
    /// `rediss://` for TLS. Unset: this server runs alone.
    pub redis: Option<String>,
    /// This node's name, unique in the cluster (letters, digits, `-`, `_`, `.`); by default
    /// the host name. A node restarted under the same name takes its own place back.
    pub node: Option<String>,
    /// What the cluster's keys and channels in Redis start with, so that several clusters
    /// may share one Redis.
    pub prefix: String,
    /// How often a node says it is alive, in milliseconds.
    pub heartbeat_ms: u64,
    /// A node that has not said it is alive for this long is dead: its sessions leave the
    /// registry, its users' contacts see them go offline, and its rooms move to a live node.
    /// A node whose link to Redis closes (a crash) is seen dead at the next heartbeat.
    pub dead_after_ms: u64,
    /// Stanzas waiting to go to other nodes, at most; beyond it (Redis too slow or away)
    /// they are treated as undeliverable: messages go to offline storage.
    pub max_pending: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: None,
            node: None,
            prefix: "corvid".into(),
            heartbeat_ms: 500,
            dead_after_ms: 3_000,
            max_pending: 100_000,
        }
    }
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        self.redis.is_some()
    }

    /// The node's name: as configured, else the host name, else `corvid`.
    pub fn node_name(&self) -> String {
        if let Some(node) = &self.node {
            return node.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| valid_name(h))
            .unwrap_or_else(|| "corvid".to_owned())
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if let Some(node) = &self.node
            && !valid_name(node)
        {
            return Err(format!(
                "[cluster] node {node:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        if !valid_name(&self.prefix) {
            return Err("[cluster] prefix: use 1 to 64 letters, digits, '-', '_' or '.'".into());
        }
        if let Some(url) = &self.redis
            && !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+unix://")
                || url.starts_with("unix://"))
        {
            return Err("[cluster] redis: expected a redis:// or rediss:// URL".into());
        }
        if self.heartbeat_ms == 0 || self.dead_after_ms < 2 * self.heartbeat_ms {
            return Err("[cluster] dead_after_ms must be at least twice heartbeat_ms".into());
        }
        if self.max_pending == 0 {
            return Err("[cluster] max_pending must be positive".into());
        }
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
