//! Keeping an archive: removal, trimming, expiry, preferences, a reopen, account deletion.

use super::{JULIET, ROMEO, entry, fill, ids, max, open, query};
use crate::sql::archive::DELETE_ARCHIVE;
use crate::{Archive, ArchiveEntry, ArchivePrefs, ArchiveQuery, archive_stamp};

const DAY_MS: i64 = 86_400_000;

#[tokio::test]
async fn removing_trimming_and_expiring_take_the_oldest_messages() {
    let (_dir, store) = open().await;
    // Juliet's m0 … m19 stamped 1000 … 1190, Romeo's r0 … r4 1000, 1100, … 1400, archived
    // in time order as a server archives them (a stamp is never below the one before).
    let all: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
    let mut entries: Vec<_> = (0..20)
        .map(|n| entry(JULIET, &all[n], 1000 + 10 * n as i64, ROMEO))
        .chain((0..5).map(|n| entry(ROMEO, &format!("r{n}"), 1000 + 100 * n, JULIET)))
        .collect();
    entries.sort_by_key(|entry| entry.seq);
    for entry in entries {
        store.append_archive(entry).await.unwrap();
    }
    store.archive_sync().await.unwrap();

    assert_eq!(store.remove_archive(JULIET, Some(1030)).await.unwrap(), 3);
    assert_eq!(ids(&query(&store, JULIET, max(100)).await), all[3..]);
    assert_eq!(store.trim_archive(JULIET, 12).await.unwrap(), 5);
    assert_eq!(ids(&query(&store, JULIET, max(100)).await), all[8..]);
    assert_eq!(store.trim_archive(JULIET, 12).await.unwrap(), 0);

    // Expiry reaches every archive: Juliet's up to 1120 (m8 … m12), Romeo's r0 and r1.
    assert_eq!(store.expire_archives(1130).await.unwrap(), 7);
    assert_eq!(ids(&query(&store, JULIET, max(100)).await), all[13..]);
    assert_eq!(
        ids(&query(&store, ROMEO, max(100)).await),
        ["r2", "r3", "r4"]
    );

    // Removing everything includes messages still queued.
    store
        .append_archive(entry(JULIET, "late", 5000, ROMEO))
        .await
        .unwrap();
    assert_eq!(store.remove_archive(JULIET, None).await.unwrap(), 8);
    assert_eq!(store.archive_bounds(JULIET).await.unwrap(), None);
    assert_eq!(
        ids(&query(&store, ROMEO, max(100)).await),
        ["r2", "r3", "r4"]
    );
    // An emptied archive takes new messages again.
    store
        .append_archive(entry(JULIET, "again", 6000, ROMEO))
        .await
        .unwrap();
    store.archive_sync().await.unwrap();
    assert_eq!(ids(&query(&store, JULIET, max(100)).await), ["again"]);
    // Keeping none empties an archive; an empty one has nothing to give.
    assert_eq!(store.trim_archive(ROMEO, 0).await.unwrap(), 3);
    assert_eq!(store.archive_bounds(ROMEO).await.unwrap(), None);
    assert_eq!(store.remove_archive(ROMEO, None).await.unwrap(), 0);
    assert_eq!(store.trim_archive(ROMEO, 0).await.unwrap(), 0);
}

#[tokio::test]
async fn preferences_round_trip() {
    let (_dir, store) = open().await;
    assert_eq!(store.archive_prefs(JULIET).await.unwrap(), None);
    let prefs = ArchivePrefs {
        default: "roster".into(),
        always: vec![ROMEO.into(), "nurse@capulet.example".into()],
        never: vec!["tybalt@capulet.example".into()],
    };
    store.set_archive_prefs(JULIET, &prefs).await.unwrap();
    assert_eq!(store.archive_prefs(JULIET).await.unwrap(), Some(prefs));
    let changed = ArchivePrefs {
        default: "never".into(),
        always: vec![],
        never: vec![],
    };
    store.set_archive_prefs(JULIET, &changed).await.unwrap();
    assert_eq!(store.archive_prefs(JULIET).await.unwrap(), Some(changed));
    assert_eq!(store.archive_prefs(ROMEO).await.unwrap(), None);
}

#[tokio::test]
async fn synced_messages_survive_a_reopen() {
    let (db, store) = open().await;
    let all = fill(&store, 300).await;
    store.close().await;
    drop(store);
    let store = db.open().await;
    assert_eq!(ids(&query(&store, JULIET, max(1000)).await), all);
    // A message numbered a day ahead (the clock stepped back since): after a reopen,
    // numbering goes on above it, so a new message still comes last.
    let ahead = entry(
        JULIET,
        "ahead",
        archive_stamp(store.next_archive_seq()) + DAY_MS,
        ROMEO,
    );
    store.append_archive(ahead.clone()).await.unwrap();
    store.close().await;
    drop(store);
    let store = db.open().await;
    let next = store.next_archive_seq();
    assert!(next > ahead.seq);
    store
        .append_archive(ArchiveEntry {
            seq: next,
            ..entry(JULIET, "after", 1, ROMEO)
        })
        .await
        .unwrap();
    store.archive_sync().await.unwrap();
    let last = query(
        &store,
        JULIET,
        ArchiveQuery {
            max: 1,
            from_end: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&last), ["after"]);
    assert!(last.messages[0].stamp_ms >= archive_stamp(ahead.seq));
}

/// A graceful shutdown loses nothing: closing the store writes what is still queued.
#[tokio::test]
async fn closing_the_store_writes_what_is_still_queued() {
    let (db, store) = open().await;
    for n in 0..50 {
        store
            .append_archive(entry(JULIET, &format!("q{n}"), 1000, ROMEO))
            .await
            .unwrap();
    }
    store.close().await;
    drop(store);
    let store = db.open().await;
    let expected: Vec<String> = (0..50).map(|n| format!("q{n}")).collect();
    assert_eq!(ids(&query(&store, JULIET, max(100)).await), expected);
}

#[tokio::test]
async fn deleting_an_account_removes_its_archive_and_no_other() {
    use crate::Users;
    let (_dir, store) = open().await;
    let creds = crate::sql::test_credentials();
    store
        .create_user("juliet", "capulet.example", &creds)
        .await
        .unwrap();
    fill(&store, 5).await;
    let prefs = ArchivePrefs {
        default: "always".into(),
        always: vec![],
        never: vec![],
    };
    store.set_archive_prefs(JULIET, &prefs).await.unwrap();
    store.set_archive_prefs(ROMEO, &prefs).await.unwrap();
    store
        .append_archive(entry(ROMEO, "r1", 1000, JULIET))
        .await
        .unwrap();
    // Queued, not synced: the deletion must still take it.
    store
        .append_archive(entry(JULIET, "queued", 9000, ROMEO))
        .await
        .unwrap();
    store
        .delete_user("juliet", "capulet.example")
        .await
        .unwrap();
    assert!(query(&store, JULIET, max(10)).await.messages.is_empty());
    assert_eq!(store.archive_prefs(JULIET).await.unwrap(), None);
    assert_eq!(ids(&query(&store, ROMEO, max(10)).await), ["r1"]);
    assert_eq!(store.archive_prefs(ROMEO).await.unwrap(), Some(prefs));
}

/// A new archive table must get its DELETE in [`DELETE_ARCHIVE`].
#[tokio::test]
async fn deleting_an_archive_clears_every_archive_table() {
    let (_db, store) = open().await;
    let tables: Vec<String> = crate::sql::test_db::table_names(&store)
        .await
        .into_iter()
        .filter(|name| name.starts_with("archive"))
        .collect();
    assert_eq!(tables.len(), 2);
    for table in tables {
        let statement = format!("DELETE FROM {table} WHERE archive = $1");
        assert!(
            DELETE_ARCHIVE.contains(&statement.as_str()),
            "{table} is not cleared with its archive"
        );
    }
}

/// Removals larger than one deletion chunk (5,000 messages) go on until nothing is left
/// to take, and count everything they took.
#[tokio::test]
async fn large_removals_take_every_message_over_several_transactions() {
    let (_dir, store) = open().await;
    let all = fill(&store, 12_001).await; // stamps 1000, 1010, … 121_000
    // Everything before the 11,000th message's stamp: three chunks, the last one short.
    let cut = 1000 + 10 * 11_000;
    assert_eq!(store.expire_archives(cut).await.unwrap(), 11_000);
    assert_eq!(ids(&query(&store, JULIET, max(2000)).await), all[11_000..]);
    assert_eq!(store.remove_archive(JULIET, None).await.unwrap(), 1001);

    let all = fill(&store, 10_000).await;
    assert_eq!(store.trim_archive(JULIET, 1).await.unwrap(), 9_999);
    assert_eq!(ids(&query(&store, JULIET, max(10)).await), all[9_999..]);
}
