//! Occupant presence (XEP-0045 §7.1–§7.6, §7.14): entering a room, presence updates,
//! nick changes and leaving. Each function checks the XEP's entry conditions in the order
//! §7.2 lists them and either changes the room and tells the occupants, or returns the
//! stanza error for the sender.

use corvid_proto::Bare;
use std::time::SystemTime;

use corvid_proto::{ErrorType, FullJid, StanzaError, ns};
use corvid_xml::Element;

use super::history::{self, Request};
use super::room::{Affiliation, Note, Occupant, Out, Role, Room};

/// Longest nick accepted, in characters (the JID resourcepart allows far more).
pub const MAX_NICK_CHARS: usize = 64;
/// Largest presence payload an occupant may show, serialized: the room keeps it and sends
/// it to everyone who enters, so it is bounded well below the stanza limit.
pub const MAX_PRESENCE_BYTES: usize = 16 * 1024;

/// A presence asking to enter a room.
pub struct Join {
    pub nick: String,
    pub jid: FullJid,
    /// The presence payload to show (show, status, extensions), without the join element.
    pub presence: Element,
    pub password: Option<String>,
    pub history: Request,
    /// The room was created by this very presence (§10.1.1).
    pub created: bool,
    /// XEP-0421: the id the room shows for this user.
    pub occupant_id: String,
}

/// Checks a requested nick (§7.2.1: a nick is required; §7.2.9 lets a service refuse
/// nicks by its own policy — ours: not blank, bounded length).
pub fn validate_nick(nick: &str) -> Result<(), StanzaError> {
    if nick.trim().is_empty() {
        return Err(StanzaError::jid_malformed());
    }
    if nick.chars().count() > MAX_NICK_CHARS {
        return Err(StanzaError::not_acceptable().with_text("nick too long"));
    }
    Ok(())
}

/// The payload of an occupant's presence (its children except the MUC elements), or
/// `not-acceptable` when it is larger than the room keeps.
pub fn checked_payload(presence: &Element) -> Result<Element, StanzaError> {
    let payload = presence_payload(presence);
    if payload.to_bytes(ns::CLIENT).len() > MAX_PRESENCE_BYTES {
        return Err(StanzaError::not_acceptable().with_text("presence too large for the room"));
    }
    Ok(payload)
}

/// The payload of an occupant's presence: its children except the MUC join element.
pub fn presence_payload(presence: &Element) -> Element {
    let mut payload = Element::new("presence", ns::CLIENT);
    // The room's copies keep the client's id, so it can match its own presence.
    if let Some(id) = presence.attr("id") {
        payload.set_attr("id", id);
    }
    for child in presence.children() {
        // XEP-0421 §4: an occupant-id is the room's to give, never the client's.
        if !child.is("x", ns::MUC)
            && !child.is("x", ns::MUC_USER)
            && !child.is("occupant-id", ns::OCCUPANT_ID)
        {
            payload.append_child(child.clone());
        }
    }
    payload
}

/// §7.2: enters `join.jid` into the room, or says why not.
pub fn enter(
    room: &mut Room,
    join: Join,
    service_max: usize,
    now: SystemTime,
    out: &mut Out,
) -> Result<(), StanzaError> {
    let user = join.jid.bare();
    let affiliation = room.affiliation(&user);
    // §10.1.2: until the owner configures it, the room does not exist for anyone else.
    if room.locked && affiliation != Affiliation::Owner {
        return Err(StanzaError::item_not_found()
            .with_text("the room is locked until its owner configures it"));
    }
    // §7.2.7
    if affiliation == Affiliation::Outcast {
        return Err(StanzaError::forbidden().with_text("you are banned from this room"));
    }
    // §7.2.6
    if room.config.members_only && affiliation < Affiliation::Member {
        return Err(StanzaError::registration_required().with_text("the room is members-only"));
    }
    // §7.2.9: a nick conflict is between different users; another resource of the
    // occupant's own user shares the nick (multi-session nicks).
    let another_device = match room.occupant(&join.nick) {
        Some(holder) if holder.jid.bare() == user => true,
        Some(_) => return Err(StanzaError::conflict().with_text("that nick is in use")),
        None => false,
    };
    // §7.2.5
    if let Some(secret) = &room.config.password
        && join.password.as_deref() != Some(secret.as_str())
        && !join.created
    {
        return Err(StanzaError::not_authorized().with_text("a password is required"));
    }
    if another_device {
        enter_another_device(room, join, now, out);
        return Ok(());
    }
    // §7.2.10: full (wait/service-unavailable), except for its admins and owners.
    let max = room.config.max_users.min(service_max);
    if room.occupant_count() >= max && affiliation < Affiliation::Admin {
        let full = StanzaError {
            kind: ErrorType::Wait,
            ..StanzaError::service_unavailable()
        };
        return Err(full.with_text("the room is full"));
    }

    let occupant = Occupant {
        nick: join.nick,
        jid: join.jid.clone(),
        more_devices: Vec::new(),
        role: Role::default_for(affiliation, room.config.moderated),
        occupant_id: join.occupant_id,
        presence: join.presence,
    };
    // §7.2.3: the presence of every occupant, then the others learn of the new one.
    send_others(room, &occupant, &join.jid, out);
    room.broadcast_presence(&occupant, &Note::default(), out);
    room.insert_occupant(occupant.clone());
    send_own_state(
        room,
        &occupant,
        &join.jid,
        join.created,
        &join.history,
        now,
        out,
    );
    Ok(())
}

/// A further device of an occupant's user enters under its nick: it gets what entering
/// gives (the others' presence, its self-presence, history, subject); the other
/// occupants see nothing, the occupant is already there.
fn enter_another_device(room: &mut Room, join: Join, now: SystemTime, out: &mut Out) {
    room.add_device(&join.nick, join.jid.clone());
    let Some(occupant) = room.occupant(&join.nick).cloned() else {
        return;
    };
    send_others(room, &occupant, &join.jid, out);
    send_own_state(room, &occupant, &join.jid, false, &join.history, now, out);
}

/// A join presence from someone already in the room under that nick (a client that lost
/// track of its state): the entering sequence again for it, a presence update for the others.
pub fn rejoin(
    room: &mut Room,
    nick: &str,
    device: &FullJid,
    presence: Element,
    history: &Request,
    now: SystemTime,
    out: &mut Out,
) {
    let Some(occupant) = room.occupant_mut(nick) else {
        return;
    };
    occupant.presence = presence;
    let occupant = occupant.clone();
    send_others(room, &occupant, device, out);
    room.broadcast_presence(&occupant, &Note::default(), out);
    send_own_state(room, &occupant, device, false, history, now, out);
}

/// §7.2.3: every other occupant's presence, to the `device` of `occupant` entering.
fn send_others(room: &Room, occupant: &Occupant, device: &FullJid, out: &mut Out) {
    let shows = room.shows_jids_to(occupant);
    for other in room.occupants().filter(|o| o.nick != occupant.nick) {
        let mut presence = room.presence_of(other, &Note::default(), shows, &[]);
        presence.set_attr("to", device.as_str());
        out(device, presence.to_bytes(ns::CLIENT));
    }
}

/// §7.2.2 self-presence (110; §7.2.4 100 when non-anonymous; §10.1.1 201 when created),
/// §7.2.15 history, then §7.2.16 the subject.
fn send_own_state(
    room: &Room,
    occupant: &Occupant,
    device: &FullJid,
    created: bool,
    history: &Request,
    now: SystemTime,
    out: &mut Out,
) {
    let mut codes = Vec::new();
    if room.config.whois_anyone {
        codes.push(100);
    }
    if created {
        codes.push(201);
    }
    room.send_self_presence_to(occupant, device, &Note::default(), &codes, out);
    for entry in room.history.select(history, now) {
        let mut message = history::delayed(entry, room.jid.as_str());
        message.set_attr("to", device.as_str());
        out(device, message.to_bytes(ns::CLIENT));
    }
    let mut subject = room.subject_message();
    subject.set_attr("to", device.as_str());
    out(device, subject.to_bytes(ns::CLIENT));
}

/// §7.3 (in effect §7.7.2): an occupant's new presence (show, status) goes to everyone.
pub fn update_presence(room: &mut Room, nick: &str, presence: Element, out: &mut Out) {
    let Some(occupant) = room.occupant_mut(nick) else {
        return;
    };
    occupant.presence = presence;
    let occupant = occupant.clone();
    room.broadcast_presence(&occupant, &Note::default(), out);
    room.send_self_presence(&occupant, &Note::default(), &[], out);
}

/// §7.6: unavailable from the old nick with 303 and the new nick, then available from
/// the new one.
pub fn change_nick(
    room: &mut Room,
    old: &str,
    new: String,
    presence: Element,
    out: &mut Out,
) -> Result<(), StanzaError> {
    if room.occupant(&new).is_some() {
        return Err(StanzaError::conflict().with_text("that nick is in use"));
    }
    let Some(mut occupant) = room.remove_occupant(old) else {
        return Err(StanzaError::not_acceptable());
    };
    let note = Note {
        unavailable: true,
        codes: vec![303],
        new_nick: Some(new.clone()),
        ..Note::default()
    };
    // The leaving presence goes to everyone still in, the occupant itself included.
    room.broadcast_presence(&occupant, &note, out);
    room.send_self_presence(&occupant, &note, &[], out);
    occupant.nick = new;
    occupant.presence = presence;
    room.insert_occupant(occupant.clone());
    room.broadcast_presence(&occupant, &Note::default(), out);
    room.send_self_presence(&occupant, &Note::default(), &[], out);
    Ok(())
}

/// §7.14: `device` leaves. The last device of an occupant takes the occupant out:
/// everyone learns it, the leaver with 110, its status text, if any, along. One of several
/// devices leaves alone: it gets its unavailable self-presence, the others see nothing.
pub fn leave(
    room: &mut Room,
    nick: &str,
    device: &FullJid,
    presence: Option<&Element>,
    out: &mut Out,
) {
    if let Some(occupant) = room.occupant(nick).cloned()
        && room.remove_device(nick, device)
    {
        room.send_self_presence_to(&occupant, device, &Note::unavailable(&[]), &[], out);
        return;
    }
    if let (Some(occupant), Some(presence)) = (room.occupant_mut(nick), presence) {
        occupant.presence = presence_payload(presence);
    }
    let note = Note {
        unavailable: true,
        keep_status: presence.is_some(),
        ..Note::default()
    };
    room.remove_with_notice(nick, &note, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::muc::roomconfig::{Caps, RoomConfig};
    use crate::modules::muc::testing::join;
    use bytes::Bytes;

    const CAPS: Caps = Caps {
        max_history: 20,
        max_occupants: 3,
    };

    fn room() -> Room {
        let mut room = Room::new(
            "room@conf.x".parse().unwrap(),
            "owner@x".parse().unwrap(),
            RoomConfig::new(CAPS),
        );
        room.locked = false;
        room
    }

    fn enter_collecting(
        room: &mut Room,
        j: Join,
    ) -> (Result<(), StanzaError>, Vec<(String, String)>) {
        let mut sent = Vec::new();
        let mut out = |to: &FullJid, b: Bytes| {
            sent.push((to.to_string(), String::from_utf8_lossy(&b).into_owned()))
        };
        let result = enter(room, j, 100, SystemTime::now(), &mut out);
        (result, sent)
    }

    #[test]
    fn nick_validation() {
        assert!(validate_nick("alice").is_ok());
        assert_eq!(validate_nick(" ").unwrap_err().condition, "jid-malformed");
        assert_eq!(
            validate_nick(&"n".repeat(MAX_NICK_CHARS + 1))
                .unwrap_err()
                .condition,
            "not-acceptable"
        );
    }

    #[test]
    fn oversized_presence_payloads_are_refused() {
        let small = Element::new("presence", ns::CLIENT)
            .with_child(Element::new("status", ns::CLIENT).with_text("hi"));
        assert!(checked_payload(&small).is_ok());
        let big = Element::new("presence", ns::CLIENT).with_child(
            Element::new("status", ns::CLIENT).with_text("x".repeat(MAX_PRESENCE_BYTES)),
        );
        assert_eq!(
            checked_payload(&big).unwrap_err().condition,
            "not-acceptable"
        );
    }

    #[test]
    fn entry_conditions_in_order() {
        let mut r = room();
        r.locked = true;
        assert_eq!(
            enter_collecting(&mut r, join("a", "a@x/1"))
                .0
                .unwrap_err()
                .condition,
            "item-not-found"
        );
        r.locked = false;
        r.set_affiliation_of("bad@x".parse().unwrap(), Affiliation::Outcast);
        assert_eq!(
            enter_collecting(&mut r, join("b", "bad@x/1"))
                .0
                .unwrap_err()
                .condition,
            "forbidden"
        );
        assert!(enter_collecting(&mut r, join("a", "a@x/1")).0.is_ok());
        assert_eq!(
            enter_collecting(&mut r, join("a", "c@x/1"))
                .0
                .unwrap_err()
                .condition,
            "conflict"
        );
        r.config.password = Some("pw".into());
        assert_eq!(
            enter_collecting(&mut r, join("c", "c@x/1"))
                .0
                .unwrap_err()
                .condition,
            "not-authorized"
        );
        let mut with_pw = join("c", "c@x/1");
        with_pw.password = Some("pw".into());
        assert!(enter_collecting(&mut r, with_pw).0.is_ok());
        r.config.password = None;
        assert!(enter_collecting(&mut r, join("d", "d@x/1")).0.is_ok());
        let full = enter_collecting(&mut r, join("e", "e@x/1")).0.unwrap_err();
        assert_eq!(
            (full.kind, full.condition),
            (ErrorType::Wait, "service-unavailable")
        );
        // Owners may enter a full room.
        assert!(
            enter_collecting(&mut r, join("boss", "owner@x/1"))
                .0
                .is_ok()
        );
        r.config.members_only = true;
        assert_eq!(
            enter_collecting(&mut r, join("f", "f@x/1"))
                .0
                .unwrap_err()
                .condition,
            "registration-required"
        );
    }

    #[test]
    fn newcomer_gets_others_then_self_then_subject() {
        let mut r = room();
        enter_collecting(&mut r, join("a", "a@x/1")).0.unwrap();
        let (result, sent) = enter_collecting(&mut r, join("b", "b@x/1"));
        result.unwrap();
        let to_b: Vec<_> = sent
            .iter()
            .filter(|(to, _)| to == "b@x/1")
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(to_b.len(), 3, "{to_b:?}");
        assert!(to_b[0].contains("from='room@conf.x/a'"));
        assert!(to_b[1].contains("from='room@conf.x/b'") && to_b[1].contains("code='110'"));
        assert!(to_b[2].contains("<subject"));
        let to_a: Vec<_> = sent.iter().filter(|(to, _)| to == "a@x/1").collect();
        assert_eq!(to_a.len(), 1);
        // Semi-anonymous: a participant does not see b's real JID.
        assert!(!to_a[0].1.contains("jid='b@x/1'"), "{}", to_a[0].1);
    }

    #[test]
    fn two_devices_of_one_user_share_a_nick_and_the_occupant_leaves_with_the_last() {
        let mut r = room();
        enter_collecting(&mut r, join("a", "a@x/1")).0.unwrap();
        enter_collecting(&mut r, join("alice", "alice@x/phone"))
            .0
            .unwrap();
        let (result, sent) = enter_collecting(&mut r, join("alice", "alice@x/laptop"));
        result.unwrap();
        // The laptop gets a's presence, its self-presence (110) and the subject; a and the
        // phone see nothing: the occupant was already there.
        let to: Vec<_> = sent.iter().map(|(to, _)| to.as_str()).collect();
        assert_eq!(to, ["alice@x/laptop"; 3]);
        assert!(sent[1].1.contains("code='110'"));
        assert_eq!(r.occupant_count(), 2);

        let mut left = Vec::new();
        let mut out = |to: &FullJid, b: Bytes| {
            left.push((to.to_string(), String::from_utf8_lossy(&b).into_owned()))
        };
        let phone: FullJid = "alice@x/phone".parse().unwrap();
        leave(&mut r, "alice", &phone, None, &mut out);
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].0, "alice@x/phone");
        assert!(left[0].1.contains("type='unavailable'") && left[0].1.contains("code='110'"));
        assert!(r.occupant("alice").is_some());

        left.clear();
        let laptop: FullJid = "alice@x/laptop".parse().unwrap();
        let mut out = |to: &FullJid, b: Bytes| {
            left.push((to.to_string(), String::from_utf8_lossy(&b).into_owned()))
        };
        leave(&mut r, "alice", &laptop, None, &mut out);
        let mut to: Vec<_> = left.iter().map(|(to, _)| to.as_str()).collect();
        to.sort();
        assert_eq!(to, ["a@x/1", "alice@x/laptop"]);
        assert!(r.occupant("alice").is_none());
    }
}
