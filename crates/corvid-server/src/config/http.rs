//! The configuration of the HTTP listener (`[http]`) and what it serves: WebSocket
//! (RFC 7395), BOSH (XEP-0124/0206), XEP-0156 discovery, and the services that modules of
//! their own add to it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

/// One HTTP listener for everything web-facing.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve HTTP at all.
    pub enabled: bool,
    /// Plain HTTP: on loopback by default, for a reverse proxy in front that terminates
    /// TLS, or for local use.
    pub listen: Vec<SocketAddr>,
    /// HTTPS, with the server's certificate (`[tls]`).
    pub tls_listen: Vec<SocketAddr>,
    /// The address clients reach this server's HTTP at, e.g. `https://chat.example.org`;
    /// by default `https://<first domain>:<first tls_listen port>`. Links handed to clients
    /// (XEP-0156 discovery, upload URLs) are made from it.
    pub public_url: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` headers are
    /// believed; from anyone else they are ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// Whether a plain-HTTP connection counts as secure for authentication (PLAIN is
    /// offered only over secure transports). Loopback and trusted proxies saying
    /// `X-Forwarded-Proto: https` always do.
    pub consider_plain_secure: bool,
    /// XMPP over WebSocket (RFC 7395) at `/xmpp-websocket`.
    pub websocket: bool,
    /// XMPP over BOSH (XEP-0124/0206) at `/http-bind`.
    pub bosh: bool,
    /// The longest a BOSH request is held waiting for something to answer (the session's
    /// `wait`, which clients may ask to be shorter).
    pub bosh_max_wait_secs: u64,
    /// A BOSH session no request comes for within this many seconds ends.
    pub bosh_inactivity_secs: u64,
    /// The longest a BOSH client may announce it will be away (`pause`, XEP-0124 §10).
    pub bosh_max_pause_secs: u64,
    /// The `Origin`s a browser may open a WebSocket or BOSH session from
    /// (`https://chat.example.org`); empty: any. Requests without `Origin` (not from a
    /// browser) are always let through.
    pub origins: Vec<String>,
    /// Serve the bundled web client (Converse.js) at `/`.
    pub web_client: bool,
    /// Where its files are (Converse's `dist`); relative paths are from the working
    /// directory. `npm ci --prefix web` in Corvid's source directory installs them at the
    /// default place.
    pub web_client_dir: PathBuf,
    /// The JSON admin API under `/api/v1/` (`http/admin_api.rs`), for bearer tokens made
    /// with `corvid token create`. Off by default. Served only to secure clients (HTTPS,
    /// loopback, a trusted proxy saying HTTPS, or `consider_plain_secure`).
    pub admin_api: bool,
    /// Prometheus metrics at `/metrics` (`http/metrics.rs`).
    pub metrics: bool,
    /// Who may read `/metrics` besides loopback: client addresses (as `client_of` sees
    /// them, so behind a trusted proxy the address it names). Others get 403.
    pub metrics_allow: Vec<IpAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5280))],
            tls_listen: vec![SocketAddr::from(([127, 0, 0, 1], 5443))],
            public_url: None,
            trusted_proxies: Vec::new(),
            consider_plain_secure: false,
            websocket: true,
            bosh: true,
            bosh_max_wait_secs: 60,
            bosh_inactivity_secs: 60,
            bosh_max_pause_secs: 120,
            origins: Vec::new(),
            web_client: true,
            web_client_dir: PathBuf::from("web/node_modules/converse.js/dist"),
            admin_api: false,
            metrics: true,
            metrics_allow: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// Whether a browser page from `origin` may open sessions.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.is_empty()
            || self
                .origins
                .iter()
                .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}
