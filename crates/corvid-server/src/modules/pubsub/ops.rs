//! The entity use cases of XEP-0060 §6 (subscribe, unsubscribe, subscription options, own
//! subscriptions and affiliations) and the access checks every read goes through (§4.5,
//! §6.1.3), plus the dispatch of `<pubsub/>` requests to them and to `items.rs`/`owner.rs`.

use corvid_proto::forms;
use corvid_proto::{BareJid, IqType, Jid, StanzaError, ns};
use corvid_store::{PubSubStore, Rosters};
use corvid_xml::Element;

use super::node::{Affiliation, Node, ServiceKind, SubOptions, SubState, Subscription};
use super::node_config::{AccessModel, NodeType, SendLast};
use super::{Outcome, Request, errors, node_attr, verb};
use crate::module::Ctx;

/// What a read or subscription is checked against, copied out of the node so the check
/// (which may read rosters) runs without holding the service.
pub struct Access {
    pub affiliation: Affiliation,
    pub model: AccessModel,
    pub groups: Vec<String>,
    pub owners: Vec<BareJid>,
}

impl Access {
    pub fn of(node: &Node, requester: &BareJid) -> Self {
        Access {
            affiliation: node.affiliation(requester),
            model: node.config.access_model,
            groups: node.config.roster_groups_allowed.clone(),
            owners: node.owners().cloned().collect(),
        }
    }
}

/// XEP-0060 §6.1.3 / §6.5.9: may `requester` subscribe and retrieve items?
pub async fn check_access(
    ctx: &Ctx,
    access: &Access,
    requester: &BareJid,
    admin: bool,
) -> Result<(), StanzaError> {
    if access.affiliation == Affiliation::Outcast {
        return Err(StanzaError::forbidden());
    }
    if admin || access.affiliation.may_always_retrieve() {
        return Ok(());
    }
    match access.model {
        AccessModel::Open => Ok(()),
        AccessModel::Whitelist => Err(errors::closed_node()),
        AccessModel::Presence => {
            for owner in &access.owners {
                if let Some(item) = roster_item(ctx, owner, requester).await?
                    && item.subscription.has_from()
                {
                    return Ok(());
                }
            }
            Err(errors::presence_subscription_required())
        }
        AccessModel::Roster => {
            for owner in &access.owners {
                if let Some(item) = roster_item(ctx, owner, requester).await?
                    && item.in_roster
                    && item.groups.iter().any(|g| access.groups.contains(g))
                {
                    return Ok(());
                }
            }
            Err(errors::not_in_roster_group())
        }
    }
}

/// The local owner's roster item for `contact` (none for a remote owner).
async fn roster_item(
    ctx: &Ctx,
    owner: &BareJid,
    contact: &BareJid,
) -> Result<Option<corvid_store::RosterItem>, StanzaError> {
    if !ctx.server.config.serves(owner.domain().as_str()) {
        return Ok(None);
    }
    let (username, domain) = Ctx::key(owner);
    ctx.server
        .store
        .roster_item(username, domain, contact.as_str())
        .await
        .map_err(errors::storage)
}

impl Request<'_> {
    /// A `<pubsub xmlns='…pubsub'/>` request (XEP-0060 §6, §7, and node creation §8.1).
    pub async fn entity(&self, payload: &Element, kind: IqType) -> Outcome {
        let Some(verb) = verb(payload) else {
            return Err(StanzaError::bad_request()).into();
        };
        match (verb.name(), kind) {
            ("create", IqType::Set) => self.create(verb, payload).await.into(),
            ("publish", IqType::Set) => self.publish(verb, payload).await.into(),
            ("retract", IqType::Set) => self.retract(verb).await.into(),
            ("items", IqType::Get) => self.items(verb, payload).await.into(),
            ("subscribe", IqType::Set) => self.subscribe(verb, payload).await,
            ("unsubscribe", IqType::Set) => self.unsubscribe(verb).await.into(),
            ("options", IqType::Get) => self.options(verb, None).await.into(),
            ("options", IqType::Set) => self.options(verb, Some(payload)).await.into(),
            ("subscriptions", IqType::Get) => self.own_subscriptions(verb).await.into(),
            ("affiliations", IqType::Get) => self.own_affiliations(verb).await.into(),
            ("default", IqType::Get) => Err(errors::unsupported("retrieve-default-sub")).into(),
            (_, _) => Err(StanzaError::feature_not_implemented()
                .with_text(format!("Unsupported pubsub request: {}", verb.name())))
            .into(),
        }
    }

    /// The JID a request names, which must be the requester's own (bare or full).
    fn own_jid(&self, el: &Element) -> Result<Jid, StanzaError> {
        let jid = el
            .attr("jid")
            .and_then(|j| Jid::new(j).ok())
            .ok_or_else(errors::invalid_jid)?;
        if jid.to_bare() != self.requester {
            return Err(errors::invalid_jid());
        }
        Ok(jid)
    }

    /// XEP-0060 §6.1.
    async fn subscribe(&self, el: &Element, payload: &Element) -> Outcome {
        match self.try_subscribe(el, payload).await {
            Ok((reply, then)) => Outcome {
                reply: Ok(Some(reply)),
                then,
            },
            Err(err) => Err(err).into(),
        }
    }

    async fn try_subscribe(
        &self,
        el: &Element,
        payload: &Element,
    ) -> Result<(Element, Vec<Element>), StanzaError> {
        let node_name = node_attr(el)?;
        let jid = self.own_jid(el)?;
        let options = match payload
            .get_child("options", ns::PUBSUB)
            .and_then(|o| o.get_child("x", ns::DATA_FORMS))
        {
            Some(form) => parse_options(form, SubOptions::default())?,
            None => SubOptions::default(),
        };
        let access = {
            let nodes = self.svc.nodes.lock().await;
            let node = nodes
                .get(node_name)
                .ok_or_else(StanzaError::item_not_found)?;
            Access::of(node, &self.requester)
        };
        check_access(self.ctx, &access, &self.requester, self.is_admin()).await?;
        let mut nodes = self.svc.nodes.lock().await;
        let node = nodes
            .get_mut(node_name)
            .ok_or_else(StanzaError::item_not_found)?;
        let existing = node.subscriptions_of(&jid).next().cloned();
        let subscription = match existing {
            Some(sub) => sub,
            None => {
                let sub = Subscription {
                    jid: jid.clone(),
                    subid: crate::random_id(),
                    state: SubState::Subscribed,
                    options,
                };
                self.ctx
                    .server
                    .store
                    .set_pubsub_subscription(&self.svc.key, node_name, &sub.stored())
                    .await
                    .map_err(errors::storage)?;
                node.subscriptions.push(sub.clone());
                sub
            }
        };
        let mut then = Vec::new();
        if node.config.send_last_published_item != SendLast::Never {
            let config = node.config.clone();
            drop(nodes);
            if let Some(item) = self.last_item(node_name).await? {
                let event = super::items::last_item_event(self.svc, node_name, &config, &item);
                then.push(event.with_attr("to", jid.as_str()));
            }
        }
        let reply = Element::new("pubsub", ns::PUBSUB)
            .with_child(subscription_element(node_name, &subscription));
        Ok((reply, then))
    }

    /// XEP-0060 §6.2.
    async fn unsubscribe(&self, el: &Element) -> Result<Option<Element>, StanzaError> {
        let node_name = node_attr(el)?;
        let jid = el
            .attr("jid")
            .and_then(|j| Jid::new(j).ok())
            .ok_or_else(errors::invalid_jid)?;
        let mut nodes = self.svc.nodes.lock().await;
        let node = nodes
            .get_mut(node_name)
            .ok_or_else(StanzaError::item_not_found)?;
        // §6.2.3.3: only the subscriber (or an owner) may end a subscription.
        if jid.to_bare() != self.requester
            && node.affiliation(&self.requester) != Affiliation::Owner
            && !self.is_admin()
        {
            return Err(StanzaError::forbidden());
        }
        let subid = pick_subscription(node, &jid, el.attr("subid"))?;
        self.ctx
            .server
            .store
            .delete_pubsub_subscription(&self.svc.key, node_name, jid.as_str(), &subid)
            .await
            .map_err(errors::storage)?;
        node.subscriptions
            .retain(|s| !(s.jid == jid && s.subid == subid));
        Ok(None)
    }

    /// XEP-0060 §6.3: read (`form` = None) or submit subscription options.
    async fn options(
        &self,
        el: &Element,
        submitted: Option<&Element>,
    ) -> Result<Option<Element>, StanzaError> {
        let node_name = node_attr(el)?;
        let jid = el
            .attr("jid")
            .and_then(|j| Jid::new(j).ok())
            .ok_or_else(errors::invalid_jid)?;
        if jid.to_bare() != self.requester && !self.is_admin() {
            return Err(StanzaError::forbidden());
        }
        let mut nodes = self.svc.nodes.lock().await;
        let node = nodes
            .get_mut(node_name)
            .ok_or_else(StanzaError::item_not_found)?;
        let subid = pick_subscription(node, &jid, el.attr("subid"))?;
        let Some(payload) = submitted else {
            let current = node
                .subscriptions
                .iter()
                .find(|s| s.jid == jid && s.subid == subid)
                .map(|s| s.options)
                .unwrap_or_default();
            let collection = node.config.node_type == NodeType::Collection;
            let options = Element::new("options", ns::PUBSUB)
                .with_attr("node", node_name)
                .with_attr("jid", jid.as_str())
                .with_attr("subid", subid.as_str())
                .with_child(options_form(&current, collection));
            return Ok(Some(Element::new("pubsub", ns::PUBSUB).with_child(options)));
        };
        let form = payload
            .get_child("options", ns::PUBSUB)
            .and_then(|o| o.get_child("x", ns::DATA_FORMS))
            .ok_or_else(StanzaError::bad_request)?;
        let Some(sub) = node
            .subscriptions
            .iter_mut()
            .find(|s| s.jid == jid && s.subid == subid)
        else {
            return Err(errors::not_subscribed());
        };
        let mut changed = sub.clone();
        changed.options = parse_options(form, sub.options)?;
        self.ctx
            .server
            .store
            .set_pubsub_subscription(&self.svc.key, node_name, &changed.stored())
            .await
            .map_err(errors::storage)?;
        *sub = changed;
        Ok(None)
    }

    /// XEP-0060 §5.6: the requester's subscriptions, on one node or all.
    async fn own_subscriptions(&self, el: &Element) -> Result<Option<Element>, StanzaError> {
        self.own_list(el, "subscriptions", |name, node, list| {
            for sub in node
                .subscriptions
                .iter()
                .filter(|s| s.jid.to_bare() == self.requester)
            {
                list.append_child(subscription_element(name, sub));
            }
        })
        .await
    }

    /// XEP-0060 §5.7: the requester's affiliations, on one node or all.
    async fn own_affiliations(&self, el: &Element) -> Result<Option<Element>, StanzaError> {
        self.own_list(el, "affiliations", |name, node, list| {
            let affiliation = node.affiliation(&self.requester);
            if affiliation != Affiliation::None {
                list.append_child(
                    Element::new("affiliation", ns::PUBSUB)
                        .with_attr("node", name)
                        .with_attr("affiliation", affiliation.as_str()),
                );
            }
        })
        .await
    }

    /// `<pubsub><{kind} node?>…</{kind}></pubsub>`, filled by `add` for each node (the one
    /// named, or all in NodeID order).
    async fn own_list(
        &self,
        el: &Element,
        kind: &str,
        add: impl Fn(&str, &Node, &mut Element),
    ) -> Result<Option<Element>, StanzaError> {
        let only = el.attr("node");
        let nodes = self.svc.nodes.lock().await;
        if let Some(name) = only
            && !nodes.contains_key(name)
        {
            return Err(StanzaError::item_not_found());
        }
        let mut list = Element::new(kind, ns::PUBSUB);
        if let Some(name) = only {
            list.set_attr("node", name);
        }
        let mut names: Vec<&String> = nodes.keys().collect();
        names.sort();
        for name in names
            .into_iter()
            .filter(|n| only.is_none_or(|o| o == n.as_str()))
        {
            add(name, &nodes[name], &mut list);
        }
        Ok(Some(Element::new("pubsub", ns::PUBSUB).with_child(list)))
    }

    /// The node's newest item, from the cache or the store.
    pub async fn last_item(
        &self,
        node_name: &str,
    ) -> Result<Option<corvid_store::StoredItem>, StanzaError> {
        super::items::last_item(self.ctx, self.svc, node_name).await
    }
}

/// Which of `jid`'s subscriptions a request with `subid` means (XEP-0060 §6.2.3).
fn pick_subscription(node: &Node, jid: &Jid, subid: Option<&str>) -> Result<String, StanzaError> {
    let subs: Vec<&Subscription> = node.subscriptions_of(jid).collect();
    match (subs.as_slice(), subid) {
        ([], _) => Err(errors::not_subscribed()),
        (subs, Some(id)) => subs
            .iter()
            .find(|s| s.subid == id)
            .map(|s| s.subid.clone())
            .ok_or_else(errors::invalid_subid),
        ([one], None) => Ok(one.subid.clone()),
        (_, None) => Err(errors::subid_required()),
    }
}

pub fn subscription_element(node: &str, sub: &Subscription) -> Element {
    Element::new("subscription", ns::PUBSUB)
        .with_attr("node", node)
        .with_attr("jid", sub.jid.as_str())
        .with_attr("subid", sub.subid.as_str())
        .with_attr("subscription", sub.state.as_str())
}

/// The subscription options form (XEP-0060 §6.3.2): `pubsub#deliver`, and for a collection
/// what of it to hear (XEP-0248 §6.1).
fn options_form(options: &SubOptions, collection: bool) -> Element {
    let mut form = forms::form("form")
        .with_child(forms::form_type_field(ns::PUBSUB_SUBSCRIBE_OPTIONS))
        .with_child(forms::field(
            "pubsub#deliver",
            "boolean",
            Some("Enable delivery?"),
            &[if options.deliver { "1" } else { "0" }],
        ));
    if collection {
        let depth = options.depth.map_or("all".to_string(), |d| d.to_string());
        form.append_child(forms::field(
            "pubsub#subscription_type",
            "list-single",
            Some("What to hear of the collection"),
            &[if options.items { "items" } else { "nodes" }],
        ));
        form.append_child(forms::field(
            "pubsub#subscription_depth",
            "list-single",
            Some("How deep in the collection"),
            &[depth.as_str()],
        ));
    }
    form
}

/// A submitted options form over `base` (§6.3.5: a field or value we do not offer is
/// `bad-request` with `invalid-options`).
fn parse_options(form: &Element, base: SubOptions) -> Result<SubOptions, StanzaError> {
    let invalid =
        || StanzaError::bad_request().with_app(Element::new("invalid-options", ns::PUBSUB_ERRORS));
    let mut options = base;
    for field in form.children().filter(|f| f.is("field", ns::DATA_FORMS)) {
        let Some(var) = field.attr("var") else {
            continue;
        };
        let value = forms::value(form, var).unwrap_or_default();
        match (var, value.as_str()) {
            ("FORM_TYPE", _) => {}
            ("pubsub#deliver", "1" | "true") => options.deliver = true,
            ("pubsub#deliver", "0" | "false") => options.deliver = false,
            ("pubsub#subscription_type", "items") => options.items = true,
            ("pubsub#subscription_type", "nodes") => options.items = false,
            ("pubsub#subscription_depth", "all") => options.depth = None,
            ("pubsub#subscription_depth", depth) => {
                options.depth = Some(depth.parse().ok().filter(|d| *d > 0).ok_or_else(invalid)?)
            }
            _ => return Err(invalid()),
        }
    }
    Ok(options)
}

/// Who may publish, by the node's model (XEP-0060 §4.1 table 4, `pubsub#publish_model`).
pub fn may_publish(node: &Node, publisher: &BareJid, kind: &ServiceKind, admin: bool) -> bool {
    use super::node_config::PublishModel;
    let affiliation = node.affiliation(publisher);
    if affiliation == Affiliation::Outcast {
        return false;
    }
    if admin {
        return true;
    }
    if kind.pep_owner().is_some() {
        // XEP-0163 §4.3: only the account owner publishes to its PEP nodes, unless the
        // owner made someone a publisher.
        return matches!(
            affiliation,
            Affiliation::Owner | Affiliation::Publisher | Affiliation::PublishOnly
        );
    }
    match node.config.publish_model {
        PublishModel::Open => true,
        PublishModel::Publishers => matches!(
            affiliation,
            Affiliation::Owner | Affiliation::Publisher | Affiliation::PublishOnly
        ),
        PublishModel::Subscribers => {
            matches!(
                affiliation,
                Affiliation::Owner | Affiliation::Publisher | Affiliation::PublishOnly
            ) || node
                .subscriptions
                .iter()
                .any(|s| s.jid.to_bare() == *publisher)
        }
    }
}
