//! Protecting the server and its users from connections that hog resources: connection
//! limits, slow consumers, floods, idle, half-open and stalled connections; keepalives;
//! and closing every stream on shutdown.

mod common;

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use common::*;
use corvid_proto::ns;
use corvid_server::config::SlowConsumerPolicy;
use corvid_store::Offline as _;
use corvid_xml::Element;
use tokio::time::Instant;

const PASSWORD: &str = "secret";

async fn server_with(adjust: impl FnOnce(&mut corvid_server::Config)) -> Result<TestServer> {
    let ts = start_server_with(adjust).await?;
    for name in ["alice", "bob", "carol"] {
        ts.create_user(name, PASSWORD).await?;
    }
    Ok(ts)
}

#[tokio::test]
async fn total_connection_limit_refuses_with_resource_constraint() -> Result<()> {
    // Full of sessions that authenticated: nothing can be shed, the newcomer is refused.
    let ts = server_with(|c| c.limits.max_connections = 1).await?;
    let _alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut second = Client::connect(ts.c2s_addr).await?;
    second.expect_stream_error("resource-constraint").await
}

#[tokio::test]
async fn total_connection_limit_sheds_an_idle_unauthenticated_connection_first() -> Result<()> {
    let ts = server_with(|c| c.limits.max_connections = 1).await?;
    let mut idle = Client::connect(ts.c2s_addr).await?;
    idle.open_stream().await?;
    let mut second = Client::connect(ts.c2s_addr).await?;
    second.open_stream().await?;
    idle.expect_stream_error("connection-timeout").await
}

#[tokio::test]
async fn slow_consumer_is_closed_while_the_sender_and_a_fast_reader_are_unaffected() -> Result<()> {
    const QUEUE: usize = 32;
    const BATCH: usize = 8;
    let ts = server_with(|c| {
        c.limits.outgoing_queue = QUEUE;
        c.limits.slow_consumer = SlowConsumerPolicy::Close;
        c.limits.session_bytes_per_sec = 64 * 1024 * 1024;
        c.limits.session_burst_bytes = 64 * 1024 * 1024;
    })
    .await?;
    // A small receive buffer so that not reading fills up the connection quickly.
    let mut victim = Client::connect_with_recv_buffer(ts.c2s_addr, 4096).await?;
    victim.open_stream().await?;
    victim.starttls().await?;
    victim.login("bob", PASSWORD, Some("slow")).await?;
    let mut reader = ts.login("carol", PASSWORD, Some("fast")).await?;
    let mut sender = ts.login("alice", PASSWORD, Some("sender")).await?;

    // The fast reader reads everything until the end marker.
    let reading = tokio::spawn(async move {
        let (_, before) = reader
            .recv_until(|el| message_body(el).as_deref() == Some("end"))
            .await?;
        reader.sync().await?;
        anyhow::Ok(before.len())
    });

    let body = "z".repeat(2000);
    let started = Instant::now();
    let mut sent = 0;
    let gone = loop {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "the slow consumer was not closed after {sent} messages"
        );
        // Batches smaller than the queue, each waited for: a session that reads keeps up.
        for _ in 0..BATCH {
            sender
                .send(&message("bob@localhost/slow", "chat", &body))
                .await?;
            sender
                .send(&message("carol@localhost/fast", "chat", &body))
                .await?;
            sent += 1;
        }
        // Is the victim's resource still bound? An IQ to it bounces once it is not (IQs
        // are never stored offline); then the server's answer to our ping shows that the
        // sender itself is still served.
        let probe = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", format!("probe-{sent}"))
            .with_attr("to", "bob@localhost/slow")
            .with_child(Element::new("ping", ns::PING));
        sender.send(&probe).await?;
        let id = sender.next_id();
        let ping = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", id.as_str())
            .with_attr("to", DOMAIN)
            .with_child(Element::new("ping", ns::PING));
        sender.send(&ping).await?;
        let (_, skipped) = sender
            .recv_until(|el| el.attr("id") == Some(id.as_str()))
            .await?;
        let bounce = skipped.into_iter().find(|el| {
            el.is("iq", ns::CLIENT) && el.attr("id").is_some_and(|i| i.starts_with("probe-"))
        });
        if let Some(bounce) = bounce {
            break bounce;
        }
    };
    let (_, condition) = stanza_error(&gone).unwrap_or_default();
    ensure!(condition == "service-unavailable", "{gone}");
    // The sender is still served, and the fast reader got every message. (Bounces of
    // earlier probes, queued to the victim before it was closed, may still come in.)
    sender
        .send(&message("carol@localhost/fast", "chat", "end"))
        .await?;
    let id = sender.next_id();
    sender
        .send(
            &Element::new("iq", ns::CLIENT)
                .with_attr("type", "get")
                .with_attr("id", id.as_str())
                .with_attr("to", DOMAIN)
                .with_child(Element::new("ping", ns::PING)),
        )
        .await?;
    let (answer, _) = sender
        .recv_until(|el| el.attr("id") == Some(id.as_str()))
        .await?;
    ensure!(answer.attr("type") == Some("result"), "{answer}");
    let received = tokio::time::timeout(Duration::from_secs(10), reading).await???;
    ensure!(
        received == sent,
        "the fast reader got {received} of {sent} messages"
    );
    // The victim, reading at last, finds its stream ended.
    let (ending, delivered) = victim.read_to_end().await?;
    ensure!(delivered.len() < sent, "the victim got all {sent} messages");
    if let Ending::StreamError(condition) = &ending {
        ensure!(condition == "policy-violation", "{condition}");
    }
    Ok(())
}

#[tokio::test]
async fn flooding_client_is_throttled_while_other_users_keep_working() -> Result<()> {
    const RATE: u32 = 64 * 1024;
    const BURST: u32 = 16 * 1024;
    let ts = server_with(|c| {
        c.limits.session_bytes_per_sec = RATE;
        c.limits.session_burst_bytes = BURST;
    })
    .await?;
    let mut flooder = ts.login("carol", PASSWORD, Some("flood")).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;

    // Well beyond the burst: at RATE bytes/s this takes at least (FLOOD - BURST) / RATE.
    const FLOOD: usize = 96 * 1024;
    let body = "f".repeat(1000);
    let mut flood = Vec::new();
    while flood.len() < FLOOD {
        message("carol@localhost/flood", "chat", &body).write_to(&mut flood, ns::CLIENT);
    }
    flood.extend_from_slice(
        format!(
            "<iq type='get' id='last' to='localhost'><ping xmlns='{}'/></iq>",
            ns::PING
        )
        .as_bytes(),
    );
    let minimum = Duration::from_secs_f64((flood.len() - BURST as usize) as f64 / f64::from(RATE));
    flooder.timeout = minimum * 4 + Duration::from_secs(5);

    let started = Instant::now();
    let flooding = async {
        flooder.send_raw(&flood).await?;
        let (last, _) = flooder
            .recv_until(|el| el.attr("id") == Some("last"))
            .await?;
        ensure!(last.attr("type") == Some("result"), "{last}");
        anyhow::Ok(Instant::now())
    };
    let others = async {
        // Give the flood a head start so the flooder is being throttled meanwhile.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..10 {
            let text = format!("round {i}");
            alice
                .send(&message("bob@localhost/b", "chat", &text))
                .await?;
            bob.expect_message(&text).await?;
            bob.sync().await?;
        }
        anyhow::Ok(Instant::now())
    };
    let (flood_done, others_done) = tokio::join!(flooding, others);
    let (flood_done, others_done) = (flood_done?, others_done?);
    let flood_took = flood_done - started;
    ensure!(
        flood_took >= minimum.mul_f64(0.9),
        "{} bytes went through in {flood_took:?}, faster than {RATE} bytes/s allows",
        flood.len()
    );
    ensure!(
        others_done < flood_done,
        "the other users were held up until the flood was through"
    );
    // Throttled, not disconnected.
    flooder.sync().await
}

#[tokio::test]
async fn half_open_connection_is_closed_after_the_unauthenticated_timeout() -> Result<()> {
    let ts = server_with(|c| c.limits.unauthenticated_timeout_secs = 1).await?;
    // Connects and sends nothing at all.
    let mut client = Client::connect(ts.c2s_addr).await?;
    client.timeout = Duration::from_secs(4);
    let started = Instant::now();
    client.expect_stream_error("connection-timeout").await?;
    ensure!(
        started.elapsed() >= Duration::from_millis(900),
        "closed after {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn silent_client_on_the_direct_tls_port_is_dropped_after_the_unauthenticated_timeout()
-> Result<()> {
    let ts = server_with(|c| c.limits.unauthenticated_timeout_secs = 1).await?;
    // Connects to the TLS port and never starts the handshake: no stream to send an error
    // on, so the server can only close the connection.
    let mut client = Client::connect(ts.tls_addr).await?;
    client.timeout = Duration::from_secs(4);
    let started = Instant::now();
    match client.next_incoming().await? {
        Incoming::Disconnected => {}
        other => bail!("expected the connection to be dropped, got {other:?}"),
    }
    ensure!(
        started.elapsed() >= Duration::from_millis(900),
        "dropped after {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn client_stalling_after_starttls_proceed_is_dropped_after_the_unauthenticated_timeout()
-> Result<()> {
    let ts = server_with(|c| c.limits.unauthenticated_timeout_secs = 1).await?;
    let mut client = Client::connect(ts.c2s_addr).await?;
    client.open_stream().await?;
    client
        .send_raw(format!("<starttls xmlns='{}'/>", ns::TLS))
        .await?;
    let proceed = client.recv().await?;
    ensure!(proceed.is("proceed", ns::TLS), "{proceed}");
    // ... and never sends a ClientHello.
    client.timeout = Duration::from_secs(4);
    match client.next_incoming().await? {
        Incoming::Disconnected => Ok(()),
        other => bail!("expected the connection to be dropped, got {other:?}"),
    }
}

#[tokio::test]
async fn idle_client_is_pinged_and_closed_when_it_does_not_answer() -> Result<()> {
    let ts = server_with(|c| {
        c.limits.idle_ping_secs = 1;
        c.limits.ping_timeout_secs = 1;
    })
    .await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice.timeout = Duration::from_secs(4);
    let ping = alice.recv().await?;
    ensure!(
        ping.is("iq", ns::CLIENT)
            && ping.attr("type") == Some("get")
            && ping.has_child("ping", ns::PING),
        "{ping}"
    );
    ensure!(ping.attr("from") == Some(DOMAIN), "{ping}");
    // Answering keeps the session: the next idle period brings another ping.
    let id = ping.attr("id").unwrap_or_default().to_string();
    alice
        .send_raw(format!("<iq type='result' id='{id}' to='localhost'/>"))
        .await?;
    let again = alice.recv().await?;
    ensure!(again.has_child("ping", ns::PING), "{again}");
    // Not answering ends it.
    alice.expect_stream_error("connection-timeout").await
}

#[tokio::test]
async fn whitespace_keepalives_are_accepted() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut client = Client::connect(ts.c2s_addr).await?;
    client.open_stream().await?;
    client.send_raw(" \n\t \r\n").await?;
    client.starttls().await?;
    client.send_raw(" ").await?;
    client.login("alice", PASSWORD, Some("a")).await?;
    for _ in 0..5 {
        client.send_raw(" ").await?;
    }
    client.sync().await?;
    client.send_raw("\n").await?;
    client.sync().await
}

#[tokio::test]
async fn server_shutdown_sends_system_shutdown_to_every_stream() -> Result<()> {
    let ts = server_with(|_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut unauthenticated = Client::starttls_session(ts.c2s_addr).await?;
    let mut silent = Client::connect(ts.c2s_addr).await?;
    // Make sure the silent connection has been accepted before shutting down.
    let mut probe = Client::connect(ts.c2s_addr).await?;
    probe.open_stream().await?;
    let c2s = ts.c2s_addr;
    let stopping = tokio::spawn(ts.shutdown());
    alice.expect_stream_error("system-shutdown").await?;
    unauthenticated
        .expect_stream_error("system-shutdown")
        .await?;
    probe.expect_stream_error("system-shutdown").await?;
    silent.expect_stream_error("system-shutdown").await?;
    tokio::time::timeout(Duration::from_secs(5), stopping).await??;
    // The listener is gone.
    match Client::connect(c2s).await {
        Err(_) => Ok(()),
        Ok(mut late) => match late.next_incoming().await {
            Ok(Incoming::Disconnected) | Err(_) => Ok(()),
            Ok(other) => bail!("a connection after shutdown got {other:?}"),
        },
    }
}

/// Sends `count` chats to alice's bare JID while she is offline (XEP-0160 stores them).
async fn store_offline_backlog(ts: &TestServer, count: usize, body_len: usize) -> Result<()> {
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    for i in 0..count {
        let body = format!("m{i} {}", "x".repeat(body_len));
        bob.send(&message("alice@localhost", "chat", &body)).await?;
    }
    bob.sync().await?;
    let stored = ts.server.store.count_offline("alice", "localhost").await?;
    ensure!(stored == count, "{stored} of {count} messages stored");
    Ok(())
}

/// The number in a backlog message's body (`m7 xxx…` → 7).
fn backlog_index(el: &Element) -> Option<usize> {
    let body = message_body(el)?;
    body.strip_prefix('m')?.split(' ').next()?.parse().ok()
}

/// Waits until alice has no stored messages left (deletion follows delivery).
async fn wait_until_no_offline_messages(ts: &TestServer) -> Result<()> {
    let started = Instant::now();
    loop {
        let left = ts.server.store.count_offline("alice", "localhost").await?;
        if left == 0 {
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "{left} delivered messages are still stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn offline_backlog_larger_than_the_queue_arrives_whole_then_is_deleted() -> Result<()> {
    // XEP-0160: 20 stored messages, a queue of 8. The session must get all 20 in order,
    // not 7 and a policy-violation; and none may stay stored once delivered.
    const STORED: usize = 20;
    let ts = server_with(|c| c.limits.outgoing_queue = 8).await?;
    store_offline_backlog(&ts, STORED, 10).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice.send(&Element::new("presence", ns::CLIENT)).await?;
    let (last, before) = alice
        .recv_until(|el| backlog_index(el) == Some(STORED - 1))
        .await?;
    let got: Vec<usize> = before
        .iter()
        .chain([&last])
        .filter_map(backlog_index)
        .collect();
    ensure!(
        got == (0..STORED).collect::<Vec<_>>(),
        "received {got:?} instead of every stored message in order"
    );
    alice.sync().await?;
    wait_until_no_offline_messages(&ts).await
}

#[tokio::test]
async fn offline_messages_not_yet_written_when_the_connection_drops_stay_stored() -> Result<()> {
    // The backlog is twice what the kernel may buffer for a connection that stops reading,
    // so the server stops taking messages from the queue; when the client then drops, what
    // the session never took to write is still stored and goes to the next session. (What
    // was written into the dead connection is lost: only stream management could tell.)
    const BODY: usize = 64 * 1024;
    let stored = 2 * max_send_buffer() / BODY + 8;
    let ts = server_with(|c| {
        c.limits.outgoing_queue = 8;
        c.limits.session_bytes_per_sec = 64 * 1024 * 1024;
        c.limits.session_burst_bytes = 64 * 1024 * 1024;
    })
    .await?;
    store_offline_backlog(&ts, stored, BODY).await?;
    let mut first = Client::connect_with_recv_buffer(ts.c2s_addr, 4096).await?;
    first.open_stream().await?;
    first.starttls().await?;
    first.login("alice", PASSWORD, Some("a")).await?;
    first.send(&Element::new("presence", ns::CLIENT)).await?;
    let (m0, _) = first.recv_until(|el| backlog_index(el).is_some()).await?;
    ensure!(backlog_index(&m0) == Some(0), "first came {m0}");
    drop(first);

    // The next session gets the rest: a tail of the backlog, in order, ending with the
    // last message, without the one the first session read.
    let mut second = ts.login("alice", PASSWORD, Some("b")).await?;
    second.send(&Element::new("presence", ns::CLIENT)).await?;
    let (last, before) = second
        .recv_until(|el| backlog_index(el) == Some(stored - 1))
        .await?;
    let got: Vec<usize> = before
        .iter()
        .chain([&last])
        .filter_map(backlog_index)
        .collect();
    let first_left = got.first().copied().unwrap_or_default();
    ensure!(first_left >= 1, "message 0 was delivered twice: {got:?}");
    ensure!(
        got == (first_left..stored).collect::<Vec<_>>(),
        "the second session got {got:?}, not the stored tail"
    );
    second.sync().await?;
    wait_until_no_offline_messages(&ts).await
}

/// The most a TCP socket's send buffer may grow to (Linux `tcp_wmem` max; 4 MiB elsewhere).
fn max_send_buffer() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20)
        .max(4 << 20)
}

#[tokio::test]
async fn roster_beyond_its_size_limit_refuses_new_contacts_with_resource_constraint() -> Result<()>
{
    let ts = server_with(|c| c.limits.max_roster_items = 2).await?;
    ts.create_user("dave", PASSWORD).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let item = |jid: &str| {
        Element::new("query", ns::ROSTER)
            .with_child(Element::new("item", ns::ROSTER).with_attr("jid", jid))
    };
    alice.iq_result("set", None, item("bob@localhost")).await?;
    alice
        .iq_result("set", None, item("carol@localhost"))
        .await?;
    let (_, condition) = alice.iq_error("set", None, item("dave@localhost")).await?;
    ensure!(condition == "resource-constraint", "{condition}");
    // Updating a contact already there still works.
    alice.iq_result("set", None, item("bob@localhost")).await?;
    // A stranger's subscription request would add a row too: refused the same way.
    let mut dave = ts.login("dave", PASSWORD, Some("d")).await?;
    // The error comes back to dave's bare JID (the request left from it, RFC 6121 §3.1.2),
    // so to his available resources.
    dave.send_presence(0).await?;
    let subscribe = Element::new("presence", ns::CLIENT)
        .with_attr("to", "alice@localhost")
        .with_attr("type", "subscribe")
        .with_attr("id", "sub");
    dave.send(&subscribe).await?;
    let (refused, _) = dave.recv_until(|el| el.attr("id") == Some("sub")).await?;
    let (_, condition) = stanza_error(&refused).unwrap_or_default();
    ensure!(condition == "resource-constraint", "{refused}");
    Ok(())
}
