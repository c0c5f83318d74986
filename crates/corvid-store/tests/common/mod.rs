//! Helpers shared by the integration tests: a store on a fresh database (a SQLite file in a
//! temp directory, or, when `CORVID_TEST_POSTGRES_URL` names a PostgreSQL server, a database
//! of its own there: the same tests run on both), sample secrets, and an account filled with
//! data of every kind.

#![allow(dead_code)] // each test binary uses a different subset

#[path = "../../../../tests/shared/postgres.rs"]
pub mod postgres;

use corvid_proto::sasl::{Credentials, ScramKeys};
use corvid_store::{
    Blocklists, LastActivity, Offline, PrivateXml, RosterItem, Rosters, SqlStore, Subscription,
    Users, VCards,
};
use tempfile::TempDir;

/// One test's database; stores are opened on it with [`TestDb::open`]. Keep it alive while
/// they are used (a PostgreSQL database is dropped with it).
pub enum TestDb {
    /// `corvid.sqlite` in this directory.
    Sqlite(TempDir),
    Postgres(postgres::TestDatabase),
}

impl TestDb {
    /// A new, empty database on the backend the environment chooses.
    pub async fn new() -> TestDb {
        match postgres::admin_url() {
            Some(admin) => TestDb::Postgres(postgres::TestDatabase::create(&admin).await),
            None => TestDb::Sqlite(tempfile::tempdir().expect("create temp dir")),
        }
    }

    /// A new SQLite database, whatever the environment says.
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().expect("create temp dir"))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres(_))
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => {
                let path = dir.path().join("corvid.sqlite");
                format!("sqlite:{}", path.to_str().expect("UTF-8 temp path"))
            }
            TestDb::Postgres(db) => db.url().to_owned(),
        }
    }

    /// The same database under its URL's other spelling: `sqlite://PATH` for `sqlite:PATH`,
    /// `postgresql://` for `postgres://` (and back).
    pub fn other_url_form(&self) -> String {
        let url = self.url();
        if let Some(path) = url.strip_prefix("sqlite:") {
            format!("sqlite://{path}")
        } else if let Some(rest) = url.strip_prefix("postgres://") {
            format!("postgresql://{rest}")
        } else if let Some(rest) = url.strip_prefix("postgresql://") {
            format!("postgres://{rest}")
        } else {
            panic!("unexpected test database URL scheme")
        }
    }

    /// A store on this database, as another process (or a restart) would open it.
    pub async fn open(&self) -> SqlStore {
        SqlStore::open(&self.url()).await.expect("open store")
    }
}

/// A store on a new database; keep the [`TestDb`] alive while using it.
pub async fn temp_store() -> (TestDb, SqlStore) {
    let db = TestDb::new().await;
    let store = db.open().await;
    (db, store)
}

/// Distinct, recognisable credentials per `seed` (not real SCRAM output; the store is opaque).
pub fn creds(seed: u8) -> Credentials {
    Credentials {
        salt: vec![seed; 16],
        iterations: 4096 + u32::from(seed),
        sha1: ScramKeys {
            stored_key: vec![seed.wrapping_add(1); 20],
            server_key: vec![seed.wrapping_add(2); 20],
        },
        sha256: ScramKeys {
            stored_key: vec![seed.wrapping_add(3); 32],
            server_key: vec![seed.wrapping_add(4); 32],
        },
    }
}

pub fn pair(username: &str, domain: &str) -> (String, String) {
    (username.to_owned(), domain.to_owned())
}

/// Creates `username@domain` with throwaway credentials.
pub async fn account(store: &SqlStore, username: &str, domain: &str) {
    store
        .create_user(username, domain, &creds(1))
        .await
        .expect("create account");
}

/// A roster item shown in the roster, with nothing else set.
pub fn item(jid: &str) -> RosterItem {
    RosterItem {
        jid: jid.to_owned(),
        in_roster: true,
        ..RosterItem::default()
    }
}

/// Everything stored for one account, read through the public traits.
#[derive(Debug, Default, PartialEq)]
pub struct AccountData {
    pub roster: (i64, Vec<RosterItem>),
    pub hidden_item: Option<RosterItem>,
    pub offline: Vec<String>,
    pub vcard: Option<String>,
    pub photo_hash: Option<String>,
    pub private_xml: Option<String>,
    pub blocklist: Vec<String>,
    pub last_logout: Option<(i64, String)>,
}

/// The contact of the hidden (pending inbound request only) item that [`fill_account`] stores.
pub const HIDDEN_CONTACT: &str = "stranger@elsewhere.example";
pub const PRIVATE_NS: &str = "storage:bookmarks";

/// Stores data of every kind for `username@domain`, tagged with `tag` so that two accounts'
/// data differ.
pub async fn fill_account(store: &SqlStore, username: &str, domain: &str, tag: &str) {
    let mut friend = item(&format!("friend-{tag}@montague.example"));
    friend.subscription = Subscription::Both;
    friend.groups = vec![format!("Friends {tag}")];
    store
        .put_roster_item(username, domain, &friend)
        .await
        .unwrap();
    let hidden = RosterItem {
        jid: HIDDEN_CONTACT.to_owned(),
        pending_in: true,
        pending_in_stanza: Some(format!("<presence type='subscribe' id='{tag}'/>")),
        ..RosterItem::default()
    };
    store
        .put_roster_item(username, domain, &hidden)
        .await
        .unwrap();
    store
        .store_offline(username, domain, &format!("<message id='{tag}'/>"), 1, 100)
        .await
        .unwrap();
    store
        .set_vcard(
            username,
            domain,
            &format!("<vCard>{tag}</vCard>"),
            Some(tag),
        )
        .await
        .unwrap();
    store
        .set_private_xml(
            username,
            domain,
            PRIVATE_NS,
            &format!("<storage>{tag}</storage>"),
        )
        .await
        .unwrap();
    store
        .block(username, domain, &[format!("spam-{tag}@spam.example")])
        .await
        .unwrap();
    store
        .set_last_logout(username, domain, 1_700_000_000, tag)
        .await
        .unwrap();
}

pub async fn account_data(store: &SqlStore, username: &str, domain: &str) -> AccountData {
    AccountData {
        roster: store.roster(username, domain).await.unwrap(),
        hidden_item: store
            .roster_item(username, domain, HIDDEN_CONTACT)
            .await
            .unwrap(),
        offline: store
            .offline_messages(username, domain)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.stanza)
            .collect(),
        vcard: store.vcard(username, domain).await.unwrap(),
        photo_hash: store.photo_hash(username, domain).await.unwrap(),
        private_xml: store
            .private_xml(username, domain, PRIVATE_NS)
            .await
            .unwrap(),
        blocklist: store.blocklist(username, domain).await.unwrap(),
        last_logout: store.last_logout(username, domain).await.unwrap(),
    }
}
