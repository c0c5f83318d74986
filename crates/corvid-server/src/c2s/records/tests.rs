//! A real rustls client on loopback against the handshake and the handover, both TLS
//! versions and every TLS 1.3 suite.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsConnector;

use super::*;

pub(super) struct Pair<Io> {
    pub server: Server,
    pub client: tokio_rustls::client::TlsStream<Io>,
}

/// The server's side after the handshake.
pub(super) enum Server {
    Records(Box<Records>),
    Tls12(Box<Tls12>),
}

/// The client's socket, which can corrupt the last byte of its next write.
pub(super) struct Tamper {
    tcp: TcpStream,
    flip: Arc<AtomicBool>,
}

impl AsyncRead for Tamper {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tamper {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.flip.swap(false, Ordering::SeqCst) {
            let mut bad = buf.to_vec();
            if let Some(last) = bad.last_mut() {
                *last ^= 1;
            }
            return Pin::new(&mut this.tcp).poll_write(cx, &bad);
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Server and client configs with a fresh self-signed certificate; the client offers
/// `versions`, and only `suite` when given.
pub(super) fn configs(
    versions: &[&'static rustls::SupportedProtocolVersion],
    suite: Option<rustls::SupportedCipherSuite>,
) -> (Arc<rustls::ServerConfig>, rustls::ClientConfig) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert_der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .expect("server config");
    server_config.enable_secret_extraction = true;
    server_config.send_tls13_tickets = 0;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).expect("root");
    let mut client_provider = (*provider).clone();
    if let Some(suite) = suite {
        client_provider.cipher_suites = vec![suite];
    }
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(client_provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server_config), client_config)
}

/// Accepts one connection on `listener` and runs the server's handshake and handover.
pub(super) fn serve_one(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> tokio::task::JoinHandle<Server> {
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let hs = handshake(config, tcp).await.expect("handshake");
        if hs.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
            Server::Records(Box::new(Records::take_over(hs).expect("handover")))
        } else {
            Server::Tls12(Box::new(Tls12::new(hs)))
        }
    })
}

/// Connects a rustls client over `wrap(tcp)`.
pub(super) async fn connect_over<Io: AsyncRead + AsyncWrite + Unpin>(
    client_config: rustls::ClientConfig,
    server_config: Arc<rustls::ServerConfig>,
    wrap: impl FnOnce(TcpStream) -> Io,
) -> (
    tokio::task::JoinHandle<Server>,
    tokio_rustls::client::TlsStream<Io>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = serve_one(listener, server_config);
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let client = TlsConnector::from(Arc::new(client_config))
        .connect(ServerName::try_from("localhost").expect("name"), wrap(tcp))
        .await
        .expect("client handshake");
    (server, client)
}

async fn connect_with(
    versions: &[&'static rustls::SupportedProtocolVersion],
    early: &[u8],
    suite: Option<rustls::SupportedCipherSuite>,
) -> (Pair<Tamper>, Arc<AtomicBool>) {
    let (server_config, client_config) = configs(versions, suite);
    let flip = Arc::new(AtomicBool::new(false));
    let flip2 = flip.clone();
    let (server, mut client) = connect_over(client_config, server_config, move |tcp| Tamper {
        tcp,
        flip: flip2,
    })
    .await;
    if !early.is_empty() {
        client.write_all(early).await.expect("early write");
        client.flush().await.expect("early flush");
    }
    let server = server.await.expect("server task");
    (Pair { server, client }, flip)
}

async fn connect(versions: &[&'static rustls::SupportedProtocolVersion]) -> Pair<Tamper> {
    connect_with(versions, b"", None).await.0
}

async fn connect_with_suite(suite: rustls::SupportedCipherSuite) -> Pair<Tamper> {
    connect_with(&[&rustls::version::TLS13], b"", Some(suite))
        .await
        .0
}

pub(super) fn records(server: Server) -> Records {
    match server {
        Server::Records(r) => *r,
        Server::Tls12(_) => panic!("TLS 1.3 was left with rustls"),
    }
}

/// Reads until `want` bytes arrived or the stream ends.
pub(super) async fn read_n(server: &mut Records, want: usize) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut chunk = Vec::new();
    while got.len() < want {
        match std::future::poll_fn(|cx| server.poll_read_into(cx, &mut chunk, 4096)).await? {
            None => break,
            Some(_) => {
                assert!(chunk.len() <= 4096, "at most the requested amount per read");
                got.extend_from_slice(&chunk);
            }
        }
    }
    Ok(got)
}

pub(super) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

pub(super) const TLS13_SUITES: [rustls::SupportedCipherSuite; 3] = [
    rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
    rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
];

#[tokio::test]
async fn data_flows_both_ways_after_the_handover() {
    let Pair { server, mut client } = connect(&[&rustls::version::TLS13]).await;
    let mut server = records(server);
    // Small writes, a write of several full records, and one byte at a time.
    client.write_all(b"<stream:stream>").await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(read_n(&mut server, 15).await.unwrap(), b"<stream:stream>");
    let big = pattern(100_000);
    client.write_all(&big).await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(read_n(&mut server, big.len()).await.unwrap(), big);
    for b in b"abc" {
        client.write_all(&[*b]).await.unwrap();
        client.flush().await.unwrap();
    }
    assert_eq!(read_n(&mut server, 3).await.unwrap(), b"abc");

    server.write_all(b"<features/>").await.unwrap();
    server.flush().await.unwrap();
    let mut got = [0u8; 11];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"<features/>");
    let big = pattern(70_000);
    server.write_all(&big).await.unwrap();
    server.flush().await.unwrap();
    let mut got = vec![0u8; big.len()];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, big);
    assert!(
        server.out.capacity() == 0
            && server.partial.capacity() == 0
            && server.plain.capacity() == 0,
        "nothing kept while idle"
    );

    // Closing: our close_notify reaches the client as a clean end; theirs is our end.
    server.shutdown().await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
    client.shutdown().await.unwrap();
    assert_eq!(read_n(&mut server, 1).await.unwrap(), b"");
}

/// Written right after the client's Finished, often in the same segment: none of it may
/// be lost, whether it arrived with the Finished or later.
#[tokio::test]
async fn data_right_after_the_handshake_is_not_lost() {
    let early = pattern(10_000);
    let (Pair { server, mut client }, _) =
        connect_with(&[&rustls::version::TLS13], &early, None).await;
    let mut server = records(server);
    assert_eq!(read_n(&mut server, early.len()).await.unwrap(), early);
    let data = pattern(40_000);
    client.write_all(&data).await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(read_n(&mut server, data.len()).await.unwrap(), data);
}

/// RFC 8446 §5.2: a record that fails authentication ends the connection, and the client
/// learns why: a fatal bad_record_mac alert, not a close_notify (§6.2).
#[tokio::test]
async fn a_tampered_record_ends_the_connection_with_bad_record_mac() {
    let (Pair { server, mut client }, tamper) =
        connect_with(&[&rustls::version::TLS13], b"", None).await;
    let mut server = records(server);
    tamper.store(true, Ordering::SeqCst);
    client.write_all(b"<message/>").await.unwrap();
    client.flush().await.unwrap();
    let err = read_n(&mut server, 10)
        .await
        .expect_err("a forged record must not be accepted");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    server.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let err = client
        .read_to_end(&mut rest)
        .await
        .expect_err("the client sees an alert, not a clean close");
    assert!(err.to_string().contains("BadRecordMac"), "{err}");
    // Nothing is sealed after a fatal alert.
    assert!(server.write_all(b"<late/>").await.is_err());
}

/// RFC 8446 §4.6.3: rustls's `refresh_traffic_keys` sends KeyUpdate with update_requested;
/// the server must read the client's next records with the new keys, and answer with its
/// own KeyUpdate before its next record. Twice, for a second generation, in every suite.
#[tokio::test]
async fn key_updates_from_the_client_are_followed_both_ways() {
    for suite in TLS13_SUITES {
        let Pair { server, mut client } = connect_with_suite(suite).await;
        let mut server = records(server);
        for round in 0..2 {
            client.get_mut().1.refresh_traffic_keys().unwrap();
            let text = format!("<message id='after-update-{round}'/>");
            client.write_all(text.as_bytes()).await.unwrap();
            client.flush().await.unwrap();
            assert_eq!(
                read_n(&mut server, text.len()).await.unwrap(),
                text.as_bytes(),
                "{suite:?}"
            );
            server.write_all(b"<reply/>").await.unwrap();
            server.flush().await.unwrap();
            let mut got = [0u8; 8];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"<reply/>", "{suite:?}");
        }
    }
}

/// RFC 8446 §4.6.3: several requests while we are silent get one KeyUpdate, sent before
/// our next record, not one each; nothing is queued meanwhile.
#[tokio::test]
async fn key_update_requests_are_answered_once_and_lazily() {
    let Pair { server, mut client } = connect(&[&rustls::version::TLS13]).await;
    let mut server = records(server);
    for _ in 0..20 {
        client.get_mut().1.refresh_traffic_keys().unwrap();
    }
    client.write_all(b"x").await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(read_n(&mut server, 1).await.unwrap(), b"x");
    assert_eq!(
        server.out.capacity(),
        0,
        "no reply queued while we are silent"
    );
    server.write_all(b"<reply/>").await.unwrap();
    server.flush().await.unwrap();
    // One KeyUpdate under the old key, then the reply as the first record of the new one.
    assert_eq!(server.tx.seq, 1);
    let mut got = [0u8; 8];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"<reply/>");
}

/// rustls allows 32 KeyUpdates between two records of data, and so do we: more is a flood
/// (records review, finding 1), refused with unexpected_message.
#[tokio::test]
async fn a_key_update_flood_is_refused_and_queues_nothing() {
    let Pair { server, mut client } = connect(&[&rustls::version::TLS13]).await;
    let mut server = records(server);
    for _ in 0..40 {
        client.get_mut().1.refresh_traffic_keys().unwrap();
    }
    client.write_all(b"x").await.unwrap();
    client.flush().await.unwrap();
    let err = read_n(&mut server, 1)
        .await
        .expect_err("a flood is refused");
    assert!(err.to_string().contains("without content"), "{err}");
    // Only the alert was queued, and it has gone out.
    assert_eq!(server.out.len(), 0);
    server.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let err = client.read_to_end(&mut rest).await.expect_err("an alert");
    assert!(err.to_string().contains("UnexpectedMessage"), "{err}");
}

/// RFC 8446 §5.5: with the key-usage limit lowered to 64 records in tests, a server writing
/// 100 records refreshes its key on its own, and the client reads them all.
#[tokio::test]
async fn the_server_refreshes_its_key_before_the_usage_limit() {
    for suite in [TLS13_SUITES[0], TLS13_SUITES[1]] {
        let Pair { server, mut client } = connect_with_suite(suite).await;
        let mut server = records(server);
        assert_eq!(server.tx_limit, 63);
        for i in 0..100u8 {
            server.write_all(&[b'a' + i % 26]).await.unwrap();
        }
        server.flush().await.unwrap();
        let mut got = [0u8; 100];
        client.read_exact(&mut got).await.unwrap();
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, b)| *b == b'a' + (i % 26) as u8)
        );
        assert!(
            server.tx.seq < 63,
            "a new key after 63 records: {}",
            server.tx.seq
        );
    }
}

/// Each TLS 1.3 AEAD suite rustls offers is taken over and works both ways.
#[tokio::test]
async fn every_tls13_suite_is_taken_over() {
    for suite in TLS13_SUITES {
        let Pair { server, mut client } = connect_with_suite(suite).await;
        assert_eq!(client.get_ref().1.negotiated_cipher_suite(), Some(suite));
        let mut server = records(server);
        let data = pattern(20_000);
        client.write_all(&data).await.unwrap();
        client.flush().await.unwrap();
        assert_eq!(
            read_n(&mut server, data.len()).await.unwrap(),
            data,
            "{suite:?}"
        );
        server.write_all(&data).await.unwrap();
        server.flush().await.unwrap();
        let mut got = vec![0u8; data.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, data, "{suite:?}");
    }
}

/// TLS 1.2 stays on rustls's unbuffered connection: data both ways, then close_notify.
#[tokio::test]
async fn tls12_stays_with_rustls() {
    let Pair { server, mut client } = connect(&[&rustls::version::TLS12]).await;
    let Server::Tls12(mut tls) = server else {
        panic!("TLS 1.2 must stay with rustls")
    };
    let data = pattern(30_000);
    client.write_all(&data).await.unwrap();
    client.flush().await.unwrap();
    let mut got = Vec::new();
    let mut chunk = Vec::new();
    while got.len() < data.len() {
        let n = std::future::poll_fn(|cx| tls.poll_read_into(cx, &mut chunk, 4096))
            .await
            .unwrap();
        assert!(n.is_some(), "stream ended early");
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, data);
    tls.write_all(&data).await.unwrap();
    tls.flush().await.unwrap();
    let mut got = vec![0u8; data.len()];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, data);
    tls.shutdown().await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
    client.shutdown().await.unwrap();
    let end = std::future::poll_fn(|cx| tls.poll_read_into(cx, &mut chunk, 4096))
        .await
        .unwrap();
    assert_eq!(end, None);
}
