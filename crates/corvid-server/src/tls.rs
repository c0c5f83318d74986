//! TLS setup: load the configured certificate, or generate a self-signed one on first start
//! and reuse it afterwards; and the channel-binding data SCRAM-PLUS needs
//! (`tls-server-end-point`, RFC 5929 §4; `tls-exporter` is per connection, in
//! `c2s::records`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256, Sha384, Sha512};

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
    /// RFC 5929 tls-server-end-point data: the hash of our certificate, with the hash its
    /// signature algorithm uses (§4.1). `None` where §4.1 leaves it undefined (Ed25519,
    /// RSA-PSS, an algorithm we do not know): the binding is then not offered.
    pub server_end_point: Option<Vec<u8>>,
    /// Our certificate chain and its key, which server-to-server TLS presents both as a
    /// server and as a client (`s2s::tls`).
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl Tls {
    pub fn load_or_generate(config: &Config) -> Result<Tls, TlsError> {
        let (certs, key) = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => (read_certs(cert)?, read_key(key)?),
            _ => {
                let (cert, key) = generated_paths(&config.data_dir);
                if !cert.exists() || !key.exists() {
                    generate_self_signed(&config.domains, &cert, &key)?;
                    tracing::info!(cert = %cert.display(), "generated a self-signed certificate");
                } else if generated_expires_soon(&cert) {
                    generate_self_signed(&config.domains, &cert, &key)?;
                    tracing::info!(cert = %cert.display(), "renewed the self-signed certificate");
                }
                (read_certs(&cert)?, read_key(&key)?)
            }
        };
        let server_end_point = server_end_point(&certs[0]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let build = |alpn: Vec<Vec<u8>>| -> Result<Arc<ServerConfig>, TlsError> {
            let mut sc = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(certs.clone(), key.clone_key())?;
            sc.alpn_protocols = alpn;
            // Session tickets are not worth their memory for long-lived XMPP streams.
            sc.send_tls13_tickets = 0;
            // TLS 1.3 records are protected by c2s::records after the handshake: rustls's
            // connection becomes a kernel connection (keys out, key schedule kept).
            sc.enable_secret_extraction = true;
            Ok(Arc::new(sc))
        };
        Ok(Tls {
            starttls: build(Vec::new())?,
            direct: build(vec![b"xmpp-client".to_vec()])?,
            server_end_point,
            chain: certs,
            key: Arc::new(key),
        })
    }
}

/// RFC 5929 §4.1: the certificate hashed with its signature algorithm's hash; MD5 and SHA-1
/// become SHA-256; no single hash (Ed25519), or a hash inside parameters we do not parse
/// (RSA-PSS), leaves the binding undefined.
fn server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let oid = signature_algorithm(cert)?;
    let hash = match oid {
        // md5WithRSAEncryption, sha1WithRSAEncryption, ecdsa-with-SHA1
        [rsa @ .., 0x04 | 0x05] if rsa == RSA => Sha256::digest,
        [ecdsa @ .., 0x01] if ecdsa == ECDSA => Sha256::digest,
        [rsa @ .., 0x0b] if rsa == RSA => Sha256::digest,
        [ecdsa @ .., 0x03, 0x02] if ecdsa == ECDSA => Sha256::digest,
        [rsa @ .., 0x0c] if rsa == RSA => return Some(Sha384::digest(cert).to_vec()),
        [ecdsa @ .., 0x03, 0x03] if ecdsa == ECDSA => return Some(Sha384::digest(cert).to_vec()),
        [rsa @ .., 0x0d] if rsa == RSA => return Some(Sha512::digest(cert).to_vec()),
        [ecdsa @ .., 0x03, 0x04] if ecdsa == ECDSA => return Some(Sha512::digest(cert).to_vec()),
        _ => return None,
    };
    Some(hash(cert).to_vec())
}

/// The OID of a DER certificate's signatureAlgorithm (RFC 5280 §4.1.1.2):
/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, .. }, .. }`.
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, certificate, _) = der_element(cert)? else {
        return None;
    };
    let (0x30, _tbs, rest) = der_element(certificate)? else {
        return None;
    };
    let (0x30, algorithm, _) = der_element(rest)? else {
        return None;
    };
    match der_element(algorithm)? {
        (0x06, oid, _) => Some(oid),
        _ => None,
    }
}

/// One DER element: its tag, its content and what follows it (X.690 §8.1, definite
/// lengths only, as DER requires).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn generated_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join("cert.pem"), data_dir.join("key.pem"))
}

/// How long a generated certificate is valid: an ordinary year, renewed at start-up when
/// less than [`RENEW_BEFORE`] is left (clients that pinned it are asked again, once a year).
const GENERATED_VALIDITY: time::Duration = time::Duration::days(365);
const RENEW_BEFORE: time::Duration = time::Duration::days(30);

/// Beside a generated certificate: when it expires (Unix seconds). A certificate without it
/// was put there by the operator (or an older Corvid) and is left alone.
fn expiry_path(cert: &Path) -> PathBuf {
    cert.with_extension("expires")
}

fn generated_expires_soon(cert: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(expiry_path(cert)) else {
        return false;
    };
    let Ok(expires) = text.trim().parse::<i64>() else {
        return false;
    };
    let left = expires - time::OffsetDateTime::now_utc().unix_timestamp();
    left < RENEW_BEFORE.whole_seconds()
}

fn generate_self_signed(domains: &[String], cert: &Path, key: &Path) -> Result<(), TlsError> {
    let mut names: Vec<String> = domains.to_vec();
    // Services on subdomains (MUC, PubSub) are covered by a wildcard.
    names.extend(domains.iter().map(|d| format!("*.{d}")));
    let mut params = rcgen::CertificateParams::new(names)?;
    // What a client shows its user when asked to trust it: the domain, and who made it.
    let mut dn = rcgen::DistinguishedName::new();
    if let Some(domain) = domains.first() {
        dn.push(rcgen::DnType::CommonName, domain.as_str());
    }
    dn.push(
        rcgen::DnType::OrganizationName,
        "Corvid XMPP server (self-signed)",
    );
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + GENERATED_VALIDITY;
    let signing_key = rcgen::KeyPair::generate()?;
    let generated = params.self_signed(&signing_key)?;
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    write_private(key, signing_key.serialize_pem().as_bytes())?;
    let write = |path: &Path, data: &[u8]| {
        std::fs::write(path, data).map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
    };
    write(cert, generated.pem().as_bytes())?;
    write(
        &expiry_path(cert),
        params.not_after.unix_timestamp().to_string().as_bytes(),
    )
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

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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
        let der = CertificateDer::from_pem_file(dir.path().join("cert.pem")).unwrap();
        assert_eq!(
            first.server_end_point,
            Some(Sha256::digest(&der).to_vec()),
            "our certificate is ECDSA with SHA-256"
        );
    }

    #[test]
    fn generated_certificate_names_the_domain_lasts_a_year_and_is_renewed_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        Tls::load_or_generate(&config).unwrap();
        let der = CertificateDer::from_pem_file(dir.path().join("cert.pem")).unwrap();
        let contains = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(contains(b"localhost") && contains(b"Corvid XMPP server"));
        let expires_path = dir.path().join("cert.expires");
        let expires: i64 = std::fs::read_to_string(&expires_path)
            .unwrap()
            .parse()
            .unwrap();
        let left = expires - time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((364 * 86400..=366 * 86400).contains(&left), "{left} s left");
        // Ten days left: the next start makes a new one.
        let soon = time::OffsetDateTime::now_utc().unix_timestamp() + 10 * 86400;
        std::fs::write(&expires_path, soon.to_string()).unwrap();
        let pem = std::fs::read(dir.path().join("cert.pem")).unwrap();
        Tls::load_or_generate(&config).unwrap();
        assert_ne!(pem, std::fs::read(dir.path().join("cert.pem")).unwrap());
        // A certificate without the expiry file is the operator's: never replaced.
        std::fs::remove_file(&expires_path).unwrap();
        let pem = std::fs::read(dir.path().join("cert.pem")).unwrap();
        Tls::load_or_generate(&config).unwrap();
        assert_eq!(pem, std::fs::read(dir.path().join("cert.pem")).unwrap());
    }

    /// RFC 5929 §4.1 for an operator's certificate: the hash follows the signature
    /// algorithm (review finding 10), whether the file is configured or sits in the data
    /// directory in place of a generated one.
    #[test]
    fn server_end_point_hash_follows_the_signature_algorithm() {
        type Expected = fn(&[u8]) -> Option<Vec<u8>>;
        let cases: [(&rcgen::SignatureAlgorithm, Expected); 3] = [
            (&rcgen::PKCS_ECDSA_P256_SHA256, |d| {
                Some(Sha256::digest(d).to_vec())
            }),
            (&rcgen::PKCS_ECDSA_P384_SHA384, |d| {
                Some(Sha384::digest(d).to_vec())
            }),
            // RFC 5929 §4.1: no single hash function, so no binding.
            (&rcgen::PKCS_ED25519, |_| None),
        ];
        for (alg, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
            std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
            let config = Config {
                data_dir: dir.path().to_owned(),
                ..Config::default()
            };
            let tls = Tls::load_or_generate(&config).unwrap();
            let expected = expected(cert.der());
            assert_eq!(tls.server_end_point, expected, "{alg:?}");
        }
    }

    #[test]
    fn truncated_certificates_have_no_signature_algorithm() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        assert!(signature_algorithm(&der).is_some());
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert_eq!(server_end_point(&der[..cut]), None, "cut at {cut}");
        }
    }
}
