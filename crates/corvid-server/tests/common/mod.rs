//! Helpers shared by the corvid-server integration tests: a real server on ephemeral ports
//! with a temporary data directory ([`TestServer`]), and a raw XMPP client over real TCP
//! and TLS ([`Client`]) that sends exactly the bytes a test wants and reads back exactly
//! what the server sent.
//!
//! Every read has a deadline ([`READ_TIMEOUT`] unless a test changes `Client::timeout`),
//! so a broken server fails a test quickly instead of hanging it.

#![allow(dead_code)] // each test binary uses a different subset

mod client;
pub mod federation;
pub mod http;
mod sasl;
#[macro_use]
pub mod services;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use corvid_proto::ns;
use corvid_server::{Config, RunningServer, Server};
use corvid_xml::Element;
use tempfile::TempDir;

#[allow(unused_imports)] // re-exports; each test binary uses a different subset
pub use client::{Client, Ending, Incoming};
#[allow(unused_imports)]
pub use sasl::Sasl;
#[allow(unused_imports)]
pub use tls::{CbType, TlsOptions, client_tls_config, tls_client_hello};

pub const DOMAIN: &str = "localhost";
/// How long a client waits for the server before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A running server on ephemeral loopback ports, with its data in a temp directory.
pub struct TestServer {
    running: Option<RunningServer>,
    pub server: Arc<Server>,
    /// The STARTTLS port.
    pub c2s_addr: SocketAddr,
    /// The direct-TLS port (XEP-0368).
    pub tls_addr: SocketAddr,
    /// The external components' port (XEP-0114), when components are configured.
    pub component_addr: Option<SocketAddr>,
    /// The server-to-server port, unless federation is off.
    pub s2s_addr: Option<SocketAddr>,
    /// The server-to-server direct TLS port (XEP-0368), when `direct_tls_listen` has one.
    pub s2s_direct_tls_addr: Option<SocketAddr>,
    /// The plain HTTP and the HTTPS listeners (WebSocket, BOSH, web services).
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub dir: TempDir,
}

/// The defaults tests start from: ephemeral ports, and timeouts short enough that a
/// forgotten connection never outlives its test by much.
pub fn test_config(dir: &TempDir) -> Config {
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    config.c2s.listen = vec![any_port];
    config.c2s.tls_listen = vec![any_port];
    config.component_listen = vec![any_port];
    config.s2s.listen = vec![any_port];
    config.http.listen = vec![any_port];
    config.http.tls_listen = vec![any_port];
    config.limits.unauthenticated_timeout_secs = 10;
    config
}

pub async fn start_server() -> Result<TestServer> {
    start_server_with(|_| {}).await
}

/// Starts a server with these accounts, all with `password`.
pub async fn start_server_with_users(names: &[&str], password: &str) -> Result<TestServer> {
    let ts = start_server().await?;
    for name in names {
        ts.create_user(name, password).await?;
    }
    Ok(ts)
}

/// Starts a server with [`test_config`] adjusted by `adjust`.
pub async fn start_server_with(adjust: impl FnOnce(&mut Config)) -> Result<TestServer> {
    log_when_asked();
    let dir = tempfile::tempdir().context("create temp dir")?;
    let mut config = test_config(&dir);
    adjust(&mut config);
    let running = corvid_server::start(config).await.context("start server")?;
    Ok(TestServer {
        server: running.server.clone(),
        c2s_addr: running.c2s_addrs[0],
        tls_addr: running.tls_addrs[0],
        component_addr: running.component_addrs.first().copied(),
        s2s_addr: running.s2s_addrs.first().copied(),
        s2s_direct_tls_addr: running.s2s_direct_tls_addrs.first().copied(),
        http_addr: running.http_addrs.first().copied(),
        https_addr: running.https_addrs.first().copied(),
        running: Some(running),
        dir,
    })
}

/// With `RUST_LOG` set (`RUST_LOG=corvid_server=debug`), the servers' logs go to the
/// test's output, shown when it fails.
fn log_when_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

impl TestServer {
    /// Creates `name@localhost` with `password`.
    pub async fn create_user(&self, name: &str, password: &str) -> Result<()> {
        let jid = corvid_proto::BareJid::new(&format!("{name}@{DOMAIN}"))?;
        corvid_server::accounts::create(&self.server.store, &jid, password).await?;
        Ok(())
    }

    /// Connects over STARTTLS, authenticates with SCRAM-SHA-256-PLUS (tls-exporter) and
    /// binds `resource`.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        resource: Option<&str>,
    ) -> Result<Client> {
        let mut client = Client::starttls_session(self.c2s_addr).await?;
        client.login(user, password, resource).await?;
        Ok(client)
    }

    /// Stops the server (every stream gets `system-shutdown`) and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading and writing stanzas
// ---------------------------------------------------------------------------------------

/// The condition of a `<stream:error/>`, if `el` is one.
pub fn stream_error_condition(el: &Element) -> Option<String> {
    if !el.is("error", ns::STREAM) {
        return None;
    }
    el.children()
        .find(|c| c.ns() == ns::STREAM_ERRORS && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// (type, condition) of a stanza's `<error/>` child.
pub fn stanza_error(el: &Element) -> Option<(String, String)> {
    el.get_child("error", el.ns())
        .and_then(corvid_proto::StanzaError::from_element)
}

pub fn message_body(el: &Element) -> Option<String> {
    el.get_child("body", ns::CLIENT).map(|b| b.text())
}

/// A `<message/>` of `kind` to `to` with `body`.
pub fn message(to: &str, kind: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("to", to)
        .with_attr("type", kind)
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}
