//! Parsing one stored element back (e.g. an offline message kept as XML text).

use crate::{Element, Limits, StreamEvent, StreamParser, XmlError};

/// Parses a single element serialized with `write_to(out, default_ns)`, restoring
/// `default_ns` as its default namespace. The same restrictions as on the wire apply.
pub fn parse_element(xml: &str, default_ns: &str) -> Result<Element, XmlError> {
    let mut parser = StreamParser::new(Limits {
        max_stanza_bytes: xml.len().max(1024),
        ..Limits::default()
    });
    let mut escaped = Vec::new();
    crate::serialize::escape_attr_value(&mut escaped, default_ns);
    let mut doc = Vec::with_capacity(xml.len() + 128);
    doc.extend_from_slice(b"<s xmlns='");
    doc.extend_from_slice(&escaped);
    doc.extend_from_slice(b"'>");
    doc.extend_from_slice(xml.as_bytes());
    doc.extend_from_slice(b"</s>");
    let mut input = &doc[..];
    let mut element = None;
    while let Some(event) = parser.next_event(&mut input)? {
        match event {
            StreamEvent::Stanza(el) if element.is_none() => element = Some(el),
            StreamEvent::Stanza(_) => {
                return Err(XmlError::NotWellFormed("more than one element".into()));
            }
            StreamEvent::Open(_) | StreamEvent::Close => {}
        }
    }
    element.ok_or_else(|| XmlError::NotWellFormed("no element".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_stanza() {
        let el = Element::new("message", "jabber:client")
            .with_attr("to", "a@b")
            .with_child(Element::new("body", "jabber:client").with_text("<&> 你好"))
            .with_child(Element::new("x", "urn:other"));
        let mut out = Vec::new();
        el.write_to(&mut out, "jabber:client");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(parse_element(&text, "jabber:client").unwrap(), el);
    }

    #[test]
    fn rejects_garbage_and_multiple_elements() {
        assert!(parse_element("<a>", "jabber:client").is_err());
        assert!(parse_element("<a/><b/>", "jabber:client").is_err());
        assert!(parse_element("", "jabber:client").is_err());
    }
}
