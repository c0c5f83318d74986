//! Row locks that give PostgreSQL's write transactions what SQLite's one write lock gives them.
//!
//! SQLite runs one write transaction at a time (`BEGIN IMMEDIATE`), so a transaction that
//! reads and then writes (counts an account's offline messages before adding one, takes a
//! node's highest item number, deletes a parent's rows before the parent) sees nothing change
//! in between. PostgreSQL runs write transactions side by side at READ COMMITTED; each such
//! transaction first locks the row its work hangs on (the account, the room, the node), so
//! those on the same account, room or node run one after the other, as on SQLite, and the
//! others still run at once. On SQLite every lock here is a no-op.
//!
//! Two strengths: [`Lock::Change`] (`FOR NO KEY UPDATE`) to change what hangs off a row: it
//! waits for the row's other changers, not for single inserts that merely reference the row
//! (their foreign key check takes `FOR KEY SHARE`). [`Lock::Delete`] (`FOR UPDATE`) before
//! deleting the row itself: it waits for those inserts too, and an insert that comes later
//! waits for the deletion and then fails its foreign key check (`NotFound`), as it would
//! after the deletion on SQLite. Without it, a row inserted while the parent's other rows
//! were being deleted would make the parent's own deletion fail.

use sqlx::AnyConnection;

use super::Backend;
use crate::StoreError;

/// How strongly a row is locked (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lock {
    /// The transaction changes rows that reference this one.
    Change,
    /// The transaction deletes this row (and, first, the rows that reference it).
    Delete,
}

/// `SELECT …` of a row, with each strength's locking clause appended.
macro_rules! locking {
    ($select:literal) => {
        [
            concat!($select, " FOR NO KEY UPDATE"),
            concat!($select, " FOR UPDATE"),
        ]
    };
}

const ACCOUNT: [&str; 2] = locking!("SELECT 1 FROM users WHERE domain = $1 AND username = $2");
const ROOM: [&str; 2] = locking!("SELECT 1 FROM muc_rooms WHERE service = $1 AND name = $2");
const NODE: [&str; 2] = locking!("SELECT node FROM pubsub_nodes WHERE service = $1 AND node = $2");
const SERVICE_NODES: [&str; 2] = locking!("SELECT node FROM pubsub_nodes WHERE service = $1");

/// Whether a pubsub node exists, and on PostgreSQL a lock on it; the same query on both.
const NODE_EXISTS_SQLITE: &str = "SELECT node FROM pubsub_nodes WHERE service = $1 AND node = $2";

impl Lock {
    fn pick(self, statements: [&'static str; 2]) -> &'static str {
        match self {
            Lock::Change => statements[0],
            Lock::Delete => statements[1],
        }
    }
}

/// Locks the account's row (`users`) until the transaction ends; a no-op on SQLite.
pub(super) async fn account(
    conn: &mut AnyConnection,
    backend: Backend,
    lock: Lock,
    username: &str,
    domain: &str,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query(lock.pick(ACCOUNT))
            .bind(domain)
            .bind(username)
            .fetch_optional(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Locks a room's row (`muc_rooms`) until the transaction ends; a no-op on SQLite.
pub(super) async fn room(
    conn: &mut AnyConnection,
    backend: Backend,
    lock: Lock,
    service: &str,
    name: &str,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query(lock.pick(ROOM))
            .bind(service)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Whether the pubsub node exists; on PostgreSQL, also locks it until the transaction ends.
pub(super) async fn node(
    conn: &mut AnyConnection,
    backend: Backend,
    lock: Lock,
    service: &str,
    node: &str,
) -> Result<bool, StoreError> {
    let statement = match backend {
        Backend::Sqlite => NODE_EXISTS_SQLITE,
        Backend::Postgres => lock.pick(NODE),
    };
    let row = sqlx::query(statement)
        .bind(service)
        .bind(node)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.is_some())
}

/// Locks every node of a pubsub service until the transaction ends; a no-op on SQLite.
pub(super) async fn service_nodes(
    conn: &mut AnyConnection,
    backend: Backend,
    lock: Lock,
    service: &str,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query(lock.pick(SERVICE_NODES))
            .bind(service)
            .fetch_all(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Makes schema migrations run one at a time, across processes: on PostgreSQL an advisory
/// lock held until the transaction ends (creating a table that another transaction is
/// creating too fails there, even with IF NOT EXISTS); SQLite's write transaction already
/// holds its write lock.
pub(super) async fn schema(conn: &mut AnyConnection, backend: Backend) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        // Any fixed number: Corvid takes no other advisory lock.
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(7172029766)) AS locked")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
