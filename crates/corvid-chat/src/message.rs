//! A message as corvid-chat shows it: who, to whom, what kind, the body, its id and when
//! it was sent; and the JSON line `listen` and `join` print for it.

use std::time::SystemTime;

use corvid_proto::{Jid, ns};
use corvid_xml::Element;
use serde::Serialize;

/// A `<message/>` with a body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// The sender as the stanza names it (a full JID, or a room occupant's room JID).
    pub from: String,
    #[serde(skip)]
    pub to: Option<String>,
    /// `chat`, `groupchat`, `normal`, `headline` or `error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub body: String,
    pub id: Option<String>,
    /// When it was sent: the XEP-0203 delay stamp (or the archive's), else when it arrived.
    pub stamp: String,
    /// Its id in the archive that keeps it (XEP-0359 stanza-id, XEP-0313 result id):
    /// where paging back through the archive starts.
    #[serde(skip)]
    pub archive_id: Option<String>,
}

impl ChatMessage {
    /// The message of a `<message/>` stanza with a body; `None` for one without (chat
    /// states, receipts, subjects). `stamp` is when it was archived, if it was.
    pub fn parse(message: &Element, stamp: Option<SystemTime>) -> Option<ChatMessage> {
        if !message.is("message", ns::CLIENT) {
            return None;
        }
        let body = message.get_child("body", ns::CLIENT)?.text();
        let delayed = message
            .get_child("delay", ns::DELAY)
            .and_then(|d| d.attr("stamp"))
            .and_then(corvid_proto::time::parse_datetime);
        let stamp = stamp.or(delayed).unwrap_or_else(SystemTime::now);
        let kind = message.attr("type").unwrap_or("normal");
        Some(ChatMessage {
            archive_id: archive_id(message, kind),
            from: message.attr("from").unwrap_or_default().to_owned(),
            to: message.attr("to").map(str::to_owned),
            kind: kind.to_owned(),
            body,
            id: message.attr("id").map(str::to_owned),
            stamp: corvid_proto::time::format_datetime(stamp),
        })
    }

    /// The same message, known by the archive as `id` (a result of an archive query).
    pub fn archived_as(mut self, id: &str) -> ChatMessage {
        self.archive_id = Some(id.to_owned());
        self
    }

    /// The sender's bare JID (a room, for a room message).
    pub fn sender_bare(&self) -> String {
        bare(&self.from)
    }

    /// The sender's resource (the nick, for a room message).
    pub fn sender_resource(&self) -> Option<String> {
        Jid::new(&self.from)
            .ok()
            .and_then(|j| j.resource().map(|r| r.as_str().to_owned()))
    }

    /// The JSON line: `{"from":…,"type":…,"body":…,"id":…,"stamp":…}`.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).expect("a struct of strings serializes")
    }
}

/// The XEP-0359 stanza-id of the archive a message is kept in: the room's for a
/// groupchat message, the recipient account's for any other (§3: only the archive's own
/// stanza-id is believed).
fn archive_id(message: &Element, kind: &str) -> Option<String> {
    let archive = if kind == "groupchat" {
        message.attr("from")
    } else {
        message.attr("to")
    }
    .map(bare)?;
    message
        .children()
        .find(|c| {
            c.is("stanza-id", ns::STANZA_ID) && c.attr("by").map(bare) == Some(archive.clone())
        })
        .and_then(|c| c.attr("id"))
        .map(str::to_owned)
}

/// The bare JID of `jid` (itself if it does not parse).
pub fn bare(jid: &str) -> String {
    Jid::new(jid).map_or_else(|_| jid.to_owned(), |j| j.to_bare().to_string())
}

/// A `<message/>` of `kind` to `to` with `body` and `id`.
pub fn outgoing(to: &str, kind: &str, body: &str, id: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("to", to)
        .with_attr("type", kind)
        .with_attr("id", id)
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

/// The error condition and text of a `type='error'` stanza, for people to read.
pub fn error_text(stanza: &Element) -> String {
    let condition = corvid_client::error::stanza_error_condition(stanza);
    let text = stanza
        .get_child("error", ns::CLIENT)
        .and_then(|e| e.get_child("text", ns::STANZA_ERRORS))
        .map(Element::text);
    match text {
        Some(text) => format!("{condition} ({text})"),
        None => condition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_sender_type_body_id_and_stamp() {
        let message = outgoing("me@x", "chat", "hi \"there\"", "m1")
            .with_attr("from", "peer@x/phone")
            .with_child(
                Element::new("delay", ns::DELAY).with_attr("stamp", "2024-05-06T07:08:09Z"),
            );
        let parsed = ChatMessage::parse(&message, None).unwrap();
        assert_eq!(parsed.sender_bare(), "peer@x");
        assert_eq!(parsed.sender_resource().as_deref(), Some("phone"));
        assert_eq!(
            parsed.json_line(),
            r#"{"from":"peer@x/phone","type":"chat","body":"hi \"there\"","id":"m1","stamp":"2024-05-06T07:08:09Z"}"#
        );
    }

    #[test]
    fn the_archive_id_is_the_stanza_id_of_the_archive_that_keeps_it() {
        let stanza_id = |by: &str, id: &str| {
            Element::new("stanza-id", ns::STANZA_ID)
                .with_attr("by", by)
                .with_attr("id", id)
        };
        let chat = outgoing("me@x/desk", "chat", "hi", "m1")
            .with_attr("from", "peer@x/phone")
            .with_child(stanza_id("peer@x", "forged"))
            .with_child(stanza_id("me@x", "a1"));
        let parsed = ChatMessage::parse(&chat, None).unwrap();
        assert_eq!(parsed.archive_id.as_deref(), Some("a1"));
        assert!(!parsed.json_line().contains("a1"));
        let room = outgoing("me@x/desk", "groupchat", "hi", "m2")
            .with_attr("from", "r@conf.x/nick")
            .with_child(stanza_id("me@x", "mine"))
            .with_child(stanza_id("r@conf.x", "r1"));
        let parsed = ChatMessage::parse(&room, None).unwrap();
        assert_eq!(parsed.archive_id.as_deref(), Some("r1"));
        assert_eq!(parsed.archived_as("r0").archive_id.as_deref(), Some("r0"));
    }

    #[test]
    fn messages_without_body_are_not_messages_to_show() {
        let receipt = Element::new("message", ns::CLIENT).with_attr("from", "peer@x");
        assert_eq!(ChatMessage::parse(&receipt, None), None);
        let plain = Element::new("message", ns::CLIENT)
            .with_child(Element::new("body", ns::CLIENT).with_text("x"));
        let parsed = ChatMessage::parse(&plain, None).unwrap();
        assert_eq!(parsed.kind, "normal");
        assert_eq!(parsed.id, None);
        assert!(parsed.json_line().contains(r#""id":null"#));
    }
}
