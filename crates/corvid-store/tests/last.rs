//! The `LastActivity` contract on a real database (SQLite, or PostgreSQL: see common/mod.rs).

mod common;

use common::{account, temp_store};
use corvid_store::{LastActivity, StoreError};

const U: &str = "juliet";
const D: &str = "capulet.example";

#[tokio::test]
async fn account_never_logged_out_has_no_last_activity() {
    let (_db, store) = temp_store().await;
    account(&store, U, D).await;
    assert_eq!(store.last_logout(U, D).await.unwrap(), None);
}

#[tokio::test]
async fn last_logout_round_trips_and_is_replaced() {
    let (_db, store) = temp_store().await;
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
    let (_db, store) = temp_store().await;
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
    let (_db, store) = temp_store().await;
    let err = store.set_last_logout("ghost", D, 1, "").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.last_logout("ghost", D).await.unwrap(), None);
}

/// Logouts arriving together are committed together; each caller still learns its own
/// outcome, and an unknown account in the batch fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logouts_each_get_their_own_outcome() {
    let (db, store) = temp_store().await;
    for i in 0..100 {
        account(&store, &format!("u{i}"), D).await;
    }
    let mut tasks = Vec::new();
    for i in 0..101 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // u100 does not exist.
            store
                .set_last_logout(&format!("u{i}"), D, 1_000 + i, &format!("s{i}"))
                .await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let outcome = task.await.unwrap();
        if i == 100 {
            assert!(matches!(outcome, Err(StoreError::NotFound)), "{outcome:?}");
        } else {
            assert!(outcome.is_ok(), "u{i}: {outcome:?}");
        }
    }
    store.close().await;
    let store = db.open().await;
    for i in [0i64, 57, 99] {
        assert_eq!(
            store.last_logout(&format!("u{i}"), D).await.unwrap(),
            Some((1_000 + i, format!("s{i}")))
        );
    }
    assert_eq!(store.last_logout("u100", D).await.unwrap(), None);
}
