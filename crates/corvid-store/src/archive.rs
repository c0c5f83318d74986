//! Message archives (XEP-0313): one per account (keyed by its bare JID) and one per room
//! that enables archiving (keyed by the room's bare JID).
//!
//! Messages are appended through a group committer: [`Archive::append_archive`] returns
//! once the entry is queued, and [`Archive::archive_sync`] once everything queued before
//! it is durable. The router appends without waiting, so archiving never holds up other
//! stanzas; a session about to acknowledge messages (stream management's `<a/>`, XEP-0198)
//! waits for `archive_sync` first, so what it acknowledges is on disk. One batch is one
//! transaction, one fsync, however many sessions filled it.
//!
//! Archive ids: every archived message has a number, `seq`, from one number line shared by
//! all archives: the time in milliseconds shifted left by [`STAMP_SHIFT`] bits, plus a
//! counter that tells apart the messages of one millisecond ([`ArchiveIds`]). The server
//! takes a number as it gives a message its XEP-0359 stanza-id, and the id is that number in
//! decimal, so an id needs no index to be found, and its stamp is part of it: archive order
//! and time order agree, and a time window is a `seq` range. Queries page by keyset on
//! `seq` (never `OFFSET`), so the last page of a 100,000-message archive costs what the
//! first does.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::StoreError;

/// A message to archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// The archive: an account's or a room's bare JID (normalized).
    pub archive: String,
    /// Its number ([`ArchiveIds::next`]), which is also its XEP-0359 stanza-id
    /// ([`archive_id`]) and its stamp ([`archive_stamp`]). A second entry with the same number is
    /// ignored.
    pub seq: i64,
    /// The other party's bare JID (for a room archive, the room's own JID).
    pub with_bare: String,
    /// The other party's full JID, or the bare one when it has no resource (for a room
    /// archive, the occupant's room JID `room@service/nick`).
    pub with_full: String,
    /// The serialized `<message/>`, as it will be returned (XEP-0297 forwarded).
    pub stanza: String,
}

/// Bits of `seq` below the millisecond: up to 2^20 (about a million) numbers a millisecond.
pub const STAMP_SHIFT: u32 = 20;
/// The latest millisecond a `seq` can hold (about the year 280,000).
const MAX_STAMP_MS: i64 = i64::MAX >> STAMP_SHIFT;

/// The allocator of archive numbers: each call to [`ArchiveIds::next`] returns a number
/// higher than any before it (across restarts too: it starts above the newest number
/// stored), at least the current millisecond's first number. When the clock steps back,
/// or more than 2^20 numbers are taken in a millisecond, numbers run ahead of the clock
/// until it catches up; stamps never decrease.
///
/// Several processes writing one archive (a cluster's nodes) each take numbers of their own
/// slot ([`ArchiveIds::use_slot`]): those equal to the slot modulo [`ARCHIVE_SLOTS`], so two
/// nodes never take the same number, and each still has 2^16 numbers a millisecond.
#[derive(Debug)]
pub struct ArchiveIds {
    last: AtomicI64,
    /// The slot, and the number of slots (1: the whole range is this process's).
    slot: std::sync::atomic::AtomicU64,
}

/// The slots a cluster's nodes share the numbers of each millisecond in.
pub const ARCHIVE_SLOTS: u32 = 16;

impl ArchiveIds {
    /// Numbers above `newest`, the highest one already used.
    pub fn after(newest: i64) -> Self {
        ArchiveIds {
            last: AtomicI64::new(newest),
            slot: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// From now on, only numbers equal to `slot` modulo [`ARCHIVE_SLOTS`]; `None`: any.
    pub fn use_slot(&self, slot: Option<u32>) {
        let packed = match slot {
            Some(slot) => (u64::from(slot % ARCHIVE_SLOTS) << 32) | u64::from(ARCHIVE_SLOTS),
            None => 1,
        };
        self.slot.store(packed, Ordering::Release);
    }

    pub fn next(&self) -> i64 {
        let packed = self.slot.load(Ordering::Acquire);
        let (slot, stride) = ((packed >> 32) as i64, (packed & 0xffff_ffff) as i64);
        let floor = first_archive_seq_at(now_ms());
        // The first number of the slot above `last` and at least `floor`.
        let step = |last: i64| {
            let at_least = last.saturating_add(1).max(floor);
            at_least.saturating_add((slot - at_least).rem_euclid(stride))
        };
        // Never fails: the closure always returns Some.
        let last = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| Some(step(last)))
            .unwrap_or_else(|last| last);
        step(last)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The first number of a millisecond (every message stamped at or after it has this number
/// or a higher one).
pub fn first_archive_seq_at(stamp_ms: i64) -> i64 {
    stamp_ms.clamp(0, MAX_STAMP_MS) << STAMP_SHIFT
}

/// When a message was archived, milliseconds since the Unix epoch.
pub fn archive_stamp(seq: i64) -> i64 {
    seq >> STAMP_SHIFT
}

/// A message's XEP-0359 stanza-id: its number in decimal.
pub fn archive_id(seq: i64) -> String {
    seq.to_string()
}

/// The number an id names; `None` if it is not one of ours (no archive holds it).
pub fn parse_archive_id(id: &str) -> Option<i64> {
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// An archived message, as a query returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivedMessage {
    pub id: String,
    pub stamp_ms: i64,
    pub with_full: String,
    pub stanza: String,
}

/// Whose messages a query matches (XEP-0313 §4.1.1 `with`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum With {
    /// Any resource of this bare JID.
    Bare(String),
    /// This full JID only.
    Full(String),
}

/// What to read from one archive. The filters (`with`, `start_ms`, `end_ms`, `after_id`,
/// `before_id`, `ids`) select a range of messages in archive order; the page is the first
/// `max` of that range (`from_end == false`) or the last `max` (`from_end == true`, XEP-0059
/// `<before/>`: paging backwards). Messages are always returned oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    pub with: Option<With>,
    /// Only messages stamped at or after this instant (milliseconds since the epoch).
    pub start_ms: Option<i64>,
    /// Only messages stamped at or before this instant.
    pub end_ms: Option<i64>,
    /// Only messages archived after the one with this id (XEP-0313 `after-id`, and the
    /// XEP-0059 `<after>` of the page before). [`StoreError::NotFound`] if there is no
    /// message with this id in the archive.
    pub after_id: Option<String>,
    /// Only messages archived before the one with this id (`before-id`, XEP-0059
    /// `<before>id</before>`). [`StoreError::NotFound`] if absent.
    pub before_id: Option<String>,
    /// Only messages with these ids (XEP-0313 `ids`); empty = any. Ids not in the archive
    /// are simply not returned.
    pub ids: Vec<String>,
    /// At most this many messages (the caller caps it).
    pub max: usize,
    /// Take the newest `max` of the range instead of the oldest.
    pub from_end: bool,
}

/// A page of an archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivePage {
    /// Oldest first.
    pub messages: Vec<ArchivedMessage>,
    /// No message of the range lies beyond this page in the paging direction (newer ones
    /// when paging forward, older ones when `from_end`): XEP-0313 `<fin complete='true'/>`.
    pub complete: bool,
}

/// Archiving preferences (XEP-0313 §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivePrefs {
    /// `always`, `never` or `roster`.
    pub default: String,
    /// Bare JIDs always archived.
    pub always: Vec<String>,
    /// Bare JIDs never archived.
    pub never: Vec<String>,
}

#[async_trait]
pub trait Archive: Send + Sync {
    /// A new archive number (see [`ArchiveIds`]), for a stanza-id the server is giving.
    fn next_archive_seq(&self) -> i64;

    /// Queues a message for the group committer; returns once it is queued (waiting for
    /// room when the committer is far behind), before it is durable.
    async fn append_archive(&self, entry: ArchiveEntry) -> Result<(), StoreError>;

    /// Returns once every entry queued before this call is committed (durable), or the
    /// error that failed the batch holding one of them. A failed batch is retried, then
    /// dropped and logged; its error goes to every call that was waiting for it (whose
    /// entries were queued but not yet written when it began), not to later calls.
    async fn archive_sync(&self) -> Result<(), StoreError>;

    /// One page of an archive (see [`ArchiveQuery`]).
    async fn query_archive(
        &self,
        archive: &str,
        query: &ArchiveQuery,
    ) -> Result<ArchivePage, StoreError>;

    /// The oldest and the newest message of an archive (XEP-0313 §5.1 metadata); `None`
    /// when it is empty.
    async fn archive_bounds(
        &self,
        archive: &str,
    ) -> Result<Option<(ArchivedMessage, ArchivedMessage)>, StoreError>;

    /// Removes an archive's messages stamped before `before_ms` (all of them with `None`),
    /// including those queued before the call; returns how many went.
    async fn remove_archive(
        &self,
        archive: &str,
        before_ms: Option<i64>,
    ) -> Result<u64, StoreError>;

    /// Removes the oldest messages beyond the newest `keep`, counting those queued before the
    /// call; returns how many went.
    async fn trim_archive(&self, archive: &str, keep: usize) -> Result<u64, StoreError>;

    /// Removes the messages stamped before `before_ms` from every archive, for a retention
    /// policy run now and then; returns how many went. Deletes in bounded chunks, each its
    /// own transaction, so appends and other writes interleave with a large expiry.
    async fn expire_archives(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// An archive's preferences, `None` if never set.
    async fn archive_prefs(&self, archive: &str) -> Result<Option<ArchivePrefs>, StoreError>;

    async fn set_archive_prefs(
        &self,
        archive: &str,
        prefs: &ArchivePrefs,
    ) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_grow_and_carry_their_millisecond() {
        let ids = ArchiveIds::after(0);
        let before = now_ms();
        let numbers: Vec<i64> = (0..10_000).map(|_| ids.next()).collect();
        let after = now_ms();
        assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]));
        for seq in [numbers[0], numbers[9_999]] {
            assert!((before..=after).contains(&archive_stamp(seq)), "{seq}");
        }
    }

    /// The newest number stored is a day ahead (the clock stepped back): numbers go on above
    /// it, their stamps a day ahead too, never back in time.
    #[test]
    fn numbers_stay_above_the_newest_even_when_the_clock_is_behind() {
        let ahead = first_archive_seq_at(now_ms() + 86_400_000) + 5;
        let ids = ArchiveIds::after(ahead);
        assert_eq!(ids.next(), ahead + 1);
        assert_eq!(ids.next(), ahead + 2);
    }

    /// Two nodes of a cluster, each in its slot, starting from the same newest number: their
    /// numbers never meet, and each node's still grow.
    #[test]
    fn slots_keep_two_nodes_numbers_apart() {
        let newest = first_archive_seq_at(now_ms()) + 3;
        let (a, b) = (ArchiveIds::after(newest), ArchiveIds::after(newest));
        a.use_slot(Some(0));
        b.use_slot(Some(5));
        let from_a: Vec<i64> = (0..5_000).map(|_| a.next()).collect();
        let from_b: Vec<i64> = (0..5_000).map(|_| b.next()).collect();
        for (numbers, slot) in [(&from_a, 0), (&from_b, 5)] {
            assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]));
            assert!(numbers.iter().all(|n| *n > newest));
            assert!(
                numbers
                    .iter()
                    .all(|n| n.rem_euclid(i64::from(ARCHIVE_SLOTS)) == slot)
            );
        }
        let mut all: Vec<i64> = from_a.iter().chain(&from_b).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 10_000);
        b.use_slot(None);
        let (first, second) = (b.next(), b.next());
        assert!(from_b[4_999] < first && first < second);
    }

    #[test]
    fn ids_are_decimal_numbers_and_nothing_else_parses() {
        let seq = first_archive_seq_at(1_700_000_000_123) + 7;
        let id = archive_id(seq);
        assert_eq!(parse_archive_id(&id), Some(seq));
        assert_eq!(archive_stamp(seq), 1_700_000_000_123);
        for other in [
            "",
            "+12",
            "-1",
            "12a",
            "9999999999999999999",
            "a3f1c2d4e5f60718",
        ] {
            assert_eq!(parse_archive_id(other), None, "{other}");
        }
    }
}
