//! Server-to-server federation between two Corvid servers, `a.test` and `b.test`, each
//! with its own certificate: messages, presence subscriptions and IQs across, SASL
//! EXTERNAL when certificates are trusted and dialback when not, bounces for what cannot
//! be delivered, and a raw peer's spoofing and protocol errors ended with the right
//! stream errors.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use common::TestServer;
use common::federation::{
    Identity, Pki, RawS2s, chat, closed_port, corvid, create, expect, expect_bounce,
    expect_message, introduce, online, self_signed,
};
use corvid_client::Event;
use corvid_proto::ns;
use corvid_server::Config;
use corvid_server::s2s::{AuthMethod, Direction, State};
use corvid_xml::Element;

const A: &str = "a.test";
const B: &str = "b.test";

/// Two servers that know where the other is, with alice@a.test and bob@b.test.
struct Pair {
    a: TestServer,
    b: TestServer,
}

async fn pair(
    a_identity: &Identity,
    b_identity: &Identity,
    ca: Option<&std::path::Path>,
    adjust_a: impl FnOnce(&mut Config),
    adjust_b: impl FnOnce(&mut Config),
) -> Result<Pair> {
    let a = corvid(A, a_identity, ca, adjust_a).await?;
    let b = corvid(B, b_identity, ca, adjust_b).await?;
    introduce(&a, A, &b, B)?;
    create(&a, "alice@a.test").await?;
    create(&b, "bob@b.test").await?;
    Ok(Pair { a, b })
}

/// Both with certificates from one CA, which both trust.
async fn trusted_pair() -> Result<(Pki, Pair)> {
    let pki = Pki::new()?;
    let (a, b) = (pki.issue(A)?, pki.issue(B)?);
    let pair = pair(&a, &b, Some(&pki.ca_file), |_| {}, |_| {}).await?;
    Ok((pki, pair))
}

/// Both with self-signed certificates: only dialback can authenticate them.
async fn untrusted_pair(
    adjust_a: impl FnOnce(&mut Config),
    adjust_b: impl FnOnce(&mut Config),
) -> Result<(tempfile::TempDir, Pair)> {
    let dir = tempfile::tempdir()?;
    let (a, b) = (self_signed(dir.path(), A)?, self_signed(dir.path(), B)?);
    let pair = pair(&a, &b, None, adjust_a, adjust_b).await?;
    Ok((dir, pair))
}

fn c2s_port(ts: &TestServer) -> u16 {
    ts.c2s_addr.port()
}

/// A message each way between alice and bob.
async fn chat_both_ways(pair: &Pair) -> Result<()> {
    let (alice, mut alice_events) = online("alice@a.test", c2s_port(&pair.a)).await?;
    let (bob, mut bob_events) = online("bob@b.test", c2s_port(&pair.b)).await?;
    alice.send(&chat("bob@b.test", "hello from a")).await?;
    let got = expect_message(&mut bob_events, "hello from a").await?;
    ensure!(got.attr("from") == Some("alice@a.test/r"), "{got}");
    bob.send(&chat("alice@a.test/r", "hello from b")).await?;
    let got = expect_message(&mut alice_events, "hello from b").await?;
    ensure!(got.attr("from") == Some("bob@b.test/r"), "{got}");
    alice.disconnect().await;
    bob.disconnect().await;
    Ok(())
}

/// The established connection of `ts` in `direction` with `remote`.
fn established(
    ts: &TestServer,
    direction: Direction,
    remote: &str,
) -> Option<corvid_server::s2s::Connection> {
    ts.server
        .s2s
        .connections()
        .into_iter()
        .find(|c| c.direction == direction && c.remote == remote && c.state == State::Established)
}

#[tokio::test]
async fn messages_cross_with_sasl_external_when_certificates_are_trusted() -> Result<()> {
    let (_pki, pair) = trusted_pair().await?;
    chat_both_ways(&pair).await?;
    for (ts, remote) in [(&pair.a, B), (&pair.b, A)] {
        for direction in [Direction::Outgoing, Direction::Incoming] {
            let connection = established(ts, direction, remote)
                .with_context(|| format!("no {direction:?} connection with {remote}"))?;
            ensure!(
                connection.auth == Some(AuthMethod::SaslExternal) && connection.tls,
                "{connection:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn messages_cross_with_dialback_when_certificates_are_not_trusted() -> Result<()> {
    let (_dir, pair) = untrusted_pair(|_| {}, |_| {}).await?;
    chat_both_ways(&pair).await?;
    let connection = established(&pair.b, Direction::Incoming, A).context("no incoming")?;
    ensure!(
        connection.auth == Some(AuthMethod::Dialback) && connection.tls,
        "{connection:?}"
    );
    let connection = established(&pair.a, Direction::Outgoing, B).context("no outgoing")?;
    ensure!(
        connection.auth == Some(AuthMethod::Dialback),
        "{connection:?}"
    );
    // What `corvid s2s list` prints, through the admin socket.
    let listed = corvid_server::admin::respond(&pair.a.server, "s2s");
    let line = format!("{B}\t{A}\tout\testablished\tdialback\ttls\t");
    ensure!(
        listed.lines().any(|l| l.starts_with(&line)),
        "{listed:?} has no {line:?}"
    );
    Ok(())
}

#[tokio::test]
async fn insecure_domains_authenticate_with_dialback_even_with_a_trusted_certificate() -> Result<()>
{
    let pki = Pki::new()?;
    let (a, b) = (pki.issue(A)?, pki.issue(B)?);
    let pair = pair(
        &a,
        &b,
        Some(&pki.ca_file),
        |_| {},
        |c| c.s2s.insecure_domains = vec![A.into()],
    )
    .await?;
    chat_both_ways(&pair).await?;
    let connection = established(&pair.b, Direction::Incoming, A).context("no incoming")?;
    ensure!(
        connection.auth == Some(AuthMethod::Dialback),
        "{connection:?}"
    );
    let connection = established(&pair.a, Direction::Incoming, B).context("no incoming")?;
    ensure!(
        connection.auth == Some(AuthMethod::SaslExternal),
        "{connection:?}"
    );
    Ok(())
}

#[tokio::test]
async fn presence_subscriptions_work_across_servers() -> Result<()> {
    let (_pki, pair) = trusted_pair().await?;
    let (alice, mut alice_events) = online("alice@a.test", c2s_port(&pair.a)).await?;
    let (bob, mut bob_events) = online("bob@b.test", c2s_port(&pair.b)).await?;
    let presence = |to: &str, kind: &str| {
        Element::new("presence", ns::CLIENT)
            .with_attr("to", to)
            .with_attr("type", kind)
    };
    alice.send(&presence("bob@b.test", "subscribe")).await?;
    expect(&mut bob_events, "alice's subscription request", |e| {
        matches!(e, Event::Presence(p) if p.attr("type") == Some("subscribe") && p.attr("from") == Some("alice@a.test"))
    })
    .await?;
    bob.send(&presence("alice@a.test", "subscribed")).await?;
    expect(&mut alice_events, "bob's approval", |e| {
        matches!(e, Event::Presence(p) if p.attr("type") == Some("subscribed") && p.attr("from") == Some("bob@b.test"))
    })
    .await?;
    // Bob's next presence reaches his new subscriber on the other server.
    bob.send(
        &Element::new("presence", ns::CLIENT)
            .with_child(Element::new("status", ns::CLIENT).with_text("across")),
    )
    .await?;
    expect(&mut alice_events, "bob's presence", |e| {
        matches!(e, Event::Presence(p) if p.attr("from") == Some("bob@b.test/r")
            && p.get_child("status", ns::CLIENT).map(Element::text).as_deref() == Some("across"))
    })
    .await?;
    alice.disconnect().await;
    bob.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn iqs_are_answered_across_servers() -> Result<()> {
    let (_pki, pair) = trusted_pair().await?;
    let (alice, _events) = online("alice@a.test", c2s_port(&pair.a)).await?;
    let disco = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", B)
        .with_child(Element::new("query", ns::DISCO_INFO));
    let info = alice.request(disco).await?;
    ensure!(info.attr("from") == Some(B), "{info}");
    let features: Vec<String> = info
        .get_child("query", ns::DISCO_INFO)
        .context("no query")?
        .children()
        .filter_map(|f| f.attr("var").map(str::to_owned))
        .collect();
    ensure!(features.iter().any(|f| f == ns::PING), "{features:?}");
    let version = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", B)
        .with_child(Element::new("query", ns::VERSION));
    let answer = alice.request(version).await?;
    ensure!(answer.attr("type") == Some("result"), "{answer}");
    alice.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn stanzas_to_an_unreachable_domain_are_bounced_remote_server_not_found() -> Result<()> {
    let (_pki, pair) = trusted_pair().await?;
    pair.a
        .server
        .s2s
        .resolver
        .map_host("nowhere.test", "127.0.0.1", closed_port()?);
    let (alice, mut events) = online("alice@a.test", c2s_port(&pair.a)).await?;
    alice.send(&chat("x@nowhere.test", "anyone?")).await?;
    let condition = expect_bounce(&mut events, "anyone?").await?;
    ensure!(condition == "remote-server-not-found", "{condition}");
    Ok(())
}

#[tokio::test]
async fn a_silent_remote_times_out_and_the_queue_is_bounded() -> Result<()> {
    let pki = Pki::new()?;
    // Accepts connections (the kernel does) and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = silent.local_addr()?.port();
    let a = corvid(A, &pki.issue(A)?, Some(&pki.ca_file), |c| {
        c.s2s.connect_timeout_secs = 1;
        c.s2s.max_queue = 1;
    })
    .await?;
    create(&a, "alice@a.test").await?;
    a.server
        .s2s
        .resolver
        .map_host("silent.test", "127.0.0.1", port);
    let (alice, mut events) = online("alice@a.test", c2s_port(&a)).await?;
    alice.send(&chat("x@silent.test", "first")).await?;
    alice.send(&chat("x@silent.test", "second")).await?;
    let condition = expect_bounce(&mut events, "second").await?;
    ensure!(condition == "resource-constraint", "{condition}");
    let condition = expect_bounce(&mut events, "first").await?;
    ensure!(condition == "remote-server-timeout", "{condition}");
    drop(silent);
    Ok(())
}

#[tokio::test]
async fn blocked_domains_are_refused_both_ways() -> Result<()> {
    let (_dir, pair) = untrusted_pair(
        |c| c.s2s.block = vec!["c.test".into()],
        |c| c.s2s.block = vec![A.into()],
    )
    .await?;
    let (alice, mut events) = online("alice@a.test", c2s_port(&pair.a)).await?;
    // a.test refuses to send to a domain it blocks …
    alice.send(&chat("x@c.test", "to c")).await?;
    let condition = expect_bounce(&mut events, "to c").await?;
    ensure!(condition == "not-allowed", "{condition}");
    // … and b.test refuses a.test's connection.
    alice.send(&chat("bob@b.test", "to b")).await?;
    let condition = expect_bounce(&mut events, "to b").await?;
    ensure!(condition == "remote-server-not-found", "{condition}");
    let b_addr = pair.b.s2s_addr.context("no s2s")?;
    // The stream error comes instead of the features.
    let (_raw, refusal) = RawS2s::open(b_addr, A, B).await?;
    ensure!(
        common::stream_error_condition(&refusal).as_deref() == Some("policy-violation"),
        "{refusal}"
    );
    Ok(())
}

#[tokio::test]
async fn idle_connections_close_and_reopen_when_needed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = (self_signed(dir.path(), A)?, self_signed(dir.path(), B)?);
    let idle = |c: &mut Config| c.s2s.idle_timeout_secs = 1;
    let pair = pair(&a, &b, None, idle, idle).await?;
    chat_both_ways(&pair).await?;
    let mut waited = Duration::ZERO;
    while !pair.a.server.s2s.connections().is_empty() {
        ensure!(
            waited < Duration::from_secs(10),
            "still connected: {:?}",
            pair.a.server.s2s.connections()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    chat_both_ways(&pair).await
}

// --- a raw peer ------------------------------------------------------------------------

#[tokio::test]
async fn a_stream_to_a_domain_not_served_is_host_unknown() -> Result<()> {
    let (_pki, pair) = trusted_pair().await?;
    let addr = pair.b.s2s_addr.context("no s2s")?;
    let mut raw = RawS2s {
        link: corvid_server::s2s::link::Link::new(
            tokio::net::TcpStream::connect(addr).await?,
            1 << 20,
        ),
    };
    raw.send(&corvid_server::s2s::link::header(
        A,
        Some("elsewhere.test"),
        None,
    ))
    .await?;
    raw.next().await?;
    ensure!(raw.expect_stream_error().await? == "host-unknown");
    Ok(())
}

#[tokio::test]
async fn stanzas_before_authentication_are_not_authorized() -> Result<()> {
    let (_pki, pair) = trusted_pair().await?;
    let (mut raw, features) = RawS2s::open(pair.b.s2s_addr.context("no s2s")?, A, B).await?;
    ensure!(features.has_child("starttls", ns::TLS), "{features}");
    raw.send("<message from='alice@a.test' to='bob@b.test'><body>hi</body></message>")
        .await?;
    ensure!(raw.expect_stream_error().await? == "not-authorized");
    Ok(())
}

/// Authenticated as a.test with its certificate (SASL EXTERNAL), then misbehaving.
async fn authenticated_raw(pki: &Pki, pair: &Pair) -> Result<RawS2s> {
    let (mut raw, _) = RawS2s::open(pair.b.s2s_addr.context("no s2s")?, A, B).await?;
    let features = raw.starttls(&pki.issue(A)?, A, B).await?;
    ensure!(
        features
            .get_child("mechanisms", ns::SASL)
            .is_some_and(|m| m.children().any(|c| c.text() == "EXTERNAL")),
        "{features}"
    );
    let authzid = base64::engine::general_purpose::STANDARD.encode(A);
    raw.send(&format!(
        "<auth xmlns='{}' mechanism='EXTERNAL'>{authzid}</auth>",
        ns::SASL
    ))
    .await?;
    let success = raw.recv().await?;
    ensure!(success.is("success", ns::SASL), "{success}");
    raw.link.restart();
    raw.restart(A, B).await?;
    Ok(raw)
}

#[tokio::test]
async fn a_spoofed_from_domain_is_invalid_from() -> Result<()> {
    let (pki, pair) = trusted_pair().await?;
    let (_bob, mut bob_events) = online("bob@b.test", c2s_port(&pair.b)).await?;
    let mut raw = authenticated_raw(&pki, &pair).await?;
    // A proper one first: it is delivered.
    raw.send(
        "<message from='alice@a.test/x' to='bob@b.test' type='chat'><body>real</body></message>",
    )
    .await?;
    expect_message(&mut bob_events, "real").await?;
    raw.send(
        "<message from='mallory@c.test' to='bob@b.test' type='chat'><body>spoof</body></message>",
    )
    .await?;
    ensure!(raw.expect_stream_error().await? == "invalid-from");
    Ok(())
}

#[tokio::test]
async fn addressing_errors_end_the_stream() -> Result<()> {
    let (pki, pair) = trusted_pair().await?;
    let mut raw = authenticated_raw(&pki, &pair).await?;
    raw.send("<message to='bob@b.test'><body>who?</body></message>")
        .await?;
    ensure!(raw.expect_stream_error().await? == "improper-addressing");
    let mut raw = authenticated_raw(&pki, &pair).await?;
    raw.send("<message from='alice@a.test' to='x@elsewhere.test'><body>relay</body></message>")
        .await?;
    ensure!(raw.expect_stream_error().await? == "host-unknown");
    Ok(())
}

#[tokio::test]
async fn an_oversized_stanza_is_a_policy_violation() -> Result<()> {
    let (pki, pair) = trusted_pair().await?;
    let mut raw = authenticated_raw(&pki, &pair).await?;
    let big = "x".repeat(300 * 1024);
    raw.send(&format!(
        "<message from='alice@a.test' to='bob@b.test'><body>{big}</body></message>"
    ))
    .await?;
    ensure!(raw.expect_stream_error().await? == "policy-violation");
    Ok(())
}

#[tokio::test]
async fn a_wrong_dialback_key_is_refused() -> Result<()> {
    let (dir, pair) = untrusted_pair(|_| {}, |_| {}).await?;
    let (mut raw, _) = RawS2s::open(pair.b.s2s_addr.context("no s2s")?, A, B).await?;
    let untrusted = self_signed(dir.path(), "mallory")?;
    let features = raw.starttls(&untrusted, A, B).await?;
    ensure!(
        features.get_child("mechanisms", ns::SASL).is_none(),
        "{features}"
    );
    raw.send("<db:result from='a.test' to='b.test'>0123456789abcdef</db:result>")
        .await?;
    // b.test asks a.test, which never made that key.
    let verdict = raw.recv().await?;
    ensure!(
        verdict.is("result", corvid_server::s2s::link::NS_DIALBACK)
            && verdict.attr("type") == Some("invalid"),
        "{verdict}"
    );
    ensure!(raw.expect_stream_error().await? == "not-authorized");
    Ok(())
}
