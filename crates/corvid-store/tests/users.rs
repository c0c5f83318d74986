//! The `Users` contract on a real database (SQLite, or PostgreSQL: see common/mod.rs).

mod common;

use common::{AccountData, account, account_data, creds, fill_account, pair, temp_store};
use corvid_store::{Offline, Rosters, StoreError, Users};

#[tokio::test]
async fn created_user_has_its_credentials() {
    let (_db, store) = temp_store().await;
    store
        .create_user("juliet", "capulet.example", &creds(1))
        .await
        .unwrap();

    assert!(
        store
            .user_exists("juliet", "capulet.example")
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .credentials("juliet", "capulet.example")
            .await
            .unwrap(),
        Some(creds(1))
    );
}

#[tokio::test]
async fn unknown_user_has_no_credentials() {
    let (_db, store) = temp_store().await;
    assert!(
        !store
            .user_exists("romeo", "montague.example")
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .credentials("romeo", "montague.example")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn extreme_credentials_round_trip() {
    let (_db, store) = temp_store().await;
    let mut c = creds(7);
    c.iterations = u32::MAX;
    c.salt = (0..=255).collect();
    store
        .create_user("nurse", "capulet.example", &c)
        .await
        .unwrap();
    assert_eq!(
        store.credentials("nurse", "capulet.example").await.unwrap(),
        Some(c)
    );
}

#[tokio::test]
async fn duplicate_create_is_conflict_and_keeps_original() {
    let (_db, store) = temp_store().await;
    store
        .create_user("juliet", "capulet.example", &creds(1))
        .await
        .unwrap();

    let err = store
        .create_user("juliet", "capulet.example", &creds(2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(
        store
            .credentials("juliet", "capulet.example")
            .await
            .unwrap(),
        Some(creds(1))
    );
}

#[tokio::test]
async fn same_username_in_two_domains_are_separate_accounts() {
    let (_db, store) = temp_store().await;
    store
        .create_user("admin", "a.example", &creds(1))
        .await
        .unwrap();
    store
        .create_user("admin", "b.example", &creds(2))
        .await
        .unwrap();

    assert_eq!(
        store.credentials("admin", "a.example").await.unwrap(),
        Some(creds(1))
    );
    assert_eq!(
        store.credentials("admin", "b.example").await.unwrap(),
        Some(creds(2))
    );
    store.delete_user("admin", "a.example").await.unwrap();
    assert!(store.user_exists("admin", "b.example").await.unwrap());
}

#[tokio::test]
async fn set_credentials_replaces_them() {
    let (_db, store) = temp_store().await;
    store
        .create_user("juliet", "capulet.example", &creds(1))
        .await
        .unwrap();

    store
        .set_credentials("juliet", "capulet.example", &creds(9))
        .await
        .unwrap();
    assert_eq!(
        store
            .credentials("juliet", "capulet.example")
            .await
            .unwrap(),
        Some(creds(9))
    );
}

#[tokio::test]
async fn set_credentials_of_missing_user_is_not_found() {
    let (_db, store) = temp_store().await;
    let err = store
        .set_credentials("ghost", "capulet.example", &creds(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(!store.user_exists("ghost", "capulet.example").await.unwrap());
}

#[tokio::test]
async fn deleted_user_is_gone_and_can_be_recreated() {
    let (_db, store) = temp_store().await;
    store
        .create_user("juliet", "capulet.example", &creds(1))
        .await
        .unwrap();

    store
        .delete_user("juliet", "capulet.example")
        .await
        .unwrap();
    assert!(
        !store
            .user_exists("juliet", "capulet.example")
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .credentials("juliet", "capulet.example")
            .await
            .unwrap(),
        None
    );
    assert!(store.list_users(None).await.unwrap().is_empty());

    store
        .create_user("juliet", "capulet.example", &creds(2))
        .await
        .unwrap();
    assert_eq!(
        store
            .credentials("juliet", "capulet.example")
            .await
            .unwrap(),
        Some(creds(2))
    );
}

#[tokio::test]
async fn delete_missing_user_is_not_found() {
    let (_db, store) = temp_store().await;
    let err = store
        .delete_user("ghost", "capulet.example")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

#[tokio::test]
async fn list_users_is_sorted_by_domain_then_username() {
    let (_db, store) = temp_store().await;
    for (user, domain) in [
        ("romeo", "montague.example"),
        ("tybalt", "capulet.example"),
        ("benvolio", "montague.example"),
        ("juliet", "capulet.example"),
        ("Zed", "capulet.example"), // byte order: uppercase before lowercase
    ] {
        store.create_user(user, domain, &creds(1)).await.unwrap();
    }

    assert_eq!(
        store.list_users(None).await.unwrap(),
        vec![
            pair("Zed", "capulet.example"),
            pair("juliet", "capulet.example"),
            pair("tybalt", "capulet.example"),
            pair("benvolio", "montague.example"),
            pair("romeo", "montague.example"),
        ]
    );
}

#[tokio::test]
async fn list_users_filters_by_domain() {
    let (_db, store) = temp_store().await;
    store
        .create_user("romeo", "montague.example", &creds(1))
        .await
        .unwrap();
    store
        .create_user("juliet", "capulet.example", &creds(1))
        .await
        .unwrap();
    store
        .create_user("benvolio", "montague.example", &creds(1))
        .await
        .unwrap();

    assert_eq!(
        store.list_users(Some("montague.example")).await.unwrap(),
        vec![
            pair("benvolio", "montague.example"),
            pair("romeo", "montague.example")
        ]
    );
    assert!(
        store
            .list_users(Some("nowhere.example"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn delete_user_removes_all_its_data_and_only_its_data() {
    let (_db, store) = temp_store().await;
    account(&store, "juliet", "capulet.example").await;
    account(&store, "romeo", "montague.example").await;
    fill_account(&store, "juliet", "capulet.example", "j").await;
    fill_account(&store, "romeo", "montague.example", "r").await;
    let romeo_before = account_data(&store, "romeo", "montague.example").await;
    assert_ne!(romeo_before, AccountData::default());

    store
        .delete_user("juliet", "capulet.example")
        .await
        .unwrap();

    assert_eq!(
        account_data(&store, "juliet", "capulet.example").await,
        AccountData::default()
    );
    assert_eq!(
        account_data(&store, "romeo", "montague.example").await,
        romeo_before
    );

    // A new account of the same name starts from nothing, roster version included.
    account(&store, "juliet", "capulet.example").await;
    assert_eq!(
        account_data(&store, "juliet", "capulet.example").await,
        AccountData::default()
    );
    assert_eq!(
        store
            .roster_version("juliet", "capulet.example")
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn delete_missing_user_keeps_other_data() {
    let (_db, store) = temp_store().await;
    account(&store, "romeo", "montague.example").await;
    fill_account(&store, "romeo", "montague.example", "r").await;
    let before = account_data(&store, "romeo", "montague.example").await;

    // Same username, other domain: not the same account.
    let err = store
        .delete_user("romeo", "capulet.example")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(
        account_data(&store, "romeo", "montague.example").await,
        before
    );
}

#[tokio::test]
async fn data_for_a_missing_account_is_refused() {
    let (_db, store) = temp_store().await;
    // An account deleted while a session still writes for it must not leave rows behind
    // for a future account of the same name.
    let err = store
        .store_offline("ghost", "capulet.example", "<message/>", 1, 100)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store
        .put_roster_item("ghost", "capulet.example", &common::item("a@b.example"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(
        account_data(&store, "ghost", "capulet.example").await,
        AccountData::default()
    );
}

/// Writes racing the deletion of their account (a session still busy while an admin removes
/// the account) either land before it, and go with the account, or fail as on a missing
/// account; nothing else fails, and nothing is left for a later account of the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_racing_the_deletion_of_their_account_land_before_it_or_find_it_gone() {
    use corvid_store::{Blocklists, LastActivity, PrivateXml, VCards};
    const D: &str = "capulet.example";
    let (db, store) = temp_store().await;
    // The deletion comes from another process, as `corvid user remove` does.
    let admin = db.open().await;
    for round in 0..8 {
        let user = format!("juliet{round}");
        account(&store, &user, D).await;
        let mut writes = Vec::new();
        for i in 0..6 {
            let (store, user) = (store.clone(), user.clone());
            writes.push(tokio::spawn(async move {
                let contact = format!("c{i}@montague.example");
                store
                    .put_roster_item(&user, D, &common::item(&contact))
                    .await?;
                store.store_offline(&user, D, "<message/>", i, 100).await?;
                store.set_vcard(&user, D, "<vCard/>", Some("h")).await?;
                store.set_private_xml(&user, D, "ns", "<x/>").await?;
                store.block(&user, D, &[contact]).await?;
                store.set_last_logout(&user, D, i, "gone").await?;
                store
                    .remove_roster_item(&user, D, "c0@montague.example")
                    .await?;
                Ok::<_, StoreError>(())
            }));
        }
        let deleted = {
            let (admin, user) = (admin.clone(), user.clone());
            tokio::spawn(async move { admin.delete_user(&user, D).await })
        };
        for write in writes {
            match write.await.unwrap() {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => panic!("round {round}: a write failed otherwise: {e:?}"),
            }
        }
        deleted.await.unwrap().unwrap();
        // Read by a store that has cached nothing.
        let fresh = db.open().await;
        assert_eq!(
            account_data(&fresh, &user, D).await,
            AccountData::default(),
            "round {round}"
        );
    }
}
