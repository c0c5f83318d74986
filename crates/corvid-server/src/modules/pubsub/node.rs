//! One pubsub service's state in memory: its nodes with their configuration, affiliations
//! and subscriptions (XEP-0060 §4), loaded from the store at first use and written through
//! on every change. Items stay in the store; only each node's last item is cached, for the
//! notifications PEP sends whenever a contact comes online.

use std::collections::HashMap;

use corvid_proto::{BareJid, Jid};
use corvid_store::{StoredItem, StoredNode, StoredSubscription};
use tokio::sync::Mutex;

use super::node_config::NodeConfig;

/// XEP-0060 §4.1 affiliations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affiliation {
    Owner,
    Publisher,
    PublishOnly,
    Member,
    None,
    Outcast,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Publisher => "publisher",
            Affiliation::PublishOnly => "publish-only",
            Affiliation::Member => "member",
            Affiliation::None => "none",
            Affiliation::Outcast => "outcast",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "owner" => Affiliation::Owner,
            "publisher" => Affiliation::Publisher,
            "publish-only" => Affiliation::PublishOnly,
            "member" => Affiliation::Member,
            "none" => Affiliation::None,
            "outcast" => Affiliation::Outcast,
            _ => return None,
        })
    }

    /// XEP-0060 §4.1 table 4: who may retrieve items whatever the access model says.
    pub fn may_always_retrieve(self) -> bool {
        matches!(
            self,
            Affiliation::Owner | Affiliation::Publisher | Affiliation::Member
        )
    }
}

/// XEP-0060 §4.2 subscription states (the `authorize` model, the only source of `pending`,
/// is not offered, nor required configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubState {
    Subscribed,
}

impl SubState {
    pub fn as_str(self) -> &'static str {
        "subscribed"
    }
}

/// Subscription options (XEP-0060 §6.3, and XEP-0248 §6.1 for collections).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubOptions {
    /// `pubsub#deliver`: notifications wanted at all.
    pub deliver: bool,
    /// `pubsub#subscription_type` `items` (else `nodes`): a collection's subscriber hears
    /// the items published in it.
    pub items: bool,
    /// `pubsub#subscription_depth`: how many levels of a collection it hears (None: all).
    pub depth: Option<u32>,
}

impl Default for SubOptions {
    fn default() -> Self {
        SubOptions {
            deliver: true,
            items: true,
            depth: Some(1),
        }
    }
}

impl SubOptions {
    /// Stored as `key=value` pairs, the defaults left out.
    fn serialize(&self) -> String {
        let mut parts = Vec::new();
        if !self.deliver {
            parts.push("deliver=0".to_string());
        }
        if !self.items {
            parts.push("type=nodes".to_string());
        }
        match self.depth {
            Some(1) => {}
            Some(n) => parts.push(format!("depth={n}")),
            None => parts.push("depth=all".to_string()),
        }
        parts.join(";")
    }

    fn deserialize(text: &str) -> Self {
        let mut options = SubOptions::default();
        for part in text.split(';') {
            match part.split_once('=') {
                Some(("deliver", "0")) => options.deliver = false,
                Some(("type", "nodes")) => options.items = false,
                Some(("depth", "all")) => options.depth = None,
                Some(("depth", n)) => options.depth = n.parse().ok().or(Some(1)),
                _ => {}
            }
        }
        options
    }

    /// Whether an item published `distance` levels below the subscribed collection
    /// reaches this subscriber (0: the node itself).
    pub fn hears_items_at(&self, distance: u32) -> bool {
        self.deliver && (distance == 0 || (self.items && self.depth.is_none_or(|d| distance <= d)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// As the subscriber gave it: bare or full.
    pub jid: Jid,
    pub subid: String,
    pub state: SubState,
    pub options: SubOptions,
}

impl Subscription {
    pub fn stored(&self) -> StoredSubscription {
        StoredSubscription {
            jid: self.jid.to_string(),
            subid: self.subid.clone(),
            state: self.state.as_str().to_string(),
            options: self.options.serialize(),
        }
    }

    fn from_stored(s: &StoredSubscription) -> Option<Self> {
        Some(Subscription {
            jid: Jid::new(&s.jid).ok()?,
            subid: s.subid.clone(),
            state: SubState::Subscribed,
            options: SubOptions::deserialize(&s.options),
        })
    }
}

/// What is cached of a node's newest item: not looked up yet, none, or the item.
#[derive(Clone, Debug, Default)]
pub enum LastItem {
    #[default]
    Unknown,
    Known(Option<StoredItem>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub config: NodeConfig,
    /// By bare JID; `none` is never stored.
    pub affiliations: HashMap<BareJid, Affiliation>,
    pub subscriptions: Vec<Subscription>,
    pub last: LastItem,
}

impl Node {
    pub fn new(name: String, config: NodeConfig, owner: BareJid) -> Self {
        Node {
            name,
            config,
            affiliations: HashMap::from([(owner, Affiliation::Owner)]),
            subscriptions: Vec::new(),
            last: LastItem::Known(None),
        }
    }

    pub fn affiliation(&self, jid: &BareJid) -> Affiliation {
        self.affiliations
            .get(jid)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    pub fn owners(&self) -> impl Iterator<Item = &BareJid> {
        self.affiliations
            .iter()
            .filter(|(_, a)| **a == Affiliation::Owner)
            .map(|(j, _)| j)
    }

    /// The subscriptions of one JID (compared exactly: a bare and a full JID subscribe apart).
    pub fn subscriptions_of<'a>(&'a self, jid: &'a Jid) -> impl Iterator<Item = &'a Subscription> {
        self.subscriptions.iter().filter(move |s| &s.jid == jid)
    }

    /// The stored form of this node.
    pub fn stored(&self, service: &str) -> StoredNode {
        let mut affiliations: Vec<(String, String)> = self
            .affiliations
            .iter()
            .map(|(j, a)| (j.to_string(), a.as_str().to_string()))
            .collect();
        affiliations.sort();
        StoredNode {
            service: service.to_string(),
            node: self.name.clone(),
            config: self.config.serialize(),
            affiliations,
            subscriptions: self
                .subscriptions
                .iter()
                .map(Subscription::stored)
                .collect(),
        }
    }

    pub fn from_stored(stored: &StoredNode, defaults: &NodeConfig, max_items: usize) -> Self {
        Node {
            name: stored.node.clone(),
            config: NodeConfig::deserialize(&stored.config, defaults, max_items),
            affiliations: stored
                .affiliations
                .iter()
                .filter_map(|(j, a)| Some((BareJid::new(j).ok()?, Affiliation::parse(a)?)))
                .filter(|(_, a)| *a != Affiliation::None)
                .collect(),
            subscriptions: stored
                .subscriptions
                .iter()
                .filter_map(Subscription::from_stored)
                .collect(),
            last: LastItem::Unknown,
        }
    }
}

/// Whose service this is: a service domain, or an account's PEP service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    Domain(String),
    Pep(BareJid),
}

impl ServiceKind {
    /// The store's key, and the `from` of everything the service sends.
    pub fn key(&self) -> String {
        match self {
            ServiceKind::Domain(d) => d.clone(),
            ServiceKind::Pep(owner) => owner.to_string(),
        }
    }

    pub fn pep_owner(&self) -> Option<&BareJid> {
        match self {
            ServiceKind::Pep(owner) => Some(owner),
            ServiceKind::Domain(_) => None,
        }
    }

    pub fn default_config(&self) -> NodeConfig {
        match self {
            ServiceKind::Domain(_) => NodeConfig::service_default(),
            ServiceKind::Pep(_) => NodeConfig::pep_default(),
        }
    }
}

/// A service and its nodes. The lock is held across the store write of a change, so the
/// memory and the store change in the same order; it is per service (per account for PEP),
/// never global.
pub struct ServiceState {
    pub kind: ServiceKind,
    pub key: String,
    pub nodes: Mutex<HashMap<String, Node>>,
}

/// How deep collections may nest: a bound on every walk up the tree.
const MAX_DEPTH: usize = 16;

/// The collections above `name`, nearest first.
pub fn ancestors(nodes: &HashMap<String, Node>, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = nodes.get(name).map(|n| n.config.collection.clone());
    while let Some(parent) = current.filter(|p| !p.is_empty()) {
        if out.len() >= MAX_DEPTH || out.contains(&parent) || parent == name {
            break;
        }
        current = nodes.get(&parent).map(|n| n.config.collection.clone());
        out.push(parent);
    }
    out
}

/// The nodes directly in collection `name`, sorted.
pub fn children(nodes: &HashMap<String, Node>, name: &str) -> Vec<String> {
    let mut out: Vec<String> = nodes
        .values()
        .filter(|n| n.config.collection == name)
        .map(|n| n.name.clone())
        .collect();
    out.sort();
    out
}

/// Whether node `name` may belong to `parent` (XEP-0060 §4.3): a collection of this
/// service, neither the node itself nor below it, within the depth bound.
pub fn check_parent(
    nodes: &HashMap<String, Node>,
    name: &str,
    parent: &str,
) -> Result<(), corvid_proto::StanzaError> {
    if parent.is_empty() {
        return Ok(());
    }
    let refuse = |why: &str| corvid_proto::StanzaError::not_acceptable().with_text(why);
    match nodes.get(parent) {
        Some(p) if p.config.node_type == super::node_config::NodeType::Collection => {}
        _ => return Err(refuse("pubsub#collection must name a collection node")),
    }
    let mut above = ancestors(nodes, parent);
    above.insert(0, parent.to_string());
    if above.iter().any(|a| a == name) {
        return Err(refuse("A collection cannot contain itself"));
    }
    if above.len() >= MAX_DEPTH {
        return Err(refuse("Collections nest too deep"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::pubsub::node_config::{NodeConfig, NodeType};

    fn tree(edges: &[(&str, &str, NodeType)]) -> HashMap<String, Node> {
        let owner = BareJid::new("o@example.org").unwrap();
        edges
            .iter()
            .map(|(name, parent, kind)| {
                let mut config = NodeConfig::service_default();
                config.node_type = *kind;
                config.collection = parent.to_string();
                (
                    name.to_string(),
                    Node::new(name.to_string(), config, owner.clone()),
                )
            })
            .collect()
    }

    #[test]
    fn a_collection_cannot_end_up_inside_itself() {
        use NodeType::*;
        let nodes = tree(&[
            ("a", "", Collection),
            ("b", "a", Collection),
            ("c", "b", Leaf),
        ]);
        assert_eq!(ancestors(&nodes, "c"), ["b", "a"]);
        assert_eq!(children(&nodes, "a"), ["b"]);
        assert!(
            check_parent(&nodes, "a", "b").is_err(),
            "a under its own child"
        );
        assert!(check_parent(&nodes, "a", "a").is_err(), "a under itself");
        assert!(
            check_parent(&nodes, "x", "c").is_err(),
            "a leaf is no parent"
        );
        assert!(check_parent(&nodes, "x", "missing").is_err());
        assert!(check_parent(&nodes, "x", "b").is_ok());
    }

    #[test]
    fn subscription_options_read_back_as_stored() {
        for options in [
            SubOptions::default(),
            SubOptions {
                deliver: false,
                items: false,
                depth: None,
            },
            SubOptions {
                depth: Some(3),
                ..SubOptions::default()
            },
        ] {
            assert_eq!(SubOptions::deserialize(&options.serialize()), options);
        }
        assert_eq!(SubOptions::default().serialize(), "");
    }

    #[test]
    fn a_stored_cycle_does_not_loop_forever() {
        use NodeType::*;
        let nodes = tree(&[("a", "b", Collection), ("b", "a", Collection)]);
        assert!(ancestors(&nodes, "a").len() <= MAX_DEPTH);
    }
}
