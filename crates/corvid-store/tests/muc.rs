//! The `MucRooms` contract on a real database (SQLite, or PostgreSQL: see common/mod.rs).

mod common;

use common::temp_store;
use corvid_store::{MucRooms, StoredRoom};

const SERVICE: &str = "conference.verona.example";

fn room(name: &str) -> StoredRoom {
    StoredRoom {
        service: SERVICE.to_owned(),
        name: name.to_owned(),
        creator: "romeo@verona.example".to_owned(),
        config: "<x xmlns='jabber:x:data' type='submit'/>".to_owned(),
        subject: "Balcony 🌙 <&>".to_owned(),
        subject_nick: "romeo".to_owned(),
        affiliations: vec![
            ("juliet@capulet.example".to_owned(), "member".to_owned()),
            ("romeo@verona.example".to_owned(), "owner".to_owned()),
        ],
    }
}

#[tokio::test]
async fn saved_rooms_read_back_with_their_affiliations() {
    let (_db, store) = temp_store().await;
    assert!(store.muc_rooms(SERVICE).await.unwrap().is_empty());
    store.save_muc_room(&room("balcony")).await.unwrap();
    store.save_muc_room(&room("chapel")).await.unwrap();
    let rooms = store.muc_rooms(SERVICE).await.unwrap();
    assert_eq!(rooms, vec![room("balcony"), room("chapel")]);
    assert!(store.muc_rooms("other.example").await.unwrap().is_empty());
}

#[tokio::test]
async fn saving_again_replaces_config_and_affiliations() {
    let (_db, store) = temp_store().await;
    store.save_muc_room(&room("balcony")).await.unwrap();
    let mut changed = room("balcony");
    changed.config = "<x/>".to_owned();
    changed.affiliations = vec![("tybalt@capulet.example".to_owned(), "outcast".to_owned())];
    store.save_muc_room(&changed).await.unwrap();
    assert_eq!(store.muc_rooms(SERVICE).await.unwrap(), vec![changed]);
}

#[tokio::test]
async fn deleted_rooms_are_gone_and_deleting_twice_is_fine() {
    let (_db, store) = temp_store().await;
    store.save_muc_room(&room("balcony")).await.unwrap();
    store.save_muc_room(&room("chapel")).await.unwrap();
    store.delete_muc_room(SERVICE, "balcony").await.unwrap();
    store.delete_muc_room(SERVICE, "balcony").await.unwrap();
    let names: Vec<_> = store
        .muc_rooms(SERVICE)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["chapel"]);
}

#[tokio::test]
async fn rooms_survive_reopening_the_file() {
    let (db, store) = temp_store().await;
    store.save_muc_room(&room("balcony")).await.unwrap();
    store.close().await;
    let store = db.open().await;
    assert_eq!(
        store.muc_rooms(SERVICE).await.unwrap(),
        vec![room("balcony")]
    );
}

#[tokio::test]
async fn unknown_affiliations_are_refused() {
    let (_db, store) = temp_store().await;
    let mut bad = room("balcony");
    bad.affiliations = vec![("x@y".to_owned(), "king".to_owned())];
    assert!(store.save_muc_room(&bad).await.is_err());
    assert!(
        store.muc_rooms(SERVICE).await.unwrap().is_empty(),
        "a failed save leaves nothing behind"
    );
}

/// Saving a room while it is destroyed: the room ends up either gone or whole, and neither
/// side fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saving_and_destroying_a_room_at_once_leaves_it_whole_or_gone() {
    let (db, store) = temp_store().await;
    let other = db.open().await;
    for _ in 0..20 {
        store.save_muc_room(&room("balcony")).await.unwrap();
        let saved = {
            let other = other.clone();
            tokio::spawn(async move { other.save_muc_room(&room("balcony")).await })
        };
        let destroyed = {
            let store = store.clone();
            tokio::spawn(async move { store.delete_muc_room(SERVICE, "balcony").await })
        };
        saved.await.unwrap().unwrap();
        destroyed.await.unwrap().unwrap();
        let rooms = store.muc_rooms(SERVICE).await.unwrap();
        assert!(rooms.is_empty() || rooms == [room("balcony")], "{rooms:?}");
        store.delete_muc_room(SERVICE, "balcony").await.unwrap();
    }
}
