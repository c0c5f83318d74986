//! Publish-subscribe (XEP-0060) and the account's own PEP service (XEP-0163);
//! XMPPFramework's `XMPPPubSub`.
//!
//! A [`PubSub`] speaks to one service: a pubsub domain (`pubsub.example.org`), or, with
//! `None`, the account's own bare JID, its PEP service. It creates, configures, deletes and
//! purges nodes, subscribes and unsubscribes, publishes and retracts, and fetches items
//! (all, by id, the last `max_items`, or a page with result set management where the
//! service supports it: XEP-0059 §2.1 lets a service ignore the `<set/>`, and then
//! [`ItemsPage::paged`] says so).
//!
//! Notifications (`<message><event xmlns='…pubsub#event'/>`) become [`PubSubEvent`]s: from
//! the service, or, for a PEP `PubSub`, from any account (contacts' PEP and our own).
//! Contacts' PEP notifications come only for the nodes whose `<node>+notify` the client
//! declared in its caps ([`crate::Capabilities`], XEP-0163 §4). The stanzas still reach the
//! application and other modules (the avatars read the same notifications).

mod event;

use std::sync::Arc;

use corvid_proto::{BareJid, forms, ns};
use corvid_xml::Element;
use tokio::sync::mpsc;

use crate::client::{Client, Handled, StanzaHandler};
use crate::error::RequestError;

pub use event::PubSubEvent;
pub(crate) use event::parse as parse_events;

/// One published item (XEP-0060 §7.1.1): its id (a service may omit it in
/// notifications of nodes that keep none), who published it if the service says, and its
/// payload (none in a notification without payloads, §7.1.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The ItemID.
    pub id: Option<String>,
    /// The publisher's JID, if the service exposes it.
    pub publisher: Option<String>,
    /// The payload (the item's child element).
    pub payload: Option<Element>,
}

impl Item {
    /// The item of an `<item/>` (in either namespace).
    fn parse(item: &Element) -> Item {
        Item {
            id: item.attr("id").map(str::to_owned),
            publisher: item.attr("publisher").map(str::to_owned),
            payload: item.children().next().cloned(),
        }
    }
}

/// A subscription's state (XEP-0060 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Not subscribed (or ended).
    None,
    /// Waiting for the node owner's approval.
    Pending,
    /// Subscribed once its options are configured.
    Unconfigured,
    /// Subscribed: notifications come.
    Subscribed,
}

impl SubscriptionState {
    fn parse(value: Option<&str>) -> Self {
        match value {
            Some("pending") => SubscriptionState::Pending,
            Some("unconfigured") => SubscriptionState::Unconfigured,
            Some("subscribed") => SubscriptionState::Subscribed,
            _ => SubscriptionState::None,
        }
    }
}

/// One of our subscriptions (XEP-0060 §5.6): the subscription id is there when the service
/// uses them (Corvid does, Prosody does not); it is needed to unsubscribe one of several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The node subscribed to.
    pub node: String,
    /// The JID subscribed (our bare JID, as [`PubSub::subscribe`] asks).
    pub jid: String,
    /// Where the subscription stands.
    pub state: SubscriptionState,
    /// The subscription id, if the service gives them.
    pub subid: Option<String>,
}

impl SubscriptionInfo {
    fn parse(el: &Element, node: Option<&str>) -> Option<SubscriptionInfo> {
        Some(SubscriptionInfo {
            node: el.attr("node").or(node)?.to_owned(),
            jid: el.attr("jid")?.to_owned(),
            state: SubscriptionState::parse(el.attr("subscription")),
            subid: el.attr("subid").map(str::to_owned),
        })
    }
}

/// Which items to fetch (XEP-0060 §6.5): all, some by id, the most recent `max_items`,
/// and/or a page (XEP-0059).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemsQuery {
    /// Only these items (§6.5.8); the others are ignored then.
    pub ids: Vec<String>,
    /// The most recent this many (§6.5.7).
    pub max_items: Option<usize>,
    /// A page of at most this many (XEP-0059 §2.1)…
    pub page_max: Option<usize>,
    /// …after the item with this id (the `last` of the previous page).
    pub after: Option<String>,
}

/// Items fetched, and where they are in the whole set if the service paged them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemsPage {
    /// The items, in the order the service sent them.
    pub items: Vec<Item>,
    /// The service answered with a result set (XEP-0059): the fields below mean something.
    pub paged: bool,
    /// The page's last item id: ask for the next page after it.
    pub last: Option<String>,
    /// How many items the whole set has, if the service says.
    pub count: Option<usize>,
}

/// Why a publish-subscribe request failed.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// No answer, or an error answer ([`PubSubError::condition`] reads it).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The service's answer lacks what XEP-0060 says it holds.
    #[error("unexpected answer: {0}")]
    Malformed(&'static str),
}

impl PubSubError {
    /// The RFC 6120 condition of an error answer (`item-not-found`, `forbidden` …).
    pub fn condition(&self) -> Option<&str> {
        match self {
            PubSubError::Request(RequestError::Error { condition, .. }) => Some(condition),
            _ => None,
        }
    }

    /// The XEP-0060 specific condition of an error answer, if any (`precondition-not-met`,
    /// `subid-required` …: the `pubsub#errors` child).
    pub fn pubsub_condition(&self) -> Option<&str> {
        match self {
            PubSubError::Request(RequestError::Error { stanza, .. }) => stanza
                .get_child("error", ns::CLIENT)?
                .children()
                .find(|c| c.ns() == ns::PUBSUB_ERRORS)
                .map(Element::name),
            _ => None,
        }
    }
}

/// The notifications one [`PubSub`] reports.
#[derive(Debug)]
pub struct PubSubEvents {
    receiver: mpsc::UnboundedReceiver<PubSubEvent>,
}

impl PubSubEvents {
    /// The next notification; `None` once the client is gone.
    pub async fn next(&mut self) -> Option<PubSubEvent> {
        self.receiver.recv().await
    }
}

#[derive(Debug)]
struct Hook {
    service: Option<BareJid>,
    events: mpsc::UnboundedSender<PubSubEvent>,
}

impl StanzaHandler for Hook {
    fn handle(&self, stanza: &Element) -> Handled {
        for event in event::parse(stanza) {
            let ours = match &self.service {
                Some(service) => event.service() == service,
                // PEP: notifications come from accounts, never from a domain.
                None => event.service().node().is_some(),
            };
            if ours {
                let _ = self.events.send(event);
            }
        }
        Handled::No
    }
}

/// One publish-subscribe service, as one client uses it (XMPPPubSub).
#[derive(Debug)]
pub struct PubSub {
    client: Client,
    service: Option<BareJid>,
}

impl PubSub {
    /// The service at `service`, or the account's PEP with `None` (XMPPPubSub's
    /// `initWithServiceJID:`), and its notifications. Attach before connecting so none is
    /// missed.
    pub fn attach(client: &Client, service: Option<BareJid>) -> (Arc<PubSub>, PubSubEvents) {
        let (events, receiver) = mpsc::unbounded_channel();
        client.add_handler(Arc::new(Hook {
            service: service.clone(),
            events,
        }));
        (
            Arc::new(PubSub::requests(client, service)),
            PubSubEvents { receiver },
        )
    }

    /// Requests to `service` without watching its notifications (for modules that read
    /// them themselves, or fetch from a contact's PEP once).
    pub(crate) fn requests(client: &Client, service: Option<BareJid>) -> PubSub {
        PubSub {
            client: client.clone(),
            service,
        }
    }

    /// The service's JID (the account's own bare JID for PEP).
    pub fn service(&self) -> BareJid {
        self.service
            .clone()
            .unwrap_or_else(|| self.client.account().clone())
    }

    /// Creates `node` (`createNode:withOptions:`), configured by `config` (fields of the
    /// `pubsub#node_config` form, §8.1.3) if given; the node's name, which the service
    /// chooses when `node` is `None` (an instant node, §8.1.2).
    pub async fn create_node(
        &self,
        node: Option<&str>,
        config: Option<&[(&str, &str)]>,
    ) -> Result<String, PubSubError> {
        let mut create = Element::new("create", ns::PUBSUB);
        if let Some(node) = node {
            create.set_attr("node", node);
        }
        let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(create);
        if let Some(fields) = config {
            pubsub.append_child(
                Element::new("configure", ns::PUBSUB)
                    .with_child(submitted(ns::PUBSUB_NODE_CONFIG, fields)),
            );
        }
        let result = self.set(pubsub).await?;
        let named = result
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("create", ns::PUBSUB))
            .and_then(|c| c.attr("node"));
        match (named, node) {
            (Some(named), _) => Ok(named.to_owned()),
            (None, Some(node)) => Ok(node.to_owned()),
            (None, None) => Err(PubSubError::Malformed("no name for the instant node")),
        }
    }

    /// The node's configuration form (`configureNode:` asks for it first, §8.2.1).
    pub async fn configuration(&self, node: &str) -> Result<Element, PubSubError> {
        let pubsub = Element::new("pubsub", ns::PUBSUB_OWNER)
            .with_child(Element::new("configure", ns::PUBSUB_OWNER).with_attr("node", node));
        let result = self.request("get", pubsub).await?;
        result
            .get_child("pubsub", ns::PUBSUB_OWNER)
            .and_then(|p| p.get_child("configure", ns::PUBSUB_OWNER))
            .and_then(|c| c.get_child("x", ns::DATA_FORMS))
            .cloned()
            .ok_or(PubSubError::Malformed("no configuration form"))
    }

    /// Changes these fields of the node's configuration (§8.2.4); others keep their values.
    pub async fn configure(&self, node: &str, fields: &[(&str, &str)]) -> Result<(), PubSubError> {
        let pubsub = Element::new("pubsub", ns::PUBSUB_OWNER).with_child(
            Element::new("configure", ns::PUBSUB_OWNER)
                .with_attr("node", node)
                .with_child(submitted(ns::PUBSUB_NODE_CONFIG, fields)),
        );
        self.set(pubsub).await.map(|_| ())
    }

    /// Deletes the node (`deleteNode:`, §8.4); subscribers are told.
    pub async fn delete_node(&self, node: &str) -> Result<(), PubSubError> {
        self.owner_node("delete", node).await
    }

    /// Removes every item of the node (§8.5); subscribers are told.
    pub async fn purge(&self, node: &str) -> Result<(), PubSubError> {
        self.owner_node("purge", node).await
    }

    /// Subscribes the account's bare JID to the node (`subscribeToNode:`, §6.1); the
    /// subscription as the service recorded it (perhaps pending approval).
    pub async fn subscribe(&self, node: &str) -> Result<SubscriptionInfo, PubSubError> {
        let pubsub = Element::new("pubsub", ns::PUBSUB).with_child(
            Element::new("subscribe", ns::PUBSUB)
                .with_attr("node", node)
                .with_attr("jid", self.client.account().as_str()),
        );
        let result = self.set(pubsub).await?;
        let answered = result
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("subscription", ns::PUBSUB))
            .and_then(|s| SubscriptionInfo::parse(s, Some(node)));
        // §6.1.2: a service may answer with an empty result, meaning subscribed.
        Ok(answered.unwrap_or_else(|| SubscriptionInfo {
            node: node.to_owned(),
            jid: self.client.account().to_string(),
            state: SubscriptionState::Subscribed,
            subid: None,
        }))
    }

    /// Ends the account's subscription to the node (`unsubscribeFromNode:withSubID:`,
    /// §6.2); `subid` says which one when there are several.
    pub async fn unsubscribe(&self, node: &str, subid: Option<&str>) -> Result<(), PubSubError> {
        let mut unsubscribe = Element::new("unsubscribe", ns::PUBSUB)
            .with_attr("node", node)
            .with_attr("jid", self.client.account().as_str());
        if let Some(subid) = subid {
            unsubscribe.set_attr("subid", subid);
        }
        let pubsub = Element::new("pubsub", ns::PUBSUB).with_child(unsubscribe);
        self.set(pubsub).await.map(|_| ())
    }

    /// The account's subscriptions on the service, or on one node (`retrieveSubscriptions`,
    /// §5.6).
    pub async fn subscriptions(
        &self,
        node: Option<&str>,
    ) -> Result<Vec<SubscriptionInfo>, PubSubError> {
        let mut subscriptions = Element::new("subscriptions", ns::PUBSUB);
        if let Some(node) = node {
            subscriptions.set_attr("node", node);
        }
        let pubsub = Element::new("pubsub", ns::PUBSUB).with_child(subscriptions);
        let result = self.request("get", pubsub).await?;
        let Some(list) = result
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("subscriptions", ns::PUBSUB))
        else {
            return Ok(Vec::new());
        };
        Ok(list
            .children()
            .filter(|c| c.is("subscription", ns::PUBSUB))
            .filter_map(|c| SubscriptionInfo::parse(c, list.attr("node")))
            .collect())
    }

    /// Publishes `payload` to the node (`publishToNode:entry:withItemID:options:`, §7.1)
    /// as item `id`, or one the service names; with `options`, the publish-options
    /// preconditions (§7.1.5: the node is created so, or must already be so). The item's
    /// id.
    pub async fn publish(
        &self,
        node: &str,
        id: Option<&str>,
        payload: Element,
        options: Option<&[(&str, &str)]>,
    ) -> Result<String, PubSubError> {
        let mut item = Element::new("item", ns::PUBSUB).with_child(payload);
        if let Some(id) = id {
            item.set_attr("id", id);
        }
        let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(
            Element::new("publish", ns::PUBSUB)
                .with_attr("node", node)
                .with_child(item),
        );
        if let Some(fields) = options {
            pubsub.append_child(
                Element::new("publish-options", ns::PUBSUB)
                    .with_child(submitted(ns::PUBSUB_PUBLISH_OPTIONS, fields)),
            );
        }
        let result = self.set(pubsub).await?;
        let named = result
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("publish", ns::PUBSUB))
            .and_then(|p| p.get_child("item", ns::PUBSUB))
            .and_then(|i| i.attr("id"));
        match (named, id) {
            (Some(named), _) => Ok(named.to_owned()),
            (None, Some(id)) => Ok(id.to_owned()),
            (None, None) => Err(PubSubError::Malformed("no id for the published item")),
        }
    }

    /// Deletes item `id` from the node (`retractItemWithItemID:`, §7.2); with `notify`,
    /// subscribers are told.
    pub async fn retract(&self, node: &str, id: &str, notify: bool) -> Result<(), PubSubError> {
        let mut retract = Element::new("retract", ns::PUBSUB)
            .with_attr("node", node)
            .with_child(Element::new("item", ns::PUBSUB).with_attr("id", id));
        if notify {
            retract.set_attr("notify", "true");
        }
        let pubsub = Element::new("pubsub", ns::PUBSUB).with_child(retract);
        self.set(pubsub).await.map(|_| ())
    }

    /// Items of the node (`retrieveItemsFromNode:withItemIDs:`, §6.5).
    pub async fn items(&self, node: &str, query: &ItemsQuery) -> Result<ItemsPage, PubSubError> {
        let mut items = Element::new("items", ns::PUBSUB).with_attr("node", node);
        if let Some(max) = query.max_items {
            items.set_attr("max_items", max.to_string());
        }
        for id in &query.ids {
            items.append_child(Element::new("item", ns::PUBSUB).with_attr("id", id));
        }
        let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(items);
        if query.page_max.is_some() || query.after.is_some() {
            let mut set = Element::new("set", ns::RSM);
            if let Some(max) = query.page_max {
                set.append_child(Element::new("max", ns::RSM).with_text(max.to_string()));
            }
            if let Some(after) = &query.after {
                set.append_child(Element::new("after", ns::RSM).with_text(after.as_str()));
            }
            pubsub.append_child(set);
        }
        let result = self.request("get", pubsub).await?;
        let pubsub = result
            .get_child("pubsub", ns::PUBSUB)
            .ok_or(PubSubError::Malformed("no <pubsub/> in the items"))?;
        let items = pubsub
            .get_child("items", ns::PUBSUB)
            .map(|items| {
                items
                    .children()
                    .filter(|c| c.is("item", ns::PUBSUB))
                    .map(Item::parse)
                    .collect()
            })
            .unwrap_or_default();
        let set = pubsub.get_child("set", ns::RSM);
        Ok(ItemsPage {
            items,
            paged: set.is_some(),
            last: set
                .and_then(|s| s.get_child("last", ns::RSM))
                .map(Element::text),
            count: set
                .and_then(|s| s.get_child("count", ns::RSM))
                .and_then(|c| c.text().trim().parse().ok()),
        })
    }

    async fn owner_node(&self, verb: &str, node: &str) -> Result<(), PubSubError> {
        let pubsub = Element::new("pubsub", ns::PUBSUB_OWNER)
            .with_child(Element::new(verb, ns::PUBSUB_OWNER).with_attr("node", node));
        self.set(pubsub).await.map(|_| ())
    }

    async fn set(&self, pubsub: Element) -> Result<Element, PubSubError> {
        self.request("set", pubsub).await
    }

    async fn request(&self, kind: &str, pubsub: Element) -> Result<Element, PubSubError> {
        let mut iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", kind)
            .with_child(pubsub);
        // PEP requests go to our own account, which a missing `to` means.
        if let Some(service) = &self.service {
            iq.set_attr("to", service.as_str());
        }
        Ok(self.client.request(iq).await?)
    }
}

/// A submitted form of registry `form_type` with these fields (XEP-0004 §3.1).
fn submitted(form_type: &str, fields: &[(&str, &str)]) -> Element {
    let mut all = vec![("FORM_TYPE", form_type)];
    all.extend(fields.iter().filter(|(var, _)| *var != "FORM_TYPE"));
    forms::submit(&all)
}
