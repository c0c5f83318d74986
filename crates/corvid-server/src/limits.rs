//! Connection limits and the per-session inbound token bucket.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::config::LimitsConfig;

/// Counts open connections, in all and not-yet-authenticated per IP address.
pub struct ConnectionLimits {
    open: Arc<AtomicU32>,
    unauthenticated: Arc<DashMap<IpAddr, u32>>,
    max_open: u32,
    max_unauthenticated_per_ip: u32,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    TooManyConnections,
    TooManyFromAddress,
}

impl ConnectionLimits {
    pub fn new(config: &LimitsConfig) -> Self {
        ConnectionLimits {
            open: Arc::new(AtomicU32::new(0)),
            unauthenticated: Arc::new(DashMap::new()),
            max_open: config.max_connections,
            max_unauthenticated_per_ip: config.max_unauthenticated_per_ip,
        }
    }

    /// Admits a new connection, or says why not.
    pub fn admit(&self, ip: IpAddr) -> Result<ConnectionGuard, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_open {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TooManyConnections);
        }
        let mut count = self.unauthenticated.entry(ip).or_insert(0);
        if *count >= self.max_unauthenticated_per_ip {
            drop(count);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TooManyFromAddress);
        }
        *count += 1;
        Ok(ConnectionGuard {
            ip,
            open: self.open.clone(),
            unauthenticated: Some(self.unauthenticated.clone()),
        })
    }

    pub fn open(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }
}

/// Held by a connection task; releases its counts when dropped.
pub struct ConnectionGuard {
    ip: IpAddr,
    open: Arc<AtomicU32>,
    unauthenticated: Option<Arc<DashMap<IpAddr, u32>>>,
}

impl ConnectionGuard {
    /// The connection authenticated: it no longer counts against its address's limit.
    pub fn authenticated(&mut self) {
        if let Some(map) = self.unauthenticated.take() {
            release(&map, self.ip);
        }
    }
}

fn release(map: &DashMap<IpAddr, u32>, ip: IpAddr) {
    map.remove_if_mut(&ip, |_, count| {
        *count = count.saturating_sub(1);
        *count == 0
    });
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.authenticated();
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

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
    fn per_ip_limit_is_released_on_auth_and_drop() {
        let limits = ConnectionLimits::new(&LimitsConfig {
            max_unauthenticated_per_ip: 2,
            max_connections: 3,
            ..LimitsConfig::default()
        });
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut a = limits.admit(ip).unwrap();
        let b = limits.admit(ip).unwrap();
        assert_eq!(limits.admit(ip).err(), Some(Refusal::TooManyFromAddress));
        a.authenticated();
        let c = limits.admit(ip).unwrap();
        assert_eq!(
            limits.admit([127, 0, 0, 2].into()).err(),
            Some(Refusal::TooManyConnections)
        );
        drop((a, b, c));
        assert_eq!(limits.open(), 0);
        assert!(limits.admit(ip).is_ok());
    }

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
