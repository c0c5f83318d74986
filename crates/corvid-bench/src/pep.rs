//! What a session does in the PEP scenario (XEP-0163): which role its index gives it
//! (publisher, contact listening for `tune+notify`, or contact without it), the caps it
//! announces, and the accounting of every notification it receives: each item must
//! reach each listening contact exactly once and no other contact at all.
//!
//! The item carries the bench marker in its `<title>`, so latency is measured from the
//! publish's intended send time to the notification's arrival, as for chat.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use corvid_proto::ns;
use corvid_xml::Element;

use crate::caps::{Caps, TUNE};
use crate::shared::{Marker, Shared};

pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// Prefix of the ids of publish IQs, so their results can be counted.
pub const PUBLISH_ID: &str = "pep";

/// What session `index` is in the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Publishes items; its caps lack `+notify`, so it should not get its own items.
    Publisher,
    /// A contact of every publisher whose caps advertise `tune+notify`.
    Listener,
    /// A contact of every publisher whose caps do not: it must receive nothing.
    Silent,
}

/// Sessions `0..publishers` publish, the next `listeners` listen, the last `silent`
/// are contacts without `+notify`.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub publishers: u32,
    pub listeners: u32,
    pub silent: u32,
}

impl Plan {
    pub fn role(&self, index: u32) -> Role {
        if index < self.publishers {
            Role::Publisher
        } else if index < self.publishers + self.listeners {
            Role::Listener
        } else {
            Role::Silent
        }
    }
}

#[derive(Default)]
pub struct Counters {
    /// disco#info requests about our caps that we answered (XEP-0115 §6.2).
    pub caps_queries: AtomicU64,
    /// Publish IQs the server acknowledged.
    pub published: AtomicU64,
    /// Current-phase notifications a listener received a second time.
    pub duplicates: AtomicU64,
    /// Current-phase notifications to contacts whose caps lack `+notify`.
    pub to_silent: AtomicU64,
    /// Current-phase notifications to the publishers themselves (no `+notify` either).
    pub to_publishers: AtomicU64,
}

/// The PEP state every session shares.
pub struct Pep {
    pub plan: Plan,
    listen: Caps,
    quiet: Caps,
    pub counters: Counters,
    /// (receiver, marker time) of every current-phase notification a listener got.
    seen: Mutex<HashMap<(u32, u64), u32>>,
}

impl Pep {
    pub fn new(plan: Plan) -> Pep {
        Pep {
            plan,
            listen: Caps::bench_client(true),
            quiet: Caps::bench_client(false),
            counters: Counters::default(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn caps(&self, index: u32) -> &Caps {
        match self.plan.role(index) {
            Role::Listener => &self.listen,
            Role::Publisher | Role::Silent => &self.quiet,
        }
    }

    /// Available presence with our caps (XEP-0115 §4).
    pub fn presence(&self, index: u32) -> String {
        format!(
            "<presence>{}</presence>",
            self.caps(index).presence_element()
        )
    }

    /// Forgets the notifications of the previous phase (call with `next_phase`).
    pub fn begin_phase(&self) {
        self.seen.lock().expect("not poisoned").clear();
        for c in [
            &self.counters.duplicates,
            &self.counters.to_silent,
            &self.counters.to_publishers,
        ] {
            c.store(0, Relaxed);
        }
    }

    /// Accounts for a `<message/>` carrying a pubsub#event for session `index`; false
    /// if it carries none.
    pub fn on_message(&self, shared: &Shared, index: u32, el: &Element) -> bool {
        let Some(event) = el.get_child("event", PUBSUB_EVENT) else {
            return false;
        };
        // The last item, sent again when a contact comes online, has a delay stamp.
        let delayed = el.has_child("delay", ns::DELAY);
        for title in tune_titles(event) {
            match shared.classify(&title) {
                Marker::Current(t) if !delayed => self.on_current(shared, index, t),
                Marker::Current(_) | Marker::Stale => {
                    shared.stats.counters.stale.fetch_add(1, Relaxed);
                }
                Marker::Foreign => {}
            }
        }
        true
    }

    fn on_current(&self, shared: &Shared, index: u32, t: u64) {
        match self.plan.role(index) {
            Role::Listener => {
                let first = {
                    let mut seen = self.seen.lock().expect("not poisoned");
                    let count = seen.entry((index, t)).or_insert(0);
                    *count += 1;
                    *count == 1
                };
                if first {
                    let now = shared.micros_since_epoch(Instant::now());
                    shared.stats.record_delivery(now.saturating_sub(t));
                } else {
                    self.counters.duplicates.fetch_add(1, Relaxed);
                }
            }
            Role::Silent => {
                self.counters.to_silent.fetch_add(1, Relaxed);
            }
            Role::Publisher => {
                self.counters.to_publishers.fetch_add(1, Relaxed);
            }
        }
    }
}

/// The `<title>`s of the tune items in an `<event/>` (XEP-0060 §7.1.2.1, XEP-0118 §3).
fn tune_titles(event: &Element) -> Vec<String> {
    event
        .children()
        .filter(|items| items.is("items", PUBSUB_EVENT) && items.attr("node") == Some(TUNE))
        .flat_map(|items| items.children().filter(|i| i.is("item", PUBSUB_EVENT)))
        .filter_map(|item| item.get_child("tune", TUNE))
        .filter_map(|tune| tune.get_child("title", TUNE).map(Element::text))
        .collect()
}

/// XEP-0163 §3 / XEP-0060 §7.1: publish a tune; the first publish creates the node with
/// the PEP defaults (access model `presence`). One item id, so storage stays one item.
pub fn publish_stanza(k: u64, marker: &str) -> String {
    format!(
        "<iq type='set' id='{PUBLISH_ID}{k}'><pubsub xmlns='{PUBSUB}'><publish node='{TUNE}'><item id='current'><tune xmlns='{TUNE}'><artist>corvid-bench</artist><title>{marker}</title><length>1</length></tune></item></publish></pubsub></iq>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    fn notification(marker: &str, delayed: bool) -> Element {
        let delay = if delayed {
            "<delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/>"
        } else {
            ""
        };
        let xml = format!(
            "<message from='bench1@localhost' to='bench2@localhost/r' type='headline'><event xmlns='{PUBSUB_EVENT}'><items node='{TUNE}'><item id='current'><tune xmlns='{TUNE}'><title>{marker}</title></tune></item></items></event>{delay}</message>"
        );
        corvid_xml::parse_element(&xml, ns::CLIENT).unwrap()
    }

    #[test]
    fn roles_follow_the_index() {
        let plan = Plan {
            publishers: 2,
            listeners: 3,
            silent: 1,
        };
        let roles: Vec<Role> = (0..6).map(|i| plan.role(i)).collect();
        assert_eq!(
            roles,
            [
                Role::Publisher,
                Role::Publisher,
                Role::Listener,
                Role::Listener,
                Role::Listener,
                Role::Silent
            ]
        );
        let pep = Pep::new(plan);
        assert!(pep.presence(2).contains(&Caps::bench_client(true).ver));
        assert!(pep.presence(5).contains(&Caps::bench_client(false).ver));
    }

    #[test]
    fn each_listener_counts_an_item_once_and_silent_contacts_are_caught() {
        let shared = crate::session::tests::shared(false);
        let pep = Pep::new(Plan {
            publishers: 1,
            listeners: 2,
            silent: 1,
        });
        let item = notification(&shared.marker(10), false);
        for receiver in [1, 2, 1, 3, 0] {
            assert!(pep.on_message(&shared, receiver, &item));
        }
        assert_eq!(Stats::get(&shared.stats.counters.delivered), 2);
        assert_eq!(Stats::get(&pep.counters.duplicates), 1);
        assert_eq!(Stats::get(&pep.counters.to_silent), 1);
        assert_eq!(Stats::get(&pep.counters.to_publishers), 1);

        // The last item replayed at presence, or one of an earlier phase: stale.
        pep.on_message(&shared, 1, &notification(&shared.marker(20), true));
        let old = shared.marker(30);
        shared.next_phase();
        pep.begin_phase();
        pep.on_message(&shared, 1, &notification(&old, false));
        assert_eq!(Stats::get(&shared.stats.counters.stale), 2);
        assert_eq!(Stats::get(&pep.counters.duplicates), 0);

        let chat = corvid_xml::parse_element("<message><body>hi</body></message>", ns::CLIENT);
        assert!(!pep.on_message(&shared, 1, &chat.unwrap()));
    }

    #[test]
    fn the_publish_parses_and_carries_the_marker() {
        let el =
            corvid_xml::parse_element(&publish_stanza(7, "bench r=1 p=2 t=3"), ns::CLIENT).unwrap();
        assert_eq!(el.attr("id"), Some("pep7"));
        let publish = el
            .get_child("pubsub", PUBSUB)
            .and_then(|p| p.get_child("publish", PUBSUB))
            .unwrap();
        assert_eq!(publish.attr("node"), Some(TUNE));
        let title = publish
            .get_child("item", PUBSUB)
            .and_then(|i| i.get_child("tune", TUNE))
            .and_then(|t| t.get_child("title", TUNE))
            .map(Element::text);
        assert_eq!(title.as_deref(), Some("bench r=1 p=2 t=3"));
    }
}
