//! Publish-subscribe storage (XEP-0060), shared by pubsub services (`pubsub.example.org`)
//! and PEP (XEP-0163, one service per account, keyed by the account's bare JID).
//!
//! A *service* is a string key: a service domain, or a bare JID for PEP. Nodes carry an
//! opaque configuration (the server keeps its own serialization); affiliations and
//! subscriptions are rows of their own so that one subscriber joining does not rewrite the
//! node. Items are kept in publication order: each publish gives its item a sequence number
//! higher than any other in the node (republishing an id moves it to the newest place), and
//! pages are read by keyset on that number, so paging a large node costs what a small one does.

use async_trait::async_trait;

use crate::StoreError;

/// One node of a service, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredNode {
    /// The service: a domain (`pubsub.example.org`) or, for PEP, a bare JID.
    pub service: String,
    /// The NodeID.
    pub node: String,
    /// The node's configuration, serialized by the server.
    pub config: String,
    /// (bare JID, affiliation) pairs, sorted by JID; affiliation is `owner`, `publisher`,
    /// `publish-only`, `member` or `outcast`.
    pub affiliations: Vec<(String, String)>,
    /// Subscriptions, sorted by (JID, subid).
    pub subscriptions: Vec<StoredSubscription>,
}

/// One subscription to a node (XEP-0060 §6.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The subscribed JID, bare or full, as the subscriber gave it.
    pub jid: String,
    /// The subscription id (XEP-0060 §6.1.6), unique per (node, JID).
    pub subid: String,
    /// `subscribed`, `pending` or `unconfigured`.
    pub state: String,
    /// The subscription options, serialized by the server (empty for the defaults).
    pub options: String,
}

/// One published item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredItem {
    /// The ItemID.
    pub id: String,
    /// Bare JID of the publisher.
    pub publisher: String,
    /// The item's payload, serialized (empty for an item without payload).
    pub payload: String,
    /// When it was (last) published, in milliseconds since the Unix epoch.
    pub published_at: i64,
}

/// Which items of a node to read. The node's items are ordered newest first: `max` alone
/// gives the `max` most recent (XEP-0060 §6.5.7 `max_items`, and the first page of
/// XEP-0059 result set management).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemQuery {
    /// Only these ItemIDs (in the order of publication, newest first); empty = any.
    pub ids: Vec<String>,
    /// At most this many items.
    pub max: Option<usize>,
    /// Only items older than this ItemID (XEP-0059 `<after/>`: the next page).
    pub after: Option<String>,
    /// Only items newer than this ItemID (XEP-0059 `<before>id</before>`: the previous
    /// page, its items still returned newest first). `Some("")` is `<before/>`: the last
    /// page, i.e. the oldest `max` items.
    pub before: Option<String>,
}

/// A page of items.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemPage {
    /// Newest first.
    pub items: Vec<StoredItem>,
    /// How many items the node holds in all (XEP-0059 `<count/>`).
    pub count: usize,
    /// Position of the first returned item in the whole node, newest = 0 (XEP-0059
    /// `<first index=…/>`); `None` when no item is returned.
    pub first_index: Option<usize>,
}

/// Storage of pubsub and PEP nodes, items, affiliations and subscriptions.
#[async_trait]
pub trait PubSubStore: Send + Sync {
    /// Every node of a service, with affiliations and subscriptions, sorted by NodeID.
    async fn pubsub_nodes(&self, service: &str) -> Result<Vec<StoredNode>, StoreError>;

    /// Creates a node with its configuration, affiliations and subscriptions.
    /// [`StoreError::Conflict`] if the node exists.
    async fn create_pubsub_node(&self, node: &StoredNode) -> Result<(), StoreError>;

    /// Replaces a node's configuration. [`StoreError::NotFound`] if there is no such node.
    async fn set_pubsub_node_config(
        &self,
        service: &str,
        node: &str,
        config: &str,
    ) -> Result<(), StoreError>;

    /// Deletes a node with its items, affiliations and subscriptions; a no-op if absent.
    async fn delete_pubsub_node(&self, service: &str, node: &str) -> Result<(), StoreError>;

    /// Sets (`Some`) or removes (`None`) one JID's affiliation with a node.
    async fn set_pubsub_affiliation(
        &self,
        service: &str,
        node: &str,
        jid: &str,
        affiliation: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Creates or replaces the subscription (`jid`, `subid`) of a node.
    async fn set_pubsub_subscription(
        &self,
        service: &str,
        node: &str,
        subscription: &StoredSubscription,
    ) -> Result<(), StoreError>;

    /// Removes one subscription; a no-op if absent.
    async fn delete_pubsub_subscription(
        &self,
        service: &str,
        node: &str,
        jid: &str,
        subid: &str,
    ) -> Result<(), StoreError>;

    /// Stores an item as the node's newest, replacing any item of the same id, then removes
    /// the oldest items beyond `max_items` (`None`: no limit). Returns the ids removed.
    /// [`StoreError::NotFound`] if there is no such node.
    async fn publish_pubsub_item(
        &self,
        service: &str,
        node: &str,
        item: &StoredItem,
        max_items: Option<usize>,
    ) -> Result<Vec<String>, StoreError>;

    /// Removes one item; whether it existed.
    async fn retract_pubsub_item(
        &self,
        service: &str,
        node: &str,
        id: &str,
    ) -> Result<bool, StoreError>;

    /// Removes every item of a node.
    async fn purge_pubsub_node(&self, service: &str, node: &str) -> Result<(), StoreError>;

    /// Reads items of a node. [`StoreError::NotFound`] if `after` or `before` names an
    /// item the node does not hold.
    async fn pubsub_items(
        &self,
        service: &str,
        node: &str,
        query: &ItemQuery,
    ) -> Result<ItemPage, StoreError>;

    /// How many items all the nodes of a service hold (the per-account PEP quota).
    async fn pubsub_item_total(&self, service: &str) -> Result<usize, StoreError>;

    /// Deletes a whole service: every node, item, affiliation and subscription (an account's
    /// PEP service when the account is deleted).
    async fn delete_pubsub_service(&self, service: &str) -> Result<(), StoreError>;
}
