//! Copying a whole store into another (`SqlStore::copy_to`, what `corvid migrate` does):
//! SQLite → the test database (PostgreSQL when `CORVID_TEST_POSTGRES_URL` is set, else
//! another SQLite file) → SQLite again, each copy read back through the public traits.

mod common;

use common::{AccountData, TestDb, account, account_data, creds, fill_account};
use corvid_store::{
    Archive, ArchiveEntry, ArchivePrefs, ArchiveQuery, ArchivedMessage, ItemQuery, MucRooms,
    Offline, PubSubStore, PushRegistration, PushRegistrations, SqlStore, StoreError, StoredItem,
    StoredNode, StoredRoom, StoredSubscription, Users,
};

const D: &str = "capulet.example";
const USERS: [&str; 3] = ["juliet", "nurse", "tybalt"];
const MUC: &str = "conference.capulet.example";
const PUBSUB: &str = "pubsub.capulet.example";

/// Everything a server would read back from a store.
#[derive(Debug, PartialEq)]
struct Everything {
    users: Vec<(String, String)>,
    accounts: Vec<(Option<corvid_proto::sasl::Credentials>, AccountData)>,
    push: Vec<Vec<PushRegistration>>,
    rooms: Vec<StoredRoom>,
    nodes: Vec<StoredNode>,
    items: Vec<Vec<StoredItem>>,
    archives: Vec<(Vec<ArchivedMessage>, Option<ArchivePrefs>)>,
}

/// The archives read back: each account's, and a room's.
fn archives() -> Vec<String> {
    let mut archives: Vec<String> = USERS.iter().map(|u| format!("{u}@{D}")).collect();
    archives.push(format!("hall@{MUC}"));
    archives
}

/// The pubsub services read back: a service, and each account's PEP.
fn services() -> Vec<String> {
    let mut services: Vec<String> = USERS.iter().map(|u| format!("{u}@{D}")).collect();
    services.push(PUBSUB.to_owned());
    services
}

async fn fill(store: &SqlStore) {
    for (n, user) in USERS.iter().enumerate() {
        store
            .create_user(user, D, &creds(u8::try_from(n).unwrap()))
            .await
            .unwrap();
        fill_account(store, user, D, user).await;
        store
            .add_push_registration(
                user,
                D,
                &PushRegistration {
                    service: "push.example".into(),
                    node: format!("node-{user}"),
                    options: "<x/>".into(),
                },
            )
            .await
            .unwrap();
        // More offline messages, the newest then read and deleted: its id is never given
        // out again, in this store or in its copies.
        for i in 0..3 {
            store
                .store_offline(user, D, &format!("<message id='{i}'/>"), i, 100)
                .await
                .unwrap();
        }
        let held = store.offline_messages(user, D).await.unwrap();
        let newest = held.iter().map(|m| m.id).max().unwrap();
        store.delete_offline(user, D, &[newest]).await.unwrap();
    }
    let room = StoredRoom {
        service: MUC.into(),
        name: "hall".into(),
        creator: format!("juliet@{D}"),
        config: "<x xmlns='jabber:x:data'/>".into(),
        subject: "Masks 🎭 <&>".into(),
        subject_nick: "juliet".into(),
        affiliations: vec![
            (format!("juliet@{D}"), "owner".into()),
            (format!("tybalt@{D}"), "outcast".into()),
        ],
    };
    store.save_muc_room(&room).await.unwrap();
    for service in services() {
        for node in ["urn:xmpp:avatar:data", "news"] {
            let stored = StoredNode {
                service: service.clone(),
                node: node.into(),
                config: "<x xmlns='jabber:x:data'/>".into(),
                affiliations: vec![(format!("juliet@{D}"), "owner".into())],
                subscriptions: vec![StoredSubscription {
                    jid: format!("nurse@{D}/kitchen"),
                    subid: "s1".into(),
                    state: "subscribed".into(),
                    options: String::new(),
                }],
            };
            store.create_pubsub_node(&stored).await.unwrap();
            for i in 0..5 {
                let item = StoredItem {
                    id: format!("item-{i}"),
                    publisher: format!("juliet@{D}"),
                    payload: format!("<entry>{i} ✓</entry>"),
                    published_at: 1_700_000_000_000 + i,
                };
                store
                    .publish_pubsub_item(&service, node, &item, Some(4))
                    .await
                    .unwrap();
            }
        }
    }
    for (n, archive) in archives().iter().enumerate() {
        for i in 0..30 {
            let peer = USERS[i % USERS.len()];
            store
                .append_archive(ArchiveEntry {
                    archive: archive.clone(),
                    seq: store.next_archive_seq(),
                    with_bare: format!("{peer}@{D}"),
                    with_full: format!("{peer}@{D}/r{i}"),
                    stanza: format!("<message><body>{n}/{i}</body></message>"),
                })
                .await
                .unwrap();
        }
        let prefs = ArchivePrefs {
            default: "roster".into(),
            always: vec![format!("nurse@{D}")],
            never: vec![],
        };
        store.set_archive_prefs(archive, &prefs).await.unwrap();
    }
    store.archive_sync().await.unwrap();
}

async fn everything(store: &SqlStore) -> Everything {
    let mut all = Everything {
        users: store.list_users(None).await.unwrap(),
        accounts: Vec::new(),
        push: Vec::new(),
        rooms: store.muc_rooms(MUC).await.unwrap(),
        nodes: Vec::new(),
        items: Vec::new(),
        archives: Vec::new(),
    };
    for user in USERS {
        all.accounts.push((
            store.credentials(user, D).await.unwrap(),
            account_data(store, user, D).await,
        ));
        all.push
            .push(store.push_registrations(user, D).await.unwrap());
    }
    for service in services() {
        for node in store.pubsub_nodes(&service).await.unwrap() {
            let page = store
                .pubsub_items(&service, &node.node, &ItemQuery::default())
                .await
                .unwrap();
            all.items.push(page.items);
            all.nodes.push(node);
        }
    }
    for archive in archives() {
        let query = ArchiveQuery {
            max: 1000,
            ..Default::default()
        };
        let page = store.query_archive(&archive, &query).await.unwrap();
        assert!(page.complete);
        all.archives
            .push((page.messages, store.archive_prefs(&archive).await.unwrap()));
    }
    all
}

/// Copies `from` into a new store on `db`; the rows it copied, per table.
async fn copy(from: &SqlStore, db: &TestDb) -> Vec<(String, u64)> {
    let to = db.open().await;
    let mut told = Vec::new();
    let copied = from
        .copy_to(&to, false, |table| told.push(table.clone()))
        .await
        .unwrap();
    assert_eq!(told, copied, "each table is told as it is copied");
    to.close().await;
    copied
        .into_iter()
        .map(|table| (table.table.to_owned(), table.rows))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_there_and_back_reads_back_the_same() {
    let (first_db, middle_db, last_db) = (TestDb::sqlite(), TestDb::new().await, TestDb::sqlite());
    let first = first_db.open().await;
    fill(&first).await;
    let original = everything(&first).await;
    assert_eq!(original.users.len(), 3);
    assert_eq!(original.nodes.len(), 8);
    assert!(original.items.iter().all(|items| items.len() == 4));

    let there = copy(&first, &middle_db).await;
    let middle = middle_db.open().await;
    assert_eq!(everything(&middle).await, original);

    let back = copy(&middle, &last_db).await;
    let last = last_db.open().await;
    assert_eq!(everything(&last).await, original);
    assert_eq!(there, back);
    let rows = |table: &str| there.iter().find(|(name, _)| name == table).unwrap().1;
    assert_eq!(rows("users"), 3);
    assert_eq!(rows("archive_messages"), 4 * 30);
    assert_eq!(rows("offline_messages"), 3 * 3);

    for store in [&middle, &last] {
        // New archive numbers go on above the copied ones: a new message comes last.
        let newest = original.archives[0]
            .0
            .last()
            .unwrap()
            .id
            .parse::<i64>()
            .unwrap();
        assert!(store.next_archive_seq() > newest);
        // Offline ids go on above every id the source gave out, deleted ones included (the
        // last account's newest message had the highest).
        let user = USERS[USERS.len() - 1];
        let held = offline_ids(&first, user).await;
        store
            .store_offline(user, D, "<message id='new'/>", 9, 100)
            .await
            .unwrap();
        let ids = offline_ids(store, user).await;
        assert_eq!(ids.len(), held.len() + 1);
        assert!(*ids.last().unwrap() > held.last().unwrap() + 1, "{ids:?}");
    }
}

/// The ids of an account's offline messages, in order.
async fn offline_ids(store: &SqlStore, user: &str) -> Vec<i64> {
    let messages = store.offline_messages(user, D).await.unwrap();
    messages.iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn a_destination_with_data_is_refused_unless_replaced() {
    let source_db = TestDb::sqlite();
    let source = source_db.open().await;
    account(&source, "juliet", D).await;
    fill_account(&source, "juliet", D, "j").await;
    let dest_db = TestDb::new().await;
    let dest = dest_db.open().await;
    account(&dest, "romeo", D).await;

    let err = source.copy_to(&dest, false, |_| {}).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::NotEmpty(table) if table == "users"),
        "{err:?}"
    );
    assert!(dest.user_exists("romeo", D).await.unwrap());

    let copied = source.copy_to(&dest, true, |_| {}).await.unwrap();
    assert_eq!(copied[0].table, "users");
    assert_eq!(copied[0].rows, 1);
    let dest = dest_db.open().await;
    assert!(!dest.user_exists("romeo", D).await.unwrap());
    assert_eq!(
        account_data(&dest, "juliet", D).await,
        account_data(&source, "juliet", D).await
    );
}

#[tokio::test]
async fn stores_at_different_schema_versions_are_refused() {
    let source_db = TestDb::sqlite();
    let source = source_db.open().await;
    let dest_db = TestDb::new().await;
    let dest = dest_db.open().await;
    mark_newer(&dest_db.url()).await;
    let err = source.copy_to(&dest, false, |_| {}).await.unwrap_err();
    assert!(matches!(err, StoreError::SchemaMismatch { .. }), "{err:?}");
}

/// Records a schema version above every one this build knows, as a newer build would.
async fn mark_newer(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
        .bind(1_000_000_i64)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}
