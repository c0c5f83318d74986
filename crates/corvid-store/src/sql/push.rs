//! [`PushRegistrations`] over SQL: the `push_registrations` table.

use async_trait::async_trait;
use sqlx::Row;

use super::SqlStore;
use crate::{PushRegistration, PushRegistrations, StoreError};

#[async_trait]
impl PushRegistrations for SqlStore {
    async fn push_registrations(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Vec<PushRegistration>, StoreError> {
        let rows = sqlx::query(
            "SELECT service, node, options FROM push_registrations
             WHERE domain = $1 AND username = $2 ORDER BY service, node",
        )
        .bind(domain)
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PushRegistration {
                    service: row.try_get("service")?,
                    node: row.try_get("node")?,
                    options: row.try_get("options")?,
                })
            })
            .collect()
    }

    async fn add_push_registration(
        &self,
        username: &str,
        domain: &str,
        registration: &PushRegistration,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO push_registrations (domain, username, service, node, options)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (domain, username, service, node) DO UPDATE SET options = excluded.options",
        )
        .bind(domain)
        .bind(username)
        .bind(&registration.service)
        .bind(&registration.node)
        .bind(&registration.options)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_account_write)?;
        Ok(())
    }

    async fn remove_push_registrations(
        &self,
        username: &str,
        domain: &str,
        service: &str,
        node: Option<&str>,
    ) -> Result<u64, StoreError> {
        let done = match node {
            Some(node) => {
                sqlx::query(
                    "DELETE FROM push_registrations
                     WHERE domain = $1 AND username = $2 AND service = $3 AND node = $4",
                )
                .bind(domain)
                .bind(username)
                .bind(service)
                .bind(node)
                .execute(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "DELETE FROM push_registrations
                     WHERE domain = $1 AND username = $2 AND service = $3",
                )
                .bind(domain)
                .bind(username)
                .bind(service)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use crate::{PushRegistration, PushRegistrations, SqlStore, StoreError, Users};

    async fn store_with_user() -> (crate::sql::test_db::TestDb, SqlStore) {
        let (db, store) = crate::sql::test_db::test_store().await;
        store
            .create_user("juliet", "x", &crate::sql::test_credentials())
            .await
            .unwrap();
        (db, store)
    }

    fn registration(service: &str, node: &str, options: &str) -> PushRegistration {
        PushRegistration {
            service: service.into(),
            node: node.into(),
            options: options.into(),
        }
    }

    #[tokio::test]
    async fn registrations_are_added_replaced_and_removed_by_node_or_service() {
        let (_dir, store) = store_with_user().await;
        store
            .add_push_registration("juliet", "x", &registration("push.a", "n1", "old"))
            .await
            .unwrap();
        store
            .add_push_registration("juliet", "x", &registration("push.a", "n1", "new"))
            .await
            .unwrap();
        store
            .add_push_registration("juliet", "x", &registration("push.a", "n2", ""))
            .await
            .unwrap();
        store
            .add_push_registration("juliet", "x", &registration("push.b", "n1", ""))
            .await
            .unwrap();
        let all = store.push_registrations("juliet", "x").await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], registration("push.a", "n1", "new"));
        let removed = store
            .remove_push_registrations("juliet", "x", "push.a", Some("n2"))
            .await
            .unwrap();
        assert_eq!(removed, 1);
        let removed = store
            .remove_push_registrations("juliet", "x", "push.a", None)
            .await
            .unwrap();
        assert_eq!(removed, 1);
        let left = store.push_registrations("juliet", "x").await.unwrap();
        assert_eq!(left, vec![registration("push.b", "n1", "")]);
        // They go with the account.
        store.delete_user("juliet", "x").await.unwrap();
        assert!(
            store
                .push_registrations("juliet", "x")
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_missing_account_cannot_register() {
        let (_dir, store) = store_with_user().await;
        let err = store
            .add_push_registration("romeo", "x", &registration("push.a", "n", ""))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
    }
}
