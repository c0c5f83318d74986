//! What is queued for a session: the serialized stanza plus what kind of stanza it is,
//! said by whoever queues it, so that what looks at the queue later (client state
//! indication, XEP-0352, holding back presence; push, XEP-0357, noticing messages with a
//! body; stream management, XEP-0198, counting stanzas) never re-parses the bytes.

use bytes::Bytes;
use corvid_proto::ns;
use corvid_xml::Element;

/// The kind of a queued stanza.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaClass {
    Presence,
    /// A message; `body` says whether it carries one (a chat state or receipt does not).
    Message {
        body: bool,
    },
    Iq,
    /// A message carrying nothing but a chat state notification (XEP-0085), which a
    /// client that said it is inactive (XEP-0352) does without until it is active again.
    ChatState,
    Other,
}

impl StanzaClass {
    /// The class of a stanza element.
    pub fn of(el: &Element) -> Self {
        match el.name() {
            "presence" => StanzaClass::Presence,
            "message" if is_chat_state_only(el) => StanzaClass::ChatState,
            "message" => StanzaClass::Message {
                body: el.has_child("body", ns::CLIENT),
            },
            "iq" => StanzaClass::Iq,
            _ => StanzaClass::Other,
        }
    }

    /// The class of a serialized stanza, from its element name alone (its first bytes); a
    /// message is taken to have a body, the cautious guess. For senders that only have
    /// bytes; those that have the element say [`StanzaClass::of`] instead.
    pub fn sniff(bytes: &[u8]) -> Self {
        let name_end = |name: &[u8]| {
            bytes
                .strip_prefix(b"<")
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|rest| matches!(rest.first(), Some(b' ' | b'>' | b'/')))
        };
        if name_end(b"message") {
            StanzaClass::Message { body: true }
        } else if name_end(b"presence") {
            StanzaClass::Presence
        } else if name_end(b"iq") {
            StanzaClass::Iq
        } else {
            StanzaClass::Other
        }
    }
}

/// A message whose only payload is a chat state (with the hints and ids that travel
/// with any message).
fn is_chat_state_only(el: &Element) -> bool {
    let mut state = false;
    for child in el.children() {
        match child.ns() {
            ns::CHATSTATES => state = true,
            ns::HINTS | ns::STANZA_ID => {}
            _ if child.is("thread", ns::CLIENT) => {}
            _ => return false,
        }
    }
    state
}

/// A serialized stanza and its class.
#[derive(Clone, Debug)]
pub struct Queued {
    pub bytes: Bytes,
    pub class: StanzaClass,
    /// A copy of a message that stays in offline storage until the session takes it: if
    /// the session ends first, the stored one is what remains, and this copy must not be
    /// handed on again (`router::reroute_unsent`).
    pub stored: bool,
    /// For a stanza another node sent this one: dropped (with the last copy) once the
    /// stanza is settled, written or stored, which the sender is then told (`cluster/acks.rs`).
    pub receipt: Option<std::sync::Arc<crate::cluster::Receipt>>,
}

impl Queued {
    pub fn new(bytes: Bytes, class: StanzaClass) -> Self {
        Queued {
            bytes,
            class,
            stored: false,
            receipt: None,
        }
    }

    /// Serializes a stanza (in `jabber:client`) and classifies it.
    pub fn of(el: &Element) -> Self {
        Queued::new(el.to_bytes(ns::CLIENT), StanzaClass::of(el))
    }
}

impl From<&Bytes> for Queued {
    /// Bytes alone: classified by [`StanzaClass::sniff`].
    fn from(bytes: &Bytes) -> Self {
        Queued::new(bytes.clone(), StanzaClass::sniff(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_from_elements_and_from_bytes() {
        let chat = Element::new("message", ns::CLIENT)
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
        let typing = Element::new("message", ns::CLIENT)
            .with_child(Element::new("composing", ns::CHATSTATES));
        assert_eq!(StanzaClass::of(&chat), StanzaClass::Message { body: true });
        assert_eq!(StanzaClass::of(&typing), StanzaClass::ChatState);
        let receipt = Element::new("message", ns::CLIENT)
            .with_child(Element::new("received", "urn:xmpp:receipts"))
            .with_child(Element::new("active", ns::CHATSTATES));
        assert_eq!(
            Queued::of(&receipt).class,
            StanzaClass::Message { body: false }
        );
        let presence = Element::new("presence", ns::CLIENT).with_attr("from", "a@b/c");
        assert_eq!(
            Queued::from(&presence.to_bytes(ns::CLIENT)).class,
            StanzaClass::Presence
        );
        assert_eq!(StanzaClass::sniff(b"<iq type='get'/>"), StanzaClass::Iq);
        assert_eq!(StanzaClass::sniff(b"<messages/>"), StanzaClass::Other);
        assert_eq!(StanzaClass::sniff(b""), StanzaClass::Other);
    }
}
