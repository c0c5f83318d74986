//! [`Rosters`] over SQL: `roster_items`, their `roster_groups`, and `roster_versions`.
//!
//! Items are read with their groups in one LEFT JOIN, one row per (item, group), ordered by
//! contact then group position, and folded back into [`RosterItem`]s.

use async_trait::async_trait;
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::locks::{self, Lock};
use crate::roster_cache::Contacts;
use crate::{RosterItem, Rosters, StoreError, Subscription};

/// The account's items matching `$filter` (a condition on `i`, the item), with their groups:
/// one row per (item, group), or one with a NULL `group_name` for an item without groups.
macro_rules! select_items_with_groups {
    ($filter:literal) => {
        concat!(
            "SELECT i.contact, i.name, i.subscription, i.pending_out, i.pending_in, i.approved,
                i.in_roster, i.pending_in_stanza, g.name AS group_name
             FROM roster_items i
             LEFT JOIN roster_groups g
                ON g.domain = i.domain AND g.username = i.username AND g.contact = i.contact
             WHERE i.domain = $1 AND i.username = $2 AND ",
            $filter,
            " ORDER BY i.contact, g.position"
        )
    };
}

#[async_trait]
impl Rosters for SqlStore {
    async fn roster(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<(i64, Vec<RosterItem>), StoreError> {
        // One read transaction: the version must describe exactly the items returned.
        let mut tx = self.begin_read().await?;
        let version = read_version(&mut tx, username, domain).await?;
        let rows = sqlx::query(select_items_with_groups!("i.in_roster = 1"))
            .bind(domain)
            .bind(username)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((version, items_from_rows(&rows)?))
    }

    async fn roster_item(
        &self,
        username: &str,
        domain: &str,
        contact: &str,
    ) -> Result<Option<RosterItem>, StoreError> {
        let rows = sqlx::query(select_items_with_groups!("i.contact = $3"))
            .bind(domain)
            .bind(username)
            .bind(contact)
            .fetch_all(&self.pool)
            .await?;
        Ok(items_from_rows(&rows)?.pop())
    }

    async fn put_roster_item(
        &self,
        username: &str,
        domain: &str,
        item: &RosterItem,
    ) -> Result<i64, StoreError> {
        let written = self.write_roster_item(username, domain, item).await;
        // After the commit (or the failure): the next read comes from the database.
        self.roster_cache.invalidate(username, domain);
        self.changed(crate::StoreChange::Roster {
            username: username.to_owned(),
            domain: domain.to_owned(),
        });
        written
    }

    async fn remove_roster_item(
        &self,
        username: &str,
        domain: &str,
        contact: &str,
    ) -> Result<Option<i64>, StoreError> {
        let removed = self.delete_roster_item(username, domain, contact).await;
        self.roster_cache.invalidate(username, domain);
        self.changed(crate::StoreChange::Roster {
            username: username.to_owned(),
            domain: domain.to_owned(),
        });
        removed
    }

    async fn roster_version(&self, username: &str, domain: &str) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_version(&mut conn, username, domain).await
    }

    async fn pending_subscription_requests(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // Asked at every login: answered from the cached items (ordered by contact).
        let items = self.cached_contacts(username, domain).await?;
        Ok(items
            .iter()
            .filter(|i| i.pending_in)
            .filter_map(|i| Some((i.jid.clone(), i.pending_in_stanza.clone()?)))
            .collect())
    }

    async fn contacts_with_subscription(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Vec<RosterItem>, StoreError> {
        let items = self.cached_contacts(username, domain).await?;
        Ok(items
            .iter()
            .filter(|i| i.subscription != Subscription::None)
            .cloned()
            .collect())
    }

    async fn subscription(
        &self,
        username: &str,
        domain: &str,
        contact: &str,
    ) -> Result<Subscription, StoreError> {
        let contacts = self.cached_contacts(username, domain).await?;
        // Absent from the cached items: no item, or one with `none` and no request.
        Ok(contacts
            .iter()
            .find(|i| i.jid == contact)
            .map_or(Subscription::None, |i| i.subscription))
    }
}

impl SqlStore {
    /// The account's contacts with a subscription, from the roster cache when it has them.
    /// The items presence and login need: those with a subscription, and those with a
    /// pending inbound request (with the request to show again).
    async fn cached_contacts(&self, username: &str, domain: &str) -> Result<Contacts, StoreError> {
        self.roster_cache
            .get_or_load(username, domain, || async {
                let rows = sqlx::query(select_items_with_groups!(
                    "(i.subscription <> 'none' OR i.pending_in = 1)"
                ))
                .bind(domain)
                .bind(username)
                .fetch_all(&self.pool)
                .await?;
                items_from_rows(&rows)
            })
            .await
    }

    /// [`Rosters::put_roster_item`] without the cache.
    async fn write_roster_item(
        &self,
        username: &str,
        domain: &str,
        item: &RosterItem,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        locks::account(&mut tx, self.backend, Lock::Change, username, domain).await?;
        sqlx::query(
            "INSERT INTO roster_items (domain, username, contact, name, subscription,
                pending_out, pending_in, approved, in_roster, pending_in_stanza)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (domain, username, contact) DO UPDATE SET
                name = excluded.name, subscription = excluded.subscription,
                pending_out = excluded.pending_out, pending_in = excluded.pending_in,
                approved = excluded.approved, in_roster = excluded.in_roster,
                pending_in_stanza = excluded.pending_in_stanza",
        )
        .bind(domain)
        .bind(username)
        .bind(&item.jid)
        .bind(item.name.as_deref())
        .bind(item.subscription.as_str())
        .bind(i64::from(item.pending_out))
        .bind(i64::from(item.pending_in))
        .bind(i64::from(item.approved))
        .bind(i64::from(item.in_roster))
        .bind(item.pending_in_stanza.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_account_write)?;
        delete_groups(&mut tx, username, domain, &item.jid).await?;
        for (position, group) in (0_i64..).zip(&item.groups) {
            sqlx::query(
                "INSERT INTO roster_groups (domain, username, contact, position, name)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(domain)
            .bind(username)
            .bind(&item.jid)
            .bind(position)
            .bind(group)
            .execute(&mut *tx)
            .await?;
        }
        let version = bump_version(&mut tx, username, domain).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// [`Rosters::remove_roster_item`] without the cache.
    async fn delete_roster_item(
        &self,
        username: &str,
        domain: &str,
        contact: &str,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        locks::account(&mut tx, self.backend, Lock::Change, username, domain).await?;
        delete_groups(&mut tx, username, domain, contact).await?;
        let deleted = sqlx::query(
            "DELETE FROM roster_items WHERE domain = $1 AND username = $2 AND contact = $3",
        )
        .bind(domain)
        .bind(username)
        .bind(contact)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Ok(None); // dropping `tx` rolls back; the version stays
        }
        let version = bump_version(&mut tx, username, domain).await?;
        tx.commit().await?;
        Ok(Some(version))
    }
}

/// The account's roster version, 0 if it never changed.
async fn read_version(
    conn: &mut AnyConnection,
    username: &str,
    domain: &str,
) -> Result<i64, StoreError> {
    let row =
        sqlx::query("SELECT version FROM roster_versions WHERE domain = $1 AND username = $2")
            .bind(domain)
            .bind(username)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row
        .map(|row| row.try_get("version"))
        .transpose()?
        .unwrap_or(0))
}

/// Increments the account's roster version (creating it at 1); call inside the transaction
/// of the change it versions.
async fn bump_version(
    tx: &mut AnyConnection,
    username: &str,
    domain: &str,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO roster_versions (domain, username, version) VALUES ($1, $2, 1)
         ON CONFLICT (domain, username) DO UPDATE SET version = roster_versions.version + 1
         RETURNING version",
    )
    .bind(domain)
    .bind(username)
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::from_account_write)?;
    Ok(row.try_get("version")?)
}

async fn delete_groups(
    tx: &mut AnyConnection,
    username: &str,
    domain: &str,
    contact: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM roster_groups WHERE domain = $1 AND username = $2 AND contact = $3")
        .bind(domain)
        .bind(username)
        .bind(contact)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Folds rows of [`select_items_with_groups!`] (ordered by contact) into items.
fn items_from_rows(rows: &[AnyRow]) -> Result<Vec<RosterItem>, StoreError> {
    let mut items: Vec<RosterItem> = Vec::new();
    for row in rows {
        let contact: String = row.try_get("contact")?;
        let group: Option<String> = row.try_get("group_name")?;
        if let Some(item) = items.last_mut().filter(|item| item.jid == contact) {
            item.groups.extend(group);
            continue;
        }
        let mut item = item_from_row(row, contact)?;
        item.groups.extend(group);
        items.push(item);
    }
    Ok(items)
}

/// The item columns of one row; groups are added by [`items_from_rows`].
fn item_from_row(row: &AnyRow, jid: String) -> Result<RosterItem, StoreError> {
    let subscription: String = row.try_get("subscription")?;
    let subscription = Subscription::parse(&subscription)
        .ok_or_else(|| StoreError::Corrupt(format!("roster subscription {subscription:?}")))?;
    Ok(RosterItem {
        jid,
        name: row.try_get("name")?,
        subscription,
        pending_out: flag(row, "pending_out")?,
        pending_in: flag(row, "pending_in")?,
        approved: flag(row, "approved")?,
        groups: Vec::new(),
        in_roster: flag(row, "in_roster")?,
        pending_in_stanza: row.try_get("pending_in_stanza")?,
    })
}

/// A 0/1 flag column (see the migration: stored as INTEGER).
fn flag(row: &AnyRow, column: &str) -> Result<bool, StoreError> {
    match row.try_get::<i64, _>(column)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::Corrupt(format!(
            "roster flag {column} = {other}"
        ))),
    }
}
