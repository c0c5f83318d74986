//! Stanza routing (RFC 6120 §8, RFC 6121 §8), the `from` rules of RFC 6120 §8.1.2.1, the
//! server's own IQ services (disco, ping, version, time), and the errors for stanzas that
//! cannot be delivered.

mod common;

use anyhow::{Context, Result, ensure};
use common::*;
use corvid_proto::ns;
use corvid_xml::Element;

const PASSWORD: &str = "secret";

async fn server_with_users(names: &[&str]) -> Result<TestServer> {
    start_server_with_users(names, PASSWORD).await
}

/// Without XEP-0160 offline storage, so that undeliverable messages get the plain RFC 6121
/// §8.5.2.2.1 treatment: bounced.
async fn server_without_offline_storage(names: &[&str]) -> Result<TestServer> {
    let ts = start_server_with(|c| c.modules.disabled = vec!["offline".into()]).await?;
    for name in names {
        ts.create_user(name, PASSWORD).await?;
    }
    Ok(ts)
}

/// Asserts `el` is an error reply of `kind` with `condition`.
fn ensure_error(el: &Element, name: &str, condition: &str) -> Result<()> {
    ensure!(
        el.name() == name && el.attr("type") == Some("error"),
        "expected a {name} error, got {el}"
    );
    let (_, got) = stanza_error(el).with_context(|| format!("no error condition in {el}"))?;
    ensure!(
        got == condition,
        "expected <{condition}/>, got <{got}/>: {el}"
    );
    Ok(())
}

#[tokio::test]
async fn message_to_a_full_jid_arrives_stamped_with_the_senders_full_jid() -> Result<()> {
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    alice
        .send(&message("bob@localhost/b", "chat", "hello bob"))
        .await?;
    let msg = bob.expect_message("hello bob").await?;
    ensure!(msg.attr("from") == Some("alice@localhost/a"), "{msg}");
    ensure!(msg.attr("to") == Some("bob@localhost/b"), "{msg}");
    ensure!(msg.attr("type") == Some("chat"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn message_to_a_bare_jid_goes_to_the_highest_priority_resource() -> Result<()> {
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut high = ts.login("bob", PASSWORD, Some("high")).await?;
    let mut low = ts.login("bob", PASSWORD, Some("low")).await?;
    high.send_presence(5).await?;
    low.send_presence(1).await?;
    alice
        .send(&message("bob@localhost", "chat", "to the bare JID"))
        .await?;
    alice
        .send(&message("bob@localhost/low", "chat", "marker"))
        .await?;
    high.expect_message("to the bare JID").await?;
    // Alice's stanzas are routed in order, so had "low" received the first, it would come first.
    low.expect_message("marker").await?;
    Ok(())
}

#[tokio::test]
async fn message_to_a_bare_jid_goes_to_every_resource_sharing_the_top_priority() -> Result<()> {
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut one = ts.login("bob", PASSWORD, Some("one")).await?;
    let mut two = ts.login("bob", PASSWORD, Some("two")).await?;
    one.send_presence(3).await?;
    two.send_presence(3).await?;
    alice
        .send(&message("bob@localhost", "normal", "for both"))
        .await?;
    one.expect_message("for both").await?;
    two.expect_message("for both").await?;
    Ok(())
}

#[tokio::test]
async fn negative_priority_resource_gets_no_bare_jid_message() -> Result<()> {
    // RFC 6121 §8.5.2.1.1: only non-negative resources; none left means "offline".
    let ts = server_without_offline_storage(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    bob.send_presence(-1).await?;
    alice
        .send(&message("bob@localhost", "chat", "anyone?"))
        .await?;
    let bounce = alice.recv().await?;
    ensure_error(&bounce, "message", "service-unavailable")?;
    ensure!(bounce.attr("from") == Some("bob@localhost"), "{bounce}");
    alice
        .send(&message("bob@localhost/b", "chat", "marker"))
        .await?;
    bob.expect_message("marker").await?;
    Ok(())
}

#[tokio::test]
async fn message_to_a_resource_without_presence_is_not_delivered_via_the_bare_jid() -> Result<()> {
    let ts = server_without_offline_storage(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    alice
        .send(&message("bob@localhost", "chat", "not available yet"))
        .await?;
    ensure_error(&alice.recv().await?, "message", "service-unavailable")?;
    alice
        .send(&message("bob@localhost/b", "chat", "marker"))
        .await?;
    bob.expect_message("marker").await?;
    Ok(())
}

#[tokio::test]
async fn text_with_chinese_and_xml_specials_arrives_intact() -> Result<()> {
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let text = "你好，世界！ <b>not a tag</b> & &amp; 'single' \"double\" ]]> \u{1F426} tab\there";
    let mut msg = message("bob@localhost/b", "chat", text);
    msg.append_child(Element::new("subject", ns::CLIENT).with_text("主题 <&>"));
    msg.set_attr("id", "id-'with'-\"quotes\"-&-<>");
    alice.send(&msg).await?;
    let got = bob.expect_message(text).await?;
    ensure!(
        got.get_child("subject", ns::CLIENT)
            .map(|s| s.text())
            .as_deref()
            == Some("主题 <&>"),
        "{got}"
    );
    ensure!(got.attr("id") == Some("id-'with'-\"quotes\"-&-<>"), "{got}");
    // The same bytes on the wire, escaped by the sender, parse back to the same text.
    alice
        .send_raw("<message to='bob@localhost/b' type='chat'><body>&lt;&amp;&gt;&quot;&apos; 漢字</body></message>")
        .await?;
    bob.expect_message("<&>\"' 漢字").await?;
    Ok(())
}

#[tokio::test]
async fn message_to_an_offline_user_bounces_with_service_unavailable_without_offline_storage()
-> Result<()> {
    let ts = server_without_offline_storage(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut msg = message("bob@localhost", "chat", "are you there?");
    msg.set_attr("id", "m1");
    alice.send(&msg).await?;
    let bounce = alice.recv().await?;
    ensure_error(&bounce, "message", "service-unavailable")?;
    ensure!(
        bounce.attr("id") == Some("m1") && bounce.attr("to") == Some("alice@localhost/a"),
        "{bounce}"
    );
    // Also through an unavailable full JID, which falls back to the bare JID (RFC 6121 §8.5.3.2.1).
    alice
        .send(&message("bob@localhost/gone", "chat", "still there?"))
        .await?;
    ensure_error(&alice.recv().await?, "message", "service-unavailable")?;
    Ok(())
}

#[tokio::test]
async fn iq_to_an_unavailable_full_jid_is_service_unavailable() -> Result<()> {
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let (kind, condition) = alice
        .iq_error(
            "get",
            Some("bob@localhost/nowhere"),
            Element::new("ping", ns::PING),
        )
        .await?;
    ensure!(
        (kind.as_str(), condition.as_str()) == ("cancel", "service-unavailable"),
        "{kind}/{condition}"
    );
    let (_, condition) = alice
        .iq_error(
            "get",
            Some("nobody@localhost/x"),
            Element::new("ping", ns::PING),
        )
        .await?;
    ensure!(condition == "service-unavailable", "{condition}");
    Ok(())
}

#[tokio::test]
async fn iq_between_two_online_users_is_delivered_and_answered() -> Result<()> {
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    alice
        .send_raw(format!(
            "<iq type='get' id='v1' to='bob@localhost/b'><query xmlns='{}'/></iq>",
            ns::VERSION
        ))
        .await?;
    let request = bob.recv().await?;
    ensure!(
        request.is("iq", ns::CLIENT) && request.attr("from") == Some("alice@localhost/a"),
        "{request}"
    );
    bob.send_raw("<iq type='result' id='v1' to='alice@localhost/a'/>")
        .await?;
    let reply = alice.recv().await?;
    ensure!(
        reply.attr("type") == Some("result") && reply.attr("id") == Some("v1"),
        "{reply}"
    );
    ensure!(reply.attr("from") == Some("bob@localhost/b"), "{reply}");
    Ok(())
}

#[tokio::test]
async fn iq_results_and_errors_are_never_answered_with_errors() -> Result<()> {
    // RFC 6120 §8.3.1: an entity must not respond to a result or an error with an error.
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    for stanza in [
        "<iq type='result' id='r1' to='bob@localhost/nowhere'/>",
        "<iq type='error' id='r2' to='bob@localhost/nowhere'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        "<iq type='result' id='r3' to='localhost'/>",
        "<iq type='result' id='r4' to='bob@localhost'/>",
        "<iq type='result' id='r5' to='nobody@example.org'/>",
        "<message type='error' id='r6' to='bob@localhost'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
    ] {
        alice.send_raw(stanza).await?;
    }
    // The ping's answer must be the very next thing alice receives.
    alice.sync().await
}

#[tokio::test]
async fn a_foreign_from_is_overridden_with_the_session_address_and_the_stanza_delivered()
-> Result<()> {
    // RFC 6120 §8.1.2.1: the server stamps the sender's full JID whatever the client put in
    // `from` (poezio puts its in-room address on private messages); the stream stays up.
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    for (from, body) in [
        ("bob@localhost/b", "I am bob"),
        ("alice@localhost/other", "from my other device"),
        ("room@conference.localhost/alice", "from my room nick"),
    ] {
        let mut msg = message("bob@localhost/b", "chat", body);
        msg.set_attr("from", from);
        alice.send(&msg).await?;
        let got = bob.expect_message(body).await?;
        ensure!(got.attr("from") == Some("alice@localhost/a"), "{got}");
    }
    alice.sync().await
}

#[tokio::test]
async fn own_bare_or_full_jid_in_from_is_accepted_and_restamped_with_the_full_jid() -> Result<()> {
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    for (from, body) in [
        ("alice@localhost", "from bare"),
        ("alice@localhost/a", "from full"),
    ] {
        let mut msg = message("bob@localhost/b", "chat", body);
        msg.set_attr("from", from);
        alice.send(&msg).await?;
        let got = bob.expect_message(body).await?;
        ensure!(got.attr("from") == Some("alice@localhost/a"), "{got}");
    }
    Ok(())
}

#[tokio::test]
async fn unknown_iq_namespace_is_service_unavailable() -> Result<()> {
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    for to in [Some("localhost"), None, Some("bob@localhost")] {
        let payload = Element::new("query", "urn:example:unknown");
        let reply = alice.iq("get", to, payload).await?;
        let (kind, condition) = stanza_error(&reply).unwrap_or_default();
        ensure!(
            (kind.as_str(), condition.as_str()) == ("cancel", "service-unavailable"),
            "to {to:?}: {kind}/{condition}"
        );
        // Clients show the text: it says what is missing.
        ensure!(
            reply
                .to_string()
                .contains("does not support urn:example:unknown"),
            "{reply}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn disco_info_lists_the_server_identity_and_its_features() -> Result<()> {
    let ts = server_with_users(&["alice"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let reply = alice
        .iq_result("get", Some(DOMAIN), Element::new("query", ns::DISCO_INFO))
        .await?;
    ensure!(reply.attr("from") == Some(DOMAIN), "{reply}");
    let query = reply
        .get_child("query", ns::DISCO_INFO)
        .context("no query in disco#info result")?;
    let identities: Vec<_> = query
        .children()
        .filter(|c| c.name() == "identity")
        .map(|c| {
            (
                c.attr("category").unwrap_or_default(),
                c.attr("type").unwrap_or_default(),
            )
        })
        .collect();
    ensure!(identities.contains(&("server", "im")), "{identities:?}");
    let features: Vec<_> = query
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|c| c.attr("var"))
        .collect();
    for expected in [
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::PING,
        ns::VERSION,
        ns::TIME,
        ns::REGISTER,
    ] {
        ensure!(
            features.contains(&expected),
            "{expected} missing from {features:?}"
        );
    }
    let items = alice
        .iq_result("get", Some(DOMAIN), Element::new("query", ns::DISCO_ITEMS))
        .await?;
    ensure!(items.has_child("query", ns::DISCO_ITEMS), "{items}");
    Ok(())
}

#[tokio::test]
async fn disco_info_of_an_account_is_answered_by_the_server() -> Result<()> {
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let reply = alice
        .iq_result(
            "get",
            Some("bob@localhost"),
            Element::new("query", ns::DISCO_INFO),
        )
        .await?;
    let query = reply
        .get_child("query", ns::DISCO_INFO)
        .context("no query")?;
    let identity = query
        .children()
        .find(|c| c.name() == "identity")
        .context("no identity")?;
    ensure!(identity.attr("category") == Some("account"), "{reply}");
    Ok(())
}

#[tokio::test]
async fn ping_to_the_server_and_to_an_account_is_answered() -> Result<()> {
    let ts = server_with_users(&["alice"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let reply = alice
        .iq_result("get", Some(DOMAIN), Element::new("ping", ns::PING))
        .await?;
    ensure!(
        reply.attr("from") == Some(DOMAIN) && reply.attr("to") == Some("alice@localhost/a"),
        "{reply}"
    );
    ensure!(
        reply.children().next().is_none(),
        "ping result has a payload: {reply}"
    );
    alice
        .iq_result("get", None, Element::new("ping", ns::PING))
        .await?;
    Ok(())
}

#[tokio::test]
async fn software_version_names_corvid() -> Result<()> {
    let ts = server_with_users(&["alice"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let reply = alice
        .iq_result("get", Some(DOMAIN), Element::new("query", ns::VERSION))
        .await?;
    let query = reply.get_child("query", ns::VERSION).context("no query")?;
    let field = |name| {
        query
            .get_child(name, ns::VERSION)
            .map(|e| e.text())
            .unwrap_or_default()
    };
    ensure!(field("name") == "Corvid", "{reply}");
    ensure!(!field("version").is_empty(), "{reply}");
    Ok(())
}

#[tokio::test]
async fn entity_time_is_utc_in_xep_0082_format() -> Result<()> {
    let ts = server_with_users(&["alice"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let reply = alice
        .iq_result("get", Some(DOMAIN), Element::new("time", ns::TIME))
        .await?;
    let time = reply.get_child("time", ns::TIME).context("no time")?;
    let tzo = time
        .get_child("tzo", ns::TIME)
        .map(|e| e.text())
        .unwrap_or_default();
    let utc = time
        .get_child("utc", ns::TIME)
        .map(|e| e.text())
        .unwrap_or_default();
    ensure!(tzo == "+00:00" || tzo == "Z", "tzo {tzo:?}");
    // CCYY-MM-DDThh:mm:ss[.sss]Z
    let b = utc.as_bytes();
    let shape_ok = utc.len() >= 20
        && utc.ends_with('Z')
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && b[..4].iter().all(u8::is_ascii_digit);
    ensure!(shape_ok, "utc {utc:?}");
    let year: u32 = utc[..4].parse()?;
    ensure!(year >= 2024, "utc {utc:?}");
    Ok(())
}

#[tokio::test]
async fn stanzas_to_a_remote_domain_bounce_with_remote_server_not_found() -> Result<()> {
    let ts = server_with_users(&["alice"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .send(&message("romeo@example.org", "chat", "wherefore"))
        .await?;
    let bounce = alice.recv().await?;
    ensure_error(&bounce, "message", "remote-server-not-found")?;
    ensure!(bounce.attr("from") == Some("romeo@example.org"), "{bounce}");
    let (_, condition) = alice
        .iq_error("get", Some("example.org"), Element::new("ping", ns::PING))
        .await?;
    ensure!(condition == "remote-server-not-found", "{condition}");
    Ok(())
}

#[tokio::test]
async fn malformed_iqs_are_answered_with_bad_request() -> Result<()> {
    let ts = server_with_users(&["alice"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    for (id, iq) in [
        (
            "no-payload",
            "<iq type='get' id='no-payload' to='localhost'/>".to_string(),
        ),
        (
            "two-payloads",
            format!(
                "<iq type='get' id='two-payloads' to='localhost'><ping xmlns='{0}'/><ping xmlns='{0}'/></iq>",
                ns::PING
            ),
        ),
        (
            "bad-type",
            format!(
                "<iq type='fetch' id='bad-type' to='localhost'><ping xmlns='{}'/></iq>",
                ns::PING
            ),
        ),
    ] {
        alice.send_raw(iq).await?;
        let reply = alice.recv().await?;
        ensure!(reply.attr("id") == Some(id), "{id}: {reply}");
        ensure_error(&reply, "iq", "bad-request").with_context(|| id.to_string())?;
    }
    Ok(())
}

#[tokio::test]
async fn stanza_to_a_malformed_jid_bounces_with_jid_malformed() -> Result<()> {
    let ts = server_with_users(&["alice"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .send_raw("<message to='a@b@c' type='chat' id='bad-jid'><body>x</body></message>")
        .await?;
    let bounce = alice.recv().await?;
    ensure_error(&bounce, "message", "jid-malformed")?;
    ensure!(bounce.attr("id") == Some("bad-jid"), "{bounce}");
    Ok(())
}

#[tokio::test]
async fn groupchat_to_a_bare_jid_bounces_and_headline_to_an_offline_user_is_dropped() -> Result<()>
{
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    bob.send_presence(0).await?;
    // RFC 6121 §8.5.2.1.1: never deliver a groupchat message to a bare JID.
    alice
        .send(&message("bob@localhost", "groupchat", "not a room"))
        .await?;
    ensure_error(&alice.recv().await?, "message", "service-unavailable")?;
    // RFC 6121 §8.5.2.2.1: a headline for an offline user is silently dropped.
    alice
        .send(&message("carol@localhost", "headline", "news"))
        .await?;
    alice.sync().await?;
    alice
        .send(&message("bob@localhost/b", "chat", "marker"))
        .await?;
    bob.expect_message("marker").await?;
    Ok(())
}

#[tokio::test]
async fn message_from_a_blocked_entity_is_answered_service_unavailable() -> Result<()> {
    // XEP-0191 §3.5: messages and IQs from an entity the user blocked get
    // service-unavailable, as if no one were there; presence is dropped silently.
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice.send_presence(0).await?;
    let block = Element::new("block", ns::BLOCKING)
        .with_child(Element::new("item", ns::BLOCKING).with_attr("jid", "bob@localhost"));
    alice.iq_result("set", None, block).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let directed = Element::new("presence", ns::CLIENT)
        .with_attr("to", "alice@localhost/a")
        .with_attr("id", "p1");
    bob.send(&directed).await?;
    let msg = message("alice@localhost/a", "chat", "hello?").with_attr("id", "m1");
    bob.send(&msg).await?;
    let (reply, skipped) = bob.recv_until(|el| el.attr("id") == Some("m1")).await?;
    let (kind, condition) = stanza_error(&reply).unwrap_or_default();
    ensure!(
        (kind.as_str(), condition.as_str()) == ("cancel", "service-unavailable"),
        "{reply}"
    );
    ensure!(
        !skipped.iter().any(|el| el.attr("id") == Some("p1")),
        "the presence was answered: {skipped:?}"
    );
    Ok(())
}
