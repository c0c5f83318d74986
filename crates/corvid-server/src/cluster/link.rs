//! What this node says to the others: the session manager's [`ClusterLink`], and the one
//! task that publishes it all, in order, pipelined over one Redis connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use corvid_proto::{FullJid, StreamError};
use tokio::sync::mpsc;

use super::{Cluster, wire};
use crate::sessions::{ClusterLink, NodeName, Queued, SharedState};

/// Frames published at once, at most: one pipeline, one round trip.
const BATCH: usize = 512;

pub(super) enum Out {
    /// A stanza for a session on another node.
    Forward {
        node: NodeName,
        to: FullJid,
        stanza: Queued,
    },
    /// Another frame for one node (closing a session, a stanza for what it owns).
    ToNode {
        node: NodeName,
        frame: Vec<u8>,
    },
    /// A change of one of this node's sessions: into its registry hash, then told to all.
    Announce {
        jid: String,
        seq: u64,
        state: Option<SharedState>,
    },
    /// One of this node's sessions moved to another node: out of the registry hash only.
    Forget {
        jid: String,
    },
    Broadcast(Vec<u8>),
    /// Answered once everything queued before it was published.
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl ClusterLink for Cluster {
    fn node(&self) -> &NodeName {
        &self.node
    }

    fn forward(&self, node: &NodeName, to: &FullJid, stanza: Queued) {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.config.max_pending {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%node, "cluster: too many stanzas waiting for Redis; rerouted");
            if let Some(server) = self.server() {
                reroute(server, vec![(to.clone(), stanza)]);
            }
            return;
        }
        let out = Out::Forward {
            node: node.clone(),
            to: to.clone(),
            stanza,
        };
        if self.out.send(out).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn close(&self, node: &NodeName, to: &FullJid, error: StreamError) {
        let frame = wire::ToNode::Close {
            to: to.to_string(),
            condition: error.condition.name().to_owned(),
            text: error.text.unwrap_or_default(),
        };
        let _ = self.out.send(Out::ToNode {
            node: node.clone(),
            frame: frame.encode(),
        });
    }

    fn forget(&self, jid: &FullJid) {
        let _ = self.out.send(Out::Forget {
            jid: jid.to_string(),
        });
    }

    fn announce(&self, jid: &FullJid, state: Option<&SharedState>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let _ = self.out.send(Out::Announce {
            jid: jid.to_string(),
            seq,
            state: state.cloned(),
        });
    }
}

impl Cluster {
    /// Routes a stanza on the node that owns its target (`ownership.rs`).
    pub fn send_route(&self, node: &NodeName, stanza: bytes::Bytes) {
        self.send_to(node, wire::ToNode::Route { stanza }.encode());
    }

    /// Publishes a frame on one node's channel, in order with the rest.
    pub(super) fn send_to(&self, node: &NodeName, frame: Vec<u8>) {
        let _ = self.out.send(Out::ToNode {
            node: node.clone(),
            frame,
        });
    }
}

/// Publishes what the node queues, until the cluster is left. A stanza no node took (its
/// node is gone, or Redis is) is handled here as undeliverable to that session; the nodes
/// it was for are forgotten until they announce themselves again.
pub(super) async fn publish(cluster: Arc<Cluster>, mut outgoing: mpsc::UnboundedReceiver<Out>) {
    let mut redis = cluster.redis();
    let mut batch = Vec::with_capacity(BATCH);
    while outgoing.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        let mut counted = 0;
        for out in &batch {
            match out {
                Out::Forward { node, to, stanza } => {
                    let seq = cluster
                        .unacked
                        .record(node, to, stanza, cluster.config.max_pending);
                    let frame = wire::ToNode::Deliver {
                        to: to.to_string(),
                        class: stanza.class,
                        stanza: stanza.bytes.clone(),
                        sent: Some(wire::Sent {
                            node: cluster.node.to_string(),
                            incarnation: cluster.info.incarnation,
                            seq,
                        }),
                    };
                    pipe.cmd("PUBLISH")
                        .arg(cluster.keys.to(node))
                        .arg(frame.encode());
                    counted += 1;
                }
                Out::ToNode { node, frame } => {
                    pipe.cmd("PUBLISH").arg(cluster.keys.to(node)).arg(frame);
                    counted += 1;
                }
                Out::Announce { jid, seq, state } => {
                    match state {
                        Some(state) => pipe
                            .cmd("HSET")
                            .arg(cluster.keys.sessions(&cluster.node))
                            .arg(jid)
                            .arg(wire::registry_value(*seq, Some(state))),
                        None => pipe
                            .cmd("HDEL")
                            .arg(cluster.keys.sessions(&cluster.node))
                            .arg(jid),
                    }
                    .ignore();
                    let frame = wire::ToAll::Session {
                        node: cluster.node.to_string(),
                        seq: *seq,
                        jid: jid.clone(),
                        state: state.clone(),
                    };
                    pipe.cmd("PUBLISH")
                        .arg(cluster.keys.all())
                        .arg(frame.encode())
                        .ignore();
                }
                Out::Forget { jid } => {
                    pipe.cmd("HDEL")
                        .arg(cluster.keys.sessions(&cluster.node))
                        .arg(jid)
                        .ignore();
                }
                Out::Broadcast(frame) => {
                    pipe.cmd("PUBLISH")
                        .arg(cluster.keys.all())
                        .arg(frame)
                        .ignore();
                }
                Out::Flush(_) => {}
            }
        }
        let receivers: Result<Vec<i64>, _> = if pipe.cmd_iter().next().is_none() {
            Ok(Vec::new())
        } else {
            pipe.query_async(&mut redis).await
        };
        if let Err(e) = &receivers {
            tracing::warn!(error = %e, "cluster: publishing failed");
        }
        let receivers = receivers.unwrap_or_else(|_| vec![0; counted]);
        let mut receivers = receivers.into_iter();
        let mut gone: Vec<NodeName> = Vec::new();
        for out in batch.drain(..) {
            match out {
                Out::Forward { node, .. } => {
                    cluster.pending.fetch_sub(1, Ordering::Relaxed);
                    if receivers.next().unwrap_or(0) == 0 && !gone.contains(&node) {
                        gone.push(node);
                    }
                }
                Out::ToNode { .. } => {
                    receivers.next();
                }
                Out::Announce { .. } | Out::Forget { .. } | Out::Broadcast(_) => {}
                Out::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
        let Some(server) = cluster.server() else {
            return;
        };
        for node in gone {
            // Until it announces itself again (it may only have lost its link to Redis),
            // its sessions are not routed to; the liveness check decides if it died. What
            // it had not acknowledged (this batch's, and what Redis was still to send it)
            // is handled here.
            let dropped = server.sessions.drop_node(&node);
            tracing::warn!(%node, sessions = dropped.len(), "cluster: a node took nothing");
            super::acks::reroute_unacked(&cluster, &node);
        }
    }
}

/// Handles stanzas no session took as a session's unsent ones (`router::reroute_unsent`):
/// messages go to the account's other resources or offline, IQs are answered. Each is
/// settled (its receipt dropped) only once that is done.
pub(super) fn reroute(server: Arc<crate::server::Server>, stanzas: Vec<(FullJid, Queued)>) {
    tokio::spawn(async move {
        // A copy of an offline message is still stored: it is not handed on twice.
        for (to, stanza) in stanzas.into_iter().filter(|(_, s)| !s.stored) {
            crate::router::reroute_unsent(&server, &to, vec![stanza.bytes.clone()]).await;
            drop(stanza);
        }
    });
}
