//! Open-loop send schedule: message k of a run at rate R is due at `k / R` seconds,
//! whatever the server has answered so far.
//!
//! A closed-loop generator (send the next message when the last reply came back) slows
//! down with the server and so hides its latency ("coordinated omission"). Here the
//! scheduler wakes every millisecond or so and sends everything that is due, and each
//! message carries its *intended* send time, not the time it left: if the generator
//! itself falls behind, that delay counts against the latency too, never in its favour.

use std::time::Duration;

/// Send times of a constant-rate run.
#[derive(Clone, Copy, Debug)]
pub struct RateSchedule {
    rate: f64,
}

impl RateSchedule {
    /// `rate` events per second; callers validate it is positive and finite.
    pub fn new(rate: f64) -> Self {
        debug_assert!(rate.is_finite() && rate > 0.0);
        RateSchedule { rate }
    }

    /// How many events are due by `elapsed` since the start: `floor(elapsed × rate) + 1`
    /// (event 0 is due at once).
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        (elapsed.as_secs_f64() * self.rate).floor() as u64 + 1
    }

    /// When event `k` is due, measured from the start.
    pub fn due_at(&self, k: u64) -> Duration {
        Duration::from_secs_f64(k as f64 / self.rate)
    }

    /// Events in a run of `length`.
    pub fn total_in(&self, length: Duration) -> u64 {
        (length.as_secs_f64() * self.rate).ceil() as u64
    }
}

/// A small deterministic PRNG (xorshift64*) for picking senders and recipients; the
/// choice need not be cryptographic, only cheap and repeatable with `--seed`.
#[derive(Clone, Debug)]
pub struct Picker {
    state: u64,
}

impl Picker {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Picker {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is negligible for our n.
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n)) as u32
    }

    /// Two distinct indices in `0..n` (n ≥ 2): a sender and a recipient.
    pub fn pair(&mut self, n: u32) -> (u32, u32) {
        let from = self.below(n);
        let offset = 1 + self.below(n - 1);
        (from, (from + offset) % n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_counts_follow_the_rate() {
        let s = RateSchedule::new(1000.0);
        assert_eq!(s.due_by(Duration::ZERO), 1);
        assert_eq!(s.due_by(Duration::from_micros(999)), 1);
        assert_eq!(s.due_by(Duration::from_millis(1)), 2);
        assert_eq!(s.due_by(Duration::from_secs(1)), 1001);
        assert_eq!(s.total_in(Duration::from_secs(10)), 10_000);
    }

    #[test]
    fn fractional_rates_are_exact_over_time() {
        let s = RateSchedule::new(2.5);
        assert_eq!(s.due_by(Duration::from_millis(399)), 1);
        assert_eq!(s.due_by(Duration::from_millis(400)), 2);
        assert_eq!(s.due_by(Duration::from_secs(4)), 11);
        assert_eq!(s.due_at(5), Duration::from_secs(2));
    }

    #[test]
    fn due_at_and_due_by_agree() {
        let s = RateSchedule::new(333.0);
        for k in [0u64, 1, 2, 100, 332, 333, 9999] {
            // Event k is due at due_at(k): by then at least k + 1 events are due, and
            // just before it only k.
            assert!(s.due_by(s.due_at(k) + Duration::from_nanos(1)) > k, "{k}");
            if k > 0 {
                assert!(s.due_by(s.due_at(k) - Duration::from_micros(1)) <= k, "{k}");
            }
        }
    }

    #[test]
    fn a_late_scheduler_catches_up_without_changing_intended_times() {
        // Woken 50 ms late, the scheduler owes 50 events at once, each stamped with
        // its own due time.
        let s = RateSchedule::new(1000.0);
        let owed = s.due_by(Duration::from_millis(150)) - s.due_by(Duration::from_millis(100));
        assert_eq!(owed, 50);
        assert_eq!(s.due_at(101), Duration::from_millis(101));
    }

    #[test]
    fn pairs_are_distinct_and_cover_everyone() {
        let mut p = Picker::new(7);
        let mut seen_from = [false; 5];
        let mut seen_to = [false; 5];
        for _ in 0..1000 {
            let (from, to) = p.pair(5);
            assert_ne!(from, to);
            assert!(from < 5 && to < 5);
            seen_from[from as usize] = true;
            seen_to[to as usize] = true;
        }
        assert!(seen_from.iter().all(|&s| s) && seen_to.iter().all(|&s| s));
        let mut a = Picker::new(3);
        let mut b = Picker::new(3);
        assert_eq!(a.next_u64(), b.next_u64(), "same seed, same sequence");
        assert!(Picker::new(0).pair(2).0 < 2);
    }
}
