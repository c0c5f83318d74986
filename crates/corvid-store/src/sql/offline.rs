//! [`Offline`] over SQL: the `offline_messages` table.

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};

use super::SqlStore;
use super::locks::{self, Lock};
use crate::{Offline, OfflineMessage, StoreError};

#[async_trait]
impl Offline for SqlStore {
    async fn store_offline(
        &self,
        username: &str,
        domain: &str,
        stanza: &str,
        stamp_ms: i64,
        quota: usize,
    ) -> Result<(), StoreError> {
        // The write transaction holds the write lock (on PostgreSQL, the account's) from the
        // count to the commit, so concurrent stores for one account cannot both pass the
        // check at quota - 1.
        let mut tx = self.begin_write().await?;
        locks::account(&mut tx, self.backend, Lock::Change, username, domain).await?;
        let held = count(&mut tx, username, domain).await?;
        if held >= quota {
            return Err(StoreError::QuotaExceeded); // dropping `tx` rolls back
        }
        sqlx::query(
            "INSERT INTO offline_messages (domain, username, stanza, stamp_ms)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(domain)
        .bind(username)
        .bind(stanza)
        .bind(stamp_ms)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_account_write)?;
        // Marked before and after the commit: see `AccountIndex`.
        self.offline_index.mark(username, domain);
        tx.commit().await?;
        self.offline_index.mark(username, domain);
        self.changed(crate::StoreChange::Offline {
            username: username.to_owned(),
            domain: domain.to_owned(),
        });
        Ok(())
    }

    async fn offline_messages(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Vec<OfflineMessage>, StoreError> {
        let stamp = self.offline_index.stamp(username, domain);
        if !stamp.marked() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, stanza, stamp_ms FROM offline_messages
             WHERE domain = $1 AND username = $2 ORDER BY id",
        )
        .bind(domain)
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            self.offline_index.found_nothing(username, domain, stamp);
        }
        rows.iter()
            .map(|row| {
                Ok(OfflineMessage {
                    id: row.try_get("id")?,
                    stanza: row.try_get("stanza")?,
                    stamp_ms: row.try_get("stamp_ms")?,
                })
            })
            .collect()
    }

    async fn delete_offline(
        &self,
        username: &str,
        domain: &str,
        ids: &[i64],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        locks::account(&mut tx, self.backend, Lock::Change, username, domain).await?;
        for id in ids {
            // The owner is part of the condition: an id alone must not reach another account.
            sqlx::query(
                "DELETE FROM offline_messages WHERE domain = $1 AND username = $2 AND id = $3",
            )
            .bind(domain)
            .bind(username)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn count_offline(&self, username: &str, domain: &str) -> Result<usize, StoreError> {
        let mut conn = self.pool.acquire().await?;
        count(&mut conn, username, domain).await
    }
}

async fn count(
    conn: &mut AnyConnection,
    username: &str,
    domain: &str,
) -> Result<usize, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS held FROM offline_messages WHERE domain = $1 AND username = $2",
    )
    .bind(domain)
    .bind(username)
    .fetch_one(&mut *conn)
    .await?;
    let held: i64 = row.try_get("held")?;
    usize::try_from(held).map_err(|_| StoreError::Corrupt(format!("offline message count {held}")))
}
