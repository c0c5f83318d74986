//! The per-session inbound token bucket (connection admission is in `admission.rs`).

use std::time::{Duration, Instant};

/// Token bucket over inbound bytes: reading pauses when it is empty (like Prosody's
/// `limits`), which slows a flooding client down without hurting anyone else.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(bytes_per_sec: u32, burst: u32) -> Self {
        TokenBucket {
            rate: f64::from(bytes_per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    /// Takes `n` bytes; returns how long to wait before reading again (zero if none).
    pub fn take(&mut self, n: usize, now: Instant) -> Duration {
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_throttles_beyond_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, 2000);
        assert_eq!(bucket.take(2000, start), Duration::ZERO);
        let wait = bucket.take(500, start);
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert_eq!(
            bucket.take(0, start + Duration::from_secs(2)),
            Duration::ZERO
        );
    }
}
