//! What this node hears from the others: its own channel (stanzas for its sessions, closes,
//! stanzas for what it owns) and the broadcast channel (sessions, departures, changes).

use std::sync::Arc;
use std::time::Duration;

use corvid_proto::{FullJid, StreamError, StreamErrorCondition};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::wire::{ToAll, ToNode};
use super::{Cluster, lock};
use crate::module::{Ctx, SessionEvent};
use crate::server::Server;
use crate::sessions::{Delivery, NodeName, Queued};

/// Connects the subscriber and subscribes to this node's channels.
pub(super) async fn subscribe(cluster: &Cluster) -> Result<redis::aio::PubSub, redis::RedisError> {
    let mut pubsub = cluster.client.get_async_pubsub().await?;
    pubsub.subscribe(cluster.keys.to(&cluster.node)).await?;
    pubsub.subscribe(cluster.keys.all()).await?;
    Ok(pubsub)
}

/// Handles frames until the cluster is left; when the subscription drops, subscribes again
/// and announces this node's sessions anew (the others may have forgotten them meanwhile:
/// what was published for this node then was rerouted by its senders).
pub(super) async fn run(cluster: Arc<Cluster>, subscribed: redis::aio::PubSub) {
    // Stanzas to route (for what this node owns) go through one task, in order, so that a
    // slow one (a room's first load) does not hold up the channel.
    let (routes, mut to_route) = mpsc::unbounded_channel::<bytes::Bytes>();
    if let Some(server) = cluster.server() {
        tokio::spawn(async move {
            while let Some(stanza) = to_route.recv().await {
                super::ownership::route_here(&server, &stanza).await;
            }
        });
    }
    let mut subscribed = Some(subscribed);
    loop {
        let pubsub = match subscribed.take() {
            Some(pubsub) => pubsub,
            None => match resubscribe(&cluster).await {
                Some(pubsub) => pubsub,
                None => return,
            },
        };
        let mut messages = pubsub.into_on_message();
        let to_me = cluster.keys.to(&cluster.node);
        while let Some(message) = messages.next().await {
            let Some(server) = cluster.server() else {
                return;
            };
            let payload = message.get_payload_bytes();
            if message.get_channel_name() == to_me {
                match ToNode::decode(payload) {
                    Some(frame) => for_this_node(&cluster, &server, frame, &routes),
                    None => tracing::warn!("cluster: a frame for this node did not decode"),
                }
            } else {
                match ToAll::decode(payload) {
                    Some(frame) => for_all(&cluster, &server, frame).await,
                    None => tracing::warn!("cluster: a broadcast frame did not decode"),
                }
            }
        }
        tracing::warn!("cluster: the subscription to Redis dropped; subscribing again");
    }
}

/// Subscribes again, retrying until it works or the node stops; then takes this node's
/// place again and reloads the others' sessions.
async fn resubscribe(cluster: &Arc<Cluster>) -> Option<redis::aio::PubSub> {
    let mut wait = Duration::from_millis(100);
    loop {
        let server = cluster.server()?;
        if *server.shutdown_signal().borrow() {
            return None;
        }
        match subscribe(cluster).await {
            Ok(pubsub) => {
                // What other nodes knew of ours, and ours of theirs, may be stale.
                let others: Vec<NodeName> = server
                    .sessions
                    .remote_counts()
                    .into_iter()
                    .map(|(node, _)| node)
                    .collect();
                for node in others {
                    server.sessions.drop_node(&node);
                }
                if let Err(e) = cluster.register().await {
                    tracing::warn!(error = %e, "cluster: could not register again");
                }
                // Redis may have restarted empty: what the nodes share goes back in.
                if let Err(e) = cluster.share_dialback_secret(&server).await {
                    tracing::warn!(error = %e, "cluster: could not share the dialback secret");
                }
                cluster.claim_again().await;
                server.sessions.announce_all();
                if let Err(e) = cluster.load_others().await {
                    tracing::warn!(error = %e, "cluster: could not reload the others' sessions");
                }
                tracing::info!("cluster: subscribed again");
                return Some(pubsub);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot subscribe to Redis");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn for_this_node(
    cluster: &Arc<Cluster>,
    server: &Arc<Server>,
    frame: ToNode,
    routes: &mpsc::UnboundedSender<bytes::Bytes>,
) {
    match frame {
        ToNode::Deliver {
            to,
            class,
            stanza,
            sent,
        } => {
            // Taken before anything can fail: what is dropped here is settled too.
            let receipt = sent.and_then(|s| cluster.inbound.receive(&s.node, s.incarnation, s.seq));
            let Ok(to) = FullJid::new(&to) else {
                return;
            };
            let queued = Queued {
                receipt,
                ..Queued::new(stanza, class)
            };
            if server.sessions.deliver_local(&to, queued.clone()) == Delivery::NoSuchResource {
                // Gone since the sender looked: as if it had ended with this unsent.
                super::link::reroute(server.clone(), vec![(to, queued)]);
            }
        }
        ToNode::Close {
            to,
            condition,
            text,
        } => {
            let Ok(to) = FullJid::new(&to) else {
                return;
            };
            let condition =
                StreamErrorCondition::from_name(&condition).unwrap_or(StreamErrorCondition::Reset);
            if condition == StreamErrorCondition::Conflict {
                server.sessions.yield_to_other_node(&to);
            } else {
                server
                    .sessions
                    .close_local(&to, StreamError::with_text(condition, text));
            }
        }
        ToNode::Route { stanza } => {
            let _ = routes.send(stanza);
        }
        ToNode::Ack {
            from,
            incarnation,
            upto,
        } => {
            if incarnation == cluster.info.incarnation {
                cluster.unacked.acknowledged(&from, upto);
            }
        }
        // Both wait (for a session's task, for storage): off the channel's task.
        ToNode::ResumeAsk {
            ticket,
            reply_to,
            id,
            owner,
        } => {
            let (cluster, server) = (cluster.clone(), server.clone());
            tokio::spawn(async move {
                cluster
                    .give_session(&server, ticket, reply_to, id, owner)
                    .await;
            });
        }
        ToNode::ResumeGive { ticket, moved } => {
            let (cluster, server) = (cluster.clone(), server.clone());
            tokio::spawn(async move { cluster.session_given(&server, ticket, moved).await });
        }
    }
}

async fn for_all(cluster: &Arc<Cluster>, server: &Arc<Server>, frame: ToAll) {
    match frame {
        ToAll::Session {
            node,
            seq,
            jid,
            state,
        } => {
            if *node == *cluster.node {
                return;
            }
            let Ok(full) = FullJid::new(&jid) else {
                return;
            };
            if state.is_none()
                && let Some(ended) = lock(&cluster.loading).as_mut()
            {
                let seen = ended.entry((node.clone(), jid)).or_insert(seq);
                *seen = (*seen).max(seq);
            }
            let node: NodeName = node.into();
            let ended = state.is_none();
            let presence = state
                .as_ref()
                .and_then(|s| s.presence.as_ref())
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| corvid_xml::parse_element(p, corvid_proto::ns::CLIENT).ok());
            let removed = server.sessions.apply_remote(&node, seq, &full, state);
            if ended && removed {
                gone(server, full).await;
            } else if let Some(mut presence) = presence {
                presence.set_attr("from", full.as_str());
                crate::modules::caps::note_cluster_presence(server, &presence);
            }
        }
        ToAll::NodeDown { node, incarnation } => {
            if *node == *cluster.node {
                if incarnation == cluster.info.incarnation {
                    // Taken for dead (a long stall): take the place back.
                    tracing::warn!("cluster: another node took this one for dead");
                    if cluster.register().await.is_ok() {
                        server.sessions.announce_all();
                    }
                }
                return;
            }
            cluster.owner_died(server, &node).await;
            cluster.inbound.forget(&node, incarnation);
            super::acks::reroute_unacked(cluster, &node);
            for (jid, _, _) in server.sessions.drop_node(&node) {
                gone(server, jid).await;
            }
        }
        ToAll::Changed { node, change } => {
            if *node != *cluster.node {
                server.store.apply_change(&change);
                let ctx = Ctx {
                    server: server.clone(),
                };
                server.modules.on_store_change(&ctx, &change).await;
            }
        }
    }
}

/// A session on another node ended: what this node holds of it (its place in rooms run
/// here, its capabilities) goes too.
async fn gone(server: &Arc<Server>, jid: FullJid) {
    let ctx = Ctx {
        server: server.clone(),
    };
    server
        .modules
        .on_session(&ctx, &SessionEvent::Gone { jid })
        .await;
}
