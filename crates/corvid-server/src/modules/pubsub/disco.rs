//! Service discovery of pubsub (XEP-0060 §5): the service's identity and features, its
//! nodes, a node's meta-data (§5.4) and its items (§5.5). A node the requester may not
//! read does not exist as far as disco tells (PEP nodes are private by default).

use corvid_proto::forms;
use corvid_proto::{Iq, IqType, StanzaError, ns};
use corvid_store::{ItemQuery, PubSubStore};
use corvid_xml::Element;

use super::node::{Node, ServiceKind};
use super::node_config::NodeType;
use super::ops::{Access, check_access};
use super::{Request, errors};
use crate::module::{Ctx, IqResult};

/// XEP-0060 §10 features the engine implements, on the service and on PEP.
pub const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub",
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#collections",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#config-node-max",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#instant-nodes",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#manage-affiliations",
    "http://jabber.org/protocol/pubsub#manage-subscriptions",
    "http://jabber.org/protocol/pubsub#meta-data",
    "http://jabber.org/protocol/pubsub#modify-affiliations",
    "http://jabber.org/protocol/pubsub#outcast-affiliation",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#publisher-affiliation",
    "http://jabber.org/protocol/pubsub#publish-only-affiliation",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-affiliations",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
    "http://jabber.org/protocol/pubsub#rsm",
    "http://jabber.org/protocol/pubsub#subscribe",
    "http://jabber.org/protocol/pubsub#subscription-options",
];

/// What PEP adds (XEP-0163 §4, §6).
pub const PEP_FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#auto-subscribe",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#presence-notifications",
];

/// Most items disco#items lists for one node.
const MAX_LISTED_ITEMS: usize = 500;

fn identity(category: &str, kind: &str) -> Element {
    Element::new("identity", ns::DISCO_INFO)
        .with_attr("category", category)
        .with_attr("type", kind)
}

fn feature(var: &str) -> Element {
    Element::new("feature", ns::DISCO_INFO).with_attr("var", var)
}

/// A disco query to a service: to the service itself, or about one of its nodes.
pub async fn answer(ctx: &Ctx, kind: ServiceKind, iq: &Iq) -> IqResult {
    if iq.kind != IqType::Get || iq.payload.name() != "query" {
        return Err(StanzaError::bad_request());
    }
    let svc = ctx.server.pubsub.service(ctx, kind).await?;
    let request = Request::new(ctx, &svc, &iq.from);
    match (iq.payload.ns(), iq.payload.attr("node")) {
        (ns::DISCO_INFO, None) => Ok(Some(service_info())),
        (ns::DISCO_ITEMS, None) => Ok(Some(request.node_list().await)),
        (ns::DISCO_INFO, Some(node)) => request.node_info(node).await.map(Some),
        (_, Some(node)) => request.node_items(node).await.map(Some),
        _ => Err(StanzaError::bad_request()),
    }
}

fn service_info() -> Element {
    let mut query = Element::new("query", ns::DISCO_INFO)
        .with_child(identity("pubsub", "service"))
        .with_child(feature(ns::DISCO_INFO))
        .with_child(feature(ns::DISCO_ITEMS));
    for var in FEATURES {
        query.append_child(feature(var));
    }
    query
}

impl Request<'_> {
    /// The nodes at the root (or in collection `parent`) the requester may read, as
    /// disco#items (XEP-0060 §5.2).
    pub async fn node_list(&self) -> Element {
        self.nodes_in("").await
    }

    async fn nodes_in(&self, parent: &str) -> Element {
        let mut query = Element::new("query", ns::DISCO_ITEMS);
        if !parent.is_empty() {
            query.set_attr("node", parent);
        }
        let in_parent = {
            let nodes = self.svc.nodes.lock().await;
            super::node::children(&nodes, parent)
        };
        let visible = self.visible_nodes().await;
        for (name, title) in visible.into_iter().filter(|(n, _)| in_parent.contains(n)) {
            let mut item = Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", self.svc.key.as_str())
                .with_attr("node", name);
            if !title.is_empty() {
                item.set_attr("name", title);
            }
            query.append_child(item);
        }
        query
    }

    /// (NodeID, title) of every node the requester may read, sorted.
    pub async fn visible_nodes(&self) -> Vec<(String, String)> {
        let candidates: Vec<(String, String, Access)> = {
            let nodes = self.svc.nodes.lock().await;
            nodes
                .values()
                .map(|n| {
                    (
                        n.name.clone(),
                        n.config.title.clone(),
                        Access::of(n, &self.requester),
                    )
                })
                .collect()
        };
        let mut visible = Vec::new();
        for (name, title, access) in candidates {
            if check_access(self.ctx, &access, &self.requester, self.is_admin())
                .await
                .is_ok()
            {
                visible.push((name, title));
            }
        }
        visible.sort();
        visible
    }

    /// A copy of a node the requester may read; `item-not-found` otherwise.
    async fn readable(&self, name: &str) -> Result<Node, StanzaError> {
        let node = {
            let nodes = self.svc.nodes.lock().await;
            nodes
                .get(name)
                .cloned()
                .ok_or_else(StanzaError::item_not_found)?
        };
        let access = Access::of(&node, &self.requester);
        check_access(self.ctx, &access, &self.requester, self.is_admin())
            .await
            .map_err(|_| StanzaError::item_not_found())?;
        Ok(node)
    }

    /// XEP-0060 §5.3 and the meta-data of §5.4.
    pub async fn node_info(&self, name: &str) -> Result<Element, StanzaError> {
        let node = self.readable(name).await?;
        let mut owners: Vec<&str> = node.owners().map(|j| j.as_str()).collect();
        owners.sort_unstable();
        let config = &node.config;
        let mut meta = forms::form("result");
        meta.append_child(forms::form_type_field(ns::PUBSUB_META_DATA));
        for (var, kind, values) in [
            (
                "pubsub#type",
                "text-single",
                vec![config.payload_type.as_str()],
            ),
            ("pubsub#title", "text-single", vec![config.title.as_str()]),
            (
                "pubsub#description",
                "text-single",
                vec![config.description.as_str()],
            ),
            ("pubsub#owner", "jid-multi", owners),
            (
                "pubsub#access_model",
                "list-single",
                vec![node.config.access_model.as_str()],
            ),
        ] {
            meta.append_child(forms::field(var, kind, None, &values));
        }
        let num = node.subscriptions.len().to_string();
        meta.append_child(forms::field(
            "pubsub#num_subscribers",
            "text-single",
            None,
            &[num.as_str()],
        ));
        let kind = match node.config.node_type {
            NodeType::Leaf => "leaf",
            NodeType::Collection => "collection",
        };
        Ok(Element::new("query", ns::DISCO_INFO)
            .with_attr("node", name)
            .with_child(identity("pubsub", kind))
            .with_child(feature(ns::PUBSUB))
            .with_child(meta))
    }

    /// XEP-0060 §5.5: the node's items, as disco#items named by ItemID.
    pub async fn node_items(&self, name: &str) -> Result<Element, StanzaError> {
        let node = self.readable(name).await?;
        if node.config.node_type == NodeType::Collection {
            return Ok(self.nodes_in(name).await);
        }
        let mut query = Element::new("query", ns::DISCO_ITEMS).with_attr("node", name);
        if !node.config.persist_items {
            return Ok(query);
        }
        let page = self
            .ctx
            .server
            .store
            .pubsub_items(
                &self.svc.key,
                name,
                &ItemQuery {
                    max: Some(MAX_LISTED_ITEMS),
                    ..ItemQuery::default()
                },
            )
            .await
            .map_err(errors::storage)?;
        for item in page.items {
            query.append_child(
                Element::new("item", ns::DISCO_ITEMS)
                    .with_attr("jid", self.svc.key.as_str())
                    .with_attr("name", item.id),
            );
        }
        Ok(query)
    }
}
