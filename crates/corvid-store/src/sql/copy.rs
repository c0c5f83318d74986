//! [`SqlStore::copy_to`]: every row of one store copied into another, across backends (SQLite
//! to PostgreSQL and back); what `corvid migrate` does.
//!
//! The copy reads the source in one read transaction (one snapshot of it, however long the
//! copy takes) and writes the destination in one write transaction: a copy that fails leaves
//! the destination as it was. Tables go parents first ([`TABLES`]), each read in pages of
//! [`PAGE`] rows by its primary key (keyset, never `OFFSET`) and written [`ROWS_PER_INSERT`]
//! rows to a statement, so memory stays flat whatever the size of the archive. Rows are
//! copied column by column with the column's type from [`TABLES`], the same logical schema on
//! both backends (a schema version means the same tables everywhere, see `migrations.rs`):
//! the two stores must be at the same version. After the commit, every table of the
//! destination is counted and must hold exactly the rows read from the source.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Backend, SqlStore, migrations};
use crate::StoreError;

/// Rows read from the source at a time.
const PAGE: i64 = 1000;
/// Rows written by one INSERT: at most 9 columns × 100 rows = 900 parameters, far below
/// either backend's limit.
const ROWS_PER_INSERT: usize = 100;

/// What a column holds (and how it is decoded and bound: both backends store each as the
/// same sqlx `Any` type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Blob,
}
use Kind::{Blob, Integer, Text};

struct Table {
    name: &'static str,
    /// The primary key: rows are read in its order.
    key: &'static [&'static str],
    columns: &'static [(&'static str, Kind)],
}

/// Every table of the schema but `schema_migrations`, parents before children (foreign keys
/// hold at every insert). A new table or column goes here too; a test checks this against
/// the schema.
const TABLES: &[Table] = &[
    Table {
        name: "users",
        key: &["domain", "username"],
        columns: &[
            ("domain", Text),
            ("username", Text),
            ("salt", Blob),
            ("iterations", Integer),
            ("sha1_stored_key", Blob),
            ("sha1_server_key", Blob),
            ("sha256_stored_key", Blob),
            ("sha256_server_key", Blob),
            ("created_at", Integer),
        ],
    },
    Table {
        name: "roster_items",
        key: &["domain", "username", "contact"],
        columns: &[
            ("domain", Text),
            ("username", Text),
            ("contact", Text),
            ("name", Text),
            ("subscription", Text),
            ("pending_out", Integer),
            ("pending_in", Integer),
            ("approved", Integer),
            ("in_roster", Integer),
            ("pending_in_stanza", Text),
        ],
    },
    Table {
        name: "roster_groups",
        key: &["domain", "username", "contact", "position"],
        columns: &[
            ("domain", Text),
            ("username", Text),
            ("contact", Text),
            ("position", Integer),
            ("name", Text),
        ],
    },
    Table {
        name: "roster_versions",
        key: &["domain", "username"],
        columns: &[("domain", Text), ("username", Text), ("version", Integer)],
    },
    Table {
        name: "offline_messages",
        key: &["id"],
        columns: &[
            ("id", Integer),
            ("domain", Text),
            ("username", Text),
            ("stanza", Text),
            ("stamp_ms", Integer),
        ],
    },
    Table {
        name: "vcards",
        key: &["domain", "username"],
        columns: &[
            ("domain", Text),
            ("username", Text),
            ("xml", Text),
            ("photo_hash", Text),
        ],
    },
    Table {
        name: "private_xml",
        key: &["domain", "username", "namespace"],
        columns: &[
            ("domain", Text),
            ("username", Text),
            ("namespace", Text),
            ("xml", Text),
        ],
    },
    Table {
        name: "blocklist",
        key: &["domain", "username", "jid"],
        columns: &[("domain", Text), ("username", Text), ("jid", Text)],
    },
    Table {
        name: "last_activity",
        key: &["domain", "username"],
        columns: &[
            ("domain", Text),
            ("username", Text),
            ("logout_secs", Integer),
            ("status", Text),
        ],
    },
    Table {
        name: "push_registrations",
        key: &["domain", "username", "service", "node"],
        columns: &[
            ("domain", Text),
            ("username", Text),
            ("service", Text),
            ("node", Text),
            ("options", Text),
        ],
    },
    Table {
        name: "muc_rooms",
        key: &["service", "name"],
        columns: &[
            ("service", Text),
            ("name", Text),
            ("creator", Text),
            ("config", Text),
            ("subject", Text),
            ("subject_nick", Text),
        ],
    },
    Table {
        name: "muc_affiliations",
        key: &["service", "name", "jid"],
        columns: &[
            ("service", Text),
            ("name", Text),
            ("jid", Text),
            ("affiliation", Text),
        ],
    },
    Table {
        name: "pubsub_nodes",
        key: &["service", "node"],
        columns: &[("service", Text), ("node", Text), ("config", Text)],
    },
    Table {
        name: "pubsub_affiliations",
        key: &["service", "node", "jid"],
        columns: &[
            ("service", Text),
            ("node", Text),
            ("jid", Text),
            ("affiliation", Text),
        ],
    },
    Table {
        name: "pubsub_subscriptions",
        key: &["service", "node", "jid", "subid"],
        columns: &[
            ("service", Text),
            ("node", Text),
            ("jid", Text),
            ("subid", Text),
            ("state", Text),
            ("options", Text),
        ],
    },
    Table {
        name: "pubsub_items",
        key: &["service", "node", "item_id"],
        columns: &[
            ("service", Text),
            ("node", Text),
            ("item_id", Text),
            ("seq", Integer),
            ("publisher", Text),
            ("payload", Text),
            ("published_at", Integer),
        ],
    },
    Table {
        name: "archive_prefs",
        key: &["archive"],
        columns: &[
            ("archive", Text),
            ("default_mode", Text),
            ("always", Text),
            ("never", Text),
        ],
    },
    Table {
        name: "archive_messages",
        key: &["seq"],
        columns: &[
            ("seq", Integer),
            ("archive", Text),
            ("with_bare", Text),
            ("with_full", Text),
            ("stanza", Text),
        ],
    },
];

/// One table copied: its name and how many rows it holds now in both stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopiedTable {
    pub table: &'static str,
    pub rows: u64,
}

/// One column's value, as read and as it will be bound.
enum Value {
    Text(Option<String>),
    Integer(Option<i64>),
    Blob(Option<Vec<u8>>),
}

impl SqlStore {
    /// Copies every row of this store into `dest` (see the module notes); how many rows each
    /// table holds, parents first. `copied` is told of each table as soon as its rows are
    /// written (they are committed with the last one).
    ///
    /// Refused with [`StoreError::SchemaMismatch`] unless both stores are at the same schema
    /// version, and with [`StoreError::NotEmpty`] if `dest` already holds data, unless
    /// `replace`: then the destination's rows are deleted first, in the same transaction. A
    /// table whose count differs after the commit is [`StoreError::CopyIncomplete`].
    ///
    /// Stores already open on `dest` keep what they cache (archive numbers, which accounts
    /// have offline messages or a photo): copy into a database no server is using.
    pub async fn copy_to(
        &self,
        dest: &SqlStore,
        replace: bool,
        mut copied: impl FnMut(&CopiedTable),
    ) -> Result<Vec<CopiedTable>, StoreError> {
        let (from, to) = (
            migrations::schema_version(self).await?,
            migrations::schema_version(dest).await?,
        );
        if from != to {
            return Err(StoreError::SchemaMismatch { from, to });
        }
        // Archived messages still queued belong to the copy.
        self.archive.sync().await?;

        let mut source = self.begin_read().await?;
        let mut target = dest.begin_write().await?;
        if let Some(table) = first_table_with_rows(&mut target).await? {
            if !replace {
                return Err(StoreError::NotEmpty(table.to_owned()));
            }
            for table in TABLES.iter().rev() {
                let delete = format!("DELETE FROM {}", table.name);
                sqlx::query(sqlx::AssertSqlSafe(delete))
                    .execute(&mut *target)
                    .await?;
            }
        }
        let mut tables = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let rows = copy_table(&mut source, &mut target, table).await?;
            let done = CopiedTable {
                table: table.name,
                rows,
            };
            copied(&done);
            tables.push(done);
        }
        let high_water = offline_id_high_water(&mut source, self.backend).await?;
        raise_offline_id_high_water(&mut target, dest.backend, high_water).await?;
        target.commit().await?;
        source.commit().await?;

        let mut conn = dest.pool.acquire().await?;
        for done in &tables {
            let found = count(&mut conn, done.table).await?;
            if found != done.rows {
                return Err(StoreError::CopyIncomplete {
                    table: done.table.to_owned(),
                    expected: done.rows,
                    found,
                });
            }
        }
        tracing::info!(tables = tables.len(), "store copied");
        Ok(tables)
    }
}

/// The first table (of [`TABLES`]) holding a row, if any does.
async fn first_table_with_rows(
    conn: &mut AnyConnection,
) -> Result<Option<&'static str>, StoreError> {
    for table in TABLES {
        let probe = format!("SELECT 1 AS found FROM {} LIMIT 1", table.name);
        let row = sqlx::query(sqlx::AssertSqlSafe(probe))
            .fetch_optional(&mut *conn)
            .await?;
        if row.is_some() {
            return Ok(Some(table.name));
        }
    }
    Ok(None)
}

/// Copies one table, page by page; how many rows it copied (checked against the source's
/// count in the same snapshot).
async fn copy_table(
    source: &mut AnyConnection,
    target: &mut AnyConnection,
    table: &Table,
) -> Result<u64, StoreError> {
    let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let key = table.key.join(", ");
    let first_page = format!(
        "SELECT {} FROM {} ORDER BY {key} LIMIT {PAGE}",
        columns.join(", "),
        table.name
    );
    let placeholders: Vec<String> = (1..=table.key.len()).map(|n| format!("${n}")).collect();
    // Row values compare column by column, as the key orders rows (text bytewise on both).
    let next_page = format!(
        "SELECT {} FROM {} WHERE ({key}) > ({}) ORDER BY {key} LIMIT {PAGE}",
        columns.join(", "),
        table.name,
        placeholders.join(", ")
    );
    let mut copied = 0;
    let mut last_key: Option<Vec<Value>> = None;
    loop {
        let mut page = match &last_key {
            None => sqlx::query(sqlx::AssertSqlSafe(first_page.clone())),
            Some(_) => sqlx::query(sqlx::AssertSqlSafe(next_page.clone())),
        };
        for value in last_key.take().into_iter().flatten() {
            page = bind(page, value);
        }
        let rows = page.fetch_all(&mut *source).await?;
        let Some(last) = rows.last() else { break };
        last_key = Some(key_of(table, last)?);
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            insert(target, table, chunk).await?;
        }
        copied += u64::try_from(rows.len()).unwrap_or(u64::MAX);
        if rows.len() < usize::try_from(PAGE).unwrap_or(usize::MAX) {
            break;
        }
    }
    let expected = count(source, table.name).await?;
    if copied != expected {
        return Err(StoreError::CopyIncomplete {
            table: table.name.to_owned(),
            expected,
            found: copied,
        });
    }
    Ok(copied)
}

/// Writes rows read from the source (its columns in [`Table::columns`] order).
async fn insert(
    target: &mut AnyConnection,
    table: &Table,
    rows: &[AnyRow],
) -> Result<(), StoreError> {
    let width = table.columns.len();
    let tuples: Vec<String> = (0..rows.len())
        .map(|row| {
            let params: Vec<String> = (1..=width)
                .map(|c| format!("${}", row * width + c))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        table.name,
        columns.join(", "),
        tuples.join(", ")
    );
    let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        for (index, (_, kind)) in table.columns.iter().enumerate() {
            statement = bind(statement, value(row, index, *kind)?);
        }
    }
    statement.execute(&mut *target).await?;
    Ok(())
}

/// The key columns' values of a row, to read the next page from.
fn key_of(table: &Table, row: &AnyRow) -> Result<Vec<Value>, StoreError> {
    table
        .key
        .iter()
        .map(|column| {
            let (index, (_, kind)) = table
                .columns
                .iter()
                .enumerate()
                .find(|(_, (name, _))| name == column)
                .expect("every key column is one of the table's columns");
            value(row, index, *kind)
        })
        .collect()
}

fn value(row: &AnyRow, index: usize, kind: Kind) -> Result<Value, StoreError> {
    Ok(match kind {
        Text => Value::Text(row.try_get(index)?),
        Integer => Value::Integer(row.try_get(index)?),
        Blob => Value::Blob(row.try_get(index)?),
    })
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind(query: Query<'_>, value: Value) -> Query<'_> {
    match value {
        Value::Text(text) => query.bind(text),
        Value::Integer(n) => query.bind(n),
        Value::Blob(bytes) => query.bind(bytes),
    }
}

async fn count(conn: &mut AnyConnection, table: &str) -> Result<u64, StoreError> {
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{table} holds {n} rows")))
}

/// The highest offline message id ever given out (ids are never reused, even those of
/// messages gone since): SQLite's AUTOINCREMENT counter, PostgreSQL's identity sequence.
async fn offline_id_high_water(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<i64, StoreError> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT COALESCE(MAX(seq), 0) AS high FROM sqlite_sequence
             WHERE name = 'offline_messages'"
        }
        Backend::Postgres => {
            "SELECT COALESCE(pg_sequence_last_value(
                pg_get_serial_sequence('offline_messages', 'id')::regclass), 0) AS high"
        }
    };
    Ok(sqlx::query(sql)
        .fetch_one(&mut *conn)
        .await?
        .try_get("high")?)
}

/// Makes the destination give out offline message ids above `high` and above every id it
/// holds, as the source would have.
async fn raise_offline_id_high_water(
    conn: &mut AnyConnection,
    backend: Backend,
    high: i64,
) -> Result<(), StoreError> {
    match backend {
        // Inserting ids moved the counter up to the highest one; the source's may be higher.
        Backend::Sqlite => {
            sqlx::query(
                "UPDATE sqlite_sequence SET seq = $1 WHERE name = 'offline_messages' AND seq < $1",
            )
            .bind(high)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO sqlite_sequence (name, seq) SELECT 'offline_messages', $1
                 WHERE $1 > 0
                   AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'offline_messages')",
            )
            .bind(high)
            .execute(&mut *conn)
            .await?;
        }
        // Ids inserted explicitly leave the sequence where it was.
        Backend::Postgres => {
            let row = sqlx::query(
                "SELECT COALESCE(pg_sequence_last_value(
                    pg_get_serial_sequence('offline_messages', 'id')::regclass), 0) AS given,
                    (SELECT COALESCE(MAX(id), 0) FROM offline_messages) AS held",
            )
            .fetch_one(&mut *conn)
            .await?;
            let given: i64 = row.try_get("given")?;
            let held: i64 = row.try_get("held")?;
            let high = high.max(given).max(held);
            // A sequence never called has nothing to raise to 0 from (and 0 is below its
            // minimum).
            if high > 0 {
                sqlx::query(
                    "SELECT setval(pg_get_serial_sequence('offline_messages', 'id'), $1) AS now",
                )
                .bind(high)
                .fetch_one(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::test_db::{table_names, test_store};

    /// Every table of the schema is copied, with every column, as what it is.
    #[tokio::test]
    async fn every_table_and_column_of_the_schema_is_copied() {
        let (_db, store) = test_store().await;
        let mut listed: Vec<&str> = TABLES.iter().map(|table| table.name).collect();
        listed.sort_unstable();
        assert_eq!(table_names(&store).await, listed);
        for table in TABLES {
            assert_eq!(
                column_kinds(&store, table.name).await,
                table.columns.to_vec(),
                "{}",
                table.name
            );
            for key in table.key {
                assert!(table.columns.iter().any(|(name, _)| name == key));
            }
        }
    }

    /// A table's columns in their order, each with what it holds.
    async fn column_kinds(store: &SqlStore, table: &str) -> Vec<(&'static str, Kind)> {
        let (sql, name, type_name) = match store.backend {
            Backend::Sqlite => (format!("PRAGMA table_info({table})"), "name", "type"),
            Backend::Postgres => (
                format!(
                    "SELECT column_name::text AS name, data_type::text AS type
                     FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = '{table}'
                     ORDER BY ordinal_position"
                ),
                "name",
                "type",
            ),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&store.pool)
            .await
            .unwrap();
        rows.iter()
            .map(|row| {
                let column: String = row.try_get(name).unwrap();
                let declared: String = row.try_get(type_name).unwrap();
                let kind = match declared.to_ascii_lowercase().as_str() {
                    "text" => Text,
                    "integer" | "bigint" => Integer,
                    "blob" | "bytea" => Blob,
                    other => panic!("{table}.{column}: unexpected type {other}"),
                };
                // Leaked: a test's few column names, to compare with the static list.
                (&*Box::leak(column.into_boxed_str()), kind)
            })
            .collect()
    }
}
