//! Stream management (XEP-0198) over real sockets: acks, resumption after a dropped
//! connection, the errors, and what happens to unacknowledged messages when a session
//! ends for good.

mod common;

use anyhow::{Context, Result, ensure};
use common::{Client, TestServer, message, message_body, start_server_with};
use corvid_proto::ns;
use corvid_xml::Element;

const PASSWORD: &str = "secret-pass";

async fn server(adjust: impl FnOnce(&mut corvid_server::Config)) -> Result<TestServer> {
    let ts = start_server_with(adjust).await?;
    for user in ["alice", "bob"] {
        ts.create_user(user, PASSWORD).await?;
    }
    Ok(ts)
}

fn sm(name: &str) -> Element {
    Element::new(name, ns::SM)
}

/// Logs in, binds `resource`, sends initial presence, then enables resumable stream
/// management (so the stanzas counted start after it); returns the SM id.
async fn login_resumable(ts: &TestServer, user: &str, resource: &str) -> Result<(Client, String)> {
    let mut client = ts.login(user, PASSWORD, Some(resource)).await?;
    client.send_presence(0).await?;
    client
        .send(&sm("enable").with_attr("resume", "true"))
        .await?;
    let enabled = client.recv().await?;
    ensure!(
        enabled.is("enabled", ns::SM),
        "expected <enabled/>, got {enabled}"
    );
    ensure!(enabled.attr("resume") == Some("true"));
    let id = enabled.attr("id").context("no id")?.to_string();
    Ok((client, id))
}

/// Authenticates on a new connection without binding (to resume instead).
async fn authenticated(ts: &TestServer, user: &str) -> Result<Client> {
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    client
        .auth_scram(
            corvid_proto::sasl::Mechanism::ScramSha256,
            user,
            PASSWORD,
            None,
        )
        .await?;
    ensure!(
        client.has_feature("sm", ns::SM),
        "no <sm/> feature after auth"
    );
    Ok(client)
}

fn resume(previd: &str, h: u32) -> Element {
    sm("resume")
        .with_attr("previd", previd)
        .with_attr("h", h.to_string())
}

/// The next element that is not an `<r/>` (answered when `answer` is given).
async fn recv_answering(client: &mut Client, answer: Option<&mut u32>) -> Result<Element> {
    let mut answer = answer;
    loop {
        let el = client.recv().await?;
        if el.is("r", ns::SM) {
            if let Some(h) = answer.as_deref() {
                client.send(&sm("a").with_attr("h", h.to_string())).await?;
            }
            continue;
        }
        if let Some(h) = answer.as_deref_mut()
            && matches!(el.name(), "message" | "presence" | "iq")
        {
            *h = h.wrapping_add(1);
        }
        return Ok(el);
    }
}

#[tokio::test]
async fn enable_before_bind_or_twice_is_an_unexpected_request() -> Result<()> {
    let ts = server(|_| {}).await?;
    let mut early = authenticated(&ts, "alice").await?;
    early.send(&sm("enable")).await?;
    let failed = early.recv().await?;
    ensure!(failed.is("failed", ns::SM), "got {failed}");
    ensure!(failed.has_child("unexpected-request", ns::STANZA_ERRORS));
    // The stream goes on: the client may still bind and enable.
    early.bind(Some("r")).await?;
    early.send(&sm("enable")).await?;
    let enabled = early.recv().await?;
    ensure!(enabled.is("enabled", ns::SM) && enabled.attr("id").is_none());
    early.send(&sm("enable")).await?;
    let again = early.recv().await?;
    ensure!(
        again.has_child("unexpected-request", ns::STANZA_ERRORS),
        "got {again}"
    );
    Ok(())
}

#[tokio::test]
async fn acks_count_stanzas_only_and_the_server_asks_for_them() -> Result<()> {
    let ts = server(|c| c.stream_management.ack_request_stanzas = 3).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    alice.send(&sm("enable")).await?;
    ensure!(alice.recv().await?.is("enabled", ns::SM));
    // Two stanzas and a nonza: h is 2.
    alice
        .send(&message("bob@localhost/b", "chat", "one"))
        .await?;
    alice
        .send(&message("bob@localhost/b", "chat", "two"))
        .await?;
    alice.send(&sm("r")).await?;
    let a = alice.recv().await?;
    ensure!(a.is("a", ns::SM) && a.attr("h") == Some("2"), "got {a}");
    bob.expect_message("one").await?;
    bob.expect_message("two").await?;
    // Three stanzas to alice: the server asks after the third.
    for body in ["x", "y", "z"] {
        bob.send(&message("alice@localhost/a", "chat", body))
            .await?;
    }
    let mut got = Vec::new();
    loop {
        let el = alice.recv().await?;
        if el.is("r", ns::SM) {
            break;
        }
        got.extend(message_body(&el));
    }
    ensure!(got == ["x", "y", "z"], "got {got:?} before <r/>");
    alice.send(&sm("a").with_attr("h", "3")).await?;
    // Acknowledging more than was sent is a stream error with the XEP's condition.
    alice.send(&sm("a").with_attr("h", "9")).await?;
    let err = alice.recv().await?;
    ensure!(
        err.has_child("undefined-condition", ns::STREAM_ERRORS)
            && err.has_child("handled-count-too-high", ns::SM),
        "got {err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_dropped_session_is_resumed_with_exactly_what_was_not_acknowledged() -> Result<()> {
    let ts = server(|_| {}).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let (mut alice, id) = login_resumable(&ts, "alice", "phone").await?;
    let mut h = 0u32;
    for body in ["1", "2"] {
        bob.send(&message("alice@localhost/phone", "chat", body))
            .await?;
    }
    for body in ["1", "2"] {
        let el = recv_answering(&mut alice, Some(&mut h)).await?;
        ensure!(message_body(&el).as_deref() == Some(body), "got {el}");
    }
    // Alice acknowledges "1" only, then her connection dies without a word.
    let acked = h - 1;
    alice
        .send(&sm("a").with_attr("h", acked.to_string()))
        .await?;
    alice.send(&sm("r")).await?;
    ensure!(alice.recv().await?.is("a", ns::SM));
    drop(alice);
    for body in ["3", "4"] {
        bob.send(&message("alice@localhost/phone", "chat", body))
            .await?;
    }
    bob.sync().await?;
    let mut again = authenticated(&ts, "alice").await?;
    again.send(&resume(&id, acked)).await?;
    let resumed = again.recv().await?;
    ensure!(
        resumed.is("resumed", ns::SM) && resumed.attr("previd") == Some(id.as_str()),
        "got {resumed}"
    );
    let mut bodies = Vec::new();
    let mut h = acked;
    while bodies.len() < 3 {
        let el = recv_answering(&mut again, Some(&mut h)).await?;
        bodies.extend(message_body(&el));
    }
    ensure!(bodies == ["2", "3", "4"], "resent {bodies:?}");
    // Still the same session: same full JID, messages to it arrive here.
    bob.send(&message("alice@localhost/phone", "chat", "5"))
        .await?;
    let el = recv_answering(&mut again, Some(&mut h)).await?;
    ensure!(message_body(&el).as_deref() == Some("5"), "got {el}");
    Ok(())
}

#[tokio::test]
async fn a_resumption_takes_over_a_connection_that_still_looks_alive() -> Result<()> {
    let ts = server(|_| {}).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let (mut alice, id) = login_resumable(&ts, "alice", "phone").await?;
    bob.send(&message("alice@localhost/phone", "chat", "while-alive"))
        .await?;
    bob.sync().await?;
    // The old connection stays open (the server has no reason to think it dead).
    let mut again = authenticated(&ts, "alice").await?;
    again.send(&resume(&id, 0)).await?;
    let resumed = again.recv().await?;
    ensure!(resumed.is("resumed", ns::SM), "got {resumed}");
    let mut h = 0;
    let mut bodies = Vec::new();
    while !bodies.contains(&"while-alive".to_string()) {
        let el = recv_answering(&mut again, Some(&mut h)).await?;
        bodies.extend(message_body(&el));
    }
    // The old connection is closed by the server, without another word to it.
    let (_, _) = alice.read_to_end().await?;
    Ok(())
}

#[tokio::test]
async fn unknown_or_foreign_ids_and_resumption_after_bind_fail() -> Result<()> {
    let ts = server(|_| {}).await?;
    let (_alice, id) = login_resumable(&ts, "alice", "phone").await?;
    let mut bob = authenticated(&ts, "bob").await?;
    bob.send(&resume(&id, 0)).await?;
    let failed = bob.recv().await?;
    ensure!(
        failed.has_child("item-not-found", ns::STANZA_ERRORS),
        "got {failed}"
    );
    bob.send(&resume("no-such-id", 0)).await?;
    ensure!(
        bob.recv()
            .await?
            .has_child("item-not-found", ns::STANZA_ERRORS)
    );
    // After a failed resumption the client binds as usual.
    bob.bind(Some("b")).await?;
    bob.send(&resume(&id, 0)).await?;
    ensure!(
        bob.recv()
            .await?
            .has_child("unexpected-request", ns::STANZA_ERRORS)
    );
    Ok(())
}

#[tokio::test]
async fn unacknowledged_messages_go_offline_when_resumption_times_out() -> Result<()> {
    let ts = server(|c| c.stream_management.resume_timeout_secs = 1).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let (mut alice, id) = login_resumable(&ts, "alice", "phone").await?;
    bob.send(&message("alice@localhost/phone", "chat", "never-acked"))
        .await?;
    let el = recv_answering(&mut alice, None).await?;
    ensure!(message_body(&el).as_deref() == Some("never-acked"));
    drop(alice);
    bob.send(&message("alice@localhost", "chat", "while-detached"))
        .await?;
    bob.sync().await?;
    // Past the timeout the id is gone …
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut late = authenticated(&ts, "alice").await?;
    late.send(&resume(&id, 0)).await?;
    ensure!(
        late.recv()
            .await?
            .has_child("item-not-found", ns::STANZA_ERRORS)
    );
    // … and both messages wait offline, once each.
    late.bind(Some("laptop")).await?;
    late.send(&Element::new("presence", ns::CLIENT)).await?;
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        let el = late.recv_skipping_presence().await?;
        ensure!(
            el.has_child("delay", ns::DELAY),
            "not from offline storage: {el}"
        );
        bodies.extend(message_body(&el));
    }
    ensure!(
        bodies == ["never-acked", "while-detached"],
        "got {bodies:?}"
    );
    late.sync().await?;
    Ok(())
}

#[tokio::test]
async fn an_ack_sent_before_closing_is_honoured() -> Result<()> {
    let ts = server(|_| {}).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("phone")).await?;
    alice.send_presence(0).await?;
    alice.send(&sm("enable")).await?;
    ensure!(alice.recv().await?.is("enabled", ns::SM));
    let mut h = 0;
    for body in ["acked", "not-acked"] {
        bob.send(&message("alice@localhost/phone", "chat", body))
            .await?;
    }
    let mut seen = 0;
    while seen < 2 {
        let el = recv_answering(&mut alice, Some(&mut h)).await?;
        seen += usize::from(message_body(&el).is_some());
    }
    // Acknowledges the first message only, then closes cleanly.
    alice
        .send(&sm("a").with_attr("h", (h - 1).to_string()))
        .await?;
    alice.send_raw("</stream:stream>").await?;
    let _ = alice.read_to_end().await;
    let mut later = ts.login("alice", PASSWORD, Some("laptop")).await?;
    later.send(&Element::new("presence", ns::CLIENT)).await?;
    let el = later.recv_skipping_presence().await?;
    ensure!(
        message_body(&el).as_deref() == Some("not-acked"),
        "got {el}"
    );
    later.sync().await?;
    Ok(())
}
