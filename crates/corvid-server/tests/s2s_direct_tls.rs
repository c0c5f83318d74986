//! Federation over direct TLS (XEP-0368) between two Corvid servers, `a.test` and `b.test`,
//! each with a `direct_tls_listen` port and sending the other there through `[s2s] hosts`:
//! SASL EXTERNAL when certificates are trusted and dialback when not, with every connection
//! seen as direct TLS by the admin view; the direct TLS port's features without STARTTLS;
//! and what is not TLS with ALPN `xmpp-server` closed in the handshake.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::TestServer;
use common::federation::{
    Identity, Pki, RawS2s, WAIT, chat, corvid, create, expect_message, introduce_direct_tls,
    online, s2s_tls, self_signed,
};
use corvid_proto::ns;
use corvid_server::Config;
use corvid_server::s2s::{AuthMethod, Connection, Direction, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const A: &str = "a.test";
const B: &str = "b.test";

fn with_direct_tls(config: &mut Config) {
    config.s2s.direct_tls_listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
}

/// a.test and b.test, each reaching the other only on its direct TLS port (their STARTTLS
/// ports are never named to the other), with alice@a.test and bob@b.test.
async fn direct_tls_pair(
    a_identity: &Identity,
    b_identity: &Identity,
    ca: Option<&std::path::Path>,
) -> Result<(TestServer, TestServer)> {
    let a = corvid(A, a_identity, ca, with_direct_tls).await?;
    let b = corvid(B, b_identity, ca, with_direct_tls).await?;
    introduce_direct_tls(&a, A, &b, B)?;
    create(&a, "alice@a.test").await?;
    create(&b, "bob@b.test").await?;
    Ok((a, b))
}

async fn chat_both_ways(a: &TestServer, b: &TestServer) -> Result<()> {
    let (alice, mut alice_events) = online("alice@a.test", a.c2s_addr.port()).await?;
    let (bob, mut bob_events) = online("bob@b.test", b.c2s_addr.port()).await?;
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

fn established(ts: &TestServer, direction: Direction, remote: &str) -> Result<Connection> {
    ts.server
        .s2s
        .connections()
        .into_iter()
        .find(|c| c.direction == direction && c.remote == remote && c.state == State::Established)
        .with_context(|| format!("no established {direction:?} connection with {remote}"))
}

/// Every connection between the two, both ways, is direct TLS authenticated with `auth`.
fn all_direct_tls(a: &TestServer, b: &TestServer, auth: AuthMethod) -> Result<()> {
    for (ts, remote) in [(a, B), (b, A)] {
        for direction in [Direction::Outgoing, Direction::Incoming] {
            let connection = established(ts, direction, remote)?;
            ensure!(
                connection.direct_tls && connection.tls && connection.auth == Some(auth),
                "{connection:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn messages_cross_over_direct_tls_with_sasl_external_when_certificates_are_trusted()
-> Result<()> {
    let pki = Pki::new()?;
    let (a, b) = direct_tls_pair(&pki.issue(A)?, &pki.issue(B)?, Some(&pki.ca_file)).await?;
    chat_both_ways(&a, &b).await?;
    all_direct_tls(&a, &b, AuthMethod::SaslExternal)?;
    // What `corvid s2s list` prints, through the admin socket.
    let listed = corvid_server::admin::respond(&a.server, "s2s");
    for direction in ["out", "in"] {
        let line = format!("{B}\t{A}\t{direction}\testablished\tsasl-external\tdirect-tls\t");
        ensure!(
            listed.lines().any(|l| l.starts_with(&line)),
            "{listed:?} has no {line:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn messages_cross_over_direct_tls_with_dialback_when_certificates_are_not_trusted()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = direct_tls_pair(
        &self_signed(dir.path(), A)?,
        &self_signed(dir.path(), B)?,
        None,
    )
    .await?;
    chat_both_ways(&a, &b).await?;
    all_direct_tls(&a, &b, AuthMethod::Dialback)
}

#[tokio::test]
async fn the_direct_tls_port_offers_sasl_external_and_dialback_but_not_starttls() -> Result<()> {
    let pki = Pki::new()?;
    let b = corvid(B, &pki.issue(B)?, Some(&pki.ca_file), with_direct_tls).await?;
    let addr = b.s2s_direct_tls_addr.context("no direct TLS port")?;
    let (mut raw, features) = RawS2s::open_direct_tls(addr, &pki.issue(A)?, A, B).await?;
    ensure!(!features.has_child("starttls", ns::TLS), "{features}");
    ensure!(
        features
            .get_child("mechanisms", ns::SASL)
            .is_some_and(|m| m.children().any(|c| c.text() == "EXTERNAL")),
        "{features}"
    );
    ensure!(
        features.has_child("dialback", "urn:xmpp:features:dialback"),
        "{features}"
    );
    // XEP-0368 §3: no STARTTLS over direct TLS.
    raw.send(&format!("<starttls xmlns='{}'/>", ns::TLS))
        .await?;
    ensure!(raw.expect_stream_error().await? == "unsupported-stanza-type");
    Ok(())
}

/// Reads until the server closes the connection; false if it is still open after [`WAIT`].
async fn closed_by_server(tcp: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let until_closed = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // A TLS alert, perhaps; the close follows.
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(WAIT, until_closed).await.is_ok()
}

#[tokio::test]
async fn plain_text_on_the_direct_tls_port_is_closed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let b = corvid(B, &self_signed(dir.path(), B)?, None, with_direct_tls).await?;
    let addr = b.s2s_direct_tls_addr.context("no direct TLS port")?;
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let header = corvid_server::s2s::link::header(A, Some(B), None);
    tcp.write_all(header.as_bytes()).await?;
    ensure!(closed_by_server(&mut tcp).await, "still open");
    // Garbage in the TLS record layer's place too.
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0, 0])
        .await?;
    tcp.write_all(&[0xab; 512]).await?;
    ensure!(closed_by_server(&mut tcp).await, "still open");
    ensure!(b.server.s2s.connections().is_empty());
    // The port still serves.
    let (_raw, features) = RawS2s::open_direct_tls(addr, &self_signed(dir.path(), A)?, A, B)
        .await
        .context("a proper peer after the garbage")?;
    ensure!(features.is("features", ns::STREAM), "{features}");
    Ok(())
}

#[tokio::test]
async fn a_client_alpn_on_the_direct_tls_port_is_refused_in_the_handshake() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let b = corvid(B, &self_signed(dir.path(), B)?, None, with_direct_tls).await?;
    let addr = b.s2s_direct_tls_addr.context("no direct TLS port")?;
    let mut config = (*s2s_tls(&self_signed(dir.path(), A)?)?.client).clone();
    config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(B)?;
    let handshake = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp);
    let result = tokio::time::timeout(Duration::from_secs(10), handshake)
        .await
        .context("the handshake neither failed nor succeeded")?;
    ensure!(result.is_err(), "an xmpp-client ALPN was accepted");
    Ok(())
}
