//! [`LastActivity`] over SQL: the `last_activity` table.
//!
//! Every logout writes a row, so a wave of disconnections (a restart of a network, a load
//! balancer draining) would be one transaction, and one fsync, per session. Writes go
//! through a group committer instead: one task takes every logout queued by the time it is
//! free and writes them in one transaction. A caller still returns only once its row is
//! committed, and learns its own outcome (`NotFound` for an unknown account); a lone
//! logout waits for nothing.

use async_trait::async_trait;
use sqlx::AnyPool;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::{Backend, SqlStore};
use crate::{LastActivity, StoreError};

/// Logouts written in one transaction, at most.
const BATCH: usize = 512;
/// Logouts waiting for the writer, at most; callers wait for room beyond that.
const QUEUE: usize = 4096;

/// Writes one logout, only for an existing account: a row for a missing one would fail the
/// foreign key and with it the whole batch.
macro_rules! upsert_logout {
    ($lock:literal) => {
        concat!(
            "INSERT INTO last_activity (domain, username, logout_secs, status)
             SELECT $1, $2, $3, $4
             WHERE EXISTS (SELECT 1 FROM users WHERE domain = $1 AND username = $2",
            $lock,
            ")
             ON CONFLICT (domain, username) DO UPDATE SET
                logout_secs = excluded.logout_secs, status = excluded.status"
        )
    };
}
const UPSERT_LOGOUT_SQLITE: &str = upsert_logout!("");
/// PostgreSQL checks the account under a lock: an account being deleted is waited for and
/// then found missing, where a plain check would see it, and the insert's foreign key check
/// would then fail the batch (see `locks.rs`).
const UPSERT_LOGOUT_POSTGRES: &str = upsert_logout!(" FOR KEY SHARE");

struct Logout {
    username: String,
    domain: String,
    unix_secs: i64,
    status: String,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The sending side, kept by the store.
#[derive(Clone, Debug)]
pub(crate) struct LogoutWriter {
    queue: mpsc::Sender<Logout>,
}

impl LogoutWriter {
    /// Starts the writer task; it ends when every sender is gone.
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> Self {
        let (queue, mut rx) = mpsc::channel::<Logout>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let outcomes = write_batch(&pool, backend, &batch).await;
                for (logout, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = logout.done.send(outcome);
                }
            }
        });
        LogoutWriter { queue }
    }
}

/// Writes the batch in one transaction; one outcome per logout, in order.
async fn write_batch(
    pool: &AnyPool,
    backend: Backend,
    batch: &[Logout],
) -> Vec<Result<(), StoreError>> {
    let failed_all = |e: sqlx::Error| {
        let message = e.to_string();
        batch
            .iter()
            .map(|_| Err(StoreError::Backend(sqlx::Error::Protocol(message.clone()))))
            .collect()
    };
    let mut tx = match pool.begin_with(backend.begin_write()).await {
        Ok(tx) => tx,
        Err(e) => return failed_all(e),
    };
    let upsert = match backend {
        Backend::Sqlite => UPSERT_LOGOUT_SQLITE,
        Backend::Postgres => UPSERT_LOGOUT_POSTGRES,
    };
    // In account order (a stable sort: an account's later logout still comes last), so two
    // processes' batches lock rows in one order and never wait for each other in a cycle.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by(|&a, &b| {
        (&batch[a].domain, &batch[a].username).cmp(&(&batch[b].domain, &batch[b].username))
    });
    let mut outcomes: Vec<Result<(), StoreError>> = batch.iter().map(|_| Ok(())).collect();
    for index in order {
        let logout = &batch[index];
        let written = sqlx::query(upsert)
            .bind(&logout.domain)
            .bind(&logout.username)
            .bind(logout.unix_secs)
            .bind(&logout.status)
            .execute(&mut *tx)
            .await;
        match written {
            Ok(done) if done.rows_affected() == 0 => outcomes[index] = Err(StoreError::NotFound),
            Ok(_) => {}
            Err(e) => return failed_all(e),
        }
    }
    match tx.commit().await {
        Ok(()) => outcomes,
        Err(e) => failed_all(e),
    }
}

#[async_trait]
impl LastActivity for SqlStore {
    async fn set_last_logout(
        &self,
        username: &str,
        domain: &str,
        unix_secs: i64,
        status: &str,
    ) -> Result<(), StoreError> {
        let (done, outcome) = oneshot::channel();
        let logout = Logout {
            username: username.to_owned(),
            domain: domain.to_owned(),
            unix_secs,
            status: status.to_owned(),
            done,
        };
        let gone = || StoreError::Backend(sqlx::Error::PoolClosed);
        self.logouts.queue.send(logout).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }

    async fn last_logout(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT logout_secs, status FROM last_activity WHERE domain = $1 AND username = $2",
        )
        .bind(domain)
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((row.try_get("logout_secs")?, row.try_get("status")?)))
            .transpose()
    }
}
