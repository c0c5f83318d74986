//! TLS between servers (RFC 6120 §5, §13.7.2, RFC 7590): one client and one server
//! configuration with our certificate (each also as a copy for direct TLS, XEP-0368, which
//! only adds ALPN `xmpp-server`), and the check of a peer's certificate for a domain.
//!
//! The handshake itself accepts any certificate (rustls still checks that the peer holds
//! its key): whether a certificate is good for a domain is decided afterwards, once the
//! domain is known (the `from` of a stream header, the `to` of our own), against the
//! system's roots and `[s2s] ca_files`. A peer whose certificate does not pass is not
//! refused; it has to authenticate with dialback instead (XEP-0220 over TLS), as Prosody
//! does without `s2s_secure_auth`.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::S2sConfig;
use crate::tls::{Tls, TlsError};

/// XEP-0368 §3: the ALPN protocol of direct TLS between servers.
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

/// The TLS side of federation.
pub struct S2sTls {
    /// For STARTTLS.
    pub client: Arc<ClientConfig>,
    pub server: Arc<ServerConfig>,
    /// For direct TLS: the same, with ALPN `xmpp-server` (a peer offering other protocols
    /// only, e.g. `xmpp-client`, is refused in the handshake; one offering none is served).
    pub direct_client: Arc<ClientConfig>,
    pub direct_server: Arc<ServerConfig>,
    /// `None` when no root is trusted at all: then no certificate verifies.
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl S2sTls {
    pub fn new(config: &S2sConfig, tls: &Tls) -> Result<S2sTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let any = Arc::new(AnyCertificate(provider.clone()));
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(any.clone())
            .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(any)
            .with_single_cert(tls.chain.clone(), tls.key.clone_key())?;
        server.send_tls13_tickets = 0;
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for path in &config.ca_files {
            for cert in crate::tls::read_certs(path)? {
                roots.add(cert)?;
            }
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .ok();
        let mut direct_client = client.clone();
        direct_client.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
        let mut direct_server = server.clone();
        direct_server.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
        Ok(S2sTls {
            client: Arc::new(client),
            server: Arc::new(server),
            direct_client: Arc::new(direct_client),
            direct_server: Arc::new(direct_server),
            verifier,
        })
    }

    /// Whether `chain` (end entity first) is a valid certificate for `domain` (PKIX, with
    /// the domain as a DNS name in it: RFC 6125 DNS-ID; SRV-ID and XmppAddr are not read).
    pub fn verifies(&self, chain: &[CertificateDer<'static>], domain: &str) -> bool {
        let (Some(verifier), Some((end_entity, intermediates))) =
            (&self.verifier, chain.split_first())
        else {
            return false;
        };
        let Ok(name) = ServerName::try_from(domain.to_owned()) else {
            return false;
        };
        let verified =
            verifier.verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now());
        if let Err(e) = &verified {
            tracing::debug!(%domain, error = %e, "certificate does not verify");
        }
        verified.is_ok()
    }
}

/// Accepts any certificate in the handshake (the peer's possession of the key is still
/// checked); see the module documentation.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl AnyCertificate {
    fn tls12(
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

    fn tls13(
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

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for AnyCertificate {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}
