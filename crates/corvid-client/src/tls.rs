//! TLS for client streams: how the server's certificate is checked, the rustls client
//! configuration, and the channel binding SCRAM-PLUS uses.
//!
//! Certificates are verified by default against the system's roots (webpki through
//! rustls). A test server with a self-signed certificate is reached by trusting that
//! certificate ([`Verification::Roots`]), by pinning it ([`Verification::Pinned`]: exactly
//! this certificate, whatever its names and dates), or by turning verification off
//! ([`Verification::DangerAcceptAny`]), which the name says not to do outside tests.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How the server's certificate is checked.
#[derive(Clone, Debug, Default)]
pub enum Verification {
    /// Against the operating system's trusted roots, for the domain (the default).
    #[default]
    System,
    /// Against these roots only (a private CA, or a self-signed certificate as its own root).
    Roots(Vec<CertificateDer<'static>>),
    /// The server must present one of these certificates, byte for byte; names, dates and
    /// issuers are not checked. The handshake signature still is.
    Pinned(Vec<CertificateDer<'static>>),
    /// Any certificate is accepted: an attacker on the path can read and change everything.
    /// For test servers and load generators only.
    DangerAcceptAny,
}

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// [`Verification::System`] found no root certificate on this system.
    #[error("no usable root certificate found ({0})")]
    NoRoots(String),
    /// rustls refused the configuration (a pinned certificate it cannot read, say).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A rustls client configuration verifying as asked; `alpn` for direct TLS (XEP-0368:
/// `xmpp-client`).
pub fn client_config(
    verification: &Verification,
    alpn: Option<&[u8]>,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match verification {
        Verification::System => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or("none in the system store".into(), ToString::to_string);
                return Err(TlsSetupError::NoRoots(why));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verification::Roots(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certs.iter().cloned());
            if added == 0 {
                return Err(TlsSetupError::NoRoots(
                    "none of the given ones parse".into(),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verification::Pinned(pins) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pins: pins.clone(),
                provider,
            }))
            .with_no_client_auth(),
        Verification::DangerAcceptAny => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny { provider }))
            .with_no_client_auth(),
    };
    if let Some(alpn) = alpn {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    Ok(config)
}

/// The TLS handshake over `tcp` for `domain`.
pub async fn handshake(
    connector: &TlsConnector,
    domain: &str,
    tcp: TcpStream,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(domain.to_owned()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{domain} is not a valid server name"),
        )
    })?;
    connector.connect(name, tcp).await
}

/// The channel binding of a TLS 1.3 connection (RFC 9266 `tls-exporter`), for
/// SCRAM-*-PLUS. None under TLS 1.2, where tls-exporter is only safe with the extended
/// master secret, which rustls does not report.
pub fn channel_binding(tls: &TlsStream<TcpStream>) -> Option<(String, Vec<u8>)> {
    let (_, session) = tls.get_ref();
    if session.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    let mut data = vec![0; 32];
    session
        .export_keying_material(&mut data, b"EXPORTER-Channel-Binding", None)
        .ok()?;
    Some(("tls-exporter".into(), data))
}

/// [`Verification::Pinned`].
#[derive(Debug)]
struct Pinned {
    pins: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

/// [`Verification::DangerAcceptAny`].
#[derive(Debug)]
struct AcceptAny {
    provider: Arc<CryptoProvider>,
}

/// The handshake-signature checks both custom verifiers keep.
trait Signatures {
    fn provider(&self) -> &CryptoProvider;
}

impl Signatures for Pinned {
    fn provider(&self) -> &CryptoProvider {
        &self.provider
    }
}

impl Signatures for AcceptAny {
    fn provider(&self) -> &CryptoProvider {
        &self.provider
    }
}

macro_rules! verifier {
    ($type:ty, |$self:ident, $end_entity:ident| $accept:expr) => {
        impl ServerCertVerifier for $type {
            fn verify_server_cert(
                &$self,
                $end_entity: &CertificateDer<'_>,
                _intermediates: &[CertificateDer<'_>],
                _server_name: &ServerName<'_>,
                _ocsp_response: &[u8],
                _now: UnixTime,
            ) -> Result<ServerCertVerified, rustls::Error> {
                if $accept {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::ApplicationVerificationFailure,
                    ))
                }
            }

            fn verify_tls12_signature(
                &self,
                message: &[u8],
                cert: &CertificateDer<'_>,
                dss: &DigitallySignedStruct,
            ) -> Result<HandshakeSignatureValid, rustls::Error> {
                let algorithms = &self.provider().signature_verification_algorithms;
                verify_tls12_signature(message, cert, dss, algorithms)
            }

            fn verify_tls13_signature(
                &self,
                message: &[u8],
                cert: &CertificateDer<'_>,
                dss: &DigitallySignedStruct,
            ) -> Result<HandshakeSignatureValid, rustls::Error> {
                let algorithms = &self.provider().signature_verification_algorithms;
                verify_tls13_signature(message, cert, dss, algorithms)
            }

            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                self.provider()
                    .signature_verification_algorithms
                    .supported_schemes()
            }
        }
    };
}

verifier!(Pinned, |self, end_entity| self
    .pins
    .iter()
    .any(|pin| pin.as_ref() == end_entity.as_ref()));
verifier!(AcceptAny, |self, _end_entity| true);
