//! What other processes sharing the database must hear of: writes that the store's
//! in-memory caches and indexes ([`crate::roster_cache::RosterCache`], the offline and photo
//! account indexes) depend on. A cluster's nodes pass them to each other; each node applies
//! the others' with [`crate::SqlStore::apply_change`].

use std::sync::Arc;

/// One write that caches elsewhere must see, told after it committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChange {
    /// The account's roster changed (or the account was deleted).
    Roster { username: String, domain: String },
    /// The account may have offline messages now.
    Offline { username: String, domain: String },
    /// The account's vCard changed: it may have a photo now, or another one.
    Photo { username: String, domain: String },
    /// The account's blocklist changed (XEP-0191); nothing in the store caches it, the
    /// server's blocking module does.
    Blocklist { username: String, domain: String },
    /// A publish-subscribe service's nodes, subscriptions or items changed (`service`: its
    /// key, the service's domain or the PEP account's bare JID); the server's pubsub engine
    /// keeps services in memory.
    PubSub { service: String },
}

/// Told of every [`StoreChange`] made through a store, synchronously: it must not block.
pub type ChangeListener = Arc<dyn Fn(StoreChange) + Send + Sync>;

/// Where a store keeps its listener, shared by its clones.
#[derive(Default)]
pub(crate) struct ListenerSlot(std::sync::OnceLock<ChangeListener>);

impl ListenerSlot {
    pub(crate) fn set(&self, listener: ChangeListener) -> bool {
        self.0.set(listener).is_ok()
    }

    pub(crate) fn tell(&self, change: StoreChange) {
        if let Some(listener) = self.0.get() {
            listener(change);
        }
    }
}

impl std::fmt::Debug for ListenerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "ListenerSlot(set)"
        } else {
            "ListenerSlot(empty)"
        })
    }
}
