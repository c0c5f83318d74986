//! The request window of a BOSH session (XEP-0124 §14.3): requests are numbered by `rid`;
//! the client may have `requests` of them outstanding, and they may arrive in any order
//! within that window. Their payloads reach the session strictly in `rid` order, and a
//! request the client sends again (its connection broke before the answer arrived) gets
//! the same answer again.
//!
//! Nothing here knows HTTP or the session: `R` is whatever the caller keeps per request.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

/// What to do with a request that arrived.
#[derive(Debug)]
pub enum Arrival<R> {
    /// Requests now due, in `rid` order: this one and any that were waiting for it.
    Due(Vec<(u64, R)>),
    /// Ahead of a gap; it waits for the requests before it.
    Early,
    /// Already answered: the same answer again.
    Resend(Bytes, R),
    /// Already due but not yet answered (it is being held): the caller answers it on this
    /// new request instead of the old one.
    Repeat(u64, R),
    /// Outside the window: the session ends with `item-not-found`.
    Refused(R),
}

/// The `rid` window of one session.
#[derive(Debug)]
pub struct Window<R> {
    /// The `rid` due next.
    next: u64,
    /// How many requests the client may have outstanding (`requests`).
    size: u64,
    /// Requests that arrived ahead of a gap, by `rid`.
    early: BTreeMap<u64, R>,
    /// The last `size` answers, for retransmission.
    answers: VecDeque<(u64, Bytes)>,
}

impl<R> Window<R> {
    /// The window after the session creation request `first` (itself due at once).
    pub fn new(first: u64, size: u64) -> Self {
        Window {
            next: first.saturating_add(1),
            size: size.max(1),
            early: BTreeMap::new(),
            answers: VecDeque::new(),
        }
    }

    pub fn arrive(&mut self, rid: u64, request: R) -> Arrival<R> {
        if rid < self.next {
            if let Some((_, answer)) = self.answers.iter().find(|(r, _)| *r == rid) {
                return Arrival::Resend(answer.clone(), request);
            }
            // Due and not yet answered only if it is newer than every answer kept.
            let oldest_kept = self.next.saturating_sub(self.size);
            return if rid >= oldest_kept {
                Arrival::Repeat(rid, request)
            } else {
                Arrival::Refused(request)
            };
        }
        if rid >= self.next.saturating_add(self.size) {
            return Arrival::Refused(request);
        }
        if rid > self.next {
            self.early.insert(rid, request);
            return Arrival::Early;
        }
        let mut due = vec![(rid, request)];
        self.next += 1;
        while let Some(waiting) = self.early.remove(&self.next) {
            due.push((self.next, waiting));
            self.next += 1;
        }
        Arrival::Due(due)
    }

    /// Records the answer to `rid`, keeping only the last `size`.
    pub fn answered(&mut self, rid: u64, answer: Bytes) {
        self.answers.push_back((rid, answer));
        while self.answers.len() as u64 > self.size {
            self.answers.pop_front();
        }
    }

    /// The requests waiting ahead of a gap (to answer them when the session ends).
    pub fn take_early(&mut self) -> Vec<(u64, R)> {
        std::mem::take(&mut self.early).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(arrival: Arrival<&'static str>) -> Vec<(u64, &'static str)> {
        match arrival {
            Arrival::Due(due) => due,
            other => panic!("expected due requests, got {other:?}"),
        }
    }

    #[test]
    fn requests_in_order_are_due_at_once() {
        let mut window = Window::new(100, 2);
        assert_eq!(due(window.arrive(101, "a")), [(101, "a")]);
        assert_eq!(due(window.arrive(102, "b")), [(102, "b")]);
    }

    #[test]
    fn a_request_ahead_of_a_gap_waits_for_it() {
        let mut window = Window::new(100, 2);
        assert!(matches!(window.arrive(102, "second"), Arrival::Early));
        assert_eq!(
            due(window.arrive(101, "first")),
            [(101, "first"), (102, "second")]
        );
        assert_eq!(due(window.arrive(103, "third")), [(103, "third")]);
    }

    #[test]
    fn requests_beyond_the_window_are_refused() {
        let mut window = Window::new(100, 2);
        assert!(matches!(window.arrive(103, "far"), Arrival::Refused(_)));
        assert!(matches!(
            window.arrive(u64::MAX, "far"),
            Arrival::Refused(_)
        ));
    }

    #[test]
    fn an_answered_request_sent_again_gets_the_same_answer() {
        let mut window = Window::new(100, 2);
        due(window.arrive(101, "a"));
        window.answered(100, Bytes::from_static(b"zero"));
        window.answered(101, Bytes::from_static(b"one"));
        match window.arrive(101, "again") {
            Arrival::Resend(answer, _) => assert_eq!(&answer[..], b"one"),
            other => panic!("{other:?}"),
        }
        due(window.arrive(102, "b"));
        window.answered(102, Bytes::from_static(b"two"));
        // Only the last two answers are kept; older ones are out of the window.
        assert!(matches!(window.arrive(100, "old"), Arrival::Refused(_)));
        assert!(matches!(window.arrive(101, "again"), Arrival::Resend(..)));
    }

    #[test]
    fn a_held_request_sent_again_replaces_the_held_one() {
        let mut window = Window::new(100, 2);
        due(window.arrive(101, "held"));
        match window.arrive(101, "again") {
            Arrival::Repeat(101, "again") => {}
            other => panic!("{other:?}"),
        }
    }
}
