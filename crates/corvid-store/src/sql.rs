//! [`SqlStore`]: every storage trait implemented over one sqlx `Any` pool.
//!
//! The queries are written once, with `$1, $2` placeholders that both SQLite and PostgreSQL
//! accept; what differs per database (URL handling, connection setup, how a transaction
//! starts, the row locks PostgreSQL needs, the schema) hangs off [`Backend`], and the few
//! statements that cannot be written once have a variant per backend beside their users.
//!
//! SQLite is opened in WAL mode with `synchronous=FULL`: a commit is on disk before it returns,
//! so callers may acknowledge data as soon as a write succeeds (DESIGN.md, Storage), and readers
//! never block the writer. Several processes (the server and `corvid user add`) may use the same
//! file at once; `busy_timeout` makes a writer wait for another's lock instead of failing.
//!
//! PostgreSQL gives the same guarantee with `synchronous_commit = on`, its default: a commit
//! returns once its WAL record is flushed (and, with synchronous standbys configured, once
//! they have it). A connection set to `off` (in the server's configuration or the URL's
//! `options`) is switched back on; the stronger settings (`remote_write`, `remote_apply`)
//! are kept. SQLite's write transactions take its one write lock up front, which the code
//! relies on wherever it reads and then writes; PostgreSQL's run at READ COMMITTED and take
//! row locks for that instead (`sql/locks.rs`), so concurrent writers behave the same.

mod archive;
#[cfg(test)]
mod archive_tests;
mod archive_writer;
mod blocklist;
mod copy;
mod last;
mod locks;
mod migrations;
mod muc;
mod offline;
mod private;
mod pubsub;
mod pubsub_items;
mod push;
mod roster;
#[cfg(test)]
pub(crate) mod test_db;
mod users;
mod vcard;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::Transaction;
use sqlx::any::{Any, AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection as _};

use crate::StoreError;
use crate::account_index::AccountIndex;
use crate::roster_cache::{DEFAULT_CAPACITY, RosterCache};

pub use copy::CopiedTable;

/// File name of the SQLite database inside the data directory.
const SQLITE_FILE_NAME: &str = "corvid.sqlite";

/// Per-connection settings for SQLite, run on every new connection. `busy_timeout` goes first
/// so that switching to WAL waits for a concurrent process instead of failing.
const SQLITE_CONNECTION_SETUP: &[&str] = &[
    "PRAGMA busy_timeout = 5000",
    "PRAGMA journal_mode = WAL",
    // In WAL mode NORMAL may lose the last commits on power failure; FULL syncs every commit.
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    // 1 MiB of page cache per connection instead of SQLite's 2: lookups go by primary key,
    // and the kernel caches the file anyway. The archive writer's connection gets more
    // (sql/archive_writer.rs).
    "PRAGMA cache_size = -1024",
];

/// Per-connection settings for PostgreSQL. Durability (see the module notes): only `off`
/// is overridden, so a cluster's synchronous replication settings stay in force.
const POSTGRES_CONNECTION_SETUP: &[&str] = &["SELECT set_config('synchronous_commit', 'on', false)
     WHERE current_setting('synchronous_commit') = 'off'"];

/// Pooled connections to PostgreSQL unless the URL's `max_connections` says otherwise. The
/// server's writes are short transactions, and the archive and last-activity writers take
/// one each; a few more serve the sessions' reads and writes at once.
const POSTGRES_DEFAULT_CONNECTIONS: u32 = 10;

/// The fewest connections a pool may have: the archive writer keeps one for itself.
const MIN_CONNECTIONS: u32 = 2;

/// Which database a [`SqlStore`] talks to; everything that cannot be written once for all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Picks the backend from the URL scheme.
    fn from_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            // Only the scheme is echoed: a full URL may carry a password.
            "" => Err(StoreError::InvalidUrl(
                "missing scheme (expected sqlite:PATH or postgres://…)".into(),
            )),
            other => Err(StoreError::InvalidUrl(format!(
                "unsupported scheme {other:?} (supported: sqlite, postgres, postgresql)"
            ))),
        }
    }

    /// The URL handed to sqlx, with backend-specific defaults filled in, and the size of the
    /// pool: PostgreSQL's URL may set it (`?max_connections=N`, taken out of what sqlx sees).
    fn connect_url(self, url: &str) -> Result<(String, u32), StoreError> {
        match self {
            Backend::Sqlite => Ok((sqlite_url_creating_file(url), 5)),
            Backend::Postgres => {
                let (url, max) = take_query_parameter(url, "max_connections");
                let max = match max {
                    None => POSTGRES_DEFAULT_CONNECTIONS,
                    Some(max) => max
                        .parse::<u32>()
                        .ok()
                        .filter(|max| *max >= MIN_CONNECTIONS)
                        .ok_or_else(|| {
                            StoreError::InvalidUrl(format!(
                                "max_connections must be a number of at least {MIN_CONNECTIONS}"
                            ))
                        })?,
                };
                Ok((url, max))
            }
        }
    }

    /// Statements run on each new pooled connection.
    fn connection_setup(self) -> &'static [&'static str] {
        match self {
            Backend::Sqlite => SQLITE_CONNECTION_SETUP,
            Backend::Postgres => POSTGRES_CONNECTION_SETUP,
        }
    }

    /// The statement that opens a transaction which will write.
    fn begin_write(self) -> &'static str {
        match self {
            // IMMEDIATE takes the write lock up front (waiting up to busy_timeout). A deferred
            // transaction that reads first and then writes fails with SQLITE_BUSY at once if
            // another connection committed in between, since busy_timeout cannot help there.
            // SQLite's pool: one writer at a time anyway; a few connections let reads proceed
            // beside it. The archive writer keeps one of them for itself once it has written.
            Backend::Sqlite => "BEGIN IMMEDIATE",
            // READ COMMITTED: each statement sees what was committed before it started, and
            // waits for rows another transaction is changing. Where a transaction reads and
            // then writes, it locks the rows it depends on first (`sql/locks.rs`).
            Backend::Postgres => "BEGIN",
        }
    }

    /// The statement that opens a transaction which only reads, and must see one snapshot.
    fn begin_read(self) -> &'static str {
        match self {
            // A deferred transaction reads one snapshot of the WAL from its first read on.
            Backend::Sqlite => "BEGIN",
            // READ COMMITTED would give each statement a snapshot of its own.
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        }
    }
}

/// Removes `name=value` from a URL's query; the URL without it, and the value.
fn take_query_parameter(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((key, found)) if key == name => {
                value = Some(found.to_owned());
                false
            }
            _ => true,
        })
        .collect();
    if kept.is_empty() {
        (base.to_owned(), value)
    } else {
        (format!("{base}?{}", kept.join("&")), value)
    }
}

/// Adds `mode=rwc` (create the file if missing) unless the URL already chooses a mode.
fn sqlite_url_creating_file(url: &str) -> String {
    match url.split_once('?') {
        None => format!("{url}?mode=rwc"),
        Some((_, query)) if query.split('&').any(|pair| pair.starts_with("mode=")) => {
            url.to_owned()
        }
        Some(_) => format!("{url}&mode=rwc"),
    }
}

/// `sqlite:PATH` for a file path. sqlx percent-decodes the path, so `%`, `?` and `#` (which
/// would otherwise start an escape, the query or the fragment) are encoded.
fn sqlite_url_for_path(path: &Path) -> Result<String, StoreError> {
    let path = path
        .to_str()
        .ok_or_else(|| StoreError::InvalidUrl("database path is not valid UTF-8".into()))?;
    let mut url = String::with_capacity(path.len() + 7);
    url.push_str("sqlite:");
    for c in path.chars() {
        match c {
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            '#' => url.push_str("%23"),
            c => url.push(c),
        }
    }
    Ok(url)
}

/// All of Corvid's persistent data, in one SQL database.
///
/// Cheap to clone: clones share the connection pool and the roster cache.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// Contacts with a subscription, per account, for presence (see [`RosterCache`]).
    roster_cache: Arc<RosterCache>,
    /// Accounts that may have offline messages, and a vCard photo: asked at every login.
    offline_index: Arc<AccountIndex>,
    photo_index: Arc<AccountIndex>,
    /// The group committer of last-activity writes (see `sql/last.rs`).
    logouts: last::LogoutWriter,
    /// The group committer of archived messages (see `sql/archive_writer.rs`).
    archive: archive_writer::ArchiveWriter,
    /// Archive numbers, from above the newest one stored.
    archive_ids: Arc<crate::ArchiveIds>,
    /// Who hears of the writes other processes' caches depend on (a cluster's other nodes).
    listener: Arc<crate::changes::ListenerSlot>,
}

impl SqlStore {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    ///
    /// Accepted URLs: `sqlite:PATH` or `sqlite://PATH`, optionally with sqlx's SQLite query
    /// parameters (`?mode=…`); the file is created unless the URL sets another `mode`.
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (or `postgresql://`), optionally with
    /// sqlx's PostgreSQL query parameters (`?sslmode=…`) and `max_connections=N` (the pool's
    /// size, 10 by default); the database must exist, its tables are created.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let backend = Backend::from_url(url)?;
        sqlx::any::install_default_drivers();
        let (connect_url, max_connections) = backend.connect_url(url)?;
        let options = AnyConnectOptions::from_str(&connect_url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        if backend == Backend::Postgres {
            // A pool reports a server it cannot reach (or a wrong password, a missing
            // database) only as a timeout, 30 s later: one connection first, for the reason.
            AnyConnection::connect_with(&options).await?.close().await?;
        }
        let setup = backend.connection_setup();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    for statement in setup {
                        sqlx::raw_sql(*statement).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let logouts = last::LogoutWriter::start(pool.clone(), backend);
        let archive = archive_writer::ArchiveWriter::start(pool.clone(), backend);
        let mut store = SqlStore {
            pool,
            backend,
            roster_cache: Arc::new(RosterCache::new(DEFAULT_CAPACITY)),
            offline_index: Arc::new(AccountIndex::new([])),
            photo_index: Arc::new(AccountIndex::new([])),
            logouts,
            archive,
            archive_ids: Arc::new(crate::ArchiveIds::after(0)),
            listener: Arc::default(),
        };
        migrations::run(&store).await?;
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM archive_messages")
            .fetch_one(&store.pool)
            .await?;
        store.archive_ids = Arc::new(crate::ArchiveIds::after(newest.unwrap_or(0)));
        store.offline_index = Arc::new(AccountIndex::new(
            store
                .accounts_in("SELECT DISTINCT username, domain FROM offline_messages")
                .await?,
        ));
        store.photo_index = Arc::new(AccountIndex::new(
            store
                .accounts_in("SELECT username, domain FROM vcards WHERE photo_hash IS NOT NULL")
                .await?,
        ));
        tracing::info!(backend = ?backend, "store opened");
        Ok(store)
    }

    /// Opens `DIR/corvid.sqlite`, creating the directory and the file if missing.
    pub async fn open_in_dir(dir: &Path) -> Result<Self, StoreError> {
        tokio::fs::create_dir_all(dir).await?;
        Self::open(&sqlite_url_for_path(&dir.join(SQLITE_FILE_NAME))?).await
    }

    /// Writes the archived messages still queued, waits for in-flight queries, then closes
    /// every connection. Further use fails.
    pub async fn close(&self) {
        // A failed batch was already logged by the writer; closing goes on regardless.
        let _ = self.archive.flush().await;
        self.pool.close().await;
    }

    /// Drops what is cached of the account's roster, so the next read comes from the
    /// database. Never needed for writes made through this store; the server calls it at
    /// an account's first login and last logout, to see writes by other processes and to
    /// keep no roster of an account no one uses.
    pub fn forget_cached_roster(&self, username: &str, domain: &str) {
        self.roster_cache.invalidate(username, domain);
    }

    /// Tells `listener` of every write through this store (and its clones) that another
    /// process's caches must see. Once only; false if a listener was set already.
    pub fn watch_changes(&self, listener: crate::ChangeListener) -> bool {
        self.listener.set(listener)
    }

    /// Other processes write this database too (a cluster's nodes): the questions asked at
    /// every login ("offline messages?", "a photo?") go to the database every time, since
    /// another process's write could be told after the login that needs it.
    pub fn share_with_other_writers(&self) {
        self.offline_index.share();
        self.photo_index.share();
    }

    /// Makes the caches see a write another process made (and told of, from its
    /// [`Self::watch_changes`]).
    pub fn apply_change(&self, change: &crate::StoreChange) {
        use crate::StoreChange;
        match change {
            StoreChange::Roster { username, domain } => {
                self.roster_cache.invalidate(username, domain)
            }
            StoreChange::Offline { username, domain } => self.offline_index.mark(username, domain),
            StoreChange::Photo { username, domain } => self.photo_index.mark(username, domain),
            StoreChange::Blocklist { .. } | StoreChange::PubSub { .. } => {}
        }
    }

    /// The allocator of this store's archive numbers: a cluster's node puts it in a slot of
    /// its own ([`crate::ArchiveIds::use_slot`]).
    pub fn archive_ids(&self) -> &crate::ArchiveIds {
        &self.archive_ids
    }

    fn changed(&self, change: crate::StoreChange) {
        self.listener.tell(change);
    }

    /// A write to a pubsub service's nodes, items or subscriptions.
    fn pubsub_changed(&self, service: &str) {
        self.changed(crate::StoreChange::PubSub {
            service: service.to_owned(),
        });
    }

    /// The (username, domain) pairs a query returns.
    async fn accounts_in(&self, query: &'static str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(query).fetch_all(&self.pool).await?;
        use sqlx::Row;
        rows.iter()
            .map(|row| Ok((row.try_get("username")?, row.try_get("domain")?)))
            .collect()
    }

    /// Starts a transaction that will write, holding the write lock where the backend needs it.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(self.pool.begin_with(self.backend.begin_write()).await?)
    }

    /// Starts a transaction whose reads all see one snapshot of the database.
    async fn begin_read(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(self.pool.begin_with(self.backend.begin_read()).await?)
    }
}

/// Credentials for the accounts unit tests create; what they hold does not matter.
#[cfg(test)]
pub(crate) fn test_credentials() -> corvid_proto::sasl::Credentials {
    let keys = |len| corvid_proto::sasl::ScramKeys {
        stored_key: vec![1; len],
        server_key: vec![2; len],
    };
    corvid_proto::sasl::Credentials {
        salt: vec![3; 16],
        iterations: 4096,
        sha1: keys(20),
        sha256: keys(32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    #[test]
    fn backend_is_chosen_by_scheme() {
        assert_eq!(Backend::from_url("sqlite:x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("sqlite:///tmp/x.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u:secret@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u:secret@h:5433/db?sslmode=require").ok(),
            Some(Backend::Postgres)
        );
        assert!(matches!(
            Backend::from_url("mysql://u:secret@h/db"),
            Err(StoreError::InvalidUrl(msg)) if !msg.contains("secret")
        ));
        assert!(matches!(
            Backend::from_url("corvid.sqlite"),
            Err(StoreError::InvalidUrl(_))
        ));
    }

    #[test]
    fn sqlite_url_gets_create_mode_unless_set() {
        assert_eq!(
            sqlite_url_creating_file("sqlite:a.db"),
            "sqlite:a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating_file("sqlite:a.db?cache=private"),
            "sqlite:a.db?cache=private&mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating_file("sqlite:a.db?mode=ro"),
            "sqlite:a.db?mode=ro"
        );
    }

    #[test]
    fn postgres_pool_size_comes_from_the_url_and_is_hidden_from_sqlx() {
        let connect = |url: &str| Backend::Postgres.connect_url(url);
        assert_eq!(
            connect("postgres://u@h/db").unwrap(),
            ("postgres://u@h/db".to_owned(), POSTGRES_DEFAULT_CONNECTIONS)
        );
        assert_eq!(
            connect("postgres://u@h/db?max_connections=40").unwrap(),
            ("postgres://u@h/db".to_owned(), 40)
        );
        assert_eq!(
            connect("postgres://u@h/db?sslmode=require&max_connections=3&application_name=c")
                .unwrap(),
            (
                "postgres://u@h/db?sslmode=require&application_name=c".to_owned(),
                3
            )
        );
        for bad in ["1", "0", "many", ""] {
            let url = format!("postgres://u:secret@h/db?max_connections={bad}");
            assert!(matches!(
                connect(&url),
                Err(StoreError::InvalidUrl(msg)) if !msg.contains("secret")
            ));
        }
    }

    #[test]
    fn path_url_escapes_url_syntax() {
        let url = sqlite_url_for_path(Path::new("/d/a?b#c%20/corvid.sqlite")).unwrap();
        assert_eq!(url, "sqlite:/d/a%3Fb%23c%2520/corvid.sqlite");
    }

    /// A commit is durable before it returns (see the module notes), on either backend.
    #[tokio::test]
    async fn connections_are_durable() {
        let (db, store) = test_db::test_store().await;
        match db.backend() {
            Backend::Sqlite => assert_sqlite_settings(&store).await,
            Backend::Postgres => {
                assert_eq!(synchronous_commit(&store).await, "on");
                // Even when the URL asks otherwise.
                let off = format!("{}?options[synchronous_commit]=off", db.url());
                let store = SqlStore::open(&off).await.unwrap();
                assert_eq!(synchronous_commit(&store).await, "on");
                let remote = format!("{}?options[synchronous_commit]=remote_apply", db.url());
                let store = SqlStore::open(&remote).await.unwrap();
                assert_eq!(synchronous_commit(&store).await, "remote_apply");
            }
        }
    }

    async fn synchronous_commit(store: &SqlStore) -> String {
        let row = sqlx::query("SELECT current_setting('synchronous_commit') AS value")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        row.try_get("value").unwrap()
    }

    async fn assert_sqlite_settings(store: &SqlStore) {
        let mut conn = store.pool.acquire().await.unwrap();
        let mut pragma = async |name: &'static str| {
            let row = sqlx::raw_sql(name).fetch_one(&mut *conn).await.unwrap();
            match row.try_get::<String, _>(0) {
                Ok(text) => text,
                Err(_) => row.try_get::<i64, _>(0).unwrap().to_string(),
            }
        };
        assert_eq!(pragma("PRAGMA journal_mode").await, "wal");
        assert_eq!(pragma("PRAGMA synchronous").await, "2"); // FULL
        assert_eq!(pragma("PRAGMA busy_timeout").await, "5000");
        assert_eq!(pragma("PRAGMA foreign_keys").await, "1");
        assert_eq!(pragma("PRAGMA cache_size").await, "-1024");
    }
}
