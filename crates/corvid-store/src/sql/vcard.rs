//! [`VCards`] over SQL: the `vcards` table.

use async_trait::async_trait;
use sqlx::Row;

use super::SqlStore;
use crate::{StoreError, VCards};

#[async_trait]
impl VCards for SqlStore {
    async fn vcard(&self, username: &str, domain: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT xml FROM vcards WHERE domain = $1 AND username = $2")
            .bind(domain)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("xml")).transpose()?)
    }

    async fn set_vcard(
        &self,
        username: &str,
        domain: &str,
        xml: &str,
        photo_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        // Marked before the (autocommitted) write and after it: see `AccountIndex`.
        if photo_hash.is_some() {
            self.photo_index.mark(username, domain);
        }
        sqlx::query(
            "INSERT INTO vcards (domain, username, xml, photo_hash) VALUES ($1, $2, $3, $4)
             ON CONFLICT (domain, username) DO UPDATE SET
                xml = excluded.xml, photo_hash = excluded.photo_hash",
        )
        .bind(domain)
        .bind(username)
        .bind(xml)
        .bind(photo_hash)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_account_write)?;
        if photo_hash.is_some() {
            self.photo_index.mark(username, domain);
        }
        self.changed(crate::StoreChange::Photo {
            username: username.to_owned(),
            domain: domain.to_owned(),
        });
        Ok(())
    }

    async fn photo_hash(&self, username: &str, domain: &str) -> Result<Option<String>, StoreError> {
        // Asked at every login; most accounts have no photo.
        let stamp = self.photo_index.stamp(username, domain);
        if !stamp.marked() {
            return Ok(None);
        }
        let row = sqlx::query("SELECT photo_hash FROM vcards WHERE domain = $1 AND username = $2")
            .bind(domain)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        // No row and a row without a photo both mean "no photo".
        let hash = row
            .map(|row| row.try_get::<Option<String>, _>("photo_hash"))
            .transpose()?
            .flatten();
        if hash.is_none() {
            self.photo_index.found_nothing(username, domain, stamp);
        }
        Ok(hash)
    }
}
