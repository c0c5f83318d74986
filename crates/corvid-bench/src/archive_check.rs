//! What `--verify-archive` needs from every session: per-account chat traffic counts, and
//! the answers to the one archive query (XEP-0313) in flight.
//!
//! Each chat message is counted twice per account: as queued (from it, to it) by the
//! scheduler and as delivered (from it, to it) by the receiving session, which reads the
//! sender from the `from` attribute. A server that archives one-to-one chat keeps a copy
//! for each party (XEP-0313 §7: the user's archive holds messages sent and received), so
//! an account's archive must hold at least the messages of this run delivered from or to
//! it. The scenario's check (`scenario/archive.rs`) asks for them page by page; this file
//! builds the query and reads the results and the closing `<fin/>`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use corvid_proto::ns;
use corvid_xml::Element;

use crate::shared::parse_marker;

/// XEP-0313 version 2 (the namespace Prosody 0.12, ejabberd 23.01 and Corvid share).
pub const MAM: &str = "urn:xmpp:mam:2";

/// Results asked for per page; servers lower it to their own cap (Prosody 50 by default).
pub const PAGE_MAX: u32 = 250;

/// Chat traffic of one account in this run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent_from: u32,
    pub sent_to: u32,
    pub delivered_from: u32,
    pub delivered_to: u32,
}

impl Traffic {
    /// Messages the account's archive should hold if the server got every queued one.
    pub fn queued(&self) -> u64 {
        u64::from(self.sent_from) + u64::from(self.sent_to)
    }

    /// Messages that passed through the server from or to the account: its archive must
    /// hold at least these.
    pub fn delivered(&self) -> u64 {
        u64::from(self.delivered_from) + u64::from(self.delivered_to)
    }
}

/// The end of a page: the RSM `<last/>` id to page on from, and whether the server said
/// the query is complete (XEP-0313 §4.3, XEP-0059 §2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fin {
    pub complete: bool,
    pub last: Option<String>,
}

/// What one page brought.
#[derive(Debug, Default)]
pub struct PageResults {
    /// (phase, t) of each result carrying this run's marker, in arrival order.
    pub markers: Vec<(u64, u64)>,
    /// Results of any kind (other runs, other traffic).
    pub results: u64,
    /// The `<fin/>`, or why the query failed.
    pub end: Option<Result<Fin, String>>,
}

/// The query in flight: its id (used as both the IQ id and the `queryid`).
#[derive(Default)]
struct InFlight {
    id: String,
    page: PageResults,
}

pub struct ArchiveCheck {
    run_id: u64,
    /// Per session index: sent_from, sent_to, delivered_from, delivered_to.
    traffic: Vec<[AtomicU32; 4]>,
    in_flight: Mutex<InFlight>,
    /// Woken when the query in flight ends (fin or error).
    answered: tokio::sync::Notify,
}

impl ArchiveCheck {
    pub fn new(run_id: u32, users: u32) -> ArchiveCheck {
        ArchiveCheck {
            run_id: u64::from(run_id),
            traffic: (0..users).map(|_| Default::default()).collect(),
            in_flight: Mutex::default(),
            answered: tokio::sync::Notify::new(),
        }
    }

    fn count(&self, index: u32, which: usize) {
        if let Some(counts) = self.traffic.get(index as usize) {
            counts[which].fetch_add(1, Relaxed);
        }
    }

    /// A chat message queued by the scheduler.
    pub fn queued(&self, from: u32, to: u32) {
        self.count(from, 0);
        self.count(to, 1);
    }

    /// A chat message of this run received live by `to` (`from` if the sender is known).
    pub fn delivered(&self, from: Option<u32>, to: u32) {
        if let Some(from) = from {
            self.count(from, 2);
        }
        self.count(to, 3);
    }

    pub fn traffic(&self, index: u32) -> Traffic {
        let Some(c) = self.traffic.get(index as usize) else {
            return Traffic::default();
        };
        Traffic {
            sent_from: c[0].load(Relaxed),
            sent_to: c[1].load(Relaxed),
            delivered_from: c[2].load(Relaxed),
            delivered_to: c[3].load(Relaxed),
        }
    }

    /// Starts a page under `id`; what an earlier page left is dropped.
    pub fn begin(&self, id: &str) {
        let mut f = self.in_flight.lock().expect("not poisoned");
        f.id = id.to_owned();
        f.page = PageResults::default();
    }

    /// Whether the query in flight has ended (fin or error).
    pub fn ended(&self) -> bool {
        self.in_flight
            .lock()
            .expect("not poisoned")
            .page
            .end
            .is_some()
    }

    /// Waits for the next end of a query. `notify_one` keeps a wake-up for a waiter that
    /// comes later, so an answer arriving before this is called is not missed.
    pub async fn wait(&self) {
        self.answered.notified().await
    }

    /// The page so far (complete once its `end` is set); clears the query in flight.
    pub fn take(&self) -> PageResults {
        let mut f = self.in_flight.lock().expect("not poisoned");
        f.id.clear();
        std::mem::take(&mut f.page)
    }

    /// A message from the server: true if it was a result of the query in flight
    /// (XEP-0313 §4.2: `<result queryid id><forwarded><message>…`).
    pub fn on_message(&self, el: &Element) -> bool {
        let Some(result) = el.get_child("result", MAM) else {
            return false;
        };
        let mut f = self.in_flight.lock().expect("not poisoned");
        if f.id.is_empty() || result.attr("queryid") != Some(f.id.as_str()) {
            return true;
        }
        f.page.results += 1;
        if let Some((run, phase, t)) = forwarded_body(result).and_then(|b| parse_marker(&b))
            && run == self.run_id
        {
            f.page.markers.push((phase, t));
        }
        true
    }

    /// An IQ from the server: true if it ended the query in flight (a result with its
    /// `<fin/>`, or an error).
    pub fn on_iq(&self, el: &Element) -> bool {
        let mut f = self.in_flight.lock().expect("not poisoned");
        if f.id.is_empty() || el.attr("id") != Some(f.id.as_str()) {
            return false;
        }
        f.page.end = Some(match el.attr("type") {
            Some("result") => match el.get_child("fin", MAM) {
                Some(fin) => Ok(read_fin(fin)),
                None => Err("result without <fin/>".into()),
            },
            _ => Err(format!(
                "refused: {}",
                crate::login::stanza_error_condition(el)
            )),
        });
        drop(f);
        self.answered.notify_one();
        true
    }
}

/// The query for the next page of the account's own archive: everything since `start`
/// (XEP-0313 §4.1.1 form field, XEP-0082 time), after RSM id `after` if given.
pub fn page_query(id: &str, start: &str, after: Option<&str>) -> String {
    let after = after
        .map(|a| format!("<after>{}</after>", escape(a)))
        .unwrap_or_default();
    format!(
        "<iq type='set' id='{id}'><query xmlns='{MAM}' queryid='{id}'>\
         <x xmlns='{forms}' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>\
         <field var='start'><value>{start}</value></field></x>\
         <set xmlns='{rsm}'><max>{PAGE_MAX}</max>{after}</set></query></iq>",
        forms = ns::DATA_FORMS,
        rsm = ns::RSM,
    )
}

/// Distinct markers and duplicates among all pages' markers.
pub fn tally(markers: &[(u64, u64)]) -> (u64, u64) {
    let distinct: HashSet<&(u64, u64)> = markers.iter().collect();
    let distinct = distinct.len() as u64;
    (distinct, markers.len() as u64 - distinct)
}

/// The archived message's body. The forwarded stanza (XEP-0297) should be in
/// `jabber:client`; any namespace is accepted, as the check is about what was kept.
fn forwarded_body(result: &Element) -> Option<String> {
    let forwarded = result.get_child("forwarded", ns::FORWARD)?;
    let message = forwarded.children().find(|c| c.name() == "message")?;
    let body = message.children().find(|c| c.name() == "body")?;
    Some(body.text())
}

fn read_fin(fin: &Element) -> Fin {
    let last = fin
        .get_child("set", ns::RSM)
        .and_then(|set| set.get_child("last", ns::RSM))
        .map(|l| l.text())
        .filter(|l| !l.is_empty());
    Fin {
        complete: matches!(fin.attr("complete"), Some("true") | Some("1")),
        last,
    }
}

fn escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::format_marker;

    fn parse(xml: &str) -> Element {
        corvid_xml::parse_element(xml, ns::CLIENT).unwrap()
    }

    fn result(queryid: &str, body: &str) -> Element {
        parse(&format!(
            "<message from='bench1@localhost'><result xmlns='{MAM}' queryid='{queryid}' id='a1'>\
             <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2026-12-06T19:00:00Z'/>\
             <message xmlns='jabber:client' to='bench2@localhost' type='chat'><body>{body}</body></message>\
             </forwarded></result></message>"
        ))
    }

    #[test]
    fn results_of_the_query_in_flight_are_counted_by_run() {
        let check = ArchiveCheck::new(7, 10);
        check.begin("v1");
        assert!(check.on_message(&result("v1", &format_marker(7, 2, 100))));
        assert!(check.on_message(&result("v1", &format_marker(8, 2, 100))));
        assert!(check.on_message(&result("v1", "hello")));
        assert!(
            check.on_message(&result("old", &format_marker(7, 2, 200))),
            "an archive result, though not of this query"
        );
        assert!(!check.on_message(&parse("<message><body>x</body></message>")));
        let fin = parse(&format!(
            "<iq type='result' id='v1'><fin xmlns='{MAM}' complete='true'>\
             <set xmlns='http://jabber.org/protocol/rsm'><first>a1</first><last>a3</last></set></fin></iq>"
        ));
        assert!(!check.on_iq(&parse("<iq type='result' id='other'/>")));
        assert!(check.on_iq(&fin));
        let page = check.take();
        assert_eq!(page.markers, vec![(2, 100)]);
        assert_eq!(page.results, 3);
        assert_eq!(
            page.end,
            Some(Ok(Fin {
                complete: true,
                last: Some("a3".into())
            }))
        );
        assert!(!check.on_iq(&fin), "nothing in flight after take");
    }

    #[test]
    fn a_refused_query_ends_the_page_with_its_condition() {
        let check = ArchiveCheck::new(1, 2);
        check.begin("v2");
        assert!(check.on_iq(&parse(
            "<iq type='error' id='v2'><error type='cancel'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )));
        let end = check.take().end.unwrap();
        assert!(
            end.unwrap_err().contains("service-unavailable"),
            "the condition is reported"
        );
    }

    #[test]
    fn traffic_is_counted_for_both_parties() {
        let check = ArchiveCheck::new(1, 3);
        check.queued(0, 1);
        check.queued(1, 0);
        check.delivered(Some(0), 1);
        check.delivered(None, 0);
        check.queued(5, 9); // outside the fleet: ignored
        let t0 = check.traffic(0);
        assert_eq!((t0.queued(), t0.delivered()), (2, 2));
        assert_eq!(check.traffic(1).delivered_to, 1);
        assert_eq!(check.traffic(2), Traffic::default());
    }

    #[test]
    fn duplicates_are_markers_seen_twice() {
        assert_eq!(tally(&[(1, 5), (1, 6), (1, 5), (2, 5)]), (3, 1));
        assert_eq!(tally(&[]), (0, 0));
    }

    #[test]
    fn the_query_asks_for_a_page_after_the_last_id() {
        let q = parse(&page_query("v3", "2026-12-06T19:00:00Z", Some("a<1")));
        let query = q.get_child("query", MAM).unwrap();
        assert_eq!(query.attr("queryid"), Some("v3"));
        let set = query.get_child("set", ns::RSM).unwrap();
        assert_eq!(set.get_child("after", ns::RSM).unwrap().text(), "a<1");
        assert_eq!(
            set.get_child("max", ns::RSM).unwrap().text(),
            PAGE_MAX.to_string()
        );
        let form = query.get_child("x", ns::DATA_FORMS).unwrap();
        let start = form
            .children()
            .find(|f| f.attr("var") == Some("start"))
            .unwrap();
        assert_eq!(
            start.get_child("value", ns::DATA_FORMS).unwrap().text(),
            "2026-12-06T19:00:00Z"
        );
        assert!(!page_query("v4", "t", None).contains("<after>"));
    }
}
