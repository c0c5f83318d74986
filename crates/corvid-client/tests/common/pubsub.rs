//! Publish-subscribe, PEP, avatars and bookmarks, against both servers. Nodes on the
//! service are made by juliet (Prosody lets only the component's admins create them: its
//! test configuration makes juliet one; Corvid lets any local account).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use corvid_client::roster::StorageError;
use corvid_client::{
    Avatar, AvatarEvent, AvatarEvents, AvatarSource, AvatarSources, AvatarStorage, Avatars,
    Bookmark, Bookmarks, Capabilities, Client, Identity, ItemsQuery, MemoryAvatarStorage,
    MemoryRosterStorage, PubSub, PubSubEvent, PubSubEvents, Roster, RosterEvent, RosterEvents,
    SqliteStorage, Subscription, SubscriptionState,
};
use corvid_proto::{BareJid, forms, ns};
use corvid_xml::Element;

use super::{NextEvent, Target, expect};

const SERVICE: &str = "pubsub.localhost";
const TUNE: &str = "http://jabber.org/protocol/tune";
const VERSE: &str = "urn:example:verse";

impl NextEvent for PubSubEvents {
    type Item = PubSubEvent;
    fn next_event(&mut self) -> impl Future<Output = Option<PubSubEvent>> {
        self.next()
    }
}

impl NextEvent for AvatarEvents {
    type Item = AvatarEvent;
    fn next_event(&mut self) -> impl Future<Output = Option<AvatarEvent>> {
        self.next()
    }
}

fn verse(text: &str) -> Element {
    Element::new("line", VERSE).with_text(text)
}

fn service() -> BareJid {
    BareJid::new(SERVICE).expect("service jid")
}

fn jid(user: &str) -> BareJid {
    BareJid::new(&format!("{user}@localhost")).expect("jid")
}

/// Online as `user` with the pubsub service's module.
async fn on_service(target: &Target, user: &str) -> Result<(Client, Arc<PubSub>, PubSubEvents)> {
    let (client, events) = target.builder(user).resource("test").build();
    let (pubsub, notifications) = PubSub::attach(&client, Some(service()));
    client.connect().await?;
    drain(events);
    client.send(&Element::new("presence", ns::CLIENT)).await?;
    Ok((client, pubsub, notifications))
}

/// The application's events are not read by these scenarios: keep them flowing.
fn drain(mut events: corvid_client::Events) {
    tokio::spawn(async move { while events.next().await.is_some() {} });
}

/// Nodes on the service: created with a configuration, reconfigured, purged and deleted,
/// the subscriber told of both; an instant node gets a name from the service.
pub async fn nodes_are_created_configured_and_deleted(target: &Target) -> Result<()> {
    let (juliet, pubsub, _) = on_service(target, "juliet").await?;
    let (romeo, romeo_pubsub, mut romeo_events) = on_service(target, "romeo").await?;
    // Whether subscribers hear of a deletion is the node's `notify_delete`, on by default
    // in Corvid and Prosody, off in ejabberd: asked for.
    let config = [
        ("pubsub#title", "Princes"),
        ("pubsub#notify_delete", "true"),
    ];
    let node = pubsub.create_node(Some("princes"), Some(&config)).await?;
    assert_eq!(node, "princes");
    let form = pubsub.configuration("princes").await?;
    assert_eq!(
        forms::value(&form, "FORM_TYPE").as_deref(),
        Some(ns::PUBSUB_NODE_CONFIG)
    );
    assert_eq!(
        forms::value(&form, "pubsub#title").as_deref(),
        Some("Princes")
    );
    pubsub
        .configure("princes", &[("pubsub#title", "Princes of Verona")])
        .await?;
    let form = pubsub.configuration("princes").await?;
    assert_eq!(
        forms::value(&form, "pubsub#title").as_deref(),
        Some("Princes of Verona")
    );
    // Only the owner configures.
    let refused = romeo_pubsub.configuration("princes").await;
    assert_eq!(
        refused.as_ref().err().and_then(|e| e.condition()),
        Some("forbidden"),
        "{refused:?}"
    );

    romeo_pubsub.subscribe("princes").await?;
    pubsub
        .publish("princes", Some("escalus"), verse("Escalus"), None)
        .await?;
    expect(
        &mut romeo_events,
        "the publication",
        |e| matches!(e, PubSubEvent::Published { node, .. } if node == "princes"),
    )
    .await?;
    pubsub.purge("princes").await?;
    expect(&mut romeo_events, "the purge", |e| {
        matches!(e, PubSubEvent::Purged { service, node } if node == "princes" && *service == self::service())
    })
    .await?;
    assert!(
        pubsub
            .items("princes", &ItemsQuery::default())
            .await?
            .items
            .is_empty()
    );
    pubsub.delete_node("princes").await?;
    expect(
        &mut romeo_events,
        "the deletion",
        |e| matches!(e, PubSubEvent::Deleted { node, .. } if node == "princes"),
    )
    .await?;
    let gone = pubsub.configuration("princes").await;
    assert_eq!(
        gone.as_ref().err().and_then(|e| e.condition()),
        Some("item-not-found"),
        "{gone:?}"
    );

    let instant = pubsub.create_node(None, None).await?;
    assert!(!instant.is_empty());
    pubsub.delete_node(&instant).await?;
    juliet.disconnect().await;
    romeo.disconnect().await;
    Ok(())
}

/// A subscriber sees what is published and retracted, lists its subscription (with the
/// id it unsubscribes with), and is gone from the list after unsubscribing.
pub async fn subscribers_see_publications_and_retractions(target: &Target) -> Result<()> {
    let (juliet, pubsub, _) = on_service(target, "juliet").await?;
    let (romeo, romeo_pubsub, mut romeo_events) = on_service(target, "romeo").await?;
    pubsub.create_node(Some("balcony"), None).await?;
    let subscription = romeo_pubsub.subscribe("balcony").await?;
    assert_eq!(subscription.state, SubscriptionState::Subscribed);
    assert_eq!(subscription.node, "balcony");
    let listed = romeo_pubsub.subscriptions(None).await?;
    let ours: Vec<_> = listed.iter().filter(|s| s.node == "balcony").collect();
    assert_eq!(ours.len(), 1, "{listed:?}");
    assert_eq!(BareJid::new(&ours[0].jid)?, jid("romeo"));
    // Corvid names each subscription; Prosody names none. Either way the same one.
    assert_eq!(ours[0].subid, subscription.subid);

    let id = pubsub
        .publish("balcony", Some("first"), verse("But soft!"), None)
        .await?;
    assert_eq!(id, "first");
    let published = expect(
        &mut romeo_events,
        "the publication",
        |e| matches!(e, PubSubEvent::Published { node, .. } if node == "balcony"),
    )
    .await?;
    let PubSubEvent::Published { service, items, .. } = published else {
        unreachable!()
    };
    assert_eq!(service, self::service());
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id.as_deref(), Some("first"));
    let payload = items[0].payload.as_ref().context("a payload")?;
    assert!(payload.is("line", VERSE));
    assert_eq!(payload.text(), "But soft!");

    let named = pubsub
        .publish("balcony", None, verse("What light"), None)
        .await?;
    assert!(!named.is_empty());
    expect(&mut romeo_events, "the second publication", |e| {
        matches!(e, PubSubEvent::Published { items, .. }
            if items.iter().any(|i| i.id.as_deref() == Some(named.as_str())))
    })
    .await?;

    pubsub.retract("balcony", "first", true).await?;
    let retracted = expect(&mut romeo_events, "the retraction", |e| {
        matches!(e, PubSubEvent::Retracted { .. })
    })
    .await?;
    assert!(
        matches!(&retracted, PubSubEvent::Retracted { node, ids, .. } if node == "balcony" && ids == &["first"]),
        "{retracted:?}"
    );
    let left = pubsub.items("balcony", &ItemsQuery::default()).await?;
    let ids: Vec<_> = left.items.iter().filter_map(|i| i.id.clone()).collect();
    assert_eq!(ids, [named]);

    romeo_pubsub
        .unsubscribe("balcony", subscription.subid.as_deref())
        .await?;
    let listed = romeo_pubsub.subscriptions(Some("balcony")).await?;
    assert!(listed.is_empty(), "{listed:?}");
    juliet.disconnect().await;
    romeo.disconnect().await;
    Ok(())
}

/// Items by id, the most recent few, and pages: `Ok(true)` if the service paged them
/// (XEP-0059), `Ok(false)` if it ignored the page request and sent them all.
pub async fn items_are_fetched_by_id_max_and_page(target: &Target) -> Result<bool> {
    let (juliet, pubsub, _) = on_service(target, "juliet").await?;
    pubsub
        .create_node(Some("verses"), Some(&[("pubsub#max_items", "10")]))
        .await?;
    let ids: Vec<String> = (1..=5).map(|n| format!("v{n}")).collect();
    for id in &ids {
        pubsub
            .publish("verses", Some(id), verse(&format!("verse {id}")), None)
            .await?;
    }
    let ids_of = |items: &[corvid_client::Item]| -> Vec<String> {
        let mut ids: Vec<String> = items.iter().filter_map(|i| i.id.clone()).collect();
        ids.sort();
        ids
    };
    let all = pubsub.items("verses", &ItemsQuery::default()).await?;
    assert_eq!(ids_of(&all.items), ids);
    let recent = pubsub
        .items(
            "verses",
            &ItemsQuery {
                max_items: Some(2),
                ..ItemsQuery::default()
            },
        )
        .await?;
    assert_eq!(ids_of(&recent.items), ["v4", "v5"]);
    let chosen = pubsub
        .items(
            "verses",
            &ItemsQuery {
                ids: vec!["v2".into(), "v4".into()],
                ..ItemsQuery::default()
            },
        )
        .await?;
    assert_eq!(ids_of(&chosen.items), ["v2", "v4"]);
    let payload = chosen.items[0].payload.as_ref().context("payload")?;
    assert!(payload.text().starts_with("verse v"));

    let mut seen = Vec::new();
    let mut after = None;
    let mut paged = false;
    for _ in 0..10 {
        let page = pubsub
            .items(
                "verses",
                &ItemsQuery {
                    page_max: Some(2),
                    after: after.clone(),
                    ..ItemsQuery::default()
                },
            )
            .await?;
        seen.extend(page.items.iter().filter_map(|i| i.id.clone()));
        if !page.paged {
            // No result set management: everything at once, and that is all.
            break;
        }
        paged = true;
        assert!(page.items.len() <= 2, "{page:?}");
        assert_eq!(page.count, Some(5));
        if page.items.is_empty() || seen.len() >= 5 {
            break;
        }
        after = page.last.clone();
    }
    seen.sort();
    assert_eq!(seen, ids, "every item once");
    pubsub.delete_node("verses").await?;
    juliet.disconnect().await;
    Ok(paged)
}

/// A client with a roster, caps declaring `notify`, the PEP module and perhaps avatars.
struct Peer {
    client: Client,
    roster: Arc<Roster>,
    roster_events: RosterEvents,
    caps: Arc<Capabilities>,
    pep: Arc<PubSub>,
    pep_events: PubSubEvents,
    avatars: Option<(Arc<Avatars>, AvatarEvents)>,
}

async fn peer(
    target: &Target,
    user: &str,
    notify: &[&str],
    avatars: Option<(Arc<dyn AvatarStorage>, AvatarSources)>,
) -> Result<Peer> {
    let (client, events) = target.builder(user).resource("test").build();
    let (roster, mut roster_events) =
        Roster::attach(&client, Arc::new(MemoryRosterStorage::default()));
    let caps = Capabilities::attach(&client, Identity::client("Corvid tests"), None);
    for feature in notify {
        caps.add_feature(feature);
    }
    let (pep, pep_events) = PubSub::attach(&client, None);
    let avatars = avatars.map(|(storage, sources)| Avatars::attach(&client, storage, sources));
    client.connect().await?;
    drain(events);
    roster.fetch().await?;
    expect(&mut roster_events, "populated", |e| {
        matches!(e, RosterEvent::Populated { .. })
    })
    .await?;
    let peer = Peer {
        client,
        roster,
        roster_events,
        caps,
        pep,
        pep_events,
        avatars,
    };
    announce(&peer, None).await?;
    Ok(peer)
}

/// Available presence with the peer's caps (and avatar hash), and `status` if given.
async fn announce(peer: &Peer, status: Option<&str>) -> Result<()> {
    let mut presence = Element::new("presence", ns::CLIENT);
    if let Some(status) = status {
        presence.append_child(Element::new("status", ns::CLIENT).with_text(status));
    }
    peer.caps.decorate(&mut presence);
    match &peer.avatars {
        Some((avatars, _)) => avatars.send_presence(presence).await?,
        None => peer.client.send(&presence).await?,
    }
    Ok(())
}

/// Mutual presence subscription, each then seeing the other online.
async fn befriend(a: &mut Peer, b: &mut Peer) -> Result<()> {
    let a_jid = a.client.account().to_string();
    let b_jid = b.client.account().to_string();
    a.roster.subscribe(&b_jid).await?;
    expect(&mut b.roster_events, "the subscription request", |e| {
        *e == RosterEvent::SubscriptionRequest(a_jid.clone())
    })
    .await?;
    b.roster.accept(&a_jid, true).await?;
    expect(&mut a.roster_events, "the request back", |e| {
        *e == RosterEvent::SubscriptionRequest(b_jid.clone())
    })
    .await?;
    a.roster.accept(&b_jid, false).await?;
    for (peer, other) in [(&mut *a, &b_jid), (&mut *b, &a_jid)] {
        if peer.roster.item(other).map(|i| i.subscription) != Some(Subscription::Both) {
            expect(&mut peer.roster_events, "a mutual subscription", |e| {
                matches!(e, RosterEvent::Changed(item)
                    if item.jid == *other && item.subscription == Subscription::Both)
            })
            .await?;
        }
        if peer.roster.presence(other).is_empty() {
            expect(&mut peer.roster_events, "the contact online", |e| {
                matches!(e, RosterEvent::Presence { jid, presence: Some(_), .. } if jid == other)
            })
            .await?;
        }
    }
    // ejabberd learns a contact's caps, which its PEP notifications follow, only from
    // presence that comes while the contact is subscribed to us (mod_caps: `from` or
    // `both`), so not from the presence that came before the subscription was mutual.
    // Each announces itself again, as on a next login, and waits to be seen.
    const AGAIN: &str = "friends now";
    announce(a, Some(AGAIN)).await?;
    announce(b, Some(AGAIN)).await?;
    for (peer, other) in [(&mut *a, &b_jid), (&mut *b, &a_jid)] {
        expect(
            &mut peer.roster_events,
            "the contact announced again",
            |e| {
                matches!(e, RosterEvent::Presence { jid, presence: Some(p), .. }
                if jid == other && p.status.as_deref() == Some(AGAIN))
            },
        )
        .await?;
    }
    Ok(())
}

/// PEP: what juliet publishes reaches romeo, who declared `tune+notify` in his caps.
pub async fn pep_notifications_reach_contacts_who_want_them(target: &Target) -> Result<()> {
    let notify = format!("{TUNE}+notify");
    let mut juliet = peer(target, "juliet", &[], None).await?;
    let mut romeo = peer(target, "romeo", &[&notify], None).await?;
    assert!(romeo.caps.features().contains(&notify));
    befriend(&mut juliet, &mut romeo).await?;
    let tune = Element::new("tune", TUNE)
        .with_child(Element::new("title", TUNE).with_text("Heart and Soul"));
    let id = juliet.pep.publish(TUNE, None, tune, None).await?;
    // Sent when published, or (if romeo's caps were learned after) as the last item.
    let got = expect(
        &mut romeo.pep_events,
        "juliet's tune",
        |e| matches!(e, PubSubEvent::Published { node, .. } if node == TUNE),
    )
    .await?;
    let PubSubEvent::Published { service, items, .. } = got else {
        unreachable!()
    };
    assert_eq!(service, jid("juliet"));
    assert_eq!(items[0].id.as_deref(), Some(id.as_str()));
    let title = items[0]
        .payload
        .as_ref()
        .and_then(|t| t.get_child("title", TUNE))
        .map(Element::text);
    assert_eq!(title.as_deref(), Some("Heart and Soul"));
    // Her own PEP, read back by its owner.
    let own = juliet.pep.items(TUNE, &ItemsQuery::default()).await?;
    assert_eq!(own.items.len(), 1);
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}

/// An avatar storage that counts what it is given: a cache hit stores nothing.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn AvatarStorage>,
    stores: AtomicUsize,
}

#[async_trait]
impl AvatarStorage for Counting {
    async fn load_avatar(&self, hash: &str) -> Result<Option<Avatar>, StorageError> {
        self.inner.load_avatar(hash).await
    }

    async fn store_avatar(&self, hash: &str, avatar: &Avatar) -> Result<(), StorageError> {
        self.stores.fetch_add(1, Ordering::SeqCst);
        self.inner.store_avatar(hash, avatar).await
    }
}

/// A small "image": what matters is that its bytes survive base64 and the hash.
fn image() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..=255u8).cycle().take(3000));
    bytes
}

async fn changed(
    events: &mut AvatarEvents,
    who: &BareJid,
    what: &str,
) -> Result<(String, AvatarSource)> {
    let event = expect(events, what, |e| match e {
        AvatarEvent::Changed { jid, .. } | AvatarEvent::FetchFailed { jid, .. } => jid == who,
        AvatarEvent::Removed { .. } => false,
    })
    .await?;
    match event {
        AvatarEvent::Changed { hash, source, .. } => Ok((hash, source)),
        other => bail!("{other:?}"),
    }
}

/// XEP-0084: romeo declares metadata `+notify` and follows PEP only; juliet's avatar comes
/// from her PEP data node. Kept in SQLite, it is not fetched again in romeo's next session
/// (the storage is given nothing), and the file has it after.
pub async fn avatars_come_through_pep_and_are_cached(target: &Target) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("client.sqlite");
    let sqlite = Arc::new(SqliteStorage::open(&path).await?);
    let storage = Arc::new(Counting {
        inner: sqlite,
        stores: AtomicUsize::new(0),
    });
    let pep_only = AvatarSources {
        pep: true,
        vcard: false,
    };
    let memory = Arc::new(MemoryAvatarStorage::default());
    let mut juliet = peer(
        target,
        "juliet",
        &[],
        Some((memory, AvatarSources::default())),
    )
    .await?;
    let mut romeo = peer(
        target,
        "romeo",
        &[corvid_client::avatar::METADATA_NOTIFY],
        Some((storage.clone(), pep_only)),
    )
    .await?;
    befriend(&mut juliet, &mut romeo).await?;
    let bytes = image();
    let (juliet_avatars, _) = juliet.avatars.as_ref().context("avatars")?;
    let hash = juliet_avatars
        .publish_own(&bytes, "image/png", 64, 64)
        .await?;
    assert_eq!(juliet_avatars.own_hash().as_deref(), Some(hash.as_str()));
    let (romeo_avatars, romeo_events) = romeo.avatars.as_mut().context("avatars")?;
    let (got, source) = changed(romeo_events, &jid("juliet"), "the avatar from PEP").await?;
    assert_eq!((got.as_str(), source), (hash.as_str(), AvatarSource::Pep));
    assert_eq!(romeo_avatars.hash_of(&jid("juliet")), Some(hash.clone()));
    let avatar = romeo_avatars.cached(&hash).await?.context("cached")?;
    assert_eq!(avatar.bytes, bytes);
    assert_eq!(avatar.mime_type, "image/png");
    assert_eq!(storage.stores.load(Ordering::SeqCst), 1);
    romeo.client.disconnect().await;
    drop(romeo);

    // The next session learns the same hash from juliet's presence: found in the storage.
    let again = peer(
        target,
        "romeo",
        &[],
        Some((
            storage.clone(),
            AvatarSources {
                pep: false,
                vcard: true,
            },
        )),
    )
    .await?;
    // Held: the module stops when its last handle goes.
    let (_again_avatars, mut again_events) = again.avatars.context("avatars")?;
    let (got, source) =
        changed(&mut again_events, &jid("juliet"), "the avatar from storage").await?;
    assert_eq!(
        (got.as_str(), source),
        (hash.as_str(), AvatarSource::Storage)
    );
    assert_eq!(storage.stores.load(Ordering::SeqCst), 1, "fetched again");
    again.client.disconnect().await;
    juliet.client.disconnect().await;

    let reopened = SqliteStorage::open(&path).await?;
    let stored = reopened.load_avatar(&hash).await?.context("in the file")?;
    assert_eq!(stored.bytes, bytes);
    assert_eq!(stored.hash(), hash);
    assert!(reopened.load_avatar("0000").await?.is_none());
    Ok(())
}

/// XEP-0153: romeo declares no `+notify`, so PEP tells him nothing; the hash in juliet's
/// presence leads him to her vCard's PHOTO. Her vCard keeps its other fields.
pub async fn avatars_come_through_vcard_and_presence(target: &Target) -> Result<()> {
    let mut juliet = peer(
        target,
        "juliet",
        &[],
        Some((
            Arc::new(MemoryAvatarStorage::default()),
            AvatarSources::default(),
        )),
    )
    .await?;
    let mut romeo = peer(
        target,
        "romeo",
        &[],
        Some((
            Arc::new(MemoryAvatarStorage::default()),
            AvatarSources::default(),
        )),
    )
    .await?;
    befriend(&mut juliet, &mut romeo).await?;
    let named = Element::new("vCard", ns::VCARD)
        .with_child(Element::new("FN", ns::VCARD).with_text("Juliet Capulet"));
    juliet
        .client
        .request(
            Element::new("iq", ns::CLIENT)
                .with_attr("type", "set")
                .with_child(named),
        )
        .await?;
    let bytes = image();
    let (juliet_avatars, _) = juliet.avatars.as_ref().context("avatars")?;
    let hash = juliet_avatars
        .publish_own(&bytes, "image/png", 64, 64)
        .await?;
    let (romeo_avatars, romeo_events) = romeo.avatars.as_mut().context("avatars")?;
    let (got, source) = changed(romeo_events, &jid("juliet"), "the avatar from the vCard").await?;
    assert_eq!((got.as_str(), source), (hash.as_str(), AvatarSource::VCard));
    let avatar = romeo_avatars.cached(&hash).await?.context("cached")?;
    assert_eq!(avatar.bytes, bytes);
    assert_eq!(avatar.mime_type, "image/png");

    let vcard = romeo
        .client
        .request(
            Element::new("iq", ns::CLIENT)
                .with_attr("type", "get")
                .with_attr("to", "juliet@localhost")
                .with_child(Element::new("vCard", ns::VCARD)),
        )
        .await?;
    let vcard = vcard.get_child("vCard", ns::VCARD).context("vCard")?;
    assert_eq!(
        vcard
            .get_child("FN", ns::VCARD)
            .map(Element::text)
            .as_deref(),
        Some("Juliet Capulet")
    );
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}

/// XEP-0402 bookmarks: added, updated, listed, removed.
pub async fn bookmarks_are_added_listed_and_removed(target: &Target) -> Result<()> {
    let (juliet, events) = target.builder("juliet").resource("test").build();
    juliet.connect().await?;
    drain(events);
    let bookmarks = Bookmarks::attach(&juliet);
    assert!(bookmarks.list().await?.is_empty());
    let mut tomb = Bookmark::new(BareJid::new("tomb@conference.localhost")?);
    tomb.name = Some("The tomb".into());
    tomb.autojoin = true;
    tomb.nick = Some("Juliet".into());
    let mut ball = Bookmark::new(BareJid::new("ball@conference.localhost")?);
    ball.password = Some("masks".into());
    bookmarks.set(&tomb).await?;
    bookmarks.set(&ball).await?;
    let mut listed = bookmarks.list().await?;
    listed.sort_by(|a, b| a.room.as_str().cmp(b.room.as_str()));
    assert_eq!(listed, [ball.clone(), tomb.clone()]);

    tomb.name = Some("The Capulets' tomb".into());
    bookmarks.set(&tomb).await?;
    bookmarks.remove(&ball.room).await?;
    assert_eq!(bookmarks.list().await?, [tomb]);
    juliet.disconnect().await;
    Ok(())
}
