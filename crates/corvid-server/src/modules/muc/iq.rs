//! IQs between occupants, carried like private messages (XEP-0045 §7.5): clients ask
//! `room@service/nick` for its capabilities, version or a ping. The room forwards a request
//! from one occupant's room JID to the other's real JID under an id of its own, and routes
//! the answer back the same way. Neither side learns the other's real JID, and only the
//! occupant asked can answer (the answer must come from its real JID with the room's id).

use std::time::{Duration, Instant};

use corvid_proto::{FullJid, StanzaError, ns};
use corvid_xml::Element;
use dashmap::DashMap;

use super::room::{Out, Room};

/// Requests waiting for an answer, at most; beyond, old ones are dropped first.
const MAX_PENDING: usize = 10_000;
/// How long an answer is waited for.
const ANSWER_WITHIN: Duration = Duration::from_secs(120);

/// A forwarded request.
struct Pending {
    requester: FullJid,
    id: String,
    target: FullJid,
    target_nick: String,
    room: String,
    at: Instant,
}

#[derive(Default)]
pub struct Forwarded {
    pending: DashMap<String, Pending>,
}

impl Forwarded {
    /// A get/set from `from` to the occupant `nick`: forwards it, or says why not.
    pub fn request(
        &self,
        room: &Room,
        from: &FullJid,
        nick: &str,
        iq: &Element,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let Some(sender) = room.occupant_by_jid(from) else {
            return Err(StanzaError::not_acceptable().with_text("you are not in this room"));
        };
        let Some(target) = room.occupant(nick) else {
            return Err(StanzaError::item_not_found().with_text("no such occupant"));
        };
        if self.pending.len() >= MAX_PENDING {
            self.expire();
            if self.pending.len() >= MAX_PENDING {
                return Err(
                    StanzaError::resource_constraint().with_text("too many queries pending")
                );
            }
        }
        let id = crate::random_id();
        let mut forwarded = iq.clone();
        forwarded.set_attr("id", id.as_str());
        forwarded.set_attr("from", room.occupant_jid(&sender.nick));
        forwarded.set_attr("to", target.jid.as_str());
        self.pending.insert(
            id,
            Pending {
                requester: from.clone(),
                id: iq.attr("id").unwrap_or_default().to_string(),
                target: target.jid.clone(),
                target_nick: target.nick.clone(),
                room: room.jid.to_string(),
                at: Instant::now(),
            },
        );
        out(&target.jid, forwarded.to_bytes(ns::CLIENT));
        Ok(())
    }

    /// A result or error addressed to an occupant: the answer to a forwarded request,
    /// returned to whoever asked; anything else is dropped.
    pub fn answer(&self, from: &FullJid, iq: &Element, out: &mut Out) {
        let Some(id) = iq.attr("id") else { return };
        let Some((_, pending)) = self.pending.remove_if(id, |_, p| &p.target == from) else {
            return;
        };
        let mut answer = iq.clone();
        answer.set_attr("id", pending.id.as_str());
        answer.set_attr("from", format!("{}/{}", pending.room, pending.target_nick));
        answer.set_attr("to", pending.requester.as_str());
        out(&pending.requester, answer.to_bytes(ns::CLIENT));
    }

    fn expire(&self) {
        self.pending.retain(|_, p| p.at.elapsed() < ANSWER_WITHIN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::muc::testing::room_of;
    use bytes::Bytes;

    fn room() -> Room {
        room_of("a@x", &[("a", "a@x/1"), ("b", "b@x/1")])
    }

    fn parse(bytes: &Bytes) -> Element {
        corvid_xml::parse_element(std::str::from_utf8(bytes).unwrap(), ns::CLIENT).unwrap()
    }

    #[test]
    fn a_request_and_its_answer_cross_the_room_with_room_jids_only() {
        let room = room();
        let proxy = Forwarded::default();
        let request = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "q1")
            .with_child(Element::new("query", ns::DISCO_INFO));
        let mut sent = Vec::new();
        proxy
            .request(
                &room,
                &"a@x/1".parse().unwrap(),
                "b",
                &request,
                &mut |to: &FullJid, b: Bytes| sent.push((to.clone(), b)),
            )
            .unwrap();
        let forwarded = parse(&sent[0].1);
        assert_eq!(sent[0].0.as_str(), "b@x/1");
        assert_eq!(forwarded.attr("from"), Some("room@conf.x/a"));
        let room_id = forwarded.attr("id").unwrap().to_string();
        assert_ne!(room_id, "q1");

        let answer = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("id", room_id.as_str());
        // Only the occupant asked may answer.
        let mut back = Vec::new();
        proxy.answer(
            &"a@x/1".parse().unwrap(),
            &answer,
            &mut |to: &FullJid, b: Bytes| back.push((to.clone(), b)),
        );
        assert!(back.is_empty());
        proxy.answer(
            &"b@x/1".parse().unwrap(),
            &answer,
            &mut |to: &FullJid, b: Bytes| back.push((to.clone(), b)),
        );
        let answer = parse(&back[0].1);
        assert_eq!(back[0].0.as_str(), "a@x/1");
        assert_eq!(
            (answer.attr("id"), answer.attr("from")),
            (Some("q1"), Some("room@conf.x/b"))
        );
        // Answered once only.
        proxy.answer(
            &"b@x/1".parse().unwrap(),
            &answer,
            &mut |_: &FullJid, _: Bytes| panic!("answered twice"),
        );
    }

    #[test]
    fn non_occupants_and_unknown_nicks_get_errors() {
        let room = room();
        let proxy = Forwarded::default();
        let request = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "q");
        let mut none = |_: &FullJid, _: Bytes| {};
        let err = proxy
            .request(&room, &"z@x/1".parse().unwrap(), "b", &request, &mut none)
            .unwrap_err();
        assert_eq!(err.condition, "not-acceptable");
        let err = proxy
            .request(
                &room,
                &"a@x/1".parse().unwrap(),
                "nobody",
                &request,
                &mut none,
            )
            .unwrap_err();
        assert_eq!(err.condition, "item-not-found");
    }
}
