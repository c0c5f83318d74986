//! Server configuration: one TOML file, every key optional, unknown keys rejected.
//!
//! Each section is a struct with its defaults in code, so the README's config reference
//! and the behaviour can't drift apart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod cluster;
mod http;
mod limits;
mod peers;
mod services;

pub use cluster::ClusterConfig;
pub use http::HttpConfig;
pub use limits::{LimitsConfig, SlowConsumerPolicy};
pub use peers::{AdminConfig, ComponentConfig, S2sConfig};
pub use services::{ExternalService, ExternalServiceKind, UploadConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The domains this server serves; the first is the default.
    pub domains: Vec<String>,
    /// Where the SQLite database and the generated certificate live.
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub c2s: C2sConfig,
    pub tls: TlsConfig,
    pub registration: RegistrationConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub modules: ModulesConfig,
    pub offline: OfflineConfig,
    pub vcard: VCardConfig,
    pub muc: MucConfig,
    pub pubsub: PubSubConfig,
    pub mam: MamConfig,
    pub stream_management: StreamManagementConfig,
    pub push: PushConfig,
    /// Where external components (XEP-0114) connect; used only when `components` names
    /// some. Loopback by default: components are trusted programs on the same host.
    pub component_listen: Vec<SocketAddr>,
    /// External components (XEP-0114), each serving a domain of its own.
    pub components: Vec<ComponentConfig>,
    pub admin: AdminConfig,
    pub s2s: S2sConfig,
    pub http: HttpConfig,
    pub upload: UploadConfig,
    pub cluster: ClusterConfig,
    /// STUN and TURN servers announced to local users (XEP-0215).
    pub external_services: Vec<ExternalService>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domains: vec!["localhost".into()],
            data_dir: PathBuf::from("./corvid-data"),
            component_listen: vec![SocketAddr::from(([127, 0, 0, 1], 5347))],
            components: Vec::new(),
            admin: AdminConfig::default(),
            s2s: S2sConfig::default(),
            http: HttpConfig::default(),
            upload: UploadConfig::default(),
            cluster: ClusterConfig::default(),
            external_services: Vec::new(),
            storage: StorageConfig::default(),
            c2s: C2sConfig::default(),
            tls: TlsConfig::default(),
            registration: RegistrationConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            modules: ModulesConfig::default(),
            offline: OfflineConfig::default(),
            vcard: VCardConfig::default(),
            muc: MucConfig::default(),
            pubsub: PubSubConfig::default(),
            mam: MamConfig::default(),
            stream_management: StreamManagementConfig::default(),
            push: PushConfig::default(),
        }
    }
}

/// XEP-0357 push notifications: what the summary sent to a client's app server says.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Include the sender's JID (`last-message-sender`).
    pub include_sender: bool,
    /// Include the message body (`last-message-body`): off by default, as the app server
    /// and the vendor's push service are third parties.
    pub include_body: bool,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            include_sender: true,
            include_body: false,
        }
    }
}

/// XEP-0198 stream management.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamManagementConfig {
    /// Seconds a session whose connection dropped waits to be resumed, when the client
    /// does not say (`<enable max/>`).
    pub resume_timeout_secs: u64,
    /// The longest wait a client may ask for with `max`.
    pub max_resume_timeout_secs: u64,
    /// Bytes of sent-but-unacknowledged stanzas kept per session (and of stanzas held for a
    /// detached one); beyond it the session is closed and its unacknowledged messages go to
    /// the account's other resources or to offline storage, never lost.
    pub max_unacked_bytes: usize,
    /// Unacknowledged stanzas after which the server asks for an ack (`<r/>`); fewer are
    /// asked about after 10 seconds.
    pub ack_request_stanzas: u32,
    /// Where both counters start. XEP-0198 says 0; a value near 2^32 tests clients'
    /// (and our) wrap-around.
    pub counter_start: u32,
}

impl Default for StreamManagementConfig {
    fn default() -> Self {
        StreamManagementConfig {
            resume_timeout_secs: 300,
            max_resume_timeout_secs: 600,
            max_unacked_bytes: 1024 * 1024,
            ack_request_stanzas: 5,
            counter_start: 0,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite:PATH`; default `sqlite:<data_dir>/corvid.sqlite`.
    pub url: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sConfig {
    /// Addresses for client connections with STARTTLS (RFC 6120 §5).
    pub listen: Vec<SocketAddr>,
    /// Addresses for client connections with direct TLS (XEP-0368).
    pub tls_listen: Vec<SocketAddr>,
    /// Refuse authentication before TLS (on by default; tests and benchmarks may turn it off).
    pub require_tls: bool,
}

impl Default for C2sConfig {
    fn default() -> Self {
        C2sConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5222))],
            tls_listen: vec![SocketAddr::from(([127, 0, 0, 1], 5223))],
            require_tls: true,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; when unset, a self-signed one is generated in `data_dir`.
    pub cert: Option<PathBuf>,
    /// PEM private key matching `cert`.
    pub key: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// In-band registration (XEP-0077). Default: open only when the sole domain is `localhost`.
    pub open: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `corvid_server=debug,info` …
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModulesConfig {
    /// Names of modules to leave out (e.g. `["version"]`).
    pub disabled: Vec<String>,
}

/// XEP-0160 offline messages.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// Messages kept per account; beyond it senders get `resource-constraint`.
    pub quota: usize,
    /// Leave out of the offline backlog the messages a session fetched from its archive
    /// (XEP-0313) before its initial presence, as Conversations and Monal do (XEP-0313
    /// §7.1.1). On by default; off, every stored message is delivered, for clients that
    /// want the backlog whatever they synced.
    pub skip_fetched_from_archive: bool,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig {
            quota: 1000,
            skip_fetched_from_archive: true,
        }
    }
}

/// XEP-0054 vCards.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VCardConfig {
    /// Largest vCard accepted, in bytes of XML (photos included).
    pub max_bytes: usize,
}

impl Default for VCardConfig {
    fn default() -> Self {
        VCardConfig {
            max_bytes: 64 * 1024,
        }
    }
}

/// XEP-0045 multi-user chat service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucConfig {
    /// The service's own domain; default `conference.<first domain>`.
    pub domain: Option<String>,
    /// Most messages a room keeps as discussion history (a room's own `historylength` is capped by it).
    pub max_history: usize,
    /// Most occupants of one room (a room's own `maxusers` is capped by it).
    pub max_occupants: usize,
    /// Most rooms one user may have created and that still exist.
    pub max_rooms_per_user: usize,
    /// Most rooms on the service.
    pub max_rooms: usize,
}

impl Default for MucConfig {
    fn default() -> Self {
        MucConfig {
            domain: None,
            max_history: 20,
            max_occupants: 1000,
            max_rooms_per_user: 100,
            max_rooms: 100_000,
        }
    }
}

/// Who may create nodes on the publish-subscribe service.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeCreation {
    /// Any account of a served domain.
    #[default]
    Local,
    /// Only the JIDs listed in `[pubsub] admins`.
    Admins,
    /// Anyone who can reach the service.
    Open,
}

/// XEP-0060 publish-subscribe: the service on its own domain, and PEP (XEP-0163) on
/// every account.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PubSubConfig {
    /// The service's own domain; default `pubsub.<first domain>`.
    pub domain: Option<String>,
    /// Who may create nodes on the service.
    pub create: NodeCreation,
    /// Bare JIDs that administer the service: they may create nodes under `create =
    /// "admins"` and act as owners of every node.
    pub admins: Vec<String>,
    /// What `pubsub#max_items = max` means, and the most items any node keeps.
    pub max_items_per_node: usize,
    /// Largest item payload accepted, in bytes of XML.
    pub max_payload_bytes: usize,
    /// Most nodes one account may have: in its PEP service, and created on the service.
    pub max_nodes_per_user: usize,
    /// Most items one account's PEP nodes may hold together.
    pub max_pep_items_per_user: usize,
    /// Most nodes on the service.
    pub max_nodes: usize,
    /// Publications per second one account may make (paced beyond `publish_burst`).
    pub publishes_per_sec_per_user: u32,
    pub publish_burst_per_user: u32,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            domain: None,
            create: NodeCreation::Local,
            admins: Vec::new(),
            max_items_per_node: 10_000,
            max_payload_bytes: 128 * 1024,
            max_nodes_per_user: 1_000,
            max_pep_items_per_user: 10_000,
            max_nodes: 100_000,
            publishes_per_sec_per_user: 50,
            publish_burst_per_user: 500,
        }
    }
}

/// What an account archives by default (XEP-0313 §6 `default`), until it sets its own
/// preferences.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveDefault {
    /// Every conversation.
    #[default]
    Always,
    /// Conversations with contacts in the account's roster.
    Roster,
    /// None (only the JIDs the account lists under `always`).
    Never,
}

impl ArchiveDefault {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveDefault::Always => "always",
            ArchiveDefault::Roster => "roster",
            ArchiveDefault::Never => "never",
        }
    }
}

/// XEP-0313 message archives: each account's one-to-one messages, and the groupchat of
/// rooms that enable archiving.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MamConfig {
    /// What accounts archive until they set their own preferences: `always`, `roster` or `never`.
    pub default: ArchiveDefault,
    /// Archive delivery receipts (XEP-0184 `<received/>`). Off by default: a receipt says one
    /// device got a message, which another device syncing the archive has no use for.
    pub archive_receipts: bool,
    /// Archive chat markers (XEP-0333 `<displayed/>` …). On by default: they tell a user's
    /// other devices what was read.
    pub archive_markers: bool,
    /// Messages in a page when the query names no `<max/>`.
    pub default_page: usize,
    /// Most messages in one page (a larger `<max/>` is lowered to it).
    pub max_page: usize,
    /// Most bytes of archived messages in one page: a page stops early (`complete` false)
    /// rather than overflow the requesting session's queue.
    pub max_page_bytes: usize,
    /// Days a message stays in any archive; 0 keeps messages forever.
    pub retention_days: u64,
    /// Messages kept per archive (account or room); beyond it the oldest are removed.
    /// 0 sets no limit.
    pub max_messages_per_user: usize,
}

impl Default for MamConfig {
    fn default() -> Self {
        MamConfig {
            default: ArchiveDefault::Always,
            archive_receipts: false,
            archive_markers: true,
            default_page: 50,
            max_page: 250,
            max_page_bytes: 1024 * 1024,
            retention_days: 0,
            max_messages_per_user: 0,
        }
    }
}

impl Config {
    /// The publish-subscribe service's domain.
    pub fn pubsub_domain(&self) -> String {
        self.pubsub
            .domain
            .clone()
            .unwrap_or_else(|| format!("pubsub.{}", self.default_domain()))
    }

    /// The multi-user chat service's domain.
    pub fn muc_domain(&self) -> String {
        self.muc
            .domain
            .clone()
            .unwrap_or_else(|| format!("conference.{}", self.default_domain()))
    }

    /// The HTTP file upload service's domain.
    pub fn upload_domain(&self) -> String {
        self.upload
            .domain
            .clone()
            .unwrap_or_else(|| format!("upload.{}", self.default_domain()))
    }

    /// Reads a config file; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = match path {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
        };
        config.validate()?;
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.domains.is_empty() {
            return Err(ConfigError::Invalid(
                "`domains` must name at least one domain".into(),
            ));
        }
        for domain in &self.domains {
            let parsed = jid::BareJid::new(domain)
                .map_err(|e| ConfigError::Invalid(format!("domain {domain:?}: {e}")))?;
            if parsed.node().is_some() || parsed.as_str() != domain {
                return Err(ConfigError::Invalid(format!(
                    "domain {domain:?} is not a normalized domain name"
                )));
            }
        }
        self.cluster.validate().map_err(ConfigError::Invalid)?;
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "[tls] needs both `cert` and `key`, or neither".into(),
            ));
        }
        let services = [
            ("muc", self.muc_domain()),
            ("pubsub", self.pubsub_domain()),
            ("upload", self.upload_domain()),
        ];
        for (key, service) in &services {
            match jid::BareJid::new(service) {
                Ok(parsed)
                    if parsed.node().is_none()
                        && parsed.as_str() == service
                        && !self.serves(service) => {}
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "{key}.domain {service:?} must be a normalized domain name other than the served domains"
                    )));
                }
            }
        }
        for (i, (key, domain)) in services.iter().enumerate() {
            if let Some((other, _)) = services[..i].iter().find(|(_, d)| d == domain) {
                return Err(ConfigError::Invalid(format!(
                    "{other}.domain and {key}.domain must differ"
                )));
            }
        }
        for service in &self.external_services {
            if let Some(problem) = service.problem() {
                return Err(ConfigError::Invalid(format!(
                    "external_services: {} {}",
                    service.host, problem
                )));
            }
        }
        for (i, component) in self.components.iter().enumerate() {
            let domain = component.domain.to_ascii_lowercase();
            if corvid_proto::BareJid::new(&domain).map_or(true, |j| j.node().is_some()) {
                return Err(ConfigError::Invalid(format!(
                    "components: {:?} is not a domain",
                    component.domain
                )));
            }
            let taken = self.serves(&domain)
                || domain == self.muc_domain()
                || domain == self.pubsub_domain()
                || domain == self.upload_domain()
                || self.components[..i]
                    .iter()
                    .any(|c| c.domain.eq_ignore_ascii_case(&domain));
            if taken {
                return Err(ConfigError::Invalid(format!(
                    "components: {domain} is already served"
                )));
            }
            if component.secret.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "components: {domain} needs a secret"
                )));
            }
        }
        for admin in &self.pubsub.admins {
            if jid::BareJid::new(admin).is_err() {
                return Err(ConfigError::Invalid(format!(
                    "pubsub.admins: {admin:?} is not a JID"
                )));
            }
        }
        if self.mam.max_page == 0 || self.mam.default_page == 0 {
            return Err(ConfigError::Invalid(
                "mam.max_page and mam.default_page must be at least 1".into(),
            ));
        }
        for (domain, addr) in &self.s2s.hosts {
            if crate::s2s::resolve::parse_target(addr).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "s2s.hosts: {domain} = {addr:?} is not HOST:PORT or tls://HOST:PORT"
                )));
            }
        }
        if self.s2s.max_queue == 0 {
            return Err(ConfigError::Invalid(
                "s2s.max_queue must be at least 1".into(),
            ));
        }
        if self.limits.max_stanza_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "limits.max_stanza_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
    }

    pub fn storage_url(&self) -> String {
        self.storage
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("corvid.sqlite").display()))
    }

    pub fn registration_open(&self) -> bool {
        self.registration
            .open
            .unwrap_or(self.domains == ["localhost"])
    }

    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }

    /// Where the admin socket is.
    pub fn admin_socket(&self) -> PathBuf {
        self.admin
            .socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }

    /// The external component configured for `domain`.
    pub fn component(&self, domain: &str) -> Option<&ComponentConfig> {
        self.components
            .iter()
            .find(|c| c.domain.eq_ignore_ascii_case(domain))
    }

    /// The first served domain. `validate` insists there is one; a library user who skips
    /// it gets `localhost` rather than a panic.
    pub fn default_domain(&self) -> &str {
        self.domains.first().map_or("localhost", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.domains, ["localhost"]);
        assert!(config.registration_open());
        assert_eq!(config.limits.max_stanza_bytes, 256 * 1024);
        assert!(config.storage_url().ends_with("corvid.sqlite"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::parse("[c2s]\nlisten = []\nbogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        assert!(Config::parse("colour = 'blue'").is_err());
    }

    #[test]
    fn registration_closed_by_default_for_real_domains() {
        let config = Config::parse("domains = ['example.org']").unwrap();
        assert!(!config.registration_open());
        let config =
            Config::parse("domains = ['example.org']\n[registration]\nopen = true").unwrap();
        assert!(config.registration_open());
    }

    #[test]
    fn muc_domain_defaults_to_conference_subdomain() {
        let config = Config::parse("domains = ['example.org']").unwrap();
        assert_eq!(config.muc_domain(), "conference.example.org");
        assert_eq!(config.muc.max_history, 20);
        let config = Config::parse("[muc]\ndomain = 'rooms.localhost'\nmax_history = 5").unwrap();
        assert_eq!(config.muc_domain(), "rooms.localhost");
        assert!(Config::parse("[muc]\nrooms = 3").is_err());
        let config = Config::parse("[muc]\ndomain = 'localhost'").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn mam_defaults_and_overrides() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.mam.default, ArchiveDefault::Always);
        assert_eq!((config.mam.default_page, config.mam.max_page), (50, 250));
        let config = Config::parse("[mam]\ndefault = 'roster'\nretention_days = 30").unwrap();
        assert_eq!(config.mam.default, ArchiveDefault::Roster);
        assert_eq!(config.mam.retention_days, 30);
        assert!(Config::parse("[mam]\ndefault = 'sometimes'").is_err());
    }

    #[test]
    fn s2s_defaults_lists_and_hosts() {
        let config = Config::parse("").unwrap();
        assert!(config.s2s.enabled && config.s2s.require_tls);
        assert_eq!(config.s2s.idle_timeout_secs, 600);
        let config = Config::parse(
            "[s2s]\nallow = ['a.test', 'b.test']\nblock = ['b.test']\n[s2s.hosts]\n'a.test' = '127.0.0.1:5270'",
        )
        .unwrap();
        config.validate().unwrap();
        assert!(config.s2s.permits("a.test") && !config.s2s.permits("b.test"));
        assert!(!config.s2s.permits("c.test"));
        let config = Config::parse("[s2s.hosts]\n'a.test' = 'nowhere'").unwrap();
        assert!(config.validate().is_err());
        assert!(Config::parse("[s2s]\nport = 5269").is_err());
        assert!(config.s2s.direct_tls_listen.is_empty());
        let config = Config::parse(
            "[s2s]\ndirect_tls_listen = ['0.0.0.0:5270']\n[s2s.hosts]\n'a.test' = 'tls://127.0.0.1:5270'",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.s2s.direct_tls_listen.len(), 1);
        let config = Config::parse("[s2s.hosts]\n'a.test' = 'xmpps://127.0.0.1:5270'").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn upload_and_external_services() {
        let config = Config::parse("domains = ['example.org']").unwrap();
        assert_eq!(config.upload_domain(), "upload.example.org");
        assert!(config.upload.enabled && config.external_services.is_empty());
        let config = Config::parse("[upload]\ndomain = 'conference.localhost'").unwrap();
        assert!(config.validate().is_err(), "upload and MUC on one domain");
        let config = Config::parse(
            "[[external_services]]\ntype = 'turn'\nhost = 'turn.example.org'\nsecret = 's'",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.external_services[0].port(), 3478);
        let both = "[[external_services]]\ntype = 'turn'\nhost = 'h'\nsecret = 's'\nusername = 'u'\npassword = 'p'";
        assert!(Config::parse(both).unwrap().validate().is_err());
        assert!(Config::parse("[[external_services]]\ntype = 'ftp'\nhost = 'h'").is_err());
    }

    #[test]
    fn unnormalized_domains_are_rejected() {
        let config = Config::parse("domains = ['Example.ORG']").unwrap();
        assert!(config.validate().is_err());
        let config = Config::parse("domains = ['user@example.org']").unwrap();
        assert!(config.validate().is_err());
    }
}
