//! Throughput of stream framing and stanza serialization on a realistic c2s
//! mix: chat messages (body, thread, receipt request, chat state), presences
//! with entity caps and vCard update, roster, disco and ping IQs.
//!
//! Run: `cargo bench -p corvid-xml --bench framing`

use std::hint::black_box;

use corvid_xml::{Element, Limits, StreamEvent, StreamParser};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='capulet.lit' version='1.0' xml:lang='en'>";
const CHUNK: usize = 4096;

fn chat(i: usize) -> String {
    format!(
        "<message from='romeo@montague.lit/orchard' to='juliet@capulet.lit/balcony' type='chat' \
         id='msg-{i}' xml:lang='en'><body>But soft, what light through yonder window breaks? \
         It is the east, and Juliet is the sun &amp; more — 第{i}条消息</body>\
         <thread>e0ffe42b28561960c6b12b944a092794b9683a38</thread>\
         <request xmlns='urn:xmpp:receipts'/>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )
}

fn presence(i: usize) -> String {
    format!(
        "<presence from='nurse{i}@capulet.lit/home'><show>away</show><status>At the market</status>\
         <priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
         node='https://gajim.org' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/>\
         <x xmlns='vcard-temp:x:update'><photo>01b87fcd030b72895ff8e88db57ec525450f000d</photo></x>\
         </presence>"
    )
}

fn roster_push(i: usize) -> String {
    format!(
        "<iq type='set' id='roster-{i}'><query xmlns='jabber:iq:roster' ver='ver{i}'>\
         <item jid='tybalt{i}@capulet.lit' name='Tybalt' subscription='both'><group>Enemies</group>\
         </item></query></iq>"
    )
}

fn disco_result(i: usize) -> String {
    format!(
        "<iq type='result' id='disco-{i}' from='capulet.lit' to='romeo@montague.lit/orchard'>\
         <query xmlns='http://jabber.org/protocol/disco#info'>\
         <identity category='server' type='im' name='Corvid'/>\
         <feature var='http://jabber.org/protocol/disco#info'/>\
         <feature var='urn:xmpp:ping'/><feature var='jabber:iq:roster'/>\
         <feature var='urn:xmpp:carbons:2'/></query></iq>"
    )
}

fn ping(i: usize) -> String {
    format!("<iq type='get' id='ping-{i}' to='capulet.lit'><ping xmlns='urn:xmpp:ping'/></iq>")
}

/// A stream of `rounds` × 10 stanzas, half of them chat messages.
fn realistic_stream(rounds: usize) -> (Vec<u8>, u64) {
    let mut out = String::from(HEADER);
    let mut stanzas = 0;
    for r in 0..rounds {
        for k in 0..5 {
            out.push_str(&chat(r * 5 + k));
        }
        out.push_str(&presence(r));
        out.push_str(&presence(r + 1));
        out.push_str(&roster_push(r));
        out.push_str(&disco_result(r));
        out.push_str(&ping(r));
        // A whitespace keepalive now and then.
        out.push(' ');
        stanzas += 10;
    }
    (out.into_bytes(), stanzas)
}

fn parse_in_chunks(bytes: &[u8]) -> Vec<Element> {
    let mut parser = StreamParser::new(Limits::default());
    let mut stanzas = Vec::new();
    for chunk in bytes.chunks(CHUNK) {
        let mut buf = chunk;
        loop {
            match parser.next_event(&mut buf) {
                Ok(Some(StreamEvent::Stanza(stanza))) => stanzas.push(stanza),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => panic!("benchmark stream rejected: {error}"),
            }
        }
    }
    stanzas
}

fn bench_parse(c: &mut Criterion) {
    let (bytes, stanzas) = realistic_stream(200);
    assert_eq!(parse_in_chunks(&bytes).len() as u64, stanzas);
    let mut group = c.benchmark_group("parse_4k_chunks");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("bytes", |b| b.iter(|| parse_in_chunks(black_box(&bytes))));
    group.throughput(Throughput::Elements(stanzas));
    group.bench_function("stanzas", |b| b.iter(|| parse_in_chunks(black_box(&bytes))));
    group.finish();
}

fn bench_serialize(c: &mut Criterion) {
    let (bytes, _) = realistic_stream(200);
    let stanzas = parse_in_chunks(&bytes);
    let mut out = Vec::with_capacity(bytes.len());
    for stanza in &stanzas {
        stanza.write_to(&mut out, "jabber:client");
    }
    let mut group = c.benchmark_group("serialize");
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("bytes", |b| {
        b.iter(|| {
            out.clear();
            for stanza in black_box(&stanzas) {
                stanza.write_to(&mut out, "jabber:client");
            }
            black_box(out.len())
        })
    });
    group.throughput(Throughput::Elements(stanzas.len() as u64));
    group.bench_function("stanzas", |b| {
        b.iter(|| {
            out.clear();
            for stanza in black_box(&stanzas) {
                stanza.write_to(&mut out, "jabber:client");
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_parse, bench_serialize);
criterion_main!(benches);
