//! Rosters, vCards and avatars in a SQLite file (XMPPFramework's
//! `XMPPRosterCoreDataStorage`, `XMPPvCardCoreDataStorage` and the photo data of
//! `XMPPvCardAvatarModule`): a client that restarts has its roster, the vCards and the
//! avatars it fetched at once, and with roster versioning the server sends only what
//! changed meanwhile. One file may hold the data of several accounts (avatars, keyed by
//! their hash, are shared by all).

use std::path::Path;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, Sqlite, Transaction};

use crate::avatar::{Avatar, AvatarStorage};
use crate::roster::{RosterItem, RosterStorage, StorageError, Subscription};
use crate::vcard::VCardStorage;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS roster_versions (
        account TEXT PRIMARY KEY,
        version TEXT
    )",
    // Groups are newline-separated: RFC 6121 group names are text, never line breaks that
    // matter (a name holding one is stored without it).
    "CREATE TABLE IF NOT EXISTS roster_items (
        account TEXT NOT NULL,
        jid TEXT NOT NULL,
        name TEXT,
        subscription TEXT NOT NULL,
        pending_out INTEGER NOT NULL,
        groups TEXT NOT NULL,
        PRIMARY KEY (account, jid)
    )",
    "CREATE TABLE IF NOT EXISTS vcards (
        account TEXT NOT NULL,
        jid TEXT NOT NULL,
        vcard TEXT NOT NULL,
        PRIMARY KEY (account, jid)
    )",
    "CREATE TABLE IF NOT EXISTS avatars (
        hash TEXT PRIMARY KEY,
        mime_type TEXT NOT NULL,
        data BLOB NOT NULL
    )",
];

/// Roster, vCard and avatar storage in a SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStorage {
    pool: SqlitePool,
}

impl SqliteStorage {
    /// Opens (creating if needed) the file at `path`.
    pub async fn open(path: &Path) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(failed)?;
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&pool)
                .await
                .map_err(failed)?;
        }
        Ok(SqliteStorage { pool })
    }

    async fn set_version(
        tx: &mut Transaction<'_, Sqlite>,
        account: &str,
        version: Option<&str>,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO roster_versions (account, version) VALUES (?, ?)
             ON CONFLICT (account) DO UPDATE SET version = excluded.version",
        )
        .bind(account)
        .bind(version)
        .execute(&mut **tx)
        .await
        .map_err(failed)?;
        Ok(())
    }

    async fn put(
        tx: &mut Transaction<'_, Sqlite>,
        account: &str,
        item: &RosterItem,
    ) -> Result<(), StorageError> {
        let groups: Vec<String> = item.groups.iter().map(|g| g.replace('\n', " ")).collect();
        sqlx::query(
            "INSERT INTO roster_items (account, jid, name, subscription, pending_out, groups)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (account, jid) DO UPDATE SET name = excluded.name,
                subscription = excluded.subscription, pending_out = excluded.pending_out,
                groups = excluded.groups",
        )
        .bind(account)
        .bind(&item.jid)
        .bind(item.name.as_deref())
        .bind(item.subscription.as_str())
        .bind(i64::from(item.pending_out))
        .bind(groups.join("\n"))
        .execute(&mut **tx)
        .await
        .map_err(failed)?;
        Ok(())
    }
}

#[async_trait]
impl RosterStorage for SqliteStorage {
    async fn load(&self, account: &str) -> Result<(Option<String>, Vec<RosterItem>), StorageError> {
        let version: Option<Option<String>> =
            sqlx::query_scalar("SELECT version FROM roster_versions WHERE account = ?")
                .bind(account)
                .fetch_optional(&self.pool)
                .await
                .map_err(failed)?;
        let rows = sqlx::query(
            "SELECT jid, name, subscription, pending_out, groups FROM roster_items
             WHERE account = ? ORDER BY jid",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await
        .map_err(failed)?;
        let items = rows
            .iter()
            .map(|row| {
                let groups: String = row.try_get("groups")?;
                let subscription: String = row.try_get("subscription")?;
                Ok(RosterItem {
                    jid: row.try_get("jid")?,
                    name: row.try_get("name")?,
                    subscription: Subscription::parse(Some(&subscription)),
                    pending_out: row.try_get::<i64, _>("pending_out")? != 0,
                    groups: groups
                        .split('\n')
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(failed)?;
        Ok((version.flatten(), items))
    }

    async fn replace(
        &self,
        account: &str,
        version: Option<&str>,
        items: &[RosterItem],
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await.map_err(failed)?;
        sqlx::query("DELETE FROM roster_items WHERE account = ?")
            .bind(account)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        for item in items {
            Self::put(&mut tx, account, item).await?;
        }
        Self::set_version(&mut tx, account, version).await?;
        tx.commit().await.map_err(failed)
    }

    async fn update(
        &self,
        account: &str,
        version: Option<&str>,
        jid: &str,
        item: Option<&RosterItem>,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await.map_err(failed)?;
        match item {
            Some(item) => Self::put(&mut tx, account, item).await?,
            None => {
                sqlx::query("DELETE FROM roster_items WHERE account = ? AND jid = ?")
                    .bind(account)
                    .bind(jid)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?;
            }
        }
        Self::set_version(&mut tx, account, version).await?;
        tx.commit().await.map_err(failed)
    }
}

fn failed(e: sqlx::Error) -> StorageError {
    StorageError(e.to_string())
}

#[async_trait]
impl VCardStorage for SqliteStorage {
    async fn load_vcard(&self, account: &str, jid: &str) -> Result<Option<String>, StorageError> {
        sqlx::query_scalar("SELECT vcard FROM vcards WHERE account = ? AND jid = ?")
            .bind(account)
            .bind(jid)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed)
    }

    async fn store_vcard(&self, account: &str, jid: &str, vcard: &str) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO vcards (account, jid, vcard) VALUES (?, ?, ?)
             ON CONFLICT (account, jid) DO UPDATE SET vcard = excluded.vcard",
        )
        .bind(account)
        .bind(jid)
        .bind(vcard)
        .execute(&self.pool)
        .await
        .map_err(failed)?;
        Ok(())
    }
}

#[async_trait]
impl AvatarStorage for SqliteStorage {
    async fn load_avatar(&self, hash: &str) -> Result<Option<Avatar>, StorageError> {
        let row = sqlx::query("SELECT mime_type, data FROM avatars WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed)?;
        row.map(|row| {
            Ok(Avatar {
                mime_type: row.try_get("mime_type")?,
                bytes: row.try_get("data")?,
            })
        })
        .transpose()
        .map_err(failed)
    }

    async fn store_avatar(&self, hash: &str, avatar: &Avatar) -> Result<(), StorageError> {
        // The hash names the bytes: a stored avatar never changes.
        sqlx::query(
            "INSERT INTO avatars (hash, mime_type, data) VALUES (?, ?, ?)
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(hash)
        .bind(avatar.mime_type.as_str())
        .bind(avatar.bytes.as_slice())
        .execute(&self.pool)
        .await
        .map_err(failed)?;
        Ok(())
    }
}
