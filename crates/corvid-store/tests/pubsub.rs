//! The `PubSubStore` contract on a real database (SQLite, or PostgreSQL: see common/mod.rs):
//! nodes and their members, publication order, `max_items`, and XEP-0059 paging over a
//! 1,000-item node.

mod common;

use common::{account, temp_store};
use corvid_store::{
    ItemPage, ItemQuery, PubSubStore, SqlStore, StoreError, StoredItem, StoredNode,
    StoredSubscription, Users,
};

const SERVICE: &str = "pubsub.verona.example";

fn node(name: &str) -> StoredNode {
    StoredNode {
        service: SERVICE.to_owned(),
        node: name.to_owned(),
        config: "<x xmlns='jabber:x:data' type='submit'>🌙 <&></x>".to_owned(),
        affiliations: vec![
            ("juliet@capulet.example".to_owned(), "publisher".to_owned()),
            ("romeo@verona.example".to_owned(), "owner".to_owned()),
        ],
        subscriptions: vec![
            subscription("juliet@capulet.example/balcony", "a1"),
            subscription("juliet@capulet.example/balcony", "b2"),
            subscription("nurse@capulet.example", "c3"),
        ],
    }
}

fn subscription(jid: &str, subid: &str) -> StoredSubscription {
    StoredSubscription {
        jid: jid.to_owned(),
        subid: subid.to_owned(),
        state: "subscribed".to_owned(),
        options: String::new(),
    }
}

fn item(id: &str) -> StoredItem {
    StoredItem {
        id: id.to_owned(),
        publisher: "romeo@verona.example".to_owned(),
        payload: format!("<entry xmlns='http://www.w3.org/2005/Atom'>{id}</entry>"),
        published_at: 1_700_000_000_000,
    }
}

async fn publish(store: &SqlStore, node: &str, id: &str) -> Vec<String> {
    store
        .publish_pubsub_item(SERVICE, node, &item(id), None)
        .await
        .unwrap()
}

async fn items(store: &SqlStore, node: &str, query: ItemQuery) -> ItemPage {
    store.pubsub_items(SERVICE, node, &query).await.unwrap()
}

fn ids(page: &ItemPage) -> Vec<String> {
    page.items.iter().map(|i| i.id.clone()).collect()
}

async fn only_node(store: &SqlStore) -> StoredNode {
    let mut nodes = store.pubsub_nodes(SERVICE).await.unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    nodes.remove(0)
}

#[tokio::test]
async fn created_nodes_read_back_sorted_and_a_second_create_conflicts() {
    let (_db, store) = temp_store().await;
    assert!(store.pubsub_nodes(SERVICE).await.unwrap().is_empty());
    store.create_pubsub_node(&node("princely")).await.unwrap();
    store.create_pubsub_node(&node("balcony")).await.unwrap();
    let mut again = node("balcony");
    again.config = "other".to_owned();
    assert!(matches!(
        store.create_pubsub_node(&again).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.pubsub_nodes(SERVICE).await.unwrap(),
        vec![node("balcony"), node("princely")]
    );
    assert!(
        store
            .pubsub_nodes("pubsub.elsewhere.example")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_node_with_a_bad_affiliation_is_not_created_at_all() {
    let (_db, store) = temp_store().await;
    let mut bad = node("balcony");
    bad.affiliations.push(("x@y".to_owned(), "king".to_owned()));
    assert!(store.create_pubsub_node(&bad).await.is_err());
    assert!(store.pubsub_nodes(SERVICE).await.unwrap().is_empty());
}

#[tokio::test]
async fn config_is_replaced_and_a_missing_node_is_not_found() {
    let (_db, store) = temp_store().await;
    store.create_pubsub_node(&node("balcony")).await.unwrap();
    store
        .set_pubsub_node_config(SERVICE, "balcony", "<x>max_items=5</x>")
        .await
        .unwrap();
    let mut expected = node("balcony");
    expected.config = "<x>max_items=5</x>".to_owned();
    assert_eq!(only_node(&store).await, expected);
    assert!(matches!(
        store.set_pubsub_node_config(SERVICE, "ghost", "x").await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn affiliations_are_set_changed_and_removed() {
    let (_db, store) = temp_store().await;
    let mut bare = node("balcony");
    bare.affiliations.clear();
    store.create_pubsub_node(&bare).await.unwrap();
    for (jid, affiliation) in [
        ("tybalt@capulet.example", "outcast"),
        ("benvolio@verona.example", "member"),
        ("tybalt@capulet.example", "publish-only"),
    ] {
        store
            .set_pubsub_affiliation(SERVICE, "balcony", jid, Some(affiliation))
            .await
            .unwrap();
    }
    assert_eq!(
        only_node(&store).await.affiliations,
        vec![
            ("benvolio@verona.example".to_owned(), "member".to_owned()),
            (
                "tybalt@capulet.example".to_owned(),
                "publish-only".to_owned()
            ),
        ]
    );
    store
        .set_pubsub_affiliation(SERVICE, "balcony", "benvolio@verona.example", None)
        .await
        .unwrap();
    store
        .set_pubsub_affiliation(SERVICE, "balcony", "nobody@verona.example", None)
        .await
        .unwrap();
    assert_eq!(
        only_node(&store).await.affiliations,
        vec![(
            "tybalt@capulet.example".to_owned(),
            "publish-only".to_owned()
        )]
    );
    assert!(matches!(
        store
            .set_pubsub_affiliation(SERVICE, "ghost", "a@b", Some("member"))
            .await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn subscriptions_are_set_replaced_and_removed_by_subid() {
    let (_db, store) = temp_store().await;
    store.create_pubsub_node(&node("balcony")).await.unwrap();
    let pending = StoredSubscription {
        state: "pending".to_owned(),
        options: "<x>digest</x>".to_owned(),
        ..subscription("nurse@capulet.example", "c3")
    };
    store
        .set_pubsub_subscription(SERVICE, "balcony", &pending)
        .await
        .unwrap();
    store
        .delete_pubsub_subscription(SERVICE, "balcony", "juliet@capulet.example/balcony", "a1")
        .await
        .unwrap();
    store
        .delete_pubsub_subscription(SERVICE, "balcony", "juliet@capulet.example/balcony", "zz")
        .await
        .unwrap();
    assert_eq!(
        only_node(&store).await.subscriptions,
        vec![
            subscription("juliet@capulet.example/balcony", "b2"),
            pending
        ]
    );
    assert!(matches!(
        store
            .set_pubsub_subscription(SERVICE, "ghost", &subscription("a@b", "1"))
            .await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn items_come_newest_first_and_republishing_moves_an_item_to_the_front() {
    let (_db, store) = temp_store().await;
    store.create_pubsub_node(&node("balcony")).await.unwrap();
    for id in ["a", "b", "c"] {
        assert!(publish(&store, "balcony", id).await.is_empty());
    }
    let mut changed = item("a");
    changed.payload = "<entry>new</entry>".to_owned();
    changed.published_at = 1_800_000_000_000;
    store
        .publish_pubsub_item(SERVICE, "balcony", &changed, None)
        .await
        .unwrap();
    let page = items(&store, "balcony", ItemQuery::default()).await;
    assert_eq!(page.items, vec![changed, item("c"), item("b")]);
    assert_eq!((page.count, page.first_index), (3, Some(0)));
    let newest = items(
        &store,
        "balcony",
        ItemQuery {
            max: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&newest), ["a"]);
    assert!(matches!(
        store
            .publish_pubsub_item(SERVICE, "ghost", &item("a"), None)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        items(&store, "ghost", ItemQuery::default())
            .await
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn max_items_evicts_the_oldest_and_reports_them() {
    let (_db, store) = temp_store().await;
    store.create_pubsub_node(&node("balcony")).await.unwrap();
    for id in ["a", "b", "c", "d"] {
        publish(&store, "balcony", id).await;
    }
    let publish_max = async |id: &str, max: usize| {
        store
            .publish_pubsub_item(SERVICE, "balcony", &item(id), Some(max))
            .await
            .unwrap()
    };
    // Lowering the limit drops everything beyond it at the next publish, oldest first.
    assert_eq!(publish_max("e", 2).await, ["a", "b", "c"]);
    let page = items(&store, "balcony", ItemQuery::default()).await;
    assert_eq!(
        (ids(&page), page.count),
        (vec!["e".to_owned(), "d".to_owned()], 2)
    );
    // Republishing an item held does not grow the node.
    assert_eq!(publish_max("d", 2).await, Vec::<String>::new());
    assert_eq!(publish_max("f", 2).await, ["e"]);
    let page = items(&store, "balcony", ItemQuery::default()).await;
    assert_eq!(ids(&page), ["f", "d"]);
    assert_eq!(page.count, 2);
}

#[tokio::test]
async fn retract_and_purge_remove_items_but_keep_the_node() {
    let (_db, store) = temp_store().await;
    store.create_pubsub_node(&node("balcony")).await.unwrap();
    for id in ["a", "b", "c"] {
        publish(&store, "balcony", id).await;
    }
    assert!(
        store
            .retract_pubsub_item(SERVICE, "balcony", "b")
            .await
            .unwrap()
    );
    assert!(
        !store
            .retract_pubsub_item(SERVICE, "balcony", "b")
            .await
            .unwrap()
    );
    assert_eq!(
        ids(&items(&store, "balcony", ItemQuery::default()).await),
        ["c", "a"]
    );
    store.purge_pubsub_node(SERVICE, "balcony").await.unwrap();
    let page = items(&store, "balcony", ItemQuery::default()).await;
    assert_eq!(
        (page.items.len(), page.count, page.first_index),
        (0, 0, None)
    );
    assert_eq!(only_node(&store).await, node("balcony"));
}

#[tokio::test]
async fn a_deleted_node_takes_everything_with_it() {
    let (_db, store) = temp_store().await;
    store.create_pubsub_node(&node("balcony")).await.unwrap();
    store.create_pubsub_node(&node("princely")).await.unwrap();
    publish(&store, "balcony", "a").await;
    publish(&store, "princely", "p").await;
    store.delete_pubsub_node(SERVICE, "balcony").await.unwrap();
    store.delete_pubsub_node(SERVICE, "balcony").await.unwrap();
    assert_eq!(only_node(&store).await, node("princely"));
    // A node created again under the name starts empty.
    let mut fresh = node("balcony");
    fresh.affiliations.clear();
    fresh.subscriptions.clear();
    store.create_pubsub_node(&fresh).await.unwrap();
    assert!(
        items(&store, "balcony", ItemQuery::default())
            .await
            .items
            .is_empty()
    );
    assert_eq!(store.pubsub_nodes(SERVICE).await.unwrap()[0], fresh);
    assert_eq!(
        ids(&items(&store, "princely", ItemQuery::default()).await),
        ["p"]
    );
}

/// A node of 1,000 items `item-0001` … `item-1000`, published in that order.
async fn thousand_items(store: &SqlStore) -> Vec<String> {
    store.create_pubsub_node(&node("big")).await.unwrap();
    let all: Vec<String> = (1..=1000).map(|i| format!("item-{i:04}")).collect();
    for id in &all {
        publish(store, "big", id).await;
    }
    all.into_iter().rev().collect() // newest first
}

#[tokio::test]
async fn paging_forward_with_after_returns_every_item_once_in_order() {
    let (_db, store) = temp_store().await;
    let newest_first = thousand_items(&store).await;
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = items(
            &store,
            "big",
            ItemQuery {
                max: Some(100),
                after: after.clone(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(page.count, 1000);
        if page.items.is_empty() {
            assert_eq!(page.first_index, None);
            break;
        }
        assert_eq!(page.first_index, Some(seen.len()));
        seen.extend(ids(&page));
        after = seen.last().cloned();
    }
    assert_eq!(seen, newest_first);
}

#[tokio::test]
async fn paging_backward_with_before_starts_at_the_oldest_page() {
    let (_db, store) = temp_store().await;
    let newest_first = thousand_items(&store).await;
    let mut pages = Vec::new();
    let mut before = Some(String::new());
    loop {
        let page = items(
            &store,
            "big",
            ItemQuery {
                max: Some(300),
                before: before.clone(),
                ..Default::default()
            },
        )
        .await;
        if page.items.is_empty() {
            break;
        }
        let page_ids = ids(&page);
        // Each page is the 300 (or, at the front, the remaining) items just newer than the
        // anchor, newest first, and says where it starts.
        let start = 1000_usize.saturating_sub(300 * (pages.len() + 1));
        assert_eq!(page.first_index, Some(start));
        assert_eq!(page_ids, newest_first[start..start + page_ids.len()]);
        before = page_ids.first().cloned();
        pages.push(page_ids);
    }
    assert_eq!(pages.len(), 4);
    assert_eq!(pages.last().map(Vec::len), Some(100));
    let joined: Vec<String> = pages.into_iter().rev().flatten().collect();
    assert_eq!(joined, newest_first);
}

#[tokio::test]
async fn unknown_anchors_are_not_found_and_ids_filter_selects() {
    let (_db, store) = temp_store().await;
    store.create_pubsub_node(&node("balcony")).await.unwrap();
    for id in ["a", "b", "c", "d"] {
        publish(&store, "balcony", id).await;
    }
    for query in [
        ItemQuery {
            after: Some("zz".to_owned()),
            ..Default::default()
        },
        ItemQuery {
            before: Some("zz".to_owned()),
            ..Default::default()
        },
    ] {
        assert!(matches!(
            store.pubsub_items(SERVICE, "balcony", &query).await,
            Err(StoreError::NotFound)
        ));
    }
    let wanted = |list: &[&str], max| ItemQuery {
        ids: list.iter().map(|s| (*s).to_owned()).collect(),
        max,
        ..Default::default()
    };
    let page = items(&store, "balcony", wanted(&["a", "zz", "c", "a"], None)).await;
    assert_eq!(ids(&page), ["c", "a"]);
    assert_eq!((page.count, page.first_index), (4, Some(1)));
    let page = items(&store, "balcony", wanted(&["a", "b", "c"], Some(2))).await;
    assert_eq!(ids(&page), ["c", "b"]);
    let page = items(&store, "balcony", wanted(&["zz"], None)).await;
    assert_eq!((page.items.len(), page.first_index), (0, None));
}

#[tokio::test]
async fn item_totals_and_deletion_are_per_service() {
    let (_db, store) = temp_store().await;
    let pep = "juliet@capulet.example";
    for service in [SERVICE, pep] {
        for name in ["one", "two"] {
            let mut n = node(name);
            n.service = service.to_owned();
            store.create_pubsub_node(&n).await.unwrap();
        }
    }
    publish(&store, "one", "a").await;
    publish(&store, "two", "b").await;
    publish(&store, "two", "c").await;
    store
        .publish_pubsub_item(pep, "one", &item("x"), None)
        .await
        .unwrap();
    assert_eq!(store.pubsub_item_total(SERVICE).await.unwrap(), 3);
    assert_eq!(store.pubsub_item_total(pep).await.unwrap(), 1);
    store.delete_pubsub_service(pep).await.unwrap();
    assert!(store.pubsub_nodes(pep).await.unwrap().is_empty());
    assert_eq!(store.pubsub_item_total(pep).await.unwrap(), 0);
    assert_eq!(store.pubsub_nodes(SERVICE).await.unwrap().len(), 2);
    assert_eq!(store.pubsub_item_total(SERVICE).await.unwrap(), 3);
}

#[tokio::test]
async fn deleting_an_account_deletes_its_pep_service_only() {
    let (_db, store) = temp_store().await;
    account(&store, "juliet", "capulet.example").await;
    account(&store, "romeo", "capulet.example").await;
    for service in ["juliet@capulet.example", "romeo@capulet.example", SERVICE] {
        let mut n = node("urn:xmpp:avatar:data");
        n.service = service.to_owned();
        store.create_pubsub_node(&n).await.unwrap();
        store
            .publish_pubsub_item(service, "urn:xmpp:avatar:data", &item("hash"), None)
            .await
            .unwrap();
    }
    store
        .delete_user("juliet", "capulet.example")
        .await
        .unwrap();
    assert!(
        store
            .pubsub_nodes("juliet@capulet.example")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .pubsub_item_total("juliet@capulet.example")
            .await
            .unwrap(),
        0
    );
    for service in ["romeo@capulet.example", SERVICE] {
        assert_eq!(store.pubsub_nodes(service).await.unwrap().len(), 1);
        assert_eq!(store.pubsub_item_total(service).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn nodes_and_items_survive_reopening_the_file() {
    let (db, store) = temp_store().await;
    store.create_pubsub_node(&node("balcony")).await.unwrap();
    publish(&store, "balcony", "a").await;
    publish(&store, "balcony", "b").await;
    store.close().await;
    let store = db.open().await;
    assert_eq!(only_node(&store).await, node("balcony"));
    assert_eq!(
        ids(&items(&store, "balcony", ItemQuery::default()).await),
        ["b", "a"]
    );
    // Numbering continues after the reopen: a new item is the newest.
    publish(&store, "balcony", "c").await;
    assert_eq!(
        ids(&items(&store, "balcony", ItemQuery::default()).await),
        ["c", "b", "a"]
    );
}

#[tokio::test]
async fn concurrent_publishes_to_one_node_all_land_in_distinct_places() {
    let (_db, store) = temp_store().await;
    store.create_pubsub_node(&node("balcony")).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .publish_pubsub_item(SERVICE, "balcony", &item(&format!("i{i}")), None)
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().is_empty());
    }
    let page = items(&store, "balcony", ItemQuery::default()).await;
    let mut got = ids(&page);
    got.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("i{i}")).collect();
    want.sort();
    assert_eq!((got, page.count), (want, 20));
    // Each has its own place: paging one at a time walks all twenty.
    let mut after = None;
    for _ in 0..20 {
        let page = items(
            &store,
            "balcony",
            ItemQuery {
                max: Some(1),
                after: after.clone(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(page.items.len(), 1);
        after = Some(page.items[0].id.clone());
    }
}

/// Publishing to a node, and changing its members, while the node is deleted: each either
/// lands before the deletion, and goes with the node, or finds the node gone; the deletion
/// never fails, and nothing of the node is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_racing_the_deletion_of_their_node_land_before_it_or_find_it_gone() {
    let (db, store) = temp_store().await;
    let other = db.open().await;
    for round in 0..10 {
        store.create_pubsub_node(&node("balcony")).await.unwrap();
        let mut writes = Vec::new();
        for i in 0..4 {
            let other = other.clone();
            writes.push(tokio::spawn(async move {
                let id = format!("r{round}-{i}");
                other
                    .publish_pubsub_item(SERVICE, "balcony", &item(&id), Some(3))
                    .await?;
                other
                    .set_pubsub_affiliation(SERVICE, "balcony", &format!("{id}@x"), Some("member"))
                    .await?;
                other
                    .set_pubsub_subscription(SERVICE, "balcony", &subscription(&id, "s"))
                    .await
            }));
        }
        let deleted = {
            let store = store.clone();
            tokio::spawn(async move {
                // Every other round, the whole service goes (as with an account's PEP).
                if round % 2 == 0 {
                    store.delete_pubsub_node(SERVICE, "balcony").await
                } else {
                    store.delete_pubsub_service(SERVICE).await
                }
            })
        };
        for write in writes {
            match write.await.unwrap() {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => panic!("round {round}: a write failed otherwise: {e:?}"),
            }
        }
        deleted.await.unwrap().unwrap();
        assert!(store.pubsub_nodes(SERVICE).await.unwrap().is_empty());
        assert_eq!(store.pubsub_item_total(SERVICE).await.unwrap(), 0);
    }
}
