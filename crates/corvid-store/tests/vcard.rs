//! The `VCards` contract on a real database (SQLite, or PostgreSQL: see common/mod.rs).

mod common;

use common::{account, temp_store};
use corvid_store::{StoreError, VCards};

const U: &str = "juliet";
const D: &str = "capulet.example";

#[tokio::test]
async fn account_without_vcard_has_none() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    assert_eq!(store.vcard(U, D).await.unwrap(), None);
    assert_eq!(store.photo_hash(U, D).await.unwrap(), None);
}

#[tokio::test]
async fn vcard_and_photo_hash_round_trip() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    let xml = "<vCard xmlns='vcard-temp'><FN>Juliet Capulet ♥</FN><PHOTO/></vCard>";
    let hash = "sha1:01b87fcd030b72895ff8e88db57ec525450f000d";

    store.set_vcard(U, D, xml, Some(hash)).await.unwrap();
    assert_eq!(store.vcard(U, D).await.unwrap().as_deref(), Some(xml));
    assert_eq!(store.photo_hash(U, D).await.unwrap().as_deref(), Some(hash));
}

#[tokio::test]
async fn set_vcard_replaces_vcard_and_hash() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    store
        .set_vcard(U, D, "<vCard><PHOTO/></vCard>", Some("old"))
        .await
        .unwrap();

    store.set_vcard(U, D, "<vCard/>", None).await.unwrap();
    assert_eq!(
        store.vcard(U, D).await.unwrap().as_deref(),
        Some("<vCard/>")
    );
    assert_eq!(store.photo_hash(U, D).await.unwrap(), None);

    store
        .set_vcard(U, D, "<vCard/>", Some("new"))
        .await
        .unwrap();
    assert_eq!(
        store.photo_hash(U, D).await.unwrap().as_deref(),
        Some("new")
    );
}

#[tokio::test]
async fn vcards_are_per_account() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    account(&store, "romeo", D).await;
    account(&store, U, "other.example").await;
    store
        .set_vcard(U, D, "<vCard>J</vCard>", Some("j"))
        .await
        .unwrap();
    store
        .set_vcard("romeo", D, "<vCard>R</vCard>", Some("r"))
        .await
        .unwrap();

    assert_eq!(
        store.vcard(U, D).await.unwrap().as_deref(),
        Some("<vCard>J</vCard>")
    );
    assert_eq!(
        store.photo_hash("romeo", D).await.unwrap().as_deref(),
        Some("r")
    );
    assert_eq!(store.vcard(U, "other.example").await.unwrap(), None);
}

#[tokio::test]
async fn set_vcard_of_missing_account_is_not_found() {
    let (_db, store) = temp_store().await;
    let err = store
        .set_vcard("ghost", D, "<vCard/>", None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.vcard("ghost", D).await.unwrap(), None);
}

#[tokio::test]
async fn photo_hash_survives_reopening_and_removal_is_seen() {
    let (db, store) = temp_store().await;
    account(&store, U, D).await;
    account(&store, "romeo", D).await;
    store
        .set_vcard(U, D, "<vCard xmlns='vcard-temp'/>", Some("h1"))
        .await
        .unwrap();
    store
        .set_vcard("romeo", D, "<vCard xmlns='vcard-temp'/>", None)
        .await
        .unwrap();
    store.close().await;

    let store = db.open().await;
    assert_eq!(store.photo_hash(U, D).await.unwrap().as_deref(), Some("h1"));
    assert_eq!(store.photo_hash("romeo", D).await.unwrap(), None);
    // The photo removed, then set again: each answer follows the last write.
    store
        .set_vcard(U, D, "<vCard xmlns='vcard-temp'/>", None)
        .await
        .unwrap();
    assert_eq!(store.photo_hash(U, D).await.unwrap(), None);
    store
        .set_vcard(U, D, "<vCard xmlns='vcard-temp'/>", Some("h2"))
        .await
        .unwrap();
    assert_eq!(store.photo_hash(U, D).await.unwrap().as_deref(), Some("h2"));
    store
        .set_vcard("romeo", D, "<vCard xmlns='vcard-temp'/>", Some("r1"))
        .await
        .unwrap();
    assert_eq!(
        store.photo_hash("romeo", D).await.unwrap().as_deref(),
        Some("r1")
    );
}
