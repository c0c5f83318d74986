//! Resource binding (RFC 6120 §7) and the legacy session request (RFC 3921 §3).

mod common;

use anyhow::{Result, ensure};
use common::*;
use corvid_proto::ns;
use corvid_proto::sasl::Mechanism;
use corvid_store::{RosterItem, Rosters as _, Subscription};
use corvid_xml::Element;

const PASSWORD: &str = "secret";

async fn server_with_alice() -> Result<TestServer> {
    let ts = start_server().await?;
    ts.create_user("alice", PASSWORD).await?;
    ts.create_user("bob", PASSWORD).await?;
    Ok(ts)
}

async fn authenticated(ts: &TestServer) -> Result<Client> {
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    client
        .auth_scram(Mechanism::ScramSha256, "alice", PASSWORD, None)
        .await?;
    Ok(client)
}

#[tokio::test]
async fn client_chosen_resource_is_bound() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = authenticated(&ts).await?;
    let jid = client.bind(Some("balcony")).await?;
    ensure!(jid == "alice@localhost/balcony", "{jid}");
    client.sync().await
}

#[tokio::test]
async fn server_generates_a_resource_when_none_is_asked_for() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut first = authenticated(&ts).await?;
    let mut second = authenticated(&ts).await?;
    let a = first.bind(None).await?;
    let b = second.bind(None).await?;
    for jid in [&a, &b] {
        let resource = jid.strip_prefix("alice@localhost/").unwrap_or_default();
        ensure!(!resource.is_empty(), "no generated resource in {jid}");
    }
    ensure!(a != b, "two sessions got the same generated resource {a}");
    first.sync().await?;
    second.sync().await
}

#[tokio::test]
async fn resource_conflict_closes_the_old_session_and_the_new_one_keeps_working() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut old = ts.login("alice", PASSWORD, Some("phone")).await?;
    let mut new = ts.login("alice", PASSWORD, Some("phone")).await?;
    ensure!(
        new.jid.as_deref() == Some("alice@localhost/phone"),
        "{:?}",
        new.jid
    );
    // RFC 6120 §7.7.2.2: the old session is terminated with <conflict/>.
    old.expect_stream_error("conflict").await?;
    new.sync().await?;
    // Stanzas to the full JID now reach the new session.
    let mut bob = ts.login("bob", PASSWORD, None).await?;
    bob.send(&message("alice@localhost/phone", "chat", "still there?"))
        .await?;
    let msg = new.expect_message("still there?").await?;
    ensure!(msg.attr("from") == bob.jid.as_deref(), "{msg}");
    // The old session's cleanup must not have unbound the new one.
    new.sync().await?;
    bob.send(&message("alice@localhost/phone", "chat", "and now?"))
        .await?;
    new.expect_message("and now?").await?;
    Ok(())
}

#[tokio::test]
async fn legacy_session_request_is_answered_before_and_after_bind() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = authenticated(&ts).await?;
    let session = client
        .features
        .as_ref()
        .and_then(|f| f.get_child("session", ns::SESSION));
    ensure!(
        session.is_some_and(|s| s.has_child("optional", ns::SESSION)),
        "features: {:?}",
        client.features
    );
    client
        .iq_result("set", None, Element::new("session", ns::SESSION))
        .await?;
    client.bind(Some("desk")).await?;
    client
        .iq_result("set", None, Element::new("session", ns::SESSION))
        .await?;
    client
        .iq_result("set", Some(DOMAIN), Element::new("session", ns::SESSION))
        .await?;
    client.sync().await
}

#[tokio::test]
async fn invalid_resource_is_bad_request_and_the_stream_survives() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = authenticated(&ts).await?;
    // RFC 7622 §3.1: a resource is at most 1023 octets.
    let too_long = "r".repeat(1024);
    for resource in [too_long.as_str(), "\u{E000}private-use"] {
        let mut bind = Element::new("bind", ns::BIND);
        bind.append_child(Element::new("resource", ns::BIND).with_text(resource));
        let (kind, condition) = client.iq_error("set", None, bind).await?;
        ensure!(
            (kind.as_str(), condition.as_str()) == ("modify", "bad-request"),
            "resource {resource:?}: {kind}/{condition}"
        );
    }
    // The client may try again with a valid resource (RFC 6120 §7.7.2.1).
    let jid = client.bind(Some("valid")).await?;
    ensure!(jid == "alice@localhost/valid", "{jid}");
    Ok(())
}

#[tokio::test]
async fn second_bind_on_a_bound_stream_is_refused() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = ts.login("alice", PASSWORD, Some("one")).await?;
    let bind = Element::new("bind", ns::BIND)
        .with_child(Element::new("resource", ns::BIND).with_text("two"));
    let (_, condition) = client.iq_error("set", None, bind).await?;
    ensure!(condition == "not-allowed", "{condition}");
    client.sync().await
}

#[tokio::test]
async fn closing_the_stream_ends_the_session() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut alice = ts.login("alice", PASSWORD, Some("gone")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    // RFC 6120 §4.4: the server answers our closing tag with its own and closes.
    alice.send_raw("</stream:stream>").await?;
    alice.expect_closed().await?;
    // The resource is unbound: an IQ to it now bounces. (One sent while the server is
    // still tearing the session down may get lost, so retry on silence.)
    bob.timeout = std::time::Duration::from_millis(500);
    let mut bounced = false;
    for _ in 0..10 {
        if let Ok(reply) = bob
            .iq(
                "get",
                Some("alice@localhost/gone"),
                Element::new("ping", ns::PING),
            )
            .await
        {
            bounced = stanza_error(&reply).is_some_and(|(_, c)| c == "service-unavailable");
            break;
        }
    }
    ensure!(bounced, "IQs to the closed session's JID were not bounced");
    Ok(())
}

/// RFC 6120 §7.7.2.2 with the usual reason for a reconnect: the old connection is dead
/// (it stopped reading with lots queued), so its session lingers until its writes give up.
/// Its end must not touch the new session on the same full JID: the new session stays
/// available, and the contacts' last word about the resource is the new presence.
#[tokio::test]
async fn replacing_a_stuck_session_leaves_the_new_one_available_for_its_contacts() -> Result<()> {
    let ts = start_server_with(|c| {
        c.limits.outgoing_queue = 100_000;
        c.limits.outgoing_queue_bytes = 256 << 20;
        c.limits.session_bytes_per_sec = 256 << 20;
        c.limits.session_burst_bytes = 256 << 20;
    })
    .await?;
    for (user, contact) in [("alice", "bob"), ("bob", "alice")] {
        ts.create_user(user, PASSWORD).await?;
        let item = RosterItem {
            jid: format!("{contact}@{DOMAIN}"),
            subscription: Subscription::Both,
            in_roster: true,
            ..RosterItem::default()
        };
        ts.server.store.put_roster_item(user, DOMAIN, &item).await?;
    }
    let mut bob = ts.login("bob", PASSWORD, Some("desk")).await?;
    bob.send(&Element::new("presence", ns::CLIENT)).await?;
    bob.sync().await?;

    // The old connection: a small receive buffer, and it never reads.
    let mut old = Client::connect_with_recv_buffer(ts.c2s_addr, 4096).await?;
    old.open_stream().await?;
    old.starttls().await?;
    old.login("alice", PASSWORD, Some("phone")).await?;
    old.send(&Element::new("presence", ns::CLIENT)).await?;
    old.sync().await?;
    // Twice what the kernel may buffer for it, so its session is stuck writing.
    let body = "x".repeat(32 * 1024);
    for _ in 0..(2 * max_send_buffer() / body.len() + 8) {
        bob.send(&message("alice@localhost/phone", "chat", &body))
            .await?;
    }
    bob.sync().await?;

    let mut new = ts.login("alice", PASSWORD, Some("phone")).await?;
    new.send(
        &Element::new("presence", ns::CLIENT)
            .with_child(Element::new("status", ns::CLIENT).with_text("new")),
    )
    .await?;
    new.sync().await?;
    // Wait for the old session's end: its connection closes only after its cleanup ran.
    let _ = old.read_to_end().await;

    // Bare-JID messages need an available resource (RFC 6121 §8.5.2.1.1).
    bob.send(&message("alice@localhost", "chat", "still online?"))
        .await?;
    // Before it, the messages the old connection never took to write, handed on to the
    // new session rather than lost.
    let (_, before) = new
        .recv_until(|el| message_body(el).as_deref() == Some("still online?"))
        .await?;
    ensure!(
        before.iter().filter_map(message_body).all(|b| b == body),
        "unexpected messages before ours: {before:?}"
    );
    // What bob heard from alice/phone since, up to a marker sent after all of the above.
    new.send(&message("bob@localhost/desk", "chat", "marker"))
        .await?;
    let (_, heard) = bob
        .recv_until(|el| message_body(el).as_deref() == Some("marker"))
        .await?;
    let last = heard
        .iter()
        .filter(|el| el.is("presence", ns::CLIENT))
        .rfind(|el| el.attr("from") == Some("alice@localhost/phone"));
    let status = last.and_then(|p| p.get_child("status", ns::CLIENT).map(|s| s.text()));
    ensure!(
        last.is_some_and(|p| p.attr("type").is_none()) && status.as_deref() == Some("new"),
        "bob's last presence from alice/phone: {last:?}"
    );
    Ok(())
}

#[tokio::test]
async fn binding_more_resources_than_the_limit_is_a_resource_constraint() -> Result<()> {
    // RFC 6120 §7.6.2.2: the server may cap the resources per account.
    let ts = start_server_with(|c| c.limits.max_resources_per_account = 2).await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut first = ts.login("alice", PASSWORD, Some("one")).await?;
    let _second = ts.login("alice", PASSWORD, Some("two")).await?;
    let mut third = authenticated(&ts).await?;
    let bind = Element::new("bind", ns::BIND)
        .with_child(Element::new("resource", ns::BIND).with_text("three"));
    let (kind, condition) = third.iq_error("set", None, bind).await?;
    ensure!(
        (kind.as_str(), condition.as_str()) == ("wait", "resource-constraint"),
        "{kind} {condition}"
    );
    // Replacing a bound resource adds none, so it is allowed; and a freed slot can be used.
    let mut replacing = ts.login("alice", PASSWORD, Some("two")).await?;
    replacing.sync().await?;
    first.send_raw("</stream:stream>").await?;
    first.expect_closed().await?;
    let jid = third.bind(Some("three")).await?;
    ensure!(jid == "alice@localhost/three", "{jid}");
    third.sync().await
}

/// The most a TCP socket's send buffer may grow to (Linux `tcp_wmem` max; 4 MiB elsewhere).
fn max_send_buffer() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20)
        .max(4 << 20)
}
