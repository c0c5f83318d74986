//! The group committer of message archives (XEP-0313): one task writes every archived
//! message, many at a time.
//!
//! The router archives each message it delivers; one transaction per message would be one
//! fsync per message (SQLite runs `synchronous=FULL`). Instead [`ArchiveWriter::append`]
//! puts the entry on a bounded queue and returns; the writer task takes everything queued by
//! the time it is free (up to [`BATCH`]) and writes it in one transaction, so a burst from a
//! thousand sessions costs a handful of fsyncs. Callers never wait for a commit unless they
//! ask to: [`ArchiveWriter::sync`] is the barrier a session passes before it acknowledges
//! messages (XEP-0198 `<a/>`), returning once everything queued before it is committed.
//!
//! Archive order: each archive numbers its messages (`seq`) with MAX(seq)+1, read inside the
//! writer's transaction. This task is the only writer of new rows, and it writes one batch
//! at a time, so no two messages of an archive get the same number (and were there a second
//! writer, the read happens under the write lock). Deletions take the oldest rows, so numbers
//! keep growing; only an emptied archive starts again at 1, when no old id is left to anchor
//! a page on. A per-archive number rather than one global counter needs no state beyond the
//! table itself, which makes restarts and several processes on one file trivial.
//!
//! Stamps: the writer also keeps `stamp_ms` from decreasing within an archive (a clock
//! stepping back would stamp a later message earlier): a message is stored with the newest
//! stamp already in its archive if its own is older. Archive order and time order then agree,
//! as XEP-0313 §4.1 assumes, and a time window is one contiguous range of `seq`.
//!
//! Failures: a batch that fails is retried a few times (a lock held by another process, a
//! transient I/O error); retrying is harmless, as a message already stored is ignored by its
//! id. If it still fails, the batch is dropped and logged, and every `sync` that was waiting
//! for one of its messages returns the error, so no session acknowledges what was lost.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::{mpsc, watch};

use super::Backend;
use crate::{ArchiveEntry, StoreError};

/// Messages written in one transaction, at most.
const BATCH: usize = 1024;
/// Messages waiting for the writer, at most; appenders wait for room beyond that.
const QUEUE: usize = 8192;
/// Attempts at writing a batch before it is dropped.
const ATTEMPTS: u32 = 4;
/// Pause before the first retry; each further retry waits four times longer (50, 200, 800 ms).
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// Failed batches remembered for `sync` callers still waiting (see [`Progress::failures`]).
const FAILURES_KEPT: usize = 64;

/// A dropped batch: the positions (1-based, in queue order) of its first and last message.
#[derive(Clone, Debug)]
struct Failure {
    first: u64,
    last: u64,
    error: String,
}

/// What the writer has done so far, published after every batch.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    /// Messages taken off the queue and written or dropped.
    processed: u64,
    /// Transactions committed (one per successful batch).
    pub(crate) committed_batches: u64,
    /// The most recent dropped batches. A `sync` only looks at those of its own messages, which
    /// were queued within the last [`QUEUE`] positions plus the appenders waiting for room, so
    /// a short list is enough.
    failures: VecDeque<Failure>,
}

/// The sending side, kept by the store.
#[derive(Clone, Debug)]
pub(crate) struct ArchiveWriter {
    queue: mpsc::Sender<ArchiveEntry>,
    /// Messages queued so far (counted once the queue took them).
    queued: Arc<AtomicU64>,
    progress: watch::Receiver<Progress>,
}

impl ArchiveWriter {
    /// Starts the writer task; it ends when every sender is gone.
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> Self {
        let (queue, mut rx) = mpsc::channel::<ArchiveEntry>(QUEUE);
        let (publish, progress) = watch::channel(Progress::default());
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let outcome = write_with_retries(&pool, backend, &batch).await;
                let written = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                batch.clear();
                publish.send_modify(|progress| {
                    let first = progress.processed + 1;
                    progress.processed += written;
                    match outcome {
                        Ok(()) => progress.committed_batches += 1,
                        Err(error) => {
                            if progress.failures.len() == FAILURES_KEPT {
                                progress.failures.pop_front();
                            }
                            progress.failures.push_back(Failure {
                                first,
                                last: progress.processed,
                                error,
                            });
                        }
                    }
                });
            }
        });
        ArchiveWriter {
            queue,
            queued: Arc::new(AtomicU64::new(0)),
            progress,
        }
    }

    /// Queues an entry, waiting for room if the writer is [`QUEUE`] messages behind.
    pub(crate) async fn append(&self, entry: ArchiveEntry) -> Result<(), StoreError> {
        self.queue.send(entry).await.map_err(|_| writer_gone())?;
        // Counted after the queue took it: a `sync` must never wait for a message that will
        // not come. No await in between, so a cancelled append is either both or neither.
        self.queued.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Waits until every message queued before the call is committed; the error of a dropped
    /// batch that held one of those still uncommitted at the call.
    pub(crate) async fn sync(&self) -> Result<(), StoreError> {
        let (pending_from, target, progress) = self.wait_for_queued().await?;
        let dropped = progress
            .failures
            .iter()
            .find(|failure| failure.last > pending_from && failure.first <= target);
        match dropped {
            Some(failure) => Err(StoreError::Backend(sqlx::Error::Protocol(format!(
                "archiving failed: {}",
                failure.error
            )))),
            None => Ok(()),
        }
    }

    /// Waits until every message queued before the call is written or dropped; for removals,
    /// which must see what was queued before them.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.wait_for_queued().await.map(|_| ())
    }

    /// The progress once every message queued before the call was processed, with the
    /// positions the caller waited for: those after the first number, up to the second.
    async fn wait_for_queued(&self) -> Result<(u64, u64, Progress), StoreError> {
        let mut progress = self.progress.clone();
        // Read before `queued`: the writer may count a message before its appender does, so
        // `processed` can pass `queued` but never lags behind what it was when read.
        let pending_from = progress.borrow().processed;
        let target = self.queued.load(Ordering::Acquire);
        if target <= pending_from {
            return Ok((pending_from, target, Progress::default()));
        }
        // The queue is first in, first out: once `target` messages are processed, so is every
        // message whose append returned before this call.
        let done = progress
            .wait_for(|progress| progress.processed >= target)
            .await
            .map_err(|_| writer_gone())?;
        Ok((pending_from, target, done.clone()))
    }

    /// What the writer has done so far.
    #[cfg(test)]
    pub(crate) fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }
}

/// The writer task is gone (the runtime is shutting down).
fn writer_gone() -> StoreError {
    StoreError::Backend(sqlx::Error::PoolClosed)
}

/// Writes the batch, retrying on failure; the error text of the last attempt if all failed.
async fn write_with_retries(
    pool: &AnyPool,
    backend: Backend,
    batch: &[ArchiveEntry],
) -> Result<(), String> {
    let mut delay = FIRST_RETRY_DELAY;
    for attempt in 1..=ATTEMPTS {
        let error = match write_batch(pool, backend, batch).await {
            Ok(written) => {
                tracing::debug!(messages = batch.len(), written, "archive batch committed");
                return Ok(());
            }
            Err(error) => error,
        };
        let closed = matches!(error, sqlx::Error::PoolClosed);
        if closed || attempt == ATTEMPTS {
            tracing::error!(messages = batch.len(), %error, "archive batch dropped");
            return Err(error.to_string());
        }
        tracing::warn!(messages = batch.len(), attempt, %error, "archive batch failed, retrying");
        tokio::time::sleep(delay).await;
        delay *= 4;
    }
    Err("no attempt made".into()) // unreachable: ATTEMPTS > 0
}

/// The next `seq` and the newest stamp of one archive, as the batch goes.
struct Tail {
    next_seq: i64,
    stamp_ms: i64,
}

/// Rows per INSERT statement: one statement per row would spend more time passing
/// statements to the database than writing; 64 rows are 448 parameters, far below any
/// backend's limit.
const ROWS_PER_INSERT: usize = 64;

/// Writes the batch in one transaction; how many messages were new.
async fn write_batch(
    pool: &AnyPool,
    backend: Backend,
    batch: &[ArchiveEntry],
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin_with(backend.begin_write()).await?;
    // Number and stamp every entry first. An entry already archived (same id) is skipped by
    // the insert and leaves a gap in `seq`, which only needs to grow.
    let mut tails: HashMap<&str, Tail> = HashMap::new();
    let mut placed = Vec::with_capacity(batch.len());
    for entry in batch {
        let tail = match tails.entry(entry.archive.as_str()) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(new) => {
                new.insert(read_tail(&mut tx, &entry.archive).await?)
            }
        };
        tail.stamp_ms = tail.stamp_ms.max(entry.stamp_ms);
        placed.push((entry, tail.next_seq, tail.stamp_ms));
        tail.next_seq = tail.next_seq.saturating_add(1);
    }
    let mut written = 0;
    for rows in placed.chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(insert_statement(rows.len())));
        for (entry, seq, stamp_ms) in rows {
            insert = insert
                .bind(&entry.archive)
                .bind(*seq)
                .bind(&entry.id)
                .bind(*stamp_ms)
                .bind(&entry.with_bare)
                .bind(&entry.with_full)
                .bind(&entry.stanza);
        }
        written += insert.execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(written)
}

/// `INSERT … VALUES ($1, … $7), ($8, … $14) …` for `rows` rows. Both unique keys may
/// conflict: (archive, id) for a message archived twice, which is then ignored; (archive,
/// seq) cannot, this task being the only writer.
fn insert_statement(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO archive_messages (archive, seq, id, stamp_ms, with_bare, with_full, stanza)
         VALUES ",
    );
    for row in 0..rows {
        let first = row * 7 + 1;
        if row > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> = (first..first + 7).map(|n| format!("${n}")).collect();
        sql.push('(');
        sql.push_str(&params.join(", "));
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT DO NOTHING");
    sql
}

/// The archive's next `seq` and newest stamp, from its newest message.
async fn read_tail(conn: &mut AnyConnection, archive: &str) -> Result<Tail, sqlx::Error> {
    let newest = sqlx::query(
        "SELECT seq, stamp_ms FROM archive_messages WHERE archive = $1
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(archive)
    .fetch_optional(&mut *conn)
    .await?;
    match newest {
        Some(row) => Ok(Tail {
            next_seq: row.try_get::<i64, _>("seq")?.saturating_add(1),
            stamp_ms: row.try_get("stamp_ms")?,
        }),
        None => Ok(Tail {
            next_seq: 1,
            stamp_ms: i64::MIN,
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Archive, ArchiveEntry, ArchiveQuery, SqlStore};

    fn entry(archive: &str, id: &str) -> ArchiveEntry {
        ArchiveEntry {
            archive: archive.into(),
            id: id.into(),
            stamp_ms: 1000,
            with_bare: "romeo@montague.example".into(),
            with_full: "romeo@montague.example/phone".into(),
            stanza: format!("<message id='{id}'/>"),
        }
    }

    async fn archived_ids(store: &SqlStore, archive: &str) -> Vec<String> {
        let query = ArchiveQuery {
            max: 100_000,
            ..Default::default()
        };
        let page = store.query_archive(archive, &query).await.unwrap();
        assert!(page.complete);
        page.messages.into_iter().map(|m| m.id).collect()
    }

    /// Many sessions archiving at once: after a sync every message is there, in the order
    /// its session sent it, and the writer needed far fewer transactions than messages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_all_durable_after_sync_and_share_transactions() {
        const TASKS: usize = 50;
        const EACH: usize = 200;
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_in_dir(dir.path()).await.unwrap();
        let before = store.archive.progress().committed_batches;
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                // Five archives shared by ten sessions each.
                let archive = format!("user{}@example.org", task % 5);
                for n in 0..EACH {
                    store
                        .append_archive(entry(&archive, &format!("t{task}-{n}")))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        store.archive_sync().await.unwrap();
        let batches = store.archive.progress().committed_batches - before;

        // Read back through a second store on the same file: what is on disk, not in memory.
        let reader = SqlStore::open_in_dir(dir.path()).await.unwrap();
        let mut total = 0;
        for archive in 0..5 {
            let ids = archived_ids(&reader, &format!("user{archive}@example.org")).await;
            total += ids.len();
            for task in (archive..TASKS).step_by(5) {
                let own: Vec<&String> = ids
                    .iter()
                    .filter(|id| id.starts_with(&format!("t{task}-")))
                    .collect();
                let expected: Vec<String> = (0..EACH).map(|n| format!("t{task}-{n}")).collect();
                assert_eq!(own, expected.iter().collect::<Vec<_>>(), "task {task}");
            }
        }
        assert_eq!(total, TASKS * EACH);
        assert!(
            batches < u64::try_from(TASKS * EACH).unwrap() / 2,
            "{batches} transactions for {} messages",
            TASKS * EACH
        );
    }

    /// The barrier holds for each caller while others keep appending: once a session's sync
    /// returns, its message is readable by anyone, whatever else is still queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_sync_covers_its_own_callers_messages_amid_other_appends() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_in_dir(dir.path()).await.unwrap();
        let mut tasks = Vec::new();
        for task in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let archive = format!("user{task}@example.org");
                for round in 0..20 {
                    let id = format!("r{round}");
                    store.append_archive(entry(&archive, &id)).await.unwrap();
                    store.archive_sync().await.unwrap();
                    let query = ArchiveQuery {
                        ids: vec![id.clone()],
                        max: 1,
                        ..Default::default()
                    };
                    let page = store.query_archive(&archive, &query).await.unwrap();
                    assert_eq!(page.messages.len(), 1, "{archive} {id} not committed");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    #[tokio::test]
    async fn sync_with_nothing_queued_returns_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_in_dir(dir.path()).await.unwrap();
        store.archive_sync().await.unwrap();
        store
            .append_archive(entry("a@example.org", "1"))
            .await
            .unwrap();
        store.archive_sync().await.unwrap();
        store.archive_sync().await.unwrap();
        assert_eq!(archived_ids(&store, "a@example.org").await, ["1"]);
    }

    /// A batch that cannot be written is not silently dropped: the sync waiting for it fails.
    /// Once the database is writable again, new messages are archived and synced as before.
    #[tokio::test]
    async fn a_batch_that_cannot_be_written_fails_the_sync_waiting_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_in_dir(dir.path()).await.unwrap();
        sqlx::query("ALTER TABLE archive_messages RENAME TO archive_messages_away")
            .execute(&store.pool)
            .await
            .unwrap();
        store
            .append_archive(entry("a@example.org", "lost"))
            .await
            .unwrap();
        let failed = store.archive_sync().await;
        assert!(failed.is_err(), "{failed:?}");

        sqlx::query("ALTER TABLE archive_messages_away RENAME TO archive_messages")
            .execute(&store.pool)
            .await
            .unwrap();
        store
            .append_archive(entry("a@example.org", "kept"))
            .await
            .unwrap();
        store.archive_sync().await.unwrap();
        assert_eq!(archived_ids(&store, "a@example.org").await, ["kept"]);
    }
}
