//! Event notifications (XEP-0060 §7.1.2, §7.2.2, §8.2.5, §8.4.2, §8.5.2): who gets them —
//! the node's subscribers, and for PEP the owner's and contacts' resources that asked with
//! `+notify` (XEP-0163 §4) — and their delivery, serialized once for all recipients.

use std::collections::HashSet;

use corvid_proto::{Jid, ns};
use corvid_store::StoredItem;
use corvid_xml::Element;

use super::node::{ServiceState, Subscription};
use super::node_config::NodeConfig;
use crate::module::Ctx;
use crate::sessions::{Queued, StanzaClass};

/// Who hears an event of a node: its own subscribers, and those of the collections above
/// it that asked for their items, grouped by the collection they hear it through.
#[derive(Default)]
pub struct Audience {
    pub own: Vec<Subscription>,
    pub via: Vec<(String, Vec<Subscription>)>,
}

impl Audience {
    pub fn own(subscriptions: Vec<Subscription>) -> Self {
        Audience {
            own: subscriptions,
            via: Vec::new(),
        }
    }
}

/// `<item id=… publisher=…>payload</item>` in the event namespace.
pub fn event_item(item: &StoredItem, with_payload: bool) -> Element {
    let mut el = super::items::item_element(ns::PUBSUB_EVENT, item, with_payload);
    if !item.publisher.is_empty() {
        el.set_attr("publisher", item.publisher.as_str());
    }
    el
}

/// A notification message from the service, without `to` (added per recipient).
pub fn message(svc: &ServiceState, config: &NodeConfig, event_child: Element) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("from", svc.key.as_str())
        .with_attr("type", config.notification_type.as_str())
        .with_attr("id", crate::random_id())
        .with_child(Element::new("event", ns::PUBSUB_EVENT).with_child(event_child))
}

/// An item was published.
pub async fn published(
    ctx: &Ctx,
    svc: &ServiceState,
    node: &str,
    config: &NodeConfig,
    audience: &Audience,
    item: &StoredItem,
) {
    if !config.deliver_notifications {
        return;
    }
    let items = Element::new("items", ns::PUBSUB_EVENT)
        .with_attr("node", node)
        .with_child(event_item(item, config.deliver_payloads));
    broadcast(ctx, svc, node, config, audience, items).await;
}

/// An item was retracted.
pub async fn retracted(
    ctx: &Ctx,
    svc: &ServiceState,
    node: &str,
    config: &NodeConfig,
    audience: &Audience,
    id: &str,
) {
    let items = Element::new("items", ns::PUBSUB_EVENT)
        .with_attr("node", node)
        .with_child(Element::new("retract", ns::PUBSUB_EVENT).with_attr("id", id));
    broadcast(ctx, svc, node, config, audience, items).await;
}

/// A node-level event (delete, purge, configuration) to the node's subscribers.
pub async fn node_event(
    ctx: &Ctx,
    svc: &ServiceState,
    node: &str,
    config: &NodeConfig,
    subscriptions: &[Subscription],
    event: Element,
) {
    let audience = Audience::own(subscriptions.to_vec());
    broadcast(ctx, svc, node, config, &audience, event).await;
}

async fn broadcast(
    ctx: &Ctx,
    svc: &ServiceState,
    node: &str,
    config: &NodeConfig,
    audience: &Audience,
    event_child: Element,
) {
    let mut recipients: Vec<Jid> = audience
        .own
        .iter()
        .filter(|s| s.options.deliver)
        .map(|s| s.jid.clone())
        .collect();
    if let Some(owner) = svc.kind.pep_owner() {
        // A contact subscribed explicitly by bare JID already gets it on every resource.
        let explicit: HashSet<_> = recipients
            .iter()
            .filter(|j| j.resource().is_none())
            .cloned()
            .collect();
        for full in super::pep::interested(ctx, owner, node, config).await {
            let full = Jid::from(full);
            if !explicit.contains(&Jid::from(full.to_bare())) && !recipients.contains(&full) {
                recipients.push(full);
            }
        }
    }
    // XEP-0248 §5.3.1: what comes through a collection says which, in a SHIM header.
    let mut seen = recipients.clone();
    for (collection, subscriptions) in &audience.via {
        let group: Vec<Jid> = subscriptions
            .iter()
            .map(|s| s.jid.clone())
            .filter(|j| !seen.contains(j))
            .collect();
        if group.is_empty() {
            continue;
        }
        let header = Element::new("headers", ns::SHIM).with_child(
            Element::new("header", ns::SHIM)
                .with_attr("name", "Collection")
                .with_text(collection.as_str()),
        );
        let message = message(svc, config, event_child.clone()).with_child(header);
        deliver(ctx, message, &group).await;
        seen.extend(group);
    }
    if !recipients.is_empty() {
        deliver(ctx, message(svc, config, event_child), &recipients).await;
    }
}

/// Sends one message to many: serialized once, each copy differing only in `to`.
pub async fn deliver(ctx: &Ctx, message: Element, recipients: &[Jid]) {
    let fan = message.fan_out(ns::CLIENT);
    let class = StanzaClass::of(&message);
    let sessions = &ctx.server.sessions;
    for to in recipients {
        if !ctx.server.config.serves(to.domain().as_str()) {
            ctx.route(message.clone().with_attr("to", to.as_str()))
                .await;
            continue;
        }
        let queued = Queued::new(fan.to(to.as_str()), class);
        match to.clone().try_into_full() {
            Ok(full) => {
                let _ = sessions.deliver_to_full(&full, queued);
            }
            // RFC 6121 §8.5.2.1.1: a headline to a bare JID goes to every available
            // resource; a `normal` one nobody takes goes where the router puts it (offline).
            Err(bare) => {
                if sessions.deliver_to_available(&bare, queued) == 0
                    && message.attr("type") == Some("normal")
                {
                    ctx.route(message.clone().with_attr("to", to.as_str()))
                        .await;
                }
            }
        }
    }
}
