//! The database a unit test opens its stores on: a SQLite file in a temp directory, or, when
//! `CORVID_TEST_POSTGRES_URL` names a PostgreSQL server, a fresh database there
//! (tests/shared/postgres.rs). The integration tests have the same in tests/common/mod.rs.

use sqlx::Row;

use super::{Backend, SQLITE_FILE_NAME, SqlStore, sqlite_url_for_path};

#[path = "../../../../tests/shared/postgres.rs"]
mod postgres;

/// Keeps the database alive (and, for PostgreSQL, drops it at the end); opens stores on it.
pub(crate) enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(postgres::TestDatabase),
}

impl TestDb {
    pub(crate) async fn new() -> TestDb {
        match postgres::admin_url() {
            Some(admin) => TestDb::Postgres(postgres::TestDatabase::create(&admin).await),
            None => TestDb::Sqlite(tempfile::tempdir().expect("create temp dir")),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            TestDb::Sqlite(_) => Backend::Sqlite,
            TestDb::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => {
                sqlite_url_for_path(&dir.path().join(SQLITE_FILE_NAME)).expect("UTF-8 temp path")
            }
            TestDb::Postgres(db) => db.url().to_owned(),
        }
    }

    /// Another store on the same database, as another process would open it.
    pub(crate) async fn open(&self) -> SqlStore {
        SqlStore::open(&self.url()).await.expect("open store")
    }
}

/// A store on a new database; keep the [`TestDb`] alive while using it.
pub(crate) async fn test_store() -> (TestDb, SqlStore) {
    let db = TestDb::new().await;
    let store = db.open().await;
    (db, store)
}

/// The names of the store's tables (but `schema_migrations` and SQLite's own).
pub(crate) async fn table_names(store: &SqlStore) -> Vec<String> {
    let sql = match store.backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        // `name` is not a type sqlx's Any driver decodes: cast to text.
        Backend::Postgres => {
            "SELECT table_name::text AS name FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
    };
    let rows = sqlx::query(sql).fetch_all(&store.pool).await.unwrap();
    let mut names: Vec<String> = rows
        .iter()
        .map(|row| row.try_get("name").unwrap())
        .filter(|name| name != "schema_migrations")
        .collect();
    names.sort();
    names
}

#[test]
fn a_test_database_url_keeps_the_server_and_the_parameters() {
    assert_eq!(
        postgres::with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        postgres::with_database("postgresql://u:p@h/db?sslmode=disable", "t2"),
        "postgresql://u:p@h/t2?sslmode=disable"
    );
    assert_eq!(
        postgres::with_database("postgres://u@h:1", "t3"),
        "postgres://u@h:1/t3"
    );
}

/// A value bound for a plan: which one barely matters, its type does.
#[derive(Clone, Copy)]
pub(crate) enum Bind {
    Text(&'static str),
    Int(i64),
}

/// The backend's plan for a statement, a line per step: SQLite's `EXPLAIN QUERY PLAN`, or
/// PostgreSQL's `EXPLAIN` made with sequential scans, bitmap scans and sorts priced out. A
/// test's tables are nearly empty, and the question is whether an index serves the statement
/// in its order, not what PostgreSQL's planner picks for a table of ten rows; those left
/// anyway (no plan without them exists) show in the plan.
pub(crate) async fn plan(store: &SqlStore, statement: &str, binds: &[Bind]) -> Vec<String> {
    let (explain, column) = match store.backend {
        Backend::Sqlite => (format!("EXPLAIN QUERY PLAN {statement}"), "detail"),
        Backend::Postgres => (format!("EXPLAIN {statement}"), "QUERY PLAN"),
    };
    let mut tx = store.pool.begin().await.unwrap();
    if store.backend == Backend::Postgres {
        for setting in ["enable_seqscan", "enable_bitmapscan", "enable_sort"] {
            let set = format!("SET LOCAL {setting} = off");
            sqlx::raw_sql(sqlx::AssertSqlSafe(set))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(explain));
    for bind in binds {
        query = match *bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(n) => query.bind(n),
        };
    }
    let rows = query.fetch_all(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    rows.iter()
        .map(|row| row.try_get(column).unwrap())
        .collect()
}
