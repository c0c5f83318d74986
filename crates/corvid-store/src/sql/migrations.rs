//! Schema migrations: a numbered, append-only list of statement batches per backend.
//!
//! `schema_migrations` records which versions a database has. On open, each missing version
//! runs in its own write transaction, which re-checks the table first, so two processes
//! opening a fresh file at once apply every migration exactly once. Never edit a released
//! migration; append a new one. A PostgreSQL list goes beside `SQLITE`, with the same versions
//! meaning the same logical schema.

use sqlx::Row;

use super::{Backend, SqlStore};
use crate::StoreError;

/// One schema step: its statements run in one transaction, then `version` is recorded.
pub(super) struct Migration {
    pub version: i64,
    pub statements: &'static [&'static str],
}

const CREATE_SCHEMA_MIGRATIONS: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)";

const SQLITE: &[Migration] = &[Migration {
    version: 1,
    statements: &[
        // Credentials are SCRAM salted keys (RFC 5802 §3), one salt/iteration count for both
        // hashes. TEXT compares bytewise (BINARY collation), so `list_users` sorts by byte order.
        "CREATE TABLE users (
            domain TEXT NOT NULL,
            username TEXT NOT NULL,
            salt BLOB NOT NULL,
            iterations INTEGER NOT NULL,
            sha1_stored_key BLOB NOT NULL,
            sha1_server_key BLOB NOT NULL,
            sha256_stored_key BLOB NOT NULL,
            sha256_server_key BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (domain, username)
        )",
    ],
}];

pub(super) fn for_backend(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Sqlite => SQLITE,
    }
}

/// Brings the schema up to date; a no-op when it already is.
pub(super) async fn run(store: &SqlStore) -> Result<(), StoreError> {
    let migrations = for_backend(store.backend);
    let supported = migrations.last().map_or(0, |m| m.version);

    sqlx::query(CREATE_SCHEMA_MIGRATIONS)
        .execute(&store.pool)
        .await?;
    let applied = applied_versions(store).await?;
    if let Some(&found) = applied.iter().find(|v| **v > supported) {
        return Err(StoreError::SchemaTooNew { found, supported });
    }

    for migration in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        apply(store, migration).await?;
    }
    Ok(())
}

async fn applied_versions(store: &SqlStore) -> Result<Vec<i64>, StoreError> {
    let rows = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&store.pool)
        .await?;
    rows.iter()
        .map(|row| row.try_get::<i64, _>("version").map_err(StoreError::from))
        .collect()
}

async fn apply(store: &SqlStore, migration: &Migration) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    // Another process may have applied it since we looked; we now hold the write lock.
    let already = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
        .bind(migration.version)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if already {
        return Ok(()); // dropping `tx` rolls back the empty transaction
    }
    for statement in migration.statements {
        sqlx::query(*statement).execute(&mut *tx).await?;
    }
    sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
        .bind(migration.version)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(version = migration.version, "applied database migration");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_positive_and_strictly_increasing() {
        // Add each new backend here.
        let backend = Backend::Sqlite;
        let versions: Vec<i64> = for_backend(backend).iter().map(|m| m.version).collect();
        assert!(versions.first().is_some_and(|v| *v >= 1), "{versions:?}");
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_in_dir(dir.path()).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(i64::MAX)
            .execute(&store.pool)
            .await
            .unwrap();
        store.close().await;
        let err = SqlStore::open_in_dir(dir.path()).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: i64::MAX,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
