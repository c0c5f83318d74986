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
//! Each archive is kept in arrival order: every entry gets a sequence number higher than
//! any before it, and queries page by keyset on that number (never `OFFSET`), so the last
//! page of a 100,000-message archive costs what the first does.

use async_trait::async_trait;

use crate::StoreError;

/// A message to archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// The archive: an account's or a room's bare JID (normalized).
    pub archive: String,
    /// The XEP-0359 stanza-id of the message in this archive; unique per archive (a second
    /// entry with the same id is ignored).
    pub id: String,
    /// When the server got the message, milliseconds since the Unix epoch. Stamps never
    /// decrease along an archive: a message stamped before the newest one already archived
    /// (the clock stepped back) is stored with that newest stamp, so archive order and time
    /// order agree.
    pub stamp_ms: i64,
    /// The other party's bare JID (for a room archive, the room's own JID).
    pub with_bare: String,
    /// The other party's full JID, or the bare one when it has no resource (for a room
    /// archive, the occupant's room JID `room@service/nick`).
    pub with_full: String,
    /// The serialized `<message/>`, as it will be returned (XEP-0297 forwarded).
    pub stanza: String,
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
