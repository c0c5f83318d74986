//! XEP-0160 offline messages: a message no resource can take is stored durably, then
//! delivered with a XEP-0203 delay stamp on the account's next initial presence.
//!
//! The backlog may be larger than a session's queue, and the presence that triggers it is
//! processed by the recipient's own task, which drains that queue. So a task of its own
//! feeds the backlog in, waiting for room, and deletes a message only once the session
//! task took it to write it: a session that ends mid-way leaves the rest stored.
//!
//! With message archives (XEP-0313), every stored message is also in the account's
//! archive under the stanza-id it carries. A client that syncs from the archive before its
//! initial presence (as Conversations and Monal do) is not sent again the messages it
//! fetched there (XEP-0313 §7.1.1); they are deleted from offline storage instead, and
//! only the rest are delivered (`[offline] skip_fetched_from_archive`, on by default).

use crate::lock;
use corvid_proto::Bare;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use corvid_proto::{BareJid, FullJid, MessageType, StanzaError, ns};
use corvid_store::{Offline as _, StoreError, Users as _};
use corvid_xml::Element;

use crate::module::{Ctx, Flow, Module, SessionEvent};
use crate::sessions::{Queued, SessionId};

#[derive(Default)]
pub struct Offline {
    /// Accounts whose backlog a task is delivering: a second initial presence (another
    /// resource, or a priority back to non-negative) must not deliver it twice; the task
    /// serves that resource next, in case the first one went away meanwhile.
    delivering: Arc<Mutex<Deliveries>>,
}

/// Account → the session to serve once the running delivery is done, if any.
type Deliveries = HashMap<BareJid, Option<(FullJid, SessionId)>>;

/// How many accepted messages are deleted in one store call.
const DELETE_BATCH: usize = 64;

#[async_trait]
impl Module for Offline {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::OFFLINE]
    }

    async fn on_undeliverable(&self, ctx: &Ctx, msg: &Element, to: &BareJid) -> Flow {
        if !worth_storing(msg) {
            return Flow::Continue;
        }
        let (username, domain) = Ctx::key(to);
        match ctx.server.store.user_exists(username, domain).await {
            Ok(true) => {}
            // No such account: the router bounces it (RFC 6121 §8.5.1).
            Ok(false) => return Flow::Continue,
            Err(e) => return fail(ctx, msg, e).await,
        }
        let mut stored = msg.clone();
        // XEP-0203: the stamp says when the server got it.
        let now = SystemTime::now();
        stored.append_child(
            Element::new("delay", ns::DELAY)
                .with_attr("from", domain)
                .with_attr("stamp", corvid_proto::time::format_datetime(now))
                .with_text("Offline storage"),
        );
        let xml = String::from_utf8_lossy(&stored.to_bytes(ns::CLIENT)).into_owned();
        let stamp_ms = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let quota = ctx.server.config.offline.quota;
        let started = std::time::Instant::now();
        let outcome = ctx
            .server
            .store
            .store_offline(username, domain, &xml, stamp_ms, quota)
            .await;
        ctx.server.metrics.store_offline.observe(started.elapsed());
        match outcome {
            Ok(()) => {
                // A resource may have become available since the router found none (a
                // message handed on by a session that just ended races with the next
                // login): then it gets this message now, not at some later login.
                if let Some((jid, id)) = available_session(ctx, to) {
                    self.deliver_backlog(ctx, &jid, id);
                } else {
                    ctx.server
                        .modules
                        .on_message_waiting(ctx, to, None, msg)
                        .await;
                }
                Flow::Handled
            }
            Err(StoreError::QuotaExceeded) => {
                crate::router::bounce(
                    &ctx.server,
                    msg,
                    StanzaError::resource_constraint().with_text("Offline storage is full"),
                )
                .await;
                Flow::Handled
            }
            Err(e) => fail(ctx, msg, e).await,
        }
    }

    async fn on_session(&self, ctx: &Ctx, event: &SessionEvent) {
        if let SessionEvent::Available { jid, id } = event {
            self.deliver_backlog(ctx, jid, *id);
        }
    }

    /// Another node of the cluster stored a message for a user online here (it did not
    /// know yet, or the session it was for had just gone): delivered now, not at the next
    /// login.
    async fn on_store_change(&self, ctx: &Ctx, change: &corvid_store::StoreChange) {
        if let corvid_store::StoreChange::Offline { username, domain } = change
            && let Ok(user) = BareJid::new(&format!("{username}@{domain}"))
            && let Some((jid, id)) = available_session(ctx, &user)
        {
            self.deliver_backlog(ctx, &jid, id);
        }
    }
}

impl Offline {
    /// Delivers the account's stored messages to session `id`, unless a delivery is
    /// running: then that one runs again for this session once done (it reads the store
    /// afresh, so what was stored meanwhile goes too).
    fn deliver_backlog(&self, ctx: &Ctx, jid: &FullJid, id: SessionId) {
        let user = jid.bare();
        {
            let mut delivering = lock(&self.delivering);
            if let Some(next) = delivering.get_mut(&user) {
                *next = Some((jid.clone(), id));
                return;
            }
            delivering.insert(user.clone(), None);
        }
        let (ctx, delivering) = (ctx.clone(), self.delivering.clone());
        let (mut jid, mut id) = (jid.clone(), id);
        tokio::spawn(async move {
            loop {
                if let Err(e) = deliver_stored(&ctx, &jid, id).await {
                    tracing::warn!(error = %e, "offline delivery failed");
                }
                let mut delivering = lock(&delivering);
                match delivering.get_mut(&user).and_then(Option::take) {
                    Some(next) => (jid, id) = next,
                    None => {
                        delivering.remove(&user);
                        return;
                    }
                }
            }
        });
    }
}

/// An available resource of `user` with a non-negative priority (one that offline
/// messages are for, RFC 6121 §8.5.2.1.1), and its session.
fn available_session(ctx: &Ctx, user: &BareJid) -> Option<(FullJid, SessionId)> {
    let sessions = &ctx.server.sessions;
    sessions
        .resources_where(user, |s| s.available && s.priority >= 0)
        .into_iter()
        .find_map(|jid| {
            let (id, ()) = sessions.update_session(&jid, |_| ())?;
            Some((jid, id))
        })
}

async fn fail(ctx: &Ctx, msg: &Element, e: StoreError) -> Flow {
    tracing::warn!(error = %e, "offline storage failed");
    crate::router::bounce(&ctx.server, msg, StanzaError::internal_server_error()).await;
    Flow::Handled
}

/// XEP-0160 §3: normal and chat messages with content; not headline, error or groupchat,
/// not bare chat-state notifications (XEP-0085 §5.6), not those hinted `no-store` (XEP-0334).
fn worth_storing(msg: &Element) -> bool {
    if !matches!(
        MessageType::of(msg),
        MessageType::Normal | MessageType::Chat
    ) {
        return false;
    }
    if msg.has_child("no-store", ns::HINTS) || msg.has_child("no-permanent-store", ns::HINTS) {
        return false;
    }
    msg.children()
        .any(|c| c.ns() != ns::CHATSTATES && !c.is("thread", ns::CLIENT))
}

/// Feeds the stored messages into the session's queue as it makes room, and deletes each
/// once the session task has taken it to write it. Without stream management (XEP-0198)
/// that is as far as the server can know: a message written into a connection that then
/// drops is lost, one not yet taken stays stored for the next session.
async fn deliver_stored(ctx: &Ctx, to: &FullJid, session: SessionId) -> Result<(), StoreError> {
    let user = to.bare();
    let (username, domain) = Ctx::key(&user);
    let sessions = &ctx.server.sessions;
    let Some(control) = sessions.control(to, session) else {
        return Ok(());
    };
    let messages = ctx.server.store.offline_messages(username, domain).await?;
    // XEP-0313 §7.1.1: what the client already fetched from its archive is not sent again
    // (unless the operator wants the whole backlog delivered).
    let fetched = sessions
        .update(to, |s| s.fetched_from_archive.take())
        .flatten()
        .filter(|_| ctx.server.config.offline.skip_fetched_from_archive)
        .map(|set| std::mem::take(&mut *set.lock().unwrap_or_else(|e| e.into_inner())))
        .unwrap_or_default();
    // The backlog fills at most half the queue: live traffic arriving meanwhile (a
    // contact's presence, a new message) must find room, or the session would be closed
    // as a slow consumer for what is the backlog's doing.
    let full = sessions.queue_limits();
    let limits = crate::sessions::QueueLimits {
        stanzas: (full.stanzas / 2).max(1),
        bytes: (full.bytes / 2).max(1),
    };
    // (store id, queue sequence number) of messages queued but not yet deleted.
    let mut queued: Vec<(i64, u64)> = Vec::new();
    // Deleted without being queued: unreadable, or taken by an outbound filter.
    let mut settled = Vec::new();
    for message in messages {
        let mut stanza = match corvid_xml::parse_element(&message.stanza, ns::CLIENT) {
            Ok(stanza) => stanza,
            Err(e) => {
                tracing::warn!(error = %e, id = message.id, "dropping an unreadable offline message");
                settled.push(message.id);
                continue;
            }
        };
        if !fetched.is_empty() && fetched_already(&stanza, &user, &fetched) {
            settled.push(message.id);
            continue;
        }
        stanza.set_attr("to", to.as_str());
        let stanza = Queued {
            stored: true,
            ..Queued::of(&stanza)
        };
        if !sessions.admits(to, session, &stanza) {
            // An outbound filter took it (and keeps it, if it means to send it later).
            settled.push(message.id);
            continue;
        }
        let Some(seq) = control.offer_wait(stanza, limits).await else {
            break;
        };
        queued.push((message.id, seq));
        if queued.len() >= DELETE_BATCH {
            delete_taken(ctx, &user, &control, &mut queued).await?;
        }
    }
    if !settled.is_empty() {
        ctx.server
            .store
            .delete_offline(username, domain, &settled)
            .await?;
    }
    delete_taken(ctx, &user, &control, &mut queued).await
}

/// Whether a stored message is one the session fetched from the account's archive: its
/// XEP-0359 stanza-id by the account is the archive's id for it.
fn fetched_already(
    stanza: &Element,
    user: &BareJid,
    fetched: &std::collections::HashSet<String>,
) -> bool {
    stanza
        .children()
        .filter(|c| c.is("stanza-id", ns::STANZA_ID) && c.attr("by") == Some(user.as_str()))
        .filter_map(|c| c.attr("id"))
        .any(|id| fetched.contains(id))
}

/// Waits until the session task took the queued messages (or the session ended), then
/// deletes those it took; the others stay stored.
async fn delete_taken(
    ctx: &Ctx,
    user: &BareJid,
    control: &crate::sessions::SessionControl,
    queued: &mut Vec<(i64, u64)>,
) -> Result<(), StoreError> {
    let Some(&(_, last)) = queued.last() else {
        return Ok(());
    };
    let taken = control.wait_taken(last).await;
    let ids: Vec<i64> = queued
        .iter()
        .filter(|(_, seq)| *seq <= taken)
        .map(|(id, _)| *id)
        .collect();
    queued.clear();
    if ids.is_empty() {
        return Ok(());
    }
    let (username, domain) = Ctx::key(user);
    ctx.server
        .store
        .delete_offline(username, domain, &ids)
        .await
}
