//! What every session task of a run shares: the counters, the account naming scheme,
//! the clock latencies are measured on, and the marker that tags bench stanzas.
//!
//! A bench stanza carries `bench r=<run> p=<phase> t=<µs>` in its body (or presence
//! status): the run id keeps stanzas of an earlier run (replayed from offline storage)
//! out of the figures, the phase keeps a late stanza of one ramp step out of the next,
//! and `t` is the intended send time in microseconds since this process's epoch.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio_rustls::TlsConnector;

use crate::archive_check::ArchiveCheck;
use crate::cli::{MechanismChoice, TlsMode};
use crate::pep::Pep;
use crate::scram_cache::SaltedPasswordCache;
use crate::stats::Stats;

pub struct Shared {
    pub stats: Stats,
    pub run_id: u32,
    phase: AtomicU32,
    pub epoch: Instant,
    pub accounts: Accounts,
    pub login: LoginSettings,
    pub cache: SaltedPasswordCache,
    /// Answer `subscribe` with `subscribed` (presence scenario).
    pub auto_accept_subscriptions: bool,
    /// The SASL mechanism of the latest successful login, for the report.
    pub mechanism_used: OnceLock<&'static str>,
    /// Roles, caps and notification accounting of the PEP scenario.
    pub pep: Option<Pep>,
    /// Per-account chat accounting and the archive queries of `--verify-archive`.
    pub archive: Option<ArchiveCheck>,
}

/// Accounts `PREFIX<first + i>@DOMAIN` for session index i.
#[derive(Clone, Debug)]
pub struct Accounts {
    pub domain: String,
    pub prefix: String,
    pub first: u32,
    pub password: String,
    pub resource: String,
}

impl Accounts {
    pub fn username(&self, index: u32) -> String {
        format!("{}{}", self.prefix, self.first + index)
    }

    pub fn bare_jid(&self, index: u32) -> String {
        format!("{}{}@{}", self.prefix, self.first + index, self.domain)
    }

    /// The session index of a JID (bare or full) of one of these accounts.
    pub fn index_of(&self, jid: &str) -> Option<u32> {
        let bare = jid.split('/').next()?;
        let (node, domain) = bare.split_once('@')?;
        if domain != self.domain {
            return None;
        }
        let number: u32 = node.strip_prefix(self.prefix.as_str())?.parse().ok()?;
        number.checked_sub(self.first)
    }
}

impl LoginSettings {
    /// Where account `index` connects.
    pub fn target(&self, index: u32) -> SocketAddr {
        self.targets[index as usize % self.targets.len()]
    }
}

pub struct LoginSettings {
    /// Where sessions connect: account `i` to `targets[i % len]` (a cluster's nodes).
    pub targets: Vec<SocketAddr>,
    pub tls: TlsMode,
    /// The WebSocket path to connect to, instead of a raw XMPP stream.
    pub websocket: Option<String>,
    pub connector: Option<TlsConnector>,
    pub mechanism: MechanismChoice,
    pub register: bool,
    pub timeout: Duration,
}

/// What a received body or status says about its origin.
#[derive(Debug, PartialEq, Eq)]
pub enum Marker {
    /// Sent in this run's current phase at `t` µs after the epoch.
    Current(u64),
    /// A bench stanza of another run or an earlier phase.
    Stale,
    /// Not a bench stanza.
    Foreign,
}

impl Shared {
    pub fn new(accounts: Accounts, login: LoginSettings, cache: SaltedPasswordCache) -> Shared {
        let mut id = [0u8; 4];
        getrandom::fill(&mut id).expect("the OS random generator works");
        Shared {
            stats: Stats::default(),
            run_id: u32::from_le_bytes(id),
            phase: AtomicU32::new(0),
            epoch: Instant::now(),
            accounts,
            login,
            cache,
            auto_accept_subscriptions: false,
            mechanism_used: OnceLock::new(),
            pep: None,
            archive: None,
        }
    }

    pub fn micros_since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    pub fn phase(&self) -> u32 {
        self.phase.load(Relaxed)
    }

    /// Starts a new measured phase: stanzas of earlier phases arriving later are stale.
    pub fn next_phase(&self) -> u32 {
        self.phase.fetch_add(1, Relaxed) + 1
    }

    /// The marker for a stanza of the current phase intended to leave at `t` µs.
    pub fn marker(&self, t: u64) -> String {
        format_marker(self.run_id, self.phase(), t)
    }

    /// The initial presence of session `index` (RFC 6121 §4.2), with caps in the PEP
    /// scenario.
    pub fn initial_presence(&self, index: u32) -> String {
        match &self.pep {
            Some(pep) => pep.presence(index),
            None => "<presence/>".into(),
        }
    }

    pub fn classify(&self, text: &str) -> Marker {
        classify_marker(text, self.run_id, self.phase())
    }
}

pub fn format_marker(run: u32, phase: u32, t: u64) -> String {
    format!("bench r={run} p={phase} t={t}")
}

/// The fields of a marker: (run, phase, t); None if `text` is not one.
pub fn parse_marker(text: &str) -> Option<(u64, u64, u64)> {
    let rest = text.strip_prefix("bench ")?;
    let mut fields = rest.split(' ');
    let mut next = |key: &str| {
        fields
            .next()
            .and_then(|f| f.strip_prefix(key))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((next("r=")?, next("p=")?, next("t=")?))
}

pub fn classify_marker(text: &str, run: u32, phase: u32) -> Marker {
    match parse_marker(text) {
        Some((r, p, t)) if r == u64::from(run) && p == u64::from(phase) => Marker::Current(t),
        Some(_) => Marker::Stale,
        None => Marker::Foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_classify() {
        let m = format_marker(42, 3, 123_456);
        assert_eq!(classify_marker(&m, 42, 3), Marker::Current(123_456));
        assert_eq!(classify_marker(&m, 42, 4), Marker::Stale);
        assert_eq!(classify_marker(&m, 41, 3), Marker::Stale);
        assert_eq!(classify_marker("hello", 42, 3), Marker::Foreign);
        assert_eq!(classify_marker("bench r=x p=1 t=2", 42, 3), Marker::Foreign);
    }

    #[test]
    fn accounts_are_numbered_from_first() {
        let a = Accounts {
            domain: "localhost".into(),
            prefix: "bench".into(),
            first: 1,
            password: "p".into(),
            resource: "r".into(),
        };
        assert_eq!(a.username(0), "bench1");
        assert_eq!(a.bare_jid(9), "bench10@localhost");
        assert_eq!(a.index_of("bench10@localhost/r"), Some(9));
        assert_eq!(a.index_of("bench1@localhost"), Some(0));
        assert_eq!(a.index_of("bench0@localhost"), None, "before the first");
        assert_eq!(a.index_of("bench1@example.org"), None);
        assert_eq!(a.index_of("other1@localhost"), None);
        assert_eq!(a.index_of("localhost"), None);
    }
}
