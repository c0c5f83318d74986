//! RFC 6121 §2 roster management: get (with versioning, §2.6), set, remove, and roster
//! pushes to the account's interested resources.

use async_trait::async_trait;
use corvid_proto::Bare;
use corvid_proto::{BareJid, FullJid, Iq, IqType, Jid, StanzaError, ns};
use corvid_store::{RosterItem, Rosters, Subscription};
use corvid_xml::Element;

use super::subscription::PresenceAction;
use crate::module::{Ctx, IqResult, Module};
use crate::server::Server;

pub struct Roster;

#[async_trait]
impl Module for Roster {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::ROSTER]
    }

    fn stream_features(&self, _server: &Server) -> Vec<Element> {
        vec![
            Element::new("ver", ns::ROSTER_VER),
            Element::new("sub", ns::PRE_APPROVAL),
        ]
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        let user = iq.from.bare();
        // RFC 6121 §2.1.5: only the account itself manages its roster.
        let to_self = iq.to.node().is_none() || iq.to.bare() == user;
        if !to_self || iq.payload.name() != "query" {
            return Err(StanzaError::forbidden());
        }
        let Ok(from) = iq.from.clone().try_into_full() else {
            return Err(StanzaError::bad_request());
        };
        match iq.kind {
            IqType::Get => get_roster(ctx, &from, &user, iq.payload.attr("ver")).await,
            _ => set_roster(ctx, &user, &iq.payload).await.map(|_| None),
        }
    }
}

/// Whether the account has `limits.max_roster_items` rows already (shown items and the
/// hidden ones that keep a pending request): no new contact may be added then.
pub(crate) async fn roster_is_full(
    ctx: &Ctx,
    user: &BareJid,
) -> Result<bool, corvid_store::StoreError> {
    let (username, domain) = Ctx::key(user);
    let (_, items) = ctx.server.store.roster(username, domain).await?;
    Ok(items.len() >= ctx.server.config.limits.max_roster_items)
}

fn storage_error(e: corvid_store::StoreError) -> StanzaError {
    tracing::warn!(error = %e, "roster storage failed");
    StanzaError::internal_server_error()
}

async fn get_roster(
    ctx: &Ctx,
    from: &FullJid,
    user: &BareJid,
    client_ver: Option<&str>,
) -> IqResult {
    ctx.server.sessions.update(from, |s| s.interested = true);
    let (username, domain) = Ctx::key(user);
    let (version, items) = ctx
        .server
        .store
        .roster(username, domain)
        .await
        .map_err(storage_error)?;
    let version = version.to_string();
    if client_ver == Some(version.as_str()) {
        // RFC 6121 §2.6.3: the client is current; changes come as pushes.
        return Ok(None);
    }
    let mut query = Element::new("query", ns::ROSTER).with_attr("ver", version);
    for item in &items {
        query.append_child(item_element(item));
    }
    Ok(Some(query))
}

async fn set_roster(ctx: &Ctx, user: &BareJid, query: &Element) -> Result<(), StanzaError> {
    let mut items = query.children().filter(|c| c.is("item", ns::ROSTER));
    let (Some(item), None) = (items.next(), items.next()) else {
        // RFC 6121 §2.3.3: exactly one item.
        return Err(StanzaError::bad_request());
    };
    let contact = item
        .attr("jid")
        .and_then(|j| Jid::new(j).ok())
        .ok_or_else(StanzaError::jid_malformed)?
        .bare();
    if item.attr("subscription") == Some("remove") {
        return remove_contact(ctx, user, &contact).await;
    }
    let groups: Vec<String> = item
        .children()
        .filter(|c| c.is("group", ns::ROSTER))
        .map(|g| g.text())
        .collect();
    if groups.iter().any(|g| g.is_empty()) {
        return Err(StanzaError::not_acceptable().with_text("empty group name"));
    }
    let mut unique = groups.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != groups.len() {
        return Err(StanzaError::bad_request().with_text("duplicate group"));
    }
    let (username, domain) = Ctx::key(user);
    let store = &ctx.server.store;
    let _guard = super::subscriptions::lock_roster(user).await;
    let existing = store
        .roster_item(username, domain, contact.as_str())
        .await
        .map_err(storage_error)?;
    if existing.is_none() && roster_is_full(ctx, user).await.map_err(storage_error)? {
        return Err(StanzaError::resource_constraint().with_text("The roster is full"));
    }
    let mut stored = existing.unwrap_or_else(|| RosterItem {
        jid: contact.to_string(),
        ..RosterItem::default()
    });
    // RFC 6121 §2.1.2.5: the client cannot set the subscription state; only name and groups.
    stored.name = item
        .attr("name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    stored.groups = groups;
    stored.in_roster = true;
    let version = store
        .put_roster_item(username, domain, &stored)
        .await
        .map_err(storage_error)?;
    push(ctx, user, &item_element(&stored), version);
    Ok(())
}

/// RFC 6121 §2.5.2: removing an item cancels the subscriptions both ways. The item is read
/// and deleted under the roster lock, so a subscription stanza processed meanwhile either
/// comes first (and is cancelled below) or finds no item and starts afresh; the client gets
/// one push, the removal, not the intermediate states the cancellations would pass through.
async fn remove_contact(ctx: &Ctx, user: &BareJid, contact: &BareJid) -> Result<(), StanzaError> {
    let (username, domain) = Ctx::key(user);
    let store = &ctx.server.store;
    let guard = super::subscriptions::lock_roster(user).await;
    let Some(item) = store
        .roster_item(username, domain, contact.as_str())
        .await
        .map_err(storage_error)?
    else {
        return Err(StanzaError::item_not_found());
    };
    let version = store
        .remove_roster_item(username, domain, contact.as_str())
        .await
        .map_err(storage_error)?;
    drop(guard);
    if item.subscription.has_from() {
        // §3.2.2: a contact losing its subscription learns that the user is unavailable.
        super::presence::send_presence_action(ctx, user, contact, PresenceAction::Unavailable)
            .await;
    }
    // Sent on the user's behalf from the bare JID (§3.1.2), past the user's own hooks: the
    // user's side of the state is gone already.
    if item.subscription.has_from() || item.pending_in {
        ctx.route(subscription_from(user, contact, "unsubscribed"))
            .await;
    }
    if item.subscription.has_to() || item.pending_out {
        ctx.route(subscription_from(user, contact, "unsubscribe"))
            .await;
    }
    if let Some(version) = version {
        let removed = Element::new("item", ns::ROSTER)
            .with_attr("jid", contact.as_str())
            .with_attr("subscription", "remove");
        push(ctx, user, &removed, version);
    }
    Ok(())
}

fn subscription_from(user: &BareJid, contact: &BareJid, kind: &str) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_attr("type", kind)
        .with_attr("from", user.as_str())
        .with_attr("to", contact.as_str())
}

pub(crate) async fn send_subscription(ctx: &Ctx, from: &FullJid, contact: &BareJid, kind: &str) {
    let presence = Element::new("presence", ns::CLIENT)
        .with_attr("type", kind)
        .with_attr("from", from.as_str())
        .with_attr("to", contact.as_str());
    ctx.route_from_client(presence).await;
}

/// The `<item/>` of a roster item (RFC 6121 §2.1.2).
pub fn item_element(item: &RosterItem) -> Element {
    let mut el = Element::new("item", ns::ROSTER)
        .with_attr("jid", item.jid.as_str())
        .with_attr("subscription", item.subscription.as_str());
    if let Some(name) = &item.name {
        el.set_attr("name", name.as_str());
    }
    if item.pending_out {
        el.set_attr("ask", "subscribe");
    }
    if item.approved
        && item.subscription != Subscription::From
        && item.subscription != Subscription::Both
    {
        el.set_attr("approved", "true");
    }
    for group in &item.groups {
        el.append_child(Element::new("group", ns::ROSTER).with_text(group.as_str()));
    }
    el
}

/// Sends a roster push (RFC 6121 §2.1.6) to every interested resource of the account.
pub fn push(ctx: &Ctx, user: &BareJid, item: &Element, version: i64) {
    for resource in ctx.server.sessions.resources_where(user, |s| s.interested) {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("push-{}", crate::random_id()))
            .with_attr("to", resource.as_str())
            .with_child(
                Element::new("query", ns::ROSTER)
                    .with_attr("ver", version.to_string())
                    .with_child(item.clone()),
            );
        ctx.deliver_to(&resource, &iq);
    }
}
