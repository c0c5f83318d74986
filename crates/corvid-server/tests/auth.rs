//! SASL authentication on client streams (RFC 6120 §6): every mechanism over STARTTLS and
//! direct TLS, channel binding, failures, retries, and what happens before TLS.

mod common;

use std::time::Duration;

use anyhow::{Result, ensure};
use common::*;
use corvid_proto::ns;
use corvid_proto::sasl::Mechanism;

const PASSWORD: &str = "correct horse battery staple";

async fn server_with_alice() -> Result<TestServer> {
    let ts = start_server().await?;
    ts.create_user("alice", PASSWORD).await?;
    Ok(ts)
}

/// Which way the client gets to TLS.
#[derive(Clone, Copy, Debug)]
enum Transport {
    StartTls,
    DirectTls,
}

async fn tls_session(ts: &TestServer, transport: Transport) -> Result<Client> {
    match transport {
        Transport::StartTls => Client::starttls_session(ts.c2s_addr).await,
        Transport::DirectTls => Client::direct_tls_session(ts.tls_addr).await,
    }
}

/// Logs in with `mechanism` over both transports and checks the session works.
async fn logs_in_with(mechanism: Mechanism, cb: Option<CbType>) -> Result<()> {
    let ts = server_with_alice().await?;
    for transport in [Transport::StartTls, Transport::DirectTls] {
        let mut client = tls_session(&ts, transport).await?;
        ensure!(
            client.mechanisms().iter().any(|m| m == mechanism.name()),
            "{} not offered over {transport:?}: {:?}",
            mechanism.name(),
            client.mechanisms()
        );
        if let Some(cb) = cb {
            ensure!(
                client
                    .channel_binding_types()
                    .iter()
                    .any(|t| t == cb.name()),
                "{} not advertised over {transport:?}: {:?}",
                cb.name(),
                client.channel_binding_types()
            );
        }
        match mechanism {
            Mechanism::Plain => client.auth_plain("alice", PASSWORD).await?,
            scram => client.auth_scram(scram, "alice", PASSWORD, cb).await?,
        }
        let jid = client.bind(Some("res")).await?;
        ensure!(
            jid == "alice@localhost/res",
            "bound {jid} over {transport:?}"
        );
        client.sync().await?;
    }
    Ok(())
}

#[tokio::test]
async fn scram_sha_1_logs_in_over_starttls_and_direct_tls() -> Result<()> {
    logs_in_with(Mechanism::ScramSha1, None).await
}

#[tokio::test]
async fn scram_sha_256_logs_in_over_starttls_and_direct_tls() -> Result<()> {
    logs_in_with(Mechanism::ScramSha256, None).await
}

#[tokio::test]
async fn scram_sha_1_plus_with_tls_exporter_logs_in() -> Result<()> {
    logs_in_with(Mechanism::ScramSha1Plus, Some(CbType::TlsExporter)).await
}

#[tokio::test]
async fn scram_sha_1_plus_with_tls_server_end_point_logs_in() -> Result<()> {
    logs_in_with(Mechanism::ScramSha1Plus, Some(CbType::TlsServerEndPoint)).await
}

#[tokio::test]
async fn scram_sha_256_plus_with_tls_exporter_logs_in() -> Result<()> {
    logs_in_with(Mechanism::ScramSha256Plus, Some(CbType::TlsExporter)).await
}

#[tokio::test]
async fn scram_sha_256_plus_with_tls_server_end_point_logs_in() -> Result<()> {
    logs_in_with(Mechanism::ScramSha256Plus, Some(CbType::TlsServerEndPoint)).await
}

#[tokio::test]
async fn plain_logs_in_over_tls() -> Result<()> {
    logs_in_with(Mechanism::Plain, None).await
}

#[tokio::test]
async fn direct_tls_negotiates_alpn_xmpp_client() -> Result<()> {
    let ts = start_server().await?;
    let client = Client::direct_tls_session(ts.tls_addr).await?;
    ensure!(
        client.alpn_protocol().as_deref() == Some(&b"xmpp-client"[..]),
        "ALPN: {:?}",
        client.alpn_protocol()
    );
    Ok(())
}

#[tokio::test]
async fn tls_1_2_offers_only_tls_server_end_point_and_it_works() -> Result<()> {
    // RFC 9266 §3: tls-exporter is not safe on TLS 1.2 without extended master secret.
    let ts = server_with_alice().await?;
    let mut client = Client::connect_tls(ts.tls_addr, &TlsOptions::direct().tls12_only()).await?;
    client.open_stream().await?;
    ensure!(
        client.tls_version() == Some(rustls::ProtocolVersion::TLSv1_2),
        "{:?}",
        client.tls_version()
    );
    ensure!(
        client.channel_binding_types() == ["tls-server-end-point"],
        "binding types on TLS 1.2: {:?}",
        client.channel_binding_types()
    );
    client
        .auth_scram(
            Mechanism::ScramSha256Plus,
            "alice",
            PASSWORD,
            Some(CbType::TlsServerEndPoint),
        )
        .await?;
    client.bind(None).await?;
    Ok(())
}

#[tokio::test]
async fn channel_binding_to_another_connection_is_rejected() -> Result<()> {
    // A man in the middle would relay the exchange with its own connection's binding.
    let ts = server_with_alice().await?;
    let other = Client::starttls_session(ts.c2s_addr).await?;
    let foreign = other.channel_binding(CbType::TlsExporter)?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    let outcome = client
        .sasl_scram(Mechanism::ScramSha256Plus, "alice", PASSWORD, Some(foreign))
        .await?;
    ensure!(
        outcome == Sasl::Failure("not-authorized".into()),
        "{outcome:?}"
    );
    Ok(())
}

#[tokio::test]
async fn wrong_password_fails_with_not_authorized_and_allows_a_retry() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    let outcome = client
        .sasl_scram(Mechanism::ScramSha256, "alice", "wrong", None)
        .await?;
    ensure!(
        outcome == Sasl::Failure("not-authorized".into()),
        "SCRAM: {outcome:?}"
    );
    let outcome = client.sasl_plain("alice", "wrong").await?;
    ensure!(
        outcome == Sasl::Failure("not-authorized".into()),
        "PLAIN: {outcome:?}"
    );
    // RFC 6120 §6.4.5: the client may retry on the same stream.
    client
        .auth_scram(Mechanism::ScramSha256, "alice", PASSWORD, None)
        .await?;
    client.bind(None).await?;
    Ok(())
}

#[tokio::test]
async fn unknown_user_fails_with_not_authorized() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    let outcome = client
        .sasl_scram(
            Mechanism::ScramSha256Plus,
            "mallory",
            PASSWORD,
            Some(client.channel_binding(CbType::TlsExporter)?),
        )
        .await?;
    ensure!(
        outcome == Sasl::Failure("not-authorized".into()),
        "SCRAM: {outcome:?}"
    );
    let outcome = client.sasl_plain("mallory", PASSWORD).await?;
    ensure!(
        outcome == Sasl::Failure("not-authorized".into()),
        "PLAIN: {outcome:?}"
    );
    Ok(())
}

#[tokio::test]
async fn no_mechanisms_are_offered_before_tls_when_tls_is_required() -> Result<()> {
    let ts = start_server().await?;
    let mut client = Client::connect(ts.c2s_addr).await?;
    client.open_stream().await?;
    ensure!(
        client.mechanisms().is_empty(),
        "mechanisms before TLS: {:?}",
        client.mechanisms()
    );
    let starttls = client
        .features
        .as_ref()
        .and_then(|f| f.get_child("starttls", ns::TLS));
    ensure!(
        starttls.is_some_and(|s| s.has_child("required", ns::TLS)),
        "features: {:?}",
        client.features
    );
    Ok(())
}

#[tokio::test]
async fn auth_before_starttls_is_refused_with_encryption_required() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = Client::connect(ts.c2s_addr).await?;
    client.open_stream().await?;
    let outcome = client
        .sasl_scram(Mechanism::ScramSha256, "alice", PASSWORD, None)
        .await?;
    ensure!(
        outcome == Sasl::Failure("encryption-required".into()),
        "SCRAM: {outcome:?}"
    );
    let outcome = client.sasl_plain("alice", PASSWORD).await?;
    ensure!(
        outcome == Sasl::Failure("encryption-required".into()),
        "PLAIN: {outcome:?}"
    );
    Ok(())
}

#[tokio::test]
async fn plain_is_neither_offered_nor_accepted_without_tls_even_when_tls_is_optional() -> Result<()>
{
    let ts = start_server_with(|c| c.c2s.require_tls = false).await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut client = Client::connect(ts.c2s_addr).await?;
    client.open_stream().await?;
    let mechanisms = client.mechanisms();
    ensure!(
        mechanisms.iter().any(|m| m == "SCRAM-SHA-256"),
        "{mechanisms:?}"
    );
    ensure!(
        !mechanisms
            .iter()
            .any(|m| m == "PLAIN" || m.ends_with("-PLUS")),
        "{mechanisms:?}"
    );
    // RFC 6120 §6.5.4: PLAIN needs a protected stream.
    let outcome = client.sasl_plain("alice", PASSWORD).await?;
    ensure!(
        outcome == Sasl::Failure("encryption-required".into()),
        "PLAIN without TLS: {outcome:?}"
    );
    // SCRAM is fine without TLS when the operator allows it.
    client
        .auth_scram(Mechanism::ScramSha256, "alice", PASSWORD, None)
        .await?;
    client.bind(None).await?;
    Ok(())
}

#[tokio::test]
async fn too_many_failures_close_the_stream_with_policy_violation() -> Result<()> {
    // The limit is never below the number of mechanisms offered (five over TLS 1.3).
    let ts = start_server_with(|c| c.limits.max_auth_failures = 3).await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    let offered = client.mechanisms().len();
    ensure!(offered == 5, "{:?}", client.mechanisms());
    for attempt in 1..=offered {
        let outcome = client.sasl_plain("alice", "wrong").await?;
        ensure!(
            outcome == Sasl::Failure("not-authorized".into()),
            "attempt {attempt}: {outcome:?}"
        );
    }
    client.expect_stream_error("policy-violation").await
}

#[tokio::test]
async fn a_client_may_step_down_through_every_offered_mechanism_on_one_stream() -> Result<()> {
    // What slixmpp 1.8 does: -PLUS with tls-unique (undefined on TLS 1.3), then plain SCRAM
    // with the `y` flag (refused: we offered -PLUS), then PLAIN, all on one stream.
    let ts = start_server_with(|c| c.limits.max_auth_failures = 3).await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    let tls_unique = || Some(("tls-unique".to_string(), vec![0u8; 12]));
    for mechanism in [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
    ] {
        let outcome = client
            .sasl_scram(mechanism, "alice", PASSWORD, tls_unique())
            .await?;
        ensure!(
            matches!(outcome, Sasl::Failure(_)),
            "{mechanism:?}: {outcome:?}"
        );
    }
    client.auth_plain("alice", PASSWORD).await?;
    client.bind(None).await?;
    Ok(())
}

#[tokio::test]
async fn repeated_wrong_passwords_hold_back_later_attempts_on_the_account() -> Result<()> {
    let ts = start_server_with(|c| {
        c.limits.auth_failures_before_delay = 2;
        c.limits.auth_max_delay_secs = 1;
    })
    .await?;
    ts.create_user("alice", PASSWORD).await?;
    for _ in 0..3 {
        let mut client = Client::starttls_session(ts.c2s_addr).await?;
        let outcome = client.sasl_plain("alice", "wrong").await?;
        ensure!(
            outcome == Sasl::Failure("not-authorized".into()),
            "{outcome:?}"
        );
    }
    // The owner still gets in (held back briefly), and that clears the account's count.
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    client.auth_plain("alice", PASSWORD).await?;
    let counters = &ts.server.connections.counters;
    let held = counters
        .auth_delayed
        .load(std::sync::atomic::Ordering::Relaxed);
    ensure!(held >= 1, "no attempt was held back");
    Ok(())
}

#[tokio::test]
async fn scram_y_flag_is_rejected_when_plus_was_offered() -> Result<()> {
    // RFC 5802 §6: "y" says the client supports binding but saw no -PLUS offer. We did
    // offer one, so someone stripped it: a downgrade.
    let ts = server_with_alice().await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    ensure!(
        client.mechanisms().iter().any(|m| m.ends_with("-PLUS")),
        "{:?}",
        client.mechanisms()
    );
    let binding = client.channel_binding(CbType::TlsExporter)?;
    let outcome = client
        .sasl_scram(Mechanism::ScramSha256, "alice", PASSWORD, Some(binding))
        .await?;
    ensure!(
        outcome == Sasl::Failure("not-authorized".into()),
        "{outcome:?}"
    );
    Ok(())
}

#[tokio::test]
async fn scram_y_flag_is_accepted_when_plus_was_not_offered() -> Result<()> {
    let ts = start_server_with(|c| c.c2s.require_tls = false).await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut client = Client::connect(ts.c2s_addr).await?;
    client.open_stream().await?;
    // Without TLS there is nothing to bind to, so "y" is the honest answer.
    let binding = Some(("tls-exporter".to_string(), vec![0u8; 32]));
    let outcome = client
        .sasl_scram(Mechanism::ScramSha256, "alice", PASSWORD, binding)
        .await?;
    ensure!(outcome == Sasl::Success, "{outcome:?}");
    Ok(())
}

#[tokio::test]
async fn stanza_before_auth_is_a_not_authorized_stream_error() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    client
        .send(&message("alice@localhost", "chat", "sneaky"))
        .await?;
    client.expect_stream_error("not-authorized").await
}

#[tokio::test]
async fn bind_before_auth_is_a_not_authorized_stream_error() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    client
        .send_raw(format!(
            "<iq type='set' id='b1'><bind xmlns='{}'><resource>r</resource></bind></iq>",
            ns::BIND
        ))
        .await?;
    client.expect_stream_error("not-authorized").await
}

#[tokio::test]
async fn stanza_after_auth_before_bind_is_a_not_authorized_stream_error() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    client
        .auth_scram(Mechanism::ScramSha256, "alice", PASSWORD, None)
        .await?;
    client
        .send(&message("alice@localhost", "chat", "too early"))
        .await?;
    client.expect_stream_error("not-authorized").await
}

#[tokio::test]
async fn unauthenticated_connection_times_out_with_connection_timeout() -> Result<()> {
    let ts = start_server_with(|c| c.limits.unauthenticated_timeout_secs = 1).await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    client.timeout = Duration::from_secs(4);
    client.expect_stream_error("connection-timeout").await
}

#[tokio::test]
async fn authenticated_session_is_not_subject_to_the_unauthenticated_timeout() -> Result<()> {
    let ts = start_server_with(|c| c.limits.unauthenticated_timeout_secs = 1).await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut client = ts.login("alice", PASSWORD, None).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.sync().await
}

#[tokio::test]
async fn unknown_mechanism_fails_with_invalid_mechanism() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    client
        .send_raw(format!(
            "<auth xmlns='{}' mechanism='DIGEST-MD5'/>",
            ns::SASL
        ))
        .await?;
    let reply = client.recv().await?;
    ensure!(
        reply.is("failure", ns::SASL) && reply.has_child("invalid-mechanism", ns::SASL),
        "{reply}"
    );
    client
        .auth_scram(Mechanism::ScramSha1, "alice", PASSWORD, None)
        .await
}

#[tokio::test]
async fn abort_ends_the_exchange_with_aborted() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    // PLAIN without initial response: the server asks for it with an empty challenge.
    client
        .send_raw(format!("<auth xmlns='{}' mechanism='PLAIN'/>", ns::SASL))
        .await?;
    let challenge = client.recv().await?;
    ensure!(
        challenge.is("challenge", ns::SASL) && challenge.text().is_empty(),
        "{challenge}"
    );
    client
        .send_raw(format!("<abort xmlns='{}'/>", ns::SASL))
        .await?;
    let reply = client.recv().await?;
    ensure!(
        reply.is("failure", ns::SASL) && reply.has_child("aborted", ns::SASL),
        "{reply}"
    );
    client.auth_plain("alice", PASSWORD).await
}

#[tokio::test]
async fn response_that_is_not_base64_fails_with_incorrect_encoding() -> Result<()> {
    let ts = server_with_alice().await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    client
        .send_raw(format!(
            "<auth xmlns='{}' mechanism='SCRAM-SHA-256'/>",
            ns::SASL
        ))
        .await?;
    let challenge = client.recv().await?;
    ensure!(challenge.is("challenge", ns::SASL), "{challenge}");
    client
        .send_raw(format!(
            "<response xmlns='{}'>not*base64!</response>",
            ns::SASL
        ))
        .await?;
    let reply = client.recv().await?;
    ensure!(
        reply.is("failure", ns::SASL) && reply.has_child("incorrect-encoding", ns::SASL),
        "{reply}"
    );
    Ok(())
}

#[tokio::test]
async fn authorization_identity_of_another_user_is_refused() -> Result<()> {
    let ts = server_with_alice().await?;
    ts.create_user("bob", PASSWORD).await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    // alice's valid credentials, asking to act as bob.
    let msg = corvid_proto::sasl::encode_plain(Some("bob@localhost"), "alice", PASSWORD);
    let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, msg);
    client
        .send_raw(format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{payload}</auth>",
            ns::SASL
        ))
        .await?;
    let reply = client.recv().await?;
    ensure!(
        reply.is("failure", ns::SASL) && reply.has_child("invalid-authzid", ns::SASL),
        "{reply}"
    );
    // Naming oneself is fine.
    let msg = corvid_proto::sasl::encode_plain(Some("alice@localhost"), "alice", PASSWORD);
    let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, msg);
    client
        .send_raw(format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{payload}</auth>",
            ns::SASL
        ))
        .await?;
    let reply = client.recv().await?;
    ensure!(reply.is("success", ns::SASL), "{reply}");
    Ok(())
}

#[tokio::test]
async fn restarted_stream_may_not_move_to_another_served_domain() -> Result<()> {
    let ts = start_server_with(|config| config.domains.push("other.example".into())).await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    let outcome = client.sasl_plain("alice", PASSWORD).await?;
    ensure!(matches!(outcome, Sasl::Success), "PLAIN failed");
    // Authenticated as alice@localhost; the restart asks for the other domain.
    client.reset_parser();
    client
        .send_raw(Client::stream_header("other.example"))
        .await?;
    client.expect_stream_error("host-unknown").await
}
