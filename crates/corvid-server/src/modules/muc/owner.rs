//! Owner use cases (XEP-0045 §10): the configuration form (§10.2, which also unlocks a
//! new room, §10.1), and destroying a room (§10.9).

use corvid_proto::Bare;
use corvid_proto::{Iq, IqType, StanzaError, ns};
use corvid_xml::Element;

use super::room::{Affiliation, Note, Out, Room};
use super::roomconfig::{self, Caps};

/// What a `muc#owner` request did, for the caller to finish outside the room's lock.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered; the room stays.
    Done(Option<Element>),
    /// The configuration changed (the caller may have to save the room).
    Configured,
    /// The room is gone: remove it.
    Destroyed,
}

/// Answers a `muc#owner` IQ.
pub fn handle(room: &mut Room, iq: &Iq, caps: Caps, out: &mut Out) -> Result<Outcome, StanzaError> {
    let from = iq
        .from
        .clone()
        .try_into_full()
        .map_err(|_| StanzaError::bad_request())?;
    // §10: owners only.
    if room.affiliation(&from.bare()) != Affiliation::Owner {
        return Err(
            StanzaError::forbidden().with_text("only owners may configure or destroy the room")
        );
    }
    if iq.kind == IqType::Get {
        // §10.2: the form with the current values.
        return Ok(Outcome::Done(Some(
            Element::new("query", ns::MUC_OWNER).with_child(room.config.form(caps)),
        )));
    }
    if let Some(destroy) = iq.payload.get_child("destroy", ns::MUC_OWNER) {
        destroy_room(room, destroy, out);
        return Ok(Outcome::Destroyed);
    }
    let Some(form) = iq.payload.get_child("x", ns::DATA_FORMS) else {
        return Err(StanzaError::bad_request().with_text("a data form is required"));
    };
    if roomconfig::is_cancel(form) {
        // §10.1.3: cancelling the initial configuration destroys the new room.
        if room.locked {
            destroy_room(room, &Element::new("destroy", ns::MUC_OWNER), out);
            return Ok(Outcome::Destroyed);
        }
        return Ok(Outcome::Done(None));
    }
    if form.attr("type") != Some("submit") {
        return Err(StanzaError::bad_request().with_text("submit the configuration form"));
    }
    let next = room.config.apply(form, caps)?;
    room.locked = false;
    let changed = next != room.config;
    let anonymity_changed = next.whois_anyone != room.config.whois_anyone;
    let now_members_only = next.members_only && !room.config.members_only;
    room.history.truncate(next.history_length);
    room.config = next;
    // §10.2: a changed configuration is announced, the first one too when it changes
    // the defaults (Prosody does the same; poezio shows it as "configuration changed").
    if changed {
        notify_config_change(room, anonymity_changed, out);
    }
    if now_members_only {
        remove_non_members(room, out);
    }
    Ok(Outcome::Configured)
}

/// §10.2: a room made members-only removes the occupants who are not members, status 322.
fn remove_non_members(room: &mut Room, out: &mut Out) {
    let outsiders: Vec<String> = room
        .occupants()
        .filter(|o| room.affiliation(&o.jid.bare()) < Affiliation::Member)
        .map(|o| o.nick.clone())
        .collect();
    for nick in outsiders {
        room.remove_with_notice(&nick, &Note::unavailable(&[322]), out);
    }
}

/// §10.2.1: status 104 to every occupant, with 172/173 when anonymity changed.
fn notify_config_change(room: &Room, anonymity_changed: bool, out: &mut Out) {
    let mut x = Element::new("x", ns::MUC_USER)
        .with_child(Element::new("status", ns::MUC_USER).with_attr("code", "104"));
    if anonymity_changed {
        let code = if room.config.whois_anyone {
            "172"
        } else {
            "173"
        };
        x.append_child(Element::new("status", ns::MUC_USER).with_attr("code", code));
    }
    let message = Element::new("message", ns::CLIENT)
        .with_attr("from", room.jid.as_str())
        .with_attr("type", "groupchat")
        .with_attr("id", crate::random_id())
        .with_child(x);
    room.send_to_all(&message, out);
}

/// §10.9: every occupant gets unavailable with the `<destroy/>` (reason, alternate venue).
pub fn destroy_room(room: &mut Room, request: &Element, out: &mut Out) {
    let mut destroy = Element::new("destroy", ns::MUC_USER);
    if let Some(jid) = request
        .attr("jid")
        .filter(|j| corvid_proto::BareJid::new(j).is_ok())
    {
        destroy.set_attr("jid", jid);
    }
    for (name, limit) in [("reason", 1000), ("password", 256)] {
        if let Some(child) = request.get_child(name, ns::MUC_OWNER) {
            let text: String = child.text().chars().take(limit).collect();
            destroy.append_child(Element::new(name, ns::MUC_USER).with_text(text));
        }
    }
    let note = Note {
        destroy: Some(destroy),
        ..Note::unavailable(&[])
    };
    let nicks: Vec<String> = room.occupants().map(|o| o.nick.clone()).collect();
    for nick in nicks {
        if let Some(occupant) = room.remove_occupant(&nick) {
            room.send_self_presence(&occupant, &note, &[], out);
        }
    }
    room.destroyed = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::muc::history::Request;
    use crate::modules::muc::occupant::{Join, enter};
    use crate::modules::muc::roomconfig::RoomConfig;
    use bytes::Bytes;
    use corvid_proto::{FullJid, Jid};
    use std::time::SystemTime;

    const CAPS: Caps = Caps {
        max_history: 5,
        max_occupants: 10,
    };

    fn room_with_owner_inside() -> Room {
        let mut room = Room::new(
            "room@conf.x".parse().unwrap(),
            "own@x".parse().unwrap(),
            RoomConfig::new(CAPS),
        );
        let join = Join {
            nick: "own".into(),
            jid: "own@x/1".parse().unwrap(),
            presence: Element::new("presence", ns::CLIENT),
            password: None,
            history: Request::default(),
            created: true,
            occupant_id: "id".into(),
        };
        enter(
            &mut room,
            join,
            10,
            SystemTime::now(),
            &mut |_: &FullJid, _: Bytes| {},
        )
        .unwrap();
        room
    }

    fn iq(from: &str, kind: IqType, payload: Element) -> Iq {
        Iq {
            from: Jid::new(from).unwrap(),
            to: Jid::new("room@conf.x").unwrap(),
            id: "1".into(),
            kind,
            payload,
        }
    }

    fn form(kind: &str) -> Element {
        Element::new("query", ns::MUC_OWNER)
            .with_child(Element::new("x", ns::DATA_FORMS).with_attr("type", kind))
    }

    fn sent_by(room: &mut Room, request: &Iq) -> (Result<Outcome, StanzaError>, Vec<String>) {
        let mut sent = Vec::new();
        let result = handle(room, request, CAPS, &mut |_: &FullJid, b: Bytes| {
            sent.push(String::from_utf8_lossy(&b).into_owned())
        });
        (result, sent)
    }

    #[test]
    fn submitting_unlocks_and_later_changes_are_announced_with_104() {
        let mut room = room_with_owner_inside();
        assert!(room.locked);
        let (result, sent) = sent_by(&mut room, &iq("own@x/1", IqType::Set, form("submit")));
        assert_eq!(result, Ok(Outcome::Configured));
        assert!(!room.locked && sent.is_empty(), "{sent:?}");
        let mut change = form("submit");
        if let Some(x) = change.get_child_mut("x", ns::DATA_FORMS) {
            x.append_child(
                Element::new("field", ns::DATA_FORMS)
                    .with_attr("var", "muc#roomconfig_roomname")
                    .with_child(Element::new("value", ns::DATA_FORMS).with_text("New")),
            );
        }
        let (_, sent) = sent_by(&mut room, &iq("own@x/1", IqType::Set, change));
        assert_eq!(sent.len(), 1);
        assert!(sent[0].contains("code='104'"), "{}", sent[0]);
    }

    #[test]
    fn a_first_configuration_that_changes_the_defaults_is_announced_too() {
        let mut room = room_with_owner_inside();
        let mut change = form("submit");
        if let Some(x) = change.get_child_mut("x", ns::DATA_FORMS) {
            x.append_child(
                Element::new("field", ns::DATA_FORMS)
                    .with_attr("var", "muc#roomconfig_roomname")
                    .with_child(Element::new("value", ns::DATA_FORMS).with_text("New")),
            );
        }
        let (result, sent) = sent_by(&mut room, &iq("own@x/1", IqType::Set, change));
        assert_eq!(result, Ok(Outcome::Configured));
        assert!(!room.locked);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].contains("code='104'"), "{}", sent[0]);
    }

    #[test]
    fn cancelling_the_first_configuration_destroys_the_room() {
        let mut room = room_with_owner_inside();
        let (result, sent) = sent_by(&mut room, &iq("own@x/1", IqType::Set, form("cancel")));
        assert_eq!(result, Ok(Outcome::Destroyed));
        assert!(room.destroyed && room.occupant_count() == 0);
        assert!(
            sent[0].contains("type='unavailable'") && sent[0].contains("<destroy"),
            "{sent:?}"
        );
    }

    #[test]
    fn only_owners_configure() {
        let mut room = room_with_owner_inside();
        room.set_affiliation_of(
            "adm@x".parse().unwrap(),
            crate::modules::muc::room::Affiliation::Admin,
        );
        let (result, _) = sent_by(
            &mut room,
            &iq("adm@x/1", IqType::Get, Element::new("query", ns::MUC_OWNER)),
        );
        assert_eq!(result.unwrap_err().condition, "forbidden");
    }
}
