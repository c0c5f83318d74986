//! Per-address throttles: token buckets keyed by client address, and a log limiter so that
//! an address that keeps hitting a limit is logged once per interval, not once per try.
//!
//! Addresses are grouped as an attacker can vary them cheaply: an IPv4 address on its own,
//! an IPv6 address by its /64 (one subscriber's prefix). Many honest users can share one
//! key (a NAT, a campus, a carrier): what is keyed here paces or delays, and only refuses
//! where the alternative is unbounded work.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// How many keys a map holds before idle ones are swept out.
const SWEEP_AT: usize = 4096;
/// Sweeps happen at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// A client address as limits count it: IPv4 /32, IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrKey {
    V4(u32),
    V6(u64),
}

impl AddrKey {
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(u32::from(v4)),
                None => AddrKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl std::fmt::Display for AddrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddrKey::V4(a) => write!(f, "{}", std::net::Ipv4Addr::from(*a)),
            AddrKey::V6(p) => write!(f, "{}/64", std::net::Ipv6Addr::from(u128::from(*p) << 64)),
        }
    }
}

/// A token bucket per address that hands out *reservations*: a caller over the rate is
/// told how long to wait for its turn instead of being refused, up to `max_wait`; only a
/// caller who would have to wait longer is refused. Bursts from a shared address are thus
/// paced, not failed. Keyed by address by default; any key will do (a user's JID for
/// publish rates).
pub struct RateLimiter<K: Eq + Hash = AddrKey> {
    rate: f64,
    burst: f64,
    max_wait: Duration,
    buckets: DashMap<K, Bucket>,
    swept: Mutex<Instant>,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Negative while callers are waiting for their turn.
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant, rate: f64, burst: f64) -> Bucket {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        Bucket {
            tokens: (self.tokens + elapsed * rate).min(burst),
            last: now,
        }
    }
}

impl<K: Eq + Hash> RateLimiter<K> {
    /// `per_sec` sustained, `burst` at once, and at most `max_wait` of queueing.
    pub fn new(per_sec: u32, burst: u32, max_wait: Duration) -> Self {
        RateLimiter {
            rate: f64::from(per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            max_wait,
            buckets: DashMap::new(),
            swept: Mutex::new(Instant::now()),
        }
    }

    /// Takes one token for `key`: `Ok(wait)` is how long the caller must wait before
    /// going ahead (zero under the rate); `Err(retry_after)` means the wait would pass
    /// `max_wait`, and nothing was taken.
    pub fn reserve(&self, key: K, now: Instant) -> Result<Duration, Duration> {
        self.sweep(now);
        let (rate, burst) = (self.rate, self.burst);
        let mut bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let refilled = bucket.refilled(now, rate, burst);
        let after = refilled.tokens - 1.0;
        let wait = if after >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-after / rate)
        };
        if wait > self.max_wait {
            *bucket = refilled;
            return Err(Duration::from_secs_f64(
                (-after - rate * self.max_wait.as_secs_f64()) / rate,
            ));
        }
        *bucket = Bucket {
            tokens: after,
            ..refilled
        };
        Ok(wait)
    }

    /// Drops buckets that are full again (they hold no information) once the map is large.
    fn sweep(&self, now: Instant) {
        if self.buckets.len() < SWEEP_AT {
            return;
        }
        let Ok(mut swept) = self.swept.try_lock() else {
            return;
        };
        if now.saturating_duration_since(*swept) < SWEEP_EVERY {
            return;
        }
        *swept = now;
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .retain(|_, b| b.refilled(now, rate, burst).tokens < burst);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// Says whether an event for an address should be logged now: the first time, then once
/// per `every`, reporting how many were left unlogged in between.
pub struct LogLimiter {
    every: Duration,
    last: DashMap<(AddrKey, &'static str), (Instant, u64)>,
    swept: Mutex<Instant>,
}

impl LogLimiter {
    pub fn new(every: Duration) -> Self {
        LogLimiter {
            every,
            last: DashMap::new(),
            swept: Mutex::new(Instant::now()),
        }
    }

    /// `Some(suppressed)` when this event should be logged, with how many like it were not.
    pub fn should_log(&self, key: AddrKey, what: &'static str, now: Instant) -> Option<u64> {
        if self.last.len() >= SWEEP_AT
            && let Ok(mut swept) = self.swept.try_lock()
            && now.saturating_duration_since(*swept) >= SWEEP_EVERY
        {
            *swept = now;
            let every = self.every;
            self.last
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < every);
        }
        let mut entry = self.last.entry((key, what)).or_insert((now, u64::MAX));
        let (at, suppressed) = &mut *entry;
        if *suppressed == u64::MAX {
            *suppressed = 0;
            return Some(0);
        }
        if now.saturating_duration_since(*at) >= self.every {
            let n = *suppressed;
            *at = now;
            *suppressed = 0;
            Some(n)
        } else {
            *suppressed += 1;
            None
        }
    }
}

/// Counters of what the defences did, for the log now and the metrics to come.
#[derive(Default)]
pub struct DefenceCounters {
    /// Pre-authentication connections closed to make room for newer ones.
    pub connections_shed: AtomicU64,
    /// Connections refused outright (connection limit, or an address far over its rate).
    pub connections_refused: AtomicU64,
    /// TLS handshakes that had to wait for their address's turn.
    pub handshakes_delayed: AtomicU64,
    /// Registrations that waited for their turn, and those refused.
    pub registrations_delayed: AtomicU64,
    pub registrations_refused: AtomicU64,
    /// SASL failures, and authentications held back because of earlier failures.
    pub auth_failures: AtomicU64,
    pub auth_delayed: AtomicU64,
}

impl DefenceCounters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: AddrKey = AddrKey::V4(0x7f00_0001);

    #[test]
    fn ipv6_addresses_of_one_64_share_a_key_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddrKey::of(a), AddrKey::of(b));
        assert_ne!(AddrKey::of(a), AddrKey::of(c));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(AddrKey::of(mapped), A);
        assert_eq!(AddrKey::of(a).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn reservations_pace_a_burst_then_refuse_past_the_longest_wait() {
        let limiter = RateLimiter::new(10, 5, Duration::from_secs(1));
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.reserve(A, now), Ok(Duration::ZERO));
        }
        // The next ten wait 0.1 s more each, up to a second.
        for i in 1..=10 {
            let wait = limiter.reserve(A, now).unwrap();
            assert!(
                (wait.as_secs_f64() - 0.1 * f64::from(i)).abs() < 1e-6,
                "{wait:?}"
            );
        }
        let retry = limiter.reserve(A, now).unwrap_err();
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_millis(101),
            "{retry:?}"
        );
        // Another address is not affected.
        assert_eq!(limiter.reserve(AddrKey::V4(2), now), Ok(Duration::ZERO));
        // Time pays the debt back.
        assert_eq!(
            limiter.reserve(A, now + Duration::from_secs(3)),
            Ok(Duration::ZERO)
        );
    }

    #[test]
    fn full_buckets_are_swept_once_the_map_is_large() {
        let limiter = RateLimiter::new(1000, 10, Duration::ZERO);
        let now = Instant::now();
        for i in 0..SWEEP_AT as u32 {
            limiter.reserve(AddrKey::V4(i), now).unwrap();
        }
        assert_eq!(limiter.len(), SWEEP_AT);
        limiter
            .reserve(AddrKey::V4(u32::MAX), now + SWEEP_EVERY)
            .unwrap();
        assert!(limiter.len() <= 1, "{}", limiter.len());
    }

    #[test]
    fn log_limiter_logs_once_per_interval_and_counts_the_rest() {
        let log = LogLimiter::new(Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(log.should_log(A, "shed", now), Some(0));
        assert_eq!(
            log.should_log(A, "shed", now + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            log.should_log(A, "shed", now + Duration::from_secs(2)),
            None
        );
        assert_eq!(log.should_log(A, "refused", now), Some(0));
        assert_eq!(
            log.should_log(A, "shed", now + Duration::from_secs(61)),
            Some(2)
        );
    }
}
