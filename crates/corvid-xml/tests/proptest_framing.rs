//! Property tests of stream framing: any element tree survives serialization
//! and parsing, chunking never changes what is parsed, and no input panics.

use corvid_xml::{Element, Limits, Node, StreamEvent, StreamParser, XmlError};
use proptest::collection::vec;
use proptest::prelude::*;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
const CLIENT: &str = "jabber:client";

/// Every char XML 1.0 §2.2 allows, weighted towards the ones that need
/// escaping or normalization.
fn xml_text() -> impl Strategy<Value = String> {
    let special = prop_oneof![
        Just('&'),
        Just('<'),
        Just('>'),
        Just('\''),
        Just('"'),
        Just(']'),
        Just('\r'),
        Just('\n'),
        Just('\t'),
        Just(' '),
    ];
    let any_char = prop_oneof![
        4 => proptest::char::range(' ', '~'),
        2 => special,
        1 => proptest::char::range('\u{a0}', '\u{d7ff}'),
        1 => proptest::char::range('\u{e000}', '\u{fffd}'),
        1 => proptest::char::range('\u{10000}', '\u{10ffff}'),
    ];
    vec(any_char, 0..12).prop_map(|chars| chars.into_iter().collect())
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9._-]{0,6}".prop_filter("xml* names are reserved", |n| {
        !n.to_ascii_lowercase().starts_with("xml")
    })
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(CLIENT.to_owned()),
        Just("urn:xmpp:ping".to_owned()),
        Just("http://jabber.org/protocol/disco#info".to_owned()),
        "urn:[a-z]{1,4}(:[&'<}]x)?",
    ]
}

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(),
        1 => Just("xml:lang".to_owned()),
        1 => ("urn:[a-z]{1,3}}?", name()).prop_map(|(ns, local)| format!("{{{ns}}}{local}")),
    ]
}

#[derive(Debug)]
enum Child {
    Element(Element),
    Text(String),
}

fn element() -> impl Strategy<Value = Element> {
    let attrs = || vec((attr_name(), xml_text()), 0..4);
    let leaf =
        (name(), namespace(), attrs()).prop_map(|(name, ns, attrs)| build(name, ns, attrs, vec![]));
    leaf.prop_recursive(5, 48, 5, move |inner| {
        let child = prop_oneof![
            inner.prop_map(Child::Element),
            xml_text().prop_map(Child::Text),
        ];
        (name(), namespace(), attrs(), vec(child, 0..5))
            .prop_map(|(name, ns, attrs, children)| build(name, ns, attrs, children))
    })
}

fn build(name: String, ns: String, attrs: Vec<(String, String)>, children: Vec<Child>) -> Element {
    let mut e = Element::new(name, ns);
    for (name, value) in attrs {
        e.set_attr(name, value);
    }
    for child in children {
        match child {
            Child::Element(c) => {
                e.append_child(c);
            }
            Child::Text(t) => e.append_text(t),
        }
    }
    e
}

/// The parser returns attributes in rxml's order, which is not document
/// order; everything else must match exactly.
fn with_sorted_attrs(e: &Element) -> Element {
    let mut attrs: Vec<(&str, &str)> = e.attrs().collect();
    attrs.sort();
    let mut out = Element::new(e.name(), e.ns());
    for (name, value) in attrs {
        out.set_attr(name, value);
    }
    for node in e.nodes() {
        match node {
            Node::Element(c) => {
                out.append_child(with_sorted_attrs(c));
            }
            Node::Text(t) => out.append_text(t.as_str()),
        }
    }
    out
}

fn serialize_stream(stanzas: &[Element], close: bool) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    for (i, stanza) in stanzas.iter().enumerate() {
        if i % 2 == 1 {
            out.extend_from_slice(b"\n ");
        }
        stanza.write_to(&mut out, CLIENT);
    }
    if close {
        out.extend_from_slice(b"</stream:stream>");
    }
    out
}

fn split_at_all(bytes: &[u8], mut splits: Vec<usize>) -> Vec<&[u8]> {
    splits.iter_mut().for_each(|s| *s %= bytes.len() + 1);
    splits.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for to in splits {
        chunks.push(&bytes[from..to]);
        from = to;
    }
    chunks.push(&bytes[from..]);
    chunks
}

fn feed(parser: &mut StreamParser, chunks: &[&[u8]]) -> Result<Vec<StreamEvent>, XmlError> {
    let mut events = Vec::new();
    for chunk in chunks {
        let mut buf = *chunk;
        while let Some(event) = parser.next_event(&mut buf)? {
            events.push(event);
        }
        assert!(buf.is_empty());
    }
    Ok(events)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn element_trees_round_trip(stanzas in vec(element(), 1..4)) {
        let bytes = serialize_stream(&stanzas, true);
        let mut parser = StreamParser::new(Limits::default());
        let events = feed(&mut parser, &[&bytes]);
        let events = events.map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
        prop_assert!(matches!(events.first(), Some(StreamEvent::Open(_))));
        prop_assert_eq!(events.last(), Some(&StreamEvent::Close));
        let parsed: Vec<Element> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Stanza(s) => Some(with_sorted_attrs(s)),
                _ => None,
            })
            .collect();
        let expected: Vec<Element> = stanzas.iter().map(with_sorted_attrs).collect();
        prop_assert_eq!(parsed, expected);
        prop_assert_eq!(parser.finish(), Ok(()));
    }

    #[test]
    fn display_parses_back(stanza in element()) {
        let text = format!("<root>{stanza}</root>");
        let mut parser = StreamParser::new(Limits::default());
        let events = feed(&mut parser, &[text.as_bytes()]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(events.len(), 3);
        let StreamEvent::Stanza(parsed) = &events[1] else {
            return Err(TestCaseError::fail(format!("not a stanza: {:?}", events[1])));
        };
        prop_assert_eq!(with_sorted_attrs(parsed), with_sorted_attrs(&stanza));
    }

    #[test]
    fn chunking_never_changes_the_events(
        stanzas in vec(element(), 1..4),
        splits in vec(any::<usize>(), 0..12),
        close in any::<bool>(),
    ) {
        let bytes = serialize_stream(&stanzas, close);
        let whole = feed(&mut StreamParser::new(Limits::default()), &[&bytes]);
        let chunked = feed(&mut StreamParser::new(Limits::default()), &split_at_all(&bytes, splits));
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..600),
        splits in vec(any::<usize>(), 0..8),
        with_header in any::<bool>(),
        max_stanza_bytes in 0usize..300,
        max_depth in 0usize..6,
    ) {
        let input = if with_header { [HEADER, &bytes].concat() } else { bytes };
        let limits = Limits { max_stanza_bytes: max_stanza_bytes + HEADER.len(), max_depth };
        let mut parser = StreamParser::new(limits);
        let outcome = feed(&mut parser, &split_at_all(&input, splits));
        let _ = parser.finish();
        if let Err(error) = outcome {
            prop_assert!(!error.condition().is_empty());
        }
    }

    #[test]
    fn corrupted_streams_never_panic(
        stanzas in vec(element(), 1..3),
        flips in vec((any::<usize>(), any::<u8>()), 1..6),
        splits in vec(any::<usize>(), 0..6),
    ) {
        let mut bytes = serialize_stream(&stanzas, true);
        let len = bytes.len();
        for (at, value) in flips {
            bytes[at % len] = value;
        }
        let mut parser = StreamParser::new(Limits { max_stanza_bytes: 200, max_depth: 3 });
        let _ = feed(&mut parser, &split_at_all(&bytes, splits));
        let _ = parser.finish();
    }
}
