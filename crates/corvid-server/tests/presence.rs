//! Presence broadcast (RFC 6121 §4.2.2, §4.4.2) as the contacts observe it: each available
//! resource of each subscribed contact gets the presence once, addressed to the contact's
//! bare JID; nobody else does; a roster change shows in the next broadcast; and blocking
//! (XEP-0191 §3.3, §3.4) withholds it either way.

mod common;

use anyhow::{Result, ensure};
use common::*;
use corvid_proto::ns;
use corvid_store::{RosterItem, Rosters, Subscription};
use corvid_xml::Element;

const PASSWORD: &str = "secret";

async fn server_with_users(names: &[&str]) -> Result<TestServer> {
    start_server_with_users(names, PASSWORD).await
}

/// Sets `user`'s subscription with `contact` in storage, as a finished RFC 6121 §3 exchange
/// would leave it.
async fn subscribe(
    ts: &TestServer,
    user: &str,
    contact: &str,
    subscription: Subscription,
) -> Result<()> {
    let item = RosterItem {
        jid: format!("{contact}@{DOMAIN}"),
        subscription,
        in_roster: true,
        ..RosterItem::default()
    };
    ts.server.store.put_roster_item(user, DOMAIN, &item).await?;
    Ok(())
}

fn presence_with_status(status: &str) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_child(Element::new("status", ns::CLIENT).with_text(status))
}

fn status_of(el: &Element) -> Option<String> {
    el.get_child("status", ns::CLIENT).map(|s| s.text())
}

/// The presences with `status` that `client` received before a marker message sent to it
/// now (so everything routed to it earlier has arrived).
async fn presences_with_status(
    ts: &TestServer,
    client: &mut Client,
    status: &str,
) -> Result<Vec<Element>> {
    let full = client.jid.clone().unwrap_or_default();
    let mut marker_sender = ts.login("marker", PASSWORD, None).await?;
    marker_sender
        .send(&message(&full, "chat", "marker"))
        .await?;
    let (_, skipped) = client
        .recv_until(|el| message_body(el).as_deref() == Some("marker"))
        .await?;
    Ok(skipped
        .into_iter()
        .filter(|el| el.is("presence", ns::CLIENT) && status_of(el).as_deref() == Some(status))
        .collect())
}

#[tokio::test]
async fn broadcast_reaches_each_available_resource_of_each_subscriber_once() -> Result<()> {
    let ts = server_with_users(&["alice", "bob", "carol", "dave", "marker"]).await?;
    subscribe(&ts, "alice", "bob", Subscription::From).await?;
    subscribe(&ts, "alice", "carol", Subscription::Both).await?;
    subscribe(&ts, "alice", "dave", Subscription::To).await?; // alice sees dave, not the reverse
    let mut b1 = ts.login("bob", PASSWORD, Some("b1")).await?;
    b1.send_presence(0).await?;
    let mut b2 = ts.login("bob", PASSWORD, Some("b2")).await?;
    b2.send_presence(-1).await?;
    let mut b3 = ts.login("bob", PASSWORD, Some("b3")).await?; // bound, never available
    let mut carol = ts.login("carol", PASSWORD, Some("c")).await?;
    carol.send_presence(0).await?;
    let mut dave = ts.login("dave", PASSWORD, Some("d")).await?;
    dave.send_presence(0).await?;

    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice.send(&presence_with_status("here <&> 在")).await?;
    alice.sync().await?;

    for (client, bare) in [
        (&mut b1, "bob@localhost"),
        (&mut b2, "bob@localhost"),
        (&mut carol, "carol@localhost"),
    ] {
        let got = presences_with_status(&ts, client, "here <&> 在").await?;
        ensure!(got.len() == 1, "expected one broadcast, got {got:?}");
        ensure!(
            got[0].attr("from") == Some("alice@localhost/a"),
            "{}",
            got[0]
        );
        ensure!(got[0].attr("to") == Some(bare), "{}", got[0]);
    }
    for client in [&mut b3, &mut dave] {
        let got = presences_with_status(&ts, client, "here <&> 在").await?;
        ensure!(got.is_empty(), "not a subscriber, yet got {got:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_roster_change_shows_in_the_next_broadcast() -> Result<()> {
    let ts = server_with_users(&["alice", "bob", "marker"]).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    bob.send_presence(0).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice.send(&presence_with_status("before")).await?;
    alice.sync().await?;
    ensure!(
        presences_with_status(&ts, &mut bob, "before")
            .await?
            .is_empty()
    );

    subscribe(&ts, "alice", "bob", Subscription::Both).await?;
    alice.send(&presence_with_status("subscribed")).await?;
    alice.sync().await?;
    ensure!(
        presences_with_status(&ts, &mut bob, "subscribed")
            .await?
            .len()
            == 1
    );

    ts.server
        .store
        .remove_roster_item("alice", DOMAIN, "bob@localhost")
        .await?;
    alice.send(&presence_with_status("removed")).await?;
    alice.sync().await?;
    ensure!(
        presences_with_status(&ts, &mut bob, "removed")
            .await?
            .is_empty()
    );
    Ok(())
}

fn block(jid: &str) -> Element {
    Element::new("block", ns::BLOCKING)
        .with_child(Element::new("item", ns::BLOCKING).with_attr("jid", jid))
}

#[tokio::test]
async fn blocking_withholds_broadcasts_either_way() -> Result<()> {
    let ts = server_with_users(&["alice", "bob", "carol", "dave", "marker"]).await?;
    for contact in ["bob", "carol", "dave"] {
        subscribe(&ts, "alice", contact, Subscription::Both).await?;
    }
    let mut dave = ts.login("dave", PASSWORD, Some("d")).await?;
    dave.send_presence(0).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    bob.send_presence(0).await?;
    let mut carol = ts.login("carol", PASSWORD, Some("c")).await?;
    carol.send_presence(0).await?;
    // XEP-0191 §3.4: carol blocked alice, so nothing of alice's reaches her.
    carol
        .iq_result("set", None, block("alice@localhost"))
        .await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    // §3.3: alice blocked bob, so bob sees her offline.
    alice.iq_result("set", None, block("bob@localhost")).await?;
    alice.send(&presence_with_status("blocked")).await?;
    alice.sync().await?;

    ensure!(
        presences_with_status(&ts, &mut dave, "blocked")
            .await?
            .len()
            == 1,
        "dave blocked no one"
    );
    ensure!(
        presences_with_status(&ts, &mut bob, "blocked")
            .await?
            .is_empty()
    );
    ensure!(
        presences_with_status(&ts, &mut carol, "blocked")
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn directed_presence_beyond_the_cap_is_refused_with_policy_violation() -> Result<()> {
    // RFC 6121 §4.6.3: the server remembers where directed presence went, to send those
    // entities unavailable at logout; that list is capped (limits.max_directed_presences).
    let ts = start_server_with(|c| c.limits.max_directed_presences = 2).await?;
    for name in ["alice", "bob", "carol", "dave"] {
        ts.create_user(name, PASSWORD).await?;
    }
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice.send_presence(0).await?;
    let mut dave = ts.login("dave", PASSWORD, Some("d")).await?;
    dave.send_presence(0).await?;
    let directed = |to: &str| {
        Element::new("presence", ns::CLIENT)
            .with_attr("to", to)
            .with_attr("id", format!("to-{to}"))
    };
    for to in ["bob@localhost", "carol@localhost", "bob@localhost"] {
        alice.send(&directed(to)).await?;
    }
    alice.send(&directed("dave@localhost")).await?;
    let (refused, _) = alice
        .recv_until(|el| el.attr("id") == Some("to-dave@localhost"))
        .await?;
    let (_, condition) = stanza_error(&refused).unwrap_or_default();
    ensure!(condition == "policy-violation", "{refused}");
    // The refused one did not reach dave: the next thing he gets is a marker.
    alice
        .send(&message("dave@localhost/d", "chat", "marker"))
        .await?;
    let (_, before) = dave
        .recv_until(|el| message_body(el).as_deref() == Some("marker"))
        .await?;
    ensure!(
        !before
            .iter()
            .any(|el| el.attr("from") == Some("alice@localhost/a")),
        "dave got {before:?}"
    );
    // Making one of the two unavailable frees a place.
    alice
        .send(&directed("carol@localhost").with_attr("type", "unavailable"))
        .await?;
    alice.send(&directed("dave@localhost")).await?;
    alice.sync().await?;
    let (got, _) = dave.recv_until(|el| el.is("presence", ns::CLIENT)).await?;
    ensure!(got.attr("from") == Some("alice@localhost/a"), "{got}");
    Ok(())
}

#[tokio::test]
async fn a_probe_without_a_subscription_is_answered_unsubscribed_which_clears_a_stale_one()
-> Result<()> {
    // RFC 6121 §4.3.2 step 1: alice's roster says she is subscribed to bob's presence, but
    // bob's says nothing of her, and ghost has no account at all. Her initial presence
    // probes both; each answers `unsubscribed` from the bare JID, which ends the stale
    // subscription on her side (a roster push) and is shown to her.
    let ts = server_with_users(&["alice", "bob"]).await?;
    subscribe(&ts, "alice", "bob", Subscription::To).await?;
    subscribe(&ts, "alice", "ghost", Subscription::To).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .iq_result("get", None, Element::new("query", ns::ROSTER))
        .await?;
    alice.send(&Element::new("presence", ns::CLIENT)).await?;
    for contact in ["bob@localhost", "ghost@localhost"] {
        let (answer, before) = alice
            .recv_until(|el| {
                el.is("presence", ns::CLIENT)
                    && el.attr("type") == Some("unsubscribed")
                    && el.attr("from") == Some(contact)
            })
            .await?;
        // Processed like any unsubscribed (RFC 6121 §3.3.3): pushed first, then shown.
        let pushed_none = before.iter().any(|el| {
            el.get_child("query", ns::ROSTER)
                .and_then(|q| q.get_child("item", ns::ROSTER))
                .is_some_and(|i| {
                    i.attr("jid") == Some(contact) && i.attr("subscription") == Some("none")
                })
        });
        ensure!(pushed_none, "no push of {contact} as none before {answer}");
    }
    Ok(())
}

#[tokio::test]
async fn removing_a_contact_pushes_only_the_removal_and_cancels_both_ways() -> Result<()> {
    // RFC 6121 §2.5.2: one push, `remove`; the contact gets unsubscribe and unsubscribed.
    let ts = server_with_users(&["alice", "bob"]).await?;
    subscribe(&ts, "alice", "bob", Subscription::Both).await?;
    subscribe(&ts, "bob", "alice", Subscription::Both).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .iq_result("get", None, Element::new("query", ns::ROSTER))
        .await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    bob.send_presence(0).await?;
    bob.iq_result("get", None, Element::new("query", ns::ROSTER))
        .await?;
    let remove = Element::new("query", ns::ROSTER).with_child(
        Element::new("item", ns::ROSTER)
            .with_attr("jid", "bob@localhost")
            .with_attr("subscription", "remove"),
    );
    alice
        .send(
            &Element::new("iq", ns::CLIENT)
                .with_attr("type", "set")
                .with_attr("id", "rm")
                .with_child(remove),
        )
        .await?;
    let (_, before) = alice.recv_until(|el| el.attr("id") == Some("rm")).await?;
    alice.sync().await?;
    let pushes: Vec<String> = before
        .iter()
        .filter(|el| el.is("iq", ns::CLIENT) && el.attr("type") == Some("set"))
        .filter_map(|el| {
            el.get_child("query", ns::ROSTER)?
                .get_child("item", ns::ROSTER)
        })
        .map(|item| item.attr("subscription").unwrap_or_default().to_string())
        .collect();
    ensure!(pushes == ["remove"], "alice got the pushes {pushes:?}");
    // Bob's side: both subscriptions cancelled.
    let (push, _) = bob
        .recv_until(|el| {
            el.get_child("query", ns::ROSTER)
                .and_then(|q| q.get_child("item", ns::ROSTER))
                .is_some_and(|i| i.attr("subscription") == Some("none"))
        })
        .await?;
    ensure!(push.attr("type") == Some("set"), "{push}");
    Ok(())
}
