//! [`PubSubStore`] over SQL: the `pubsub_nodes`, `pubsub_affiliations`,
//! `pubsub_subscriptions` and `pubsub_items` tables (migration 4).
//!
//! Items are ordered by `seq`, a per-node counter: a publish takes the node's highest `seq`
//! plus one inside its write transaction, so the order is the order of commits. Reading pages
//! and trimming to `max_items` live in `pubsub_items.rs`.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};

use super::locks::{self, Lock};
use super::{Backend, SqlStore, pubsub_items};
use crate::{
    ItemPage, ItemQuery, PubSubStore, StoreError, StoredItem, StoredNode, StoredSubscription,
};

/// Removes a whole service (`$1`), children before their nodes.
pub(super) const DELETE_SERVICE: &[&str] = &[
    "DELETE FROM pubsub_items WHERE service = $1",
    "DELETE FROM pubsub_subscriptions WHERE service = $1",
    "DELETE FROM pubsub_affiliations WHERE service = $1",
    "DELETE FROM pubsub_nodes WHERE service = $1",
];

/// Removes one node (`$1` service, `$2` node), children first.
const DELETE_NODE: &[&str] = &[
    "DELETE FROM pubsub_items WHERE service = $1 AND node = $2",
    "DELETE FROM pubsub_subscriptions WHERE service = $1 AND node = $2",
    "DELETE FROM pubsub_affiliations WHERE service = $1 AND node = $2",
    "DELETE FROM pubsub_nodes WHERE service = $1 AND node = $2",
];

#[async_trait]
impl PubSubStore for SqlStore {
    async fn pubsub_nodes(&self, service: &str) -> Result<Vec<StoredNode>, StoreError> {
        // One snapshot for the three reads, so a node and its members agree.
        let mut tx = self.begin_read().await?;
        let rows =
            sqlx::query("SELECT node, config FROM pubsub_nodes WHERE service = $1 ORDER BY node")
                .bind(service)
                .fetch_all(&mut *tx)
                .await?;
        let mut nodes = Vec::with_capacity(rows.len());
        let mut index = HashMap::new();
        for row in &rows {
            let node: String = row.try_get("node")?;
            index.insert(node.clone(), nodes.len());
            nodes.push(StoredNode {
                service: service.to_owned(),
                node,
                config: row.try_get("config")?,
                affiliations: Vec::new(),
                subscriptions: Vec::new(),
            });
        }
        let rows = sqlx::query(
            "SELECT node, jid, affiliation FROM pubsub_affiliations WHERE service = $1
             ORDER BY node, jid",
        )
        .bind(service)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let node: String = row.try_get("node")?;
            if let Some(&i) = index.get(&node) {
                nodes[i]
                    .affiliations
                    .push((row.try_get("jid")?, row.try_get("affiliation")?));
            }
        }
        let rows = sqlx::query(
            "SELECT node, jid, subid, state, options FROM pubsub_subscriptions WHERE service = $1
             ORDER BY node, jid, subid",
        )
        .bind(service)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let node: String = row.try_get("node")?;
            if let Some(&i) = index.get(&node) {
                nodes[i].subscriptions.push(StoredSubscription {
                    jid: row.try_get("jid")?,
                    subid: row.try_get("subid")?,
                    state: row.try_get("state")?,
                    options: row.try_get("options")?,
                });
            }
        }
        tx.commit().await?;
        Ok(nodes)
    }

    async fn create_pubsub_node(&self, node: &StoredNode) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO pubsub_nodes (service, node, config) VALUES ($1, $2, $3)")
            .bind(&node.service)
            .bind(&node.node)
            .bind(&node.config)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_insert)?;
        for (jid, affiliation) in &node.affiliations {
            sqlx::query(
                "INSERT INTO pubsub_affiliations (service, node, jid, affiliation)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&node.service)
            .bind(&node.node)
            .bind(jid)
            .bind(affiliation)
            .execute(&mut *tx)
            .await?;
        }
        for subscription in &node.subscriptions {
            upsert_subscription(&mut tx, &node.service, &node.node, subscription).await?;
        }
        tx.commit().await?;
        self.pubsub_changed(&node.service);
        Ok(())
    }

    async fn set_pubsub_node_config(
        &self,
        service: &str,
        node: &str,
        config: &str,
    ) -> Result<(), StoreError> {
        let updated =
            sqlx::query("UPDATE pubsub_nodes SET config = $1 WHERE service = $2 AND node = $3")
                .bind(config)
                .bind(service)
                .bind(node)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        self.pubsub_changed(service);
        Ok(())
    }

    async fn delete_pubsub_node(&self, service: &str, node: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        locks::node(&mut tx, self.backend, Lock::Delete, service, node).await?;
        for statement in DELETE_NODE {
            sqlx::query(*statement)
                .bind(service)
                .bind(node)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.pubsub_changed(service);
        Ok(())
    }

    async fn set_pubsub_affiliation(
        &self,
        service: &str,
        node: &str,
        jid: &str,
        affiliation: Option<&str>,
    ) -> Result<(), StoreError> {
        match affiliation {
            // The foreign key refuses an affiliation with a node that does not exist.
            Some(affiliation) => sqlx::query(
                "INSERT INTO pubsub_affiliations (service, node, jid, affiliation)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (service, node, jid) DO UPDATE SET affiliation = excluded.affiliation",
            )
            .bind(service)
            .bind(node)
            .bind(jid)
            .bind(affiliation)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_parent_write)?,
            None => {
                sqlx::query(
                    "DELETE FROM pubsub_affiliations WHERE service = $1 AND node = $2 AND jid = $3",
                )
                .bind(service)
                .bind(node)
                .bind(jid)
                .execute(&self.pool)
                .await?
            }
        };
        self.pubsub_changed(service);
        Ok(())
    }

    async fn set_pubsub_subscription(
        &self,
        service: &str,
        node: &str,
        subscription: &StoredSubscription,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        upsert_subscription(&mut conn, service, node, subscription).await?;
        self.pubsub_changed(service);
        Ok(())
    }

    async fn delete_pubsub_subscription(
        &self,
        service: &str,
        node: &str,
        jid: &str,
        subid: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM pubsub_subscriptions
             WHERE service = $1 AND node = $2 AND jid = $3 AND subid = $4",
        )
        .bind(service)
        .bind(node)
        .bind(jid)
        .bind(subid)
        .execute(&self.pool)
        .await?;
        self.pubsub_changed(service);
        Ok(())
    }

    async fn publish_pubsub_item(
        &self,
        service: &str,
        node: &str,
        item: &StoredItem,
        max_items: Option<usize>,
    ) -> Result<Vec<String>, StoreError> {
        // The write lock (on PostgreSQL, the node's) is held from reading the highest `seq`
        // to the commit, so two publishes to one node cannot take the same number.
        let mut tx = self.begin_write().await?;
        let exists = locks::node(&mut tx, self.backend, Lock::Change, service, node).await?;
        if !exists {
            return Err(StoreError::NotFound); // dropping `tx` rolls back
        }
        let top: i64 = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) AS top FROM pubsub_items WHERE service = $1 AND node = $2",
        )
        .bind(service)
        .bind(node)
        .fetch_one(&mut *tx)
        .await?
        .try_get("top")?;
        let seq = top
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt(format!("pubsub item sequence {top}")))?;
        // XEP-0060 §7.1.2: publishing an existing ItemID overwrites that item; it becomes
        // the newest.
        sqlx::query("DELETE FROM pubsub_items WHERE service = $1 AND node = $2 AND item_id = $3")
            .bind(service)
            .bind(node)
            .bind(&item.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO pubsub_items (service, node, item_id, seq, publisher, payload, published_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(service)
        .bind(node)
        .bind(&item.id)
        .bind(seq)
        .bind(&item.publisher)
        .bind(&item.payload)
        .bind(item.published_at)
        .execute(&mut *tx)
        .await?;
        let evicted = match max_items {
            Some(max_items) => pubsub_items::trim_oldest(&mut tx, service, node, max_items).await?,
            None => Vec::new(),
        };
        tx.commit().await?;
        self.pubsub_changed(service);
        Ok(evicted)
    }

    async fn retract_pubsub_item(
        &self,
        service: &str,
        node: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM pubsub_items WHERE service = $1 AND node = $2 AND item_id = $3",
        )
        .bind(service)
        .bind(node)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.pubsub_changed(service);
        Ok(deleted > 0)
    }

    async fn purge_pubsub_node(&self, service: &str, node: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM pubsub_items WHERE service = $1 AND node = $2")
            .bind(service)
            .bind(node)
            .execute(&self.pool)
            .await?;
        self.pubsub_changed(service);
        Ok(())
    }

    async fn pubsub_items(
        &self,
        service: &str,
        node: &str,
        query: &ItemQuery,
    ) -> Result<ItemPage, StoreError> {
        // One snapshot: the page, its count and its index must describe the same node.
        let mut tx = self.begin_read().await?;
        let page = pubsub_items::read_page(&mut tx, service, node, query).await?;
        tx.commit().await?;
        Ok(page)
    }

    async fn pubsub_item_total(&self, service: &str) -> Result<usize, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM pubsub_items WHERE service = $1")
            .bind(service)
            .fetch_one(&self.pool)
            .await?;
        pubsub_items::count_from(&row)
    }

    async fn delete_pubsub_service(&self, service: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        delete_service(&mut tx, self.backend, service).await?;
        tx.commit().await?;
        self.pubsub_changed(service);
        Ok(())
    }
}

/// Deletes every row of a service on `conn`, inside the caller's transaction (also used by
/// `delete_user` for the account's PEP service).
pub(super) async fn delete_service(
    conn: &mut AnyConnection,
    backend: Backend,
    service: &str,
) -> Result<(), StoreError> {
    locks::service_nodes(&mut *conn, backend, Lock::Delete, service).await?;
    for statement in DELETE_SERVICE {
        sqlx::query(*statement)
            .bind(service)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn upsert_subscription(
    conn: &mut AnyConnection,
    service: &str,
    node: &str,
    subscription: &StoredSubscription,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO pubsub_subscriptions (service, node, jid, subid, state, options)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (service, node, jid, subid)
         DO UPDATE SET state = excluded.state, options = excluded.options",
    )
    .bind(service)
    .bind(node)
    .bind(&subscription.jid)
    .bind(&subscription.subid)
    .bind(&subscription.state)
    .bind(&subscription.options)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::from_parent_write)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new pubsub table must get its DELETE in [`DELETE_SERVICE`].
    #[tokio::test]
    async fn delete_service_clears_every_pubsub_table() {
        let (_db, store) = crate::sql::test_db::test_store().await;
        let tables: Vec<String> = crate::sql::test_db::table_names(&store)
            .await
            .into_iter()
            .filter(|name| name.starts_with("pubsub"))
            .collect();
        assert_eq!(tables.len(), 4);
        for table in tables {
            let statement = format!("DELETE FROM {table} WHERE service = $1");
            assert!(
                DELETE_SERVICE.contains(&statement.as_str()),
                "{table} is not cleared by delete_pubsub_service"
            );
        }
    }
}
