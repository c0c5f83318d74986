//! Hostile and broken input: oversized or too deep stanzas, XML that RFC 6120 §11 forbids,
//! bad encodings, wrong namespaces, versions and hosts, TLS on the STARTTLS port, and
//! plaintext injected ahead of the TLS upgrade. Each must end in the right stream error.

mod common;

use std::time::Duration;

use anyhow::{Result, ensure};
use common::*;
use corvid_proto::ns;
use tokio::time::Instant;

const PASSWORD: &str = "secret";

async fn server_with(adjust: impl FnOnce(&mut corvid_server::Config)) -> Result<TestServer> {
    let ts = start_server_with(adjust).await?;
    for name in ["alice", "bob", "carol"] {
        ts.create_user(name, PASSWORD).await?;
    }
    Ok(ts)
}

/// Sends `data` in chunks of `chunk` bytes, ignoring write errors: the server may close
/// the connection part-way, which is what some tests expect.
async fn send_in_chunks(client: &mut Client, data: &[u8], chunk: usize) {
    for part in data.chunks(chunk) {
        if client.send_raw(part).await.is_err() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// A fresh plain connection that has sent `bytes` as its very first data.
async fn raw_connection_sending(ts: &TestServer, bytes: &[u8]) -> Result<Client> {
    let mut client = Client::connect(ts.c2s_addr).await?;
    client.send_raw(bytes).await?;
    Ok(client)
}

#[tokio::test]
async fn plaintext_sent_after_starttls_is_not_processed_after_the_upgrade() -> Result<()> {
    // RFC 6120 §5.4.3.3 (the "STARTTLS command injection" of CVE-2011-0411): what came in
    // the same packet as <starttls/> must be discarded, not run inside the TLS session.
    let ts = server_with(|_| {}).await?;
    let mut client = Client::connect(ts.c2s_addr).await?;
    client.open_stream().await?;
    let injected = format!(
        "<starttls xmlns='{}'/><auth xmlns='{}' mechanism='PLAIN'>{}</auth>",
        ns::TLS,
        ns::SASL,
        "AGFsaWNlAHNlY3JldA==" // \0alice\0secret
    );
    client.send_raw(injected).await?;
    client.finish_starttls().await?;
    // A fresh, unauthenticated stream: SASL is still offered, and the next thing the server
    // sends is the answer to what we send now, not a <success/> for the injected <auth/>.
    ensure!(
        !client.mechanisms().is_empty(),
        "features after the upgrade: {:?}",
        client.features
    );
    client.login("alice", PASSWORD, Some("a")).await?;
    Ok(())
}

#[tokio::test]
async fn oversized_stanza_is_a_policy_violation_before_it_ends() -> Result<()> {
    let ts = server_with(|c| c.limits.max_stanza_bytes = 4096).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    // Start a message and keep its body growing, never closing it: the server must not
    // wait for the end tag to decide.
    let mut data = b"<message to='bob@localhost' type='chat'><body>".to_vec();
    data.extend(std::iter::repeat_n(b'x', 8 * 1024));
    send_in_chunks(&mut alice, &data, 256).await;
    alice.expect_stream_error("policy-violation").await
}

#[tokio::test]
async fn oversized_stanza_before_authentication_is_a_policy_violation() -> Result<()> {
    let ts = server_with(|c| c.limits.max_stanza_bytes = 4096).await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    let mut data = format!("<auth xmlns='{}' mechanism='PLAIN'>", ns::SASL).into_bytes();
    data.extend(std::iter::repeat_n(b'A', 8 * 1024));
    send_in_chunks(&mut client, &data, 512).await;
    client.expect_stream_error("policy-violation").await
}

#[tokio::test]
async fn oversized_stream_header_is_a_policy_violation() -> Result<()> {
    let ts = server_with(|c| c.limits.max_stanza_bytes = 4096).await?;
    let mut client = Client::connect(ts.c2s_addr).await?;
    let mut header = format!("<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='localhost' version='1.0' x='", ns::CLIENT, ns::STREAM).into_bytes();
    header.extend(std::iter::repeat_n(b'h', 8 * 1024));
    send_in_chunks(&mut client, &header, 512).await;
    client.expect_stream_error("policy-violation").await
}

#[tokio::test]
async fn stanza_within_the_size_limit_is_delivered() -> Result<()> {
    let ts = server_with(|c| c.limits.max_stanza_bytes = 4096).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let body = "y".repeat(3000);
    alice
        .send(&message("bob@localhost/b", "chat", &body))
        .await?;
    bob.expect_message(&body).await?;
    Ok(())
}

#[tokio::test]
async fn too_deep_nesting_is_a_policy_violation() -> Result<()> {
    let ts = server_with(|c| c.limits.max_depth = 8).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let depth = 20;
    let mut data = String::from("<message to='bob@localhost'>");
    data.push_str(&"<x xmlns='urn:example:deep'>".repeat(depth));
    data.push_str(&"</x>".repeat(depth));
    data.push_str("</message>");
    alice.send_raw(data).await?;
    alice.expect_stream_error("policy-violation").await
}

#[tokio::test]
async fn doctype_with_entity_declaration_is_restricted_xml() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let header = format!(
        "<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY lol 'lol'>]><stream:stream xmlns='{}' xmlns:stream='{}' to='localhost' version='1.0'>",
        ns::CLIENT,
        ns::STREAM
    );
    let mut client = raw_connection_sending(&ts, header.as_bytes()).await?;
    client.expect_stream_error("restricted-xml").await
}

#[tokio::test]
async fn entity_declaration_inside_a_stanza_is_restricted_xml() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .send_raw("<message to='bob@localhost'><!ENTITY x 'y'></message>")
        .await?;
    alice.expect_stream_error("restricted-xml").await
}

#[tokio::test]
async fn undeclared_entity_reference_is_restricted_xml() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .send_raw("<message to='bob@localhost'><body>&lol;</body></message>")
        .await?;
    alice.expect_stream_error("restricted-xml").await
}

#[tokio::test]
async fn comment_is_restricted_xml() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .send_raw("<message to='bob@localhost'><!-- hidden --><body>hi</body></message>")
        .await?;
    alice.expect_stream_error("restricted-xml").await
}

#[tokio::test]
async fn comment_between_stanzas_is_restricted_xml() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice.send_raw("<!-- between stanzas -->").await?;
    alice.expect_stream_error("restricted-xml").await
}

#[tokio::test]
async fn processing_instruction_is_restricted_xml() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .send_raw("<message to='bob@localhost'><?evil instruction?><body>hi</body></message>")
        .await?;
    alice.expect_stream_error("restricted-xml").await
}

#[tokio::test]
async fn invalid_utf8_is_not_well_formed() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .send_raw(b"<message to='bob@localhost'><body>caf\xc3\x28 \xff\xfe</body></message>")
        .await?;
    // RFC 6120 §11.6 requires UTF-8; bytes that are not UTF-8 make the XML not well-formed.
    alice.expect_stream_error("not-well-formed").await
}

#[tokio::test]
async fn invalid_utf8_in_the_stream_header_is_not_well_formed() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='local\u{0}host' version='1.0'>",
        ns::CLIENT,
        ns::STREAM
    );
    let mut bytes = header.into_bytes();
    let nul = bytes.iter().position(|&b| b == 0).unwrap_or_default();
    bytes[nul] = 0xc0; // an overlong-encoding lead byte, never valid UTF-8
    let mut client = raw_connection_sending(&ts, &bytes).await?;
    client.expect_stream_error("not-well-formed").await
}

#[tokio::test]
async fn non_utf8_encoding_declaration_is_unsupported_encoding() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let header = format!(
        "<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns='{}' xmlns:stream='{}' to='localhost' version='1.0'>",
        ns::CLIENT,
        ns::STREAM
    );
    let mut client = raw_connection_sending(&ts, header.as_bytes()).await?;
    client.expect_stream_error("unsupported-encoding").await
}

#[tokio::test]
async fn wrong_stream_namespace_is_invalid_namespace() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='http://example.org/not-streams' to='localhost' version='1.0'>",
        ns::CLIENT
    );
    let mut client = raw_connection_sending(&ts, header.as_bytes()).await?;
    client.expect_stream_error("invalid-namespace").await
}

#[tokio::test]
async fn server_content_namespace_on_the_client_port_is_invalid_namespace() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    for default_ns in [format!(" xmlns='{}'", ns::SERVER), String::new()] {
        let header = format!(
            "<?xml version='1.0'?><stream:stream{default_ns} xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
        );
        let mut client = raw_connection_sending(&ts, header.as_bytes()).await?;
        client.expect_stream_error("invalid-namespace").await?;
    }
    Ok(())
}

#[tokio::test]
async fn message_in_a_wrong_namespace_after_bind_is_invalid_namespace() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .send_raw(format!(
            "<message xmlns='{}' to='bob@localhost'><body>hi</body></message>",
            ns::SERVER
        ))
        .await?;
    alice.expect_stream_error("invalid-namespace").await
}

#[tokio::test]
async fn unknown_top_level_element_after_bind_is_unsupported_stanza_type() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice.send_raw("<foo to='bob@localhost'/>").await?;
    alice.expect_stream_error("unsupported-stanza-type").await
}

#[tokio::test]
async fn unsupported_version_is_refused() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='localhost' version='2.0'>",
        ns::CLIENT,
        ns::STREAM
    );
    let mut client = raw_connection_sending(&ts, header.as_bytes()).await?;
    client.expect_stream_error("unsupported-version").await
}

#[tokio::test]
async fn unknown_host_in_stream_header_is_host_unknown() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut client =
        raw_connection_sending(&ts, Client::stream_header("example.org").as_bytes()).await?;
    client.expect_stream_error("host-unknown").await?;
    // RFC 6120 §4.9.1.2: the error stream header is from a domain we do serve.
    let from = client.header.as_ref().and_then(|h| h.attr("from"));
    ensure!(from == Some(DOMAIN), "error stream from {from:?}");
    Ok(())
}

#[tokio::test]
async fn tls_client_hello_on_the_starttls_port_gets_a_stream_error_at_once() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let hello = tls_client_hello();
    ensure!(hello.first() == Some(&0x16), "not a TLS handshake record");
    let started = Instant::now();
    let mut client = raw_connection_sending(&ts, &hello).await?;
    let el = client.recv().await?;
    let elapsed = started.elapsed();
    let condition = stream_error_condition(&el);
    ensure!(
        condition.as_deref() == Some("not-well-formed"),
        "expected <not-well-formed/>, got {el}"
    );
    client.expect_closed().await?;
    // The server must decide from the bytes it has, not wait for more (or for a timeout).
    ensure!(
        elapsed < Duration::from_secs(1),
        "the stream error took {elapsed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn text_between_stanzas_is_a_stream_error() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .send_raw("not whitespace<message to='bob@localhost'/>")
        .await?;
    alice.expect_stream_error("bad-format").await
}

#[tokio::test]
async fn endless_text_between_stanzas_is_cut_off_by_the_size_limit() -> Result<()> {
    let ts = server_with(|c| c.limits.max_stanza_bytes = 4096).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    // Never a '<' to end the text: the server must not buffer it without bound.
    let text = vec![b'a'; 64 * 1024];
    send_in_chunks(&mut alice, &text, 1024).await;
    let el = alice.recv().await?;
    let condition = stream_error_condition(&el);
    ensure!(
        matches!(
            condition.as_deref(),
            Some("bad-format" | "policy-violation")
        ),
        "expected <bad-format/> or <policy-violation/>, got {el}"
    );
    alice.expect_closed().await
}
