//! The Corvid XMPP server as a library: listeners, client streams, the router, the session
//! manager and the modules (one per XEP). The `corvid` binary is a thin shell around it.

pub mod accounts;
pub mod c2s;
pub mod iq_tracker;
pub mod config;
pub mod limits;
pub mod memory;
pub mod module;
pub mod modules;
pub mod router;
pub mod server;
pub mod sessions;
pub mod tls;

pub use config::Config;
pub use server::{start, RunningServer, Server, StartError};

/// A random identifier (stream ids, generated resources): 64 bits as hex.
pub fn random_id() -> String {
    let mut bytes = [0u8; 8];
    // getrandom fails only without an OS entropy source; a clock-derived id is then still unique enough.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
