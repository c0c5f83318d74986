//! The scenarios every server must pass, run against Corvid (`corvid.rs`) and
//! Prosody (`prosody.rs`): the SDK is checked against more than our own reading.

#![allow(dead_code)] // each test binary uses what it needs

#[path = "../../../../tests/shared/dns_server.rs"]
pub mod dns;
pub mod reconnect;
pub use reconnect::*;
pub mod pubsub;
pub mod room;
pub mod room_moderation;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use corvid_client::{
    AutoPing, CarbonEvent, Carbons, Client, ClientBuilder, ConnectError, DisconnectReason, Event,
    Events, Mam, MamQuery, MemoryRosterStorage, MemoryVCardStorage, PingEvent, ReceiptEvent,
    Receipts, RequestError, Roster, RosterEvent, RosterEvents, RosterStorage, Security,
    SqliteStorage, Subscription, VCards, Verification,
};
use corvid_proto::{BareJid, ns};
use corvid_xml::Element;
use rustls::pki_types::CertificateDer;

pub const PASSWORD: &str = "correct horse battery staple";
pub const WAIT: Duration = Duration::from_secs(10);

/// A server under test on loopback, with accounts `juliet` and `romeo` (password
/// [`PASSWORD`]) on `localhost`, and its certificate.
pub struct Target {
    pub server: Server,
    pub starttls_port: u16,
    pub direct_tls_port: u16,
    pub cert: CertificateDer<'static>,
}

/// Which server a [`Target`] is, for the few scenarios that expect what one of them does
/// differently (each place says what and why).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Corvid,
    Prosody,
    Ejabberd,
}

impl Target {
    pub fn builder(&self, user: &str) -> ClientBuilder {
        let jid = BareJid::new(&format!("{user}@localhost")).expect("jid");
        Client::builder(jid, PASSWORD)
            .server("127.0.0.1", self.starttls_port)
            .verification(Verification::Pinned(vec![self.cert.clone()]))
    }

    /// Logged in as `user` with resource `test`, available.
    pub async fn online(&self, user: &str) -> Result<(Client, Events)> {
        let (client, mut events) = self.builder(user).resource("test").build();
        client.connect().await?;
        client.send(&Element::new("presence", ns::CLIENT)).await?;
        expect(&mut events, "authenticated", |e| {
            matches!(e, Event::Authenticated { .. })
        })
        .await?;
        Ok((client, events))
    }
}

/// One test per scenario (a function of `common`, or of one of its modules:
/// `pubsub::…`), against the server `$start()` makes; `$stop` ends each.
macro_rules! scenarios {
    ($start:ident, |$server:ident| $stop:expr; $($test:ident => $($scenario:ident)::+),* $(,)?) => {$(
        #[tokio::test]
        async fn $test() -> anyhow::Result<()> {
            let $server = $start().await?;
            common::$($scenario)::+(&$server.target).await?;
            $stop;
            Ok(())
        }
    )*};
}

/// Every scenario all three servers run, one test each, against the server `$start()`
/// makes; `$stop` ends each. A server file adds its own with [`scenarios!`].
macro_rules! every_scenario {
    ($start:ident, |$server:ident| $stop:expr) => {
        scenarios!($start, |$server| $stop;
            messages_go_both_ways => exchanges_messages,
            requests_get_their_result_or_their_error => answers_requests,
            roster_round_trip => roster_round_trip,
            roster_survives_in_sqlite => roster_survives_in_sqlite,
            receipts_come_back => receipts_come_back,
            autoping_gets_pongs => autoping_gets_pongs,
            vcards_are_fetched_cache_first => vcards_are_fetched_cache_first,
            carbons_copy_the_other_resources_messages => carbons_copy_the_other_resources_messages,
            mam_pages_the_archive => mam_pages_the_archive,
            resumes_after_a_silent_cut => resumes_after_a_silent_cut,
            resumes_after_a_closed_connection => resumes_after_a_closed_connection,
            catches_up_from_the_archive_after_a_silent_cut => catches_up_from_the_archive_after_a_silent_cut,
            catches_up_without_duplicates_after_a_closed_connection => catches_up_without_duplicates_after_a_closed_connection,
            autoping_timeout_reconnects => autoping_timeout_reconnects,
            roster_is_fetched_again_after_a_new_session => roster_is_fetched_again_after_a_new_session,
            rooms_are_joined_again_after_a_new_session => rooms_are_joined_again_after_a_new_session,
            pubsub_nodes_are_created_configured_and_deleted => pubsub::nodes_are_created_configured_and_deleted,
            pubsub_subscribers_see_publications_and_retractions => pubsub::subscribers_see_publications_and_retractions,
            pubsub_items_are_fetched_by_id_max_and_page => pubsub::items_are_fetched_by_id_max_and_page,
            pep_notifications_reach_contacts_who_want_them => pubsub::pep_notifications_reach_contacts_who_want_them,
            avatars_come_through_pep_and_are_cached => pubsub::avatars_come_through_pep_and_are_cached,
            avatars_come_through_vcard_and_presence => pubsub::avatars_come_through_vcard_and_presence,
            bookmarks_are_added_listed_and_removed => pubsub::bookmarks_are_added_listed_and_removed,
            room_join_and_leave => room::room_join_and_leave,
            room_reserved_creation => room::room_reserved_creation,
            room_password => room::room_password,
            room_lists => room_moderation::room_lists,
            room_kick_and_ban => room_moderation::room_kick_and_ban,
            room_voice_in_a_moderated_room => room_moderation::room_voice_in_a_moderated_room,
            room_invitations => room::room_invitations,
            room_subject => room::room_subject,
            room_nick_change => room::room_nick_change,
            room_destroy => room::room_destroy,
            room_messages => room::room_messages,
            room_history_on_join => room::room_history_on_join,
            room_self_ping_rejoins => room::room_self_ping_rejoins,
        );
    };
}

/// A stream of events [`expect`] can wait on.
pub trait NextEvent {
    type Item;
    fn next_event(&mut self) -> impl Future<Output = Option<Self::Item>>;
}

impl NextEvent for Events {
    type Item = Event;
    fn next_event(&mut self) -> impl Future<Output = Option<Event>> {
        self.next()
    }
}

impl NextEvent for RosterEvents {
    type Item = RosterEvent;
    fn next_event(&mut self) -> impl Future<Output = Option<RosterEvent>> {
        self.next()
    }
}

/// Waits for the first event `wanted` accepts, skipping others.
pub async fn expect<E: NextEvent>(
    events: &mut E,
    what: &str,
    wanted: impl Fn(&E::Item) -> bool,
) -> Result<E::Item> {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next_event().await {
            if wanted(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => Ok(event),
        Ok(None) => bail!("events ended before {what}"),
        Err(_) => bail!("no {what} within {WAIT:?}"),
    }
}

fn body(event: &Event) -> Option<String> {
    match event {
        Event::Message(m) => m.get_child("body", ns::CLIENT).map(Element::text),
        _ => None,
    }
}

/// STARTTLS with a pinned certificate; the events tell each step; the bound JID is ours.
pub async fn logs_in_with_starttls(target: &Target) -> Result<Event> {
    let (client, mut events) = target.builder("juliet").resource("balcony").build();
    client.connect().await?;
    let jid = client.jid().context("bound")?;
    assert_eq!(jid.as_str(), "juliet@localhost/balcony");
    let mut steps = Vec::new();
    while let Some(event) = events.try_next() {
        steps.push(event);
    }
    assert!(
        matches!(steps[0], Event::Connecting { port, .. } if port == target.starttls_port),
        "{steps:?}"
    );
    assert!(matches!(steps[1], Event::Connected), "{steps:?}");
    let authenticated = steps[2].clone();
    match &authenticated {
        Event::Authenticated { jid: bound, .. } => assert_eq!(bound, &jid),
        other => bail!("expected authentication, got {other:?}"),
    }
    client.disconnect().await;
    Ok(authenticated)
}

/// Direct TLS (XEP-0368), trusting the certificate as a root.
pub async fn logs_in_with_direct_tls(target: &Target) -> Result<Event> {
    let (client, mut events) = target
        .builder("juliet")
        .server("127.0.0.1", target.direct_tls_port)
        .security(Security::DirectTls)
        .verification(Verification::Roots(vec![target.cert.clone()]))
        .build();
    client.connect().await?;
    let event = expect(&mut events, "authenticated", |e| {
        matches!(e, Event::Authenticated { .. })
    })
    .await?;
    client.disconnect().await;
    Ok(event)
}

/// Verification is on by default: the system's roots do not vouch for a self-signed
/// certificate, and a pin of `other` does not match it.
pub async fn refuses_an_untrusted_or_unpinned_certificate(
    target: &Target,
    other: CertificateDer<'static>,
) -> Result<()> {
    let jid = BareJid::new("juliet@localhost")?;
    let (system, _events) = Client::builder(jid.clone(), PASSWORD)
        .server("127.0.0.1", target.starttls_port)
        .build();
    let refused = system.connect().await;
    assert!(matches!(refused, Err(ConnectError::Tls(_))), "{refused:?}");
    let (pinned, _events) = Client::builder(jid, PASSWORD)
        .server("127.0.0.1", target.starttls_port)
        .verification(Verification::Pinned(vec![other]))
        .build();
    let refused = pinned.connect().await;
    assert!(matches!(refused, Err(ConnectError::Tls(_))), "{refused:?}");
    assert!(pinned.jid().is_none());
    Ok(())
}

pub async fn refuses_a_wrong_password(target: &Target) -> Result<()> {
    let jid = BareJid::new("juliet@localhost")?;
    let (client, _events) = Client::builder(jid, "wrong")
        .server("127.0.0.1", target.starttls_port)
        .verification(Verification::Pinned(vec![target.cert.clone()]))
        .build();
    match client.connect().await {
        Err(ConnectError::Auth(condition)) => assert_eq!(condition, "not-authorized"),
        other => bail!("expected not-authorized, got {other:?}"),
    }
    Ok(())
}

pub async fn exchanges_messages(target: &Target) -> Result<()> {
    let (juliet, mut juliet_events) = target.online("juliet").await?;
    let (romeo, mut romeo_events) = target.online("romeo").await?;
    let message = |to: &str, text: &str| {
        Element::new("message", ns::CLIENT)
            .with_attr("to", to)
            .with_attr("type", "chat")
            .with_child(Element::new("body", ns::CLIENT).with_text(text))
    };
    juliet
        .send(&message("romeo@localhost", "wherefore art thou"))
        .await?;
    let got = expect(&mut romeo_events, "juliet's message", |e| body(e).is_some()).await?;
    assert_eq!(body(&got).as_deref(), Some("wherefore art thou"));
    match &got {
        Event::Message(m) => assert_eq!(m.attr("from"), Some("juliet@localhost/test")),
        _ => unreachable!(),
    }
    romeo
        .send(&message("juliet@localhost/test", "here"))
        .await?;
    let got = expect(&mut juliet_events, "romeo's reply", |e| body(e).is_some()).await?;
    assert_eq!(body(&got).as_deref(), Some("here"));
    juliet.disconnect().await;
    romeo.disconnect().await;
    Ok(())
}

pub async fn answers_requests(target: &Target) -> Result<()> {
    let (client, _events) = target.online("juliet").await?;
    let disco = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", "localhost")
        .with_child(Element::new("query", ns::DISCO_INFO));
    let info = client.request(disco).await?;
    let features: Vec<String> = info
        .get_child("query", ns::DISCO_INFO)
        .context("query")?
        .children()
        .filter(|c| c.is("feature", ns::DISCO_INFO))
        .filter_map(|c| c.attr("var").map(str::to_owned))
        .collect();
    assert!(features.iter().any(|f| f == ns::PING), "{features:?}");

    let nobody = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", "nobody@localhost")
        .with_child(Element::new("query", ns::DISCO_INFO));
    match client.request(nobody).await {
        Err(RequestError::Error { condition, stanza }) => {
            assert_eq!(stanza.attr("type"), Some("error"));
            // ejabberd answers a disco#info to an account's bare JID only for those
            // subscribed to its presence, and tells no one else whether it exists.
            let expected: &[&str] = match target.server {
                Server::Ejabberd => &["subscription-required"],
                Server::Corvid | Server::Prosody => &["service-unavailable", "item-not-found"],
            };
            assert!(expected.contains(&condition.as_str()), "{condition}");
        }
        other => bail!("expected an error, got {other:?}"),
    }
    let result = Element::new("iq", ns::CLIENT).with_attr("type", "result");
    assert!(matches!(
        client.request(result).await,
        Err(RequestError::NotARequest)
    ));
    client.disconnect().await;
    Ok(())
}

/// A stream replaced by a new login of the same resource ends with `conflict`; a disconnect
/// ends the stream, and requests fail at once afterwards.
pub async fn ends_streams(target: &Target) -> Result<Client> {
    let (first, mut first_events) = target.online("juliet").await?;
    let (second, mut second_events) = target.online("juliet").await?;
    let ended = expect(&mut first_events, "the first stream's end", |e| {
        matches!(e, Event::Disconnected(_))
    })
    .await?;
    assert!(
        matches!(
            &ended,
            Event::Disconnected(DisconnectReason::StreamError(c)) if c == "conflict"
        ),
        "{ended:?}"
    );
    assert!(first.jid().is_none());

    second.disconnect().await;
    let ended = expect(&mut second_events, "the second stream's end", |e| {
        matches!(e, Event::Disconnected(_))
    })
    .await?;
    assert!(matches!(
        ended,
        Event::Disconnected(DisconnectReason::Requested)
    ));
    let ping = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_child(Element::new("ping", ns::PING));
    assert!(matches!(
        second.request(ping).await,
        Err(RequestError::NotConnected)
    ));
    Ok(second)
}

/// Logged in as `user` (resource `test`) with its roster attached and fetched, available.
pub async fn with_roster(
    target: &Target,
    user: &str,
    storage: Arc<dyn RosterStorage>,
) -> Result<(Client, Arc<Roster>, RosterEvents)> {
    let (client, _events) = target.builder(user).resource("test").build();
    let (roster, mut roster_events) = Roster::attach(&client, storage);
    client.connect().await?;
    roster.fetch().await?;
    expect(&mut roster_events, "populated", |e| {
        matches!(e, RosterEvent::Populated { .. })
    })
    .await?;
    client.send(&Element::new("presence", ns::CLIENT)).await?;
    // The application's events are not read here: keep them flowing.
    tokio::spawn(async move {
        let mut events = _events;
        while events.next().await.is_some() {}
    });
    Ok((client, roster, roster_events))
}

/// Add a contact, a subscription asked and accepted, the contact's presence coming and
/// going in the presence map, then removal.
pub async fn roster_round_trip(target: &Target) -> Result<()> {
    let memory = || Arc::new(MemoryRosterStorage::default()) as Arc<dyn RosterStorage>;
    let (juliet, roster, mut changes) = with_roster(target, "juliet", memory()).await?;
    let (romeo, romeo_roster, mut romeo_changes) = with_roster(target, "romeo", memory()).await?;

    roster
        .set("romeo@localhost", Some("Romeo"), &["Friends"])
        .await?;
    let added = expect(
        &mut changes,
        "the new contact",
        |e| matches!(e, RosterEvent::Changed(item) if item.jid == "romeo@localhost"),
    )
    .await?;
    let RosterEvent::Changed(item) = added else {
        unreachable!()
    };
    assert_eq!(item.name.as_deref(), Some("Romeo"));
    assert_eq!(item.groups, ["Friends"]);
    assert_eq!(item.subscription, Subscription::None);

    roster.subscribe("romeo@localhost").await?;
    expect(&mut romeo_changes, "juliet's request", |e| {
        *e == RosterEvent::SubscriptionRequest("juliet@localhost".into())
    })
    .await?;
    romeo_roster.accept("juliet@localhost", false).await?;
    expect(&mut changes, "the subscription", |e| {
        matches!(e, RosterEvent::Changed(item)
            if item.jid == "romeo@localhost" && item.subscription == Subscription::To)
    })
    .await?;
    // RFC 6121 §3.1.6: the contact's available resources send us their presence.
    expect(&mut changes, "romeo's presence", |e| {
        matches!(e, RosterEvent::Presence { jid, presence: Some(_), .. } if jid == "romeo@localhost")
    })
    .await?;
    assert!(roster.presence("romeo@localhost").contains_key("test"));

    romeo.disconnect().await;
    expect(&mut changes, "romeo going offline", |e| {
        matches!(e, RosterEvent::Presence { jid, presence: None, .. } if jid == "romeo@localhost")
    })
    .await?;
    assert!(roster.presence("romeo@localhost").is_empty());

    roster.remove("romeo@localhost").await?;
    expect(&mut changes, "the removal", |e| {
        *e == RosterEvent::Removed("romeo@localhost".into())
    })
    .await?;
    assert!(roster.item("romeo@localhost").is_none());
    juliet.disconnect().await;
    Ok(())
}

/// A roster kept in SQLite is there for the next session, with its version.
pub async fn roster_survives_in_sqlite(target: &Target) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("roster.sqlite");
    let storage = Arc::new(SqliteStorage::open(&path).await?);
    let (juliet, roster, mut changes) = with_roster(target, "juliet", storage).await?;
    roster.set("nurse@localhost", Some("Nurse"), &[]).await?;
    expect(
        &mut changes,
        "the new contact",
        |e| matches!(e, RosterEvent::Changed(item) if item.jid == "nurse@localhost"),
    )
    .await?;
    // Both servers version rosters (RFC 6121 §2.6): the push carried the new version.
    let version = roster.version();
    assert!(version.is_some());
    juliet.disconnect().await;
    drop(roster);

    let reopened = Arc::new(SqliteStorage::open(&path).await?);
    let (stored_version, stored) = reopened.load("juliet@localhost").await?;
    assert_eq!(stored_version, version);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name.as_deref(), Some("Nurse"));
    let (again, roster, _changes) = with_roster(target, "juliet", reopened).await?;
    let nurse = roster.item("nurse@localhost").context("kept")?;
    assert_eq!(nurse.name.as_deref(), Some("Nurse"));
    roster.remove("nurse@localhost").await?;
    again.disconnect().await;
    Ok(())
}

/// A message asking for a receipt gets one from a client that answers them, matched to the
/// id the sender got; the recipient's application still sees the message.
pub async fn receipts_come_back(target: &Target) -> Result<()> {
    let (juliet, _juliet_events) = target.builder("juliet").resource("test").build();
    let (receipts, mut receipt_events) = Receipts::attach(&juliet, true);
    juliet.connect().await?;
    let (romeo, mut romeo_events) = target.builder("romeo").resource("test").build();
    let _romeo_receipts = Receipts::attach(&romeo, true);
    romeo.connect().await?;
    romeo.send(&Element::new("presence", ns::CLIENT)).await?;
    juliet.send(&Element::new("presence", ns::CLIENT)).await?;
    let message = Element::new("message", ns::CLIENT)
        .with_attr("to", "romeo@localhost/test")
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::CLIENT).with_text("did you get this?"));
    let id = receipts.send(message).await?;
    let got = expect(&mut romeo_events, "the message", |e| body(e).is_some()).await?;
    match &got {
        Event::Message(m) => assert!(m.has_child("request", ns::RECEIPTS), "{m}"),
        _ => unreachable!(),
    }
    let receipt = tokio::time::timeout(WAIT, receipt_events.next())
        .await
        .context("no receipt in time")?
        .context("receipt events ended")?;
    assert_eq!(
        receipt,
        ReceiptEvent::Received {
            from: "romeo@localhost/test".into(),
            id
        }
    );
    juliet.disconnect().await;
    romeo.disconnect().await;
    Ok(())
}

/// The pinger's pings get pongs.
pub async fn autoping_gets_pongs(target: &Target) -> Result<()> {
    let (client, _events) = target.online("juliet").await?;
    let (pinger, mut pings) =
        AutoPing::start(&client, Duration::from_millis(100), Duration::from_secs(5));
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = tokio::time::timeout(WAIT, pings.recv())
            .await
            .context("no ping event in time")?
            .context("ping events ended")?;
        seen.push(event);
    }
    assert_eq!(seen[0], PingEvent::Sent);
    assert!(matches!(seen[1], PingEvent::Pong { .. }), "{seen:?}");
    assert_eq!(seen[2], PingEvent::Sent);
    assert!(matches!(seen[3], PingEvent::Pong { .. }), "{seen:?}");
    drop(pinger);
    client.disconnect().await;
    Ok(())
}

fn full_name(vcard: &Element) -> Option<String> {
    vcard.get_child("FN", ns::VCARD).map(Element::text)
}

fn vcard_named(name: &str) -> Element {
    Element::new("vCard", ns::VCARD).with_child(Element::new("FN", ns::VCARD).with_text(name))
}

/// vCards: published, fetched, answered from the storage until a forced fetch, kept in SQLite.
pub async fn vcards_are_fetched_cache_first(target: &Target) -> Result<()> {
    let (juliet, _juliet_events) = target.online("juliet").await?;
    let juliet_vcards = VCards::attach(&juliet, Arc::new(MemoryVCardStorage::default()));
    juliet_vcards
        .update_own(vcard_named("Juliet Capulet"))
        .await?;

    let dir = tempfile::tempdir()?;
    let storage = Arc::new(SqliteStorage::open(&dir.path().join("client.sqlite")).await?);
    let (romeo, _romeo_events) = target.online("romeo").await?;
    let vcards = VCards::attach(&romeo, storage);
    assert!(vcards.cached("juliet@localhost").await?.is_none());
    let fetched = vcards
        .fetch("juliet@localhost", false)
        .await?
        .context("a vCard")?;
    assert_eq!(full_name(&fetched).as_deref(), Some("Juliet Capulet"));

    juliet_vcards
        .update_own(vcard_named("Juliet Montague"))
        .await?;
    let stored = vcards
        .fetch("juliet@localhost/balcony", false)
        .await?
        .context("stored")?;
    assert_eq!(full_name(&stored).as_deref(), Some("Juliet Capulet"));
    let fresh = vcards
        .fetch("juliet@localhost", true)
        .await?
        .context("fresh")?;
    assert_eq!(full_name(&fresh).as_deref(), Some("Juliet Montague"));
    let cached = vcards.cached("juliet@localhost").await?.context("cached")?;
    assert_eq!(full_name(&cached).as_deref(), Some("Juliet Montague"));
    let own = juliet_vcards
        .fetch("juliet@localhost", true)
        .await?
        .context("own")?;
    assert_eq!(full_name(&own).as_deref(), Some("Juliet Montague"));

    juliet.disconnect().await;
    romeo.disconnect().await;
    Ok(())
}

fn chat(to: &str, text: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("to", to)
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::CLIENT).with_text(text))
}

/// Carbons: a resource that enabled them sees what its sibling received and sent.
pub async fn carbons_copy_the_other_resources_messages(target: &Target) -> Result<()> {
    let (phone, _phone_events) = target.builder("juliet").resource("phone").build();
    let (carbons, mut copies) = Carbons::attach(&phone);
    phone.connect().await?;
    phone.send(&Element::new("presence", ns::CLIENT)).await?;
    carbons.enable().await?;
    let (laptop, mut laptop_events) = target.builder("juliet").resource("laptop").build();
    laptop.connect().await?;
    laptop.send(&Element::new("presence", ns::CLIENT)).await?;
    let (romeo, _romeo_events) = target.online("romeo").await?;

    romeo
        .send(&chat("juliet@localhost/laptop", "to the laptop"))
        .await?;
    expect(&mut laptop_events, "romeo's message", |e| body(e).is_some()).await?;
    let copy = tokio::time::timeout(WAIT, copies.recv())
        .await?
        .context("copies ended")?;
    match &copy {
        CarbonEvent::Received(m) => {
            assert_eq!(m.attr("to"), Some("juliet@localhost/laptop"));
            assert_eq!(
                m.get_child("body", ns::CLIENT)
                    .map(Element::text)
                    .as_deref(),
                Some("to the laptop")
            );
        }
        other => bail!("expected a received copy, got {other:?}"),
    }
    laptop
        .send(&chat("romeo@localhost", "from the laptop"))
        .await?;
    let copy = tokio::time::timeout(WAIT, copies.recv())
        .await?
        .context("copies ended")?;
    match &copy {
        CarbonEvent::Sent(m) => {
            assert_eq!(m.attr("to"), Some("romeo@localhost"));
            assert_eq!(
                m.get_child("body", ns::CLIENT)
                    .map(Element::text)
                    .as_deref(),
                Some("from the laptop")
            );
        }
        other => bail!("expected a sent copy, got {other:?}"),
    }
    for client in [phone, laptop, romeo] {
        client.disconnect().await;
    }
    Ok(())
}

/// The archive, paged forward two at a time, gives every message once, in order.
pub async fn mam_pages_the_archive(target: &Target) -> Result<()> {
    let (juliet, _juliet_events) = target.online("juliet").await?;
    let (romeo, mut romeo_events) = target.online("romeo").await?;
    let bodies: Vec<String> = (1..=5).map(|n| format!("archived {n}")).collect();
    for text in &bodies {
        juliet.send(&chat("romeo@localhost", text)).await?;
        expect(&mut romeo_events, "the message", |e| {
            body(e).as_deref() == Some(text)
        })
        .await?;
    }
    let mam = Mam::attach(&romeo);
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = mam
            .query(&MamQuery {
                with: Some("juliet@localhost".into()),
                after: after.clone(),
                max: Some(2),
                ..Default::default()
            })
            .await?;
        assert!(page.messages.len() <= 2);
        for archived in &page.messages {
            assert!(archived.stamp.is_some());
            seen.push(
                archived
                    .message
                    .get_child("body", ns::CLIENT)
                    .map(Element::text)
                    .unwrap_or_default(),
            );
        }
        if page.complete {
            break;
        }
        after = page.last.clone();
    }
    let ours: Vec<&String> = seen.iter().filter(|b| b.starts_with("archived ")).collect();
    assert_eq!(ours, bodies.iter().collect::<Vec<_>>());
    juliet.disconnect().await;
    romeo.disconnect().await;
    Ok(())
}
