//! Fuzzes stream framing: arbitrary bytes, split in two at a point the
//! fuzzer picks, go through `StreamParser`; every stanza it yields must
//! serialize to bytes that parse back to the same stanza.
#![no_main]

use corvid_xml::{Element, Limits, StreamEvent, StreamParser};
use libfuzzer_sys::fuzz_target;

const NS: &str = "jabber:client";
const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams'>";

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let split = usize::from(split) * input.len() / 255;
    let (first, second) = input.split_at(split.min(input.len()));
    let limits = Limits {
        max_stanza_bytes: 4096,
        max_depth: 16,
    };
    let mut parser = StreamParser::new(limits);
    for chunk in [first, second] {
        let mut buf = chunk;
        loop {
            match parser.next_event(&mut buf) {
                Ok(Some(StreamEvent::Stanza(stanza))) => assert_round_trips(&stanza),
                Ok(Some(_)) => {}
                Ok(None) => {
                    assert!(buf.is_empty(), "Ok(None) left bytes unconsumed");
                    break;
                }
                Err(_) => return,
            }
        }
    }
    let _ = parser.finish();
});

/// Serializes `stanza` inside a stream header and parses it back.
fn assert_round_trips(stanza: &Element) {
    let mut bytes = HEADER.to_vec();
    stanza.write_to(&mut bytes, NS);
    // Escaping and prefix declarations may make the copy larger than the
    // original, so it gets a roomier size limit.
    let limits = Limits {
        max_stanza_bytes: 1 << 20,
        max_depth: 16,
    };
    let mut parser = StreamParser::new(limits);
    let mut buf = &bytes[..];
    let mut reparsed = None;
    loop {
        match parser.next_event(&mut buf) {
            Ok(Some(StreamEvent::Stanza(e))) => {
                reparsed = Some(e);
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(error) => panic!(
                "serialized stanza does not parse ({error}): {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    assert_eq!(
        reparsed.as_ref(),
        Some(stanza),
        "round trip changed the stanza"
    );
}
