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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// As the subscriber gave it: bare or full.
    pub jid: Jid,
    pub subid: String,
    pub state: SubState,
    /// `pubsub#deliver` of the subscription options (XEP-0060 §6.3).
    pub deliver: bool,
}

impl Subscription {
    pub fn stored(&self) -> StoredSubscription {
        StoredSubscription {
            jid: self.jid.to_string(),
            subid: self.subid.clone(),
            state: self.state.as_str().to_string(),
            options: if self.deliver { "" } else { "deliver=0" }.to_string(),
        }
    }

    fn from_stored(s: &StoredSubscription) -> Option<Self> {
        Some(Subscription {
            jid: Jid::new(&s.jid).ok()?,
            subid: s.subid.clone(),
            state: SubState::Subscribed,
            deliver: s.options != "deliver=0",
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
