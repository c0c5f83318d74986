//! XEP-0160 offline messages: a message no resource can take is stored durably, then
//! delivered with a XEP-0203 delay stamp on the account's next initial presence.

use corvid_proto::Bare;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use corvid_proto::{BareJid, FullJid, MessageType, StanzaError, ns};
use corvid_store::{Offline as _, StoreError, Users as _};
use corvid_xml::Element;

use crate::module::{Ctx, Flow, Module, SessionEvent};

pub struct Offline;

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
        match ctx
            .server
            .store
            .store_offline(username, domain, &xml, stamp_ms, quota)
            .await
        {
            Ok(()) => Flow::Handled,
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
        if let SessionEvent::Available(jid) = event
            && let Err(e) = deliver_stored(ctx, jid).await
        {
            tracing::warn!(error = %e, "offline delivery failed");
        }
    }
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

/// Delivers then deletes: a crash in between means a duplicate, never a loss.
async fn deliver_stored(ctx: &Ctx, to: &FullJid) -> Result<(), StoreError> {
    let user = to.bare();
    let (username, domain) = Ctx::key(&user);
    let messages = ctx.server.store.offline_messages(username, domain).await?;
    if messages.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(messages.len());
    for message in messages {
        match corvid_xml::parse_element(&message.stanza, ns::CLIENT) {
            Ok(mut stanza) => {
                stanza.set_attr("to", to.as_str());
                ctx.deliver_to(to, &stanza);
            }
            Err(e) => {
                tracing::warn!(error = %e, id = message.id, "dropping an unreadable offline message")
            }
        }
        ids.push(message.id);
    }
    ctx.server
        .store
        .delete_offline(username, domain, &ids)
        .await
}
