//! [`Blocklists`] over SQL: the `blocklist` table.

use async_trait::async_trait;
use sqlx::Row;

use super::SqlStore;
use super::locks::{self, Lock};
use crate::{Blocklists, StoreError};

#[async_trait]
impl Blocklists for SqlStore {
    async fn blocklist(&self, username: &str, domain: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT jid FROM blocklist WHERE domain = $1 AND username = $2 ORDER BY jid",
        )
        .bind(domain)
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("jid")?)).collect()
    }

    async fn block(&self, username: &str, domain: &str, jids: &[String]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        locks::account(&mut tx, self.backend, Lock::Change, username, domain).await?;
        for jid in jids {
            sqlx::query(
                "INSERT INTO blocklist (domain, username, jid) VALUES ($1, $2, $3)
                 ON CONFLICT (domain, username, jid) DO NOTHING",
            )
            .bind(domain)
            .bind(username)
            .bind(jid)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_account_write)?;
        }
        tx.commit().await?;
        self.changed(crate::StoreChange::Blocklist {
            username: username.to_owned(),
            domain: domain.to_owned(),
        });
        Ok(())
    }

    async fn unblock(
        &self,
        username: &str,
        domain: &str,
        jids: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        locks::account(&mut tx, self.backend, Lock::Change, username, domain).await?;
        for jid in jids {
            sqlx::query("DELETE FROM blocklist WHERE domain = $1 AND username = $2 AND jid = $3")
                .bind(domain)
                .bind(username)
                .bind(jid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.changed(crate::StoreChange::Blocklist {
            username: username.to_owned(),
            domain: domain.to_owned(),
        });
        Ok(())
    }

    async fn unblock_all(&self, username: &str, domain: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM blocklist WHERE domain = $1 AND username = $2")
            .bind(domain)
            .bind(username)
            .execute(&self.pool)
            .await?;
        self.changed(crate::StoreChange::Blocklist {
            username: username.to_owned(),
            domain: domain.to_owned(),
        });
        Ok(())
    }
}
