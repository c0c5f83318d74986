//! Client-to-server streams (RFC 6120): the listener, the transport, and the per-connection
//! state machine, one task per connection.

mod auth;
mod bind;
pub mod bridge;
mod connection;
mod csi;
mod records;
mod register;
mod session;
mod sm;
mod transport;
mod writer;

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::admission::Refusal;
use crate::server::Server;

pub(crate) use connection::run_bridged;
pub(crate) use register::MAX_REGISTRATION_WAIT;
pub use sm::ResumeRegistry;
pub(crate) use sm::{end_moved, give_away};
pub(crate) use transport::Transport;

/// The TLS 1.3 record reader, for its fuzz target (fuzz/fuzz_targets/records.rs).
#[doc(hidden)]
pub use records::fuzz_record_stream;

/// Accepts connections until shutdown, one task each.
pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, direct_tls: bool) {
    let mut shutdown = server.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        match server.connections.admit(peer.ip()) {
            Ok(guard) => {
                tokio::spawn(connection::run(
                    server.clone(),
                    tcp,
                    peer,
                    direct_tls,
                    guard,
                ));
            }
            Err(refusal) => {
                // Admission logged and counted it (once per address per minute).
                if !direct_tls {
                    tokio::spawn(refuse(server.clone(), tcp, refusal));
                }
            }
        }
    }
}

/// Tells a refused plaintext client why, as a stream error (RFC 6120 §4.9.1.2), then closes.
async fn refuse(server: Arc<Server>, mut tcp: tokio::net::TcpStream, refusal: Refusal) {
    let (condition, why) = match refusal {
        Refusal::TooManyConnections => (
            "resource-constraint",
            "The server is at its connection limit",
        ),
        Refusal::TooFast => (
            "policy-violation",
            "Too many new connections from your address",
        ),
    };
    write_stream_error(&mut tcp, server.config.default_domain(), condition, why).await;
}

/// Writes a whole stream (header, error, closing tag) to a plaintext connection that has no
/// session: RFC 6120 §4.9.1.2 lets the server open the stream just to say why it ends.
/// `condition` and `text` are ours, never the client's.
pub(super) async fn write_stream_error(
    tcp: &mut tokio::net::TcpStream,
    domain: &str,
    condition: &str,
    text: &str,
) {
    let stream = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='{domain}' version='1.0'><stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{text}</text></stream:error></stream:stream>"
    );
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tcp.write_all(stream.as_bytes()),
    )
    .await;
}
