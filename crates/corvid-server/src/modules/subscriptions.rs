//! RFC 6121 §3 presence subscriptions: applies the Appendix A state machine
//! ([`super::subscription`]) to subscription stanzas a user sends and receives, stores the
//! result, pushes roster changes and sends what the server must send on the user's behalf.

use async_trait::async_trait;
use corvid_proto::Bare;
use corvid_proto::{BareJid, Jid, StanzaError, ns};
use corvid_store::{RosterItem, Rosters, Users};
use corvid_xml::Element;

use super::presence::send_presence_action;
use super::roster::{item_element, push, roster_is_full};
use super::subscription::{SubKind, SubState, inbound, outbound};
use crate::module::{Ctx, Direction, Flow, Module};

pub struct Subscriptions;

/// Serializes read-modify-write of one account's roster items: two sessions answering each
/// other at the same moment (both subscribe at once) must not lose an update. Striped, and
/// never held while routing, so two accounts' locks are never held together.
static ROSTER_LOCKS: std::sync::LazyLock<Vec<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(|| (0..64).map(|_| tokio::sync::Mutex::new(())).collect());

pub(crate) async fn lock_roster(user: &BareJid) -> tokio::sync::MutexGuard<'static, ()> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    user.hash(&mut hasher);
    ROSTER_LOCKS[(hasher.finish() % ROSTER_LOCKS.len() as u64) as usize]
        .lock()
        .await
}

#[async_trait]
impl Module for Subscriptions {
    fn name(&self) -> &'static str {
        "subscriptions"
    }

    async fn on_presence(&self, ctx: &Ctx, pres: &mut Element, dir: Direction) -> Flow {
        let Some(kind) = pres.attr("type").and_then(SubKind::parse) else {
            return Flow::Continue;
        };
        let from = pres
            .attr("from")
            .and_then(|f| Jid::new(f).ok())
            .map(|j| j.bare());
        let to = pres
            .attr("to")
            .and_then(|t| Jid::new(t).ok())
            .map(|j| j.bare());
        let (Some(from), Some(to)) = (from, to) else {
            return Flow::Handled;
        };
        if from == to {
            return Flow::Handled;
        }
        let result = match dir {
            Direction::FromClient => user_sends(ctx, pres, kind, &from, &to).await,
            Direction::ToClient => user_receives(ctx, pres, kind, &to, &from).await,
            Direction::ToServer => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "subscription handling failed");
        }
        Flow::Handled
    }
}

fn new_item(contact: &BareJid) -> RosterItem {
    RosterItem {
        jid: contact.to_string(),
        ..RosterItem::default()
    }
}

/// Stores `item` if its state changed and pushes it when the roster shows it.
async fn save(
    ctx: &Ctx,
    user: &BareJid,
    item: &RosterItem,
    push_it: bool,
) -> Result<(), corvid_store::StoreError> {
    let (username, domain) = Ctx::key(user);
    let version = ctx
        .server
        .store
        .put_roster_item(username, domain, item)
        .await?;
    if push_it && item.in_roster {
        push(ctx, user, &item_element(item), version);
    }
    Ok(())
}

/// XEP-0172 user nickname, which a subscription request may carry (§4.1).
const NICK: &str = "http://jabber.org/protocol/nick";

/// Bytes kept of a stored request's status and of its nickname.
const STORED_TEXT_BYTES: usize = 1024;

/// A subscription request reduced to what is shown of it: `<status/>` (RFC 6121 §3.1.1)
/// and `<nick/>` (XEP-0172), each cut to `STORED_TEXT_BYTES`.
fn stored_request(request: &Element, contact: &BareJid, user: &BareJid) -> Element {
    let mut kept = subscription_stanza(SubKind::Subscribe, contact, user);
    for (name, namespace) in [("status", ns::CLIENT), ("nick", NICK)] {
        if let Some(child) = request.get_child(name, namespace) {
            let text = child.text();
            let cut = truncate(&text, STORED_TEXT_BYTES);
            kept.append_child(Element::new(name, namespace).with_text(cut));
        }
    }
    kept
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn subscription_stanza(kind: SubKind, from: &BareJid, to: &BareJid) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_attr("type", kind.as_str())
        .with_attr("from", from.as_str())
        .with_attr("to", to.as_str())
}

/// The user sent `kind` to the contact (Appendix A.2).
async fn user_sends(
    ctx: &Ctx,
    pres: &Element,
    kind: SubKind,
    user: &BareJid,
    contact: &BareJid,
) -> Result<(), corvid_store::StoreError> {
    let (username, domain) = Ctx::key(user);
    let guard = lock_roster(user).await;
    let stored = ctx
        .server
        .store
        .roster_item(username, domain, contact.as_str())
        .await?;
    let state = SubState::of(stored.as_ref());
    let out = outbound(state, kind);
    let mut item = stored.clone().unwrap_or_else(|| new_item(contact));
    out.new.apply_to(&mut item);
    if stored.is_none() && item != new_item(contact) && roster_is_full(ctx, user).await? {
        drop(guard);
        let full = StanzaError::resource_constraint().with_text("The roster is full");
        crate::router::bounce(&ctx.server, pres, full).await;
        return Ok(());
    }
    if Some(&item) != stored.as_ref() {
        save(ctx, user, &item, out.push).await?;
    }
    drop(guard);
    // Losing "From" makes the user look offline to the contact before the contact learns why.
    if out.send_presence == Some(super::subscription::PresenceAction::Unavailable) {
        send_presence_action(
            ctx,
            user,
            contact,
            super::subscription::PresenceAction::Unavailable,
        )
        .await;
    }
    if out.route {
        // RFC 6121 §3.1.2: subscription stanzas leave with the user's bare JID.
        let mut stanza = pres.clone();
        stanza.set_attr("from", user.as_str());
        stanza.set_attr("to", contact.as_str());
        ctx.route(stanza).await;
    }
    if out.send_presence == Some(super::subscription::PresenceAction::Available) {
        send_presence_action(
            ctx,
            user,
            contact,
            super::subscription::PresenceAction::Available,
        )
        .await;
    }
    Ok(())
}

/// The user received `kind` from the contact (Appendix A.3).
async fn user_receives(
    ctx: &Ctx,
    pres: &Element,
    kind: SubKind,
    user: &BareJid,
    contact: &BareJid,
) -> Result<(), corvid_store::StoreError> {
    let (username, domain) = Ctx::key(user);
    let store = &ctx.server.store;
    if !store.user_exists(username, domain).await? {
        // RFC 6121 §3.1.3: a request to an account that does not exist is declined.
        if kind == SubKind::Subscribe {
            ctx.route(subscription_stanza(SubKind::Unsubscribed, user, contact))
                .await;
        }
        return Ok(());
    }
    let guard = lock_roster(user).await;
    let stored = store
        .roster_item(username, domain, contact.as_str())
        .await?;
    let state = SubState::of(stored.as_ref());
    let inb = inbound(state, kind);
    let mut item = stored.clone().unwrap_or_else(|| new_item(contact));
    inb.new.apply_to(&mut item);
    if stored.is_none() && item != new_item(contact) && roster_is_full(ctx, user).await? {
        // A stranger's request would add a row the account has no room for.
        drop(guard);
        let full = StanzaError::resource_constraint().with_text("The contact's roster is full");
        crate::router::bounce(&ctx.server, pres, full).await;
        return Ok(());
    }
    let mut stanza = pres.clone();
    stanza.set_attr("from", contact.as_str());
    stanza.set_attr("to", user.as_str());
    if kind == SubKind::Subscribe && inb.new.pending_in {
        // Kept until answered, to be shown again at each login (§3.1.3 step 4): only what
        // a client shows of a request, so a stranger cannot park a large stanza here.
        let kept = stored_request(&stanza, contact, user);
        item.pending_in_stanza =
            Some(String::from_utf8_lossy(&kept.to_bytes(ns::CLIENT)).into_owned());
    }
    if Some(&item) != stored.as_ref() {
        save(ctx, user, &item, inb.push).await?;
    }
    drop(guard);
    if let Some(reply) = inb.auto_reply {
        ctx.route(subscription_stanza(reply, user, contact)).await;
    }
    if let Some(action) = inb.send_presence {
        send_presence_action(ctx, user, contact, action).await;
    }
    if inb.deliver {
        ctx.server
            .sessions
            .deliver_to_available(user, crate::sessions::Queued::of(&stanza));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_request_keeps_only_a_short_status_and_nick() {
        let contact: BareJid = "eve@example.net".parse().unwrap();
        let user: BareJid = "alice@localhost".parse().unwrap();
        let request = subscription_stanza(SubKind::Subscribe, &contact, &user)
            .with_child(Element::new("status", ns::CLIENT).with_text("é".repeat(1000)))
            .with_child(Element::new("nick", NICK).with_text("Eve"))
            .with_child(Element::new("x", "urn:example:junk").with_text("x".repeat(100_000)));
        let kept = stored_request(&request, &contact, &user);
        assert_eq!(kept.children().count(), 2);
        let status = kept.get_child("status", ns::CLIENT).map(|s| s.text());
        assert_eq!(
            status.map(|s| s.len()),
            Some(1024),
            "512 two-byte characters"
        );
        assert_eq!(
            kept.get_child("nick", NICK).map(|n| n.text()).as_deref(),
            Some("Eve")
        );
        assert_eq!(kept.attr("type"), Some("subscribe"));
    }
}
