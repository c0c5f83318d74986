//! The client side of TLS for tests: a verifier that accepts the server's self-signed
//! certificate, the options for STARTTLS and direct TLS, and channel binding types.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};

use super::DOMAIN;

/// Accepts any certificate (the server's is self-signed), but still checks the handshake
/// signatures, so the server must hold the key of the certificate it sent. Tests only.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How the client side of TLS is set up.
#[derive(Clone)]
pub struct TlsOptions {
    pub versions: &'static [&'static SupportedProtocolVersion],
    pub alpn: Vec<Vec<u8>>,
}

impl TlsOptions {
    /// TLS 1.2 or 1.3 (1.3 is what gets negotiated), no ALPN: STARTTLS.
    pub fn starttls() -> Self {
        TlsOptions {
            versions: rustls::ALL_VERSIONS,
            alpn: Vec::new(),
        }
    }

    /// ALPN `xmpp-client`, as XEP-0368 asks of direct TLS.
    pub fn direct() -> Self {
        TlsOptions {
            versions: rustls::ALL_VERSIONS,
            alpn: vec![b"xmpp-client".to_vec()],
        }
    }

    pub fn tls12_only(mut self) -> Self {
        static TLS12_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        self.versions = &TLS12_ONLY;
        self
    }
}

pub fn client_tls_config(options: &TlsOptions) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(options.versions)
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = options.alpn.clone();
    Arc::new(config)
}

/// The bytes of a real TLS ClientHello, as a client that thinks it talks to a direct-TLS
/// port would send them.
pub fn tls_client_hello() -> Vec<u8> {
    let name = ServerName::try_from(DOMAIN).expect("valid server name");
    let mut conn = rustls::ClientConnection::new(client_tls_config(&TlsOptions::direct()), name)
        .expect("client connection");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello)
        .expect("write ClientHello to memory");
    hello
}

/// A channel binding type SCRAM-*-PLUS can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CbType {
    /// RFC 9266.
    TlsExporter,
    /// RFC 5929 §4.
    TlsServerEndPoint,
}

impl CbType {
    pub fn name(self) -> &'static str {
        match self {
            CbType::TlsExporter => "tls-exporter",
            CbType::TlsServerEndPoint => "tls-server-end-point",
        }
    }
}
