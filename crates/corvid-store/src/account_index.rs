//! [`AccountIndex`]: the accounts that may have rows in one table, in memory, so that the
//! questions asked at every login ("any offline messages?", "a vCard photo?") are answered
//! without a query for the many accounts that have nothing stored.
//!
//! It is a superset, never a subset, of the accounts with rows: a writer marks the account
//! before its transaction commits and again after (so a mark always follows the commit), and
//! a reader whose query found nothing unmarks the account only if no writer marked it since
//! the reader looked. An account marked in error costs one query, after which it is
//! unmarked. Loaded once when the store opens; writes by another process are not seen until
//! the next start: only the server writes these tables, and one server owns its database.
//! A cluster sharing one database will have to share the marks too, or turn this off.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

pub(crate) struct AccountIndex {
    /// Account → the number of its latest mark.
    shards: Vec<Mutex<HashMap<String, u64>>>,
    next_mark: std::sync::atomic::AtomicU64,
    hasher: RandomState,
    /// Other processes write the table too (a cluster's nodes): every account may have rows.
    shared: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for AccountIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountIndex").finish_non_exhaustive()
    }
}

/// One string per account; a NUL cannot occur in a JID part (RFC 7622 §3).
pub(crate) fn key(username: &str, domain: &str) -> String {
    let mut key = String::with_capacity(username.len() + domain.len() + 1);
    key.push_str(username);
    key.push('\0');
    key.push_str(domain);
    key
}

/// A reader's view of one account: whether it may have rows, and the mark it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(Option<u64>);

impl Stamp {
    /// Whether the account may have rows (a query is needed).
    pub(crate) fn marked(self) -> bool {
        self.0.is_some()
    }
}

impl AccountIndex {
    pub(crate) fn new(accounts: impl IntoIterator<Item = (String, String)>) -> Self {
        let index = AccountIndex {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            next_mark: std::sync::atomic::AtomicU64::new(1),
            hasher: RandomState::new(),
            shared: std::sync::atomic::AtomicBool::new(false),
        };
        for (username, domain) in accounts {
            index.mark(&username, &domain);
        }
        index
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, u64>> {
        let index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        // The lock guards no invariant a panic could break halfway.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The account may have rows now: call before a write commits, and again after.
    pub(crate) fn mark(&self, username: &str, domain: &str) {
        let key = key(username, domain);
        let mark = self
            .next_mark
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.shard(&key).insert(key, mark);
    }

    /// From now on, every account may have rows: other processes write the table too, and
    /// a mark they tell of could arrive after the question it answers.
    pub(crate) fn share(&self) {
        self.shared
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Look before querying.
    pub(crate) fn stamp(&self, username: &str, domain: &str) -> Stamp {
        if self.shared.load(std::sync::atomic::Ordering::Relaxed) {
            // No mark is 0: `found_nothing` unmarks nothing with this.
            return Stamp(Some(0));
        }
        let key = key(username, domain);
        Stamp(self.shard(&key).get(&key).copied())
    }

    /// The query after `stamp` found no rows: forget the account, unless a writer marked
    /// it since.
    pub(crate) fn found_nothing(&self, username: &str, domain: &str, stamp: Stamp) {
        let key = key(username, domain);
        let mut shard = self.shard(&key);
        if shard.get(&key).copied() == stamp.0 {
            shard.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_accounts_need_a_query() {
        let index = AccountIndex::new([("a".to_string(), "x".to_string())]);
        assert!(index.stamp("a", "x").marked());
        assert!(!index.stamp("b", "x").marked());
        assert!(!index.stamp("a", "y").marked());
        index.mark("b", "x");
        assert!(index.stamp("b", "x").marked());
    }

    #[test]
    fn a_shared_index_asks_for_every_account() {
        let index = AccountIndex::new([]);
        index.share();
        let stamp = index.stamp("a", "x");
        assert!(stamp.marked());
        index.found_nothing("a", "x", stamp);
        assert!(index.stamp("a", "x").marked());
    }

    #[test]
    fn an_empty_result_unmarks_unless_a_writer_came_in_between() {
        let index = AccountIndex::new([]);
        index.mark("a", "x");
        let stamp = index.stamp("a", "x");
        index.found_nothing("a", "x", stamp);
        assert!(!index.stamp("a", "x").marked());

        index.mark("a", "x");
        let stamp = index.stamp("a", "x");
        // A write commits while the reader's query runs: its second mark is newer.
        index.mark("a", "x");
        index.found_nothing("a", "x", stamp);
        assert!(
            index.stamp("a", "x").marked(),
            "the write's mark must survive"
        );
    }
}
