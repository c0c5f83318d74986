//! `corvid-gateway-irc`: an XMPP to IRC gateway, as an XEP-0114 external component.
//!
//! ```text
//! corvid-gateway-irc [--config FILE] [--domain irc.localhost] [--server 127.0.0.1:5347]
//!                    [--secret SECRET] [--irc-port 6667] [--data-dir DIR]
//! ```
//!
//! IRC channels are MUC rooms at `#channel%irc.server@DOMAIN`, IRC users are
//! `nick%irc.server@DOMAIN`; see `address.rs` for the scheme and `config.rs` for the file.
//! When the XMPP server refuses or drops the component, it tries again with exponential
//! backoff. SIGTERM or Ctrl-C quit every IRC connection and close the stream.

mod address;
mod adhoc;
mod component;
mod config;
mod irc;
mod muc;
mod router;
mod session;
mod settings;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::component::ComponentError;
use crate::config::Config;
use crate::router::{Router, StreamEnd};
use crate::settings::Settings;

#[derive(Parser, Debug)]
#[command(version, about = "XMPP to IRC gateway (XEP-0114 component)")]
struct Cli {
    /// TOML configuration file (every key optional).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The component's domain (overrides `component.domain`).
    #[arg(long)]
    domain: Option<String>,
    /// The XMPP server's component port, host:port (overrides `component.server`).
    #[arg(long)]
    server: Option<String>,
    /// The shared secret (overrides `component.secret`).
    #[arg(long)]
    secret: Option<String>,
    /// The port of the IRC servers (overrides `irc.port`).
    #[arg(long)]
    irc_port: Option<u16>,
    /// Where settings are stored (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(domain) = cli.domain {
        config.component.domain = domain;
    }
    if let Some(server) = cli.server {
        config.component.server = server;
    }
    if let Some(secret) = cli.secret {
        config.component.secret = secret;
    }
    if let Some(port) = cli.irc_port {
        config.irc.port = port;
    }
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    if config.component.secret.is_empty() {
        bail!("no component secret: set component.secret or pass --secret");
    }
    let settings = Settings::open(&config.data_dir).await?;
    let config = Arc::new(config);

    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });

    let mut router = Router::new(config.clone(), settings);
    let first = Duration::from_secs(1);
    let max = Duration::from_secs(config.component.max_backoff_secs.max(1));
    let mut backoff = first;
    loop {
        info!(server = %config.component.server, domain = %config.component.domain, "connecting to the XMPP server");
        let connected = tokio::select! {
            result = component::connect(&config.component) => result,
            _ = stop_rx.changed() => break,
        };
        match connected {
            Ok(mut conn) => {
                info!("component stream established");
                backoff = first;
                match router.serve(&mut conn, &mut stop_rx).await {
                    StreamEnd::Shutdown => break,
                    StreamEnd::Lost(reason) => {
                        warn!(%reason, "lost the XMPP server");
                        router.stop_sessions("Gateway: lost its XMPP server").await;
                    }
                }
            }
            Err(ComponentError::Refused { condition, text }) => error!(
                %condition,
                text = text.as_deref().unwrap_or(""),
                "the XMPP server refused the component; check the secret and the domain"
            ),
            Err(e) => error!(error = %e, "cannot open the component stream"),
        }
        info!(?backoff, "retrying");
        tokio::select! {
            _ = tokio::time::sleep(jittered(backoff)) => {}
            _ = stop_rx.changed() => break,
        }
        backoff = (backoff * 2).min(max);
    }
    info!("stopped");
    Ok(())
}

/// Up to a quarter more than `base`, so gateways restarted together do not retry in step.
fn jittered(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
