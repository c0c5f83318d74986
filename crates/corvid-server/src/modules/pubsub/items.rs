//! Items: publishing (XEP-0060 §7.1, with publish-options §7.1.5 and PEP's auto-create,
//! XEP-0163 §3), retracting (§7.2) and retrieving (§6.5, paged by XEP-0059).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corvid_proto::rsm::{self, PageRequest};
use corvid_proto::{StanzaError, ns};
use corvid_store::{ItemQuery, PubSubStore, StoreError, StoredItem};
use corvid_xml::Element;

use super::node::{
    Affiliation, LastItem, Node, ServiceKind, ServiceState, Subscription, ancestors,
};
use super::node_config::{NodeConfig, NodeType};
use super::notify::Audience;
use super::ops::{Access, check_access, may_publish};
use super::{Request, errors, node_attr, notify};
use crate::module::Ctx;

/// Most items one retrieval returns when the requester did not page (XEP-0060 §6.5.4: the
/// result is then truncated, and says so with an RSM `<set/>`).
const UNPAGED_MAX: usize = 500;
/// Longest ItemID accepted.
const MAX_ITEM_ID: usize = 1024;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `<item id=…>payload</item>` of a stored item, in namespace `ns` (a reply's or an
/// event's).
pub fn item_element(ns: &str, item: &StoredItem, with_payload: bool) -> Element {
    let mut el = Element::new("item", ns).with_attr("id", item.id.as_str());
    if with_payload
        && !item.payload.is_empty()
        && let Ok(payload) = corvid_xml::parse_element(&item.payload, "")
    {
        el.append_child(payload);
    }
    el
}

/// The notification carrying a node's last item to one new subscriber or contact, marked
/// with when it was published (XEP-0060 §6.1.7, XEP-0203).
pub fn last_item_event(
    svc: &ServiceState,
    node: &str,
    config: &NodeConfig,
    item: &StoredItem,
) -> Element {
    let items = Element::new("items", ns::PUBSUB_EVENT)
        .with_attr("node", node)
        .with_child(notify::event_item(item, config.deliver_payloads));
    let stamp = UNIX_EPOCH + Duration::from_millis(item.published_at.max(0) as u64);
    notify::message(svc, config, items).with_child(
        Element::new("delay", ns::DELAY)
            .with_attr("stamp", corvid_proto::time::format_datetime(stamp))
            .with_attr("from", svc.key.as_str()),
    )
}

/// The node's newest item, from the cache or the store.
pub async fn last_item(
    ctx: &Ctx,
    svc: &ServiceState,
    node_name: &str,
) -> Result<Option<StoredItem>, StanzaError> {
    {
        let nodes = svc.nodes.lock().await;
        match nodes.get(node_name).map(|n| &n.last) {
            None => return Ok(None),
            Some(LastItem::Known(item)) => return Ok(item.clone()),
            Some(LastItem::Unknown) => {}
        }
    }
    let page = ctx
        .server
        .store
        .pubsub_items(
            &svc.key,
            node_name,
            &ItemQuery {
                max: Some(1),
                ..ItemQuery::default()
            },
        )
        .await
        .map_err(errors::storage)?;
    let item = page.items.into_iter().next();
    let mut nodes = svc.nodes.lock().await;
    if let Some(node) = nodes.get_mut(node_name)
        && matches!(node.last, LastItem::Unknown)
    {
        node.last = LastItem::Known(item.clone());
    }
    Ok(item)
}

impl Request<'_> {
    /// XEP-0060 §7.1.
    pub async fn publish(
        &self,
        el: &Element,
        payload: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let node_name = node_attr(el)?;
        let mut items = el.children().filter(|c| c.is("item", ns::PUBSUB));
        let item = items.next();
        if items.next().is_some() {
            return Err(StanzaError::bad_request().with_text("One item per publish request"));
        }
        let mut bodies = item.into_iter().flat_map(Element::children);
        let body = bodies.next();
        if bodies.next().is_some() {
            return Err(errors::invalid_payload());
        }
        let serialized = body.map(Element::to_string).unwrap_or_default();
        if serialized.len() > self.ctx.server.config.pubsub.max_payload_bytes {
            return Err(errors::payload_too_big());
        }
        let id = match item.and_then(|i| i.attr("id")).filter(|id| !id.is_empty()) {
            Some(id) if id.len() > MAX_ITEM_ID => {
                return Err(StanzaError::not_acceptable().with_text("ItemID too long"));
            }
            Some(id) => id.to_string(),
            None => crate::random_id(),
        };
        let options = payload
            .get_child("publish-options", ns::PUBSUB)
            .and_then(|o| o.get_child("x", ns::DATA_FORMS));
        let wait = self
            .ctx
            .server
            .pubsub
            .admit_publish(self.ctx, &self.requester)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }

        let mut nodes = self.svc.nodes.lock().await;
        if !nodes.contains_key(node_name) {
            let node = self.auto_create(node_name, options, nodes.len()).await?;
            nodes.insert(node_name.to_string(), node);
        } else if let Some(options) = options {
            nodes[node_name]
                .config
                .meets(options, self.max_items_limit())?;
        }
        let Some(node) = nodes.get_mut(node_name) else {
            return Err(StanzaError::item_not_found());
        };
        if !may_publish(node, &self.requester, &self.svc.kind, self.is_admin()) {
            return Err(StanzaError::forbidden());
        }
        if node.config.node_type == NodeType::Collection {
            // Items go to leaves; a collection gathers their notifications.
            return Err(errors::unsupported("publish").with_text("A collection holds no items"));
        }
        let config = node.config.clone();
        // §7.1.3.6 and §7.1.3.7: what a node of this event type needs.
        let persistent = config.persist_items;
        match (item, body) {
            (None, _) if persistent => return Err(errors::item_required()),
            (_, None) if persistent || config.deliver_payloads => {
                return Err(errors::payload_required());
            }
            (Some(_), Some(_)) if !persistent && !config.deliver_payloads => {
                return Err(errors::item_forbidden());
            }
            _ => {}
        }
        let stored = StoredItem {
            id,
            publisher: self.requester.to_string(),
            payload: serialized,
            published_at: now_ms(),
        };
        if persistent {
            self.check_quota(node_name, &stored.id, config.max_items)
                .await?;
            self.ctx
                .server
                .store
                .publish_pubsub_item(&self.svc.key, node_name, &stored, Some(config.max_items))
                .await
                .map_err(errors::storage)?;
        }
        node.last = LastItem::Known(Some(stored.clone()));
        let audience = audience(&nodes, node_name);
        drop(nodes);

        notify::published(self.ctx, self.svc, node_name, &config, &audience, &stored).await;
        if let (Some(owner), false) = (self.svc.kind.pep_owner(), self.quiet) {
            let modules = &self.ctx.server.modules;
            modules
                .on_pep_published(self.ctx, owner, node_name, &stored)
                .await;
        }
        let publish = Element::new("publish", ns::PUBSUB)
            .with_attr("node", node_name)
            .with_child(Element::new("item", ns::PUBSUB).with_attr("id", stored.id.as_str()));
        Ok(Some(Element::new("pubsub", ns::PUBSUB).with_child(publish)))
    }

    /// A publish to a missing node: PEP creates it for its owner (XEP-0163 §3, with the
    /// publish-options as its configuration, XEP-0060 §7.1.5); the service does not.
    async fn auto_create(
        &self,
        node_name: &str,
        options: Option<&Element>,
        node_count: usize,
    ) -> Result<Node, StanzaError> {
        let ServiceKind::Pep(owner) = &self.svc.kind else {
            return Err(StanzaError::item_not_found());
        };
        if *owner != self.requester {
            return Err(StanzaError::forbidden());
        }
        if node_count >= self.ctx.server.config.pubsub.max_nodes_per_user {
            return Err(errors::max_nodes_exceeded());
        }
        let mut config = self.svc.kind.default_config();
        if let Some(options) = options {
            config = config
                .apply(options, self.max_items_limit())
                .map_err(|_| errors::precondition_not_met())?;
        }
        let node = Node::new(node_name.to_string(), config, owner.clone());
        match self
            .ctx
            .server
            .store
            .create_pubsub_node(&node.stored(&self.svc.key))
            .await
        {
            Ok(()) | Err(StoreError::Conflict) => Ok(node),
            Err(err) => Err(errors::storage(err)),
        }
    }

    /// A PEP service holds at most `max_pep_items_per_user` items in all; at the quota, a
    /// publication that does not add one (replacing an id, or pushing out the oldest of a
    /// full node) still goes through.
    async fn check_quota(&self, node: &str, id: &str, max_items: usize) -> Result<(), StanzaError> {
        if self.svc.kind.pep_owner().is_none() {
            return Ok(());
        }
        let store = &self.ctx.server.store;
        let total = store
            .pubsub_item_total(&self.svc.key)
            .await
            .map_err(errors::storage)?;
        if total < self.ctx.server.config.pubsub.max_pep_items_per_user {
            return Ok(());
        }
        let same_id = ItemQuery {
            ids: vec![id.to_string()],
            max: Some(1),
            ..ItemQuery::default()
        };
        let page = store
            .pubsub_items(&self.svc.key, node, &same_id)
            .await
            .map_err(errors::storage)?;
        if !page.items.is_empty() || page.count >= max_items {
            return Ok(());
        }
        Err(errors::resource_constraint(
            "This account's personal nodes hold as many items as they may",
        ))
    }

    /// XEP-0060 §7.2.
    pub async fn retract(&self, el: &Element) -> Result<Option<Element>, StanzaError> {
        let node_name = node_attr(el)?;
        let id = el
            .get_child("item", ns::PUBSUB)
            .and_then(|i| i.attr("id"))
            .filter(|id| !id.is_empty())
            .ok_or_else(errors::item_required)?;
        let mut nodes = self.svc.nodes.lock().await;
        let node = nodes
            .get_mut(node_name)
            .ok_or_else(StanzaError::item_not_found)?;
        let affiliation = node.affiliation(&self.requester);
        if !self.is_admin()
            && !matches!(
                affiliation,
                Affiliation::Owner | Affiliation::Publisher | Affiliation::PublishOnly
            )
        {
            return Err(StanzaError::forbidden());
        }
        if !node.config.persist_items {
            return Err(errors::unsupported("persistent-items"));
        }
        let removed = self
            .ctx
            .server
            .store
            .retract_pubsub_item(&self.svc.key, node_name, id)
            .await
            .map_err(errors::storage)?;
        if !removed {
            return Err(StanzaError::item_not_found());
        }
        if matches!(&node.last, LastItem::Known(Some(last)) if last.id == id) {
            node.last = LastItem::Unknown;
        }
        let config = node.config.clone();
        let audience = audience(&nodes, node_name);
        drop(nodes);
        // §7.2.2.1: notify when asked to, or when the node is configured to.
        if matches!(el.attr("notify"), Some("1" | "true")) || config.notify_retract {
            notify::retracted(self.ctx, self.svc, node_name, &config, &audience, id).await;
        }
        if let (Some(owner), false) = (self.svc.kind.pep_owner(), self.quiet) {
            let modules = &self.ctx.server.modules;
            modules
                .on_pep_retracted(self.ctx, owner, node_name, id)
                .await;
        }
        Ok(None)
    }

    /// XEP-0060 §6.5: all items, some by id, the most recent `max_items`, or a page.
    pub async fn items(
        &self,
        el: &Element,
        payload: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let node_name = node_attr(el)?;
        let (access, config) = {
            let nodes = self.svc.nodes.lock().await;
            let node = nodes
                .get(node_name)
                .ok_or_else(StanzaError::item_not_found)?;
            (Access::of(node, &self.requester), node.config.clone())
        };
        check_access(self.ctx, &access, &self.requester, self.is_admin()).await?;
        if config.node_type == NodeType::Collection {
            return Err(
                errors::unsupported("retrieve-items").with_text("A collection holds no items")
            );
        }
        if !config.persist_items {
            return Err(errors::unsupported("persistent-items"));
        }
        let ids: Vec<String> = el
            .children()
            .filter(|c| c.is("item", ns::PUBSUB))
            .filter_map(|c| c.attr("id"))
            .map(str::to_string)
            .collect();
        let max_items =
            match el.attr("max_items") {
                None => None,
                Some(n) => Some(n.trim().parse::<usize>().map_err(|_| {
                    StanzaError::bad_request().with_text("max_items must be a number")
                })?),
            };
        let paged = payload.get_child("set", ns::RSM);
        let page = match paged {
            Some(set) => PageRequest::parse(set).map_err(|_| StanzaError::bad_request())?,
            None => PageRequest::default(),
        };
        if page.index.is_some() {
            return Err(StanzaError::feature_not_implemented()
                .with_text("Paging by index is not supported; page with after/before"));
        }
        let limit = [page.max, max_items, Some(UNPAGED_MAX)]
            .into_iter()
            .flatten()
            .min();
        let query = ItemQuery {
            ids,
            max: limit,
            after: page.after,
            before: page.before,
        };
        let result = match self
            .ctx
            .server
            .store
            .pubsub_items(&self.svc.key, node_name, &query)
            .await
        {
            Ok(result) => result,
            Err(StoreError::NotFound) => return Err(StanzaError::item_not_found()),
            Err(err) => return Err(errors::storage(err)),
        };
        let expired = expiry_cutoff(&config);
        let mut items = Element::new("items", ns::PUBSUB).with_attr("node", node_name);
        for item in result.items.iter().filter(|i| i.published_at >= expired) {
            items.append_child(item_element(ns::PUBSUB, item, true));
        }
        self.remove_expired(node_name, &result.items, expired);
        let mut reply = Element::new("pubsub", ns::PUBSUB).with_child(items);
        let truncated = paged.is_none()
            && max_items.is_none()
            && query.ids.is_empty()
            && result.count > result.items.len();
        if paged.is_some() || truncated {
            let first = result.items.first().zip(result.first_index);
            let last = result.items.last();
            reply.append_child(rsm::result_set(
                first.map(|(item, index)| (item.id.as_str(), index)),
                last.map(|item| item.id.as_str()),
                result.count,
            ));
        }
        Ok(Some(reply))
    }

    /// Items past `pubsub#item_expire` are not returned, and are removed in the background.
    fn remove_expired(&self, node_name: &str, items: &[StoredItem], cutoff: i64) {
        let expired: Vec<String> = items
            .iter()
            .filter(|i| i.published_at < cutoff)
            .map(|i| i.id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let (server, key, node) = (
            self.ctx.server.clone(),
            self.svc.key.clone(),
            node_name.to_string(),
        );
        tokio::spawn(async move {
            for id in expired {
                let _ = server.store.retract_pubsub_item(&key, &node, &id).await;
            }
        });
    }
}

/// Who hears an item event of `node`: its subscribers, and the subscribers of each
/// collection above it whose options take items from that deep (XEP-0248 §6.1).
fn audience(nodes: &std::collections::HashMap<String, Node>, node: &str) -> Audience {
    let own = nodes
        .get(node)
        .map(|n| n.subscriptions.clone())
        .unwrap_or_default();
    let mut via = Vec::new();
    for (distance, collection) in (1u32..).zip(ancestors(nodes, node)) {
        let subscriptions: Vec<Subscription> = nodes
            .get(&collection)
            .into_iter()
            .flat_map(|c| &c.subscriptions)
            .filter(|s| s.options.hears_items_at(distance))
            .cloned()
            .collect();
        if !subscriptions.is_empty() {
            via.push((collection, subscriptions));
        }
    }
    Audience { own, via }
}

/// Items published before this (ms since the epoch) have expired.
fn expiry_cutoff(config: &NodeConfig) -> i64 {
    if config.item_expire == 0 {
        return i64::MIN;
    }
    now_ms().saturating_sub((config.item_expire as i64).saturating_mul(1000))
}
