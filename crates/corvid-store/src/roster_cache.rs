//! [`RosterCache`]: each account's contacts with a subscription, kept in memory, because
//! every presence broadcast (RFC 6121 §4.2.2, §4.4.2), probe answer (§4.3.2) and directed
//! presence (§4.6) reads them and a roster changes far less often than presence does.
//!
//! Never stale for writes made through the same store: every roster write (and account
//! deletion) invalidates the account's entry after it committed, and a fill that raced with
//! a write is discarded (see [`RosterCache::get_or_load`]). Writes by another process that
//! shares the database (e.g. `corvid user delete` while the server runs) are not seen; the
//! server forgets an account's entry at its first login and its last logout to bound that,
//! and a multi-node deployment will need invalidation over its inter-node channel.
//!
//! Bounded: at most `capacity` accounts, spread over shards with a lock each (no global lock
//! on the presence path). A full shard drops an arbitrary entry: no bookkeeping per read,
//! and a roster dropped too early costs one query to reload.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::account_index::key;
use crate::{RosterItem, StoreError};

/// Shards of the map; each has its own lock.
const SHARDS: usize = 16;

/// Accounts cached by default: enough for every online user of a mid-sized server. An
/// account with 100 contacts costs roughly 20 KiB here.
pub const DEFAULT_CAPACITY: usize = 50_000;

/// An account's contacts whose subscription is not `none`, as
/// [`crate::Rosters::contacts_with_subscription`] returns them.
pub type Contacts = Arc<Vec<RosterItem>>;

#[derive(Default)]
struct Shard {
    entries: HashMap<String, Contacts>,
    /// Bumped by every invalidation: a fill that started before one is dropped.
    generation: u64,
}

pub struct RosterCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
}

impl std::fmt::Debug for RosterCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RosterCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

impl RosterCache {
    /// A cache of at most about `capacity` accounts; 0 disables it.
    pub fn new(capacity: usize) -> Self {
        RosterCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        // The lock guards no invariant a panic could break halfway.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The account's contacts from the cache, or from `load` (then cached). A write that
    /// invalidates this shard while `load` runs may have committed after `load` read, so
    /// the result is then returned but not kept.
    pub async fn get_or_load<F, Fut>(
        &self,
        username: &str,
        domain: &str,
        load: F,
    ) -> Result<Contacts, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<RosterItem>, StoreError>>,
    {
        let key = key(username, domain);
        let generation = {
            let shard = self.shard(&key);
            if let Some(contacts) = shard.entries.get(&key) {
                return Ok(contacts.clone());
            }
            shard.generation
        };
        let contacts = Arc::new(load().await?);
        let mut shard = self.shard(&key);
        if shard.generation == generation && self.per_shard > 0 {
            if shard.entries.len() >= self.per_shard
                && let Some(victim) = shard.entries.keys().next().cloned()
            {
                shard.entries.remove(&victim);
            }
            shard.entries.insert(key, contacts.clone());
        }
        Ok(contacts)
    }

    /// Drops the account's entry; call after every committed (or failed) roster write.
    pub fn invalidate(&self, username: &str, domain: &str) {
        let key = key(username, domain);
        let mut shard = self.shard(&key);
        shard.generation += 1;
        shard.entries.remove(&key);
    }

    /// Number of accounts cached.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).entries.len())
            .sum()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Subscription;

    fn contact(jid: &str) -> RosterItem {
        RosterItem {
            jid: jid.into(),
            subscription: Subscription::Both,
            ..RosterItem::default()
        }
    }

    async fn load(cache: &RosterCache, user: &str, jid: &str) -> Contacts {
        cache
            .get_or_load(user, "d", || async { Ok(vec![contact(jid)]) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn hit_until_invalidated() {
        let cache = RosterCache::new(100);
        assert_eq!(load(&cache, "a", "x@d").await[0].jid, "x@d");
        assert_eq!(
            load(&cache, "a", "y@d").await[0].jid,
            "x@d",
            "served from the cache"
        );
        cache.invalidate("a", "d");
        assert_eq!(
            load(&cache, "a", "y@d").await[0].jid,
            "y@d",
            "reloaded after a write"
        );
    }

    #[tokio::test]
    async fn a_fill_racing_a_write_is_not_kept() {
        let cache = RosterCache::new(100);
        // The write commits and invalidates while the (old) load is in flight.
        let old = cache
            .get_or_load("a", "d", || async {
                cache.invalidate("a", "d");
                Ok(vec![contact("old@d")])
            })
            .await
            .unwrap();
        assert_eq!(old[0].jid, "old@d");
        assert_eq!(load(&cache, "a", "new@d").await[0].jid, "new@d");
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache = RosterCache::new(100);
        let failed = cache
            .get_or_load("a", "d", || async { Err(StoreError::NotFound) })
            .await;
        assert!(failed.is_err());
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn capacity_bounds_the_entries() {
        let cache = RosterCache::new(SHARDS * 2);
        for i in 0..1000 {
            load(&cache, &format!("u{i}"), "x@d").await;
        }
        assert!(cache.len() <= SHARDS * 2, "{} entries", cache.len());
        let off = RosterCache::new(0);
        load(&off, "a", "x@d").await;
        assert!(off.is_empty());
    }
}
