//! The Corvid XMPP server as a library: listeners, client streams, the router, the session
//! manager and the modules (one per XEP). The `corvid` binary is a thin shell around it.

pub mod accounts;
pub mod admin;
pub mod admission;
pub mod api_tokens;
pub mod auth_throttle;
pub mod c2s;
pub mod cluster;
pub mod component;
pub mod config;
pub mod http;
pub mod iq_tracker;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod module;
pub mod modules;
pub mod operations;
pub mod router;
pub mod s2s;
pub mod server;
pub mod sessions;
pub mod throttle;
pub mod tls;

pub use config::Config;
pub use server::{RunningServer, Server, StartError, start};

/// A random identifier (stream ids, generated resources, stanza ids): 64 bits as hex.
///
/// Every delivered message gets one (XEP-0359), so this is on the hot path: random bytes
/// come from the OS 512 at a time, and the hex is written without `format!`.
pub fn random_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = random_bytes::<8>();
    let mut id = String::with_capacity(16);
    for b in bytes {
        id.push(HEX[usize::from(b >> 4)] as char);
        id.push(HEX[usize::from(b & 0xf)] as char);
    }
    id
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    use std::cell::RefCell;
    const POOL: usize = 512;
    thread_local! {
        static POOL_BYTES: RefCell<([u8; POOL], usize)> = const { RefCell::new(([0; POOL], POOL)) };
    }
    POOL_BYTES.with_borrow_mut(|(pool, used)| {
        if *used + N > POOL {
            // getrandom fails only without an OS entropy source; clock-derived bytes are
            // then still unique enough for identifiers.
            if getrandom::fill(pool).is_err() {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default();
                for (i, chunk) in pool.chunks_mut(16).enumerate() {
                    let v = nanos.wrapping_add(i as u128).to_le_bytes();
                    chunk.copy_from_slice(&v[..chunk.len()]);
                }
            }
            *used = 0;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&pool[*used..*used + N]);
        *used += N;
        out
    })
}

/// Locks a mutex, poisoned or not: what the crate guards with `std::sync::Mutex` is never
/// left half-updated by a panic (no guard is held across a call that could panic midway).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_ids_are_16_hex_digits_and_distinct() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| super::random_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| {
            id.len() == 16
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        }));
    }
}
