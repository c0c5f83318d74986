//! The one error type of the storage layer, named for what went wrong so callers can map
//! each case to a protocol condition (e.g. `Conflict` → `<conflict/>` on registration).

/// What can go wrong when reading or writing stored data.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// A row with the same key already exists (unique or primary-key violation).
    #[error("already exists")]
    Conflict,

    /// The row to change or delete does not exist, or the account that would own a new row
    /// does not exist.
    #[error("not found")]
    NotFound,

    /// The account already holds as many items of this kind as it may (e.g. offline
    /// messages); nothing was stored.
    #[error("storage quota exceeded")]
    QuotaExceeded,

    /// The database URL is malformed or names a backend this build does not support.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),

    /// The database was migrated by a newer Corvid; refusing to touch a schema we don't know.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },

    /// A copy between two stores ([`crate::SqlStore::copy_to`]) found them at different
    /// schema versions: open both with the same build (which migrates them) first.
    #[error("the source database is at schema version {from}, the destination at {to}")]
    SchemaMismatch { from: i64, to: i64 },

    /// A copy's destination already holds data (this table has rows), and replacing it was
    /// not asked for.
    #[error("the destination already holds data (table {0})")]
    NotEmpty(String),

    /// After a copy, a table of the destination does not hold the rows read from the
    /// source.
    #[error("table {table}: {expected} rows copied, {found} found")]
    CopyIncomplete {
        table: String,
        expected: u64,
        found: u64,
    },

    /// A stored value cannot be what we wrote (e.g. an out-of-range iteration count).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),

    /// Preparing the data directory failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// Any other database error (connection, I/O, lock timeout …).
    #[error("database error: {0}")]
    Backend(#[from] sqlx::Error),
}

impl StoreError {
    /// Maps a unique/primary-key violation to [`StoreError::Conflict`], anything else to
    /// [`StoreError::Backend`]. Use on statements whose only expected failure is a duplicate.
    pub(crate) fn from_insert(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Backend(err),
        }
    }

    /// Maps a foreign-key violation to [`StoreError::NotFound`], anything else to
    /// [`StoreError::Backend`]. Use on writes of per-account rows: every such table references
    /// `users`, so a violation means the owning account does not exist (or was just deleted).
    pub(crate) fn from_account_write(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => StoreError::Backend(err),
        }
    }

    /// Maps a foreign-key violation to [`StoreError::NotFound`], anything else to
    /// [`StoreError::Backend`]. Use on writes of rows that belong to a parent row other than
    /// an account (e.g. a pubsub node's affiliations): a violation means the parent is absent.
    pub(crate) fn from_parent_write(err: sqlx::Error) -> Self {
        Self::from_account_write(err)
    }
}
