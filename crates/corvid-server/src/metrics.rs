//! Counters for Prometheus (`/metrics`, `http/metrics.rs`).
//!
//! Everything here is updated inline, on the hot path, so it costs what a relaxed atomic
//! add costs: no lock, no allocation, no label lookup (labels are array indices fixed at
//! compile time). Histograms are fixed arrays of atomic buckets. The text exposition
//! format is produced only when the endpoint is scraped; what can be counted then (sessions
//! by transport, s2s connections) is not counted here at all.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use corvid_proto::StanzaKind;

use crate::sessions::StanzaClass;

/// Every counter of one server.
#[derive(Default)]
pub struct Metrics {
    /// Stanzas received from clients and from other servers.
    pub stanzas_in: ByKind,
    /// Stanzas queued for local client sessions.
    pub stanzas_out: ByKind,
    /// How long `router::route` takes for one stanza (hooks and delivery included).
    pub routing: Histogram,
    /// How long storing one offline message takes (a durable write the sender waits for).
    pub store_offline: Histogram,
    /// How long reading an account's credentials at login takes.
    pub store_credentials: Histogram,
    /// Sessions closed as slow consumers (their queue was full).
    pub slow_consumer_closed: AtomicU64,
    /// Stanzas dropped for slow consumers (`slow_consumer = "drop"`).
    pub slow_consumer_dropped: AtomicU64,
    /// Stanzas bounced because a remote server's outgoing queue was full.
    pub s2s_queue_full: AtomicU64,
    /// Stanzas bounced because a component's queue was full.
    pub component_queue_full: AtomicU64,
}

/// A counter per stanza kind.
#[derive(Default)]
pub struct ByKind([AtomicU64; 3]);

const KINDS: [&str; 3] = ["message", "presence", "iq"];

impl ByKind {
    pub fn count(&self, kind: StanzaKind) {
        let i = match kind {
            StanzaKind::Message => 0,
            StanzaKind::Presence => 1,
            StanzaKind::Iq => 2,
        };
        self.0[i].fetch_add(1, Relaxed);
    }

    /// Counts a queued stanza by its class (what is not a stanza is not counted).
    pub fn count_class(&self, class: StanzaClass) {
        match class {
            StanzaClass::Message { .. } | StanzaClass::ChatState => self.count(StanzaKind::Message),
            StanzaClass::Presence => self.count(StanzaKind::Presence),
            StanzaClass::Iq => self.count(StanzaKind::Iq),
            StanzaClass::Other => {}
        }
    }
}

/// Upper bounds of the histogram buckets, in microseconds: 10 µs to 2.5 s.
const BOUNDS_MICROS: [u64; 16] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    1_000_000, 2_500_000,
];

/// A latency histogram: one atomic count per bucket (not cumulative: each observation adds
/// to one bucket only), the sum in nanoseconds.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        self.buckets[i].fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The Prometheus series of this histogram (`labels` inside the braces, may be empty).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            let le = match BOUNDS_MICROS.get(i) {
                Some(&micros) => seconds(micros),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

fn seconds(micros: u64) -> String {
    (micros as f64 / 1e6).to_string()
}

/// What is measured only when scraped.
pub struct Snapshot {
    pub uptime: Duration,
    /// Bound client sessions per transport (`tcp`, `websocket`, `bosh`).
    pub sessions: Vec<(&'static str, usize)>,
    pub s2s_incoming: usize,
    pub s2s_outgoing: usize,
    pub resident_memory: Option<u64>,
}

impl Metrics {
    /// The text exposition format (version 0.0.4).
    pub fn render(&self, now: &Snapshot) -> String {
        let mut out = String::with_capacity(8 * 1024);
        header(
            &mut out,
            "corvid_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
        );
        let _ = writeln!(out, "corvid_uptime_seconds {}", now.uptime.as_secs_f64());

        header(
            &mut out,
            "corvid_sessions",
            "gauge",
            "Bound client sessions by transport.",
        );
        for (transport, n) in &now.sessions {
            let _ = writeln!(out, "corvid_sessions{{transport=\"{transport}\"}} {n}");
        }

        header(
            &mut out,
            "corvid_s2s_connections",
            "gauge",
            "Server-to-server connections by direction.",
        );
        let _ = writeln!(
            out,
            "corvid_s2s_connections{{direction=\"in\"}} {}",
            now.s2s_incoming
        );
        let _ = writeln!(
            out,
            "corvid_s2s_connections{{direction=\"out\"}} {}",
            now.s2s_outgoing
        );

        for (name, help, counters) in [
            (
                "corvid_stanzas_in_total",
                "Stanzas received from clients and other servers, by kind.",
                &self.stanzas_in,
            ),
            (
                "corvid_stanzas_out_total",
                "Stanzas queued for local client sessions, by kind.",
                &self.stanzas_out,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (kind, counter) in KINDS.iter().zip(&counters.0) {
                let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", counter.load(Relaxed));
            }
        }

        header(
            &mut out,
            "corvid_routing_duration_seconds",
            "histogram",
            "Time to route one stanza, hooks and delivery included.",
        );
        self.routing
            .render(&mut out, "corvid_routing_duration_seconds", "");

        header(
            &mut out,
            "corvid_store_duration_seconds",
            "histogram",
            "Time the store takes, by operation.",
        );
        for (op, histogram) in [
            ("offline_store", &self.store_offline),
            ("credentials", &self.store_credentials),
        ] {
            let labels = format!("op=\"{op}\"");
            histogram.render(&mut out, "corvid_store_duration_seconds", &labels);
        }

        header(
            &mut out,
            "corvid_slow_consumers_total",
            "counter",
            "Sessions whose queue was full: closed, or a stanza dropped.",
        );
        for (action, counter) in [
            ("closed", &self.slow_consumer_closed),
            ("dropped", &self.slow_consumer_dropped),
        ] {
            let _ = writeln!(
                out,
                "corvid_slow_consumers_total{{action=\"{action}\"}} {}",
                counter.load(Relaxed)
            );
        }

        header(
            &mut out,
            "corvid_queue_full_bounces_total",
            "counter",
            "Stanzas bounced because the queue towards their destination was full.",
        );
        for (queue, counter) in [
            ("s2s", &self.s2s_queue_full),
            ("component", &self.component_queue_full),
        ] {
            let _ = writeln!(
                out,
                "corvid_queue_full_bounces_total{{queue=\"{queue}\"}} {}",
                counter.load(Relaxed)
            );
        }

        if let Some(bytes) = now.resident_memory {
            header(
                &mut out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
            );
            let _ = writeln!(out, "process_resident_memory_bytes {bytes}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The process's resident memory, where the OS tells it cheaply (Linux: `/proc/self/statm`).
pub fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|page| pages * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_render_cumulatively() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(5));
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(11));
        h.observe(Duration::from_secs(10));
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.00001\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.000025\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2.5\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count 4\n"), "{out}");
    }

    #[test]
    fn labels_are_joined_with_le() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(1));
        let mut out = String::new();
        h.render(&mut out, "x", "op=\"a\"");
        assert!(out.contains("x_bucket{op=\"a\",le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_count{op=\"a\"} 1\n"), "{out}");
    }
}
