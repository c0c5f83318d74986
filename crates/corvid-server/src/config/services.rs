//! The configuration of what clients use beside XMPP itself: HTTP file upload
//! (`[upload]`, XEP-0363) and the STUN/TURN servers announced to them
//! (`[[external_services]]`, XEP-0215).

use std::path::PathBuf;

use serde::Deserialize;

/// XEP-0363 HTTP file upload: a service on its own domain that hands out upload URLs
/// served by the HTTP listener (`[http]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Offer the service (it needs `[http]` too).
    pub enabled: bool,
    /// The service's own domain; default `upload.<first domain>`.
    pub domain: Option<String>,
    /// Largest file accepted, in bytes (announced in the service's disco#info).
    pub max_file_bytes: u64,
    /// Bytes of files one account may keep at once (uploads not yet expired, and slots
    /// given out but not yet used); 0 sets no limit.
    pub quota_bytes_per_user: u64,
    /// Seconds an uploaded file is kept; 0 keeps files forever.
    pub expire_after_secs: u64,
    /// Seconds an upload URL is good for after the slot is given out.
    pub slot_valid_secs: u64,
    /// Where the files go; default `<data_dir>/upload`.
    pub dir: Option<PathBuf>,
    /// Content types that may be uploaded (`image/png`, or `image/*` for a whole kind);
    /// empty: any.
    pub content_types: Vec<String>,
    /// Let accounts of other servers upload too (by default only this server's own).
    pub allow_remote: bool,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            enabled: true,
            domain: None,
            max_file_bytes: 100 * 1024 * 1024,
            quota_bytes_per_user: 1024 * 1024 * 1024,
            expire_after_secs: 30 * 24 * 3600,
            slot_valid_secs: 300,
            dir: None,
            content_types: Vec::new(),
            allow_remote: false,
        }
    }
}

impl UploadConfig {
    /// Whether a file of `content_type` may be uploaded.
    pub fn allows_content_type(&self, content_type: &str) -> bool {
        let wanted = content_type.to_ascii_lowercase();
        self.content_types.is_empty()
            || self.content_types.iter().any(|allowed| {
                let allowed = allowed.to_ascii_lowercase();
                match allowed.strip_suffix("/*") {
                    Some(kind) => wanted.split('/').next() == Some(kind),
                    None => allowed == wanted,
                }
            })
    }
}

/// The kinds of external service announced (the XEP-0215 registry's `stun`, `turn` and
/// their TLS forms).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExternalServiceKind {
    Stun,
    Stuns,
    Turn,
    Turns,
}

impl ExternalServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExternalServiceKind::Stun => "stun",
            ExternalServiceKind::Stuns => "stuns",
            ExternalServiceKind::Turn => "turn",
            ExternalServiceKind::Turns => "turns",
        }
    }

    /// The usual port (RFC 8489 §18.6, RFC 8656 §19): 3478, or 5349 over TLS.
    fn default_port(self) -> u16 {
        match self {
            ExternalServiceKind::Stun | ExternalServiceKind::Turn => 3478,
            ExternalServiceKind::Stuns | ExternalServiceKind::Turns => 5349,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExternalTransport {
    Udp,
    Tcp,
}

/// One STUN or TURN server announced to local users (XEP-0215).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalService {
    #[serde(rename = "type")]
    pub kind: ExternalServiceKind,
    /// A host name or IP address.
    pub host: String,
    /// Default 3478, or 5349 for `stuns`/`turns`.
    pub port: Option<u16>,
    /// Default `udp`, or `tcp` for `stuns`/`turns`.
    pub transport: Option<ExternalTransport>,
    /// A human-readable label.
    pub name: Option<String>,
    /// Static credentials, the same for every user.
    pub username: Option<String>,
    pub password: Option<String>,
    /// A secret shared with the TURN server (coturn's `static-auth-secret`): each user gets
    /// time-limited credentials made from it (the TURN REST API draft).
    pub secret: Option<String>,
    /// How long credentials made from `secret` are good for, in seconds.
    #[serde(default = "default_credentials_ttl")]
    pub credentials_ttl_secs: u64,
}

fn default_credentials_ttl() -> u64 {
    24 * 3600
}

impl ExternalService {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.kind.default_port())
    }

    pub fn transport(&self) -> &'static str {
        let transport = self.transport.unwrap_or(match self.kind {
            ExternalServiceKind::Stun | ExternalServiceKind::Turn => ExternalTransport::Udp,
            ExternalServiceKind::Stuns | ExternalServiceKind::Turns => ExternalTransport::Tcp,
        });
        match transport {
            ExternalTransport::Udp => "udp",
            ExternalTransport::Tcp => "tcp",
        }
    }

    /// What is wrong with this entry, if anything.
    pub fn problem(&self) -> Option<&'static str> {
        if self.host.trim().is_empty() {
            return Some("needs a host");
        }
        if self.username.is_some() != self.password.is_some() {
            return Some("needs both username and password, or neither");
        }
        if self.secret.is_some() && self.username.is_some() {
            return Some("takes static credentials or a secret, not both");
        }
        if self.secret.as_deref() == Some("") {
            return Some("has an empty secret");
        }
        if self.secret.is_some() && self.credentials_ttl_secs == 0 {
            return Some("needs credentials_ttl_secs of at least 1");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_match_exactly_or_by_kind() {
        let mut config = UploadConfig::default();
        assert!(config.allows_content_type("application/x-anything"));
        config.content_types = vec!["image/*".into(), "text/plain".into()];
        assert!(config.allows_content_type("image/PNG"));
        assert!(config.allows_content_type("text/plain"));
        assert!(!config.allows_content_type("text/html"));
        assert!(!config.allows_content_type("imagex/png"));
    }
}
