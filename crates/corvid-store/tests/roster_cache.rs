//! The roster cache behind `contacts_with_subscription` and `subscription`: every write made
//! through the store is seen by the next read, however often the contacts were read before.

mod common;

use common::{account, item, temp_store};
use corvid_store::{RosterItem, Rosters, SqlStore, Subscription, Users};

const U: &str = "juliet";
const D: &str = "capulet.example";
const ROMEO: &str = "romeo@montague.example";

fn with(jid: &str, subscription: Subscription) -> RosterItem {
    RosterItem {
        subscription,
        ..item(jid)
    }
}

/// The contacts with a subscription, as `(jid, subscription)`.
async fn contacts(store: &SqlStore) -> Vec<(String, Subscription)> {
    let items = store.contacts_with_subscription(U, D).await.unwrap();
    items.into_iter().map(|i| (i.jid, i.subscription)).collect()
}

#[tokio::test]
async fn a_put_is_seen_by_the_next_read() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    assert!(contacts(&store).await.is_empty()); // cached: no contacts
    assert_eq!(
        store.subscription(U, D, ROMEO).await.unwrap(),
        Subscription::None
    );

    store
        .put_roster_item(U, D, &with(ROMEO, Subscription::From))
        .await
        .unwrap();
    assert_eq!(
        contacts(&store).await,
        vec![(ROMEO.to_owned(), Subscription::From)]
    );
    assert_eq!(
        store.subscription(U, D, ROMEO).await.unwrap(),
        Subscription::From
    );

    let mut both = with(ROMEO, Subscription::Both);
    both.groups = vec!["Montagues".into()];
    store.put_roster_item(U, D, &both).await.unwrap();
    assert_eq!(
        store.contacts_with_subscription(U, D).await.unwrap(),
        vec![both]
    );
    assert_eq!(
        store.subscription(U, D, ROMEO).await.unwrap(),
        Subscription::Both
    );

    store
        .put_roster_item(U, D, &with(ROMEO, Subscription::None))
        .await
        .unwrap();
    assert!(contacts(&store).await.is_empty());
    assert_eq!(
        store.subscription(U, D, ROMEO).await.unwrap(),
        Subscription::None
    );
}

#[tokio::test]
async fn a_removal_is_seen_by_the_next_read() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    store
        .put_roster_item(U, D, &with(ROMEO, Subscription::To))
        .await
        .unwrap();
    assert_eq!(contacts(&store).await.len(), 1);
    store.remove_roster_item(U, D, ROMEO).await.unwrap();
    assert!(contacts(&store).await.is_empty());
    assert_eq!(
        store.subscription(U, D, ROMEO).await.unwrap(),
        Subscription::None
    );
}

#[tokio::test]
async fn deleting_the_account_forgets_its_contacts() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    store
        .put_roster_item(U, D, &with(ROMEO, Subscription::Both))
        .await
        .unwrap();
    assert_eq!(contacts(&store).await.len(), 1);
    store.delete_user(U, D).await.unwrap();
    account(&store, U, D).await; // the same name, a new account
    assert!(contacts(&store).await.is_empty());
}

#[tokio::test]
async fn other_accounts_are_not_affected() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    account(&store, "nurse", D).await;
    store
        .put_roster_item("nurse", D, &with(ROMEO, Subscription::Both))
        .await
        .unwrap();
    assert_eq!(
        store.subscription("nurse", D, ROMEO).await.unwrap(),
        Subscription::Both
    );
    store
        .put_roster_item(U, D, &with(ROMEO, Subscription::From))
        .await
        .unwrap();
    assert_eq!(
        store.subscription("nurse", D, ROMEO).await.unwrap(),
        Subscription::Both
    );
    assert_eq!(
        store.subscription(U, D, ROMEO).await.unwrap(),
        Subscription::From
    );
}

#[tokio::test]
async fn another_process_writes_are_seen_once_forgotten() {
    let (db, server) = temp_store().await;
    account(&server, U, D).await;
    assert!(contacts(&server).await.is_empty());
    // e.g. `corvid user` on the same database file while the server runs.
    let other = db.open().await;
    other
        .put_roster_item(U, D, &with(ROMEO, Subscription::Both))
        .await
        .unwrap();
    server.forget_cached_roster(U, D);
    assert_eq!(
        contacts(&server).await,
        vec![(ROMEO.to_owned(), Subscription::Both)]
    );
}
