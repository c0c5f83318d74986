//! TLS client setup for benchmarks: any certificate is accepted.
//!
//! The servers under test run on loopback with self-signed certificates, and checking
//! them would measure nothing. The SDK's accept-anything verification must never leave a
//! benchmark tool: it accepts every certificate (signatures are still checked, so the
//! handshake costs what a real one does). Session resumption is off so every login pays a
//! full handshake, as a fleet of distinct clients would, whether or not a server issues
//! tickets.

use std::sync::Arc;

use corvid_client::tls::{Verification, client_config};
use rustls::client::Resumption;
use tokio_rustls::TlsConnector;

/// Connectors for STARTTLS, for direct TLS (ALPN `xmpp-client`, XEP-0368), and for
/// HTTPS under a WebSocket (ALPN `http/1.1`).
pub fn connector(direct: bool, websocket: bool) -> anyhow::Result<TlsConnector> {
    let alpn = match (direct, websocket) {
        (_, true) => Some(&b"http/1.1"[..]),
        (true, false) => Some(&b"xmpp-client"[..]),
        (false, false) => None,
    };
    let mut config = client_config(&Verification::DangerAcceptAny, alpn)?;
    config.resumption = Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}
