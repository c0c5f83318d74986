//! Slowing down online password guessing (RFC 6120 §13.9.2 leaves the policy to us).
//!
//! Failed authentications are counted per account and per client address (IPv4 /32,
//! IPv6 /64), and the counts decay (they halve every ten minutes). Once either count for an
//! attempt passes `auth_failures_before_delay`, the attempt is held back before its
//! credentials are checked, 0.25 s doubling with each further failure up to
//! `auth_max_delay_secs`. Holding back *before* the check, whatever its outcome, means a
//! guesser cannot cut the wait short by taking a slow answer for a failure.
//!
//! Nobody is locked out: the owner of an account under attack, or a user behind the same
//! NAT as a guesser, waits a few seconds at most. Only failures of the credentials count
//! (a wrong password or proof, an unknown account), not a client stepping down through
//! mechanisms it cannot use (a channel-binding type we do not offer, say).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::config::LimitsConfig;
use crate::throttle::AddrKey;

/// Counts halve this often.
const HALF_LIFE: Duration = Duration::from_secs(600);
/// The delay at the first held-back attempt.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// Entries kept at most; beyond it, new accounts are not tracked until a sweep (addresses
/// always are, so a guesser cycling through names is still slowed by its address).
const MAX_ACCOUNTS: usize = 100_000;
const SWEEP_AT: usize = 4096;
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Addr(AddrKey),
}

#[derive(Clone, Copy)]
struct Count {
    value: f64,
    at: Instant,
}

impl Count {
    fn decayed(self, now: Instant) -> f64 {
        let halvings =
            now.saturating_duration_since(self.at).as_secs_f64() / HALF_LIFE.as_secs_f64();
        self.value * 0.5f64.powf(halvings)
    }
}

pub struct AuthThrottle {
    free_failures: f64,
    max_delay: Duration,
    counts: DashMap<Key, Count>,
    swept: Mutex<Instant>,
}

impl AuthThrottle {
    pub fn new(config: &LimitsConfig) -> Self {
        AuthThrottle {
            free_failures: f64::from(config.auth_failures_before_delay),
            max_delay: Duration::from_secs(config.auth_max_delay_secs),
            counts: DashMap::new(),
            swept: Mutex::new(Instant::now()),
        }
    }

    /// How long to hold back an attempt on `account` (a bare JID) from `addr`.
    pub fn delay_for(&self, account: &str, addr: AddrKey) -> Duration {
        let now = Instant::now();
        let count = |key: Key| self.counts.get(&key).map_or(0.0, |c| c.decayed(now));
        let failures = count(Key::Account(account.to_owned())).max(count(Key::Addr(addr)));
        let over = failures - self.free_failures;
        if over <= 0.0 {
            return Duration::ZERO;
        }
        // 0.25 s at the first failure past the free ones, doubling with each further one.
        let factor = 2f64.powf((over - 1.0).clamp(0.0, 32.0));
        FIRST_DELAY.mul_f64(factor).min(self.max_delay)
    }

    /// Records a failure of the credentials for `account` (if the name was valid) from `addr`.
    pub fn failed(&self, account: Option<&str>, addr: AddrKey) {
        let now = Instant::now();
        self.sweep(now);
        let bump = |key: Key| {
            let mut count = self.counts.entry(key).or_insert(Count {
                value: 0.0,
                at: now,
            });
            *count = Count {
                value: count.decayed(now) + 1.0,
                at: now,
            };
        };
        bump(Key::Addr(addr));
        if let Some(account) = account
            && (self.counts.len() < MAX_ACCOUNTS
                || self.counts.contains_key(&Key::Account(account.to_owned())))
        {
            bump(Key::Account(account.to_owned()));
        }
    }

    /// The account's owner got in: its count starts over (the address's does not, since
    /// one address can guess at many accounts).
    pub fn succeeded(&self, account: &str) {
        self.counts.remove(&Key::Account(account.to_owned()));
    }

    fn sweep(&self, now: Instant) {
        if self.counts.len() < SWEEP_AT {
            return;
        }
        let Ok(mut swept) = self.swept.try_lock() else {
            return;
        };
        if now.saturating_duration_since(*swept) < SWEEP_EVERY {
            return;
        }
        *swept = now;
        self.counts.retain(|_, c| c.decayed(now) >= 0.5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(free: u32, max_secs: u64) -> AuthThrottle {
        AuthThrottle::new(&LimitsConfig {
            auth_failures_before_delay: free,
            auth_max_delay_secs: max_secs,
            ..LimitsConfig::default()
        })
    }

    const ADDR: AddrKey = AddrKey::V4(1);
    const OTHER: AddrKey = AddrKey::V4(2);

    #[test]
    fn failures_past_the_free_ones_delay_the_account_from_any_address() {
        let t = throttle(2, 8);
        t.failed(Some("alice@localhost"), ADDR);
        t.failed(Some("alice@localhost"), ADDR);
        assert_eq!(t.delay_for("alice@localhost", OTHER), Duration::ZERO);
        t.failed(Some("alice@localhost"), ADDR);
        let d = t.delay_for("alice@localhost", OTHER);
        assert!(d > Duration::from_millis(240) && d <= FIRST_DELAY, "{d:?}");
        t.failed(Some("alice@localhost"), ADDR);
        let d = t.delay_for("alice@localhost", OTHER);
        assert!(
            d > Duration::from_millis(490) && d <= Duration::from_millis(500),
            "{d:?}"
        );
        assert_eq!(t.delay_for("bob@localhost", OTHER), Duration::ZERO);
    }

    #[test]
    fn an_address_guessing_at_many_accounts_is_delayed_for_all_of_them() {
        let t = throttle(3, 8);
        for i in 0..10 {
            t.failed(Some(&format!("user{i}@localhost")), ADDR);
        }
        assert_eq!(t.delay_for("new@localhost", ADDR), Duration::from_secs(8));
        assert_eq!(t.delay_for("new@localhost", OTHER), Duration::ZERO);
    }

    #[test]
    fn success_clears_the_account_and_delays_are_capped() {
        let t = throttle(0, 3);
        for _ in 0..100 {
            t.failed(Some("alice@localhost"), ADDR);
        }
        assert_eq!(
            t.delay_for("alice@localhost", OTHER),
            Duration::from_secs(3)
        );
        t.succeeded("alice@localhost");
        assert_eq!(t.delay_for("alice@localhost", OTHER), Duration::ZERO);
    }

    #[test]
    fn counts_decay() {
        let now = Instant::now();
        let c = Count {
            value: 8.0,
            at: now,
        };
        assert!((c.decayed(now + HALF_LIFE) - 4.0).abs() < 1e-9);
    }
}
