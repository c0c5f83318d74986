//! The `LastActivity` contract on a real SQLite file.

mod common;

use common::{account, temp_store};
use corvid_store::{LastActivity, StoreError};

const U: &str = "juliet";
const D: &str = "capulet.example";

#[tokio::test]
async fn account_never_logged_out_has_no_last_activity() {
    let (_dir, store) = temp_store().await;
    account(&store, U, D).await;
    assert_eq!(store.last_logout(U, D).await.unwrap(), None);
}

#[tokio::test]
async fn last_logout_round_trips_and_is_replaced() {
    let (_dir, store) = temp_store().await;
    account(&store, U, D).await;
    store
        .set_last_logout(U, D, 1_700_000_000, "Parting is such sweet sorrow ☾")
        .await
        .unwrap();
    assert_eq!(
        store.last_logout(U, D).await.unwrap(),
        Some((1_700_000_000, "Parting is such sweet sorrow ☾".to_owned()))
    );

    store
        .set_last_logout(U, D, 1_700_000_500, "")
        .await
        .unwrap();
    assert_eq!(
        store.last_logout(U, D).await.unwrap(),
        Some((1_700_000_500, String::new()))
    );
}

#[tokio::test]
async fn last_activity_is_per_account() {
    let (_dir, store) = temp_store().await;
    account(&store, U, D).await;
    account(&store, "romeo", D).await;
    store.set_last_logout(U, D, 1, "j").await.unwrap();
    store.set_last_logout("romeo", D, 2, "r").await.unwrap();

    assert_eq!(
        store.last_logout(U, D).await.unwrap(),
        Some((1, "j".to_owned()))
    );
    assert_eq!(
        store.last_logout("romeo", D).await.unwrap(),
        Some((2, "r".to_owned()))
    );
}

#[tokio::test]
async fn set_for_missing_account_is_not_found() {
    let (_dir, store) = temp_store().await;
    let err = store.set_last_logout("ghost", D, 1, "").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.last_logout("ghost", D).await.unwrap(), None);
}
