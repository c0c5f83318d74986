//! What a run counts: logins, stanzas sent and delivered, errors by kind, and latency
//! histograms (HdrHistogram, microseconds), shared by every session task.
//!
//! Counters are atomics; the histograms sit behind a mutex each, held for one
//! `record` (tens of nanoseconds), which is far below the rates a 2-core box reaches.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;

/// Highest latency the histograms track exactly; anything above is clamped to it.
pub const MAX_TRACKED_MICROS: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3).expect("static bounds are valid")
}

#[derive(Default)]
pub struct Counters {
    pub login_started: AtomicU64,
    pub login_ok: AtomicU64,
    pub login_failed: AtomicU64,
    /// When the latest login finished, µs after the epoch.
    pub login_last_done_micros: AtomicU64,
    pub registered: AtomicU64,
    pub register_existing: AtomicU64,
    /// Stanzas handed to a session for sending (messages, presence, groupchat).
    pub sent: AtomicU64,
    /// Stanzas the scheduler could not hand over: the sender's queue was full (the
    /// generator could not keep up) or its session was gone.
    pub send_dropped: AtomicU64,
    /// Bench stanzas received in the current phase, each with a latency sample.
    pub delivered: AtomicU64,
    /// Bench stanzas of an earlier phase or run (late, or offline storage replayed).
    pub stale: AtomicU64,
    /// Established sessions that ended without us closing them.
    pub disconnects: AtomicU64,
    /// Error stanzas received (message, presence or IQ type='error').
    pub stanza_errors: AtomicU64,
    pub subscribed: AtomicU64,
    pub roster_both: AtomicU64,
    pub rosters: AtomicU64,
    pub muc_joined: AtomicU64,
    pub muc_created: AtomicU64,
}

pub struct Stats {
    pub counters: Counters,
    latency: Mutex<Histogram<u64>>,
    login_latency: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            counters: Counters::default(),
            latency: Mutex::new(new_histogram()),
            login_latency: Mutex::new(new_histogram()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Stats {
    pub fn record_delivery(&self, micros: u64) {
        self.counters.delivered.fetch_add(1, Relaxed);
        self.latency
            .lock()
            .expect("not poisoned")
            .saturating_record(micros.clamp(1, MAX_TRACKED_MICROS));
    }

    pub fn record_login(&self, micros: u64) {
        self.counters.login_ok.fetch_add(1, Relaxed);
        self.login_latency
            .lock()
            .expect("not poisoned")
            .saturating_record(micros.clamp(1, MAX_TRACKED_MICROS));
    }

    /// Counts `n` errors of `kind` at once (a scenario's correctness check).
    pub fn errors_of(&self, kind: &str, n: u64) {
        if n > 0 {
            *self
                .errors
                .lock()
                .expect("not poisoned")
                .entry(kind.to_owned())
                .or_default() += n;
        }
    }

    /// Counts one error of `kind` (e.g. `login/auth: not-authorized`).
    pub fn error(&self, kind: impl Into<String>) {
        let mut errors = self.errors.lock().expect("not poisoned");
        // Bounded: odd server texts must not grow the map without limit.
        let kind = kind.into();
        if errors.len() >= 64 && !errors.contains_key(&kind) {
            *errors.entry("other".into()).or_default() += 1;
        } else {
            *errors.entry(kind).or_default() += 1;
        }
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().expect("not poisoned").clone()
    }

    /// A copy of the delivery latencies so far.
    pub fn latency(&self) -> Histogram<u64> {
        self.latency.lock().expect("not poisoned").clone()
    }

    /// The delivery latencies so far, starting a fresh histogram (one per ramp step).
    pub fn take_latency(&self) -> Histogram<u64> {
        std::mem::replace(
            &mut *self.latency.lock().expect("not poisoned"),
            new_histogram(),
        )
    }

    pub fn login_latency(&self) -> Histogram<u64> {
        self.login_latency.lock().expect("not poisoned").clone()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_feed_the_histogram_and_take_resets_it() {
        let stats = Stats::default();
        for micros in [100, 200, 300, 0, u64::MAX] {
            stats.record_delivery(micros);
        }
        assert_eq!(Stats::get(&stats.counters.delivered), 5);
        let h = stats.take_latency();
        assert_eq!(h.len(), 5);
        assert_eq!(h.min(), 1, "zero is clamped up");
        assert!(
            h.max() >= MAX_TRACKED_MICROS,
            "huge values are clamped, not lost"
        );
        assert_eq!(stats.latency().len(), 0);
    }

    #[test]
    fn a_check_adds_its_count_and_nothing_when_it_passes() {
        let stats = Stats::default();
        stats.errors_of("pep: duplicates", 0);
        assert!(stats.errors().is_empty());
        stats.errors_of("pep: duplicates", 3);
        stats.error("pep: duplicates");
        assert_eq!(stats.errors()["pep: duplicates"], 4);
    }

    #[test]
    fn error_kinds_are_bounded() {
        let stats = Stats::default();
        for i in 0..100 {
            stats.error(format!("kind {i}"));
        }
        stats.error("kind 1");
        let errors = stats.errors();
        assert_eq!(errors.len(), 65);
        assert_eq!(errors["kind 1"], 2);
        assert_eq!(errors["other"], 36);
    }
}
