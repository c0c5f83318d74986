//! Stream management resumption (XEP-0198) across nodes: a client whose connection
//! dropped may come back on another node (behind a load balancer, it usually does). Its
//! resumption id names the node that holds the session (`c2s/sm.rs`); the node it resumes
//! on asks that one, which takes the session from its task as a local resumption would and
//! sends it over ([`wire::Moved`]), forgetting it without a trace. The new node binds it
//! with the same full JID and state, and carries on with its counters and what its client
//! had not acknowledged. A node that gave a session away remembers where it went for a
//! while, and passes on later requests for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corvid_proto::BareJid;
use tokio::sync::oneshot;

use super::{Cluster, lock, wire};
use crate::server::Server;
use crate::sessions::NodeName;

/// How long a node waits for another to hand a session over (that node waits up to 10 s
/// for the session's task itself).
const WAIT: Duration = Duration::from_secs(12);

/// Requests for sessions in flight, and where sessions given away went.
#[derive(Default)]
pub(super) struct Resumptions {
    waiting: std::sync::Mutex<HashMap<u64, oneshot::Sender<Option<wire::Moved>>>>,
    next_ticket: std::sync::atomic::AtomicU64,
    /// Resumption id → the node it went to, and until when that is worth remembering.
    went: dashmap::DashMap<String, (NodeName, Instant)>,
}

impl Cluster {
    /// Asks `node` for the resumable session `id` of `owner`; `None` if it has none (or
    /// is not alive), or does not answer in time.
    pub async fn resume_from(&self, node: &str, id: &str, owner: &BareJid) -> Option<wire::Moved> {
        if *node == *self.node || !lock(&self.live).iter().any(|live| **live == *node) {
            return None;
        }
        let ticket = self.resumptions.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.resumptions.waiting).insert(ticket, tx);
        let ask = wire::ToNode::ResumeAsk {
            ticket,
            reply_to: self.node.to_string(),
            id: id.to_owned(),
            owner: owner.to_string(),
        };
        self.send_to(&node.into(), ask.encode());
        let moved = tokio::time::timeout(WAIT, rx).await;
        lock(&self.resumptions.waiting).remove(&ticket);
        moved.ok().and_then(Result::ok).flatten()
    }

    /// Another node asks for a session of this one (or one that went on from here).
    pub(super) async fn give_session(
        &self,
        server: &Arc<Server>,
        ticket: u64,
        reply_to: String,
        id: String,
        owner: String,
    ) {
        let reply: NodeName = reply_to.as_str().into();
        let went = self
            .resumptions
            .went
            .get(&id)
            .filter(|went| went.1 > Instant::now())
            .map(|went| went.0.clone());
        if let Some(node) = went {
            // Given away before: the node that has it now answers.
            if node != reply {
                let ask = wire::ToNode::ResumeAsk {
                    ticket,
                    reply_to,
                    id,
                    owner,
                };
                self.send_to(&node, ask.encode());
                return;
            }
        }
        let moved = match owner.parse::<BareJid>() {
            Ok(owner) => crate::c2s::give_away(server, &id, &owner).await,
            Err(_) => None,
        };
        if let Some(moved) = &moved {
            let until = Instant::now() + Duration::from_secs(moved.timeout_secs.max(60));
            let now = Instant::now();
            self.resumptions.went.retain(|_, (_, until)| *until > now);
            self.resumptions.went.insert(id, (reply.clone(), until));
        }
        let give = wire::ToNode::ResumeGive { ticket, moved };
        self.send_to(&reply, give.encode());
    }

    /// A session another node sent: to the connection waiting for it, or, if that gave up
    /// meanwhile, ended here as if it had ended there.
    pub(super) async fn session_given(
        &self,
        server: &Arc<Server>,
        ticket: u64,
        moved: Option<wire::Moved>,
    ) {
        let waiter = lock(&self.resumptions.waiting).remove(&ticket);
        let moved = match waiter {
            Some(waiter) => match waiter.send(moved) {
                Ok(()) => return,
                Err(moved) => moved,
            },
            None => moved,
        };
        if let Some(moved) = moved {
            crate::c2s::end_moved(server, moved).await;
        }
    }
}
