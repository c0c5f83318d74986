//! Reconnecting after a lost connection (XMPPFramework's `XMPPReconnect`), with stream
//! management (XEP-0198) and the message archive (XEP-0313) so the application sees every
//! message once.
//!
//! Given to [`crate::ClientBuilder::reconnect`], a [`Reconnect`] policy makes the stream
//! task start again by itself when the connection is lost (an I/O error, the server
//! going away, an unanswered [`crate::AutoPing`]), but not after
//! [`crate::Client::disconnect`] or a stream error that says another login would be
//! refused or fight another session (`conflict`, `not-authorized`, `policy-violation`).
//!
//! Each attempt waits an exponentially growing delay with random jitter
//! ([`crate::Event::Reconnecting`]), then logs in again:
//! - When the server had enabled resumable stream management, the session is resumed: the
//!   server resends what we had not acknowledged, and we resend exactly the stanzas it had
//!   not ([`crate::Event::Resumed`]).
//! - Otherwise (no stream management, or the server forgot the session) a new session is
//!   bound with the same resource; the stanzas the server never acknowledged are sent
//!   again, the last broadcast presence is restored, and, where the server keeps an
//!   archive, the messages that came since the last one we saw are fetched from it before
//!   that presence goes out ([`crate::Event::CaughtUp`]).
//!
//! Messages are told apart by the stanza-id the account's server gave them (XEP-0359): one
//! already delivered is not delivered again, whether it comes back from the archive, from
//! offline storage or from a server resending it.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

/// How to reconnect (XMPPReconnect's `reconnectDelay`, `reconnectTimerInterval` and
/// `autoReconnect`).
#[derive(Clone, Debug)]
pub struct Reconnect {
    initial_delay: Duration,
    max_delay: Duration,
    jitter: f64,
    max_attempts: Option<u32>,
    catch_up: bool,
}

impl Default for Reconnect {
    /// 1 s, doubling up to 1 minute, ±25 % jitter, attempts without end, archive catch-up on.
    fn default() -> Self {
        Reconnect {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            jitter: 0.25,
            max_attempts: None,
            catch_up: true,
        }
    }
}

impl Reconnect {
    /// The delay before the first attempt; each failed attempt doubles it.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The longest delay between attempts.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// How much each delay varies at random, as a fraction of it (0 to 1): clients cut off
    /// together do not all come back at the same instant.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// Gives up after this many failed attempts in a row (by default, never).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Whether a new session fetches from the archive what came while we were away (on by
    /// default; it needs the server's XEP-0313 support and is skipped without it).
    pub fn catch_up(mut self, on: bool) -> Self {
        self.catch_up = on;
        self
    }

    pub(crate) fn catches_up(&self) -> bool {
        self.catch_up
    }

    pub(crate) fn gives_up_after(&self, attempt: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempt > max)
    }

    /// The delay before attempt `attempt` (1, 2 …), with `random` spreading it.
    pub(crate) fn delay(&self, attempt: u32, random: u64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let base = self
            .initial_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay);
        // A factor in [1 - jitter, 1 + jitter].
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        base.mul_f64(factor.max(0.0))
    }
}

/// A random number for jitter: the standard library's random hash keys, mixed with the time.
pub(crate) fn random() -> u64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    std::collections::hash_map::RandomState::new().hash_one(now)
}

/// Stanza-ids already delivered to the application, the newest few thousand.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    order: VecDeque<String>,
    ids: HashSet<String>,
    /// The newest stanza-id seen, where an archive catch-up starts.
    pub last: Option<String>,
}

/// How many ids are remembered: more than a catch-up or a resumption brings back at once.
const REMEMBERED: usize = 4096;

impl Seen {
    /// Records `id`; false if it was seen already.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.ids.insert(id.to_owned());
        self.last = Some(id.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_jitter_stays_in_bounds() {
        let policy = Reconnect::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .jitter(0.0);
        let delays: Vec<_> = (1..=6).map(|a| policy.delay(a, 0).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        let policy = policy.jitter(0.5);
        for attempt in 1..10 {
            for random in [0, u64::MAX, 1 << 63, random()] {
                let ms = policy.delay(attempt, random).as_millis();
                let base = (100u128 << (attempt - 1).min(30)).min(1000);
                assert!(ms >= base / 2 && ms <= base * 3 / 2, "{attempt}: {ms}");
            }
        }
        // A huge attempt number neither overflows nor exceeds the maximum.
        assert!(policy.delay(u32::MAX, 0) <= Duration::from_millis(1500));
    }

    #[test]
    fn attempts_stop_where_told() {
        let policy = Reconnect::default().max_attempts(3);
        assert!(!policy.gives_up_after(3));
        assert!(policy.gives_up_after(4));
        assert!(!Reconnect::default().gives_up_after(u32::MAX));
    }

    #[test]
    fn seen_ids_are_remembered_up_to_a_bound() {
        let mut seen = Seen::default();
        assert!(seen.insert("a"));
        assert!(!seen.insert("a"));
        assert_eq!(seen.last.as_deref(), Some("a"));
        for i in 0..REMEMBERED {
            seen.insert(&i.to_string());
        }
        // "a" was the oldest and is forgotten; the newest are kept.
        assert!(seen.insert("a"));
        assert!(!seen.insert(&(REMEMBERED - 1).to_string()));
    }
}
