//! Admission of client connections, built so that a flood does not lock out the honest.
//!
//! Many honest users can share one address (an office, a campus, a carrier NAT), so a
//! connection is never refused for its address alone. Instead:
//! - a connection that has not authenticated yet is cheap (no parser, no buffers: see
//!   `c2s::session`) and times out fast when it sends nothing;
//! - each address (IPv4 /32, IPv6 /64) and the server as a whole have a budget of such
//!   connections; when one is full, the *least recently active* pre-auth connection of
//!   that address (of the address holding the most, for the global budget) is shed to make
//!   room for the newcomer. A connection that never sent a byte goes before any that did,
//!   however recently it arrived. Idle sockets are what a flood is made of, and a client
//!   busy logging in is active, so the flood makes room for the honest, not the reverse
//!   (the policy of OpenSSH's MaxStartups, aimed at the idle instead of at random);
//! - the expensive step, the TLS handshake, is paced per address by a token bucket
//!   ([`RateLimiter`]): over the rate a handshake waits for its turn, and only an address
//!   that is far over it is refused.
//!
//! What the defences do is counted in [`DefenceCounters`] and logged once per address per
//! minute.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::config::LimitsConfig;
use crate::throttle::{AddrKey, DefenceCounters, LogLimiter, RateLimiter};

/// Set in a slot's `last_active` once the connection sent something: a connection that
/// spoke ranks after every silent one when choosing whom to shed, as the flood stays silent
/// while a backlog of it is still being accepted after an honest client's connection.
const SPOKE: u64 = 1 << 63;
/// The longest a TLS handshake waits for its address's turn before it is refused.
const MAX_HANDSHAKE_WAIT: Duration = Duration::from_secs(10);
/// How often the same defence is logged for the same address.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Counts and admits connections; see the module documentation.
pub struct Admission {
    open: Arc<AtomicU32>,
    max_open: u32,
    preauth: Arc<PreAuthTable>,
    handshakes: RateLimiter,
    pub counters: DefenceCounters,
    log: LogLimiter,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `max_connections` and none of them is shed-able.
    TooManyConnections,
    /// The address is so far over its handshake rate that it would wait too long.
    TooFast,
}

/// The pre-authentication connections, by address.
struct PreAuthTable {
    by_addr: DashMap<AddrKey, Vec<Arc<PreAuthSlot>>>,
    total: AtomicU32,
    max_per_addr: u32,
    max_total: u32,
    epoch: Instant,
}

/// One pre-authentication connection as the table sees it.
struct PreAuthSlot {
    /// Milliseconds since the table's epoch at the last input (at admission until then),
    /// with [`SPOKE`] set once it sent anything.
    last_active: AtomicU64,
    /// Signalled (with a stored permit) when the connection is shed.
    shed: Notify,
}

impl Admission {
    pub fn new(config: &LimitsConfig) -> Self {
        Admission {
            open: Arc::new(AtomicU32::new(0)),
            max_open: config.max_connections,
            preauth: Arc::new(PreAuthTable {
                by_addr: DashMap::new(),
                total: AtomicU32::new(0),
                max_per_addr: config.max_unauthenticated_per_ip.max(1),
                max_total: config.max_unauthenticated.max(1),
                epoch: Instant::now(),
            }),
            handshakes: RateLimiter::new(
                config.tls_handshakes_per_sec_per_ip,
                config.tls_handshake_burst_per_ip,
                MAX_HANDSHAKE_WAIT,
            ),
            counters: DefenceCounters::default(),
            log: LogLimiter::new(LOG_EVERY),
        }
    }

    /// Admits a new connection from `ip`, shedding an idle pre-auth connection when a
    /// budget is full; refuses only when the server is at `max_connections` and nothing
    /// can be shed.
    pub fn admit(&self, ip: IpAddr) -> Result<ConnectionGuard, Refusal> {
        let key = AddrKey::of(ip);
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_open
            && !self.shed_from_heaviest_address()
        {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.note(
                key,
                "connection refused: max_connections reached",
                &self.counters.connections_refused,
            );
            return Err(Refusal::TooManyConnections);
        }
        let slot = Arc::new(PreAuthSlot {
            last_active: AtomicU64::new(self.preauth.now_ms()),
            shed: Notify::new(),
        });
        let shed_here = {
            let mut slots = self.preauth.by_addr.entry(key).or_default();
            let victim = (slots.len() as u32 >= self.preauth.max_per_addr)
                .then(|| least_recently_active(&slots))
                .flatten()
                .map(|i| slots.swap_remove(i));
            slots.push(slot.clone());
            victim
        };
        match shed_here {
            Some(victim) => {
                victim.shed.notify_one();
                self.note(
                    key,
                    "idle unauthenticated connection shed: per-address budget full",
                    &self.counters.connections_shed,
                );
            }
            None => {
                if self.preauth.total.fetch_add(1, Ordering::AcqRel) >= self.preauth.max_total {
                    self.shed_from_heaviest_address();
                }
            }
        }
        Ok(ConnectionGuard {
            key,
            open: self.open.clone(),
            preauth: self.preauth.clone(),
            slot: Some(slot),
        })
    }

    /// Sheds the least recently active pre-auth connection of the address that holds the
    /// most of them; false if there is none.
    fn shed_from_heaviest_address(&self) -> bool {
        let heaviest = self
            .preauth
            .by_addr
            .iter()
            .max_by_key(|entry| entry.value().len())
            .map(|entry| *entry.key());
        let Some(key) = heaviest else { return false };
        let victim = self.preauth.by_addr.get_mut(&key).and_then(|mut slots| {
            let i = least_recently_active(&slots)?;
            Some(slots.swap_remove(i))
        });
        let Some(victim) = victim else { return false };
        self.preauth.total.fetch_sub(1, Ordering::AcqRel);
        self.preauth
            .by_addr
            .remove_if(&key, |_, slots| slots.is_empty());
        victim.shed.notify_one();
        self.note(
            key,
            "idle unauthenticated connection shed: global budget full",
            &self.counters.connections_shed,
        );
        true
    }

    /// Takes the address's turn for a TLS handshake: how long to wait first, or a refusal
    /// when the address is too far over its rate.
    pub fn handshake_turn(&self, key: AddrKey) -> Result<Duration, Refusal> {
        match self.handshakes.reserve(key, Instant::now()) {
            Ok(wait) => {
                if !wait.is_zero() {
                    self.note(
                        key,
                        "TLS handshakes paced: address over its rate",
                        &self.counters.handshakes_delayed,
                    );
                }
                Ok(wait)
            }
            Err(_) => {
                self.note(
                    key,
                    "TLS handshake refused: address far over its rate",
                    &self.counters.connections_refused,
                );
                Err(Refusal::TooFast)
            }
        }
    }

    /// Counts a defence's action and logs it, once per address per minute.
    pub fn note(&self, key: AddrKey, what: &'static str, counter: &AtomicU64) {
        DefenceCounters::bump(counter);
        if let Some(suppressed) = self.log.should_log(key, what, Instant::now()) {
            tracing::info!(addr = %key, suppressed, "{what}");
        }
    }

    pub fn open(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }

    /// Pre-authentication connections held now.
    pub fn unauthenticated(&self) -> u32 {
        self.preauth.total.load(Ordering::Acquire)
    }
}

fn least_recently_active(slots: &[Arc<PreAuthSlot>]) -> Option<usize> {
    slots
        .iter()
        .enumerate()
        .min_by_key(|(_, s)| s.last_active.load(Ordering::Relaxed))
        .map(|(i, _)| i)
}

impl PreAuthTable {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn release(&self, key: AddrKey, slot: &Arc<PreAuthSlot>) {
        let mut removed = false;
        self.by_addr.remove_if_mut(&key, |_, slots| {
            if let Some(i) = slots.iter().position(|s| Arc::ptr_eq(s, slot)) {
                slots.swap_remove(i);
                removed = true;
            }
            slots.is_empty()
        });
        if removed {
            self.total.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Held by a connection task: its place in the counts, released when dropped.
pub struct ConnectionGuard {
    key: AddrKey,
    open: Arc<AtomicU32>,
    preauth: Arc<PreAuthTable>,
    /// Until the connection authenticates (or ends).
    slot: Option<Arc<PreAuthSlot>>,
}

impl ConnectionGuard {
    /// The client's address, as limits count it.
    pub fn key(&self) -> AddrKey {
        self.key
    }

    /// The connection authenticated (or is ending): it leaves the pre-auth budgets.
    pub fn leave_preauth(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.preauth.release(self.key, &slot);
        }
    }

    /// The client sent something: it is not idle, and no silent connection is shed after it.
    pub fn touch(&self) {
        if let Some(slot) = &self.slot {
            slot.last_active
                .store(self.preauth.now_ms() | SPOKE, Ordering::Relaxed);
        }
    }

    /// Resolves when this connection is shed to make room; never after authentication.
    pub async fn shed(&self) {
        match &self.slot {
            Some(slot) => slot.shed.notified().await,
            None => std::future::pending().await,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.leave_preauth();
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// The future's output if it is ready at its first poll.
    fn now_or_never<F: Future>(f: F) -> Option<F::Output> {
        match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    fn admission(per_ip: u32, total: u32, max_connections: u32) -> Admission {
        Admission::new(&LimitsConfig {
            max_unauthenticated_per_ip: per_ip,
            max_unauthenticated: total,
            max_connections,
            ..LimitsConfig::default()
        })
    }

    const LOCAL: [u8; 4] = [127, 0, 0, 1];

    #[test]
    fn a_full_address_budget_sheds_its_least_recently_active_connection() {
        let a = admission(2, 100, 100);
        let first = a.admit(LOCAL.into()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let second = a.admit(LOCAL.into()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        first.touch(); // the first is busy logging in; the second sits idle
        let third = a.admit(LOCAL.into()).unwrap();
        assert!(
            now_or_never(second.shed()).is_some(),
            "the idle one is shed"
        );
        assert!(now_or_never(first.shed()).is_none());
        assert!(now_or_never(third.shed()).is_none());
        assert_eq!(a.unauthenticated(), 2);
        assert_eq!(a.counters.connections_shed.load(Ordering::Relaxed), 1);
        // Another address has its own budget.
        let other = a.admit([127, 0, 0, 2].into()).unwrap();
        assert!(now_or_never(first.shed()).is_none());
        drop((first, second, third, other));
        assert_eq!((a.open(), a.unauthenticated()), (0, 0));
    }

    #[test]
    fn a_connection_that_spoke_outlasts_newer_silent_ones() {
        let a = admission(3, 100, 100);
        let honest = a.admit(LOCAL.into()).unwrap();
        honest.touch();
        std::thread::sleep(Duration::from_millis(5));
        // A backlog of silent sockets accepted after the honest client spoke.
        let silent: Vec<_> = (0..4).map(|_| a.admit(LOCAL.into()).unwrap()).collect();
        assert!(now_or_never(honest.shed()).is_none());
        let shed = silent
            .iter()
            .filter(|s| now_or_never(s.shed()).is_some())
            .count();
        assert_eq!(shed, 2);
    }

    #[test]
    fn authenticated_connections_leave_the_budget_and_are_never_shed() {
        let a = admission(1, 100, 100);
        let mut first = a.admit(LOCAL.into()).unwrap();
        first.leave_preauth();
        let second = a.admit(LOCAL.into()).unwrap();
        assert!(now_or_never(first.shed()).is_none());
        assert!(now_or_never(second.shed()).is_none());
        assert_eq!(a.unauthenticated(), 1);
    }

    #[test]
    fn a_full_global_budget_sheds_from_the_address_holding_the_most() {
        let a = admission(10, 3, 100);
        let heavy1 = a.admit([10, 0, 0, 1].into()).unwrap();
        let heavy2 = a.admit([10, 0, 0, 1].into()).unwrap();
        let light = a.admit([10, 0, 0, 2].into()).unwrap();
        let newcomer = a.admit([10, 0, 0, 3].into()).unwrap();
        assert!(now_or_never(heavy1.shed()).is_some() || now_or_never(heavy2.shed()).is_some());
        assert!(now_or_never(light.shed()).is_none());
        assert!(now_or_never(newcomer.shed()).is_none());
        assert_eq!(a.unauthenticated(), 3);
    }

    #[test]
    fn max_connections_refuses_only_when_nothing_can_be_shed() {
        let a = admission(10, 10, 2);
        let mut one = a.admit(LOCAL.into()).unwrap();
        let mut two = a.admit(LOCAL.into()).unwrap();
        // Both pre-auth: the third gets in and one of them is shed.
        let three = a.admit(LOCAL.into()).unwrap();
        assert!(now_or_never(one.shed()).is_some() || now_or_never(two.shed()).is_some());
        drop(three);
        one.leave_preauth();
        two.leave_preauth();
        assert_eq!(
            a.admit(LOCAL.into()).err(),
            Some(Refusal::TooManyConnections)
        );
    }
}
