//! The stream scenarios against a real Corvid, started in this process on loopback.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use common::Target;
use common::dns::{DnsServer, Records};
use corvid_client::{Client, Event, Verification};
use corvid_proto::BareJid;
use corvid_proto::sasl::Mechanism;
use corvid_server::RunningServer;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tempfile::TempDir;

struct Corvid {
    running: RunningServer,
    target: Target,
    _dir: TempDir,
}

async fn corvid() -> Result<Corvid> {
    corvid_with(|_| {}).await
}

/// A Corvid with its configuration changed by `change`.
async fn corvid_with(change: impl FnOnce(&mut corvid_server::Config)) -> Result<Corvid> {
    let dir = tempfile::tempdir()?;
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = corvid_server::Config {
        data_dir: dir.path().to_owned(),
        ..corvid_server::Config::default()
    };
    config.c2s.listen = vec![any_port];
    config.c2s.tls_listen = vec![any_port];
    config.s2s.listen = vec![any_port];
    config.http.listen = vec![any_port];
    config.http.tls_listen = vec![any_port];
    change(&mut config);
    let domain = config.domains[0].clone();
    let running = corvid_server::start(config).await.context("start corvid")?;
    for user in ["juliet", "romeo"] {
        let jid = BareJid::new(&format!("{user}@{domain}"))?;
        corvid_server::accounts::create(&running.server.store, &jid, common::PASSWORD).await?;
    }
    // The self-signed certificate the server made for itself.
    let cert = CertificateDer::from_pem_file(dir.path().join("cert.pem"))?;
    Ok(Corvid {
        target: Target {
            server: common::Server::Corvid,
            starttls_port: running.c2s_addrs[0].port(),
            direct_tls_port: running.tls_addrs[0].port(),
            cert,
        },
        running,
        _dir: dir,
    })
}

/// Corvid offers SCRAM-SHA-256-PLUS; under TLS 1.3 the SDK binds to the channel.
#[tokio::test]
async fn starttls_login_uses_scram_sha_256_plus() -> Result<()> {
    let server = corvid().await?;
    let event = common::logs_in_with_starttls(&server.target).await?;
    assert!(
        matches!(
            event,
            Event::Authenticated {
                mechanism: Mechanism::ScramSha256Plus,
                ..
            }
        ),
        "{event:?}"
    );
    server.running.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn direct_tls_login_uses_scram_sha_256_plus() -> Result<()> {
    let server = corvid().await?;
    let event = common::logs_in_with_direct_tls(&server.target).await?;
    assert!(
        matches!(
            event,
            Event::Authenticated {
                mechanism: Mechanism::ScramSha256Plus,
                ..
            }
        ),
        "{event:?}"
    );
    server.running.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn untrusted_certificates_and_wrong_passwords_are_refused() -> Result<()> {
    let server = corvid().await?;
    let other = corvid().await?;
    common::refuses_an_untrusted_or_unpinned_certificate(&server.target, other.target.cert.clone())
        .await?;
    common::refuses_a_wrong_password(&server.target).await?;
    other.running.shutdown().await;
    server.running.shutdown().await;
    Ok(())
}

/// Besides what the client sees, the server forgot the session once it disconnected.
#[tokio::test]
async fn streams_end_on_conflict_and_on_disconnect() -> Result<()> {
    let server = corvid().await?;
    common::ends_streams(&server.target).await?;
    let bare = BareJid::new("juliet@localhost")?;
    for _ in 0..100 {
        if server.running.server.sessions.resources(&bare).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.running.server.sessions.resources(&bare).is_empty());
    server.running.shutdown().await;
    Ok(())
}

/// Without a host and port, the client asks DNS: a direct-TLS SRV record comes first, a
/// STARTTLS one after it, and a place that does not answer is skipped. (The domain is not
/// `localhost`, whose names resolvers answer themselves, RFC 6761.)
#[tokio::test]
async fn finds_the_server_by_dns_srv() -> Result<()> {
    let server = corvid_with(|config| config.domains = vec!["chat.test".into()]).await?;
    let target = &server.target;
    let record = |port: u16| vec![(0, 0, port, "localhost.".to_owned())];
    let jid = BareJid::new("juliet@chat.test")?;
    let pinned = Verification::Pinned(vec![target.cert.clone()]);
    let connects = async |records: Records| -> Result<Vec<(String, u16)>> {
        let dns = DnsServer::start(records).await?;
        let (client, mut events) = Client::builder(jid.clone(), common::PASSWORD)
            .dns_server(dns.addr)
            .verification(pinned.clone())
            .build();
        client.connect().await?;
        client.disconnect().await;
        let mut tried = Vec::new();
        while let Some(event) = events.try_next() {
            if let Event::Connecting { host, port } = event {
                tried.push((host, port));
            }
        }
        Ok(tried)
    };
    let localhost = |port: u16| ("localhost".to_owned(), port);
    // Both kinds: direct TLS first.
    let both = Records::from([
        (
            "_xmpps-client._tcp.chat.test.".into(),
            record(target.direct_tls_port),
        ),
        (
            "_xmpp-client._tcp.chat.test.".into(),
            record(target.starttls_port),
        ),
    ]);
    assert_eq!(connects(both).await?, [localhost(target.direct_tls_port)]);
    // STARTTLS only.
    let starttls = Records::from([(
        "_xmpp-client._tcp.chat.test.".into(),
        record(target.starttls_port),
    )]);
    assert_eq!(connects(starttls).await?, [localhost(target.starttls_port)]);
    // A direct-TLS place where nothing listens: on to the STARTTLS one.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dead_first = Records::from([
        ("_xmpps-client._tcp.chat.test.".into(), record(closed)),
        (
            "_xmpp-client._tcp.chat.test.".into(),
            record(target.starttls_port),
        ),
    ]);
    assert_eq!(
        connects(dead_first).await?,
        [localhost(closed), localhost(target.starttls_port)]
    );
    server.running.shutdown().await;
    Ok(())
}

/// No SRV records at all: the domain itself, on the default port.
#[tokio::test]
async fn without_srv_records_the_domain_is_tried_on_5222() -> Result<()> {
    let dns = DnsServer::start(Records::new()).await?;
    let (client, mut events) = Client::builder(BareJid::new("juliet@chat.test")?, "x")
        .dns_server(dns.addr)
        .build();
    // Whatever answers on localhost:5222 (most likely nothing), the first try goes there.
    let _ = tokio::time::timeout(Duration::from_secs(5), client.connect()).await;
    match events.try_next() {
        Some(Event::Connecting { host, port }) => {
            assert_eq!((host.as_str(), port), ("chat.test", 5222))
        }
        other => anyhow::bail!("expected a connection attempt, got {other:?}"),
    }
    Ok(())
}

/// A server that delivers its whole offline backlog even to a client that synced from its
/// archive first: the client itself must not deliver those messages twice.
#[tokio::test]
async fn catch_up_drops_what_offline_storage_sends_again() -> Result<()> {
    let server = corvid_with(|config| config.offline.skip_fetched_from_archive = false).await?;
    common::catches_up_without_duplicates_after_a_closed_connection(&server.target).await?;
    server.running.shutdown().await;
    Ok(())
}

/// Corvid pages pubsub items with result set management (XEP-0059).
#[tokio::test]
async fn pubsub_items_come_in_pages() -> Result<()> {
    let server = corvid().await?;
    let paged = common::pubsub::items_are_fetched_by_id_max_and_page(&server.target).await?;
    assert!(paged, "Corvid answers a page request with a page");
    server.running.shutdown().await;
    Ok(())
}

every_scenario!(corvid, |server| server.running.shutdown().await);
