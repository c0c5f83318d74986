//! Voice requests (XEP-0045 §7.13, §8.6): in a moderated room a visitor asks for voice
//! with a `muc#request` form; the room hands the request to every moderator as a form to
//! approve, and an approved form sent back gives the visitor the participant role.

use corvid_proto::forms::{self, value as field};
use corvid_proto::{FullJid, StanzaError, ns};
use corvid_xml::Element;

use super::admin;
use super::room::{Out, Role, Room};

pub const FORM_TYPE: &str = "http://jabber.org/protocol/muc#request";

/// The `muc#request` data form of a message, if it has one.
pub fn request_form(msg: &Element) -> Option<&Element> {
    msg.children()
        .find(|x| x.is("x", ns::DATA_FORMS) && field(x, "FORM_TYPE").as_deref() == Some(FORM_TYPE))
}

/// A form from an occupant: a visitor's request (§7.13), or a moderator's answer (§8.6).
pub fn handle(
    room: &mut Room,
    from: &FullJid,
    form: &Element,
    out: &mut Out,
) -> Result<(), StanzaError> {
    let Some(sender) = room.occupant_by_jid(from) else {
        return Err(StanzaError::not_acceptable().with_text("you are not in this room"));
    };
    if form.attr("type") != Some("submit") {
        return Err(StanzaError::bad_request().with_text("submit the voice request form"));
    }
    if sender.role == Role::Moderator && field(form, "muc#roomnick").is_some() {
        return answer(room, from, form, out);
    }
    if field(form, "muc#role").as_deref() != Some("participant") {
        return Err(
            StanzaError::bad_request().with_text("only the participant role can be requested")
        );
    }
    if sender.role != Role::Visitor {
        // Already has voice: nothing to ask.
        return Ok(());
    }
    let request = approval_form(&sender.jid, &sender.nick);
    for moderator in room.occupants().filter(|o| o.role == Role::Moderator) {
        let message = Element::new("message", ns::CLIENT)
            .with_attr("from", room.jid.as_str())
            .with_attr("id", crate::random_id())
            .with_child(request.clone());
        moderator.send(&message, out);
    }
    Ok(())
}

/// §8.6: the moderator's answer; voice is granted when `muc#request_allow` is true.
fn answer(
    room: &mut Room,
    from: &FullJid,
    form: &Element,
    out: &mut Out,
) -> Result<(), StanzaError> {
    let allow = matches!(
        field(form, "muc#request_allow").as_deref(),
        Some("1" | "true")
    );
    let Some(nick) = field(form, "muc#roomnick") else {
        return Err(StanzaError::bad_request().with_text("the approval names no occupant"));
    };
    if !allow {
        return Ok(());
    }
    match room.occupant(&nick) {
        Some(target) if target.role == Role::Visitor => {
            admin::set_role(room, from, &nick, Role::Participant, out)
        }
        // Left, or was given voice meanwhile.
        _ => Ok(()),
    }
}

/// The form each moderator gets (§8.6).
pub(super) fn approval_form(jid: &FullJid, nick: &str) -> Element {
    let field = |var: &str, kind: &str, label: &str, value: &str| {
        forms::field(var, kind, Some(label), &[value])
    };
    forms::form("form")
        .with_child(forms::text("title", "Voice request"))
        .with_child(forms::form_type_field(FORM_TYPE))
        .with_child(field(
            "muc#role",
            "list-single",
            "Requested role",
            "participant",
        ))
        .with_child(field("muc#jid", "jid-single", "Who asks", jid.as_str()))
        .with_child(field("muc#roomnick", "text-single", "Nick", nick))
        .with_child(field(
            "muc#request_allow",
            "boolean",
            "Give voice?",
            "false",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::muc::roomconfig::RoomConfig;
    use crate::modules::muc::testing::{CAPS, room_with};
    use bytes::Bytes;

    fn moderated_room() -> Room {
        let mut config = RoomConfig::new(CAPS);
        config.moderated = true;
        room_with("mod@x", config, &[("mod", "mod@x/1"), ("vis", "vis@x/1")])
    }

    fn submitted(fields: &[(&str, &str)]) -> Element {
        let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit");
        for (var, value) in [("FORM_TYPE", FORM_TYPE)].iter().chain(fields) {
            x.append_child(
                Element::new("field", ns::DATA_FORMS)
                    .with_attr("var", *var)
                    .with_child(Element::new("value", ns::DATA_FORMS).with_text(*value)),
            );
        }
        x
    }

    #[test]
    fn a_visitor_request_reaches_moderators_and_approval_gives_voice() {
        let mut room = moderated_room();
        let mut sent = Vec::new();
        let request = submitted(&[("muc#role", "participant")]);
        handle(
            &mut room,
            &"vis@x/1".parse().unwrap(),
            &request,
            &mut |to: &FullJid, b: Bytes| {
                sent.push((to.to_string(), String::from_utf8_lossy(&b).into_owned()))
            },
        )
        .unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "mod@x/1");
        assert!(
            sent[0].1.contains("vis@x/1") && sent[0].1.contains("muc#request_allow"),
            "{}",
            sent[0].1
        );

        let approval = submitted(&[
            ("muc#role", "participant"),
            ("muc#roomnick", "vis"),
            ("muc#request_allow", "true"),
        ]);
        // A visitor cannot approve anything.
        let mut none = |_: &FullJid, _: Bytes| {};
        handle(&mut room, &"vis@x/1".parse().unwrap(), &approval, &mut none).unwrap();
        assert_eq!(room.occupant("vis").map(|o| o.role), Some(Role::Visitor));
        handle(&mut room, &"mod@x/1".parse().unwrap(), &approval, &mut none).unwrap();
        assert_eq!(
            room.occupant("vis").map(|o| o.role),
            Some(Role::Participant)
        );
    }
}
