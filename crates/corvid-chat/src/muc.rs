//! Joining a multi-user chat room (XEP-0045) with raw stanzas, until corvid-client has its
//! Room module: the join presence, what the room answers, and the empty configuration form
//! that unlocks a room we just created as an instant room (§10.1.2).

use corvid_proto::{Jid, ns};
use corvid_xml::Element;

/// §7.2: the presence that enters `room` as `nick`.
pub fn join_presence(room: &str, nick: &str) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_attr("to", format!("{room}/{nick}"))
        .with_child(Element::new("x", ns::MUC))
}

/// §7.14: the presence that leaves.
pub fn leave_presence(room: &str, nick: &str) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_attr("to", format!("{room}/{nick}"))
        .with_attr("type", "unavailable")
}

/// §10.1.2: accepting the default configuration (an empty submitted form) unlocks a new
/// room as an instant room.
pub fn instant_room(room: &str) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("to", room)
        .with_child(
            Element::new("query", ns::MUC_OWNER)
                .with_child(Element::new("x", ns::DATA_FORMS).with_attr("type", "submit")),
        )
}

/// What a presence from the room says about our join.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// We are in; `created` when the room is new and locked until configured (status 201).
    Joined { created: bool },
    /// The room refused us (its error condition).
    Refused(String),
}

/// Our join's outcome, if `presence` is the room's answer to it: our own presence (§7.2.2,
/// status 110, or from our room JID) or an error from our room JID.
pub fn join_outcome(presence: &Element, room: &str, nick: &str) -> Option<JoinOutcome> {
    let from = Jid::new(presence.attr("from")?).ok()?;
    if from.to_bare().as_str() != room {
        return None;
    }
    let ours = from.resource().is_some_and(|r| r.as_str() == nick);
    if presence.attr("type") == Some("error") {
        return ours.then(|| JoinOutcome::Refused(crate::message::error_text(presence)));
    }
    let codes: Vec<&str> = presence
        .get_child("x", ns::MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.is("status", ns::MUC_USER))
                .filter_map(|c| c.attr("code"))
                .collect()
        })
        .unwrap_or_default();
    if presence.attr("type").is_some() || !(ours || codes.contains(&"110")) {
        return None;
    }
    Some(JoinOutcome::Joined {
        created: codes.contains(&"201"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_presence(from: &str, codes: &[&str]) -> Element {
        let mut x = Element::new("x", ns::MUC_USER);
        for code in codes {
            x.append_child(Element::new("status", ns::MUC_USER).with_attr("code", *code));
        }
        Element::new("presence", ns::CLIENT)
            .with_attr("from", from)
            .with_child(x)
    }

    #[test]
    fn our_own_presence_means_joined() {
        let room = "r@conf.x";
        let p = self_presence("r@conf.x/me", &["110", "201"]);
        assert_eq!(
            join_outcome(&p, room, "me"),
            Some(JoinOutcome::Joined { created: true })
        );
        // A server may rewrite the nick (status 110 still marks ours).
        let p = self_presence("r@conf.x/me2", &["110", "210"]);
        assert_eq!(
            join_outcome(&p, room, "me"),
            Some(JoinOutcome::Joined { created: false })
        );
        // Someone else's presence, or another room's, says nothing about ours.
        assert_eq!(
            join_outcome(&self_presence("r@conf.x/bob", &[]), room, "me"),
            None
        );
        assert_eq!(
            join_outcome(&self_presence("o@conf.x/me", &["110"]), room, "me"),
            None
        );
    }

    #[test]
    fn an_error_from_our_room_jid_is_a_refusal() {
        let p = Element::new("presence", ns::CLIENT)
            .with_attr("from", "r@conf.x/me")
            .with_attr("type", "error")
            .with_child(
                Element::new("error", ns::CLIENT)
                    .with_attr("type", "cancel")
                    .with_child(Element::new("conflict", ns::STANZA_ERRORS)),
            );
        assert_eq!(
            join_outcome(&p, "r@conf.x", "me"),
            Some(JoinOutcome::Refused("conflict".into()))
        );
    }

    #[test]
    fn join_and_instant_room_stanzas() {
        let p = join_presence("r@conf.x", "me");
        assert_eq!(p.attr("to"), Some("r@conf.x/me"));
        assert!(p.has_child("x", ns::MUC));
        let iq = instant_room("r@conf.x");
        let form = iq
            .get_child("query", ns::MUC_OWNER)
            .and_then(|q| q.get_child("x", ns::DATA_FORMS));
        assert_eq!(form.and_then(|f| f.attr("type")), Some("submit"));
    }
}
