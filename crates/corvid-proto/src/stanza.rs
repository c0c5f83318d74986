//! Typed views of the three stanza kinds (RFC 6120 §8) over the generic `Element`.

use corvid_xml::Element;
use jid::Jid;

use crate::error::StanzaError;
use crate::ns;

/// The three stanza kinds; anything else at the top level of a stream is not a stanza.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

impl StanzaKind {
    /// The kind of a top-level element, if it is a stanza in `content_ns`.
    pub fn of(el: &Element, content_ns: &str) -> Option<Self> {
        if el.ns() != content_ns {
            return None;
        }
        match el.name() {
            "message" => Some(StanzaKind::Message),
            "presence" => Some(StanzaKind::Presence),
            "iq" => Some(StanzaKind::Iq),
            _ => None,
        }
    }
}

/// The `type` of an IQ (RFC 6120 §8.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IqType {
    Get,
    Set,
    Result,
    Error,
}

impl IqType {
    pub fn parse(value: Option<&str>) -> Option<Self> {
        match value? {
            "get" => Some(IqType::Get),
            "set" => Some(IqType::Set),
            "result" => Some(IqType::Result),
            "error" => Some(IqType::Error),
            _ => None,
        }
    }

    pub fn is_request(self) -> bool {
        matches!(self, IqType::Get | IqType::Set)
    }

    pub fn name(self) -> &'static str {
        match self {
            IqType::Get => "get",
            IqType::Set => "set",
            IqType::Result => "result",
            IqType::Error => "error",
        }
    }
}

/// The `type` of a message (RFC 6121 §5.2.2); an absent or unknown type means `normal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Chat,
    Error,
    Groupchat,
    Headline,
    Normal,
}

impl MessageType {
    pub fn of(el: &Element) -> Self {
        match el.attr("type") {
            Some("chat") => MessageType::Chat,
            Some("error") => MessageType::Error,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            _ => MessageType::Normal,
        }
    }
}

/// A parsed IQ request, as modules receive it.
#[derive(Clone, Debug)]
pub struct Iq {
    pub from: Jid,
    pub to: Jid,
    pub id: String,
    pub kind: IqType,
    /// The single child element of a get/set (RFC 6120 §8.2.3).
    pub payload: Element,
}

impl Iq {
    /// Parses an IQ request; `None` when it is not a well-formed get/set with one payload.
    pub fn from_element(el: &Element, from: Jid, to: Jid) -> Option<Iq> {
        let kind = IqType::parse(el.attr("type"))?;
        if !kind.is_request() {
            return None;
        }
        let mut children = el.children();
        let payload = children.next()?.clone();
        if children.next().is_some() {
            return None;
        }
        Some(Iq {
            from,
            to,
            id: el.attr("id").unwrap_or_default().to_string(),
            kind,
            payload,
        })
    }

    /// The result reply, with an optional payload.
    pub fn result(&self, payload: Option<Element>) -> Element {
        let mut el = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("id", self.id.as_str())
            .with_attr("from", self.to.as_str())
            .with_attr("to", self.from.as_str());
        if let Some(payload) = payload {
            el.append_child(payload);
        }
        el
    }

    /// The error reply (RFC 6120 §8.3.1), echoing the request payload.
    pub fn error(&self, err: &StanzaError) -> Element {
        Element::new("iq", ns::CLIENT)
            .with_attr("type", "error")
            .with_attr("id", self.id.as_str())
            .with_attr("from", self.to.as_str())
            .with_attr("to", self.from.as_str())
            .with_child(self.payload.clone())
            .with_child(err.to_element(ns::CLIENT))
    }
}

/// Whether a stanza may be answered with an error: never an error, nor an IQ result (RFC 6120 §8.3.1).
pub fn may_bounce(el: &Element) -> bool {
    !matches!(el.attr("type"), Some("error") | Some("result"))
}

/// Builds the error reply to any stanza: addresses swapped, `type='error'`, the original
/// children kept (RFC 6120 §8.3.1), then the `<error/>` element.
pub fn error_reply(original: &Element, err: &StanzaError) -> Element {
    let mut reply = Element::new(original.name(), original.ns()).with_attr("type", "error");
    if let Some(id) = original.attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(to) = original.attr("to") {
        reply.set_attr("from", to);
    }
    if let Some(from) = original.attr("from") {
        reply.set_attr("to", from);
    }
    for child in original.children() {
        reply.append_child(child.clone());
    }
    reply.append_child(err.to_element(original.ns()));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_swaps_addresses_and_keeps_payload() {
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("from", "a@x/r")
            .with_attr("to", "b@x")
            .with_attr("id", "m1")
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
        let reply = error_reply(&msg, &StanzaError::service_unavailable());
        assert_eq!(reply.attr("to"), Some("a@x/r"));
        assert_eq!(reply.attr("from"), Some("b@x"));
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("id"), Some("m1"));
        assert!(reply.has_child("body", ns::CLIENT));
        assert!(reply.has_child("error", ns::CLIENT));
    }

    #[test]
    fn iq_requires_exactly_one_payload() {
        let from: Jid = "a@x/r".parse().unwrap();
        let to: Jid = "x".parse().unwrap();
        let empty = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "1");
        assert!(Iq::from_element(&empty, from.clone(), to.clone()).is_none());
        let ok = empty.clone().with_child(Element::new("ping", ns::PING));
        assert!(Iq::from_element(&ok, from.clone(), to.clone()).is_some());
        let two = ok.with_child(Element::new("ping", ns::PING));
        assert!(Iq::from_element(&two, from, to).is_none());
    }

    #[test]
    fn result_and_error_are_never_bounced() {
        let res = Element::new("iq", ns::CLIENT).with_attr("type", "result");
        assert!(!may_bounce(&res));
        let err = Element::new("message", ns::CLIENT).with_attr("type", "error");
        assert!(!may_bounce(&err));
        assert!(may_bounce(&Element::new("message", ns::CLIENT)));
    }
}
