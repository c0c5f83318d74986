//! [`LastActivity`] over SQL: the `last_activity` table.

use async_trait::async_trait;
use sqlx::Row;

use super::SqlStore;
use crate::{LastActivity, StoreError};

#[async_trait]
impl LastActivity for SqlStore {
    async fn set_last_logout(
        &self,
        username: &str,
        domain: &str,
        unix_secs: i64,
        status: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO last_activity (domain, username, logout_secs, status)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (domain, username) DO UPDATE SET
                logout_secs = excluded.logout_secs, status = excluded.status",
        )
        .bind(domain)
        .bind(username)
        .bind(unix_secs)
        .bind(status)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_account_write)?;
        Ok(())
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
