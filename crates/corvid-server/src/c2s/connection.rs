//! A client connection before it has a session: the wait for its first byte (an idle
//! socket holds only a small future, so floods of them cost little), shedding and the
//! silence timeout meanwhile (see `admission.rs`), and the TLS handshake paced per address,
//! for direct TLS here and for STARTTLS from the session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tracing::Instrument;

use super::Transport;
use super::session::Session;
use super::transport::{Secure, accept_tls};
use crate::admission::ConnectionGuard;
use crate::server::Server;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs one connection to its end.
pub async fn run(
    server: Arc<Server>,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
    guard: ConnectionGuard,
) {
    let span = tracing::info_span!("c2s", ip = %peer.ip(), jid = tracing::field::Empty);
    async move {
        // Until its first byte a connection holds only this small future: the session's
        // state (boxed below) is allocated when it speaks, so idle sockets cost little.
        let limits = &server.config.limits;
        let auth_deadline =
            Instant::now() + Duration::from_secs(limits.unauthenticated_timeout_secs);
        let silence = Duration::from_secs(limits.unauthenticated_idle_secs)
            .min(Duration::from_secs(limits.unauthenticated_timeout_secs));
        let mut tcp = tcp;
        let mut first = [0u8; 1];
        let mut shutdown = server.shutdown_signal();
        let spoke = tokio::select! {
            _ = shutdown.changed() => Err(("system-shutdown", "The server is shutting down")),
            _ = guard.shed() => Err(("connection-timeout", "Closed to make room: too many unauthenticated connections from your address")),
            // `peek`, not `readable`: tokio reports a fresh socket readable before any data.
            peeked = tokio::time::timeout(silence, tcp.peek(&mut first)) => match peeked {
                Ok(Ok(_)) => {
                    guard.touch();
                    Ok(())
                }
                Ok(Err(_)) => return,
                Err(_) => Err(("connection-timeout", "Nothing received before authentication")),
            },
        };
        if let Err((condition, why)) = spoke {
            tracing::debug!(why, "closed before it sent anything");
            if !direct_tls {
                let domain = server.config.default_domain();
                super::write_stream_error(&mut tcp, domain, condition, why).await;
            }
            return;
        }
        Box::pin(serve(server, tcp, peer, direct_tls, guard, auth_deadline)).await;
    }
    .instrument(span)
    .await
}

/// A connection that spoke: the TLS handshake on the direct-TLS port, then the stream.
async fn serve(
    server: Arc<Server>,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
    guard: ConnectionGuard,
    auth_deadline: Instant,
) {
    let transport = if direct_tls {
        let Ok(turn) = server.connections.handshake_turn(guard.key()) else {
            return;
        };
        // Boxed: a handshake's state is large, and the session after it must not carry
        // its size for life (this future holds the whole session).
        let handshake = Box::pin(accept_tls(&server.tls.direct, tcp));
        match paced_tls(&guard, turn, auth_deadline, handshake).await {
            Some(secure) => secure,
            None => return,
        }
    } else {
        Secure {
            transport: Transport::Plain(tcp),
            tls_exporter: None,
        }
    };
    let tls = transport.transport.is_tls();
    let mut session = Session::new(server, transport.transport, guard, (peer.ip(), "tcp"));
    session.auth_deadline = auth_deadline;
    if tls {
        session.auth_mut().bindings = session.channel_bindings(transport.tls_exporter);
    }
    session.run().await;
}

/// Runs a TLS handshake after `turn` (the wait for this address's turn, see
/// `admission.rs`), within the time allowed to authenticate, unless the connection is shed
/// meanwhile. `None` if it did not complete (the reason is logged).
pub(super) async fn paced_tls(
    guard: &ConnectionGuard,
    turn: Duration,
    auth_deadline: Instant,
    handshake: std::pin::Pin<Box<impl std::future::Future<Output = std::io::Result<Secure>>>>,
) -> Option<Secure> {
    let run = async {
        // A zero sleep would still wait for the timer's next tick.
        if !turn.is_zero() {
            tokio::time::sleep(turn).await;
        }
        tokio::time::timeout(handshake_timeout(auth_deadline), handshake).await
    };
    tokio::select! {
        _ = guard.shed() => {
            tracing::debug!("shed during its TLS handshake");
            None
        }
        done = run => match done {
            Ok(Ok(secure)) => Some(secure),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                None
            }
        },
    }
}

/// A TLS handshake may take TLS_HANDSHAKE_TIMEOUT, but not beyond the deadline to
/// authenticate: a client that stalls mid-handshake is as unauthenticated as any other.
fn handshake_timeout(auth_deadline: Instant) -> Duration {
    TLS_HANDSHAKE_TIMEOUT.min(auth_deadline.saturating_duration_since(Instant::now()))
}

/// Runs a client stream whose carrier is a WebSocket or a BOSH session (`bridge.rs`),
/// from the client at `peer`, admitted with `guard`.
pub async fn run_bridged(
    server: Arc<Server>,
    bridge: super::bridge::Bridge,
    peer: SocketAddr,
    transport: &'static str,
    guard: ConnectionGuard,
) {
    let span = tracing::info_span!("c2s", ip = %peer.ip(), transport, jid = tracing::field::Empty);
    async move {
        let origin = (peer.ip(), transport);
        let session = Session::new(server, Transport::Bridge(Box::new(bridge)), guard, origin);
        Box::pin(session.run()).await;
    }
    .instrument(span)
    .await
}
