//! The group committer of message archives (XEP-0313): one task writes every archived
//! message, many at a time.
//!
//! The router archives each message it delivers; one transaction per message would be one
//! fsync per message (SQLite runs `synchronous=FULL`). Instead [`ArchiveWriter::append`]
//! puts the entry on a bounded queue and returns; the writer task takes everything queued by
//! the time it is free (up to [`BATCH`]), but no sooner than [`COMMIT_INTERVAL`] after the
//! previous commit began, and writes it in one transaction, so a burst from a thousand
//! sessions costs a handful of fsyncs. Callers never wait for a commit unless they
//! ask to: [`ArchiveWriter::sync`] is the barrier a session passes before it acknowledges
//! messages (XEP-0198 `<a/>`), returning once everything queued before it is committed.
//!
//! Archive order: every message comes with its number, `seq` (see the crate's archive.rs),
//! the table's rowid; numbers are taken in the order messages are routed, so new rows
//! append to the table's B-tree, nearly in order. A message queued twice (the same number)
//! is stored once.
//!
//! Connection: the writer keeps one connection of the pool for itself, with a page cache
//! large enough for the hot parts of the archive indexes ([`WRITER_CACHE_KIB`]): every
//! archived message inserts into each index at a place set by its archive, and with the
//! small cache the other connections keep, those inserts would read pages back from the OS
//! again and again. WAL checkpoints run on the committing connection, so they run here too,
//! less often than SQLite's default so that a page written by many batches is copied once.
//! (That is SQLite's; PostgreSQL's buffers and checkpoints are the server's, shared by every
//! connection, so there the writer's connection is an ordinary one.)
//!
//! Failures: a batch that fails is retried a few times (a lock held by another process, a
//! transient I/O error); retrying is harmless, as a message already stored is ignored by its
//! id. If it still fails, the batch is dropped and logged, and every `sync` that was waiting
//! for one of its messages returns the error, so no session acknowledges what was lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection as _};
use tokio::sync::{mpsc, watch};

use super::Backend;
use crate::{ArchiveEntry, StoreError};

/// Messages written in one transaction, at most. A commit costs an fsync and, above all,
/// writes every index page it touched: each active archive has a page of its own at the end
/// of each per-archive index, so a commit writes about the same whether it holds a thousand
/// messages or ten thousand. Under load the batch size therefore sets the rate; at 10,000
/// messages/s among 2,000 accounts (20,000 rows/s), batches of 4,096 fell behind once the
/// archive outgrew the cache (bench/README.md).
const BATCH: usize = 16384;
/// Messages waiting for the writer, at most (some 700 bytes each); appenders wait for room
/// beyond that.
const QUEUE: usize = 32768;
/// The shortest time between the starts of two commits. Each commit costs an fsync and
/// writes a page of the archive index per archive it touched, whether it holds one message
/// of that archive or ten; committing as soon as the previous commit ends would, under load,
/// make many small commits that cost nearly as much each as a large one. A message waits for
/// its commit at most this much longer (only a stream management ack waits for commits).
const COMMIT_INTERVAL: Duration = Duration::from_millis(50);
/// Attempts at writing a batch before it is dropped.
const ATTEMPTS: u32 = 4;
/// Pause before the first retry; each further retry waits four times longer (50, 200, 800 ms).
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// The writer connection's page cache (see the module notes), KiB.
const WRITER_CACHE_KIB: u32 = 64 * 1024;
/// Pages the WAL may grow to before a commit checkpoints it (SQLite's default is 1000).
const WRITER_CHECKPOINT_PAGES: u32 = 4000;
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
            // Closing the pool waits for every connection, the writer's too: it lets go of its
            // own once the store closes (after writing what was queued, see `SqlStore::close`).
            let mut closing = std::pin::pin!(pool.close_event());
            let mut writer = Writer {
                pool,
                backend,
                conn: None,
                full_insert: insert_statement(backend, ROWS_PER_INSERT).into(),
            };
            let mut last_commit: Option<Instant> = None;
            loop {
                let taken = tokio::select! {
                    taken = rx.recv_many(&mut batch, BATCH) => taken,
                    () = &mut closing => 0,
                };
                if taken == 0 {
                    break;
                }
                // Under load, a commit gathers what came in since the one before began.
                let since = last_commit.map_or(COMMIT_INTERVAL, |at| at.elapsed());
                if since < COMMIT_INTERVAL && batch.len() < BATCH {
                    tokio::time::sleep(COMMIT_INTERVAL - since).await;
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(entry) => batch.push(entry),
                            Err(_) => break,
                        }
                    }
                }
                last_commit = Some(Instant::now());
                let outcome = writer.write_with_retries(&batch).await;
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

/// The writer task's connection.
struct Writer {
    pool: AnyPool,
    backend: Backend,
    /// Taken from the pool at the first batch and kept; closed after a failure.
    conn: Option<PoolConnection<Any>>,
    /// The insert of [`ROWS_PER_INSERT`] rows, which all but a batch's last chunk use.
    full_insert: Arc<str>,
}

/// Rows per INSERT statement: one statement per row would spend more time passing
/// statements to the database than writing; 64 rows are 320 parameters, far below any
/// backend's limit.
const ROWS_PER_INSERT: usize = 64;

impl Writer {
    /// Writes the batch, retrying on failure; the error text of the last attempt if all
    /// failed.
    async fn write_with_retries(&mut self, batch: &[ArchiveEntry]) -> Result<(), String> {
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 1..=ATTEMPTS {
            let error = match self.write_batch(batch).await {
                Ok(written) => {
                    tracing::debug!(messages = batch.len(), written, "archive batch committed");
                    return Ok(());
                }
                Err(error) => error,
            };
            // Start again on a fresh connection.
            self.conn = None;
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

    /// Writes the batch in one transaction; how many messages were new.
    async fn write_batch(&mut self, batch: &[ArchiveEntry]) -> Result<u64, sqlx::Error> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let mut conn = self.pool.acquire().await?;
                // Tuned for the writer alone: closed, not handed back, when it lets go.
                conn.close_on_drop();
                tune(&mut conn, self.backend).await?;
                self.conn.insert(conn)
            }
        };
        let mut tx = conn.begin_with(self.backend.begin_write()).await?;
        let mut written = 0;
        for rows in batch.chunks(ROWS_PER_INSERT) {
            let statement: Arc<str> = if rows.len() == ROWS_PER_INSERT {
                self.full_insert.clone()
            } else {
                insert_statement(self.backend, rows.len()).into()
            };
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(statement));
            for entry in rows {
                insert = insert
                    .bind(entry.seq)
                    .bind(&entry.archive)
                    .bind(&entry.with_bare)
                    .bind(&entry.with_full)
                    .bind(&entry.stanza);
            }
            written += insert.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }
}

/// The writer connection's own settings (see the module notes).
async fn tune(conn: &mut AnyConnection, backend: Backend) -> Result<(), sqlx::Error> {
    match backend {
        Backend::Sqlite => {
            for pragma in [
                format!("PRAGMA cache_size = -{WRITER_CACHE_KIB}"),
                format!("PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}"),
                // A multi-row insert keeps a statement journal; in memory, not a temp file.
                "PRAGMA temp_store = MEMORY".to_string(),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(pragma))
                    .execute(&mut *conn)
                    .await?;
            }
        }
        // The server's caches are shared by every connection: nothing to tune per connection.
        Backend::Postgres => {}
    }
    Ok(())
}

/// The insert of `rows` rows. A row conflicts only with the same message archived before
/// (the same `seq`), which is then kept as it was.
///
/// SQLite's form is `INSERT OR IGNORE … VALUES (?, …), …`: with OR IGNORE no row can make
/// the statement fail halfway, so SQLite keeps no statement journal for it, and anonymous
/// `?` parameters bind by position (numbered `$n` ones are looked up by name, a walk of the
/// statement's parameter list each, which for hundreds of them cost more than the inserts' own
/// B-tree work). PostgreSQL's is `INSERT … VALUES ($1, …), … ON CONFLICT DO NOTHING`.
fn insert_statement(backend: Backend, rows: usize) -> String {
    match backend {
        Backend::Sqlite => {
            let mut sql = String::from(
                "INSERT OR IGNORE INTO archive_messages
                 (seq, archive, with_bare, with_full, stanza) VALUES ",
            );
            for row in 0..rows {
                if row > 0 {
                    sql.push_str(", ");
                }
                sql.push_str("(?, ?, ?, ?, ?)");
            }
            sql
        }
        Backend::Postgres => {
            let mut sql = String::from(
                "INSERT INTO archive_messages (seq, archive, with_bare, with_full, stanza) VALUES ",
            );
            for row in 0..rows {
                if row > 0 {
                    sql.push_str(", ");
                }
                let first = row * 5 + 1;
                let params: Vec<String> = (first..first + 5).map(|n| format!("${n}")).collect();
                sql.push('(');
                sql.push_str(&params.join(", "));
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT DO NOTHING");
            sql
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sql::test_db::test_store;
    use crate::{Archive, ArchiveEntry, ArchiveQuery, SqlStore, archive_id};

    /// A new entry for `archive`, numbered by the store; its id.
    async fn append(store: &SqlStore, archive: &str) -> String {
        let seq = store.next_archive_seq();
        let entry = ArchiveEntry {
            archive: archive.into(),
            seq,
            with_bare: "romeo@montague.example".into(),
            with_full: "romeo@montague.example/phone".into(),
            stanza: format!("<message id='{seq}'/>"),
        };
        store.append_archive(entry).await.unwrap();
        archive_id(seq)
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
        let (db, store) = test_store().await;
        let before = store.archive.progress().committed_batches;
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                // Five archives shared by ten sessions each.
                let archive = format!("user{}@example.org", task % 5);
                let mut own = Vec::with_capacity(EACH);
                for _ in 0..EACH {
                    own.push(append(&store, &archive).await);
                }
                own
            }));
        }
        let mut sent = Vec::new();
        for task in tasks {
            sent.push(task.await.unwrap());
        }
        store.archive_sync().await.unwrap();
        let batches = store.archive.progress().committed_batches - before;

        // Read back through a second store on the same file: what is on disk, not in memory.
        let reader = db.open().await;
        let mut total = 0;
        for archive in 0..5 {
            let ids = archived_ids(&reader, &format!("user{archive}@example.org")).await;
            total += ids.len();
            for task in (archive..TASKS).step_by(5) {
                let own: Vec<&String> = ids.iter().filter(|id| sent[task].contains(id)).collect();
                assert_eq!(own, sent[task].iter().collect::<Vec<_>>(), "task {task}");
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
        let (_db, store) = test_store().await;
        let mut tasks = Vec::new();
        for task in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let archive = format!("user{task}@example.org");
                for _ in 0..20 {
                    let id = append(&store, &archive).await;
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
        let (_db, store) = test_store().await;
        store.archive_sync().await.unwrap();
        let id = append(&store, "a@example.org").await;
        store.archive_sync().await.unwrap();
        store.archive_sync().await.unwrap();
        assert_eq!(archived_ids(&store, "a@example.org").await, [id]);
    }

    /// A batch that cannot be written is not silently dropped: the sync waiting for it fails.
    /// Once the database is writable again, new messages are archived and synced as before.
    #[tokio::test]
    async fn a_batch_that_cannot_be_written_fails_the_sync_waiting_for_it() {
        let (_db, store) = test_store().await;
        sqlx::query("ALTER TABLE archive_messages RENAME TO archive_messages_away")
            .execute(&store.pool)
            .await
            .unwrap();
        append(&store, "a@example.org").await;
        let failed = store.archive_sync().await;
        assert!(failed.is_err(), "{failed:?}");

        sqlx::query("ALTER TABLE archive_messages_away RENAME TO archive_messages")
            .execute(&store.pool)
            .await
            .unwrap();
        let kept = append(&store, "a@example.org").await;
        store.archive_sync().await.unwrap();
        assert_eq!(archived_ids(&store, "a@example.org").await, [kept]);
    }
}
