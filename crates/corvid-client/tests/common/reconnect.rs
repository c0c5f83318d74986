//! Reconnection scenarios: a proxy between Juliet and the server cuts her connection in the
//! middle of a conversation, and every message still arrives exactly once.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use std::sync::Arc;

use corvid_client::{
    AutoPing, Client, ClientBuilder, DisconnectReason, Event, Events, JoinOptions,
    MemoryRosterStorage, Muc, PingEvent, Reconnect, RoomEvent, RoomEvents, RoomMessage, Roster,
    RosterEvent,
};
use corvid_proto::ns;
use corvid_xml::Element;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{Target, WAIT, expect};

/// How a [`Proxy`] cuts its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Both sides see the connection close.
    Close,
    /// Nothing goes through any more, either way, and neither side is told, as when a
    /// phone drops off the network; [`Proxy::drop_clients`] then closes the client's side
    /// only: the server still thinks the client is there.
    BlackHole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Frozen,
    ClientGone,
    Closed,
}

/// A TCP proxy on loopback in front of a server's port, which can cut what goes through it.
pub struct Proxy {
    pub port: u16,
    state: watch::Sender<State>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(server_port: u16) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (state, _) = watch::channel(State::Open);
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn({
            let state = state.clone();
            let refusing = refusing.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if refusing.load(std::sync::atomic::Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)).await else {
                        continue;
                    };
                    // Connections made after a cut go through.
                    state.send_replace(State::Open);
                    tokio::spawn(relay(client, server, state.subscribe()));
                }
            }
        });
        Ok(Proxy {
            port,
            state,
            refusing,
            task,
        })
    }

    /// Cuts the connections open now.
    pub fn cut(&self, how: Cut) {
        self.state.send_replace(match how {
            Cut::Close => State::Closed,
            Cut::BlackHole => State::Frozen,
        });
    }

    /// While on, new connections are closed at once (the server is unreachable).
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// After a [`Cut::BlackHole`], closes the client's side.
    pub fn drop_clients(&self) {
        self.state.send_replace(State::ClientGone);
    }
}

async fn relay(mut client: TcpStream, mut server: TcpStream, mut state: watch::Receiver<State>) {
    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
    tokio::select! {
        _ = copy => return,
        _ = state.wait_for(|s| *s != State::Open) => {}
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, _server_write) = server.into_split();
    // Whatever the server writes from now on goes nowhere, for a while.
    let swallow_server = tokio::spawn(async move {
        let mut sink = tokio::io::sink();
        let _ = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::io::copy(&mut server_read, &mut sink),
        )
        .await;
    });
    if *state.borrow() == State::Closed {
        swallow_server.abort();
        let _ = client_write.shutdown().await;
        return;
    }
    // Frozen: the client's writes go nowhere either, until its side is closed.
    let swallow_client = tokio::spawn(async move {
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut client_read, &mut sink).await;
    });
    let _ = state
        .wait_for(|s| matches!(s, State::ClientGone | State::Closed))
        .await;
    swallow_client.abort();
    let _ = client_write.shutdown().await;
    drop(client_write);
    let _ = swallow_server.await;
}

fn chat(to: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("to", to)
        .with_attr("type", "chat")
        .with_attr("id", body)
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

/// Bodies received until `last`, counted (a duplicate shows as a count of 2), and until
/// `done` accepts the other events seen (which are returned).
async fn collect(
    events: &mut Events,
    last: &str,
    done: impl Fn(&[Event]) -> bool,
) -> Result<(HashMap<String, usize>, Vec<Event>)> {
    let mut seen = HashMap::new();
    let mut others = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .with_context(|| format!("no {last:?} in time; had {seen:?} and {others:?}"))?
            .context("events ended")?;
        match event {
            Event::Message(m) => {
                if let Some(body) = m.get_child("body", ns::CLIENT).map(Element::text) {
                    *seen.entry(body).or_insert(0) += 1;
                }
            }
            Event::Presence(_) | Event::Iq(_) | Event::Other(_) => {}
            other => others.push(other),
        }
        if seen.contains_key(last) && done(&others) {
            return Ok((seen, others));
        }
    }
}

async fn bodies_until(events: &mut Events, last: &str) -> Result<HashMap<String, usize>> {
    Ok(collect(events, last, |_| true).await?.0)
}

fn assert_each_once(counts: &HashMap<String, usize>, prefix: &str, n: usize) -> Result<()> {
    for i in 1..=n {
        let body = format!("{prefix}{i}");
        match counts.get(&body) {
            Some(1) => {}
            Some(k) => bail!("{body} delivered {k} times: {counts:?}"),
            None => bail!("{body} lost: {counts:?}"),
        }
    }
    Ok(())
}

fn policy() -> Reconnect {
    Reconnect::default()
        .initial_delay(Duration::from_millis(300))
        .max_delay(Duration::from_secs(1))
}

/// Juliet's phone, through the proxy, reconnecting by `policy()`.
fn juliet_builder(target: &Target, proxy: &Proxy, stream_management: bool) -> ClientBuilder {
    target
        .builder("juliet")
        .resource("phone")
        .server("127.0.0.1", proxy.port)
        .stream_management(stream_management)
        .reconnect(policy())
}

/// Juliet through the proxy, reconnecting by `policy()`, available.
async fn juliet_through(
    target: &Target,
    proxy: &Proxy,
    stream_management: bool,
) -> Result<(Client, Events)> {
    let (juliet, mut events) = juliet_builder(target, proxy, stream_management).build();
    juliet.connect().await?;
    juliet.send(&Element::new("presence", ns::CLIENT)).await?;
    expect(&mut events, "authenticated", |e| {
        matches!(e, Event::Authenticated { .. })
    })
    .await?;
    Ok((juliet, events))
}

/// Romeo and Juliet talk; Juliet's connection is cut (`how`) while Romeo goes on writing
/// and Juliet writes too (with stream management, before she knows of the cut; without,
/// after, since what goes into a dead connection without acknowledgements is lost to
/// any client). Returns the events that tell the loss and the way back, and what each
/// received once Juliet is back.
async fn conversation_with_a_cut(
    target: &Target,
    how: Cut,
    stream_management: bool,
) -> Result<(Vec<Event>, HashMap<String, usize>, HashMap<String, usize>)> {
    let proxy = Proxy::start(target.starttls_port).await?;
    let (juliet, mut juliet_events) = juliet_through(target, &proxy, stream_management).await?;
    let (romeo, mut romeo_events) = target.online("romeo").await?;
    let juliet_jid = juliet.jid().context("bound")?.to_string();
    // Before the cut: Juliet has seen some of Romeo's messages (and their stanza-ids).
    for i in 1..=5 {
        romeo
            .send(&chat("juliet@localhost", &format!("r{i}")))
            .await?;
    }
    let before = bodies_until(&mut juliet_events, "r5").await?;
    assert_each_once(&before, "r", 5)?;
    proxy.cut(how);
    for i in 6..=15 {
        romeo
            .send(&chat("juliet@localhost", &format!("r{i}")))
            .await?;
    }
    // Romeo's messages reached the server (and, after a silent cut, went into the void).
    romeo.request(ping()).await?;
    if stream_management {
        juliet_writes(&juliet).await?;
    }
    if how == Cut::BlackHole {
        // Let the writes reach the void before the client learns of the cut.
        tokio::time::sleep(Duration::from_millis(200)).await;
        proxy.drop_clients();
    }
    let lost = expect(&mut juliet_events, "the loss", |e| {
        matches!(e, Event::Disconnected(_))
    })
    .await?;
    if !stream_management {
        juliet_writes(&juliet).await?;
    }
    romeo.send(&chat("juliet@localhost", "r-end")).await?;
    let back = |e: &Event| matches!(e, Event::Resumed { .. } | Event::CaughtUp { .. });
    let (mut at_juliet, mut steps) = collect(&mut juliet_events, "r-end", |others| {
        others.iter().any(back)
    })
    .await?;
    steps.insert(0, lost);
    steps.retain(|e| matches!(e, Event::Disconnected(_)) || back(e));
    assert_eq!(juliet.jid().map(|j| j.to_string()), Some(juliet_jid));
    // Whatever the server still had for Juliet (offline storage delivers on her presence,
    // which went before this round trip) comes before Romeo's last word.
    juliet.request(ping()).await?;
    romeo.send(&chat("juliet@localhost", "r-final")).await?;
    for (body, count) in bodies_until(&mut juliet_events, "r-final").await? {
        *at_juliet.entry(body).or_insert(0) += count;
    }
    juliet.send(&chat("romeo@localhost", "j-end")).await?;
    let at_romeo = bodies_until(&mut romeo_events, "j-end").await?;
    for (body, count) in before {
        *at_juliet.entry(body).or_insert(0) += count;
    }
    juliet.disconnect().await;
    romeo.disconnect().await;
    Ok((steps, at_juliet, at_romeo))
}

async fn juliet_writes(juliet: &Client) -> Result<()> {
    for i in 1..=5 {
        juliet
            .send(&chat("romeo@localhost", &format!("j{i}")))
            .await?;
    }
    Ok(())
}

fn ping() -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", "localhost")
        .with_child(Element::new("ping", ns::PING))
}

/// With stream management, a connection that dies without the server knowing is resumed:
/// what the server wrote into the void is resent, what Juliet wrote is resent, nothing
/// twice.
pub async fn resumes_after_a_silent_cut(target: &Target) -> Result<()> {
    let (steps, at_juliet, at_romeo) =
        conversation_with_a_cut(target, Cut::BlackHole, true).await?;
    assert!(
        matches!(steps[1], Event::Resumed { .. }),
        "expected a resumption: {steps:?}"
    );
    assert_each_once(&at_juliet, "r", 15)?;
    assert_each_once(&at_romeo, "j", 5)?;
    Ok(())
}

/// The same when the server sees the connection close (and keeps the session waiting).
pub async fn resumes_after_a_closed_connection(target: &Target) -> Result<()> {
    let (steps, at_juliet, at_romeo) = conversation_with_a_cut(target, Cut::Close, true).await?;
    assert!(
        matches!(steps[1], Event::Resumed { .. }),
        "expected a resumption: {steps:?}"
    );
    assert_each_once(&at_juliet, "r", 15)?;
    assert_each_once(&at_romeo, "j", 5)?;
    Ok(())
}

/// Without stream management, a silent cut loses what the server wrote into the void; the
/// new session fetches it from the archive, once.
pub async fn catches_up_from_the_archive_after_a_silent_cut(target: &Target) -> Result<()> {
    let (steps, at_juliet, at_romeo) =
        conversation_with_a_cut(target, Cut::BlackHole, false).await?;
    assert!(
        matches!(steps[1], Event::CaughtUp { messages } if messages > 0),
        "expected a catch-up from the archive: {steps:?}"
    );
    assert_each_once(&at_juliet, "r", 15)?;
    assert_each_once(&at_romeo, "j", 5)?;
    Ok(())
}

/// Without stream management, when the server sees the loss it keeps Romeo's messages for
/// Juliet offline, and archives them: she gets them from the archive, and the copies from
/// offline storage are not delivered again.
pub async fn catches_up_without_duplicates_after_a_closed_connection(
    target: &Target,
) -> Result<()> {
    let (steps, at_juliet, at_romeo) = conversation_with_a_cut(target, Cut::Close, false).await?;
    assert!(
        matches!(steps[1], Event::CaughtUp { .. }),
        "expected a catch-up: {steps:?}"
    );
    assert_each_once(&at_juliet, "r", 15)?;
    assert_each_once(&at_romeo, "j", 5)?;
    Ok(())
}

/// A connection that goes silent (nothing comes back, TCP sees nothing wrong) is found dead
/// by the pinger, dropped, and resumed.
pub async fn autoping_timeout_reconnects(target: &Target) -> Result<()> {
    let proxy = Proxy::start(target.starttls_port).await?;
    let (juliet, mut events) = juliet_through(target, &proxy, true).await?;
    let (_pinger, mut pings) = AutoPing::start(
        &juliet,
        Duration::from_millis(200),
        Duration::from_millis(500),
    );
    assert!(matches!(answer(&mut pings).await?, PingEvent::Pong { .. }));
    proxy.cut(Cut::BlackHole);
    assert_eq!(answer(&mut pings).await?, PingEvent::Timeout);
    expect(&mut events, "the loss", |e| {
        matches!(e, Event::Disconnected(DisconnectReason::ConnectionLost(_)))
    })
    .await?;
    expect(&mut events, "the resumption", |e| {
        matches!(e, Event::Resumed { .. })
    })
    .await?;
    // The pinger goes on, on the new connection.
    assert!(matches!(answer(&mut pings).await?, PingEvent::Pong { .. }));
    juliet.disconnect().await;
    Ok(())
}

/// The pinger's next answer or timeout.
async fn answer(pings: &mut mpsc::UnboundedReceiver<PingEvent>) -> Result<PingEvent> {
    loop {
        match tokio::time::timeout(WAIT, pings.recv()).await {
            Ok(Some(PingEvent::Sent)) => {}
            Ok(Some(event)) => return Ok(event),
            Ok(None) => bail!("ping events ended"),
            Err(_) => bail!("no ping answer or timeout in time"),
        }
    }
}

/// After a new session (no stream management), the roster is fetched again: a contact
/// added by another of Juliet's resources while she was away appears.
pub async fn roster_is_fetched_again_after_a_new_session(target: &Target) -> Result<()> {
    let proxy = Proxy::start(target.starttls_port).await?;
    let (juliet, mut events) = juliet_builder(target, &proxy, false).build();
    let (roster, mut roster_events) =
        Roster::attach(&juliet, Arc::new(MemoryRosterStorage::default()));
    juliet.connect().await?;
    roster.fetch().await?;
    expect(&mut roster_events, "the roster", |e| {
        matches!(e, RosterEvent::Populated { .. })
    })
    .await?;
    // A first contact, so the roster has a version of its own (Prosody 0.12 gives a
    // roster that was never written the version its first write gets).
    roster.set("tybalt@localhost", None, &[]).await?;
    expect(
        &mut roster_events,
        "the first contact",
        |e| matches!(e, RosterEvent::Changed(item) if item.jid == "tybalt@localhost"),
    )
    .await?;
    // Juliet's phone cannot come back until the laptop has changed the roster.
    proxy.refuse(true);
    proxy.cut(Cut::Close);
    expect(&mut events, "the loss", |e| {
        matches!(e, Event::Disconnected(_))
    })
    .await?;
    let (laptop, _laptop_events) = target.builder("juliet").resource("laptop").build();
    laptop.connect().await?;
    let (laptop_roster, _) = Roster::attach(&laptop, Arc::new(MemoryRosterStorage::default()));
    laptop_roster
        .set("mercutio@localhost", Some("Mercutio"), &[])
        .await?;
    expect(&mut events, "a failed attempt", |e| {
        matches!(e, Event::ReconnectFailed { gave_up: false, .. })
    })
    .await?;
    proxy.refuse(false);
    expect(&mut events, "the way back", |e| {
        matches!(e, Event::CaughtUp { .. })
    })
    .await?;
    expect(&mut roster_events, "the roster again", |e| {
        matches!(e, RosterEvent::Populated { .. })
    })
    .await?;
    let item = roster
        .item("mercutio@localhost")
        .context("the new contact")?;
    assert_eq!(item.name.as_deref(), Some("Mercutio"));
    laptop_roster.remove("mercutio@localhost").await?;
    laptop.disconnect().await;
    juliet.disconnect().await;
    Ok(())
}

/// Room messages seen by `events` until `last`, counted.
async fn room_bodies_until(events: &mut RoomEvents, last: &str) -> Result<HashMap<String, usize>> {
    let mut seen = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .with_context(|| format!("no {last:?} in the room in time; had {seen:?}"))?
            .context("room events ended")?;
        if let RoomEvent::Message(RoomMessage {
            body: Some(body), ..
        }) = event
        {
            *seen.entry(body.clone()).or_insert(0) += 1;
            if body == last {
                return Ok(seen);
            }
        }
    }
}

/// After a new session (no stream management), the rooms Juliet was in are joined again,
/// and what was said meanwhile comes as history, once; nothing said before comes twice.
pub async fn rooms_are_joined_again_after_a_new_session(target: &Target) -> Result<()> {
    let proxy = Proxy::start(target.starttls_port).await?;
    let (juliet, mut events) = juliet_builder(target, &proxy, false).build();
    let (muc, _invitations) = Muc::attach(&juliet);
    juliet.connect().await?;
    let jid = super::room::room_jid("verona-after-a-cut");
    let (room, mut room_events) = muc.room(jid.clone(), "juliet");
    room.create_instant(JoinOptions::default()).await?;
    let (romeo, _romeo_events) = target.online("romeo").await?;
    let (romeo_muc, _) = Muc::attach(&romeo);
    let (romeo_room, _romeo_room_events) = romeo_muc.room(jid, "romeo");
    romeo_room.join(JoinOptions::default()).await?;
    romeo_room.send_message("m1").await?;
    let before = room_bodies_until(&mut room_events, "m1").await?;
    proxy.cut(Cut::Close);
    expect(&mut events, "the loss", |e| {
        matches!(e, Event::Disconnected(_))
    })
    .await?;
    romeo_room.send_message("m2").await?;
    expect(&mut events, "the way back", |e| {
        matches!(e, Event::CaughtUp { .. })
    })
    .await?;
    // The history (m2) may come before the rejoin completes: the rejoin is reported once
    // the room's self-presence has been seen, by a task of its own.
    let mut during = HashMap::new();
    let rejoined = tokio::time::timeout(WAIT, async {
        loop {
            match room_events.next().await {
                Some(RoomEvent::Rejoined) => return Ok(()),
                Some(RoomEvent::RejoinFailed(e)) => bail!("rejoin failed: {e}"),
                Some(RoomEvent::Message(RoomMessage {
                    body: Some(body), ..
                })) => *during.entry(body).or_insert(0) += 1,
                Some(_) => {}
                None => bail!("room events ended"),
            }
        }
    })
    .await
    .context("no rejoin in time")?;
    rejoined?;
    assert!(room.is_joined());
    romeo_room.send_message("m3").await?;
    let mut after = room_bodies_until(&mut room_events, "m3").await?;
    for (body, count) in before.into_iter().chain(during) {
        *after.entry(body).or_insert(0) += count;
    }
    assert_each_once(&after, "m", 3)?;
    room.destroy(None, None).await?;
    romeo.disconnect().await;
    juliet.disconnect().await;
    Ok(())
}
