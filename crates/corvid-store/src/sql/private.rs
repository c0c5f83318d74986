//! [`PrivateXml`] over SQL: the `private_xml` table.

use async_trait::async_trait;
use sqlx::Row;

use super::SqlStore;
use crate::{PrivateXml, StoreError};

#[async_trait]
impl PrivateXml for SqlStore {
    async fn private_xml(
        &self,
        username: &str,
        domain: &str,
        namespace: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT xml FROM private_xml WHERE domain = $1 AND username = $2 AND namespace = $3",
        )
        .bind(domain)
        .bind(username)
        .bind(namespace)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get("xml")).transpose()?)
    }

    async fn set_private_xml(
        &self,
        username: &str,
        domain: &str,
        namespace: &str,
        xml: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO private_xml (domain, username, namespace, xml) VALUES ($1, $2, $3, $4)
             ON CONFLICT (domain, username, namespace) DO UPDATE SET xml = excluded.xml",
        )
        .bind(domain)
        .bind(username)
        .bind(namespace)
        .bind(xml)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_account_write)?;
        Ok(())
    }
}
