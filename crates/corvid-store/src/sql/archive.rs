//! [`Archive`] over SQL: the `archive_messages` and `archive_prefs` tables (XEP-0313).
//!
//! Appends go through the group committer in `archive_writer.rs`; this file reads and
//! removes. Every page is one range scan of the archive index in `seq` order, never an
//! `OFFSET`: the filters become a `seq` range first (RSM anchors and `after-id`/`before-id`
//! are numbers, checked to be in the archive; a time window's ends are the first numbers of
//! their milliseconds), then the page walks the index from the end it pages from, checking a
//! `with` filter on the index entries. `complete` comes from reading one message more than
//! the page holds.
//! Large removals go in chunks, each its own transaction, so archiving never waits long.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::SqlStore;
use crate::{
    Archive, ArchiveEntry, ArchivePage, ArchivePrefs, ArchiveQuery, ArchivedMessage, StoreError,
    With, archive_id, archive_stamp, first_archive_seq_at, parse_archive_id,
};

/// Messages deleted per transaction by removals, trimming and expiry.
const DELETE_CHUNK: i64 = 5000;

/// A page query: `$1` archive, `seq` strictly between `$2` and `$3`, at most `$4` messages,
/// `$5` the bare `with` JID if the filter names one, `$6` the full one if that is what it
/// names (its messages are among those of the bare JID).
macro_rules! page_sql {
    ($with:literal, $order:literal) => {
        concat!(
            "SELECT seq, with_bare, with_full, stanza FROM archive_messages
             WHERE archive = $1 AND seq > $2 AND seq < $3",
            $with,
            " ORDER BY seq ",
            $order,
            " LIMIT $4"
        )
    };
}

pub(super) const PAGE_ANY_OLDEST_FIRST: &str = page_sql!("", "ASC");
pub(super) const PAGE_ANY_NEWEST_FIRST: &str = page_sql!("", "DESC");
pub(super) const PAGE_BARE_OLDEST_FIRST: &str = page_sql!(" AND with_bare = $5", "ASC");
pub(super) const PAGE_BARE_NEWEST_FIRST: &str = page_sql!(" AND with_bare = $5", "DESC");
pub(super) const PAGE_FULL_OLDEST_FIRST: &str =
    page_sql!(" AND with_bare = $5 AND with_full = $6", "ASC");
pub(super) const PAGE_FULL_NEWEST_FIRST: &str =
    page_sql!(" AND with_bare = $5 AND with_full = $6", "DESC");

/// One message of an archive by its number.
pub(super) const BY_SEQ: &str = "SELECT seq, with_bare, with_full, stanza FROM archive_messages
     WHERE seq = $1 AND archive = $2";

/// One chunk of an archive's messages up to `seq` `$3`, oldest first, at most `$2`.
pub(super) const DELETE_UP_TO_SEQ: &str = "DELETE FROM archive_messages WHERE seq IN (
     SELECT seq FROM archive_messages WHERE archive = $1 AND seq <= $3 ORDER BY seq LIMIT $2)";
/// One chunk of every archive's messages up to `seq` `$2`, oldest first, at most `$1`.
pub(super) const EXPIRE_UP_TO_SEQ: &str = "DELETE FROM archive_messages WHERE seq IN (
     SELECT seq FROM archive_messages WHERE seq <= $2 ORDER BY seq LIMIT $1)";

/// Deletes a whole archive with its preferences, `$1` the archive; every archive table has
/// its statement here (`delete_user` runs them for the account's archive).
pub(super) const DELETE_ARCHIVE: &[&str] = &[
    "DELETE FROM archive_messages WHERE archive = $1",
    "DELETE FROM archive_prefs WHERE archive = $1",
];

/// Deletes an archive and its preferences inside the caller's transaction.
pub(super) async fn delete_archive(
    conn: &mut AnyConnection,
    archive: &str,
) -> Result<(), StoreError> {
    for statement in DELETE_ARCHIVE {
        sqlx::query(*statement)
            .bind(archive)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A message with its place in the archive and its bare `with`, for filtering.
struct Placed {
    seq: i64,
    with_bare: String,
    message: ArchivedMessage,
}

/// The `seq` range a query's filters leave: strictly between the two bounds.
#[derive(Clone, Copy)]
struct SeqRange {
    after: i64,
    before: i64,
}

#[async_trait]
impl Archive for SqlStore {
    fn next_archive_seq(&self) -> i64 {
        self.archive_ids.next()
    }

    async fn append_archive(&self, entry: ArchiveEntry) -> Result<(), StoreError> {
        self.archive.append(entry).await
    }

    async fn archive_sync(&self) -> Result<(), StoreError> {
        self.archive.sync().await
    }

    async fn query_archive(
        &self,
        archive: &str,
        query: &ArchiveQuery,
    ) -> Result<ArchivePage, StoreError> {
        // One read transaction: anchors and page come from the same snapshot.
        let mut tx = self.begin_read().await?;
        let page = read_page(&mut tx, archive, query).await?;
        tx.commit().await?;
        Ok(page)
    }

    async fn archive_bounds(
        &self,
        archive: &str,
    ) -> Result<Option<(ArchivedMessage, ArchivedMessage)>, StoreError> {
        let mut tx = self.begin_read().await?;
        let whole = SeqRange {
            after: i64::MIN,
            before: i64::MAX,
        };
        let oldest = read_range(&mut tx, archive, None, whole, false, 1).await?;
        let newest = read_range(&mut tx, archive, None, whole, true, 1).await?;
        tx.commit().await?;
        Ok(oldest
            .into_iter()
            .next()
            .zip(newest.into_iter().next())
            .map(|(oldest, newest)| (oldest.message, newest.message)))
    }

    async fn remove_archive(
        &self,
        archive: &str,
        before_ms: Option<i64>,
    ) -> Result<u64, StoreError> {
        self.archive.flush().await?;
        match before_ms {
            // Up to the newest message now, not beyond: messages queued after the call stay.
            None => self.delete_all_but_newest(archive, 0).await,
            Some(before_ms) => {
                self.delete_chunks(DELETE_UP_TO_SEQ, Some(archive), last_before(before_ms))
                    .await
            }
        }
    }

    async fn trim_archive(&self, archive: &str, keep: usize) -> Result<u64, StoreError> {
        self.archive.flush().await?;
        self.delete_all_but_newest(archive, keep).await
    }

    async fn expire_archives(&self, before_ms: i64) -> Result<u64, StoreError> {
        let removed = self
            .delete_chunks(EXPIRE_UP_TO_SEQ, None, last_before(before_ms))
            .await?;
        if removed > 0 {
            tracing::info!(removed, before_ms, "expired archived messages");
        }
        Ok(removed)
    }

    async fn archive_prefs(&self, archive: &str) -> Result<Option<ArchivePrefs>, StoreError> {
        let row =
            sqlx::query("SELECT default_mode, always, never FROM archive_prefs WHERE archive = $1")
                .bind(archive)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(ArchivePrefs {
                default: row.try_get("default_mode")?,
                always: split_jids(&row.try_get::<String, _>("always")?),
                never: split_jids(&row.try_get::<String, _>("never")?),
            })
        })
        .transpose()
    }

    async fn set_archive_prefs(
        &self,
        archive: &str,
        prefs: &ArchivePrefs,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO archive_prefs (archive, default_mode, always, never)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (archive) DO UPDATE SET default_mode = excluded.default_mode,
                always = excluded.always, never = excluded.never",
        )
        .bind(archive)
        .bind(&prefs.default)
        .bind(join_jids(&prefs.always))
        .bind(join_jids(&prefs.never))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl SqlStore {
    /// Deletes an archive's messages but the newest `keep`; how many went.
    async fn delete_all_but_newest(&self, archive: &str, keep: usize) -> Result<u64, StoreError> {
        // The newest message to go: the one `keep` places below the newest. A one-off walk of
        // `keep` index entries, not a paging query.
        let newest_to_go = sqlx::query(
            "SELECT seq FROM archive_messages WHERE archive = $1
             ORDER BY seq DESC LIMIT 1 OFFSET $2",
        )
        .bind(archive)
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;
        match newest_to_go {
            Some(row) => {
                let seq: i64 = row.try_get("seq")?;
                self.delete_chunks(DELETE_UP_TO_SEQ, Some(archive), seq)
                    .await
            }
            None => Ok(0),
        }
    }

    /// Runs a chunked delete (`$1` archive if there is one, then the chunk size and the
    /// bound) until a chunk comes back short; how many messages went.
    async fn delete_chunks(
        &self,
        statement: &'static str,
        archive: Option<&str>,
        bound: i64,
    ) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let mut tx = self.begin_write().await?;
            let mut delete = sqlx::query(statement);
            if let Some(archive) = archive {
                delete = delete.bind(archive);
            }
            let deleted = delete
                .bind(DELETE_CHUNK)
                .bind(bound)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            removed += deleted;
            if deleted < DELETE_CHUNK.unsigned_abs() {
                return Ok(removed);
            }
        }
    }
}

/// The highest number a message stamped before `before_ms` can have.
fn last_before(before_ms: i64) -> i64 {
    first_archive_seq_at(before_ms) - 1
}

/// Reads a page as [`Archive::query_archive`] describes it.
async fn read_page(
    conn: &mut AnyConnection,
    archive: &str,
    query: &ArchiveQuery,
) -> Result<ArchivePage, StoreError> {
    let Some(range) = seq_range(&mut *conn, archive, query).await? else {
        return Ok(ArchivePage {
            messages: Vec::new(),
            complete: true,
        });
    };
    // One more than the page holds: whether it exists is `complete`.
    let wanted = query.max.saturating_add(1);
    let mut placed = if query.ids.is_empty() {
        let limit = i64::try_from(wanted).unwrap_or(i64::MAX);
        read_range(
            &mut *conn,
            archive,
            query.with.as_ref(),
            range,
            query.from_end,
            limit,
        )
        .await?
    } else {
        read_ids(&mut *conn, archive, query, range, wanted).await?
    };
    let complete = placed.len() <= query.max;
    placed.truncate(query.max);
    if query.from_end {
        placed.reverse();
    }
    Ok(ArchivePage {
        messages: placed.into_iter().map(|placed| placed.message).collect(),
        complete,
    })
}

/// The `seq` range left by the anchors and the time window; `None` if nothing can match.
/// Unknown anchors are [`StoreError::NotFound`] (XEP-0059 §2.5 `<item-not-found/>`).
async fn seq_range(
    conn: &mut AnyConnection,
    archive: &str,
    query: &ArchiveQuery,
) -> Result<Option<SeqRange>, StoreError> {
    let mut range = SeqRange {
        after: i64::MIN,
        before: i64::MAX,
    };
    if let Some(id) = &query.after_id {
        range.after = range.after.max(seq_of(&mut *conn, archive, id).await?);
    }
    if let Some(id) = &query.before_id {
        range.before = range.before.min(seq_of(&mut *conn, archive, id).await?);
    }
    if let Some(start_ms) = query.start_ms {
        range.after = range.after.max(first_archive_seq_at(start_ms) - 1);
    }
    if let Some(end_ms) = query.end_ms {
        let after_end = first_archive_seq_at(end_ms.saturating_add(1));
        range.before = range.before.min(after_end);
    }
    Ok((range.after < range.before).then_some(range))
}

/// The `seq` of the message with this id; [`StoreError::NotFound`] if the archive has none.
async fn seq_of(conn: &mut AnyConnection, archive: &str, id: &str) -> Result<i64, StoreError> {
    let seq = parse_archive_id(id).ok_or(StoreError::NotFound)?;
    // Only whether it is there: the stanza is not decoded.
    let row = sqlx::query("SELECT seq FROM archive_messages WHERE seq = $1 AND archive = $2")
        .bind(seq)
        .bind(archive)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|_| seq).ok_or(StoreError::NotFound)
}

/// Up to `limit` messages in the range matching `with`, from the oldest end (or the newest,
/// if `newest_first`), in the order read.
async fn read_range(
    conn: &mut AnyConnection,
    archive: &str,
    with: Option<&With>,
    range: SeqRange,
    newest_first: bool,
    limit: i64,
) -> Result<Vec<Placed>, StoreError> {
    let (statement, with_jid) = match (with, newest_first) {
        (None, false) => (PAGE_ANY_OLDEST_FIRST, None),
        (None, true) => (PAGE_ANY_NEWEST_FIRST, None),
        (Some(With::Bare(jid)), false) => (PAGE_BARE_OLDEST_FIRST, Some(jid)),
        (Some(With::Bare(jid)), true) => (PAGE_BARE_NEWEST_FIRST, Some(jid)),
        (Some(With::Full(jid)), false) => (PAGE_FULL_OLDEST_FIRST, Some(jid)),
        (Some(With::Full(jid)), true) => (PAGE_FULL_NEWEST_FIRST, Some(jid)),
    };
    let full = match with {
        Some(With::Full(jid)) => Some(jid),
        _ => None,
    };
    let mut page = sqlx::query(statement)
        .bind(archive)
        .bind(range.after)
        .bind(range.before)
        .bind(limit);
    if let Some(jid) = with_jid {
        // A full JID's bare part: everything before its first `/` (RFC 7622 §3.1).
        page = page.bind(jid.split('/').next().unwrap_or(jid));
    }
    if let Some(jid) = full {
        page = page.bind(jid);
    }
    let rows = page.fetch_all(&mut *conn).await?;
    rows.iter().map(placed_from_row).collect()
}

/// The messages of `query.ids` within the range and the other filters, chosen like
/// [`read_range`] does, at most `wanted`. Ids are looked up one by one by their number: a
/// query names few of them.
async fn read_ids(
    conn: &mut AnyConnection,
    archive: &str,
    query: &ArchiveQuery,
    range: SeqRange,
    wanted: usize,
) -> Result<Vec<Placed>, StoreError> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let seqs = query.ids.iter().filter_map(|id| parse_archive_id(id));
    for seq in seqs.filter(|seq| seen.insert(*seq)) {
        let row = sqlx::query(BY_SEQ)
            .bind(seq)
            .bind(archive)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            let placed = placed_from_row(&row)?;
            if passes_filters(&placed, query, range) {
                found.push(placed);
            }
        }
    }
    if query.from_end {
        found.sort_by_key(|placed| std::cmp::Reverse(placed.seq));
    } else {
        found.sort_by_key(|placed| placed.seq);
    }
    found.truncate(wanted);
    Ok(found)
}

/// Whether a message looked up by id passes the query's other filters (the range holds the
/// anchors and the time window).
fn passes_filters(placed: &Placed, query: &ArchiveQuery, range: SeqRange) -> bool {
    range.after < placed.seq
        && placed.seq < range.before
        && match &query.with {
            None => true,
            Some(With::Bare(jid)) => placed.with_bare == *jid,
            Some(With::Full(jid)) => placed.message.with_full == *jid,
        }
}

fn placed_from_row(row: &AnyRow) -> Result<Placed, StoreError> {
    let seq = row.try_get("seq")?;
    Ok(Placed {
        seq,
        with_bare: row.try_get("with_bare")?,
        message: ArchivedMessage {
            id: archive_id(seq),
            stamp_ms: archive_stamp(seq),
            with_full: row.try_get("with_full")?,
            stanza: row.try_get("stanza")?,
        },
    })
}

/// Bare JIDs one per line. RFC 7622 §3.2-3.3 forbids control characters in every part of
/// a JID, so a line break cannot be part of one; anything holding one is not a JID and is
/// left out rather than split into two.
fn join_jids(jids: &[String]) -> String {
    let mut kept = Vec::with_capacity(jids.len());
    for jid in jids {
        if jid.is_empty() || jid.contains('\n') {
            tracing::warn!(jid, "not a JID, left out of archive preferences");
        } else {
            kept.push(jid.as_str());
        }
    }
    kept.join("\n")
}

fn split_jids(stored: &str) -> Vec<String> {
    stored
        .split('\n')
        .filter(|jid| !jid.is_empty())
        .map(str::to_owned)
        .collect()
}
