//! The migration lists and what running them does to databases left by older builds.

use super::*;
use crate::sql::test_db::test_store;

const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

#[test]
fn versions_are_positive_and_strictly_increasing() {
    for backend in BACKENDS {
        let versions: Vec<i64> = for_backend(backend).iter().map(|m| m.version).collect();
        assert!(versions.first().is_some_and(|v| *v >= 1), "{versions:?}");
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    }
}

/// A version means one schema on every backend: each list has every version.
#[test]
fn every_backend_has_every_version() {
    let versions =
        |backend| -> Vec<i64> { for_backend(backend).iter().map(|m| m.version).collect() };
    assert_eq!(versions(Backend::Sqlite), versions(Backend::Postgres));
}

#[tokio::test]
async fn a_version_1_database_is_upgraded_keeping_its_accounts() {
    use crate::{Rosters, Users};

    let (db, store) = test_store().await;
    // Turn it back into what a version-1 build left behind, with one account.
    for table in [
        "push_registrations",
        "archive_messages",
        "archive_prefs",
        "pubsub_items",
        "pubsub_subscriptions",
        "pubsub_affiliations",
        "pubsub_nodes",
        "muc_affiliations",
        "muc_rooms",
        "roster_groups",
        "roster_items",
        "roster_versions",
        "offline_messages",
        "vcards",
        "private_xml",
        "blocklist",
        "last_activity",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
            .execute(&store.pool)
            .await
            .unwrap();
    }
    sqlx::query("DELETE FROM schema_migrations WHERE version > 1")
        .execute(&store.pool)
        .await
        .unwrap();
    let creds = crate::sql::test_credentials();
    store
        .create_user("juliet", "capulet.example", &creds)
        .await
        .unwrap();
    store.close().await;

    let store = db.open().await;
    assert_eq!(
        applied_versions(&store).await.unwrap().into_iter().max(),
        for_backend(db.backend()).last().map(|m| m.version)
    );
    assert!(
        store
            .user_exists("juliet", "capulet.example")
            .await
            .unwrap()
    );
    let item = crate::RosterItem {
        jid: "romeo@montague.example".into(),
        ..Default::default()
    };
    assert_eq!(
        store
            .put_roster_item("juliet", "capulet.example", &item)
            .await
            .unwrap(),
        1
    );
}

/// Version 7 renumbers the messages of version 5's archive table: same order, stamps,
/// correspondents and stanzas, new ids, and numbering goes on above them.
#[tokio::test]
async fn a_version_6_archive_is_renumbered_keeping_order_and_stamps() {
    use crate::{Archive, ArchiveQuery, archive_stamp};

    let (db, store) = test_store().await;
    let mut conn = store.pool.acquire().await.unwrap();
    let version_5_table = match db.backend() {
        Backend::Sqlite => {
            "CREATE TABLE archive_messages (seq INTEGER PRIMARY KEY, archive TEXT NOT NULL,
             id TEXT NOT NULL, stamp_ms INTEGER NOT NULL, with_bare TEXT NOT NULL,
             with_full TEXT NOT NULL, stanza TEXT NOT NULL)"
        }
        Backend::Postgres => {
            r#"CREATE TABLE archive_messages (seq BIGINT PRIMARY KEY,
             archive TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
             stamp_ms BIGINT NOT NULL, with_bare TEXT COLLATE "C" NOT NULL,
             with_full TEXT COLLATE "C" NOT NULL, stanza TEXT NOT NULL)"#
        }
    };
    for statement in [
        "DROP TABLE archive_messages",
        version_5_table,
        "INSERT INTO archive_messages VALUES
         (1, 'j@x', 'aa', 1000, 'r@x', 'r@x/1', 'first'),
         (2, 'r@x', 'bb', 1000, 'j@x', 'j@x/2', 'other'),
         (3, 'j@x', 'cc', 1000, 'n@x', 'n@x', 'second'),
         (4, 'j@x', 'dd', 2000, 'r@x', 'r@x/1', 'third')",
        "DELETE FROM schema_migrations WHERE version = 7",
    ] {
        sqlx::raw_sql(statement).execute(&mut *conn).await.unwrap();
    }
    drop(conn);
    store.close().await;

    let store = db.open().await;
    let query = ArchiveQuery {
        max: 10,
        ..Default::default()
    };
    let page = store.query_archive("j@x", &query).await.unwrap();
    let got: Vec<(&str, i64, &str)> = page
        .messages
        .iter()
        .map(|m| (m.stanza.as_str(), m.stamp_ms, m.with_full.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("first", 1000, "r@x/1"),
            ("second", 1000, "n@x"),
            ("third", 2000, "r@x/1")
        ]
    );
    let with_r = ArchiveQuery {
        with: Some(crate::With::Bare("r@x".into())),
        ..query.clone()
    };
    let page = store.query_archive("j@x", &with_r).await.unwrap();
    assert_eq!(page.messages.len(), 2);
    let other = store.query_archive("r@x", &query).await.unwrap();
    assert_eq!(other.messages[0].stanza, "other");
    assert!(archive_stamp(store.next_archive_seq()) > 2000);
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let (db, store) = test_store().await;
    sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
        .bind(i64::MAX)
        .execute(&store.pool)
        .await
        .unwrap();
    store.close().await;
    let err = SqlStore::open(&db.url()).await.unwrap_err();
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
