//! Writing an [`Element`] back to bytes.
//!
//! This is on the hot path of every routed stanza, so it writes straight into
//! the caller's buffer: no allocation per node, escaping copies unescaped runs
//! in one slice. Namespaces are emitted as default-namespace declarations
//! (`xmlns='…'`) only where an element's namespace differs from the one in
//! scope, the way XMPP stanzas are conventionally written. Attribute values
//! are single-quoted.

use std::fmt;

use bytes::Bytes;
use rxml::XMLNS_XML;

use crate::attr_name::{self, AttrName};
use crate::element::{Element, Node};

impl Element {
    /// Appends the serialization of this element to `out`.
    ///
    /// `parent_ns` is the default namespace in scope where the element is
    /// written, e.g. `jabber:client` for a stanza inside a c2s stream; an
    /// `xmlns` declaration is written only if the element's namespace differs.
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        self.write_inner(out, parent_ns, None);
    }

    /// Writes the element; with `to_slot`, leaves out its `to` attribute and records where
    /// it belongs (right after the name and namespace declaration).
    fn write_inner(&self, out: &mut Vec<u8>, parent_ns: &str, mut to_slot: Option<&mut usize>) {
        // The XML namespace cannot be declared as a default namespace
        // (Namespaces in XML 1.0 §3), only used through its reserved prefix.
        let xml_prefixed = self.ns() == XMLNS_XML;
        out.push(b'<');
        write_name(out, self.name(), xml_prefixed);
        let scope = if xml_prefixed {
            parent_ns
        } else {
            if self.ns() != parent_ns {
                out.extend_from_slice(b" xmlns='");
                escape_attr_value(out, self.ns());
                out.push(b'\'');
            }
            self.ns()
        };
        if let Some(slot) = to_slot.as_deref_mut() {
            *slot = out.len();
        }
        for (index, (name, value)) in self.raw_attrs().iter().enumerate() {
            if to_slot.is_some() && name == "to" {
                continue;
            }
            write_attr(out, index, name, value);
        }
        if self.nodes().is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        for node in self.nodes() {
            match node {
                Node::Element(child) => child.write_to(out, scope),
                Node::Text(text) => escape_text(out, text),
            }
        }
        out.extend_from_slice(b"</");
        write_name(out, self.name(), xml_prefixed);
        out.push(b'>');
    }

    /// The serialization of this element as one buffer (see [`write_to`](Self::write_to)).
    pub fn to_bytes(&self, parent_ns: &str) -> Bytes {
        let mut out = Vec::with_capacity(256);
        self.write_to(&mut out, parent_ns);
        Bytes::from(out)
    }

    /// Serializes the element once for delivery to many recipients: each copy
    /// [`FanOut::to`] makes differs only in its `to` attribute.
    pub fn fan_out(&self, parent_ns: &str) -> FanOut {
        let mut bytes = Vec::with_capacity(256);
        let mut split = 0;
        self.write_inner(&mut bytes, parent_ns, Some(&mut split));
        FanOut { bytes, split }
    }
}

/// A stanza serialized once, with a gap where each recipient's `to` goes.
#[derive(Clone, Debug)]
pub struct FanOut {
    bytes: Vec<u8>,
    split: usize,
}

impl FanOut {
    /// The stanza addressed to `to`: one allocation and two copies, no tree walk.
    pub fn to(&self, to: &str) -> Bytes {
        let mut out = Vec::with_capacity(self.bytes.len() + to.len() + 8);
        out.extend_from_slice(&self.bytes[..self.split]);
        out.extend_from_slice(b" to='");
        escape_attr_value(&mut out, to);
        out.push(b'\'');
        out.extend_from_slice(&self.bytes[self.split..]);
        Bytes::from(out)
    }
}

/// Formats as if written where no default namespace is in scope.
impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(256);
        self.write_to(&mut out, "");
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

fn write_name(out: &mut Vec<u8>, name: &str, xml_prefixed: bool) {
    if xml_prefixed {
        out.extend_from_slice(b"xml:");
    }
    out.extend_from_slice(name.as_bytes());
}

/// Writes ` name='value'`; an attribute in a foreign namespace gets the
/// prefix `ns<index>` declared right before it, which is unique on this
/// element because `index` is.
fn write_attr(out: &mut Vec<u8>, index: usize, name: &str, value: &str) {
    match attr_name::split(name) {
        AttrName::Plain(local) => {
            out.push(b' ');
            out.extend_from_slice(local.as_bytes());
        }
        AttrName::Xml(local) => {
            out.extend_from_slice(b" xml:");
            out.extend_from_slice(local.as_bytes());
        }
        AttrName::Namespaced { ns, local } => {
            out.extend_from_slice(b" xmlns:ns");
            write_decimal(out, index);
            out.extend_from_slice(b"='");
            escape_attr_value(out, ns);
            out.extend_from_slice(b"' ns");
            write_decimal(out, index);
            out.push(b':');
            out.extend_from_slice(local.as_bytes());
        }
    }
    out.extend_from_slice(b"='");
    escape_attr_value(out, value);
    out.push(b'\'');
}

fn write_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Escapes character data. `>` is escaped so `]]>` can never appear, and
/// `\r` as a reference because XML 1.0 §2.11 turns a literal one into `\n`.
fn escape_text(out: &mut Vec<u8>, text: &str) {
    escape_with(out, text, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'\r' => Some(b"&#xD;"),
        _ => None,
    });
}

/// An attribute value (or text) escaped for either quote style, for XML written by hand.
pub fn escape(value: &str) -> String {
    let mut out = Vec::with_capacity(value.len());
    escape_attr_value(&mut out, value);
    // Only ASCII bytes were replaced, by ASCII: still UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Escapes an attribute value for either quote style. Tab, newline and
/// carriage return are written as references because attribute-value
/// normalization (XML 1.0 §3.3.3) would turn literal ones into spaces.
pub(crate) fn escape_attr_value(out: &mut Vec<u8>, value: &str) {
    escape_with(out, value, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'\'' => Some(b"&apos;"),
        b'"' => Some(b"&quot;"),
        b'\t' => Some(b"&#x9;"),
        b'\n' => Some(b"&#xA;"),
        b'\r' => Some(b"&#xD;"),
        _ => None,
    });
}

/// Copies `s`, replacing the ASCII bytes `escape` maps. Every byte it maps is
/// ASCII, so a replacement never splits a UTF-8 sequence.
#[inline]
fn escape_with(out: &mut Vec<u8>, s: &str, escape: impl Fn(u8) -> Option<&'static [u8]>) {
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(replacement) = escape(b) {
            out.extend_from_slice(&bytes[run_start..i]);
            out.extend_from_slice(replacement);
            run_start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "jabber:client";

    fn written(e: &Element, parent_ns: &str) -> String {
        let mut out = Vec::new();
        e.write_to(&mut out, parent_ns);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn stanza_in_stream_namespace_has_no_xmlns() {
        let m = Element::new("message", CLIENT)
            .with_attr("to", "juliet@example.com")
            .with_child(Element::new("body", CLIENT).with_text("hi"))
            .with_child(Element::new(
                "active",
                "http://jabber.org/protocol/chatstates",
            ));
        assert_eq!(
            written(&m, CLIENT),
            "<message to='juliet@example.com'><body>hi</body>\
             <active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        );
        assert_eq!(
            written(&m, "jabber:server"),
            "<message xmlns='jabber:client' to='juliet@example.com'><body>hi</body>\
             <active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        );
    }

    #[test]
    fn children_compare_with_their_parent_namespace() {
        let e = Element::new("query", "jabber:iq:roster").with_child(
            Element::new("item", "jabber:iq:roster")
                .with_child(Element::new("group", "jabber:iq:roster").with_text("Friends"))
                .with_child(Element::new("x", "")),
        );
        assert_eq!(
            written(&e, CLIENT),
            "<query xmlns='jabber:iq:roster'><item><group>Friends</group>\
             <x xmlns=''/></item></query>"
        );
    }

    #[test]
    fn text_and_attribute_values_are_escaped() {
        let e = Element::new("body", "")
            .with_attr("a", "x&y<z>'\"\t\n\r")
            .with_text("a & b < c > d ]]> \r\n ' \" 中文");
        assert_eq!(
            e.to_string(),
            "<body a='x&amp;y&lt;z&gt;&apos;&quot;&#x9;&#xA;&#xD;'>\
             a &amp; b &lt; c &gt; d ]]&gt; &#xD;\n ' \" 中文</body>"
        );
    }

    #[test]
    fn namespace_uri_is_escaped() {
        let e = Element::new("x", "urn:a'b&c");
        assert_eq!(e.to_string(), "<x xmlns='urn:a&apos;b&amp;c'/>");
    }

    #[test]
    fn empty_elements_are_self_closed() {
        assert_eq!(
            Element::new("ping", "urn:xmpp:ping").to_string(),
            "<ping xmlns='urn:xmpp:ping'/>"
        );
        assert_eq!(Element::new("br", "").to_string(), "<br/>");
    }

    #[test]
    fn xml_and_foreign_namespace_attributes_get_prefixes() {
        let e = Element::new("body", "")
            .with_attr("xml:lang", "en")
            .with_attr("{urn:a}x", "1")
            .with_attr("id", "2")
            .with_attr("{urn:b}y", "3");
        assert_eq!(
            e.to_string(),
            "<body xml:lang='en' xmlns:ns1='urn:a' ns1:x='1' id='2' xmlns:ns3='urn:b' ns3:y='3'/>"
        );
    }

    #[test]
    fn element_in_xml_namespace_uses_the_reserved_prefix() {
        let e = Element::new("a", CLIENT)
            .with_child(Element::new("b", XMLNS_XML).with_child(Element::new("c", CLIENT)));
        assert_eq!(written(&e, CLIENT), "<a><xml:b><c/></xml:b></a>");
    }

    #[test]
    fn to_bytes_matches_write_to() {
        let e = Element::new("presence", CLIENT).with_attr("type", "unavailable");
        assert_eq!(&e.to_bytes(CLIENT)[..], b"<presence type='unavailable'/>");
    }

    #[test]
    fn fan_out_splices_each_recipient_into_one_serialization() {
        let p = Element::new("presence", CLIENT)
            .with_attr("from", "a@x/r")
            .with_attr("to", "old@x")
            .with_attr("{urn:a}q", "1")
            .with_child(Element::new("show", CLIENT).with_text("away"));
        let fan = p.fan_out(CLIENT);
        let mut without_to = p.clone();
        without_to.remove_attr("to");
        for to in ["b@x", "o'hara@x/r&1"] {
            let got = fan.to(to);
            let mut reparsed =
                crate::parse_element(std::str::from_utf8(&got).unwrap(), CLIENT).unwrap();
            assert_eq!(reparsed.remove_attr("to").as_deref(), Some(to));
            assert_eq!(reparsed, without_to);
        }
        assert_eq!(
            &fan.to("b@x")[..],
            b"<presence to='b@x' from='a@x/r' xmlns:ns2='urn:a' ns2:q='1'><show>away</show></presence>"
        );
        let other_ns = Element::new("message", CLIENT)
            .fan_out("jabber:server")
            .to("c@y");
        assert_eq!(&other_ns[..], b"<message xmlns='jabber:client' to='c@y'/>");
    }

    #[test]
    fn decimal_prefix_numbers() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 123, usize::MAX] {
            out.clear();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
