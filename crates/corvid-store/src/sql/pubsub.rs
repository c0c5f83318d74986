//! [`PubSubStore`] over SQL: the `pubsub_nodes`, `pubsub_affiliations`,
//! `pubsub_subscriptions` and `pubsub_items` tables (migration 4).
//!
//! Items are ordered by `seq`, a per-node counter: a publish takes the node's highest `seq`
//! plus one inside its write transaction, so the order is the order of commits. Every page
//! (XEP-0059 result set management over XEP-0060 §6.5 item retrieval) is one range scan of
//! the `(service, node, seq)` index from a keyset bound, never an OFFSET; so is trimming to
//! `max_items` (XEP-0060 §7.1.3 leaves the oldest items to go first).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::SqlStore;
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

/// A page read newest first: items with `$4 < seq < $3`, the `$5` newest of them. Serves
/// `max` alone and XEP-0059 `<after/>`.
const PAGE_NEWEST_FIRST: &str =
    "SELECT item_id, seq, publisher, payload, published_at FROM pubsub_items
     WHERE service = $1 AND node = $2 AND seq < $3 AND seq > $4
     ORDER BY seq DESC LIMIT $5";

/// The same range read from the oldest end: XEP-0059 `<before/>` wants the items just newer
/// than the anchor (or the oldest ones, for an empty `<before/>`).
const PAGE_OLDEST_FIRST: &str =
    "SELECT item_id, seq, publisher, payload, published_at FROM pubsub_items
     WHERE service = $1 AND node = $2 AND seq < $3 AND seq > $4
     ORDER BY seq ASC LIMIT $5";

/// How many items of a node are newer than `seq` (`$3`); with `i64::MIN`, all of them.
const COUNT_NEWER: &str =
    "SELECT COUNT(*) AS n FROM pubsub_items WHERE service = $1 AND node = $2 AND seq > $3";

/// A stored item with its place in the node.
struct Placed {
    seq: i64,
    item: StoredItem,
}

#[async_trait]
impl PubSubStore for SqlStore {
    async fn pubsub_nodes(&self, service: &str) -> Result<Vec<StoredNode>, StoreError> {
        // One snapshot for the three reads, so a node and its members agree.
        let mut tx = self.pool.begin().await?;
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
        Ok(())
    }

    async fn delete_pubsub_node(&self, service: &str, node: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for statement in DELETE_NODE {
            sqlx::query(*statement)
                .bind(service)
                .bind(node)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
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
        Ok(())
    }

    async fn set_pubsub_subscription(
        &self,
        service: &str,
        node: &str,
        subscription: &StoredSubscription,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        upsert_subscription(&mut conn, service, node, subscription).await
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
        Ok(())
    }

    async fn publish_pubsub_item(
        &self,
        service: &str,
        node: &str,
        item: &StoredItem,
        max_items: Option<usize>,
    ) -> Result<Vec<String>, StoreError> {
        // The write lock is held from reading the highest `seq` to the commit, so two
        // publishes to one node cannot take the same number.
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT node FROM pubsub_nodes WHERE service = $1 AND node = $2")
            .bind(service)
            .bind(node)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
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
            Some(max_items) => trim_oldest(&mut tx, service, node, max_items).await?,
            None => Vec::new(),
        };
        tx.commit().await?;
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
        Ok(deleted > 0)
    }

    async fn purge_pubsub_node(&self, service: &str, node: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM pubsub_items WHERE service = $1 AND node = $2")
            .bind(service)
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn pubsub_items(
        &self,
        service: &str,
        node: &str,
        query: &ItemQuery,
    ) -> Result<ItemPage, StoreError> {
        // One snapshot: the page, its count and its index must describe the same node.
        let mut tx = self.pool.begin().await?;
        // Keyset bounds: strictly older than `after`, strictly newer than `before`.
        let upper = match &query.after {
            Some(anchor) => anchor_seq(&mut tx, service, node, anchor).await?,
            None => i64::MAX,
        };
        let lower = match query.before.as_deref() {
            Some(anchor) if !anchor.is_empty() => {
                anchor_seq(&mut tx, service, node, anchor).await?
            }
            _ => i64::MIN,
        };
        let from_oldest = query.before.is_some();
        let items = if query.ids.is_empty() {
            read_range(
                &mut tx,
                service,
                node,
                (lower, upper),
                from_oldest,
                query.max,
            )
            .await?
        } else {
            read_ids(
                &mut tx,
                service,
                node,
                &query.ids,
                (lower, upper),
                from_oldest,
                query.max,
            )
            .await?
        };
        let count = count_where(&mut tx, COUNT_NEWER, service, node, i64::MIN).await?;
        let first_index = match items.first() {
            // XEP-0059 §2.6: the index of the first item, 0 being the newest.
            Some(first) => Some(count_where(&mut tx, COUNT_NEWER, service, node, first.seq).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(ItemPage {
            items: items.into_iter().map(|placed| placed.item).collect(),
            count,
            first_index,
        })
    }

    async fn pubsub_item_total(&self, service: &str) -> Result<usize, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM pubsub_items WHERE service = $1")
            .bind(service)
            .fetch_one(&self.pool)
            .await?;
        count_from(&row)
    }

    async fn delete_pubsub_service(&self, service: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        delete_service(&mut tx, service).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Deletes every row of a service on `conn`, inside the caller's transaction (also used by
/// `delete_user` for the account's PEP service).
pub(super) async fn delete_service(
    conn: &mut AnyConnection,
    service: &str,
) -> Result<(), StoreError> {
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

/// Removes the oldest items beyond `max_items`; their ids, oldest first.
async fn trim_oldest(
    conn: &mut AnyConnection,
    service: &str,
    node: &str,
    max_items: usize,
) -> Result<Vec<String>, StoreError> {
    let held = count_where(conn, COUNT_NEWER, service, node, i64::MIN).await?;
    let excess = held.saturating_sub(max_items);
    if excess == 0 {
        return Ok(Vec::new());
    }
    let oldest = read_range(
        conn,
        service,
        node,
        (i64::MIN, i64::MAX),
        true,
        Some(excess),
    )
    .await?;
    // Newest first: the first is the newest to go.
    let Some(newest_evicted) = oldest.first().map(|placed| placed.seq) else {
        return Ok(Vec::new());
    };
    sqlx::query("DELETE FROM pubsub_items WHERE service = $1 AND node = $2 AND seq <= $3")
        .bind(service)
        .bind(node)
        .bind(newest_evicted)
        .execute(&mut *conn)
        .await?;
    // Reported oldest first, the order in which they left.
    Ok(oldest
        .into_iter()
        .rev()
        .map(|placed| placed.item.id)
        .collect())
}

/// The `seq` of the item an RSM anchor names; [`StoreError::NotFound`] if the node holds no
/// such item (XEP-0059 §2.5: the server answers `<item-not-found/>`).
async fn anchor_seq(
    conn: &mut AnyConnection,
    service: &str,
    node: &str,
    id: &str,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "SELECT seq FROM pubsub_items WHERE service = $1 AND node = $2 AND item_id = $3",
    )
    .bind(service)
    .bind(node)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    Ok(row.try_get("seq")?)
}

/// Up to `max` items with `lower < seq < upper`, taken from the newest end (or the oldest,
/// if `from_oldest`), returned newest first.
async fn read_range(
    conn: &mut AnyConnection,
    service: &str,
    node: &str,
    (lower, upper): (i64, i64),
    from_oldest: bool,
    max: Option<usize>,
) -> Result<Vec<Placed>, StoreError> {
    let sql = if from_oldest {
        PAGE_OLDEST_FIRST
    } else {
        PAGE_NEWEST_FIRST
    };
    let rows = sqlx::query(sql)
        .bind(service)
        .bind(node)
        .bind(upper)
        .bind(lower)
        .bind(limit(max))
        .fetch_all(&mut *conn)
        .await?;
    let mut items = rows
        .iter()
        .map(placed_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    if from_oldest {
        items.reverse();
    }
    Ok(items)
}

/// The items of `ids` the node holds within the bounds, chosen like [`read_range`] does.
/// Ids are looked up one by one on the primary key: a request names few of them.
async fn read_ids(
    conn: &mut AnyConnection,
    service: &str,
    node: &str,
    ids: &[String],
    (lower, upper): (i64, i64),
    from_oldest: bool,
    max: Option<usize>,
) -> Result<Vec<Placed>, StoreError> {
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    for id in ids.iter().filter(|id| seen.insert(id.as_str())) {
        let row = sqlx::query(
            "SELECT item_id, seq, publisher, payload, published_at FROM pubsub_items
             WHERE service = $1 AND node = $2 AND item_id = $3",
        )
        .bind(service)
        .bind(node)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            let placed = placed_from_row(&row)?;
            if lower < placed.seq && placed.seq < upper {
                items.push(placed);
            }
        }
    }
    if from_oldest {
        items.sort_by_key(|placed| placed.seq);
    } else {
        items.sort_by_key(|placed| std::cmp::Reverse(placed.seq));
    }
    if let Some(max) = max {
        items.truncate(max);
    }
    if from_oldest {
        items.reverse();
    }
    Ok(items)
}

/// Runs a `SELECT COUNT(*) AS n` bound to (service, node, seq).
async fn count_where(
    conn: &mut AnyConnection,
    sql: &'static str,
    service: &str,
    node: &str,
    seq: i64,
) -> Result<usize, StoreError> {
    let row = sqlx::query(sql)
        .bind(service)
        .bind(node)
        .bind(seq)
        .fetch_one(&mut *conn)
        .await?;
    count_from(&row)
}

fn count_from(row: &AnyRow) -> Result<usize, StoreError> {
    let n: i64 = row.try_get("n")?;
    usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("pubsub item count {n}")))
}

/// A `LIMIT` for both SQLite and PostgreSQL: neither accepts the other's "no limit".
fn limit(max: Option<usize>) -> i64 {
    max.map_or(i64::MAX, |max| i64::try_from(max).unwrap_or(i64::MAX))
}

fn placed_from_row(row: &AnyRow) -> Result<Placed, StoreError> {
    Ok(Placed {
        seq: row.try_get("seq")?,
        item: StoredItem {
            id: row.try_get("item_id")?,
            publisher: row.try_get("publisher")?,
            payload: row.try_get("payload")?,
            published_at: row.try_get("published_at")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new pubsub table must get its DELETE in [`DELETE_SERVICE`].
    #[tokio::test]
    async fn delete_service_clears_every_pubsub_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_in_dir(dir.path()).await.unwrap();
        let rows = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'pubsub%'",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 4);
        for row in rows {
            let table: String = row.try_get("name").unwrap();
            let statement = format!("DELETE FROM {table} WHERE service = $1");
            assert!(
                DELETE_SERVICE.contains(&statement.as_str()),
                "{table} is not cleared by delete_pubsub_service"
            );
        }
    }

    /// Both page queries walk the `(service, node, seq)` index, so a page costs the same in
    /// a node of any size (the plan is SQLite's; PostgreSQL gets its own check when it lands).
    #[tokio::test]
    async fn item_pages_are_read_through_the_seq_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_in_dir(dir.path()).await.unwrap();
        for sql in [PAGE_NEWEST_FIRST, PAGE_OLDEST_FIRST] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind("pubsub.example")
                .bind("node")
                .bind(i64::MAX)
                .bind(i64::MIN)
                .bind(100_i64)
                .fetch_all(&store.pool)
                .await
                .unwrap();
            let plan: Vec<String> = rows
                .iter()
                .map(|row| row.try_get("detail").unwrap())
                .collect();
            assert!(
                plan.iter()
                    .any(|step| step.contains("USING INDEX pubsub_items_by_seq")),
                "{sql}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|step| step.contains("TEMP B-TREE")),
                "{sql} sorts instead of walking the index: {plan:?}"
            );
        }
    }
}
