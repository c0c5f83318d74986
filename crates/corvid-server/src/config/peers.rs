//! The configuration of what talks to the server besides its clients: other servers
//! (`[s2s]`), external components (`[[components]]`), and the operator's CLI (`[admin]`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The admin socket the `corvid` CLI asks a running server through (`admin.rs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub enabled: bool,
    /// The Unix socket's path; by default `admin.sock` in `data_dir`.
    pub socket: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            socket: None,
        }
    }
}

/// Server-to-server federation (RFC 6120 with STARTTLS, SASL EXTERNAL and XEP-0220 Server
/// Dialback).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// Federate at all: off, stanzas for other domains are bounced `remote-server-not-found`.
    pub enabled: bool,
    /// Where other servers connect, with STARTTLS.
    pub listen: Vec<SocketAddr>,
    /// Where other servers connect with TLS from the first byte (XEP-0368 direct TLS, ALPN
    /// `xmpp-server`); then the same negotiation without STARTTLS. None by default, as in
    /// Prosody (`s2s_direct_tls_ports`) and ejabberd (a `tls: true` listener): there is no
    /// standard port, and peers find one only through an `_xmpps-server._tcp` SRV record
    /// the operator publishes, so it is opened together with that record.
    pub direct_tls_listen: Vec<SocketAddr>,
    /// Insist on TLS both ways: STARTTLS required of incoming streams, and an outgoing
    /// connection to a server that does not offer it is given up.
    pub require_tls: bool,
    /// Where to reach a domain, before DNS is asked: `"example.org" = "192.0.2.10:5269"`
    /// (STARTTLS), or `"tls://192.0.2.10:5270"` for a port speaking direct TLS (XEP-0368).
    pub hosts: std::collections::BTreeMap<String, String>,
    /// Extra trusted roots (PEM files) for the certificates of other servers, beside the
    /// system's.
    pub ca_files: Vec<PathBuf>,
    /// Domains whose certificates are not checked: they always authenticate with dialback.
    pub insecure_domains: Vec<String>,
    /// When not empty, the only remote domains federated with.
    pub allow: Vec<String>,
    /// Remote domains never federated with.
    pub block: Vec<String>,
    /// Seconds without traffic after which a server-to-server connection is closed.
    pub idle_timeout_secs: u64,
    /// Seconds an outgoing connection may take to be connected and authenticated.
    pub connect_timeout_secs: u64,
    /// Stanzas queued per remote domain (while connecting, or behind a slow peer); beyond
    /// it they are bounced with `resource-constraint`.
    pub max_queue: usize,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            enabled: true,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5269))],
            direct_tls_listen: Vec::new(),
            require_tls: true,
            hosts: Default::default(),
            ca_files: Vec::new(),
            insecure_domains: Vec::new(),
            allow: Vec::new(),
            block: Vec::new(),
            idle_timeout_secs: 600,
            connect_timeout_secs: 30,
            max_queue: 1000,
        }
    }
}

impl S2sConfig {
    /// Whether federation with `domain` is allowed by `allow` and `block`.
    pub fn permits(&self, domain: &str) -> bool {
        let listed = |list: &[String]| list.iter().any(|d| d.eq_ignore_ascii_case(domain));
        !listed(&self.block) && (self.allow.is_empty() || listed(&self.allow))
    }

    /// Whether `domain`'s certificate goes unchecked.
    pub fn insecure(&self, domain: &str) -> bool {
        self.insecure_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// One external component (XEP-0114): the domain it serves and the secret it proves it
/// knows.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// The component's domain, e.g. `irc.localhost`.
    pub domain: String,
    /// The shared secret of the handshake.
    pub secret: String,
}
