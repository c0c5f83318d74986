//! Messages in a room (XEP-0045 §7.4 groupchat, §8.1 subject, §7.5 private messages,
//! §7.8.2 mediated invitations).
//!
//! A groupchat message is the hot path: it is checked, rebuilt once with the room's
//! `from` and a XEP-0359 stanza-id, serialized once, and each occupant's copy made by
//! splicing in its `to`.

use corvid_proto::Bare;
use std::time::SystemTime;

use corvid_proto::{BareJid, FullJid, StanzaError, ns};
use corvid_xml::Element;

use super::room::{Affiliation, Out, Role, Room};

/// Longest subject accepted, in characters.
pub const MAX_SUBJECT_CHARS: usize = 1000;

/// §7.4: reflects a groupchat message to every occupant, the sender included, under the
/// XEP-0359 `stanza_id` the room gives it; a message with a subject and no body changes the
/// subject (§8.1). Returns the copy for the room's archive when it keeps one (XEP-0313
/// §7.1.2: messages with a body, and subject changes).
pub fn groupchat(
    room: &mut Room,
    from: &FullJid,
    msg: &Element,
    (now, stanza_id): (SystemTime, &str),
    out: &mut Out,
) -> Result<Option<Element>, StanzaError> {
    // §7.4: only occupants may send, with voice (§5.1.1: visitors have none).
    let Some(sender) = room.occupant_by_jid(from) else {
        return Err(StanzaError::not_acceptable().with_text("you are not in this room"));
    };
    if sender.role < Role::Participant {
        return Err(StanzaError::forbidden().with_text("you have no voice in this room"));
    }
    let nick = sender.nick.clone();
    let occupant_id = sender.occupant_id.clone();
    let role = sender.role;
    let has_body = msg.has_child("body", ns::CLIENT);
    let subject = msg.get_child("subject", ns::CLIENT).map(Element::text);
    if let (Some(text), false) = (&subject, has_body) {
        // §8.1: moderators, or everyone when the room lets occupants.
        if role != Role::Moderator && !room.config.change_subject {
            return Err(StanzaError::forbidden().with_text("you may not change the subject"));
        }
        if text.chars().count() > MAX_SUBJECT_CHARS {
            return Err(StanzaError::not_acceptable().with_text("subject too long"));
        }
        room.subject.nick = Some(nick.clone());
        room.subject.text = text.clone();
    }
    let reflected = reflect(room, (&nick, &occupant_id), msg, stanza_id);
    room.send_to_all(&reflected, out);
    let archived = (room.config.archiving && (has_body || subject.is_some()))
        .then(|| archive_copy(&reflected, from));
    if has_body {
        let capacity = room.config.history_length;
        room.history.push(reflected, now, capacity);
    }
    Ok(archived)
}

/// The copy a room archives: any muc#user `<x/>` the sender put in removed, and the
/// sender's real JID in one of the room's own (XEP-0313 §7.1.2, §9.4), which a query shows
/// only to those who may see real JIDs.
fn archive_copy(reflected: &Element, from: &FullJid) -> Element {
    let mut copy = reflected.clone();
    copy.remove_children(|c| c.is("x", ns::MUC_USER));
    copy.append_child(
        Element::new("x", ns::MUC_USER)
            .with_child(Element::new("item", ns::MUC_USER).with_attr("jid", from.bare().as_str())),
    );
    copy
}

/// The message as the room sends it: `from` room/nick, the sender's `id` kept, any
/// stanza-id claiming to be the room's removed and the room's own added (XEP-0359 §5).
fn reflect(
    room: &Room,
    (nick, occupant_id): (&str, &str),
    msg: &Element,
    stanza_id: &str,
) -> Element {
    let by = room.jid.as_str();
    let mut reflected = Element::new("message", ns::CLIENT)
        .with_attr("from", room.occupant_jid(nick))
        .with_attr("type", "groupchat");
    if let Some(id) = msg.attr("id") {
        reflected.set_attr("id", id);
    }
    if let Some(lang) = msg.attr("xml:lang") {
        reflected.set_attr("xml:lang", lang);
    }
    for child in msg.children() {
        // XEP-0421 §4: only the room says who sent it.
        if (child.is("stanza-id", ns::STANZA_ID) && child.attr("by") == Some(by))
            || child.is("occupant-id", ns::OCCUPANT_ID)
        {
            continue;
        }
        reflected.append_child(child.clone());
    }
    reflected.append_child(super::occupant_id::element(occupant_id));
    reflected.append_child(
        Element::new("stanza-id", ns::STANZA_ID)
            .with_attr("id", stanza_id)
            .with_attr("by", by),
    );
    reflected
}

/// §7.5: a private message to `to_nick`, delivered to its real JID from the sender's room
/// JID, marked with an empty muc#user `<x/>`.
pub fn private(
    room: &Room,
    from: &FullJid,
    to_nick: &str,
    msg: &Element,
    out: &mut Out,
) -> Result<(), StanzaError> {
    let Some(sender) = room.occupant_by_jid(from) else {
        return Err(StanzaError::not_acceptable().with_text("you are not in this room"));
    };
    let Some(target) = room.occupant(to_nick) else {
        return Err(StanzaError::item_not_found().with_text("no such occupant"));
    };
    // §7.5: a groupchat message to an occupant is an error.
    if msg.attr("type") == Some("groupchat") {
        return Err(
            StanzaError::bad_request().with_text("groupchat goes to the room, not to an occupant")
        );
    }
    let mut forwarded = msg.clone();
    super::occupant_id::strip(&mut forwarded);
    forwarded.set_attr("from", room.occupant_jid(&sender.nick));
    forwarded.remove_attr("to");
    if !forwarded.has_child("x", ns::MUC_USER) {
        forwarded.append_child(Element::new("x", ns::MUC_USER));
    }
    // Every device of the occupant gets it (multi-session nicks).
    target.send(&forwarded, out);
    Ok(())
}

/// §7.8.2: a mediated invitation. Returns the invitations to route (the invitees may be
/// anywhere, so the caller routes them once the room is unlocked); in a members-only room
/// the invitee becomes a member when the inviter may make members.
pub fn invitations(
    room: &mut Room,
    from: &FullJid,
    x: &Element,
) -> Result<Vec<Element>, StanzaError> {
    let Some(inviter) = room.occupant_by_jid(from) else {
        return Err(StanzaError::not_acceptable().with_text("you are not in this room"));
    };
    let affiliation = room.affiliation(&from.bare());
    let may_invite = affiliation >= Affiliation::Admin
        || inviter.role == Role::Moderator
        || room.config.allow_invites
        || !room.config.members_only;
    if !may_invite {
        return Err(StanzaError::forbidden().with_text("you may not invite others to this room"));
    }
    let mut invitations = Vec::new();
    for invite in x
        .children()
        .filter(|c| c.is("invite", ns::MUC_USER))
        .take(10)
    {
        let Some(Ok(invitee)) = invite.attr("to").map(BareJid::new) else {
            return Err(
                StanzaError::jid_malformed().with_text("the invitee's address is not a valid JID")
            );
        };
        if room.config.members_only
            && room.affiliation(&invitee) < Affiliation::Member
            && room.affiliations.len() < super::admin::MAX_AFFILIATIONS
        {
            room.set_affiliation_of(invitee.clone(), Affiliation::Member);
        }
        let mut body = Element::new("invite", ns::MUC_USER).with_attr("from", from.as_str());
        if let Some(reason) = invite.get_child("reason", ns::MUC_USER) {
            body.append_child(reason.clone());
        }
        let mut muc = Element::new("x", ns::MUC_USER).with_child(body);
        if let Some(secret) = &room.config.password {
            muc.append_child(Element::new("password", ns::MUC_USER).with_text(secret.as_str()));
        }
        invitations.push(
            Element::new("message", ns::CLIENT)
                .with_attr("from", room.jid.as_str())
                .with_attr("to", invitee.as_str())
                .with_attr("id", crate::random_id())
                .with_child(muc),
        );
    }
    if invitations.is_empty() {
        return Err(StanzaError::bad_request().with_text("no invitation in the message"));
    }
    Ok(invitations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::muc::testing::room_of;
    use bytes::Bytes;

    fn room_with(nicks: &[(&str, &str)]) -> Room {
        room_of("a@x", nicks)
    }

    fn body(text: &str) -> Element {
        Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("id", "m1")
            .with_child(Element::new("body", ns::CLIENT).with_text(text))
    }

    #[test]
    fn groupchat_reaches_everyone_with_one_stanza_id_and_is_kept() {
        let mut room = room_with(&[("a", "a@x/1"), ("b", "b@x/1")]);
        let mut sent = Vec::new();
        let archived = groupchat(
            &mut room,
            &"b@x/1".parse().unwrap(),
            &body("hi"),
            (SystemTime::now(), "1"),
            &mut |to: &FullJid, b: Bytes| {
                sent.push((to.to_string(), String::from_utf8_lossy(&b).into_owned()))
            },
        )
        .unwrap()
        .expect("archived");
        let item = archived
            .get_child("x", ns::MUC_USER)
            .and_then(|x| x.get_child("item", ns::MUC_USER));
        assert_eq!(item.and_then(|i| i.attr("jid")), Some("b@x"));
        assert_eq!(sent.len(), 2);
        for (to, stanza) in &sent {
            assert!(stanza.contains(&format!("to='{to}'")), "{stanza}");
            assert!(
                stanza.contains("from='room@conf.x/b'") && stanza.contains("id='m1'"),
                "{stanza}"
            );
            assert!(stanza.contains("by='room@conf.x'"), "{stanza}");
        }
        assert_eq!(room.history.len(), 1);
    }

    #[test]
    fn non_occupants_and_visitors_may_not_send() {
        let mut room = room_with(&[("a", "a@x/1"), ("b", "b@x/1")]);
        let mut out = |_: &FullJid, _: Bytes| {};
        let err = groupchat(
            &mut room,
            &"z@x/1".parse().unwrap(),
            &body("hi"),
            (SystemTime::now(), "1"),
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err.condition, "not-acceptable");
        if let Some(b) = room.occupant_mut("b") {
            b.role = Role::Visitor;
        }
        let err = groupchat(
            &mut room,
            &"b@x/1".parse().unwrap(),
            &body("hi"),
            (SystemTime::now(), "1"),
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err.condition, "forbidden");
    }

    #[test]
    fn only_moderators_change_the_subject_by_default() {
        let mut room = room_with(&[("a", "a@x/1"), ("b", "b@x/1")]);
        let mut out = |_: &FullJid, _: Bytes| {};
        let subject = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_child(Element::new("subject", ns::CLIENT).with_text("news"));
        let err = groupchat(
            &mut room,
            &"b@x/1".parse().unwrap(),
            &subject,
            (SystemTime::now(), "1"),
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err.condition, "forbidden");
        groupchat(
            &mut room,
            &"a@x/1".parse().unwrap(),
            &subject,
            (SystemTime::now(), "1"),
            &mut out,
        )
        .unwrap();
        assert_eq!(room.subject.text, "news");
        assert_eq!(room.history.len(), 0);
    }

    #[test]
    fn private_messages_go_to_the_real_jid() {
        let room = room_with(&[("a", "a@x/1"), ("b", "b@x/1")]);
        let mut sent = Vec::new();
        let msg = Element::new("message", ns::CLIENT).with_attr("type", "chat");
        private(
            &room,
            &"a@x/1".parse().unwrap(),
            "b",
            &msg,
            &mut |to: &FullJid, b: Bytes| {
                sent.push((to.to_string(), String::from_utf8_lossy(&b).into_owned()))
            },
        )
        .unwrap();
        assert_eq!(sent[0].0, "b@x/1");
        assert!(sent[0].1.contains("from='room@conf.x/a'") && sent[0].1.contains(ns::MUC_USER));
        let err = private(
            &room,
            &"a@x/1".parse().unwrap(),
            "nobody",
            &msg,
            &mut |_: &FullJid, _: Bytes| {},
        )
        .unwrap_err();
        assert_eq!(err.condition, "item-not-found");
    }
}
