//! The `Offline` contract on a real database (SQLite, or PostgreSQL: see common/mod.rs).

mod common;

use common::{TestDb, account, temp_store};
use corvid_store::{Offline, OfflineMessage, SqlStore, StoreError};

const U: &str = "juliet";
const D: &str = "capulet.example";
const QUOTA: usize = 100;

async fn juliet() -> (TestDb, SqlStore) {
    let (db, store) = temp_store().await;
    account(&store, U, D).await;
    (db, store)
}

fn stanzas(messages: &[OfflineMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.stanza.as_str()).collect()
}

#[tokio::test]
async fn new_account_has_no_offline_messages() {
    let (_db, store) = juliet().await;
    assert!(store.offline_messages(U, D).await.unwrap().is_empty());
    assert_eq!(store.count_offline(U, D).await.unwrap(), 0);
}

#[tokio::test]
async fn messages_come_back_oldest_first_with_their_stamps() {
    let (_db, store) = juliet().await;
    // Stamps are the caller's; the order is the order of storing, even if a clock stepped back.
    for (stanza, stamp) in [
        ("<message id='1'/>", 300),
        ("<message id='2'>♥</message>", 100),
        ("<message id='3'/>", 200),
    ] {
        store
            .store_offline(U, D, stanza, stamp, QUOTA)
            .await
            .unwrap();
    }

    let messages = store.offline_messages(U, D).await.unwrap();
    assert_eq!(
        stanzas(&messages),
        [
            "<message id='1'/>",
            "<message id='2'>♥</message>",
            "<message id='3'/>"
        ]
    );
    assert_eq!(
        messages.iter().map(|m| m.stamp_ms).collect::<Vec<_>>(),
        [300, 100, 200]
    );
    assert!(messages.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(store.count_offline(U, D).await.unwrap(), 3);
}

#[tokio::test]
async fn quota_refuses_the_message_over_it() {
    let (_db, store) = juliet().await;
    for i in 0..3 {
        store
            .store_offline(U, D, &format!("<message id='{i}'/>"), i, 3)
            .await
            .unwrap();
    }

    let err = store
        .store_offline(U, D, "<message id='over'/>", 9, 3)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::QuotaExceeded), "{err:?}");
    assert_eq!(store.count_offline(U, D).await.unwrap(), 3);
    assert!(
        !stanzas(&store.offline_messages(U, D).await.unwrap()).contains(&"<message id='over'/>")
    );

    // Taking one message frees one slot.
    let first = store.offline_messages(U, D).await.unwrap()[0].id;
    store.delete_offline(U, D, &[first]).await.unwrap();
    store
        .store_offline(U, D, "<message id='late'/>", 10, 3)
        .await
        .unwrap();
    assert_eq!(store.count_offline(U, D).await.unwrap(), 3);
}

#[tokio::test]
async fn zero_quota_stores_nothing() {
    let (_db, store) = juliet().await;
    let err = store
        .store_offline(U, D, "<message/>", 1, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::QuotaExceeded), "{err:?}");
    assert_eq!(store.count_offline(U, D).await.unwrap(), 0);
}

#[tokio::test]
async fn quota_counts_per_account() {
    let (_db, store) = juliet().await;
    account(&store, "romeo", D).await;
    store.store_offline(U, D, "<message/>", 1, 1).await.unwrap();
    store
        .store_offline("romeo", D, "<message/>", 1, 1)
        .await
        .unwrap();
    assert_eq!(store.count_offline("romeo", D).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stores_never_exceed_the_quota() {
    let (db, store) = juliet().await;
    // A second store on the same file stands for a second process.
    let other = db.open().await;
    const LIMIT: usize = 10;

    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .store_offline(U, D, &format!("<message id='{i}'/>"), i, LIMIT)
                .await
        }));
    }
    let (mut stored, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => stored += 1,
            Err(StoreError::QuotaExceeded) => refused += 1,
            Err(err) => panic!("unexpected error {err:?}"),
        }
    }

    assert_eq!((stored, refused), (LIMIT, 60 - LIMIT));
    assert_eq!(store.count_offline(U, D).await.unwrap(), LIMIT);
    // Each store knows only the offline messages it wrote itself (or found when it opened):
    // one server owns its database. Opened again, a store sees them all.
    let reopened = db.open().await;
    assert_eq!(reopened.offline_messages(U, D).await.unwrap().len(), LIMIT);
}

#[tokio::test]
async fn delete_removes_exactly_the_given_ids() {
    let (_db, store) = juliet().await;
    for i in 0..5 {
        store
            .store_offline(U, D, &format!("<message id='{i}'/>"), i, QUOTA)
            .await
            .unwrap();
    }
    let ids: Vec<i64> = store
        .offline_messages(U, D)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();

    store
        .delete_offline(U, D, &[ids[1], ids[3], 999_999])
        .await
        .unwrap();
    assert_eq!(
        stanzas(&store.offline_messages(U, D).await.unwrap()),
        [
            "<message id='0'/>",
            "<message id='2'/>",
            "<message id='4'/>"
        ]
    );

    store.delete_offline(U, D, &[]).await.unwrap();
    assert_eq!(store.count_offline(U, D).await.unwrap(), 3);
    store.delete_offline(U, D, &ids).await.unwrap();
    assert_eq!(store.count_offline(U, D).await.unwrap(), 0);
}

#[tokio::test]
async fn delete_cannot_reach_another_accounts_messages() {
    let (_db, store) = juliet().await;
    account(&store, "romeo", D).await;
    store
        .store_offline("romeo", D, "<message to='romeo'/>", 1, QUOTA)
        .await
        .unwrap();
    let romeos = store.offline_messages("romeo", D).await.unwrap();

    store.delete_offline(U, D, &[romeos[0].id]).await.unwrap();
    assert_eq!(store.offline_messages("romeo", D).await.unwrap(), romeos);
}

#[tokio::test]
async fn ids_are_never_reused() {
    let (_db, store) = juliet().await;
    store
        .store_offline(U, D, "<message id='a'/>", 1, QUOTA)
        .await
        .unwrap();
    let first = store.offline_messages(U, D).await.unwrap()[0].id;
    store.delete_offline(U, D, &[first]).await.unwrap();

    store
        .store_offline(U, D, "<message id='b'/>", 2, QUOTA)
        .await
        .unwrap();
    let second = store.offline_messages(U, D).await.unwrap()[0].id;
    assert!(second > first, "{second} after {first}");
    // A stale delete of the old id leaves the new message alone.
    store.delete_offline(U, D, &[first]).await.unwrap();
    assert_eq!(store.count_offline(U, D).await.unwrap(), 1);
}

#[tokio::test]
async fn storing_for_a_missing_account_is_not_found() {
    let (_db, store) = temp_store().await;
    let err = store
        .store_offline("ghost", D, "<message/>", 1, QUOTA)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.count_offline("ghost", D).await.unwrap(), 0);
}

#[tokio::test]
async fn stored_messages_survive_reopening() {
    let (db, store) = juliet().await;
    store
        .store_offline(U, D, "<message id='kept'/>", 42, QUOTA)
        .await
        .unwrap();
    let before = store.offline_messages(U, D).await.unwrap();
    store.close().await;

    let store = db.open().await;
    assert_eq!(store.offline_messages(U, D).await.unwrap(), before);
}
