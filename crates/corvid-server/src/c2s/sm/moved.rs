//! Resumption (XEP-0198) of a session another node of the cluster holds: the session
//! moves between nodes as a [`Moved`] (`cluster/resume.rs` carries it). Here: taking it
//! from the session's task to give it away, binding it on the node it is resumed on, and
//! ending one nobody took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corvid_proto::{BareJid, FullJid, StreamError, StreamErrorCondition as Cond, ns};
use corvid_xml::Element;

use super::{HANDOVER_WAIT, Handover, ResumeRegistry, Sm};
use crate::c2s::session::{End, Session};
use crate::cluster::wire::Moved;
use crate::server::Server;
use crate::sessions::ResourceState;

impl Session {
    /// `<resume/>` for a session another node of the cluster holds: it is moved here
    /// (`cluster/resume.rs`), bound with its full JID and state, and carries on as if
    /// resumed locally; what was queued for it there follows what was unacknowledged.
    pub(super) async fn resume_moved(
        &mut self,
        previd: &str,
        user: &BareJid,
        h: u32,
    ) -> Result<(), End> {
        let moved = match (self.server.cluster.get(), ResumeRegistry::node_of(previd)) {
            (Some(cluster), Some(node)) => cluster.resume_from(node, previd, user).await,
            _ => None,
        };
        let Some(moved) = moved else {
            return self.sm_failed("item-not-found", None).await;
        };
        let Ok(jid) = FullJid::new(&moved.jid) else {
            return self.sm_failed("item-not-found", None).await;
        };
        let state = resource_state(&moved);
        let origin = crate::sessions::Origin {
            ip: self.origin.0,
            transport: self.origin.1,
            since: std::time::SystemTime::now(),
        };
        let max = self.server.config.limits.max_resources_per_account;
        let Some(bound) = self
            .server
            .sessions
            .bind_with(jid.clone(), max, origin, state)
        else {
            // No room for it here (the account bound more resources meanwhile): it ends.
            end_moved(&self.server, moved).await;
            return self.sm_failed("item-not-found", None).await;
        };
        let mut sm = Box::new(Sm::new(moved.sent));
        sm.handled = moved.handled;
        for stanza in moved.unacked {
            sm.unacked_bytes += stanza.len();
            sm.unacked.push_back(stanza);
        }
        if !sm.unacked.is_empty() {
            sm.unacked_since = Some(Instant::now());
        }
        // The slot keeps its id: the client resumes by it next time too.
        sm.slot = Some(
            self.server
                .resumption
                .open_as(previd.to_owned(), user.clone()),
        );
        sm.timeout = Duration::from_secs(moved.timeout_secs);
        let acked = sm.ack(h);
        let handled = sm.handled;
        self.sm = Some(sm);
        self.established(jid, bound).await;
        if let Err(too_high) = acked {
            return Err(self.fail(too_high.stream_error()).await);
        }
        tracing::info!("session resumed, moved from another node");
        let resumed = Element::new("resumed", ns::SM)
            .with_attr("h", handled.to_string())
            .with_attr("previd", previd);
        self.write_nonza(&resumed).await?;
        self.resend_unacked().await?;
        let queued = moved.queued.into_iter().map(|(_, bytes)| bytes).collect();
        self.write_stanzas(queued).await
    }
}

/// Gives a resumable session of this node to another node of the cluster, where its
/// client resumes it (`cluster/resume.rs`): taken from its task as a local resumption
/// would, then out of this node quietly. `None` if there is no such session (or it ended,
/// or was replaced, meanwhile: then what it held went the way of any ended session's).
pub(crate) async fn give_away(server: &Arc<Server>, id: &str, owner: &BareJid) -> Option<Moved> {
    let slot = server.resumption.find(id, owner)?;
    let rx = slot.request()?;
    let Handover {
        jid,
        id: session,
        control,
        mut sm,
    } = tokio::time::timeout(HANDOVER_WAIT, rx).await.ok()?.ok()?;
    if let Some(slot) = sm.slot.take() {
        server.resumption.close(&slot);
    }
    // Nothing is routed into its queue once it is out of the map; what is there goes along
    // (copies of stored offline messages stay in storage, for the next login).
    let state = server.sessions.move_out(&jid, session);
    let mut queued = Vec::new();
    while let Some(stanza) = control.pop_queued() {
        if !stanza.stored {
            queued.push((stanza.class, stanza.bytes));
        }
    }
    control.close(StreamError::with_text(
        Cond::Conflict,
        "The session moved to another node",
    ));
    let unacked: Vec<Bytes> = sm.take_unacked().into();
    let Some(state) = state else {
        // Replaced meanwhile: its replacement cleaned it up; what it held is handed on.
        crate::router::reroute_unsent(server, &jid, unsent(unacked, queued)).await;
        return None;
    };
    if let Some(cluster) = server.cluster.get() {
        cluster.session_ended(&jid);
    }
    tracing::info!(%jid, "session handed over to another node");
    Some(Moved {
        jid: jid.to_string(),
        handled: sm.handled,
        sent: sm.sent,
        timeout_secs: sm.timeout.as_secs(),
        state: crate::sessions::shared_state(session, &state, std::time::SystemTime::now()),
        directed: state.directed.iter().map(ToString::to_string).collect(),
        unacked,
        queued,
    })
}

/// A session moved here that no connection took after all (it gave up waiting): it ends
/// as any session does, its contacts told it left, what it held handed on.
pub(crate) async fn end_moved(server: &Arc<Server>, moved: Moved) {
    let Ok(jid) = FullJid::new(&moved.jid) else {
        return;
    };
    let last = resource_state(&moved);
    crate::router::reroute_unsent(server, &jid, unsent(moved.unacked, moved.queued)).await;
    let ctx = crate::module::Ctx {
        server: server.clone(),
    };
    let closed = crate::module::SessionEvent::Closed {
        jid,
        id: moved.state.id,
        last,
    };
    server.modules.on_session(&ctx, &closed).await;
}

/// The state a moved session had as a resource.
fn resource_state(moved: &Moved) -> ResourceState {
    let mut state = moved.state.resource_state();
    state.directed = moved
        .directed
        .iter()
        .filter_map(|j| j.parse().ok())
        .collect();
    state
}

/// What a session held for its client, unacknowledged first, then queued.
fn unsent(unacked: Vec<Bytes>, queued: Vec<(crate::sessions::StanzaClass, Bytes)>) -> Vec<Bytes> {
    unacked
        .into_iter()
        .chain(queued.into_iter().map(|(_, bytes)| bytes))
        .collect()
}
