//! Admission under floods, as honest users behind the flooder's address see it: idle
//! unauthenticated sockets are shed to make room instead of locking the address out, TLS
//! handshakes and registrations are paced per address (not refused), and one address's
//! flood does not queue another address's logins. See `src/admission.rs`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::*;
use corvid_proto::ns;
use corvid_xml::Element;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const PASSWORD: &str = "secret";

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn register_query(username: &str, password: &str) -> Element {
    Element::new("query", ns::REGISTER)
        .with_child(Element::new("username", ns::REGISTER).with_text(username))
        .with_child(Element::new("password", ns::REGISTER).with_text(password))
}

/// Opens `n` TCP connections to `addr` that never send a byte.
async fn idle_sockets(addr: std::net::SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        sockets.push(TcpStream::connect(addr).await.context("idle socket")?);
    }
    Ok(sockets)
}

#[tokio::test]
async fn a_thousand_idle_sockets_from_an_address_do_not_lock_out_logins_from_it() -> Result<()> {
    // Default limits: what an operator gets.
    let ts = start_server_with(|_| {}).await?;
    ts.create_user("alice", PASSWORD).await?;
    ts.create_user("bob", PASSWORD).await?;
    let mut flood = idle_sockets(ts.c2s_addr, 500).await?;
    flood.extend(idle_sockets(ts.tls_addr, 500).await?);
    // Honest clients from the same address (127.0.0.1), on both ports.
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = Client::direct_tls_session(ts.tls_addr).await?;
    bob.login("bob", PASSWORD, Some("b")).await?;
    alice
        .send(&message("bob@localhost/b", "chat", "through the flood"))
        .await?;
    bob.expect_message("through the flood").await?;
    let shed = ts
        .server
        .connections
        .counters
        .connections_shed
        .load(Ordering::Relaxed);
    ensure!(shed >= 800, "only {shed} idle sockets were shed");
    ensure!(
        ts.server.connections.unauthenticated() <= 128,
        "{} unauthenticated connections held",
        ts.server.connections.unauthenticated()
    );
    drop(flood);
    Ok(())
}

#[tokio::test]
async fn the_least_recently_active_connection_is_shed_and_told_why() -> Result<()> {
    let ts = start_server_with(|c| c.limits.max_unauthenticated_per_ip = 2).await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut idle = Client::connect(ts.c2s_addr).await?;
    idle.open_stream().await?;
    let mut busy = Client::connect(ts.c2s_addr).await?;
    busy.open_stream().await?;
    busy.starttls().await?;
    // A newcomer: the budget of two is full, and `idle` has been quiet the longest.
    let mut newcomer = Client::connect(ts.c2s_addr).await?;
    newcomer.open_stream().await?;
    let el = idle.recv().await?;
    ensure!(
        stream_error_condition(&el).as_deref() == Some("connection-timeout"),
        "{el}"
    );
    ensure!(el.to_string().contains("make room"), "no explanation: {el}");
    // The busy one logs in, and the newcomer too.
    busy.login("alice", PASSWORD, Some("busy")).await?;
    newcomer.starttls().await?;
    newcomer.login("alice", PASSWORD, Some("new")).await?;
    newcomer.sync().await
}

#[tokio::test]
async fn a_silent_unauthenticated_connection_is_closed_after_the_idle_timeout() -> Result<()> {
    let ts = start_server_with(|c| c.limits.unauthenticated_idle_secs = 1).await?;
    let mut client = Client::connect(ts.c2s_addr).await?;
    client.open_stream().await?;
    client.expect_stream_error("connection-timeout").await
}

#[tokio::test]
async fn a_registration_burst_of_2000_at_50_concurrent_all_succeed_under_the_default_limits()
-> Result<()> {
    let ts = start_server_with(|c| c.registration.open = Some(true)).await?;
    let addr = ts.c2s_addr;
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..50 {
        let next = next.clone();
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 2000 {
                    return Ok::<(), anyhow::Error>(());
                }
                let mut client = Client::starttls_session(addr).await?;
                // Pacing makes some wait for their turn; the per-read deadline is for
                // servers that do not answer, not for ones that pace.
                client.timeout = Duration::from_secs(30);
                client
                    .iq_result("set", None, register_query(&format!("user{i}"), "pw"))
                    .await
                    .with_context(|| format!("registration {i}"))?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let users = corvid_store::Users::list_users(&ts.server.store, Some(DOMAIN)).await?;
    ensure!(users.len() == 2000, "{} accounts", users.len());
    Ok(())
}

#[tokio::test]
async fn registrations_far_over_the_rate_get_resource_constraint_and_keep_the_stream() -> Result<()>
{
    let ts = start_server_with(|c| {
        c.registration.open = Some(true);
        c.limits.unauthenticated_timeout_secs = 60;
        c.limits.registrations_per_sec_per_ip = 1;
        c.limits.registration_burst_per_ip = 1;
    })
    .await?;
    // One now, ten more paced over ten seconds, then the queue is longer than anyone
    // should wait: the thirteenth is refused.
    let mut clients = Vec::new();
    for _ in 0..13 {
        let mut client = Client::starttls_session(ts.c2s_addr).await?;
        client.timeout = Duration::from_secs(30);
        clients.push(client);
    }
    let mut attempts = JoinSet::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        attempts.spawn(async move {
            let reply = client
                .iq("set", None, register_query(&format!("u{i}"), "pw"))
                .await?;
            // Whatever the answer, the stream is still usable.
            client
                .iq_result("get", None, Element::new("query", ns::REGISTER))
                .await?;
            Ok::<Element, anyhow::Error>(reply)
        });
    }
    let mut refused = Vec::new();
    while let Some(reply) = attempts.join_next().await {
        let reply = reply??;
        if reply.attr("type") == Some("error") {
            refused.push(reply);
        }
    }
    ensure!(!refused.is_empty(), "nothing was refused");
    for reply in &refused {
        ensure!(
            stanza_error(reply).map(|(_, c)| c).as_deref() == Some("resource-constraint"),
            "{reply}"
        );
        ensure!(reply.to_string().contains("try again"), "no text: {reply}");
    }
    Ok(())
}

#[tokio::test]
async fn a_handshake_flood_from_one_address_does_not_queue_logins_from_another() -> Result<()> {
    let ts = start_server_with(|c| {
        c.limits.tls_handshakes_per_sec_per_ip = 10;
        c.limits.tls_handshake_burst_per_ip = 5;
    })
    .await?;
    ts.create_user("alice", PASSWORD).await?;
    // 127.0.0.2 starts 30 TLS handshakes at once: five go ahead, the rest are paced at
    // ten a second (2.5 seconds), none refused.
    let done = Arc::new(AtomicUsize::new(0));
    let mut flood = JoinSet::new();
    for _ in 0..30 {
        let (addr, done) = (ts.tls_addr, done.clone());
        flood.spawn(async move {
            let mut client =
                Client::connect_tls_from(loopback(2), addr, &TlsOptions::direct()).await?;
            client.timeout = Duration::from_secs(30);
            client.open_stream().await?;
            done.fetch_add(1, Ordering::Relaxed);
            Ok::<Client, anyhow::Error>(client)
        });
    }
    // Wait until the flood is being paced (the first five are through).
    while done.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Meanwhile 127.0.0.3 logs in, without waiting behind 127.0.0.2's queue.
    let mut client = Client::connect_from(loopback(3), ts.c2s_addr).await?;
    client.open_stream().await?;
    client.starttls().await?;
    client.login("alice", PASSWORD, Some("a")).await?;
    let flood_done_when_logged_in = done.load(Ordering::Relaxed);
    ensure!(
        flood_done_when_logged_in < 30,
        "the login finished only after the whole flood ({flood_done_when_logged_in})"
    );
    // The flood itself was paced, not refused.
    while let Some(client) = flood.join_next().await {
        client??;
    }
    let delayed = ts
        .server
        .connections
        .counters
        .handshakes_delayed
        .load(Ordering::Relaxed);
    ensure!(delayed >= 20, "{delayed} handshakes paced");
    Ok(())
}
