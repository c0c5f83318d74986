//! TLS setup: load the configured certificate, or generate a self-signed one on first start
//! and reuse it afterwards; and the channel-binding data SCRAM-PLUS needs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Acceptors for both listener kinds, sharing one certificate.
#[derive(Clone)]
pub struct Tls {
    /// For STARTTLS on the c2s port.
    pub starttls: Arc<ServerConfig>,
    /// For direct TLS (XEP-0368), which requires ALPN `xmpp-client` when the client sends ALPN.
    pub direct: Arc<ServerConfig>,
    /// RFC 5929 tls-server-end-point data: SHA-256 of our certificate. Only known when the
    /// certificate is ours (we signed it with ECDSA-SHA256); `None` for an operator's
    /// certificate whose signature hash we do not inspect.
    pub server_end_point: Option<Vec<u8>>,
}

impl Tls {
    pub fn load_or_generate(config: &Config) -> Result<Tls, TlsError> {
        let (certs, key, generated) = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => (read_certs(cert)?, read_key(key)?, false),
            _ => {
                let (cert, key) = generated_paths(&config.data_dir);
                if !cert.exists() || !key.exists() {
                    generate_self_signed(&config.domains, &cert, &key)?;
                    tracing::info!(cert = %cert.display(), "generated a self-signed certificate");
                }
                (read_certs(&cert)?, read_key(&key)?, true)
            }
        };
        let server_end_point = generated.then(|| Sha256::digest(&certs[0]).to_vec());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let build = |alpn: Vec<Vec<u8>>| -> Result<Arc<ServerConfig>, TlsError> {
            let mut sc = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(certs.clone(), key.clone_key())?;
            sc.alpn_protocols = alpn;
            // Session tickets are not worth their memory for long-lived XMPP streams.
            sc.send_tls13_tickets = 0;
            // TLS 1.3 records are protected by c2s::records after the handshake: the
            // traffic keys are taken out of rustls, which then drops its per-connection state.
            sc.enable_secret_extraction = true;
            Ok(Arc::new(sc))
        };
        Ok(Tls {
            starttls: build(Vec::new())?,
            direct: build(vec![b"xmpp-client".to_vec()])?,
            server_end_point,
        })
    }
}

fn generated_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join("cert.pem"), data_dir.join("key.pem"))
}

fn generate_self_signed(domains: &[String], cert: &Path, key: &Path) -> Result<(), TlsError> {
    let mut names: Vec<String> = domains.to_vec();
    // Services on subdomains (MUC, PubSub) are covered by a wildcard.
    names.extend(domains.iter().map(|d| format!("*.{d}")));
    let generated = rcgen::generate_simple_self_signed(names)?;
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    write_private(key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, generated.cert.pem()).map_err(|source| TlsError::Write {
        path: cert.to_owned(),
        source,
    })
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })?;
    file.write_all(data).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_err = |message: String| TlsError::Read {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(read_err("no certificate in file".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let first = Tls::load_or_generate(&config).unwrap();
        let pem = std::fs::read(dir.path().join("cert.pem")).unwrap();
        let second = Tls::load_or_generate(&config).unwrap();
        assert_eq!(pem, std::fs::read(dir.path().join("cert.pem")).unwrap());
        assert_eq!(first.server_end_point, second.server_end_point);
        assert_eq!(first.server_end_point.map(|h| h.len()), Some(32));
    }
}
