//! The HTTP face: one listener (plain HTTP, and HTTPS with the server's certificate) for
//! everything web-facing, each service a module of its own:
//!
//! - `websocket.rs`: XMPP over WebSocket (RFC 7395) at `/xmpp-websocket`;
//! - `bosh/`: XMPP over BOSH (XEP-0124, XEP-0206) at `/http-bind`;
//! - `discovery.rs`: XEP-0156 `/.well-known/host-meta` and `host-meta.json`;
//! - `web_client.rs`: the bundled web client (Converse.js) at `/`;
//! - `admin_api.rs`: the JSON admin API under `/api/v1/` (`[http] admin_api`);
//! - `metrics.rs`: Prometheus metrics at `/metrics` (`[http] metrics`);
//! - `upload.rs`: XEP-0363 file upload and download at `/upload/…`.
//!
//! Every request carries the connection's [`Peer`]; [`client_of`] tells who the client
//! really is, believing `X-Forwarded-For`/`-Proto` only from `[http] trusted_proxies`.

mod admin_api;
mod bosh;
mod discovery;
mod metrics;
mod upload;
mod web_client;
mod websocket;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, Request};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::config::HttpConfig;
use crate::server::Server;

/// How long a TLS handshake on the HTTPS port may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a request's head may take to arrive (slow-loris defence).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// The connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// It came over HTTPS.
    pub https: bool,
}

/// Who a request is from, as far as it can be believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// Whether the client's own connection is confidential.
    pub secure: bool,
}

/// The client behind a request: the connection's address, or, from a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_of(config: &HttpConfig, peer: &Peer, headers: &HeaderMap) -> ClientInfo {
    let trusted = |ip: &IpAddr| config.trusted_proxies.contains(ip);
    if !trusted(&peer.addr.ip()) {
        let ip = peer.addr.ip();
        return ClientInfo {
            ip,
            secure: peer.https || ip.is_loopback() || config.consider_plain_secure,
        };
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let ip = forwarded
        .iter()
        .rev()
        .find(|ip| !trusted(ip))
        .copied()
        .unwrap_or(peer.addr.ip());
    let proto_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    ClientInfo {
        ip,
        secure: peer.https || proto_https || config.consider_plain_secure,
    }
}

/// Everything served, by path.
pub fn router(server: &Arc<Server>) -> Router {
    let config = &server.config.http;
    let mut app = Router::new().merge(discovery::routes());
    if config.websocket {
        app = app.merge(websocket::routes());
    }
    if config.bosh {
        app = app.merge(bosh::routes());
    }
    if config.web_client {
        app = app.merge(web_client::routes());
    }
    if config.admin_api {
        app = app.merge(admin_api::routes());
    }
    if config.metrics {
        app = app.merge(metrics::routes());
    }
    if server.upload.is_some() {
        app = app.merge(upload::routes());
    }
    app.with_state(server.clone())
}

/// The HTTPS listener's TLS: the server's certificate, HTTP/1.1.
pub fn tls_config(tls: &crate::tls::Tls) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(tls.chain.clone(), tls.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves one accepted connection: TLS first when `tls` is given, then HTTP/1.1 (with
/// upgrades, for WebSocket).
pub async fn serve(
    server: Arc<Server>,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    tcp: TcpStream,
    addr: SocketAddr,
) {
    let peer = Peer {
        addr,
        https: tls.is_some(),
    };
    match tls {
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => serve_http(server, app, stream, peer).await,
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "HTTPS handshake failed"),
                Err(_) => tracing::debug!(%addr, "HTTPS handshake timed out"),
            }
        }
        None => serve_http(server, app, tcp, peer).await,
    }
}

async fn serve_http<IO>(server: Arc<Server>, app: Router, io: IO, peer: Peer)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(peer);
        app.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut shutdown = server.shutdown_signal();
    tokio::pin!(connection);
    tokio::select! {
        done = connection.as_mut() => {
            if let Err(e) = done {
                tracing::debug!(peer = %peer.addr, error = %e, "HTTP connection ended");
            }
        }
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
        }
    }
}

/// Accepts HTTP connections until shutdown. `app` is the server's one [`router`], shared by
/// every listener (a BOSH session may go on over either).
pub async fn accept_loop(
    server: Arc<Server>,
    app: Router,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let mut shutdown = server.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, addr)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve(server.clone(), app.clone(), tls.clone(), tcp, addr));
            }
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn peer(addr: &str, https: bool) -> Peer {
        Peer {
            addr: addr.parse().unwrap(),
            https,
        }
    }

    #[test]
    fn forwarded_headers_are_believed_only_from_trusted_proxies() {
        let mut config = HttpConfig::default();
        let spoofed = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        let direct = client_of(&config, &peer("203.0.113.9:1000", false), &spoofed);
        assert_eq!(
            direct,
            ClientInfo {
                ip: "203.0.113.9".parse().unwrap(),
                secure: false
            }
        );
        config.trusted_proxies = vec!["10.0.0.1".parse().unwrap()];
        let chain = headers(&[
            ("x-forwarded-for", "198.51.100.7, 10.0.0.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let proxied = client_of(&config, &peer("10.0.0.1:1000", false), &chain);
        assert_eq!(
            proxied,
            ClientInfo {
                ip: "198.51.100.7".parse().unwrap(),
                secure: true
            }
        );
        let plain = headers(&[("x-forwarded-for", "198.51.100.7")]);
        let proxied = client_of(&config, &peer("10.0.0.1:1000", false), &plain);
        assert!(!proxied.secure, "a proxied plain-HTTP client is not secure");
    }

    #[test]
    fn loopback_and_https_clients_are_secure() {
        let config = HttpConfig::default();
        assert!(client_of(&config, &peer("127.0.0.1:1", false), &HeaderMap::new()).secure);
        assert!(client_of(&config, &peer("192.0.2.1:1", true), &HeaderMap::new()).secure);
        assert!(!client_of(&config, &peer("192.0.2.1:1", false), &HeaderMap::new()).secure);
    }
}
