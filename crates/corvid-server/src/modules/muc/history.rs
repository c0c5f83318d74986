//! Discussion history (XEP-0045 §7.2.15): the last messages of a room, bounded, and the
//! selection a new occupant asks for with `<history maxstanzas maxchars seconds since/>`.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use corvid_proto::ns;
use corvid_xml::Element;

/// One reflected groupchat message (`from` room/nick, no `to`) and when it was sent.
#[derive(Clone, Debug)]
pub struct Entry {
    pub message: Element,
    pub at: SystemTime,
    /// Its serialized length, which `maxchars` counts (§7.2.15).
    pub chars: usize,
}

/// Bytes of history one room keeps at most, whatever its message count (a bound on what
/// large messages can make a room hold).
pub const MAX_HISTORY_BYTES: usize = 512 * 1024;

#[derive(Clone, Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    bytes: usize,
}

/// What a new occupant asked for; every limit applies (§7.2.15: "the service MUST
/// return the intersection").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub max_stanzas: Option<usize>,
    pub max_chars: Option<usize>,
    pub seconds: Option<u64>,
    pub since: Option<SystemTime>,
}

impl Request {
    /// Reads the `<history/>` child of the join element; unparsable attributes are ignored.
    pub fn parse(join: Option<&Element>) -> Request {
        let Some(history) = join.and_then(|x| x.get_child("history", ns::MUC)) else {
            return Request::default();
        };
        let number = |name| {
            history
                .attr(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Request {
            max_stanzas: number("maxstanzas").map(|n| n.min(usize::MAX as u64) as usize),
            max_chars: number("maxchars").map(|n| n.min(usize::MAX as u64) as usize),
            seconds: number("seconds"),
            since: history.attr("since").and_then(parse_datetime),
        }
    }
}

impl History {
    /// Appends a message, dropping the oldest beyond `capacity`.
    pub fn push(&mut self, message: Element, at: SystemTime, capacity: usize) {
        if capacity == 0 {
            self.entries.clear();
            self.bytes = 0;
            return;
        }
        let chars = message.to_bytes(ns::CLIENT).len();
        self.bytes += chars;
        self.entries.push_back(Entry { message, at, chars });
        self.truncate(capacity);
    }

    /// Drops the oldest messages beyond a (new, smaller) capacity or the byte bound.
    pub fn truncate(&mut self, capacity: usize) {
        while self.entries.len() > capacity
            || (self.bytes > MAX_HISTORY_BYTES && self.entries.len() > 1)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.chars;
            }
        }
    }

    /// Puts older messages (oldest first) before those kept, within `capacity`: the
    /// history a room had before a restart, read back from its archive.
    pub fn prepend_older(&mut self, older: Vec<(Element, SystemTime)>, capacity: usize) {
        let newer = std::mem::take(self);
        for (message, at) in older {
            self.push(message, at, capacity);
        }
        for entry in newer.entries {
            self.push(entry.message, entry.at, capacity);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The newest messages satisfying every limit of `request`, oldest first.
    pub fn select(&self, request: &Request, now: SystemTime) -> Vec<&Entry> {
        let not_before = [
            request.since,
            request
                .seconds
                .and_then(|s| now.checked_sub(Duration::from_secs(s))),
        ]
        .into_iter()
        .flatten()
        .max();
        let mut chosen = Vec::new();
        let mut chars = 0usize;
        for entry in self.entries.iter().rev() {
            if request.max_stanzas.is_some_and(|max| chosen.len() >= max) {
                break;
            }
            if not_before.is_some_and(|t| entry.at < t) {
                break;
            }
            chars = chars.saturating_add(entry.chars);
            if request.max_chars.is_some_and(|max| chars > max) {
                break;
            }
            chosen.push(entry);
        }
        chosen.reverse();
        chosen
    }
}

/// A history message as delivered: with a XEP-0203 `<delay/>` from the room.
pub fn delayed(entry: &Entry, room: &str) -> Element {
    let mut message = entry.message.clone();
    message.append_child(
        Element::new("delay", ns::DELAY)
            .with_attr("from", room)
            .with_attr("stamp", corvid_proto::time::format_datetime(entry.at)),
    );
    message
}

pub use corvid_proto::time::parse_datetime;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn message(n: usize) -> Element {
        Element::new("message", ns::CLIENT).with_attr("id", n.to_string())
    }

    fn history(n: usize, start: SystemTime) -> History {
        let mut h = History::default();
        for i in 0..n {
            h.push(message(i), start + Duration::from_secs(i as u64 * 10), 5);
        }
        h
    }

    fn ids(entries: &[&Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.message.attr("id").unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn keeps_only_the_newest_up_to_capacity() {
        let h = history(8, UNIX_EPOCH);
        assert_eq!(h.len(), 5);
        assert_eq!(
            ids(&h.select(&Request::default(), UNIX_EPOCH)),
            ["3", "4", "5", "6", "7"]
        );
    }

    #[test]
    fn large_messages_are_bounded_by_bytes() {
        let mut h = History::default();
        let big = Element::new("message", ns::CLIENT).with_text("x".repeat(MAX_HISTORY_BYTES / 3));
        for _ in 0..5 {
            h.push(big.clone(), UNIX_EPOCH, 20);
        }
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn limits_intersect() {
        let start = UNIX_EPOCH + Duration::from_secs(1000);
        let h = history(5, start);
        let now = start + Duration::from_secs(40);
        let r = Request {
            max_stanzas: Some(3),
            ..Request::default()
        };
        assert_eq!(ids(&h.select(&r, now)), ["2", "3", "4"]);
        let r = Request {
            max_stanzas: Some(0),
            ..Request::default()
        };
        assert!(h.select(&r, now).is_empty());
        let r = Request {
            seconds: Some(15),
            ..Request::default()
        };
        assert_eq!(ids(&h.select(&r, now)), ["3", "4"]);
        let r = Request {
            since: Some(start + Duration::from_secs(20)),
            max_stanzas: Some(1),
            ..Request::default()
        };
        assert_eq!(ids(&h.select(&r, now)), ["4"]);
        let one = h.select(&Request::default(), now)[0].chars;
        let r = Request {
            max_chars: Some(one * 2),
            ..Request::default()
        };
        assert_eq!(ids(&h.select(&r, now)), ["3", "4"]);
    }

    #[test]
    fn history_element_is_parsed() {
        let x = Element::new("x", ns::MUC).with_child(
            Element::new("history", ns::MUC)
                .with_attr("maxstanzas", "7")
                .with_attr("maxchars", "junk")
                .with_attr("since", "1970-01-01T00:01:40Z"),
        );
        let r = Request::parse(Some(&x));
        assert_eq!(r.max_stanzas, Some(7));
        assert_eq!(r.max_chars, None);
        assert_eq!(r.since, Some(UNIX_EPOCH + Duration::from_secs(100)));
        assert_eq!(Request::parse(None), Request::default());
    }

    #[test]
    fn datetimes_parse_with_offsets_and_fractions() {
        let t = parse_datetime("2002-09-10T23:08:25Z").unwrap();
        assert_eq!(
            corvid_proto::time::format_datetime(t),
            "2002-09-10T23:08:25Z"
        );
        assert_eq!(
            parse_datetime("2002-09-10T23:08:25.123+01:00"),
            parse_datetime("2002-09-10T22:08:25.123Z")
        );
        assert_eq!(
            parse_datetime("2002-09-10T23:08:25-02:30"),
            parse_datetime("2002-09-11T01:38:25Z")
        );
        for bad in [
            "",
            "2002-09-10",
            "2002-13-10T00:00:00Z",
            "x-y-zT1:2:3Z",
            "2002-09-10T23:08Z",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }
}
