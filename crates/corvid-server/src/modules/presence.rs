//! RFC 6121 §4 presence: a resource's own presence broadcast to its subscribers and its
//! other resources, probes on initial presence (§4.2.2, §4.3), directed presence (§4.6),
//! and unavailable on logout or connection loss (§4.5).

use async_trait::async_trait;
use corvid_proto::Bare;
use corvid_proto::{BareJid, FullJid, Jid, StanzaError, ns};
use corvid_store::{Rosters, StoreError};
use corvid_xml::Element;

use super::subscription::PresenceAction;
use crate::module::{Ctx, Direction, Flow, Module, SessionEvent};
use crate::router::presence_priority;
use crate::sessions::{Queued, StanzaClass};

pub struct Presence;

#[async_trait]
impl Module for Presence {
    fn name(&self) -> &'static str {
        "presence"
    }

    async fn on_presence(&self, ctx: &Ctx, pres: &mut Element, dir: Direction) -> Flow {
        let from = pres.attr("from").and_then(|f| f.parse::<FullJid>().ok());
        match (dir, from) {
            (Direction::FromClient, Some(from)) => from_client(ctx, pres, &from).await,
            (Direction::ToClient, _) if pres.attr("type") == Some("probe") => {
                answer_probe(ctx, pres).await;
                Flow::Handled
            }
            _ => Flow::Continue,
        }
    }

    async fn on_session(&self, ctx: &Ctx, event: &SessionEvent) {
        match event {
            SessionEvent::Bound { jid, .. } => forget_roster_if_alone(ctx, jid),
            SessionEvent::Closed { jid, last, .. } => {
                // RFC 6121 §4.5.2: a lost connection is an unavailable presence. The session
                // is unbound already (another may hold its full JID): its last state says
                // what to undo.
                let directed = last.directed.clone();
                announce_unavailable(ctx, jid, last.available, directed, None).await;
                forget_roster_if_alone(ctx, jid);
            }
            SessionEvent::Available { .. } | SessionEvent::Gone { .. } => {}
        }
    }
}

async fn from_client(ctx: &Ctx, pres: &mut Element, from: &FullJid) -> Flow {
    let kind = pres.attr("type").map(str::to_string);
    match (pres.attr("to").map(str::to_string), kind.as_deref()) {
        (None, None) => {
            own_available(ctx, pres, from).await;
            Flow::Handled
        }
        (None, Some("unavailable")) => {
            own_unavailable(ctx, from, pres).await;
            Flow::Handled
        }
        // Anything else without `to` (a stray probe, error …) has no recipient.
        (None, Some(_)) => Flow::Handled,
        (Some(to), None | Some("unavailable")) => {
            if record_directed(ctx, from, &to, kind.is_none()).await {
                return Flow::Continue;
            }
            // Over the cap: refused, since it could not be undone at logout (§4.6.3).
            let refused = StanzaError::policy_violation().with_text("Too many directed presences");
            ctx.deliver_to(from, &corvid_proto::stanza::error_reply(pres, &refused));
            Flow::Handled
        }
        _ => Flow::Continue,
    }
}

/// At an account's first login and last logout (its session `jid` is then its only one),
/// the store's cached roster is dropped: no roster is kept for an account no one uses, and
/// a login reads what another process may have written meanwhile.
fn forget_roster_if_alone(ctx: &Ctx, jid: &FullJid) {
    let user = jid.bare();
    if ctx
        .server
        .sessions
        .resources(&user)
        .iter()
        .all(|r| r == jid)
    {
        let (username, domain) = Ctx::key(&user);
        ctx.server.store.forget_cached_roster(username, domain);
    }
}

/// Whether the contact gets the user's presence (subscription `from` or `both`).
async fn contact_subscribed(ctx: &Ctx, user: &BareJid, contact: &BareJid) -> bool {
    let (username, domain) = Ctx::key(user);
    match ctx
        .server
        .store
        .subscription(username, domain, contact.as_str())
        .await
    {
        Ok(subscription) => subscription.has_from(),
        Err(e) => {
            store_error(e);
            false
        }
    }
}

fn store_error(e: StoreError) {
    tracing::warn!(error = %e, "presence: storage failed");
}

/// Contacts of `user` whose subscription satisfies `pick`.
async fn contacts(
    ctx: &Ctx,
    user: &BareJid,
    pick: fn(corvid_store::Subscription) -> bool,
) -> Vec<BareJid> {
    let (username, domain) = Ctx::key(user);
    match ctx
        .server
        .store
        .contacts_with_subscription(username, domain)
        .await
    {
        Ok(items) => items
            .into_iter()
            .filter(|i| pick(i.subscription))
            .filter_map(|i| BareJid::new(&i.jid).ok())
            .collect(),
        Err(e) => {
            store_error(e);
            Vec::new()
        }
    }
}

async fn own_available(ctx: &Ctx, pres: &Element, from: &FullJid) {
    let priority = presence_priority(pres);
    let stored = crate::sessions::StoredPresence::new(pres);
    let before = ctx.server.sessions.update_session(from, |s| {
        let before = (s.available, s.priority);
        s.available = true;
        s.priority = priority;
        s.presence = Some(stored);
        before
    });
    let Some((id, (was_available, old_priority))) = before else {
        return;
    };
    let user = from.bare();
    broadcast(ctx, &user, from, pres).await;
    if !was_available {
        probe_contacts(ctx, &user, from).await;
        deliver_pending_requests(ctx, &user, from).await;
    }
    // XEP-0160 §3: stored messages go to the first resource that can take bare-JID
    // messages, i.e. with a non-negative priority (RFC 6121 §8.5.2.1.1).
    if priority >= 0 && (!was_available || old_priority < 0) {
        let event = SessionEvent::Available {
            jid: from.clone(),
            id,
        };
        ctx.server.modules.on_session(ctx, &event).await;
    }
}

async fn own_unavailable(ctx: &Ctx, from: &FullJid, pres: &Element) {
    let Some((was_available, directed)) = ctx.server.sessions.update(from, |s| {
        let was = s.available;
        s.available = false;
        s.presence = None;
        (was, std::mem::take(&mut s.directed))
    }) else {
        return;
    };
    announce_unavailable(ctx, from, was_available, directed, Some(pres)).await;
}

/// Tells the contacts, the user's other resources (if the resource was available) and
/// those it sent directed presence to that it is unavailable (RFC 6121 §4.5.2, §4.6.3).
async fn announce_unavailable(
    ctx: &Ctx,
    from: &FullJid,
    was_available: bool,
    directed: impl IntoIterator<Item = Jid>,
    pres: Option<&Element>,
) {
    let unavailable = pres.cloned().unwrap_or_else(|| {
        Element::new("presence", ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", from.as_str())
    });
    if was_available {
        broadcast(ctx, &from.bare(), from, &unavailable).await;
    }
    for to in directed {
        let mut p = unavailable.clone();
        p.set_attr("to", to.as_str());
        ctx.route(p).await;
    }
}

/// RFC 6121 §4.2.2 / §4.4.2: to every contact subscribed to the user, and to all of the
/// user's available resources (the sender included).
///
/// Serialized once (DESIGN.md: a fan-out stanza is serialized once): each local contact's
/// available resources get the same bytes with the contact's `to` spliced in, as routing to
/// the contact's bare JID would deliver them (RFC 6121 §8.5.2.1.2). Only the modules'
/// per-recipient broadcast check runs (e.g. XEP-0191 blocking), not the full `ToClient`
/// presence hooks, which leave an available or unavailable presence alone. Contacts of
/// other domains (and entities without a localpart) are routed as before.
async fn broadcast(ctx: &Ctx, user: &BareJid, from: &FullJid, pres: &Element) {
    let mut stanza = pres.clone();
    stanza.set_attr("from", from.as_str());
    stanza.remove_attr("to");
    let fan_out = stanza.fan_out(ns::CLIENT);
    let sessions = &ctx.server.sessions;
    for contact in contacts(ctx, user, |s| s.has_from()).await {
        let local = contact.node().is_some() && ctx.server.config.serves(contact.domain().as_str());
        if !local {
            stanza.set_attr("to", contact.as_str());
            ctx.route(stanza.clone()).await;
        } else if ctx
            .server
            .modules
            .on_broadcast(ctx, &Jid::from(from.clone()), &contact)
            .await
            == Flow::Continue
        {
            let bytes = fan_out.to(contact.as_str());
            sessions.deliver_to_available(&contact, Queued::new(bytes, StanzaClass::Presence));
        }
    }
    for resource in sessions.resources_where(user, |s| s.available) {
        let bytes = fan_out.to(resource.as_str());
        sessions.deliver_to_full(&resource, Queued::new(bytes, StanzaClass::Presence));
    }
}

/// RFC 6121 §4.2.2: on initial presence, learn the presence of every contact the user is
/// subscribed to. Local contacts are answered at once, as their server would answer a probe.
async fn probe_contacts(ctx: &Ctx, user: &BareJid, from: &FullJid) {
    for contact in contacts(ctx, user, |s| s.has_to()).await {
        let probe = Element::new("presence", ns::CLIENT)
            .with_attr("type", "probe")
            .with_attr("from", from.as_str())
            .with_attr("to", contact.as_str());
        ctx.route(probe).await;
    }
    // The user's other resources are known too (§4.2.2 last paragraph).
    for (resource, state) in ctx.server.sessions.states(user) {
        if let (true, Some(presence), false) = (
            state.available,
            state.presence.and_then(|p| p.element()),
            &resource == from,
        ) {
            let mut p = presence;
            p.set_attr("to", from.as_str());
            ctx.deliver_to(from, &p);
        }
    }
}

/// RFC 6121 §3.1.3: requests that arrived while the user was offline are shown now.
async fn deliver_pending_requests(ctx: &Ctx, user: &BareJid, to: &FullJid) {
    let (username, domain) = Ctx::key(user);
    match ctx
        .server
        .store
        .pending_subscription_requests(username, domain)
        .await
    {
        Ok(requests) => {
            for (_, stanza) in requests {
                if let Ok(request) = corvid_xml::parse_element(&stanza, ns::CLIENT) {
                    ctx.deliver_to(to, &request);
                }
            }
        }
        Err(e) => store_error(e),
    }
}

/// RFC 6121 §4.3.2: a probe from a subscribed contact gets the user's current presence.
async fn answer_probe(ctx: &Ctx, probe: &Element) {
    let (Some(Ok(prober)), Some(Ok(to))) = (
        probe.attr("from").map(Jid::new),
        probe.attr("to").map(Jid::new),
    ) else {
        return;
    };
    let user = to.bare();
    // §4.3.2 step 1: no such account, or the prober is not subscribed: `unsubscribed` from
    // the bare JID, which resynchronises a stale `to` subscription on the prober's side.
    // Sent past the user's own hooks, so it touches no pre-approval (§3.4).
    if !contact_subscribed(ctx, &user, &prober.bare()).await {
        let unsubscribed = Element::new("presence", ns::CLIENT)
            .with_attr("type", "unsubscribed")
            .with_attr("from", user.as_str())
            .with_attr("to", prober.bare().as_str());
        ctx.route(unsubscribed).await;
        return;
    }
    let mut answered = false;
    for (resource, state) in ctx.server.sessions.states(&user) {
        if let (true, Some(mut presence)) =
            (state.available, state.presence.and_then(|p| p.element()))
        {
            presence.set_attr("from", resource.as_str());
            presence.set_attr("to", prober.as_str());
            ctx.route(presence).await;
            answered = true;
        }
    }
    if !answered {
        let unavailable = Element::new("presence", ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", user.as_str())
            .with_attr("to", prober.as_str());
        ctx.route(unavailable).await;
    }
}

/// RFC 6121 §4.6: remember where directed presence went (unless the contact gets our
/// broadcasts anyway) so it can be made unavailable at logout. False when an available
/// presence would pass `limits.max_directed_presences`.
async fn record_directed(ctx: &Ctx, from: &FullJid, to: &str, available: bool) -> bool {
    // A malformed `to` is the router's to bounce.
    let Ok(to) = Jid::new(to) else { return true };
    if contact_subscribed(ctx, &from.bare(), &to.bare()).await {
        return true;
    }
    let max = ctx.server.config.limits.max_directed_presences;
    ctx.server
        .sessions
        .update(from, |s| {
            if !available {
                s.directed.remove(&to);
                return true;
            }
            if s.directed.len() >= max && !s.directed.contains(&to) {
                return false;
            }
            s.directed.insert(to);
            true
        })
        .unwrap_or(true)
}

/// Sends the contact the user's current presence, or unavailable, from each available
/// resource (RFC 6121 §3.1.5, §3.2.2).
pub async fn send_presence_action(
    ctx: &Ctx,
    user: &BareJid,
    contact: &BareJid,
    action: PresenceAction,
) {
    for (resource, state) in ctx.server.sessions.states(user) {
        let (true, Some(presence)) = (state.available, state.presence.and_then(|p| p.element()))
        else {
            continue;
        };
        let mut p = match action {
            PresenceAction::Available => presence,
            PresenceAction::Unavailable => {
                Element::new("presence", ns::CLIENT).with_attr("type", "unavailable")
            }
        };
        p.set_attr("from", resource.as_str());
        p.set_attr("to", contact.as_str());
        ctx.route(p).await;
    }
}
