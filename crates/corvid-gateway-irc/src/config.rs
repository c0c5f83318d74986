//! The gateway's configuration: one TOML file, every key optional (defaults in code),
//! unknown keys rejected; command-line flags override the file.
//!
//! ```toml
//! data_dir = "./corvid-irc-data"
//!
//! [component]
//! domain = "irc.localhost"     # the component's JID
//! server = "127.0.0.1:5347"    # the XMPP server's component port (XEP-0114)
//! secret = "…"                 # the shared secret
//!
//! [irc]
//! port = 6667                  # port of every IRC server (plain TCP)
//! realname = "Corvid IRC gateway user"
//! servers = []                 # IRC servers users may reach; empty: any
//!
//! [limits]
//! servers_per_user = 5
//! channels_per_server = 30
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the users' settings are kept (`settings.json`).
    pub data_dir: PathBuf,
    pub component: ComponentConfig,
    pub irc: IrcConfig,
    pub limits: Limits,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentConfig {
    /// The component's domain, as the XMPP server knows it.
    pub domain: String,
    /// The XMPP server's component listener, `host:port`.
    pub server: String,
    /// The secret shared with the XMPP server.
    pub secret: String,
    /// Longest wait between two attempts to reach the XMPP server, in seconds.
    pub max_backoff_secs: u64,
}

impl Default for ComponentConfig {
    fn default() -> Self {
        ComponentConfig {
            domain: "irc.localhost".into(),
            server: "127.0.0.1:5347".into(),
            secret: String::new(),
            max_backoff_secs: 60,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IrcConfig {
    /// The port the gateway connects to on every IRC server.
    pub port: u16,
    /// The realname (GECOS) sent when a user has not set one.
    pub realname: String,
    /// The IRC servers users may connect to; empty means any.
    pub servers: Vec<String>,
    /// Seconds to wait for the TCP connection to an IRC server.
    pub connect_timeout_secs: u64,
}

impl Default for IrcConfig {
    fn default() -> Self {
        IrcConfig {
            port: 6667,
            realname: "Corvid IRC gateway user".into(),
            servers: Vec::new(),
            connect_timeout_secs: 10,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// IRC servers one XMPP account may be connected to at once.
    pub servers_per_user: usize,
    /// Channels one XMPP account may be in on one server.
    pub channels_per_server: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            servers_per_user: 5,
            channels_per_server: 30,
        }
    }
}

impl Config {
    /// Reads the file at `path`; the defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("read {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?
            }
            None => Config::default(),
        };
        if config.data_dir.as_os_str().is_empty() {
            config.data_dir = PathBuf::from("corvid-irc-data");
        }
        Ok(config)
    }

    /// Whether users may reach `server`.
    pub fn server_allowed(&self, server: &str) -> bool {
        self.irc.servers.is_empty()
            || self
                .irc
                .servers
                .iter()
                .any(|s| s.eq_ignore_ascii_case(server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional_and_unknown_keys_are_refused() {
        let config: Config = toml::from_str("[component]\nsecret = \"s\"").unwrap();
        assert_eq!(config.component.domain, "irc.localhost");
        assert_eq!(config.irc.port, 6667);
        assert!(config.server_allowed("anything"));
        assert!(toml::from_str::<Config>("[irc]\nprot = 1").is_err());
    }
}
