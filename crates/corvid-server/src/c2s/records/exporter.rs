//! The RFC 9266 `tls-exporter` channel binding of a TLS 1.3 connection.
//!
//! rustls 0.23 offers `export_keying_material` only on its buffered connections; the
//! unbuffered connection our handshake runs on, and the kernel connection it becomes, have
//! none. So this connection's config logs one secret, the exporter master secret
//! (`EXPORTER_SECRET`, RFC 8446 §7.1), and the binding is derived from it right after the
//! handshake with the TLS-Exporter function of RFC 8446 §7.5, using the negotiated suite's
//! own HKDF and hash from rustls. The secret is zeroized as soon as the value is computed.
//! A test checks the result byte for byte against rustls's exporter for every suite.

use std::sync::Mutex;

use rustls::Tls13CipherSuite;
use rustls::crypto::tls13::OkmBlock;
use zeroize::Zeroizing;

/// RFC 9266 §2: the label, and 32 bytes of keying material, with no context.
const LABEL: &[u8] = b"EXPORTER-Channel-Binding";
pub(crate) const LEN: usize = 32;

/// The exporter master secret of one connection, as rustls logs it (its `KeyLog`
/// interface, on this connection's config only).
#[derive(Debug, Default)]
pub struct ExporterSecret(Mutex<Option<Zeroizing<Vec<u8>>>>);

impl rustls::KeyLog for ExporterSecret {
    fn will_log(&self, label: &str) -> bool {
        label == "EXPORTER_SECRET"
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if label == "EXPORTER_SECRET" {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Zeroizing::new(secret.to_vec()));
        }
    }
}

impl ExporterSecret {
    /// The `tls-exporter` value, once; the logged secret is gone (and zeroized) after.
    pub fn take_binding(&self, suite: &Tls13CipherSuite) -> Option<Vec<u8>> {
        let secret = self.0.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        channel_binding(suite, &secret)
    }
}

/// RFC 8446 §7.5 with RFC 9266's label and no context:
/// `HKDF-Expand-Label(Derive-Secret(secret, label, ""), "exporter", Hash(""), 32)`, where
/// `Derive-Secret(s, l, "")` is `HKDF-Expand-Label(s, l, Hash(""), Hash.length)`.
fn channel_binding(suite: &Tls13CipherSuite, exporter_secret: &[u8]) -> Option<Vec<u8>> {
    let empty_hash = suite.common.hash_provider.hash(&[]);
    let hkdf = suite.hkdf_provider;
    let expander = hkdf.expander_for_okm(&OkmBlock::new(exporter_secret));
    let hash_len = expander.hash_len();
    // OkmBlock zeroizes itself when dropped.
    let derived = expand_label_block(&*expander, LABEL, empty_hash.as_ref(), hash_len)?;
    let expander = hkdf.expander_for_okm(&derived);
    let mut out = vec![0; LEN];
    let len = (LEN as u16).to_be_bytes();
    let label_len = [(6 + b"exporter".len()) as u8];
    let context_len = [u8::try_from(empty_hash.as_ref().len()).ok()?];
    let info: [&[u8]; 6] = [
        &len,
        &label_len,
        b"tls13 ",
        b"exporter",
        &context_len,
        empty_hash.as_ref(),
    ];
    expander.expand_slice(&info, &mut out).ok()?;
    Some(out)
}

/// RFC 8446 §7.1 HKDF-Expand-Label, for an output of the hash's length.
fn expand_label_block(
    expander: &dyn rustls::crypto::tls13::HkdfExpander,
    label: &[u8],
    context: &[u8],
    len: usize,
) -> Option<OkmBlock> {
    let length = u16::try_from(len).ok()?.to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).ok()?];
    let context_len = [u8::try_from(context.len()).ok()?];
    let info: [&[u8]; 6] = [&length, &label_len, b"tls13 ", label, &context_len, context];
    let block = expander.expand_block(&info);
    (block.as_ref().len() == len).then_some(block)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::crypto::ring::cipher_suite as suites;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConnection, ServerConnection, SupportedCipherSuite};

    use super::*;

    /// Runs a rustls handshake in memory, offering only `suite`; returns our binding (from
    /// the server's logged secret) and rustls's own exporter value on the client's side.
    fn both_bindings(suite: SupportedCipherSuite) -> (Option<Vec<u8>>, Vec<u8>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let secret = Arc::new(ExporterSecret::default());
        let mut server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        server_config.key_log = secret.clone();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let mut client_provider = (*provider).clone();
        client_provider.cipher_suites = vec![suite];
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(client_provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client = ClientConnection::new(
            Arc::new(client_config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
        while client.is_handshaking() || server.is_handshaking() {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut &wire[..]).unwrap();
            server.process_new_packets().unwrap();
            let mut wire = Vec::new();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut &wire[..]).unwrap();
            client.process_new_packets().unwrap();
        }
        assert_eq!(client.negotiated_cipher_suite(), Some(suite));
        let theirs = client
            .export_keying_material([0u8; LEN], LABEL, None)
            .unwrap()
            .to_vec();
        let SupportedCipherSuite::Tls13(tls13) = suite else {
            panic!("a TLS 1.3 suite")
        };
        (secret.take_binding(tls13), theirs)
    }

    #[test]
    fn binding_matches_rustls_exporter_for_every_tls13_suite() {
        for suite in [
            suites::TLS13_AES_128_GCM_SHA256,
            suites::TLS13_AES_256_GCM_SHA384,
            suites::TLS13_CHACHA20_POLY1305_SHA256,
        ] {
            let (ours, theirs) = both_bindings(suite);
            assert_eq!(ours.as_deref(), Some(&theirs[..]), "{suite:?}");
        }
    }

    #[test]
    fn the_secret_is_used_once() {
        let (ours, _) = both_bindings(suites::TLS13_AES_128_GCM_SHA256);
        assert!(ours.is_some());
        let secret = ExporterSecret::default();
        let SupportedCipherSuite::Tls13(tls13) = suites::TLS13_AES_128_GCM_SHA256 else {
            panic!()
        };
        assert_eq!(
            secret.take_binding(tls13),
            None,
            "nothing logged, no binding"
        );
    }
}
