//! Opening the store: URL forms, reopening, and several stores (processes) on one database.

mod common;

use common::{TestDb, account, account_data, creds, fill_account, pair, temp_store};
use corvid_store::{SqlStore, StoreError, Users};

#[tokio::test]
async fn reopening_keeps_data() {
    let (db, store) = temp_store().await;
    store
        .create_user("juliet", "capulet.example", &creds(1))
        .await
        .unwrap();
    store.close().await;

    // Migrations already applied: reopening twice must neither fail nor touch the data.
    for _ in 0..2 {
        let store = db.open().await;
        assert_eq!(
            store
                .credentials("juliet", "capulet.example")
                .await
                .unwrap(),
            Some(creds(1))
        );
        store.close().await;
    }
}

#[tokio::test]
async fn reopening_keeps_every_kind_of_account_data() {
    let (db, store) = temp_store().await;
    account(&store, "juliet", "capulet.example").await;
    fill_account(&store, "juliet", "capulet.example", "j").await;
    let before = account_data(&store, "juliet", "capulet.example").await;
    store.close().await;

    let store = db.open().await;
    assert_eq!(
        account_data(&store, "juliet", "capulet.example").await,
        before
    );
    assert_eq!(before.roster.0, 2, "two roster writes, two versions");
}

#[tokio::test]
async fn both_spellings_of_the_url_open_the_same_database() {
    let (db, a) = temp_store().await;
    a.create_user("juliet", "capulet.example", &creds(1))
        .await
        .unwrap();
    let b = SqlStore::open(&db.other_url_form()).await.unwrap();
    assert!(b.user_exists("juliet", "capulet.example").await.unwrap());
}

#[tokio::test]
async fn both_sqlite_url_forms_open_the_same_file_and_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.sqlite");
    let path = path.to_str().unwrap();

    let a = SqlStore::open(&format!("sqlite:{path}")).await.unwrap();
    assert!(std::path::Path::new(path).exists());
    a.create_user("juliet", "capulet.example", &creds(1))
        .await
        .unwrap();

    let b = SqlStore::open(&format!("sqlite://{path}")).await.unwrap();
    assert!(b.user_exists("juliet", "capulet.example").await.unwrap());
}

#[tokio::test]
async fn open_in_dir_creates_missing_dir_with_url_characters_in_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("da ta?#%20x").join("nested");

    let store = SqlStore::open_in_dir(&data_dir).await.unwrap();
    store
        .create_user("juliet", "capulet.example", &creds(1))
        .await
        .unwrap();
    assert!(data_dir.join("corvid.sqlite").exists());
}

#[tokio::test]
async fn unsupported_url_is_rejected() {
    for url in [
        "mysql://localhost/corvid",
        "/var/lib/corvid/corvid.sqlite",
        "",
    ] {
        let err = SqlStore::open(url).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl(_)), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn two_stores_on_one_database_see_each_others_writes() {
    // The server and `corvid user add` each open their own store on the same database.
    let (db, server) = temp_store().await;
    let cli = db.open().await;

    cli.create_user("juliet", "capulet.example", &creds(1))
        .await
        .unwrap();
    assert_eq!(
        server
            .credentials("juliet", "capulet.example")
            .await
            .unwrap(),
        Some(creds(1))
    );

    server
        .set_credentials("juliet", "capulet.example", &creds(2))
        .await
        .unwrap();
    assert_eq!(
        cli.credentials("juliet", "capulet.example").await.unwrap(),
        Some(creds(2))
    );

    let err = server
        .create_user("juliet", "capulet.example", &creds(3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");

    cli.delete_user("juliet", "capulet.example").await.unwrap();
    assert!(
        !server
            .user_exists("juliet", "capulet.example")
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_database_all_succeed() {
    let (db, server) = temp_store().await;
    let cli = db.open().await;

    let mut tasks = Vec::new();
    for (name, store) in [("server", server.clone()), ("cli", cli.clone())] {
        for i in 0..25u8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let user = format!("{name}{i:02}");
                store
                    .create_user(&user, "capulet.example", &creds(i))
                    .await?;
                store
                    .set_credentials(&user, "capulet.example", &creds(i + 100))
                    .await?;
                store.list_users(Some("capulet.example")).await?;
                Ok::<_, StoreError>(())
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    let users = cli.list_users(None).await.unwrap();
    assert_eq!(users.len(), 50);
    assert_eq!(users[0], pair("cli00", "capulet.example"));
    assert_eq!(
        server
            .credentials("server24", "capulet.example")
            .await
            .unwrap(),
        Some(creds(124))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_opens_of_a_new_database_both_succeed() {
    let db = TestDb::new().await;
    let (url_a, url_b) = (db.url(), db.url());
    let (a, b) = tokio::join!(SqlStore::open(&url_a), SqlStore::open(&url_b));
    let (a, b) = (a.unwrap(), b.unwrap());
    a.create_user("juliet", "capulet.example", &creds(1))
        .await
        .unwrap();
    assert!(b.user_exists("juliet", "capulet.example").await.unwrap());
}
