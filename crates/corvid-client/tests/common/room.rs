//! Room (XEP-0045) scenarios, against Corvid's MUC service and Prosody's `muc` component,
//! both at `conference.localhost`. Where the two servers differ, the scenarios assert what
//! both do and say so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use corvid_client::{
    Affiliation, Client, Handled, History, JoinOptions, LeaveReason, Mam, MamQuery, Muc, MucEvent,
    MucEvents, Role, Room, RoomError, RoomEvent, RoomEvents, StanzaHandler,
};
use corvid_proto::{BareJid, Jid, ns};
use corvid_xml::Element;

use super::{NextEvent, Server, Target, expect};

impl NextEvent for RoomEvents {
    type Item = RoomEvent;
    fn next_event(&mut self) -> impl Future<Output = Option<RoomEvent>> {
        self.next()
    }
}

impl NextEvent for MucEvents {
    type Item = MucEvent;
    fn next_event(&mut self) -> impl Future<Output = Option<MucEvent>> {
        self.next()
    }
}

/// A user online with the MUC module and one room open (not yet joined).
pub struct Member {
    pub client: Client,
    pub muc: Arc<Muc>,
    pub invitations: MucEvents,
    pub room: Arc<Room>,
    pub events: RoomEvents,
}

pub fn room_jid(name: &str) -> BareJid {
    BareJid::new(&format!("{name}@conference.localhost")).expect("room JID")
}

pub(super) fn user(name: &str) -> BareJid {
    BareJid::new(&format!("{name}@localhost")).expect("user JID")
}

/// `user` online (resource `test`), with `before` seeing stanzas ahead of the MUC module,
/// and the room `name` open under `nick`.
async fn member_with(
    target: &Target,
    user: &str,
    name: &str,
    nick: &str,
    before: Option<Arc<dyn StanzaHandler>>,
) -> Result<Member> {
    let (client, mut stream_events) = target.builder(user).resource("test").build();
    if let Some(handler) = before {
        client.add_handler(handler);
    }
    let (muc, invitations) = Muc::attach(&client);
    client.connect().await?;
    client.send(&Element::new("presence", ns::CLIENT)).await?;
    // The application's events are not read here: keep them flowing.
    tokio::spawn(async move { while stream_events.next().await.is_some() {} });
    let (room, events) = muc.room(room_jid(name), nick);
    Ok(Member {
        client,
        muc,
        invitations,
        room,
        events,
    })
}

pub async fn member(target: &Target, user: &str, name: &str, nick: &str) -> Result<Member> {
    member_with(target, user, name, nick, None).await
}

/// Juliet, owner of a new instant room `name`, and Romeo in it.
pub(super) async fn juliet_and_romeo_in(target: &Target, name: &str) -> Result<(Member, Member)> {
    let juliet = member(target, "juliet", name, "juliet").await?;
    juliet.room.create_instant(JoinOptions::default()).await?;
    let mut romeo = member(target, "romeo", name, "romeo").await?;
    romeo.room.join(JoinOptions::default()).await?;
    expect(&mut romeo.events, "romeo's joining", |e| {
        matches!(e, RoomEvent::Joined { .. })
    })
    .await?;
    Ok((juliet, romeo))
}

pub(super) fn body_of(event: &RoomEvent) -> Option<&str> {
    match event {
        RoomEvent::Message(m) => m.body.as_deref(),
        _ => None,
    }
}

/// Occupants come and go between two clients, each seeing the other's role and
/// affiliation; a taken nick is refused as `NickInUse`.
pub async fn room_join_and_leave(target: &Target) -> Result<()> {
    let mut juliet = member(target, "juliet", "verona", "juliet").await?;
    juliet.room.create_instant(JoinOptions::default()).await?;
    let joined = expect(&mut juliet.events, "juliet's joining", |e| {
        matches!(e, RoomEvent::Joined { .. })
    })
    .await?;
    assert!(
        matches!(&joined, RoomEvent::Joined { nick, created: true } if nick == "juliet"),
        "{joined:?}"
    );
    assert!(juliet.room.is_joined());

    let impostor = member(target, "romeo", "verona", "juliet").await?;
    let refused = impostor.room.join(JoinOptions::default()).await;
    assert!(matches!(refused, Err(RoomError::NickInUse)), "{refused:?}");
    assert!(!impostor.room.is_joined());
    impostor.client.disconnect().await;

    let mut romeo = member(target, "romeo", "verona", "romeo").await?;
    let entered = romeo.room.join(JoinOptions::default()).await?;
    assert_eq!((entered.nick.as_str(), entered.created), ("romeo", false));
    let came = expect(
        &mut juliet.events,
        "romeo joining",
        |e| matches!(e, RoomEvent::OccupantJoined(o) if o.nick == "romeo"),
    )
    .await?;
    let RoomEvent::OccupantJoined(seen) = came else {
        unreachable!()
    };
    assert_eq!(
        (seen.role, seen.affiliation),
        (Role::Participant, Affiliation::None)
    );
    // The owner moderates, and moderators see real JIDs (§7.2.4) in either server.
    assert_eq!(
        seen.jid.as_ref().map(|j| j.to_bare()),
        Some(user("romeo")),
        "{seen:?}"
    );
    let owner = romeo
        .room
        .occupant("juliet")
        .context("juliet in romeo's map")?;
    assert_eq!(
        (owner.role, owner.affiliation),
        (Role::Moderator, Affiliation::Owner)
    );
    assert!(romeo.room.occupant("romeo").is_some());
    // Joining again while in: the room answers with the self-presence again.
    let again = JoinOptions {
        timeout: Some(Duration::from_secs(5)),
        ..JoinOptions::default()
    };
    assert!(!romeo.room.join(again).await?.created);
    assert!(romeo.room.is_joined());

    romeo.room.leave(Some("goodnight")).await?;
    let went = expect(
        &mut juliet.events,
        "romeo leaving",
        |e| matches!(e, RoomEvent::OccupantLeft { occupant, .. } if occupant.nick == "romeo"),
    )
    .await?;
    assert!(
        matches!(&went, RoomEvent::OccupantLeft { reason: LeaveReason::Left { status }, .. }
            if status.as_deref() == Some("goodnight")),
        "{went:?}"
    );
    expect(&mut romeo.events, "romeo's own leaving", |e| {
        matches!(e, RoomEvent::Left(LeaveReason::Left { .. }))
    })
    .await?;
    assert!(!romeo.room.is_joined());
    assert!(juliet.room.occupant("romeo").is_none());
    assert!(matches!(
        romeo.room.leave(None).await,
        Err(RoomError::NotJoined)
    ));
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}

/// A reserved room: the configuration form filled in at creation (a name, members-only)
/// reads back and takes effect: a non-member is refused, a member gets in.
pub async fn room_reserved_creation(target: &Target) -> Result<()> {
    let juliet = member(target, "juliet", "orchard", "juliet").await?;
    let submitted = juliet
        .room
        .create_reserved(JoinOptions::default(), |form| {
            form.set("muc#roomconfig_roomname", &["Capulet Orchard"]);
            form.set_bool("muc#roomconfig_membersonly", true);
        })
        .await?;
    assert_eq!(submitted.kind, "submit");
    let form = juliet.room.configuration().await?;
    assert_eq!(form.form_type(), Some(ns::MUC_ROOMCONFIG));
    assert_eq!(
        form.value("muc#roomconfig_roomname"),
        Some("Capulet Orchard")
    );
    assert_eq!(form.bool("muc#roomconfig_membersonly"), Some(true));

    let romeo = member(target, "romeo", "orchard", "romeo").await?;
    let refused = romeo.room.join(JoinOptions::default()).await;
    assert!(
        matches!(refused, Err(RoomError::MembersOnly)),
        "{refused:?}"
    );
    juliet
        .room
        .set_affiliation(&user("romeo"), Affiliation::Member, None)
        .await?;
    romeo.room.join(JoinOptions::default()).await?;
    assert_eq!(
        romeo.room.occupant("romeo").map(|o| o.affiliation),
        Some(Affiliation::Member)
    );
    // Creating a room that exists: joined, but not created.
    romeo.room.leave(None).await?;
    let exists = romeo.room.create_instant(JoinOptions::default()).await;
    assert!(
        matches!(exists, Err(RoomError::AlreadyExists)),
        "{exists:?}"
    );
    assert!(romeo.room.is_joined());
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}

/// A new room is locked until configured (`NotFound` for others); a password set in the
/// configuration is then required, and the right one lets in.
pub async fn room_password(target: &Target) -> Result<()> {
    let juliet = member(target, "juliet", "vault", "juliet").await?;
    let joined = juliet.room.join(JoinOptions::default()).await?;
    assert!(joined.created);
    let romeo = member(target, "romeo", "vault", "romeo").await?;
    let locked = romeo.room.join(JoinOptions::default()).await;
    if target.server == Server::Ejabberd {
        // ejabberd 23.01 does not lock a room its creator has not configured yet
        // (XEP-0045 §10.1.1 says it should): romeo gets in, and goes out again.
        assert!(locked.is_ok(), "{locked:?}");
        romeo.room.leave(None).await?;
    } else {
        assert!(matches!(locked, Err(RoomError::NotFound)), "{locked:?}");
    }

    let mut form = juliet.room.configuration().await?;
    form.set("muc#roomconfig_roomsecret", &["nightingale"]);
    // Corvid's form has XEP-0045's `passwordprotectedroom` switch; Prosody's has none
    // (a secret alone protects the room). Set it where it is offered.
    if form.field("muc#roomconfig_passwordprotectedroom").is_some() {
        form.set_bool("muc#roomconfig_passwordprotectedroom", true);
    }
    juliet.room.configure(&form).await?;

    let refused = romeo.room.join(JoinOptions::default()).await;
    assert!(
        matches!(refused, Err(RoomError::PasswordRequired)),
        "{refused:?}"
    );
    let wrong = JoinOptions {
        password: Some("lark".into()),
        ..JoinOptions::default()
    };
    let refused = romeo.room.join(wrong).await;
    assert!(
        matches!(refused, Err(RoomError::PasswordRequired)),
        "{refused:?}"
    );
    let right = JoinOptions {
        password: Some("nightingale".into()),
        ..JoinOptions::default()
    };
    romeo.room.join(right).await?;
    assert!(romeo.room.is_joined());
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}

/// Invitations, mediated by the room and direct, arrive as events with room, inviter and
/// reason.
pub async fn room_invitations(target: &Target) -> Result<()> {
    let juliet = member(target, "juliet", "feast", "juliet").await?;
    juliet.room.create_instant(JoinOptions::default()).await?;
    let mut romeo = member(target, "romeo", "lobby", "romeo").await?;
    juliet
        .room
        .invite(&user("romeo"), Some("come to the feast"))
        .await?;
    let invited = expect(&mut romeo.invitations, "the invitation", |e| {
        matches!(e, MucEvent::Invitation(_))
    })
    .await?;
    let MucEvent::Invitation(invitation) = invited else {
        unreachable!()
    };
    assert_eq!(invitation.room, room_jid("feast"));
    assert_eq!(invitation.reason.as_deref(), Some("come to the feast"));
    // Corvid names the inviter by her real JID; Prosody, in a room that hides real JIDs
    // (semi-anonymous, the default), by her occupant JID.
    let from = invitation.from.as_ref().map(Jid::to_string);
    assert!(
        from.as_deref()
            .is_some_and(|f| f.starts_with("juliet@localhost")
                || f == format!("{}/juliet", room_jid("feast"))),
        "{from:?}"
    );
    assert!(!invitation.direct);

    juliet
        .room
        .invite_direct(&Jid::from(user("romeo")), Some("really, come"))
        .await?;
    let invited = expect(
        &mut romeo.invitations,
        "the direct invitation",
        |e| matches!(e, MucEvent::Invitation(i) if i.direct),
    )
    .await?;
    let MucEvent::Invitation(invitation) = invited else {
        unreachable!()
    };
    assert_eq!(invitation.room, room_jid("feast"));
    assert_eq!(invitation.reason.as_deref(), Some("really, come"));
    assert_eq!(
        invitation.from.as_ref().map(Jid::to_bare),
        Some(user("juliet"))
    );
    // Accepting is joining the room named.
    let (feast, _feast_events) = romeo.muc.room(invitation.room.clone(), "romeo");
    feast.join(JoinOptions::default()).await?;
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}

/// The subject reaches who enters, and a change reaches who is in, with its author.
pub async fn room_subject(target: &Target) -> Result<()> {
    let mut juliet = member(target, "juliet", "stage", "juliet").await?;
    juliet.room.create_instant(JoinOptions::default()).await?;
    juliet.room.set_subject("Act one").await?;
    expect(
        &mut juliet.events,
        "the subject reflected",
        |e| matches!(e, RoomEvent::Subject { subject, .. } if subject == "Act one"),
    )
    .await?;

    let mut romeo = member(target, "romeo", "stage", "romeo").await?;
    romeo.room.join(JoinOptions::default()).await?;
    expect(
        &mut romeo.events,
        "the subject on entering",
        |e| matches!(e, RoomEvent::Subject { subject, .. } if subject == "Act one"),
    )
    .await?;
    juliet.room.set_subject("Act two").await?;
    let changed = expect(
        &mut romeo.events,
        "the new subject",
        |e| matches!(e, RoomEvent::Subject { subject, .. } if subject == "Act two"),
    )
    .await?;
    assert!(
        matches!(&changed, RoomEvent::Subject { nick: Some(n), .. } if n == "juliet"),
        "{changed:?}"
    );
    assert_eq!(romeo.room.subject().as_deref(), Some("Act two"));
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}

/// A nick change is one change for the other occupant, not a leave and a join; a taken
/// nick is refused.
pub async fn room_nick_change(target: &Target) -> Result<()> {
    let (mut juliet, mut romeo) = juliet_and_romeo_in(target, "garden").await?;
    expect(
        &mut juliet.events,
        "romeo in",
        |e| matches!(e, RoomEvent::OccupantJoined(o) if o.nick == "romeo"),
    )
    .await?;
    let taken = romeo.room.change_nick("juliet").await;
    assert!(matches!(taken, Err(RoomError::NickInUse)), "{taken:?}");

    romeo.room.change_nick("montague").await?;
    assert_eq!(romeo.room.nick(), "montague");
    let seen = expect(&mut juliet.events, "the nick change", |e| {
        matches!(
            e,
            RoomEvent::NickChanged { .. }
                | RoomEvent::OccupantLeft { .. }
                | RoomEvent::OccupantJoined(_)
        )
    })
    .await?;
    assert!(
        matches!(&seen, RoomEvent::NickChanged { old, occupant }
            if old == "romeo" && occupant.nick == "montague"),
        "{seen:?}"
    );
    expect(&mut romeo.events, "romeo's own nick change", |e| {
        matches!(e, RoomEvent::NickChanged { old, occupant } if old == "romeo" && occupant.nick == "montague")
    })
    .await?;
    assert!(juliet.room.occupant("romeo").is_none());
    assert!(juliet.room.occupant("montague").is_some());
    // Still the same occupant: messages carry the new nick.
    romeo.room.send_message("a rose by any other name").await?;
    let heard = expect(&mut juliet.events, "the message", |e| body_of(e).is_some()).await?;
    assert!(matches!(&heard, RoomEvent::Message(m) if m.nick.as_deref() == Some("montague")));
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}

/// Destroying the room takes everyone out with the reason and the alternate venue.
pub async fn room_destroy(target: &Target) -> Result<()> {
    let (mut juliet, mut romeo) = juliet_and_romeo_in(target, "crypt").await?;
    let tomb = room_jid("tomb");
    juliet
        .room
        .destroy(Some("the play is over"), Some(&tomb))
        .await?;
    for (who, events) in [("romeo", &mut romeo.events), ("juliet", &mut juliet.events)] {
        let left = expect(events, &format!("{who} out"), |e| {
            matches!(e, RoomEvent::Left(_))
        })
        .await?;
        assert!(
            matches!(&left, RoomEvent::Left(LeaveReason::Destroyed { reason, alternate })
                if reason.as_deref() == Some("the play is over") && alternate.as_ref() == Some(&tomb)),
            "{who}: {left:?}"
        );
    }
    assert!(!romeo.room.is_joined());
    assert!(romeo.room.occupants().is_empty());
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}

/// Room messages carry the sender's nick (and real JID for a moderator); private
/// messages come from the occupant's nick.
pub async fn room_messages(target: &Target) -> Result<()> {
    let (mut juliet, mut romeo) = juliet_and_romeo_in(target, "ballroom").await?;
    romeo.room.send_message("good morrow").await?;
    let heard = expect(&mut juliet.events, "romeo's message", |e| {
        body_of(e) == Some("good morrow")
    })
    .await?;
    let RoomEvent::Message(message) = heard else {
        unreachable!()
    };
    assert_eq!(message.nick.as_deref(), Some("romeo"));
    assert_eq!(
        message.jid.as_ref().map(|j| j.to_bare()),
        Some(user("romeo"))
    );
    assert!(message.delayed.is_none());
    // The sender gets the room's copy too (§7.4).
    expect(&mut romeo.events, "romeo's own copy", |e| {
        body_of(e) == Some("good morrow")
    })
    .await?;

    juliet.room.send_private("romeo", "psst").await?;
    let private = expect(&mut romeo.events, "the private message", |e| {
        matches!(e, RoomEvent::PrivateMessage { .. })
    })
    .await?;
    assert!(
        matches!(&private, RoomEvent::PrivateMessage { nick, body: Some(b), .. }
            if nick == "juliet" && b == "psst"),
        "{private:?}"
    );

    // The room's archive (XEP-0313) reaches a MAM module attached after the rooms': the
    // rooms leave the archive's results alone.
    let mam = Mam::attach(&juliet.client);
    let page = mam
        .query(&MamQuery {
            archive: Some(room_jid("ballroom").to_string()),
            ..MamQuery::default()
        })
        .await?;
    let archived: Vec<String> = page
        .messages
        .iter()
        .filter_map(|m| m.message.get_child("body", ns::CLIENT).map(Element::text))
        .collect();
    assert_eq!(archived, ["good morrow"]);
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}

/// Who enters gets the history asked for (the last two of three), delayed, before the
/// subject.
pub async fn room_history_on_join(target: &Target) -> Result<()> {
    let mut juliet = member(target, "juliet", "chronicle", "juliet").await?;
    juliet.room.create_instant(JoinOptions::default()).await?;
    for text in ["one", "two", "three"] {
        juliet.room.send_message(text).await?;
        expect(&mut juliet.events, "the reflection", |e| {
            body_of(e) == Some(text)
        })
        .await?;
    }
    let mut romeo = member(target, "romeo", "chronicle", "romeo").await?;
    let options = JoinOptions {
        history: Some(History {
            max_stanzas: Some(2),
            ..History::default()
        }),
        ..JoinOptions::default()
    };
    romeo.room.join(options).await?;
    let mut history = Vec::new();
    loop {
        let event = expect(&mut romeo.events, "history, then the subject", |e| {
            matches!(e, RoomEvent::Message(_) | RoomEvent::Subject { .. })
        })
        .await?;
        match event {
            RoomEvent::Message(m) => {
                assert!(m.delayed.is_some(), "{m:?}");
                assert_eq!(m.nick.as_deref(), Some("juliet"));
                history.push(m.body.unwrap_or_default());
            }
            _ => break,
        }
    }
    assert_eq!(history, ["two", "three"]);
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}

/// Drops the unavailable presences a room sends while armed: a lost stanza, as when a
/// server forgets an occupant without telling it.
#[derive(Debug, Default)]
struct LoseUnavailable {
    armed: AtomicBool,
}

impl StanzaHandler for LoseUnavailable {
    fn handle(&self, stanza: &Element) -> Handled {
        let from_room = stanza
            .attr("from")
            .is_some_and(|f| f.ends_with("@conference.localhost/juliet"));
        let lost = self.armed.load(Ordering::SeqCst)
            && stanza.name() == "presence"
            && stanza.attr("type") == Some("unavailable")
            && from_room;
        if lost { Handled::Yes } else { Handled::No }
    }
}

/// XEP-0410: out of the room without knowing it (our leave sent behind the Room's back,
/// the room's answer lost), the self-ping finds out (`not-acceptable`) and rejoins; the
/// other occupant sees Juliet go and come back, and her messages reach it again.
pub async fn room_self_ping_rejoins(target: &Target) -> Result<()> {
    let lose = Arc::new(LoseUnavailable::default());
    let mut juliet = member_with(
        target,
        "juliet",
        "tomb",
        "juliet",
        Some(lose.clone() as Arc<dyn StanzaHandler>),
    )
    .await?;
    juliet.room.create_instant(JoinOptions::default()).await?;
    let mut romeo = member(target, "romeo", "tomb", "romeo").await?;
    romeo.room.join(JoinOptions::default()).await?;
    juliet
        .room
        .start_self_ping(Duration::from_millis(200), Duration::from_secs(5));

    lose.armed.store(true, Ordering::SeqCst);
    let leave = Element::new("presence", ns::CLIENT)
        .with_attr("to", format!("{}/juliet", room_jid("tomb")))
        .with_attr("type", "unavailable");
    juliet.client.send(&leave).await?;
    expect(
        &mut romeo.events,
        "juliet gone",
        |e| matches!(e, RoomEvent::OccupantLeft { occupant, .. } if occupant.nick == "juliet"),
    )
    .await?;
    let found = expect(&mut juliet.events, "the self-ping's finding", |e| {
        matches!(e, RoomEvent::NotJoined { .. } | RoomEvent::Left(_))
    })
    .await?;
    assert!(
        matches!(&found, RoomEvent::NotJoined { condition } if condition == "not-acceptable"),
        "{found:?}"
    );
    let back = expect(&mut juliet.events, "the rejoin", |e| {
        matches!(e, RoomEvent::Rejoined | RoomEvent::RejoinFailed(_))
    })
    .await?;
    assert!(matches!(back, RoomEvent::Rejoined), "{back:?}");
    assert!(juliet.room.is_joined());
    assert!(juliet.room.occupant("romeo").is_some());
    expect(
        &mut romeo.events,
        "juliet back",
        |e| matches!(e, RoomEvent::OccupantJoined(o) if o.nick == "juliet"),
    )
    .await?;
    juliet.room.send_message("I wake").await?;
    expect(&mut romeo.events, "juliet's message", |e| {
        body_of(e) == Some("I wake")
    })
    .await?;
    juliet.room.stop_self_ping();
    juliet.client.disconnect().await;
    romeo.client.disconnect().await;
    Ok(())
}
