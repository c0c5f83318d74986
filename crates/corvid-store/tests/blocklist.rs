//! The `Blocklists` contract on a real database (SQLite, or PostgreSQL: see common/mod.rs).

mod common;

use common::{account, temp_store};
use corvid_store::{Blocklists, StoreError};

const U: &str = "juliet";
const D: &str = "capulet.example";

fn jids(list: &[&str]) -> Vec<String> {
    list.iter().map(|j| (*j).to_owned()).collect()
}

#[tokio::test]
async fn new_blocklist_is_empty() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    assert!(store.blocklist(U, D).await.unwrap().is_empty());
}

#[tokio::test]
async fn blocked_jids_are_listed_sorted() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    store
        .block(
            U,
            D,
            &jids(&[
                "tybalt@capulet.example",
                "montague.example",
                "Paris@verona.example/phone",
            ]),
        )
        .await
        .unwrap();

    assert_eq!(
        store.blocklist(U, D).await.unwrap(),
        jids(&[
            "Paris@verona.example/phone",
            "montague.example",
            "tybalt@capulet.example"
        ])
    );
}

#[tokio::test]
async fn blocking_is_idempotent() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    store
        .block(U, D, &jids(&["tybalt@capulet.example"]))
        .await
        .unwrap();

    store
        .block(
            U,
            D,
            &jids(&[
                "tybalt@capulet.example",
                "paris@verona.example",
                "paris@verona.example",
            ]),
        )
        .await
        .unwrap();
    store.block(U, D, &[]).await.unwrap();
    assert_eq!(
        store.blocklist(U, D).await.unwrap(),
        jids(&["paris@verona.example", "tybalt@capulet.example"])
    );
}

#[tokio::test]
async fn unblock_removes_only_the_given_jids() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    store
        .block(
            U,
            D,
            &jids(&["a@example.org", "b@example.org", "c@example.org"]),
        )
        .await
        .unwrap();

    store
        .unblock(
            U,
            D,
            &jids(&["a@example.org", "c@example.org", "never@example.org"]),
        )
        .await
        .unwrap();
    assert_eq!(
        store.blocklist(U, D).await.unwrap(),
        jids(&["b@example.org"])
    );
    store
        .unblock(U, D, &jids(&["a@example.org"]))
        .await
        .unwrap();
    assert_eq!(
        store.blocklist(U, D).await.unwrap(),
        jids(&["b@example.org"])
    );
}

#[tokio::test]
async fn unblock_all_empties_only_this_blocklist() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    account(&store, "romeo", D).await;
    store
        .block(U, D, &jids(&["a@example.org", "b@example.org"]))
        .await
        .unwrap();
    store
        .block("romeo", D, &jids(&["tybalt@capulet.example"]))
        .await
        .unwrap();

    store.unblock_all(U, D).await.unwrap();
    assert!(store.blocklist(U, D).await.unwrap().is_empty());
    assert_eq!(
        store.blocklist("romeo", D).await.unwrap(),
        jids(&["tybalt@capulet.example"])
    );
    store.unblock_all(U, D).await.unwrap();
}

#[tokio::test]
async fn blocking_for_a_missing_account_is_not_found_and_stores_nothing() {
    let (_db, store) = temp_store().await;
    let err = store
        .block("ghost", D, &jids(&["a@example.org"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(store.blocklist("ghost", D).await.unwrap().is_empty());
}

/// Two sessions blocking the same JIDs at once, in different orders, both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_the_same_jids_at_once_in_any_order_succeeds() {
    let (db, store) = temp_store().await;
    account(&store, U, D).await;
    let other = db.open().await;
    for round in 0..20 {
        let list: Vec<String> = (0..5)
            .map(|i| format!("r{round}-{i}@spam.example"))
            .collect();
        let mut reversed = list.clone();
        reversed.reverse();
        let a = {
            let (store, list) = (store.clone(), list.clone());
            tokio::spawn(async move { store.block(U, D, &list).await })
        };
        let b = {
            let other = other.clone();
            tokio::spawn(async move { other.block(U, D, &reversed).await })
        };
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
    }
    assert_eq!(store.blocklist(U, D).await.unwrap().len(), 100);
}
