//! Schema migrations: a numbered, append-only list of statement batches per backend
//! (`migrations/sqlite.rs`, `migrations/postgres.rs`).
//!
//! `schema_migrations` records which versions a database has. On open, each missing version
//! runs in its own write transaction, which re-checks the table first (under the schema
//! lock, see `locks::schema`), so two processes opening a fresh database at once apply every
//! migration exactly once. Never edit a released migration; append a new one, to both lists:
//! a version means the same logical schema (tables, columns, keys, indexes) on every
//! backend, which is what lets `corvid migrate` copy between them.

use sqlx::Row;

use super::locks;
use super::{Backend, SqlStore};
use crate::StoreError;

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

/// One schema step: its statements run in one transaction, then `version` is recorded.
pub(super) struct Migration {
    pub version: i64,
    pub statements: &'static [&'static str],
}

fn create_schema_migrations(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)"
        }
        Backend::Postgres => {
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)"
        }
    }
}

pub(super) fn for_backend(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Sqlite => sqlite::SQLITE,
        Backend::Postgres => postgres::POSTGRES,
    }
}

/// Brings the schema up to date; a no-op when it already is.
pub(super) async fn run(store: &SqlStore) -> Result<(), StoreError> {
    let migrations = for_backend(store.backend);
    let supported = migrations.last().map_or(0, |m| m.version);

    let mut tx = store.begin_write().await?;
    locks::schema(&mut tx, store.backend).await?;
    sqlx::query(create_schema_migrations(store.backend))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let applied = applied_versions(store).await?;
    if let Some(&found) = applied.iter().find(|v| **v > supported) {
        return Err(StoreError::SchemaTooNew { found, supported });
    }

    for migration in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        apply(store, migration).await?;
    }
    Ok(())
}

/// The newest schema version the database has; 0 for none.
pub(super) async fn schema_version(store: &SqlStore) -> Result<i64, StoreError> {
    Ok(applied_versions(store)
        .await?
        .into_iter()
        .max()
        .unwrap_or(0))
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
    locks::schema(&mut tx, store.backend).await?;
    // Another process may have applied it since we looked; we now hold the schema lock.
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
