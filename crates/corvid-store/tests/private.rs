//! The `PrivateXml` contract on a real database (SQLite, or PostgreSQL: see common/mod.rs).

mod common;

use common::{account, temp_store};
use corvid_store::{PrivateXml, StoreError};

const U: &str = "juliet";
const D: &str = "capulet.example";
const BOOKMARKS: &str = "storage:bookmarks";
const ROSTERNOTES: &str = "storage:rosternotes";

#[tokio::test]
async fn nothing_stored_reads_as_none() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    assert_eq!(store.private_xml(U, D, BOOKMARKS).await.unwrap(), None);
}

#[tokio::test]
async fn each_namespace_keeps_its_own_element() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    let bookmarks = "<storage xmlns='storage:bookmarks'><conference jid='chapel@verona.example' name='Chapelle ⛪'/></storage>";
    let notes = "<storage xmlns='storage:rosternotes'/>";

    store
        .set_private_xml(U, D, BOOKMARKS, bookmarks)
        .await
        .unwrap();
    store
        .set_private_xml(U, D, ROSTERNOTES, notes)
        .await
        .unwrap();

    assert_eq!(
        store.private_xml(U, D, BOOKMARKS).await.unwrap().as_deref(),
        Some(bookmarks)
    );
    assert_eq!(
        store
            .private_xml(U, D, ROSTERNOTES)
            .await
            .unwrap()
            .as_deref(),
        Some(notes)
    );
    assert_eq!(store.private_xml(U, D, "other:ns").await.unwrap(), None);
}

#[tokio::test]
async fn set_replaces_only_its_namespace() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    store
        .set_private_xml(U, D, BOOKMARKS, "<old/>")
        .await
        .unwrap();
    store
        .set_private_xml(U, D, ROSTERNOTES, "<notes/>")
        .await
        .unwrap();

    store
        .set_private_xml(U, D, BOOKMARKS, "<new/>")
        .await
        .unwrap();
    assert_eq!(
        store.private_xml(U, D, BOOKMARKS).await.unwrap().as_deref(),
        Some("<new/>")
    );
    assert_eq!(
        store
            .private_xml(U, D, ROSTERNOTES)
            .await
            .unwrap()
            .as_deref(),
        Some("<notes/>")
    );
}

#[tokio::test]
async fn private_xml_is_per_account() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    account(&store, "romeo", D).await;
    store
        .set_private_xml(U, D, BOOKMARKS, "<juliet/>")
        .await
        .unwrap();

    assert_eq!(
        store.private_xml("romeo", D, BOOKMARKS).await.unwrap(),
        None
    );
    store
        .set_private_xml("romeo", D, BOOKMARKS, "<romeo/>")
        .await
        .unwrap();
    assert_eq!(
        store.private_xml(U, D, BOOKMARKS).await.unwrap().as_deref(),
        Some("<juliet/>")
    );
}

#[tokio::test]
async fn set_for_missing_account_is_not_found() {
    let (_db, store) = temp_store().await;
    let err = store
        .set_private_xml("ghost", D, BOOKMARKS, "<x/>")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}
