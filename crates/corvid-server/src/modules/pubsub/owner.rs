//! The owner use cases of XEP-0060 §8: create (with a configuration form), configure,
//! default configuration, delete (with redirect), purge, and the management of
//! subscriptions and affiliations (outcasts included).

use corvid_proto::{BareJid, IqType, Jid, StanzaError, ns};
use corvid_store::{ItemQuery, PubSubStore, StoreError};
use corvid_xml::Element;

use std::collections::HashMap;

use super::node::{Affiliation, Node, ServiceKind, SubState, Subscription, check_parent, children};
use super::node_config::NodeType;
use super::{Request, errors, node_attr, notify, verb};
use crate::config::NodeCreation;
use crate::module::IqResult;

impl Request<'_> {
    /// XEP-0060 §8.1: instant nodes (no NodeID) and create-and-configure (§8.1.3).
    pub async fn create(&self, el: &Element, payload: &Element) -> IqResult {
        self.may_create()?;
        let name = match el.attr("node").filter(|n| !n.is_empty()) {
            Some(name) => name.to_string(),
            None => crate::random_id(),
        };
        let mut config = self.svc.kind.default_config();
        let form = payload
            .get_child("configure", ns::PUBSUB)
            .and_then(|c| c.get_child("x", ns::DATA_FORMS));
        if let Some(form) = form {
            config = config.apply(form, self.max_items_limit())?;
        }
        let limits = &self.ctx.server.config.pubsub;
        let mut nodes = self.svc.nodes.lock().await;
        if nodes.contains_key(&name) {
            return Err(StanzaError::conflict());
        }
        check_parent(&nodes, &name, &config.collection)?;
        let owned = nodes
            .values()
            .filter(|n| n.affiliation(&self.requester) == Affiliation::Owner)
            .count();
        if owned >= limits.max_nodes_per_user && !self.is_admin() {
            return Err(errors::max_nodes_exceeded());
        }
        if nodes.len() >= limits.max_nodes {
            return Err(errors::max_nodes_exceeded());
        }
        let node = Node::new(name.clone(), config, self.requester.clone());
        match self
            .ctx
            .server
            .store
            .create_pubsub_node(&node.stored(&self.svc.key))
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(StanzaError::conflict()),
            Err(err) => return Err(errors::storage(err)),
        }
        nodes.insert(name.clone(), node);
        if let Some(children) = form.and_then(children_field) {
            self.adopt(&mut nodes, &name, &children).await?;
        }
        Ok(Some(Element::new("pubsub", ns::PUBSUB).with_child(
            Element::new("create", ns::PUBSUB).with_attr("node", name),
        )))
    }

    /// `[pubsub] create` for the service; only its owner creates nodes in a PEP service.
    fn may_create(&self) -> Result<(), StanzaError> {
        let allowed = match &self.svc.kind {
            ServiceKind::Pep(owner) => *owner == self.requester,
            ServiceKind::Domain(_) => match self.ctx.server.config.pubsub.create {
                NodeCreation::Open => true,
                NodeCreation::Local => {
                    self.ctx
                        .server
                        .config
                        .serves(self.requester.domain().as_str())
                        || self.is_admin()
                }
                NodeCreation::Admins => self.is_admin(),
            },
        };
        if allowed {
            Ok(())
        } else {
            Err(StanzaError::forbidden().with_text("You may not create nodes here"))
        }
    }

    /// A `<pubsub xmlns='…pubsub#owner'/>` request.
    pub async fn owner(&self, payload: &Element, kind: IqType) -> IqResult {
        let Some(verb) = verb(payload) else {
            return Err(StanzaError::bad_request());
        };
        match (verb.name(), kind) {
            ("default", IqType::Get) => {
                let form = self.svc.kind.default_config().to_form("form");
                Ok(Some(owner_payload(
                    Element::new("default", ns::PUBSUB_OWNER).with_child(form),
                )))
            }
            ("configure", IqType::Get) => self.get_configuration(verb).await,
            ("configure", IqType::Set) => self.configure(verb).await,
            ("delete", IqType::Set) => self.delete(verb).await,
            ("purge", IqType::Set) => self.purge(verb).await,
            ("subscriptions", IqType::Get) => self.list_subscriptions(verb).await,
            ("subscriptions", IqType::Set) => self.set_subscriptions(verb).await,
            ("affiliations", IqType::Get) => self.list_affiliations(verb).await,
            ("affiliations", IqType::Set) => self.set_affiliations(verb).await,
            _ => Err(StanzaError::feature_not_implemented()
                .with_text(format!("Unsupported pubsub#owner request: {}", verb.name()))),
        }
    }

    /// Whether the requester owns the node (or administers the service).
    fn owns(&self, node: &Node) -> bool {
        self.is_admin() || node.affiliation(&self.requester) == Affiliation::Owner
    }

    /// The named node, which the requester must own.
    fn owned<'n>(
        &self,
        nodes: &'n mut HashMap<String, Node>,
        name: &str,
    ) -> Result<&'n mut Node, StanzaError> {
        let node = nodes
            .get_mut(name)
            .ok_or_else(StanzaError::item_not_found)?;
        if !self.owns(node) {
            return Err(StanzaError::forbidden());
        }
        Ok(node)
    }

    /// XEP-0060 §8.2.1.
    async fn get_configuration(&self, el: &Element) -> IqResult {
        let name = node_attr(el)?;
        let mut nodes = self.svc.nodes.lock().await;
        let mut form = self.owned(&mut nodes, name)?.config.to_form("form");
        if nodes[name].config.node_type == NodeType::Collection {
            let children = children(&nodes, name);
            let children: Vec<&str> = children.iter().map(String::as_str).collect();
            form.append_child(corvid_proto::forms::field(
                "pubsub#children",
                "text-multi",
                Some("The nodes in this collection"),
                &children,
            ));
        }
        let configure = Element::new("configure", ns::PUBSUB_OWNER)
            .with_attr("node", name)
            .with_child(form);
        Ok(Some(owner_payload(configure)))
    }

    /// XEP-0060 §8.2.4, with the notification of §8.2.5.
    async fn configure(&self, el: &Element) -> IqResult {
        let name = node_attr(el)?;
        let form = el
            .get_child("x", ns::DATA_FORMS)
            .ok_or_else(|| StanzaError::bad_request().with_text("No configuration form"))?;
        let mut nodes = self.svc.nodes.lock().await;
        let current = self.owned(&mut nodes, name)?.config.clone();
        if form.attr("type") == Some("cancel") {
            return Ok(None);
        }
        let config = current.apply(form, self.max_items_limit())?;
        if config.node_type != current.node_type {
            return Err(StanzaError::not_acceptable().with_text("A node's type cannot change"));
        }
        check_parent(&nodes, name, &config.collection)?;
        let children = children_field(form);
        if children.as_ref().is_some_and(|c| !c.is_empty())
            && config.node_type != NodeType::Collection
        {
            return Err(StanzaError::not_acceptable().with_text("Only a collection has children"));
        }
        let Some(node) = nodes.get_mut(name) else {
            return Err(StanzaError::item_not_found());
        };
        self.ctx
            .server
            .store
            .set_pubsub_node_config(&self.svc.key, name, &config.serialize())
            .await
            .map_err(errors::storage)?;
        let shrunk = config.max_items < node.config.max_items;
        node.config = config.clone();
        if shrunk {
            self.trim(name, config.max_items).await?;
            node.last = super::node::LastItem::Unknown;
        }
        let subscriptions = node.subscriptions.clone();
        if let Some(children) = children {
            self.adopt(&mut nodes, name, &children).await?;
        }
        drop(nodes);
        if config.notify_config {
            let mut event = Element::new("configuration", ns::PUBSUB_EVENT).with_attr("node", name);
            if config.deliver_payloads {
                event.append_child(config.to_form("result"));
            }
            notify::node_event(self.ctx, self.svc, name, &config, &subscriptions, event).await;
        }
        Ok(None)
    }

    /// Makes `children` (existing nodes) the members of collection `parent` (`""`: the
    /// root); for a collection, the nodes it held and `children` does not name go to the root.
    async fn adopt(
        &self,
        nodes: &mut HashMap<String, Node>,
        parent: &str,
        children: &[String],
    ) -> Result<(), StanzaError> {
        for child in children {
            if !nodes.contains_key(child) {
                return Err(StanzaError::item_not_found().with_text(format!("No node {child}")));
            }
            check_parent(nodes, child, parent)?;
        }
        let mut moves: Vec<(String, String)> = children
            .iter()
            .map(|c| (c.clone(), parent.to_string()))
            .collect();
        if !parent.is_empty() {
            for old in self::children(nodes, parent) {
                if !children.contains(&old) {
                    moves.push((old, String::new()));
                }
            }
        }
        for (child, parent) in moves {
            let Some(node) = nodes.get_mut(&child) else {
                continue;
            };
            let mut config = node.config.clone();
            config.collection = parent;
            self.ctx
                .server
                .store
                .set_pubsub_node_config(&self.svc.key, &child, &config.serialize())
                .await
                .map_err(errors::storage)?;
            node.config = config;
        }
        Ok(())
    }

    /// Removes the items beyond the newest `keep` (a node whose `max_items` went down keeps
    /// no more than it now may).
    async fn trim(&self, name: &str, keep: usize) -> Result<(), StanzaError> {
        let store = &self.ctx.server.store;
        let newest = ItemQuery {
            max: Some(keep),
            ..ItemQuery::default()
        };
        let page = store
            .pubsub_items(&self.svc.key, name, &newest)
            .await
            .map_err(errors::storage)?;
        let Some(last_kept) = page.items.last() else {
            return Ok(());
        };
        let older = ItemQuery {
            after: Some(last_kept.id.clone()),
            ..ItemQuery::default()
        };
        let stale = store
            .pubsub_items(&self.svc.key, name, &older)
            .await
            .map_err(errors::storage)?;
        for item in stale.items {
            store
                .retract_pubsub_item(&self.svc.key, name, &item.id)
                .await
                .map_err(errors::storage)?;
        }
        Ok(())
    }

    /// XEP-0060 §8.4, notifying subscribers (§8.4.2) with the redirect if given.
    async fn delete(&self, el: &Element) -> IqResult {
        let name = node_attr(el)?;
        let mut nodes = self.svc.nodes.lock().await;
        self.owned(&mut nodes, name)?;
        self.ctx
            .server
            .store
            .delete_pubsub_node(&self.svc.key, name)
            .await
            .map_err(errors::storage)?;
        let Some(node) = nodes.remove(name) else {
            return Err(StanzaError::item_not_found());
        };
        // The nodes of a deleted collection go to the root.
        let orphans = children(&nodes, name);
        self.adopt(&mut nodes, "", &orphans).await?;
        drop(nodes);
        if node.config.notify_delete {
            let mut event = Element::new("delete", ns::PUBSUB_EVENT).with_attr("node", name);
            if let Some(uri) = el
                .get_child("redirect", ns::PUBSUB_OWNER)
                .and_then(|r| r.attr("uri"))
            {
                event
                    .append_child(Element::new("redirect", ns::PUBSUB_EVENT).with_attr("uri", uri));
            }
            notify::node_event(
                self.ctx,
                self.svc,
                name,
                &node.config,
                &node.subscriptions,
                event,
            )
            .await;
        }
        Ok(None)
    }

    /// XEP-0060 §8.5.
    async fn purge(&self, el: &Element) -> IqResult {
        let name = node_attr(el)?;
        let mut nodes = self.svc.nodes.lock().await;
        let node = self.owned(&mut nodes, name)?;
        if !node.config.persist_items {
            return Err(errors::unsupported("persistent-items"));
        }
        self.ctx
            .server
            .store
            .purge_pubsub_node(&self.svc.key, name)
            .await
            .map_err(errors::storage)?;
        node.last = super::node::LastItem::Known(None);
        let (config, subscriptions) = (node.config.clone(), node.subscriptions.clone());
        drop(nodes);
        let event = Element::new("purge", ns::PUBSUB_EVENT).with_attr("node", name);
        notify::node_event(self.ctx, self.svc, name, &config, &subscriptions, event).await;
        Ok(None)
    }

    /// XEP-0060 §8.8.1.
    async fn list_subscriptions(&self, el: &Element) -> IqResult {
        let name = node_attr(el)?;
        let mut nodes = self.svc.nodes.lock().await;
        let node = self.owned(&mut nodes, name)?;
        let mut list = Element::new("subscriptions", ns::PUBSUB_OWNER).with_attr("node", name);
        for sub in &node.subscriptions {
            list.append_child(
                Element::new("subscription", ns::PUBSUB_OWNER)
                    .with_attr("jid", sub.jid.as_str())
                    .with_attr("subscription", sub.state.as_str())
                    .with_attr("subid", sub.subid.as_str()),
            );
        }
        Ok(Some(owner_payload(list)))
    }

    /// XEP-0060 §8.8.2: `subscribed` adds a subscription, `none` removes one (or all of
    /// the JID's without a subid).
    async fn set_subscriptions(&self, el: &Element) -> IqResult {
        let name = node_attr(el)?;
        let mut nodes = self.svc.nodes.lock().await;
        let node = self.owned(&mut nodes, name)?;
        for entry in el
            .children()
            .filter(|c| c.is("subscription", ns::PUBSUB_OWNER))
        {
            let jid = entry
                .attr("jid")
                .and_then(|j| Jid::new(j).ok())
                .ok_or_else(StanzaError::jid_malformed)?;
            let subid = entry.attr("subid");
            match entry.attr("subscription") {
                Some("none") => {
                    self.end_subscriptions(node, name, |s| {
                        s.jid == jid && subid.is_none_or(|id| id == s.subid)
                    })
                    .await?;
                }
                Some("subscribed") => {
                    if node.subscriptions_of(&jid).next().is_some() {
                        continue;
                    }
                    let sub = Subscription {
                        jid,
                        subid: crate::random_id(),
                        state: SubState::Subscribed,
                        options: Default::default(),
                    };
                    self.ctx
                        .server
                        .store
                        .set_pubsub_subscription(&self.svc.key, name, &sub.stored())
                        .await
                        .map_err(errors::storage)?;
                    node.subscriptions.push(sub);
                }
                _ => {
                    return Err(StanzaError::bad_request()
                        .with_text("subscription must be none or subscribed"));
                }
            }
        }
        Ok(None)
    }

    /// Removes the subscriptions of node `name` that `which` picks, store first.
    async fn end_subscriptions(
        &self,
        node: &mut Node,
        name: &str,
        which: impl Fn(&Subscription) -> bool,
    ) -> Result<(), StanzaError> {
        let gone: Vec<Subscription> = node
            .subscriptions
            .iter()
            .filter(|s| which(s))
            .cloned()
            .collect();
        for sub in &gone {
            self.ctx
                .server
                .store
                .delete_pubsub_subscription(&self.svc.key, name, sub.jid.as_str(), &sub.subid)
                .await
                .map_err(errors::storage)?;
        }
        node.subscriptions.retain(|s| !gone.contains(s));
        Ok(())
    }

    /// XEP-0060 §8.9.1.
    async fn list_affiliations(&self, el: &Element) -> IqResult {
        let name = node_attr(el)?;
        let mut nodes = self.svc.nodes.lock().await;
        let node = self.owned(&mut nodes, name)?;
        let mut entries: Vec<(&BareJid, &Affiliation)> = node.affiliations.iter().collect();
        entries.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut list = Element::new("affiliations", ns::PUBSUB_OWNER).with_attr("node", name);
        for (jid, affiliation) in entries {
            list.append_child(
                Element::new("affiliation", ns::PUBSUB_OWNER)
                    .with_attr("jid", jid.as_str())
                    .with_attr("affiliation", affiliation.as_str()),
            );
        }
        Ok(Some(owner_payload(list)))
    }

    /// XEP-0060 §8.9.2. An outcast loses its subscriptions (§4.1); a node keeps an owner.
    async fn set_affiliations(&self, el: &Element) -> IqResult {
        let name = node_attr(el)?;
        let mut changes = Vec::new();
        for entry in el
            .children()
            .filter(|c| c.is("affiliation", ns::PUBSUB_OWNER))
        {
            let jid = entry
                .attr("jid")
                .and_then(|j| BareJid::new(j).ok())
                .ok_or_else(StanzaError::jid_malformed)?;
            let affiliation = entry
                .attr("affiliation")
                .and_then(Affiliation::parse)
                .ok_or_else(|| StanzaError::bad_request().with_text("Unknown affiliation"))?;
            if self.svc.kind.pep_owner() == Some(&jid) && affiliation != Affiliation::Owner {
                return Err(StanzaError::not_acceptable()
                    .with_text("The account owner stays the owner of its nodes"));
            }
            changes.push((jid, affiliation));
        }
        let mut nodes = self.svc.nodes.lock().await;
        let node = self.owned(&mut nodes, name)?;
        let mut after = node.affiliations.clone();
        for (jid, affiliation) in &changes {
            match affiliation {
                Affiliation::None => after.remove(jid),
                a => after.insert(jid.clone(), *a),
            };
        }
        if !after.values().any(|a| *a == Affiliation::Owner) {
            return Err(StanzaError::not_acceptable().with_text("A node needs an owner"));
        }
        let store = &self.ctx.server.store;
        for (jid, affiliation) in &changes {
            let stored = (*affiliation != Affiliation::None).then(|| affiliation.as_str());
            store
                .set_pubsub_affiliation(&self.svc.key, name, jid.as_str(), stored)
                .await
                .map_err(errors::storage)?;
            if *affiliation == Affiliation::Outcast {
                self.end_subscriptions(node, name, |s| s.jid.to_bare() == *jid)
                    .await?;
            }
        }
        node.affiliations = after;
        Ok(None)
    }
}

/// The `pubsub#children` a submitted form sets, if it has the field.
fn children_field(form: &Element) -> Option<Vec<String>> {
    form.children()
        .any(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some("pubsub#children"))
        .then(|| {
            corvid_proto::forms::values(form, "pubsub#children")
                .into_iter()
                .filter(|c| !c.is_empty())
                .collect()
        })
}

fn owner_payload(child: Element) -> Element {
    Element::new("pubsub", ns::PUBSUB_OWNER).with_child(child)
}
