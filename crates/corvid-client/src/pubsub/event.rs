//! Publish-subscribe notifications (XEP-0060 §7.1.2, §7.2.2, §8.2.5, §8.4.2, §8.5.2,
//! §8.8.4): the `<event xmlns='http://jabber.org/protocol/pubsub#event'/>` of a message,
//! read into [`PubSubEvent`]s. Parsing only; [`super::PubSub`] decides whose to report.

use corvid_proto::{BareJid, Jid, ns};
use corvid_xml::Element;

use super::{Item, SubscriptionState};

/// A notification from a publish-subscribe service or a contact's PEP
/// (XMPPPubSubDelegate's `xmppPubSub:didReceiveMessage:`, read). Each names the `service`
/// that sent it (the contact's bare JID for PEP) and the `node` it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PubSubEvent {
    /// Items were published (or, right after subscribing or coming online, the last ones
    /// were sent again: XEP-0060 §6.1.7, XEP-0163 §4.3.4).
    Published {
        /// Who sent it: the service, or the contact whose PEP it is.
        service: BareJid,
        /// The node it is about.
        node: String,
        /// The items, with their payloads.
        items: Vec<Item>,
    },
    /// Items were retracted (sent only when the publisher asked to notify, §7.2.2.1).
    Retracted {
        /// Who sent it: the service, or the contact whose PEP it is.
        service: BareJid,
        /// The node it is about.
        node: String,
        /// The retracted items' ids.
        ids: Vec<String>,
    },
    /// The node's configuration changed; the new form if the node sends it (§8.2.5).
    Configured {
        /// Who sent it: the service, or the contact whose PEP it is.
        service: BareJid,
        /// The node it is about.
        node: String,
        /// The configuration form, if sent.
        form: Option<Element>,
    },
    /// The node was deleted (§8.4.2), perhaps pointing to its replacement.
    Deleted {
        /// Who sent it: the service, or the contact whose PEP it is.
        service: BareJid,
        /// The node it is about.
        node: String,
        /// Where the node's replacement is, if given.
        redirect: Option<String>,
    },
    /// Every item of the node was removed (§8.5.2).
    Purged {
        /// Who sent it: the service, or the contact whose PEP it is.
        service: BareJid,
        /// The node it is about.
        node: String,
    },
    /// A subscription of ours changed (approved, made pending, ended: §8.8.4).
    Subscription {
        /// Who sent it: the service, or the contact whose PEP it is.
        service: BareJid,
        /// The node it is about.
        node: String,
        /// Whose subscription.
        jid: String,
        /// Its state now.
        state: SubscriptionState,
        /// Its subscription id, if the service uses them.
        subid: Option<String>,
    },
}

impl PubSubEvent {
    /// The service (or the contact, for PEP) that sent it.
    pub fn service(&self) -> &BareJid {
        match self {
            PubSubEvent::Published { service, .. }
            | PubSubEvent::Retracted { service, .. }
            | PubSubEvent::Configured { service, .. }
            | PubSubEvent::Deleted { service, .. }
            | PubSubEvent::Purged { service, .. }
            | PubSubEvent::Subscription { service, .. } => service,
        }
    }

    /// The node it is about.
    pub fn node(&self) -> &str {
        match self {
            PubSubEvent::Published { node, .. }
            | PubSubEvent::Retracted { node, .. }
            | PubSubEvent::Configured { node, .. }
            | PubSubEvent::Deleted { node, .. }
            | PubSubEvent::Purged { node, .. }
            | PubSubEvent::Subscription { node, .. } => node,
        }
    }
}

/// The events a message carries: none if it is not a notification (or an error, or from
/// nobody). Published items and retractions in one `<items/>` become two events.
pub fn parse(message: &Element) -> Vec<PubSubEvent> {
    if message.name() != "message" || message.attr("type") == Some("error") {
        return Vec::new();
    }
    let Some(event) = message.get_child("event", ns::PUBSUB_EVENT) else {
        return Vec::new();
    };
    let Some(service) = message
        .attr("from")
        .and_then(|from| Jid::new(from).ok())
        .map(|from| from.to_bare())
    else {
        return Vec::new();
    };
    let mut events = Vec::new();
    for child in event.children().filter(|c| c.ns() == ns::PUBSUB_EVENT) {
        let Some(node) = child.attr("node").map(str::to_owned) else {
            continue;
        };
        let service = service.clone();
        match child.name() {
            "items" => {
                let items: Vec<Item> = child
                    .children()
                    .filter(|c| c.is("item", ns::PUBSUB_EVENT))
                    .map(Item::parse)
                    .collect();
                let ids: Vec<String> = child
                    .children()
                    .filter(|c| c.is("retract", ns::PUBSUB_EVENT))
                    .filter_map(|c| c.attr("id").map(str::to_owned))
                    .collect();
                if !items.is_empty() {
                    events.push(PubSubEvent::Published {
                        service: service.clone(),
                        node: node.clone(),
                        items,
                    });
                }
                if !ids.is_empty() {
                    events.push(PubSubEvent::Retracted { service, node, ids });
                }
            }
            "configuration" => events.push(PubSubEvent::Configured {
                service,
                node,
                form: child.get_child("x", ns::DATA_FORMS).cloned(),
            }),
            "delete" => events.push(PubSubEvent::Deleted {
                service,
                node,
                redirect: child
                    .get_child("redirect", ns::PUBSUB_EVENT)
                    .and_then(|r| r.attr("uri"))
                    .map(str::to_owned),
            }),
            "purge" => events.push(PubSubEvent::Purged { service, node }),
            "subscription" => {
                if let Some(jid) = child.attr("jid") {
                    events.push(PubSubEvent::Subscription {
                        service,
                        node,
                        jid: jid.to_owned(),
                        state: SubscriptionState::parse(child.attr("subscription")),
                        subid: child.attr("subid").map(str::to_owned),
                    });
                }
            }
            _ => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(event: Element) -> Element {
        Element::new("message", ns::CLIENT)
            .with_attr("from", "pubsub.example")
            .with_child(Element::new("event", ns::PUBSUB_EVENT).with_child(event))
    }

    #[test]
    fn reads_items_and_retractions() {
        let items = Element::new("items", ns::PUBSUB_EVENT)
            .with_attr("node", "n")
            .with_child(
                Element::new("item", ns::PUBSUB_EVENT)
                    .with_attr("id", "a")
                    .with_child(Element::new("entry", "urn:example")),
            )
            .with_child(Element::new("retract", ns::PUBSUB_EVENT).with_attr("id", "b"));
        let events = parse(&message(items));
        assert_eq!(events.len(), 2);
        match &events[0] {
            PubSubEvent::Published { node, items, .. } => {
                assert_eq!(node, "n");
                assert_eq!(items[0].id.as_deref(), Some("a"));
                assert!(
                    items[0]
                        .payload
                        .as_ref()
                        .unwrap()
                        .is("entry", "urn:example")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            events[1],
            PubSubEvent::Retracted {
                service: BareJid::new("pubsub.example").unwrap(),
                node: "n".into(),
                ids: vec!["b".into()]
            }
        );
    }

    #[test]
    fn reads_node_events_and_ignores_errors() {
        let delete = Element::new("delete", ns::PUBSUB_EVENT)
            .with_attr("node", "n")
            .with_child(Element::new("redirect", ns::PUBSUB_EVENT).with_attr("uri", "xmpp:x"));
        assert!(matches!(
            &parse(&message(delete.clone()))[..],
            [PubSubEvent::Deleted { redirect: Some(uri), .. }] if uri == "xmpp:x"
        ));
        let purge = Element::new("purge", ns::PUBSUB_EVENT).with_attr("node", "n");
        assert!(matches!(
            &parse(&message(purge))[..],
            [PubSubEvent::Purged { .. }]
        ));
        let mut error = message(delete);
        error.set_attr("type", "error");
        assert!(parse(&error).is_empty());
    }

    #[test]
    fn reads_subscription_changes_and_skips_nodeless_ones() {
        let subscription = Element::new("subscription", ns::PUBSUB_EVENT)
            .with_attr("node", "n")
            .with_attr("jid", "romeo@example")
            .with_attr("subscription", "pending")
            .with_attr("subid", "s1");
        assert_eq!(
            parse(&message(subscription)),
            [PubSubEvent::Subscription {
                service: BareJid::new("pubsub.example").unwrap(),
                node: "n".into(),
                jid: "romeo@example".into(),
                state: SubscriptionState::Pending,
                subid: Some("s1".into()),
            }]
        );
        let nodeless = Element::new("purge", ns::PUBSUB_EVENT);
        assert!(parse(&message(nodeless)).is_empty());
    }
}
