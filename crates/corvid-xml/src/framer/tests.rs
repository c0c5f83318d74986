//! Tests of stream framing: what a server reading a client's stream sees.

use super::*;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";
const STREAMS: &str = "http://etherx.jabber.org/streams";
const CLIENT: &str = "jabber:client";

/// Feeds `chunks` one after the other; returns the events up to the first
/// error, and that error.
fn feed(parser: &mut StreamParser, chunks: &[&[u8]]) -> (Vec<StreamEvent>, Option<XmlError>) {
    let mut events = Vec::new();
    for chunk in chunks {
        let mut buf = *chunk;
        loop {
            match parser.next_event(&mut buf) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => {
                    assert!(buf.is_empty(), "Ok(None) must consume everything");
                    break;
                }
                Err(error) => return (events, Some(error)),
            }
        }
    }
    (events, None)
}

fn parse(input: &str) -> (Vec<StreamEvent>, Option<XmlError>) {
    feed(
        &mut StreamParser::new(Limits::default()),
        &[input.as_bytes()],
    )
}

fn stanzas(events: &[StreamEvent]) -> Vec<&Element> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Stanza(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The error for `input` after a valid stream header.
fn error_in_stream(body: &[u8]) -> XmlError {
    let mut parser = StreamParser::new(Limits::default());
    let (events, error) = feed(&mut parser, &[HEADER.as_bytes(), body]);
    assert!(matches!(events.first(), Some(StreamEvent::Open(_))));
    match error {
        Some(error) => error,
        None => panic!("no error for {:?}", String::from_utf8_lossy(body)),
    }
}

#[test]
fn typical_c2s_stream() {
    let input = format!(
        "{HEADER}\n\
         <iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>balcony</resource></bind></iq>\n  \
         <message to='juliet@example.com' type='chat' id='m1'>\
         <body>你好，世界 &amp; &lt;3 &gt; &#x263A; &apos;&quot;</body>\
         <thread>e0ffe42b</thread>\
         <request xmlns='urn:xmpp:receipts'/>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message>\
         <presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v='/>\
         <x xmlns='vcard-temp:x:update'><photo/></x></presence>\
         </stream:stream>"
    );
    let (events, error) = parse(&input);
    assert_eq!(error, None);
    assert_eq!(events.len(), 5);

    let StreamEvent::Open(header) = &events[0] else {
        panic!("expected the stream header first, got {:?}", events[0]);
    };
    assert_eq!(
        (header.name.as_str(), header.ns.as_str()),
        ("stream", STREAMS)
    );
    assert_eq!(header.attr("to"), Some("example.com"));
    assert_eq!(header.attr("version"), Some("1.0"));
    assert_eq!(header.attr("xml:lang"), Some("en"));
    assert_eq!(
        header.attrs.len(),
        3,
        "namespace declarations are not attributes"
    );

    let found = stanzas(&events);
    let iq = found[0];
    assert!(iq.is("iq", CLIENT));
    let bind = iq.get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind");
    let resource = bind.and_then(|b| b.get_child("resource", "urn:ietf:params:xml:ns:xmpp-bind"));
    assert_eq!(resource.map(Element::text), Some("balcony".into()));

    let message = found[1];
    assert_eq!(message.attr("to"), Some("juliet@example.com"));
    assert_eq!(
        message.get_child("body", CLIENT).map(Element::text),
        Some("你好，世界 & <3 > ☺ '\"".into())
    );
    assert!(message.has_child("request", "urn:xmpp:receipts"));
    assert!(message.has_child("active", "http://jabber.org/protocol/chatstates"));

    let presence = found[2];
    let caps = presence.get_child("c", "http://jabber.org/protocol/caps");
    assert_eq!(caps.and_then(|c| c.attr("ver")), Some("v="));
    let update = presence.get_child("x", "vcard-temp:x:update");
    assert!(update.is_some_and(|x| x.has_child("photo", "vcard-temp:x:update")));

    assert_eq!(events[4], StreamEvent::Close);
}

#[test]
fn every_split_of_a_stream_gives_the_same_events() {
    let input = format!(
        "{HEADER}<message><body>中文 &amp; ok</body></message> \
         <presence/><iq type='get'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
    );
    let bytes = input.as_bytes();
    let (whole, error) = parse(&input);
    assert_eq!(error, None);
    for split in 0..=bytes.len() {
        let mut parser = StreamParser::new(Limits::default());
        let (events, error) = feed(&mut parser, &[&bytes[..split], &bytes[split..]]);
        assert_eq!(error, None, "split at {split}");
        assert_eq!(events, whole, "split at {split}");
    }
    // One byte at a time, too.
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    let (events, error) = feed(&mut StreamParser::new(Limits::default()), &chunks);
    assert_eq!((events, error), (whole, None));
}

#[test]
fn whitespace_keepalives_are_ignored() {
    let mut parser = StreamParser::new(Limits::default());
    let (events, error) = feed(&mut parser, &[HEADER.as_bytes(), b" ", b"\n", b"\t \r\n"]);
    assert_eq!(error, None);
    assert_eq!(events.len(), 1);
    assert!(parser.is_idle());
    let (events, error) = feed(&mut parser, &[b"  <presence/>  ", b" "]);
    assert_eq!(error, None);
    assert_eq!(stanzas(&events).len(), 1);
    assert!(parser.is_idle());
}

#[test]
fn idle_only_between_stanzas() {
    let mut parser = StreamParser::new(Limits::default());
    assert!(parser.is_idle());
    feed(&mut parser, &[HEADER.as_bytes()]);
    assert!(parser.is_idle());
    feed(&mut parser, &[b" <mess"]);
    assert!(!parser.is_idle(), "a start tag has begun");
    feed(&mut parser, &[b"age><body>"]);
    assert!(!parser.is_idle(), "a stanza is open");
    let (events, _) = feed(&mut parser, &[b"x</body></message>"]);
    assert_eq!(stanzas(&events).len(), 1);
    assert!(parser.is_idle());
    parser.release_memory();
    let (events, error) = feed(&mut parser, &[b"<presence/>"]);
    assert_eq!((stanzas(&events).len(), error), (1, None));
}

/// A released parser comes back from the stream header: the namespaces and prefixes the
/// header declared still apply, the root's end tag still matches, and every byte after the
/// release is parsed as if nothing had happened.
#[test]
fn released_parser_resumes_after_the_stream_header() {
    let header = "<?xml version='1.0'?>\n<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams' \
                  xmlns:x='urn:example:x' to='example.com' version='1.0'>";
    let stanza = "<message to='a@b'><x:thing x:attr='1'>t</x:thing></message>";
    // Split at every position of the header and the first stanza, releasing at each idle point.
    let whole = parse(&format!("{header}{stanza} {stanza}</s:stream>"));
    assert_eq!(whole.1, None);
    let input = format!("{header} {stanza} {stanza}</s:stream>");
    for split in 0..input.len() {
        let mut parser = StreamParser::new(Limits::default());
        let (mut events, error) = feed(&mut parser, &[&input.as_bytes()[..split]]);
        assert_eq!(error, None);
        parser.release_memory();
        let (more, error) = feed(&mut parser, &[&input.as_bytes()[split..]]);
        assert_eq!(error, None, "split at {split}");
        events.extend(more);
        assert_eq!(events, whole.0, "split at {split}");
        assert_eq!(parser.finish(), Ok(()));
    }
}

#[test]
fn released_parser_keeps_its_limits_and_errors() {
    let limits = Limits {
        max_stanza_bytes: 256,
        max_depth: 2,
    };
    let mut parser = StreamParser::new(limits);
    feed(&mut parser, &[HEADER.as_bytes(), b"<presence/>"]);
    parser.release_memory();
    let (_, error) = feed(&mut parser, &[b"<a><b><c/></b></a>"]);
    assert!(
        matches!(error, Some(XmlError::TooDeep { limit: 2 })),
        "{error:?}"
    );

    let mut parser = StreamParser::new(Limits {
        max_stanza_bytes: 256,
        max_depth: 8,
    });
    feed(&mut parser, &[HEADER.as_bytes()]);
    parser.release_memory();
    let (_, error) = feed(
        &mut parser,
        &[format!("<message>{}</message>", "x".repeat(300)).as_bytes()],
    );
    assert!(
        matches!(error, Some(XmlError::StanzaTooBig { .. })),
        "{error:?}"
    );

    // Text outside a stanza is still refused, and the end tag must still match the root.
    let mut parser = StreamParser::new(Limits::default());
    feed(&mut parser, &[HEADER.as_bytes()]);
    parser.release_memory();
    assert!(feed(&mut parser, &[b"</stream:other>"]).1.is_some());
}

#[test]
fn header_reports_its_default_namespace() {
    let ns_of = |header: &str| match parse(header).0.first() {
        Some(StreamEvent::Open(h)) => h.default_ns.clone(),
        other => panic!("no header: {other:?}"),
    };
    assert_eq!(ns_of(HEADER), CLIENT);
    assert_eq!(
        ns_of(
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns=\"jabber:server\">"
        ),
        "jabber:server"
    );
    assert_eq!(
        ns_of("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"),
        ""
    );
    // A prefixed root does not change the default namespace; an unprefixed one in a
    // namespace is that namespace.
    assert_eq!(
        ns_of("<stream xmlns='http://etherx.jabber.org/streams'>"),
        STREAMS
    );
}

#[test]
fn restart_continues_with_the_remaining_bytes() {
    let input = format!(
        "{HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldAByMG0zMG15cjBtMzA=</auth>{HEADER}<iq type='set' id='1'/>"
    );
    let mut parser = StreamParser::new(Limits::default());
    let mut buf = input.as_bytes();
    assert!(matches!(
        parser.next_event(&mut buf),
        Ok(Some(StreamEvent::Open(_)))
    ));
    let auth = parser.next_event(&mut buf);
    assert!(
        matches!(&auth, Ok(Some(StreamEvent::Stanza(e))) if e.name() == "auth"),
        "{auth:?}"
    );
    assert_eq!(
        buf,
        HEADER
            .as_bytes()
            .iter()
            .chain(b"<iq type='set' id='1'/>")
            .copied()
            .collect::<Vec<_>>()
    );
    parser.reset();
    assert!(matches!(
        parser.next_event(&mut buf),
        Ok(Some(StreamEvent::Open(_)))
    ));
    assert!(
        matches!(parser.next_event(&mut buf), Ok(Some(StreamEvent::Stanza(e))) if e.is("iq", CLIENT))
    );
    assert!(buf.is_empty());
}

#[test]
fn stops_right_after_an_empty_element_before_tls_bytes() {
    // RFC 6120 §5.4.3.3: after <starttls/> the next bytes are a TLS handshake.
    let input =
        format!("{HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\x16\x03\x01\x02\x00");
    let mut parser = StreamParser::new(Limits::default());
    let mut buf = input.as_bytes();
    assert!(matches!(
        parser.next_event(&mut buf),
        Ok(Some(StreamEvent::Open(_)))
    ));
    assert!(
        matches!(parser.next_event(&mut buf), Ok(Some(StreamEvent::Stanza(e))) if e.name() == "starttls")
    );
    assert_eq!(buf, b"\x16\x03\x01\x02\x00");
}

#[test]
fn namespaced_attributes_are_named_by_convention() {
    let (events, error) = parse(&format!(
        "{HEADER}<message xmlns:e='urn:example' e:priority='high' xml:lang='de' id='1'/>"
    ));
    assert_eq!(error, None);
    let message = stanzas(&events)[0];
    assert_eq!(message.attr("{urn:example}priority"), Some("high"));
    assert_eq!(message.attr("xml:lang"), Some("de"));
    assert_eq!(message.attr("id"), Some("1"));
    assert_eq!(message.attrs().count(), 3);
}

#[test]
fn clean_close_and_finish() {
    let mut parser = StreamParser::new(Limits::default());
    let (events, error) = feed(
        &mut parser,
        &[HEADER.as_bytes(), b"<presence/></stream:stream>\n "],
    );
    assert_eq!(error, None);
    assert_eq!(events.last(), Some(&StreamEvent::Close));
    assert_eq!(parser.finish(), Ok(()));
}

#[test]
fn finish_before_close_is_an_error() {
    let mut parser = StreamParser::new(Limits::default());
    feed(&mut parser, &[HEADER.as_bytes(), b"<message><body>hi"]);
    let error = parser.finish().err();
    assert!(
        matches!(error, Some(XmlError::NotWellFormed(_))),
        "{error:?}"
    );
    let mut fresh = StreamParser::new(Limits::default());
    assert!(matches!(fresh.finish(), Err(XmlError::NotWellFormed(_))));
}

#[test]
fn text_after_close_is_an_error() {
    let mut parser = StreamParser::new(Limits::default());
    let (_, error) = feed(&mut parser, &[HEADER.as_bytes(), b"</stream:stream>junk"]);
    let error = error.or_else(|| parser.finish().err());
    assert!(
        matches!(error, Some(XmlError::NotWellFormed(_))),
        "{error:?}"
    );
}

#[test]
fn doctype_is_restricted() {
    let (_, error) = parse("<!DOCTYPE stream [<!ENTITY x 'y'>]><stream:stream/>");
    assert_eq!(
        error.as_ref().map(XmlError::condition),
        Some("restricted-xml"),
        "{error:?}"
    );
}

#[test]
fn entity_declaration_is_restricted() {
    let error = error_in_stream(b"<!ENTITY lol 'lol'>");
    assert!(matches!(error, XmlError::Restricted(_)), "{error:?}");
}

#[test]
fn comment_is_restricted() {
    let error = error_in_stream(b"<message><!-- hi --></message>");
    assert!(matches!(error, XmlError::Restricted(_)), "{error:?}");
}

#[test]
fn processing_instruction_is_restricted() {
    let error = error_in_stream(b"<?xml-stylesheet href='x'?>");
    assert!(matches!(error, XmlError::Restricted(_)), "{error:?}");
}

#[test]
fn undeclared_entity_is_restricted() {
    let error = error_in_stream(b"<message><body>&foo;</body></message>");
    assert!(matches!(error, XmlError::Restricted(_)), "{error:?}");
}

#[test]
fn non_utf8_encoding_is_unsupported() {
    let (_, error) = parse("<?xml version='1.0' encoding='ISO-8859-1'?><stream/>");
    assert_eq!(error, Some(XmlError::UnsupportedEncoding));
}

#[test]
fn invalid_utf8_in_text_errors_at_once() {
    let error = error_in_stream(b"<message><body>ok \xff");
    assert!(matches!(error, XmlError::NotWellFormed(_)), "{error:?}");
}

#[test]
fn invalid_utf8_in_attribute_errors_at_once() {
    let error = error_in_stream(b"<message to='\xc3\x28");
    assert!(matches!(error, XmlError::NotWellFormed(_)), "{error:?}");
}

#[test]
fn invalid_xml_character_is_not_well_formed() {
    let error = error_in_stream(b"<message><body>\x01</body></message>");
    assert_eq!(error.condition(), "not-well-formed", "{error:?}");
}

#[test]
fn tls_client_hello_errors_on_its_first_byte() {
    let mut parser = StreamParser::new(Limits::default());
    let mut buf = &b"\x16"[..];
    let result = parser.next_event(&mut buf);
    assert!(
        matches!(result, Err(XmlError::NotWellFormed(_))),
        "{result:?}"
    );
    let mut parser = StreamParser::new(Limits::default());
    let mut buf = &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..];
    assert!(parser.next_event(&mut buf).is_err());
}

#[test]
fn mismatched_end_tag_is_not_well_formed() {
    let error = error_in_stream(b"<message><body>hi</bodx></message>");
    assert!(matches!(error, XmlError::NotWellFormed(_)), "{error:?}");
}

#[test]
fn undeclared_prefix_is_not_well_formed() {
    let error = error_in_stream(b"<foo:message/>");
    assert!(matches!(error, XmlError::NotWellFormed(_)), "{error:?}");
}

#[test]
fn text_outside_stanza_is_bad_format() {
    let error = error_in_stream(b"  hello <presence/>");
    assert_eq!(error, XmlError::TextOutsideStanza);
    assert_eq!(error.condition(), "bad-format");
}

#[test]
fn errors_are_sticky() {
    let mut parser = StreamParser::new(Limits::default());
    let (_, error) = feed(&mut parser, &[HEADER.as_bytes(), b"<a></b>"]);
    assert!(error.is_some());
    let mut buf = &b"<presence/>"[..];
    assert_eq!(parser.next_event(&mut buf).err(), error);
    assert_eq!(parser.finish().err(), error);
}

fn small_limits() -> Limits {
    Limits {
        max_stanza_bytes: 1000,
        max_depth: 4,
    }
}

#[test]
fn stanza_exactly_at_the_limit_is_accepted() {
    let open = b"<message><body>";
    let close = b"</body></message>";
    let body = vec![b'a'; 1000 - open.len() - close.len()];
    let stanza = [&open[..], &body, close].concat();
    assert_eq!(stanza.len(), 1000);
    let mut parser = StreamParser::new(small_limits());
    let (events, error) = feed(&mut parser, &[HEADER.as_bytes(), &stanza, b"<presence/>"]);
    assert_eq!(error, None);
    assert_eq!(stanzas(&events).len(), 2);

    let bigger = [&open[..], &body, b"a", close].concat();
    let mut parser = StreamParser::new(small_limits());
    let (_, error) = feed(&mut parser, &[HEADER.as_bytes(), &bigger]);
    assert_eq!(error, Some(XmlError::StanzaTooBig { limit: 1000 }));
}

#[test]
fn oversized_stanza_is_rejected_before_its_end_arrives() {
    let mut parser = StreamParser::new(small_limits());
    assert!(
        feed(&mut parser, &[HEADER.as_bytes(), b"<message><body>"])
            .1
            .is_none()
    );
    let chunk = [b'x'; 64];
    // 10 chunks are 640 bytes; the error must come with the chunk that
    // crosses 1000 bytes, long before the final chunk.
    for sent in 0..100 {
        let (_, error) = feed(&mut parser, &[&chunk]);
        if let Some(error) = error {
            assert_eq!(error, XmlError::StanzaTooBig { limit: 1000 });
            assert_eq!(error.condition(), "policy-violation");
            assert_eq!(sent, 15, "rejected as soon as the limit is crossed");
            return;
        }
    }
    panic!("a 6 KiB stanza passed a 1000 byte limit");
}

#[test]
fn oversized_attribute_value_is_rejected_before_it_ends() {
    let mut parser = StreamParser::new(small_limits());
    let value = vec![b'v'; 2000];
    let (_, error) = feed(&mut parser, &[HEADER.as_bytes(), b"<message to='", &value]);
    assert_eq!(error, Some(XmlError::StanzaTooBig { limit: 1000 }));
}

#[test]
fn endless_start_tag_is_rejected() {
    let mut parser = StreamParser::new(small_limits());
    let attrs: Vec<u8> = (0..200)
        .flat_map(|i| format!(" a{i}='1'").into_bytes())
        .collect();
    let (_, error) = feed(&mut parser, &[HEADER.as_bytes(), b"<message", &attrs]);
    assert_eq!(error, Some(XmlError::StanzaTooBig { limit: 1000 }));
}

#[test]
fn oversized_stream_header_is_rejected() {
    let mut parser = StreamParser::new(small_limits());
    let value = vec![b'v'; 600];
    let (_, error) = feed(&mut parser, &[b"<stream a='", &value, b"' b='", &value]);
    assert_eq!(error, Some(XmlError::StanzaTooBig { limit: 1000 }));
}

#[test]
fn long_keepalive_whitespace_is_not_a_stanza() {
    let mut parser = StreamParser::new(small_limits());
    let spaces = vec![b' '; 3000];
    let (events, error) = feed(
        &mut parser,
        &[HEADER.as_bytes(), &spaces, b"<presence/>", &spaces],
    );
    assert_eq!(error, None);
    assert_eq!(stanzas(&events).len(), 1);
}

#[test]
fn limit_applies_per_stanza_not_per_stream() {
    let mut parser = StreamParser::new(small_limits());
    let stanza = format!("<message><body>{}</body></message>", "z".repeat(900));
    let stream: Vec<u8> = std::iter::repeat_n(stanza.as_bytes(), 20)
        .flatten()
        .copied()
        .collect();
    let (events, error) = feed(&mut parser, &[HEADER.as_bytes(), &stream]);
    assert_eq!(error, None);
    assert_eq!(stanzas(&events).len(), 20);
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    let (events, error) = feed(
        &mut StreamParser::new(small_limits()),
        &[HEADER.as_bytes(), b"<a><b><c><d>deep</d></c></b></a>"],
    );
    assert_eq!(error, None);
    assert_eq!(stanzas(&events).len(), 1);
}

#[test]
fn too_deep_nesting_is_rejected() {
    let (_, error) = feed(
        &mut StreamParser::new(small_limits()),
        &[HEADER.as_bytes(), b"<a><b><c><d><e>"],
    );
    assert_eq!(error, Some(XmlError::TooDeep { limit: 4 }));
    assert_eq!(error.map(|e| e.condition()), Some("policy-violation"));
}

#[test]
fn parser_and_events_can_move_between_tasks() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<StreamParser>();
    assert_send::<StreamEvent>();
    assert_send::<XmlError>();
}
