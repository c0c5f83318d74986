//! Publish-subscribe and PEP against a real server over real sockets: who PEP notifies
//! (XEP-0163 §4: contacts with `+notify` caps, not others), the last item for a contact
//! coming online, and the limits that keep one account's nodes and items bounded.

mod common;

use anyhow::{Result, ensure};
use base64::Engine as _;
use common::*;
use corvid_proto::ns;
use corvid_store::{RosterItem, Rosters, Subscription};
use corvid_xml::Element;
use sha1::{Digest, Sha1};

const PASSWORD: &str = "pw";
const TUNE: &str = "http://jabber.org/protocol/tune";
const CAPS_NODE: &str = "https://corvid.test/client";

/// A client identity with these features, and its XEP-0115 §5.1 verification string.
fn client_info(features: &[&str]) -> (Element, String) {
    let mut sorted: Vec<&str> = features.to_vec();
    sorted.sort_unstable();
    let mut s = String::from("client/pc//Test<");
    let mut query = Element::new("query", ns::DISCO_INFO).with_child(
        Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "client")
            .with_attr("type", "pc")
            .with_attr("name", "Test"),
    );
    for feature in sorted {
        s.push_str(feature);
        s.push('<');
        query.append_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
    }
    let ver = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()));
    (query, ver)
}

/// Sends available presence with caps for `features`, answering the server's query
/// (features must differ per client: a hash the server knows is not asked about again).
async fn come_online(client: &mut Client, features: &[&str]) -> Result<()> {
    let (info, ver) = client_info(features);
    let presence = Element::new("presence", ns::CLIENT).with_child(
        Element::new("c", ns::CAPS)
            .with_attr("hash", "sha-1")
            .with_attr("node", CAPS_NODE)
            .with_attr("ver", ver.as_str()),
    );
    client.send(&presence).await?;
    let (query, _) = client
        .recv_until(|el| {
            el.is("iq", ns::CLIENT)
                && el.attr("type") == Some("get")
                && el.get_child("query", ns::DISCO_INFO).is_some()
        })
        .await?;
    let mut reply = Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_attr("to", DOMAIN);
    if let Some(id) = query.attr("id") {
        reply.set_attr("id", id);
    }
    let node = format!("{CAPS_NODE}#{ver}");
    client
        .send(&reply.with_child(info.with_attr("node", node)))
        .await?;
    client.sync().await
}

/// Makes `a` and `b` mutual contacts (subscription both), as the store sees it.
async fn befriend(ts: &TestServer, a: &str, b: &str) -> Result<()> {
    for (user, contact) in [(a, b), (b, a)] {
        let item = RosterItem {
            jid: format!("{contact}@{DOMAIN}"),
            subscription: Subscription::Both,
            in_roster: true,
            ..RosterItem::default()
        };
        ts.server.store.put_roster_item(user, DOMAIN, &item).await?;
    }
    Ok(())
}

fn tune_item(id: &str, title: &str) -> Element {
    Element::new("pubsub", ns::PUBSUB).with_child(
        Element::new("publish", ns::PUBSUB)
            .with_attr("node", TUNE)
            .with_child(
                Element::new("item", ns::PUBSUB)
                    .with_attr("id", id)
                    .with_child(
                        Element::new("tune", TUNE)
                            .with_child(Element::new("title", TUNE).with_text(title)),
                    ),
            ),
    )
}

fn is_tune_event(el: &Element, title: &str) -> bool {
    el.is("message", ns::CLIENT)
        && el
            .get_child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.get_child("items", ns::PUBSUB_EVENT))
            .and_then(|i| i.get_child("item", ns::PUBSUB_EVENT))
            .and_then(|i| i.get_child("tune", TUNE))
            .and_then(|t| t.get_child("title", TUNE))
            .is_some_and(|t| t.text() == title)
}

/// Nothing but the sync's own answer arrives: `iq` insists the reply comes next.
async fn got_nothing(client: &mut Client) -> Result<()> {
    client.sync().await
}

#[tokio::test]
async fn pep_notifies_contacts_that_want_it_and_nobody_else() -> Result<()> {
    let ts = start_server_with_users(&["alice", "bob", "carol", "dave"], PASSWORD).await?;
    befriend(&ts, "alice", "bob").await?;
    befriend(&ts, "alice", "carol").await?;
    let notify = format!("{TUNE}+notify");
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let mut carol = ts.login("carol", PASSWORD, Some("c")).await?;
    let mut dave = ts.login("dave", PASSWORD, Some("d")).await?;
    come_online(&mut alice, &[ns::DISCO_INFO]).await?;
    come_online(&mut bob, &[ns::DISCO_INFO, &notify]).await?;
    come_online(&mut carol, &[ns::DISCO_INFO, "urn:xmpp:other"]).await?;
    come_online(&mut dave, &[ns::DISCO_INFO, "urn:xmpp:dave", &notify]).await?;

    alice
        .iq_result("set", None, tune_item("t1", "Song"))
        .await?;
    let (event, _) = bob.recv_until(|el| is_tune_event(el, "Song")).await?;
    ensure!(
        event.attr("from") == Some(format!("alice@{DOMAIN}").as_str()),
        "PEP events come from the owner's bare JID: {event}"
    );
    got_nothing(&mut carol).await?;
    got_nothing(&mut dave).await?;
    got_nothing(&mut alice).await?;

    // A stranger may not read a presence-access node.
    let items = Element::new("pubsub", ns::PUBSUB)
        .with_child(Element::new("items", ns::PUBSUB).with_attr("node", TUNE));
    let alice_jid = format!("alice@{DOMAIN}");
    let (_, condition) = dave
        .iq_error("get", Some(&alice_jid), items.clone())
        .await?;
    ensure!(condition == "not-authorized", "stranger got {condition}");
    // Bob may get the item a second time, as the last item sent once his caps are known
    // (when that lands after the publish): skipped until the answer.
    let read = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", "read")
        .with_attr("to", alice_jid.as_str())
        .with_child(items);
    bob.send(&read).await?;
    let (reply, _) = bob
        .recv_until(|el| el.is("iq", ns::CLIENT) && el.attr("id") == Some("read"))
        .await?;
    ensure!(
        reply.attr("type") == Some("result"),
        "contact reads: {reply}"
    );
    ensure!(reply.to_string().contains("Song"), "contact reads: {reply}");
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_contact_coming_online_gets_the_last_item_with_its_date() -> Result<()> {
    let ts = start_server_with_users(&["alice", "bob"], PASSWORD).await?;
    befriend(&ts, "alice", "bob").await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice.iq_result("set", None, tune_item("t1", "Old")).await?;
    alice.iq_result("set", None, tune_item("t2", "New")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let notify = format!("{TUNE}+notify");
    come_online(&mut bob, &[&notify]).await?;
    let (event, _) = bob.recv_until(|el| is_tune_event(el, "New")).await?;
    ensure!(
        event.get_child("delay", ns::DELAY).is_some(),
        "the last item carries its publication date: {event}"
    );
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn limits_refuse_big_payloads_and_too_many_nodes_with_clear_errors() -> Result<()> {
    let ts = start_server_with(|c| {
        c.pubsub.max_payload_bytes = 512;
        c.pubsub.max_nodes_per_user = 2;
    })
    .await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let big = "x".repeat(600);
    let reply = alice.iq("set", None, tune_item("big", &big)).await?;
    ensure!(
        stanza_error(&reply) == Some(("modify".into(), "not-acceptable".into()))
            && reply.to_string().contains("payload-too-big"),
        "oversized payload: {reply}"
    );
    for node in ["n1", "n2", "n3"] {
        let publish = Element::new("pubsub", ns::PUBSUB).with_child(
            Element::new("publish", ns::PUBSUB)
                .with_attr("node", node)
                .with_child(
                    Element::new("item", ns::PUBSUB).with_child(Element::new("x", "urn:test")),
                ),
        );
        let reply = alice.iq("set", None, publish).await?;
        if node == "n3" {
            ensure!(
                reply.to_string().contains("max-nodes-exceeded"),
                "third node: {reply}"
            );
        } else {
            ensure!(reply.attr("type") == Some("result"), "{node}: {reply}");
        }
    }
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_blocked_contact_gets_no_pep_events() -> Result<()> {
    let ts = start_server_with_users(&["alice", "bob", "carol"], PASSWORD).await?;
    befriend(&ts, "alice", "bob").await?;
    befriend(&ts, "alice", "carol").await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let block = Element::new("block", ns::BLOCKING)
        .with_child(Element::new("item", ns::BLOCKING).with_attr("jid", format!("bob@{DOMAIN}")));
    alice.iq_result("set", None, block).await?;
    let notify = format!("{TUNE}+notify");
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let mut carol = ts.login("carol", PASSWORD, Some("c")).await?;
    come_online(&mut bob, &[&notify, "urn:xmpp:bob"]).await?;
    come_online(&mut carol, &[&notify, "urn:xmpp:carol"]).await?;
    alice
        .iq_result("set", None, tune_item("t1", "Secret"))
        .await?;
    carol.recv_until(|el| is_tune_event(el, "Secret")).await?;
    got_nothing(&mut bob).await?;
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn lowering_max_items_drops_the_oldest_items() -> Result<()> {
    let ts = start_server_with_users(&["alice"], PASSWORD).await?;
    let service = format!("pubsub.{DOMAIN}");
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let create = Element::new("pubsub", ns::PUBSUB)
        .with_child(Element::new("create", ns::PUBSUB).with_attr("node", "trim"));
    alice.iq_result("set", Some(&service), create).await?;
    for n in 1..=5 {
        let publish = Element::new("pubsub", ns::PUBSUB).with_child(
            Element::new("publish", ns::PUBSUB)
                .with_attr("node", "trim")
                .with_child(
                    Element::new("item", ns::PUBSUB)
                        .with_attr("id", format!("i{n}"))
                        .with_child(Element::new("x", "urn:test")),
                ),
        );
        alice.iq_result("set", Some(&service), publish).await?;
    }
    let configure = Element::new("pubsub", ns::PUBSUB_OWNER).with_child(
        Element::new("configure", ns::PUBSUB_OWNER)
            .with_attr("node", "trim")
            .with_child(corvid_proto::forms::submit(&[
                ("FORM_TYPE", ns::PUBSUB_NODE_CONFIG),
                ("pubsub#max_items", "2"),
            ])),
    );
    alice.iq_result("set", Some(&service), configure).await?;
    let items = Element::new("pubsub", ns::PUBSUB)
        .with_child(Element::new("items", ns::PUBSUB).with_attr("node", "trim"));
    let reply = alice.iq_result("get", Some(&service), items).await?;
    let ids: Vec<String> = reply
        .get_child("pubsub", ns::PUBSUB)
        .and_then(|p| p.get_child("items", ns::PUBSUB))
        .map(|i| {
            i.children()
                .filter_map(|c| c.attr("id"))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    ensure!(ids == ["i5", "i4"], "kept {ids:?}");
    ts.shutdown().await;
    Ok(())
}

fn create_node(name: &str, fields: &[(&str, &str)]) -> Element {
    let mut form = vec![("FORM_TYPE", ns::PUBSUB_NODE_CONFIG)];
    form.extend_from_slice(fields);
    Element::new("pubsub", ns::PUBSUB)
        .with_child(Element::new("create", ns::PUBSUB).with_attr("node", name))
        .with_child(
            Element::new("configure", ns::PUBSUB).with_child(corvid_proto::forms::submit(&form)),
        )
}

async fn disco_item_nodes(
    client: &mut Client,
    to: &str,
    node: Option<&str>,
) -> Result<Vec<String>> {
    let mut query = Element::new("query", ns::DISCO_ITEMS);
    if let Some(node) = node {
        query.set_attr("node", node);
    }
    let reply = client.iq_result("get", Some(to), query).await?;
    Ok(reply
        .get_child("query", ns::DISCO_ITEMS)
        .map(|q| {
            q.children()
                .filter_map(|i| i.attr("node"))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default())
}

#[tokio::test]
async fn a_collection_gathers_its_leaves_notifications_and_lists_them() -> Result<()> {
    let ts = start_server_with_users(&["alice", "bob"], PASSWORD).await?;
    let service = format!("pubsub.{DOMAIN}");
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    alice
        .iq_result(
            "set",
            Some(&service),
            create_node("news", &[("pubsub#node_type", "collection")]),
        )
        .await?;
    alice
        .iq_result(
            "set",
            Some(&service),
            create_node("sport", &[("pubsub#collection", "news")]),
        )
        .await?;
    ensure!(disco_item_nodes(&mut bob, &service, None).await? == ["news"]);
    ensure!(disco_item_nodes(&mut bob, &service, Some("news")).await? == ["sport"]);

    let subscribe = Element::new("pubsub", ns::PUBSUB).with_child(
        Element::new("subscribe", ns::PUBSUB)
            .with_attr("node", "news")
            .with_attr("jid", format!("bob@{DOMAIN}/b")),
    );
    bob.iq_result("set", Some(&service), subscribe).await?;
    let publish = |node: &str| {
        Element::new("pubsub", ns::PUBSUB).with_child(
            Element::new("publish", ns::PUBSUB)
                .with_attr("node", node)
                .with_child(
                    Element::new("item", ns::PUBSUB)
                        .with_attr("id", "goal")
                        .with_child(Element::new("x", "urn:test")),
                ),
        )
    };
    alice
        .iq_result("set", Some(&service), publish("sport"))
        .await?;
    let (event, _) = bob
        .recv_until(|el| el.is("message", ns::CLIENT) && el.to_string().contains("goal"))
        .await?;
    ensure!(
        event
            .get_child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.get_child("items", ns::PUBSUB_EVENT))
            .and_then(|i| i.attr("node"))
            == Some("sport"),
        "the event names the leaf: {event}"
    );
    let (_, condition) = alice
        .iq_error("set", Some(&service), publish("news"))
        .await?;
    ensure!(
        condition == "feature-not-implemented",
        "publish to a collection: {condition}"
    );

    let delete = Element::new("pubsub", ns::PUBSUB_OWNER)
        .with_child(Element::new("delete", ns::PUBSUB_OWNER).with_attr("node", "news"));
    alice.iq_result("set", Some(&service), delete).await?;
    ensure!(disco_item_nodes(&mut alice, &service, None).await? == ["sport"]);
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_contact_whose_subscription_is_approved_gets_the_last_items() -> Result<()> {
    let ts = start_server_with_users(&["alice", "bob"], PASSWORD).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .iq_result("set", None, tune_item("t1", "Welcome"))
        .await?;
    alice.send_presence(0).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let notify = format!("{TUNE}+notify");
    come_online(&mut bob, &[&notify, "urn:xmpp:bob"]).await?;
    got_nothing(&mut bob).await?;
    let subscribe = Element::new("presence", ns::CLIENT)
        .with_attr("to", format!("alice@{DOMAIN}"))
        .with_attr("type", "subscribe");
    bob.send(&subscribe).await?;
    alice
        .recv_until(|el| el.is("presence", ns::CLIENT) && el.attr("type") == Some("subscribe"))
        .await?;
    let approve = Element::new("presence", ns::CLIENT)
        .with_attr("to", format!("bob@{DOMAIN}"))
        .with_attr("type", "subscribed");
    alice.send(&approve).await?;
    bob.recv_until(|el| is_tune_event(el, "Welcome")).await?;
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_account_s_pep_items_stay_within_its_quota() -> Result<()> {
    let ts = start_server_with(|c| c.pubsub.max_pep_items_per_user = 3).await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    for n in 1..=4 {
        let publish = Element::new("pubsub", ns::PUBSUB).with_child(
            Element::new("publish", ns::PUBSUB)
                .with_attr("node", format!("urn:test:{n}"))
                .with_child(
                    Element::new("item", ns::PUBSUB).with_child(Element::new("x", "urn:test")),
                ),
        );
        let reply = alice.iq("set", None, publish).await?;
        if n <= 3 {
            ensure!(reply.attr("type") == Some("result"), "item {n}: {reply}");
        } else {
            ensure!(
                stanza_error(&reply) == Some(("wait".into(), "resource-constraint".into())),
                "over the quota: {reply}"
            );
        }
    }
    // Replacing an item of a full node is no growth: still fine.
    alice
        .iq_result("set", None, tune_item("t", "x"))
        .await
        .err();
    ts.shutdown().await;
    Ok(())
}
