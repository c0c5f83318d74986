//! Scenarios between two federated servers, whatever each is (two Corvids, or Corvid and a
//! real Prosody): presence subscriptions, a user in a room of the other server's MUC
//! service, and avatars published through PEP reaching a contact on the other server.
//!
//! A [`Home`] is where a user logs in: the domain, its c2s port and its MUC service. The
//! users are made by the caller; the scenarios log them in with the SDK.

use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use corvid_client::roster::{MemoryRosterStorage, Subscription};
use corvid_client::{
    AvatarEvent, AvatarEvents, AvatarSource, AvatarSources, Avatars, Capabilities, Client, Events,
    Identity as CapsIdentity, JoinOptions, MemoryAvatarStorage, Muc, Room, RoomEvent, RoomEvents,
    Roster, RosterEvent, RosterEvents,
};
use corvid_proto::{BareJid, ns};
use corvid_xml::Element;

use super::federation::{PASSWORD, WAIT};

/// Where the users of one domain log in.
#[derive(Clone, Debug)]
pub struct Home {
    pub domain: String,
    pub c2s_port: u16,
    /// Its MUC service's domain (`conference.<domain>` on both servers tested).
    pub muc: String,
}

impl Home {
    pub fn new(domain: &str, c2s_port: u16) -> Home {
        Home {
            domain: domain.to_owned(),
            c2s_port,
            muc: format!("conference.{domain}"),
        }
    }

    pub fn jid(&self, user: &str) -> BareJid {
        BareJid::new(&format!("{user}@{}", self.domain)).expect("a user's JID")
    }

    fn client(&self, user: &str) -> (Client, Events) {
        Client::builder(self.jid(user), PASSWORD)
            .server("127.0.0.1", self.c2s_port)
            .verification(corvid_client::Verification::DangerAcceptAny)
            .resource("r")
            .build()
    }
}

/// The first item of `events` that `wanted` picks within [`WAIT`].
async fn next<T: std::fmt::Debug>(
    events: &mut (impl NextItem<T> + ?Sized),
    what: &str,
    wanted: impl Fn(&T) -> bool,
) -> Result<T> {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(item) = events.next_item().await {
            if wanted(&item) {
                return Some(item);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(item)) => Ok(item),
        Ok(None) => bail!("events ended before {what}"),
        Err(_) => bail!("no {what} within {WAIT:?}"),
    }
}

/// The event streams the scenarios read.
trait NextItem<T> {
    fn next_item(&mut self) -> impl Future<Output = Option<T>>;
}

impl NextItem<RoomEvent> for RoomEvents {
    fn next_item(&mut self) -> impl Future<Output = Option<RoomEvent>> {
        self.next()
    }
}

impl NextItem<RosterEvent> for RosterEvents {
    fn next_item(&mut self) -> impl Future<Output = Option<RosterEvent>> {
        self.next()
    }
}

impl NextItem<AvatarEvent> for AvatarEvents {
    fn next_item(&mut self) -> impl Future<Output = Option<AvatarEvent>> {
        self.next()
    }
}

/// The application events nobody reads here, kept flowing.
fn drain(mut events: Events) {
    tokio::spawn(async move { while events.next().await.is_some() {} });
}

/// Someone online in a room of `home`'s or another server's MUC service (not yet joined).
struct Member {
    client: Client,
    room: Arc<Room>,
    events: RoomEvents,
}

async fn member(home: &Home, user: &str, room: &BareJid, nick: &str) -> Result<Member> {
    let (client, events) = home.client(user);
    let (muc, _invitations) = Muc::attach(&client);
    client.connect().await.context("connect")?;
    drain(events);
    client.send(&Element::new("presence", ns::CLIENT)).await?;
    let (room, events) = muc.room(room.clone(), nick);
    Ok(Member {
        client,
        room,
        events,
    })
}

async fn said(events: &mut RoomEvents, nick: &str, body: &str) -> Result<()> {
    next(events, &format!("{nick} saying {body:?}"), |e| {
        matches!(e, RoomEvent::Message(m)
            if m.nick.as_deref() == Some(nick) && m.body.as_deref() == Some(body))
    })
    .await?;
    Ok(())
}

/// `owner` (of `host`) makes a room on `host`'s MUC service; `guest` (of `away`) joins it
/// across the federation: each sees the other come in, their messages reach both, and the
/// owner sees the guest's real JID (a moderator does). The guest leaves; the owner sees it.
pub async fn a_remote_user_joins_a_room(
    host: &Home,
    owner: &str,
    away: &Home,
    guest: &str,
) -> Result<()> {
    let room_jid = BareJid::new(&format!("federated@{}", host.muc))?;
    let mut owner_m = member(host, owner, &room_jid, "owner").await?;
    owner_m
        .room
        .create_instant(JoinOptions::default())
        .await
        .context("the owner creates the room")?;
    let mut guest_m = member(away, guest, &room_jid, "guest").await?;
    guest_m
        .room
        .join(JoinOptions::default())
        .await
        .context("the guest joins across the federation")?;
    ensure!(
        guest_m.room.occupant("owner").is_some(),
        "the guest sees the owner in: {:?}",
        guest_m.room.occupants()
    );
    let joined = next(
        &mut owner_m.events,
        "the guest coming in",
        |e| matches!(e, RoomEvent::OccupantJoined(o) if o.nick == "guest"),
    )
    .await?;
    let RoomEvent::OccupantJoined(occupant) = joined else {
        unreachable!()
    };
    let real = occupant.jid.map(|j| j.to_bare().to_string());
    ensure!(
        real.as_deref() == Some(away.jid(guest).to_string().as_str()),
        "the owner, a moderator, sees the guest's real JID: {real:?}"
    );

    guest_m.room.send_message("hello from afar").await?;
    said(&mut owner_m.events, "guest", "hello from afar").await?;
    said(&mut guest_m.events, "guest", "hello from afar").await?;
    owner_m.room.send_message("welcome").await?;
    said(&mut guest_m.events, "owner", "welcome").await?;
    owner_m
        .room
        .send_private("guest", "a word in private")
        .await?;
    next(&mut guest_m.events, "the private message", |e| {
        matches!(e, RoomEvent::PrivateMessage { nick, body, .. }
            if nick == "owner" && body.as_deref() == Some("a word in private"))
    })
    .await?;

    guest_m.room.leave(Some("bye")).await?;
    next(
        &mut owner_m.events,
        "the guest leaving",
        |e| matches!(e, RoomEvent::OccupantLeft { occupant, .. } if occupant.nick == "guest"),
    )
    .await?;
    guest_m.client.disconnect().await;
    owner_m.client.disconnect().await;
    Ok(())
}

/// A user with a roster, caps, and avatars (PEP and vCard).
pub struct Contact {
    pub client: Client,
    roster: Arc<Roster>,
    roster_events: RosterEvents,
    caps: Arc<Capabilities>,
    avatars: Arc<Avatars>,
    avatar_events: AvatarEvents,
}

async fn contact(home: &Home, user: &str, sources: AvatarSources) -> Result<Contact> {
    let (client, events) = home.client(user);
    let (roster, mut roster_events) =
        Roster::attach(&client, Arc::new(MemoryRosterStorage::default()));
    let caps = Capabilities::attach(&client, CapsIdentity::client("Corvid tests"), None);
    if sources.pep {
        caps.add_feature(corvid_client::avatar::METADATA_NOTIFY);
    }
    let (avatars, avatar_events) =
        Avatars::attach(&client, Arc::new(MemoryAvatarStorage::default()), sources);
    client.connect().await.context("connect")?;
    drain(events);
    roster.fetch().await?;
    next(&mut roster_events, "the roster", |e| {
        matches!(e, RosterEvent::Populated { .. })
    })
    .await?;
    let contact = Contact {
        client,
        roster,
        roster_events,
        caps,
        avatars,
        avatar_events,
    };
    announce(&contact, None).await?;
    Ok(contact)
}

async fn announce(contact: &Contact, status: Option<&str>) -> Result<()> {
    let mut presence = Element::new("presence", ns::CLIENT);
    if let Some(status) = status {
        presence.append_child(Element::new("status", ns::CLIENT).with_text(status));
    }
    contact.caps.decorate(&mut presence);
    contact.avatars.send_presence(presence).await?;
    Ok(())
}

/// `a` asks `b` for a subscription, `b` accepts and asks back, `a` accepts: both rosters
/// say `both`, and each sees the other online. Then each announces itself again and sees
/// the other's new status (presence broadcast to contacts across the federation).
async fn befriend(a: &mut Contact, b: &mut Contact) -> Result<()> {
    let a_jid = a.client.account().to_string();
    let b_jid = b.client.account().to_string();
    a.roster.subscribe(&b_jid).await?;
    next(&mut b.roster_events, "the subscription request", |e| {
        *e == RosterEvent::SubscriptionRequest(a_jid.clone())
    })
    .await?;
    b.roster.accept(&a_jid, true).await?;
    next(&mut a.roster_events, "the request back", |e| {
        *e == RosterEvent::SubscriptionRequest(b_jid.clone())
    })
    .await?;
    a.roster.accept(&b_jid, false).await?;
    for (contact, other) in [(&mut *a, &b_jid), (&mut *b, &a_jid)] {
        if contact.roster.item(other).map(|i| i.subscription) != Some(Subscription::Both) {
            next(&mut contact.roster_events, "a mutual subscription", |e| {
                matches!(e, RosterEvent::Changed(item)
                    if item.jid == *other && item.subscription == Subscription::Both)
            })
            .await?;
        }
    }
    // Caps are learnt from presence sent while subscribed (ejabberd's mod_caps, and the
    // PEP notifications that follow them): each announces itself again, as after a login.
    const AGAIN: &str = "friends now";
    announce(a, Some(AGAIN)).await?;
    announce(b, Some(AGAIN)).await?;
    for (contact, other) in [(&mut *a, &b_jid), (&mut *b, &a_jid)] {
        next(
            &mut contact.roster_events,
            "the contact's new status",
            |e| {
                matches!(e, RosterEvent::Presence { jid, presence: Some(p), .. }
                if jid == other && p.status.as_deref() == Some(AGAIN))
            },
        )
        .await?;
    }
    Ok(())
}

/// `contact` learns `of`'s avatar with `hash` from `source`, and has `bytes` cached.
async fn expect_avatar(
    contact: &mut Contact,
    of: &BareJid,
    (hash, source): (&str, AvatarSource),
    bytes: &[u8],
) -> Result<()> {
    let got = next(
        &mut contact.avatar_events,
        &format!("the avatar by {source:?}"),
        |e| {
            matches!(e, AvatarEvent::Changed { jid, .. } | AvatarEvent::FetchFailed { jid, .. }
            if jid == of)
        },
    )
    .await?;
    let AvatarEvent::Changed {
        hash: got,
        source: from,
        ..
    } = got
    else {
        bail!("{got:?}");
    };
    ensure!(
        (got.as_str(), from) == (hash, source),
        "{got} from {from:?}"
    );
    let avatar = contact.avatars.cached(hash).await?.context("cached")?;
    ensure!(avatar.bytes == bytes, "the bytes survive the trip");
    Ok(())
}

/// A small "image": its bytes survive base64 and the hash.
fn image() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..=255u8).cycle().take(2000));
    bytes
}

/// `publisher` (of `home`) and `follower` (of `away`) become contacts across the
/// federation; the publisher's avatar then reaches the follower through PEP (XEP-0084:
/// the metadata notification, caps `+notify` learnt by the publisher's server across the
/// federation, then the data item fetched from the publisher's PEP service), byte for
/// byte. Then the other way, through vCard (XEP-0153): the follower publishes, the
/// publisher learns the hash from presence and fetches the vCard across.
pub async fn avatars_cross_the_federation(
    home: &Home,
    publisher: &str,
    away: &Home,
    follower: &str,
) -> Result<()> {
    let both = AvatarSources {
        pep: false,
        vcard: true,
    };
    let mut p = contact(home, publisher, both).await?;
    let pep_only = AvatarSources {
        pep: true,
        vcard: false,
    };
    let mut f = contact(away, follower, pep_only).await?;
    befriend(&mut p, &mut f).await?;

    let bytes = image();
    let hash = p.avatars.publish_own(&bytes, "image/png", 32, 32).await?;
    expect_avatar(
        &mut f,
        &home.jid(publisher),
        (&hash, AvatarSource::Pep),
        &bytes,
    )
    .await?;

    let other: Vec<u8> = image().into_iter().rev().collect();
    let hash = f.avatars.publish_own(&other, "image/png", 16, 16).await?;
    expect_avatar(
        &mut p,
        &away.jid(follower),
        (&hash, AvatarSource::VCard),
        &other,
    )
    .await?;
    p.client.disconnect().await;
    f.client.disconnect().await;
    Ok(())
}

/// Corvid federated with another server for the scenarios above.
pub trait Federated {
    /// Where Corvid's users (alice) log in.
    fn corvid_home(&self) -> Home;
    /// Where the other server's users log in.
    fn foreign_home(&self) -> Home;
    /// The other server's user.
    fn foreign_user(&self) -> &'static str;
    /// The scenario's outcome, with the other server's log when it failed.
    fn explain(&self, outcome: Result<()>) -> Result<()>;
}

/// The scenarios, each a test, between Corvid and the other server `$start` starts:
/// `$start(true)` with certificates both trust (SASL EXTERNAL), `$start(false)` with
/// self-signed ones (dialback).
#[allow(unused_macros)] // used by the binaries that federate with another server
macro_rules! cross_server_scenarios {
    ($start:path) => {
        /// A user of the other server in a room of Corvid's MUC service (dialback).
        #[tokio::test]
        async fn a_remote_user_joins_a_corvid_room() -> anyhow::Result<()> {
            use common::services::Federated;
            let both = $start(false).await?;
            let (host, away) = (both.corvid_home(), both.foreign_home());
            let outcome = common::services::a_remote_user_joins_a_room(
                &host,
                "alice",
                &away,
                both.foreign_user(),
            )
            .await;
            both.explain(outcome)
        }

        /// A Corvid user in a room of the other server (SASL EXTERNAL).
        #[tokio::test]
        async fn a_corvid_user_joins_a_remote_room() -> anyhow::Result<()> {
            use common::services::Federated;
            let both = $start(true).await?;
            let (host, away) = (both.foreign_home(), both.corvid_home());
            let outcome = common::services::a_remote_user_joins_a_room(
                &host,
                both.foreign_user(),
                &away,
                "alice",
            )
            .await;
            both.explain(outcome)
        }

        /// alice's avatar reaches the other server's user through Corvid's PEP; theirs
        /// reaches alice through their vCard on the other server (SASL EXTERNAL).
        #[tokio::test]
        async fn avatars_cross_from_corvid_and_back() -> anyhow::Result<()> {
            use common::services::Federated;
            let both = $start(true).await?;
            let (home, away) = (both.corvid_home(), both.foreign_home());
            let outcome = common::services::avatars_cross_the_federation(
                &home,
                "alice",
                &away,
                both.foreign_user(),
            )
            .await;
            both.explain(outcome)
        }

        /// The other way: the other server's PEP to alice, alice's vCard on Corvid back
        /// (dialback).
        #[tokio::test]
        async fn avatars_cross_to_corvid_and_back() -> anyhow::Result<()> {
            use common::services::Federated;
            let both = $start(false).await?;
            let (home, away) = (both.foreign_home(), both.corvid_home());
            let outcome = common::services::avatars_cross_the_federation(
                &home,
                both.foreign_user(),
                &away,
                "alice",
            )
            .await;
            both.explain(outcome)
        }
    };
}
