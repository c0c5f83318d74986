//! Service discovery of the MUC service and its rooms (XEP-0045 §6): the service's
//! identity and its public rooms (§6.1, §6.3), a room's identity, features that reflect
//! its configuration, and its `muc#roominfo` form (§6.4).

use corvid_proto::{StanzaError, ns};
use corvid_xml::Element;

use super::room::Room;
use super::roomconfig::result_form;

/// §6.1: the service's disco#info.
pub fn service_info() -> Element {
    Element::new("query", ns::DISCO_INFO)
        .with_child(identity("Chatrooms"))
        .with_child(feature(ns::DISCO_INFO))
        .with_child(feature(ns::DISCO_ITEMS))
        .with_child(feature(ns::MUC))
}

/// §6.3: one public room's disco#items entry (`None` for hidden or locked rooms).
pub fn service_item(room: &Room) -> Option<Element> {
    if !room.config.public || room.locked || room.destroyed {
        return None;
    }
    Some(
        Element::new("item", ns::DISCO_ITEMS)
            .with_attr("jid", room.jid.as_str())
            .with_attr("name", display_name(room)),
    )
}

/// §6.4: a room's disco#info.
pub fn room_info(room: &Room) -> Element {
    let mut query = Element::new("query", ns::DISCO_INFO)
        .with_child(identity(display_name(room)))
        .with_child(feature(ns::DISCO_INFO))
        .with_child(feature(ns::MUC))
        // XEP-0359 §8: the room stamps stanza-ids on what it reflects.
        .with_child(feature(ns::STANZA_ID))
        // §6.4: the sender's message id is kept when the room reflects a message.
        .with_child(feature("http://jabber.org/protocol/muc#stable_id"))
        // XEP-0421 §4: presences and messages carry the room's occupant ids.
        .with_child(feature(ns::OCCUPANT_ID))
        // XEP-0410 §4: the service answers self-pings itself.
        .with_child(feature(
            "http://jabber.org/protocol/muc#self-ping-optimization",
        ));
    for f in room.config.features() {
        query.append_child(feature(f));
    }
    if room.config.archiving {
        // XEP-0313 §5: the room answers archive queries.
        query.append_child(feature(ns::MAM));
    }
    query.append_child(result_form(
        ns::MUC_ROOMINFO,
        &[
            (
                "muc#roominfo_description",
                "Description",
                room.config.description.clone(),
            ),
            (
                "muc#roominfo_occupants",
                "Number of occupants",
                room.occupant_count().to_string(),
            ),
            ("muc#roominfo_subject", "Subject", room.subject.text.clone()),
        ],
    ));
    query
}

/// §6.5: the occupants are not listed (the room may be semi-anonymous).
pub fn room_items() -> Element {
    Element::new("query", ns::DISCO_ITEMS)
}

/// A disco query's payload checked: a `get` of `<query/>` without node.
pub fn check_query(payload: &Element) -> Result<(), StanzaError> {
    if payload.name() != "query" {
        return Err(StanzaError::bad_request());
    }
    if payload.attr("node").is_some() {
        return Err(StanzaError::item_not_found());
    }
    Ok(())
}

fn display_name(room: &Room) -> &str {
    if room.config.name.is_empty() {
        room.jid.node().map(|n| n.as_str()).unwrap_or_default()
    } else {
        &room.config.name
    }
}

fn identity(name: &str) -> Element {
    Element::new("identity", ns::DISCO_INFO)
        .with_attr("category", "conference")
        .with_attr("type", "text")
        .with_attr("name", name)
}

fn feature(var: &str) -> Element {
    Element::new("feature", ns::DISCO_INFO).with_attr("var", var)
}
