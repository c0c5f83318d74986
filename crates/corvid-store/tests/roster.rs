//! The `Rosters` contract on a real database (SQLite, or PostgreSQL: see common/mod.rs).

mod common;

use common::{TestDb, account, item, temp_store};
use corvid_store::{RosterItem, Rosters, SqlStore, StoreError, Subscription};

const U: &str = "juliet";
const D: &str = "capulet.example";

async fn juliet() -> (TestDb, SqlStore) {
    let (db, store) = temp_store().await;
    account(&store, U, D).await;
    (db, store)
}

/// An item with every field set to a non-default value.
fn full_item(jid: &str) -> RosterItem {
    RosterItem {
        jid: jid.to_owned(),
        name: Some("Romeo ♥".to_owned()),
        subscription: Subscription::Both,
        pending_out: true,
        pending_in: true,
        approved: true,
        groups: vec!["Montagues".to_owned(), "Verona".to_owned()],
        in_roster: true,
        pending_in_stanza: Some("<presence type='subscribe'/>".to_owned()),
    }
}

#[tokio::test]
async fn new_account_has_an_empty_roster_at_version_0() {
    let (_db, store) = juliet().await;
    assert_eq!(store.roster(U, D).await.unwrap(), (0, vec![]));
    assert_eq!(store.roster_version(U, D).await.unwrap(), 0);
    assert_eq!(
        store
            .roster_item(U, D, "romeo@montague.example")
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .pending_subscription_requests(U, D)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .contacts_with_subscription(U, D)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn stored_item_round_trips_every_field() {
    let (_db, store) = juliet().await;
    let romeo = full_item("romeo@montague.example");
    let version = store.put_roster_item(U, D, &romeo).await.unwrap();

    assert_eq!(version, 1);
    assert_eq!(
        store.roster_item(U, D, &romeo.jid).await.unwrap(),
        Some(romeo.clone())
    );
    assert_eq!(store.roster(U, D).await.unwrap(), (1, vec![romeo]));
}

#[tokio::test]
async fn every_subscription_state_round_trips() {
    let (_db, store) = juliet().await;
    for (i, subscription) in [
        Subscription::None,
        Subscription::To,
        Subscription::From,
        Subscription::Both,
    ]
    .into_iter()
    .enumerate()
    {
        let contact = RosterItem {
            subscription,
            ..item(&format!("c{i}@example.org"))
        };
        store.put_roster_item(U, D, &contact).await.unwrap();
        assert_eq!(
            store.roster_item(U, D, &contact.jid).await.unwrap(),
            Some(contact)
        );
    }
}

#[tokio::test]
async fn groups_round_trip_in_order_whatever_their_characters() {
    let (_db, store) = juliet().await;
    let groups = vec![
        "Ünïcødé 家族 🌹".to_owned(),
        "with\nnewline".to_owned(),
        "comma, semicolon; tab\t".to_owned(),
        "".to_owned(),
        "Amis".to_owned(),
    ];
    let romeo = RosterItem {
        groups: groups.clone(),
        ..item("romeo@montague.example")
    };
    store.put_roster_item(U, D, &romeo).await.unwrap();

    let stored = store.roster_item(U, D, &romeo.jid).await.unwrap().unwrap();
    assert_eq!(stored.groups, groups);
    assert_eq!(store.roster(U, D).await.unwrap().1[0].groups, groups);
}

#[tokio::test]
async fn put_replaces_the_whole_item() {
    let (_db, store) = juliet().await;
    store
        .put_roster_item(U, D, &full_item("romeo@montague.example"))
        .await
        .unwrap();

    let replacement = RosterItem {
        groups: vec!["Exiles".to_owned()],
        ..item("romeo@montague.example")
    };
    store.put_roster_item(U, D, &replacement).await.unwrap();
    assert_eq!(
        store.roster_item(U, D, &replacement.jid).await.unwrap(),
        Some(replacement.clone())
    );

    let no_groups = item("romeo@montague.example");
    store.put_roster_item(U, D, &no_groups).await.unwrap();
    assert_eq!(
        store.roster_item(U, D, &no_groups.jid).await.unwrap(),
        Some(no_groups)
    );
}

#[tokio::test]
async fn every_change_bumps_the_version_and_reads_do_not() {
    let (_db, store) = juliet().await;
    let romeo = item("romeo@montague.example");
    let nurse = item("nurse@capulet.example");

    assert_eq!(store.put_roster_item(U, D, &romeo).await.unwrap(), 1);
    assert_eq!(store.put_roster_item(U, D, &nurse).await.unwrap(), 2);
    // Storing an identical item is still a change request: it gets its own version.
    assert_eq!(store.put_roster_item(U, D, &romeo).await.unwrap(), 3);
    assert_eq!(
        store.remove_roster_item(U, D, &nurse.jid).await.unwrap(),
        Some(4)
    );

    store.roster(U, D).await.unwrap();
    store.roster_item(U, D, &romeo.jid).await.unwrap();
    store.pending_subscription_requests(U, D).await.unwrap();
    store.contacts_with_subscription(U, D).await.unwrap();
    assert_eq!(store.roster_version(U, D).await.unwrap(), 4);
    assert_eq!(store.roster(U, D).await.unwrap(), (4, vec![romeo]));
}

#[tokio::test]
async fn removing_an_absent_item_changes_nothing() {
    let (_db, store) = juliet().await;
    store
        .put_roster_item(U, D, &item("romeo@montague.example"))
        .await
        .unwrap();

    assert_eq!(
        store
            .remove_roster_item(U, D, "tybalt@capulet.example")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.roster_version(U, D).await.unwrap(), 1);
}

#[tokio::test]
async fn removed_item_is_gone_with_its_groups() {
    let (_db, store) = juliet().await;
    let romeo = full_item("romeo@montague.example");
    store.put_roster_item(U, D, &romeo).await.unwrap();

    assert_eq!(
        store.remove_roster_item(U, D, &romeo.jid).await.unwrap(),
        Some(2)
    );
    assert_eq!(store.roster_item(U, D, &romeo.jid).await.unwrap(), None);
    assert_eq!(store.roster(U, D).await.unwrap(), (2, vec![]));

    // Re-adding starts fresh: no group of the removed item comes back.
    store
        .put_roster_item(U, D, &item(&romeo.jid))
        .await
        .unwrap();
    assert!(store.roster(U, D).await.unwrap().1[0].groups.is_empty());
}

#[tokio::test]
async fn hidden_items_are_not_in_the_roster_but_are_stored() {
    let (_db, store) = juliet().await;
    let stranger = RosterItem {
        jid: "stranger@elsewhere.example".to_owned(),
        pending_in: true,
        pending_in_stanza: Some("<presence type='subscribe'><status>hi</status></presence>".into()),
        in_roster: false,
        ..RosterItem::default()
    };
    let romeo = item("romeo@montague.example");
    store.put_roster_item(U, D, &stranger).await.unwrap();
    store.put_roster_item(U, D, &romeo).await.unwrap();

    assert_eq!(store.roster(U, D).await.unwrap(), (2, vec![romeo]));
    assert_eq!(
        store.roster_item(U, D, &stranger.jid).await.unwrap(),
        Some(stranger)
    );
}

#[tokio::test]
async fn roster_is_sorted_by_jid_bytewise() {
    let (_db, store) = juliet().await;
    for jid in [
        "romeo@montague.example",
        "benvolio@montague.example",
        "Zed@example.org",   // byte order: uppercase first
        "élise@example.org", // non-ASCII after ASCII
        "nurse@capulet.example",
    ] {
        store.put_roster_item(U, D, &item(jid)).await.unwrap();
    }

    let jids: Vec<String> = store
        .roster(U, D)
        .await
        .unwrap()
        .1
        .into_iter()
        .map(|i| i.jid)
        .collect();
    assert_eq!(
        jids,
        [
            "Zed@example.org",
            "benvolio@montague.example",
            "nurse@capulet.example",
            "romeo@montague.example",
            "élise@example.org",
        ]
    );
}

#[tokio::test]
async fn pending_requests_are_those_with_pending_in_and_a_stanza() {
    let (_db, store) = juliet().await;
    let with_stanza = |jid: &str, pending_in: bool| RosterItem {
        pending_in,
        pending_in_stanza: Some(format!("<presence from='{jid}' type='subscribe'/>")),
        ..RosterItem {
            jid: jid.to_owned(),
            ..RosterItem::default()
        }
    };
    store
        .put_roster_item(U, D, &with_stanza("b@example.org", true))
        .await
        .unwrap();
    store
        .put_roster_item(U, D, &with_stanza("a@example.org", true))
        .await
        .unwrap();
    // Answered request whose stanza was kept: not pending.
    store
        .put_roster_item(U, D, &with_stanza("c@example.org", false))
        .await
        .unwrap();
    // Pending without a stanza: nothing to present again.
    let bare_pending = RosterItem {
        pending_in: true,
        ..item("d@example.org")
    };
    store.put_roster_item(U, D, &bare_pending).await.unwrap();

    assert_eq!(
        store.pending_subscription_requests(U, D).await.unwrap(),
        vec![
            (
                "a@example.org".to_owned(),
                "<presence from='a@example.org' type='subscribe'/>".to_owned()
            ),
            (
                "b@example.org".to_owned(),
                "<presence from='b@example.org' type='subscribe'/>".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn contacts_with_subscription_exclude_none() {
    let (_db, store) = juliet().await;
    let with = |jid: &str, subscription| RosterItem {
        subscription,
        groups: vec![format!("g-{jid}")],
        ..item(jid)
    };
    let to = with("to@example.org", Subscription::To);
    let from = with("from@example.org", Subscription::From);
    let both = with("both@example.org", Subscription::Both);
    for contact in [
        &to,
        &from,
        &both,
        &with("none@example.org", Subscription::None),
    ] {
        store.put_roster_item(U, D, contact).await.unwrap();
    }

    assert_eq!(
        store.contacts_with_subscription(U, D).await.unwrap(),
        vec![both, from, to]
    );
}

#[tokio::test]
async fn rosters_and_versions_are_per_account() {
    let (_db, store) = juliet().await;
    account(&store, U, "other.example").await;
    account(&store, "romeo", D).await;
    let contact = full_item("tybalt@capulet.example");

    store.put_roster_item(U, D, &contact).await.unwrap();
    store
        .put_roster_item(U, D, &item("x@example.org"))
        .await
        .unwrap();
    assert_eq!(
        store
            .put_roster_item(U, "other.example", &item(&contact.jid))
            .await
            .unwrap(),
        1
    );

    assert_eq!(
        store.roster("romeo", D).await.unwrap(),
        (0, vec![]),
        "same domain, other user"
    );
    assert_eq!(
        store.roster(U, "other.example").await.unwrap(),
        (1, vec![item(&contact.jid)]),
        "same user, other domain"
    );
    assert_eq!(
        store.roster_item(U, D, &contact.jid).await.unwrap(),
        Some(contact)
    );
    assert_eq!(store.roster_version(U, D).await.unwrap(), 2);
}

#[tokio::test]
async fn writes_for_a_missing_account_are_not_found() {
    let (_db, store) = temp_store().await;
    let err = store
        .put_roster_item("ghost", D, &item("romeo@montague.example"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.roster("ghost", D).await.unwrap(), (0, vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_each_get_their_own_version() {
    let (_db, store) = juliet().await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_roster_item(U, D, &item(&format!("c{i:02}@example.org")))
                .await
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap());
    }
    versions.sort_unstable();

    assert_eq!(versions, (1..=30).collect::<Vec<i64>>());
    let (version, items) = store.roster(U, D).await.unwrap();
    assert_eq!((version, items.len()), (30, 30));
}

/// Changing and removing one contact at once: the item ends up whole (with all its groups)
/// or gone, neither side fails, and each change has a version of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changing_and_removing_a_contact_at_once_leaves_it_whole_or_gone() {
    let (db, store) = juliet().await;
    let other = db.open().await;
    let contact = "romeo@montague.example";
    let mut grouped = item(contact);
    grouped.groups = vec!["Friends".into(), "Verona".into(), "Montagues".into()];
    for _ in 0..20 {
        store.put_roster_item(U, D, &grouped).await.unwrap();
        let put = {
            let (other, grouped) = (other.clone(), grouped.clone());
            tokio::spawn(async move { other.put_roster_item(U, D, &grouped).await })
        };
        let removed = {
            let store = store.clone();
            tokio::spawn(async move { store.remove_roster_item(U, D, contact).await })
        };
        let put = put.await.unwrap().unwrap();
        let removed = removed.await.unwrap().unwrap();
        assert_ne!(Some(put), removed);
        let fresh = db.open().await;
        let left = fresh.roster_item(U, D, contact).await.unwrap();
        assert!(
            left.is_none() || left.as_ref() == Some(&grouped),
            "{left:?}"
        );
    }
}
