//! The stream scenarios against a real Corvid, started in this process on loopback.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use common::Target;
use corvid_client::Event;
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
    let dir = tempfile::tempdir()?;
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = corvid_server::Config {
        data_dir: dir.path().to_owned(),
        ..corvid_server::Config::default()
    };
    config.c2s.listen = vec![any_port];
    config.c2s.tls_listen = vec![any_port];
    let running = corvid_server::start(config).await.context("start corvid")?;
    for user in ["juliet", "romeo"] {
        let jid = BareJid::new(&format!("{user}@localhost"))?;
        corvid_server::accounts::create(&running.server.store, &jid, common::PASSWORD).await?;
    }
    // The self-signed certificate the server made for itself.
    let cert = CertificateDer::from_pem_file(dir.path().join("cert.pem"))?;
    Ok(Corvid {
        target: Target {
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

scenarios!(corvid, |server| server.running.shutdown().await;
    messages_go_both_ways => exchanges_messages,
    requests_get_their_result_or_their_error => answers_requests,
    roster_round_trip => roster_round_trip,
    roster_survives_in_sqlite => roster_survives_in_sqlite,
    receipts_come_back => receipts_come_back,
    autoping_gets_pongs => autoping_gets_pongs,
    vcards_are_fetched_cache_first => vcards_are_fetched_cache_first,
    carbons_copy_the_other_resources_messages => carbons_copy_the_other_resources_messages,
    mam_pages_the_archive => mam_pages_the_archive,
    room_join_and_leave => room::room_join_and_leave,
    room_reserved_creation => room::room_reserved_creation,
    room_password => room::room_password,
    room_lists => room::room_lists,
    room_kick_and_ban => room::room_kick_and_ban,
    room_voice_in_a_moderated_room => room::room_voice_in_a_moderated_room,
    room_invitations => room::room_invitations,
    room_subject => room::room_subject,
    room_nick_change => room::room_nick_change,
    room_destroy => room::room_destroy,
    room_messages => room::room_messages,
    room_history_on_join => room::room_history_on_join,
    room_self_ping_rejoins => room::room_self_ping_rejoins,
);
