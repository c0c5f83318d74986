//! The `Blocklists` contract on a real SQLite file.

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
    let (_dir, store) = temp_store().await;
    account(&store, U, D).await;
    assert!(store.blocklist(U, D).await.unwrap().is_empty());
}

#[tokio::test]
async fn blocked_jids_are_listed_sorted() {
    let (_dir, store) = temp_store().await;
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
    let (_dir, store) = temp_store().await;
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
    let (_dir, store) = temp_store().await;
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
    let (_dir, store) = temp_store().await;
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
    let (_dir, store) = temp_store().await;
    let err = store
        .block("ghost", D, &jids(&["a@example.org"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(store.blocklist("ghost", D).await.unwrap().is_empty());
}
