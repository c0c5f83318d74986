//! One established session: sends what the scenario hands it, answers what a client
//! must answer (pings, roster pushes, subscription requests when asked to), and turns
//! every bench stanza it receives into a latency sample.
//!
//! One task per session, waiting on the socket, its command queue and the stop signal.
//! It holds the connection, a 4 KiB read buffer and the parser; nothing else.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use corvid_proto::ns;
use corvid_xml::{Element, StreamEvent};
use tokio::sync::{mpsc, watch};

use crate::login::{stanza_error_condition, stream_error_condition};
use crate::shared::{Marker, Shared};
use corvid_client::transport::{Conn, ReadError};

/// Stanzas queued for one session before the scheduler counts a drop.
pub const QUEUE: usize = 64;

const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";

/// A serialized stanza for the session to send.
pub struct Command(pub String);

/// Which session this is: its index and bare JID.
struct Me {
    index: u32,
    own: String,
}

/// How the session ended.
enum End {
    /// We were told to stop and closed the stream.
    Stopped,
    /// The server ended the stream or the connection.
    Lost(String),
}

pub async fn run(
    shared: Arc<Shared>,
    index: u32,
    mut conn: Conn,
    mut commands: mpsc::Receiver<Command>,
    mut stop: watch::Receiver<bool>,
) {
    let me = Me {
        index,
        own: shared.accounts.bare_jid(index),
    };
    let end = drive(&shared, &me, &mut conn, &mut commands, &mut stop).await;
    match end {
        End::Stopped => close(&mut conn).await,
        End::Lost(why) => {
            if !*stop.borrow() {
                shared.stats.counters.disconnects.fetch_add(1, Relaxed);
                shared.stats.error(format!("disconnect: {why}"));
            }
        }
    }
}

async fn drive(
    shared: &Shared,
    me: &Me,
    conn: &mut Conn,
    commands: &mut mpsc::Receiver<Command>,
    stop: &mut watch::Receiver<bool>,
) -> End {
    // RFC 6121 §4.2: initial presence makes the session available for messages to
    // the bare JID (otherwise they would go to offline storage).
    if let Err(e) = conn
        .send(shared.initial_presence(me.index).as_bytes())
        .await
    {
        return End::Lost(e.kind().to_string());
    }
    let mut out = String::new();
    loop {
        loop {
            match conn.parse_buffered() {
                Ok(Some(event)) => {
                    if let Some(end) = on_event(shared, me, event, &mut out) {
                        return end;
                    }
                }
                Ok(None) => break,
                Err(e) => return End::Lost(e.to_string()),
            }
        }
        if !out.is_empty() {
            if let Err(e) = conn.send(out.as_bytes()).await {
                return End::Lost(e.kind().to_string());
            }
            out.clear();
        }
        if *stop.borrow() {
            return End::Stopped;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return End::Stopped,
            command = commands.recv() => match command {
                Some(Command(stanza)) => {
                    out.push_str(&stanza);
                    // Write what else is queued in the same syscall.
                    while out.len() < 16 * 1024 {
                        match commands.try_recv() {
                            Ok(Command(more)) => out.push_str(&more),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = conn.send(out.as_bytes()).await {
                        return End::Lost(e.kind().to_string());
                    }
                    out.clear();
                    if out.capacity() > 64 * 1024 {
                        out = String::new();
                    }
                }
                None => return End::Stopped,
            },
            read = conn.fill() => match read {
                Ok(()) => {}
                Err(ReadError::Eof) => return End::Lost("connection closed".into()),
                Err(e) => return End::Lost(e.to_string()),
            },
        }
    }
}

/// Handles one event; returns how the session ends if it does.
fn on_event(shared: &Shared, me: &Me, event: StreamEvent, out: &mut String) -> Option<End> {
    match event {
        StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => Some(End::Lost(format!(
            "stream error {}",
            stream_error_condition(&el)
        ))),
        StreamEvent::Stanza(el) => {
            on_stanza(shared, me, &el, out);
            None
        }
        StreamEvent::Close => Some(End::Lost("stream closed by server".into())),
        StreamEvent::Open(_) => Some(End::Lost("unexpected stream header".into())),
    }
}

fn on_stanza(shared: &Shared, me: &Me, el: &Element, out: &mut String) {
    if el.ns() != ns::CLIENT {
        return;
    }
    match el.name() {
        "message" => on_message(shared, me.index, el),
        "iq" if shared.archive.as_ref().is_some_and(|a| a.on_iq(el)) => {}
        "presence" => on_presence(shared, &me.own, el, out),
        "iq" => on_iq(shared, me.index, el, out),
        _ => {}
    }
}

fn on_message(shared: &Shared, index: u32, el: &Element) {
    let stats = &shared.stats;
    if el.attr("type") == Some("error") {
        stats.counters.stanza_errors.fetch_add(1, Relaxed);
        stats.error(format!("message-error: {}", stanza_error_condition(el)));
        return;
    }
    if let Some(pep) = &shared.pep
        && pep.on_message(shared, index, el)
    {
        return;
    }
    if let Some(archive) = &shared.archive
        && archive.on_message(el)
    {
        return;
    }
    let Some(body) = el.get_child("body", ns::CLIENT) else {
        return;
    };
    // Offline storage and MUC history come with a delay stamp: never a fresh delivery.
    let delayed = el.has_child("delay", ns::DELAY);
    let fresh = record_marker(shared, &body.text(), delayed);
    if fresh && let Some(archive) = &shared.archive {
        let from = el.attr("from").and_then(|f| shared.accounts.index_of(f));
        archive.delivered(from, index);
    }
}

/// Records a bench marker; true if it was a fresh delivery of the current phase.
fn record_marker(shared: &Shared, text: &str, delayed: bool) -> bool {
    match shared.classify(text) {
        Marker::Current(t) if !delayed => {
            let now = shared.micros_since_epoch(Instant::now());
            shared.stats.record_delivery(now.saturating_sub(t));
            true
        }
        Marker::Current(_) | Marker::Stale => {
            shared.stats.counters.stale.fetch_add(1, Relaxed);
            false
        }
        Marker::Foreign => false,
    }
}

fn on_presence(shared: &Shared, own: &str, el: &Element, out: &mut String) {
    let stats = &shared.stats;
    let from = el.attr("from").unwrap_or_default();
    let from_bare = from.split('/').next().unwrap_or_default();
    match el.attr("type") {
        Some("subscribe") if shared.auto_accept_subscriptions => {
            out.push_str(&format!(
                "<presence to='{}' type='subscribed'/>",
                xml_attr(from_bare)
            ));
        }
        Some("subscribed") => {
            stats.counters.subscribed.fetch_add(1, Relaxed);
        }
        Some("error") => {
            stats.counters.stanza_errors.fetch_add(1, Relaxed);
            stats.error(format!("presence-error: {}", stanza_error_condition(el)));
        }
        None => {
            if let Some(x) = el.get_child("x", MUC_USER) {
                on_muc_presence(shared, from_bare, x, out);
            }
            if from_bare == own {
                return;
            }
            if let Some(status) = el.get_child("status", ns::CLIENT) {
                record_marker(shared, &status.text(), el.has_child("delay", ns::DELAY));
            }
        }
        _ => {}
    }
}

/// XEP-0045 §7.2: status 110 marks our own occupant presence; 201 says we created the
/// room, which stays locked until its owner accepts the default configuration (§10.1.2).
fn on_muc_presence(shared: &Shared, room: &str, x: &Element, out: &mut String) {
    let codes: Vec<&str> = x
        .children()
        .filter(|c| c.is("status", MUC_USER))
        .filter_map(|c| c.attr("code"))
        .collect();
    if !codes.contains(&"110") {
        return;
    }
    shared.stats.counters.muc_joined.fetch_add(1, Relaxed);
    if codes.contains(&"201") {
        shared.stats.counters.muc_created.fetch_add(1, Relaxed);
        out.push_str(&format!(
            "<iq type='set' to='{}' id='instant'><query xmlns='{MUC_OWNER}'><x xmlns='{}' type='submit'/></query></iq>",
            xml_attr(room),
            ns::DATA_FORMS
        ));
    }
}

fn on_iq(shared: &Shared, index: u32, el: &Element, out: &mut String) {
    let stats = &shared.stats;
    let id = el.attr("id").unwrap_or_default();
    match el.attr("type") {
        Some("get") | Some("set") => {
            let to = el
                .attr("from")
                .map(|f| format!(" to='{}'", xml_attr(f)))
                .unwrap_or_default();
            let known = el.has_child("ping", ns::PING) || el.has_child("query", ns::ROSTER);
            let disco = el.get_child("query", ns::DISCO_INFO);
            if let (Some(pep), Some(query)) = (&shared.pep, disco) {
                // XEP-0115 §6.2: a server asking what our caps `ver` stands for.
                pep.counters.caps_queries.fetch_add(1, Relaxed);
                let from = xml_attr(el.attr("from").unwrap_or_default());
                let node = query.attr("node").map(xml_attr);
                out.push_str(
                    &pep.caps(index)
                        .disco_result(&xml_attr(id), &from, node.as_deref()),
                );
            } else if known {
                // XEP-0199 pings and RFC 6121 §2.1.6 roster pushes want a result.
                out.push_str(&format!("<iq type='result' id='{}'{to}/>", xml_attr(id)));
            } else {
                out.push_str(&format!(
                    "<iq type='error' id='{}'{to}><error type='cancel'><service-unavailable xmlns='{}'/></error></iq>",
                    xml_attr(id),
                    ns::STANZA_ERRORS
                ));
            }
        }
        Some("result") => {
            if let Some(pep) = &shared.pep
                && id.starts_with(crate::pep::PUBLISH_ID)
            {
                pep.counters.published.fetch_add(1, Relaxed);
            }
            if let Some(query) = el.get_child("query", ns::ROSTER) {
                let both = query
                    .children()
                    .filter(|i| i.attr("subscription") == Some("both"))
                    .count();
                stats.counters.rosters.fetch_add(1, Relaxed);
                stats.counters.roster_both.fetch_add(both as u64, Relaxed);
            }
        }
        Some("error") => {
            stats.counters.stanza_errors.fetch_add(1, Relaxed);
            stats.error(format!("iq-error ({id}): {}", stanza_error_condition(el)));
        }
        _ => {}
    }
}

/// Closes the stream (RFC 6120 §4.4) and waits briefly for the server's close.
async fn close(conn: &mut Conn) {
    if conn.send(b"</stream:stream>").await.is_err() {
        return;
    }
    let wait = async {
        loop {
            match conn.next_event().await {
                Ok(StreamEvent::Close) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut conn.io).await;
}

/// Escapes a value from the server for an attribute we write back.
fn xml_attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('\'', "&apos;")
        .replace('<', "&lt;")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cli::{MechanismChoice, TlsMode};
    use crate::scram_cache::SaltedPasswordCache;
    use crate::shared::{Accounts, LoginSettings};

    pub(crate) fn shared(auto_accept: bool) -> Shared {
        let accounts = Accounts {
            domain: "localhost".into(),
            prefix: "bench".into(),
            first: 1,
            password: "p".into(),
            resource: "r".into(),
        };
        let login = LoginSettings {
            targets: vec!["127.0.0.1:5222".parse().unwrap()],
            tls: TlsMode::None,
            websocket: None,
            connector: None,
            mechanism: MechanismChoice::Auto,
            register: false,
            timeout: Duration::from_secs(1),
        };
        let mut s = Shared::new(accounts, login, SaltedPasswordCache::in_memory());
        s.auto_accept_subscriptions = auto_accept;
        s
    }

    fn me() -> Me {
        Me {
            index: 0,
            own: "bench1@localhost".into(),
        }
    }

    fn parse(xml: &str) -> Element {
        corvid_xml::parse_element(xml, ns::CLIENT).unwrap()
    }

    #[test]
    fn a_bench_message_becomes_a_latency_sample() {
        let s = shared(false);
        let body = s.marker(0);
        let mut out = String::new();
        on_stanza(
            &s,
            &me(),
            &parse(&format!(
                "<message from='bench2@localhost/r'><body>{body}</body></message>"
            )),
            &mut out,
        );
        let delayed = format!(
            "<message><body>{body}</body><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/></message>"
        );
        on_stanza(&s, &me(), &parse(&delayed), &mut out);
        on_stanza(
            &s,
            &me(),
            &parse("<message><body>bench r=1 p=9 t=5</body></message>"),
            &mut out,
        );
        assert_eq!(Stats::get(&s.stats.counters.delivered), 1);
        assert_eq!(Stats::get(&s.stats.counters.stale), 2);
        assert!(out.is_empty());
    }

    #[test]
    fn pings_and_subscriptions_are_answered() {
        let s = shared(true);
        let mut out = String::new();
        on_stanza(
            &s,
            &me(),
            &parse("<iq type='get' id='p1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"),
            &mut out,
        );
        assert_eq!(out, "<iq type='result' id='p1' to='localhost'/>");
        out.clear();
        on_stanza(
            &s,
            &me(),
            &parse("<presence type='subscribe' from='bench2@localhost'/>"),
            &mut out,
        );
        assert_eq!(out, "<presence to='bench2@localhost' type='subscribed'/>");
        out.clear();
        on_stanza(
            &s,
            &me(),
            &parse("<iq type='get' id='v' from='x'><query xmlns='jabber:iq:version'/></iq>"),
            &mut out,
        );
        assert!(out.contains("service-unavailable"), "{out}");
    }

    #[test]
    fn own_presence_is_not_a_delivery_and_muc_creation_unlocks_the_room() {
        let s = shared(false);
        let mut out = String::new();
        let status = s.marker(0);
        on_stanza(
            &s,
            &me(),
            &parse(&format!(
                "<presence from='bench1@localhost/r'><status>{status}</status></presence>"
            )),
            &mut out,
        );
        assert_eq!(Stats::get(&s.stats.counters.delivered), 0);
        let created = "<presence from='room1@conference.localhost/u1'><x xmlns='http://jabber.org/protocol/muc#user'><item role='moderator'/><status code='110'/><status code='201'/></x></presence>";
        on_stanza(&s, &me(), &parse(created), &mut out);
        assert_eq!(Stats::get(&s.stats.counters.muc_joined), 1);
        assert!(
            out.contains("to='room1@conference.localhost'") && out.contains("muc#owner"),
            "{out}"
        );
    }

    #[test]
    fn caps_queries_get_the_features_of_the_sessions_role() {
        use crate::caps::{CAPS_NODE, Caps};
        use crate::pep::{Pep, Plan};
        let mut s = shared(false);
        s.pep = Some(Pep::new(Plan {
            publishers: 1,
            listeners: 1,
            silent: 0,
        }));
        let listen = Caps::bench_client(true);
        let query = format!(
            "<iq type='get' id='disco' from='bench1@localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='{CAPS_NODE}#{}'/></iq>",
            listen.ver
        );
        let listener = Me {
            index: 1,
            own: "bench2@localhost".into(),
        };
        let mut out = String::new();
        on_stanza(&s, &listener, &parse(&query), &mut out);
        let answer = parse(&out);
        assert_eq!(answer.attr("type"), Some("result"));
        assert_eq!(answer.attr("to"), Some("bench1@localhost"));
        let q = answer.get_child("query", ns::DISCO_INFO).unwrap();
        assert!(q.attr("node").unwrap().ends_with(&listen.ver));
        assert!(out.contains("tune+notify"), "{out}");
        out.clear();
        on_stanza(&s, &me(), &parse(&query), &mut out);
        assert!(
            out.contains("type='result'") && !out.contains("+notify"),
            "{out}"
        );
        let counters = &s.pep.as_ref().unwrap().counters;
        assert_eq!(Stats::get(&counters.caps_queries), 2);
    }

    use crate::stats::Stats;
}
