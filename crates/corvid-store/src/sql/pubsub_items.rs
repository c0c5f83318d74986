//! Reading and trimming a node's items: every page (XEP-0059 result set management over
//! XEP-0060 §6.5 item retrieval) is one range scan of the `(service, node, seq)` index from a
//! keyset bound, never an OFFSET, and so is trimming to `max_items` (XEP-0060 §7.1.3 leaves
//! the oldest items to go first). Split from `pubsub.rs`, which holds the writes.

use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{ItemPage, ItemQuery, StoreError, StoredItem};

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

/// Reads a page as [`crate::PubSubStore::pubsub_items`] describes it; run it in a transaction, so
/// the page, the count and the index agree.
pub(super) async fn read_page(
    conn: &mut AnyConnection,
    service: &str,
    node: &str,
    query: &ItemQuery,
) -> Result<ItemPage, StoreError> {
    // Keyset bounds: strictly older than `after`, strictly newer than `before`.
    let upper = match &query.after {
        Some(anchor) => anchor_seq(&mut *conn, service, node, anchor).await?,
        None => i64::MAX,
    };
    let lower = match query.before.as_deref() {
        Some(anchor) if !anchor.is_empty() => anchor_seq(&mut *conn, service, node, anchor).await?,
        _ => i64::MIN,
    };
    let from_oldest = query.before.is_some();
    let items = if query.ids.is_empty() {
        read_range(
            &mut *conn,
            service,
            node,
            (lower, upper),
            from_oldest,
            query.max,
        )
        .await?
    } else {
        read_ids(
            &mut *conn,
            service,
            node,
            &query.ids,
            (lower, upper),
            from_oldest,
            query.max,
        )
        .await?
    };
    let count = count_where(&mut *conn, COUNT_NEWER, service, node, i64::MIN).await?;
    let first_index = match items.first() {
        // XEP-0059 §2.6: the index of the first item, 0 being the newest.
        Some(first) => Some(count_where(&mut *conn, COUNT_NEWER, service, node, first.seq).await?),
        None => None,
    };
    Ok(ItemPage {
        items: items.into_iter().map(|placed| placed.item).collect(),
        count,
        first_index,
    })
}

/// Removes the oldest items beyond `max_items`; their ids, oldest first.
pub(super) async fn trim_oldest(
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

pub(super) fn count_from(row: &AnyRow) -> Result<usize, StoreError> {
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
    use crate::sql::Backend;
    use crate::sql::test_db::Bind::{Int, Text};
    use crate::sql::test_db::{plan, test_store};

    /// Both page queries walk the `(service, node, seq)` index, so a page costs the same in
    /// a node of any size.
    #[tokio::test]
    async fn item_pages_are_read_through_the_seq_index() {
        let (_db, store) = test_store().await;
        let binds = [
            Text("pubsub.example"),
            Text("node"),
            Int(i64::MAX),
            Int(i64::MIN),
            Int(100),
        ];
        for sql in [PAGE_NEWEST_FIRST, PAGE_OLDEST_FIRST] {
            let steps = plan(&store, sql, &binds).await;
            let (expected, sorts): (&[&str], &[&str]) = match store.backend {
                Backend::Sqlite => (
                    &["USING INDEX pubsub_items_by_seq (service=? AND node=? AND seq>? AND seq<?)"],
                    &["TEMP B-TREE"],
                ),
                Backend::Postgres => (
                    &["using pubsub_items_by_seq", "Index Cond: ((service = "],
                    &["Sort", "Seq Scan"],
                ),
            };
            for step in expected {
                assert!(
                    steps.iter().any(|s| s.contains(step)),
                    "{sql}: no {step:?} in {steps:#?}"
                );
            }
            assert!(
                !steps
                    .iter()
                    .any(|s| sorts.iter().any(|sort| s.contains(sort))),
                "{sql} sorts instead of walking the index: {steps:#?}"
            );
        }
    }
}
