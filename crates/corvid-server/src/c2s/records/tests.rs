//! A real rustls client on loopback against the handover, both TLS versions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

struct Pair {
    server: Secured,
    client: tokio_rustls::client::TlsStream<Tamper>,
    tamper: Arc<AtomicBool>,
}

/// The client's socket, which can corrupt the last byte of its next write.
struct Tamper {
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

async fn connect(versions: &[&'static rustls::SupportedProtocolVersion]) -> Pair {
    connect_sending(versions, b"").await
}

/// The client offers only `suite`.
async fn connect_with_suite(suite: rustls::SupportedCipherSuite) -> Pair {
    connect_with(&[&rustls::version::TLS13], b"", Some(suite)).await
}

/// Connects; the client writes `early` as soon as its side of the handshake is done,
/// possibly before the server's side is.
async fn connect_sending(
    versions: &[&'static rustls::SupportedProtocolVersion],
    early: &[u8],
) -> Pair {
    connect_with(versions, early, None).await
}

async fn connect_with(
    versions: &[&'static rustls::SupportedProtocolVersion],
    early: &[u8],
    suite: Option<rustls::SupportedCipherSuite>,
) -> Pair {
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
    let secrets = Arc::new(TrafficSecrets::default());
    server_config.key_log = secrets.clone();
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

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        take_over(
            acceptor
                .accept(HandshakeIo::new(tcp))
                .await
                .expect("handshake"),
            &secrets,
        )
    });
    let flip = Arc::new(AtomicBool::new(false));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut client = TlsConnector::from(Arc::new(client_config))
        .connect(
            ServerName::try_from("localhost").expect("name"),
            Tamper {
                tcp,
                flip: flip.clone(),
            },
        )
        .await
        .expect("client handshake");
    if !early.is_empty() {
        client.write_all(early).await.expect("early write");
        client.flush().await.expect("early flush");
    }
    Pair {
        server: server.await.expect("server task"),
        client,
        tamper: flip,
    }
}

fn records(secured: Secured) -> Records {
    match secured {
        Secured::Records(r) => *r,
        Secured::Rustls(_) => panic!("TLS 1.3 was left with rustls"),
        Secured::Failed => panic!("handover failed"),
    }
}

/// Reads until `want` bytes arrived or the stream ends.
async fn read_n(server: &mut Records, want: usize) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut chunk = Vec::new();
    while got.len() < want {
        let n = std::future::poll_fn(|cx| server.poll_read_into(cx, &mut chunk, 4096)).await?;
        if n == 0 {
            break;
        }
        assert!(n <= 4096, "at most the requested amount per read");
        got.extend_from_slice(&chunk);
    }
    Ok(got)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn data_flows_both_ways_after_the_handover() {
    let Pair {
        server, mut client, ..
    } = connect(&[&rustls::version::TLS13]).await;
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

/// Written right after the client's Finished: depending on timing rustls has already
/// decrypted some of it at the handover, and none of it may be lost either way.
#[tokio::test]
async fn data_right_after_the_handshake_is_not_lost() {
    let early = pattern(10_000);
    let Pair {
        server, mut client, ..
    } = connect_sending(&[&rustls::version::TLS13], &early).await;
    let mut server = records(server);
    assert_eq!(read_n(&mut server, early.len()).await.unwrap(), early);
    let data = pattern(40_000);
    client.write_all(&data).await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(read_n(&mut server, data.len()).await.unwrap(), data);
}

#[tokio::test]
async fn a_tampered_record_ends_the_connection() {
    let Pair {
        server,
        mut client,
        tamper,
    } = connect(&[&rustls::version::TLS13]).await;
    let mut server = records(server);
    tamper.store(true, Ordering::SeqCst);
    client.write_all(b"<message/>").await.unwrap();
    client.flush().await.unwrap();
    let err = read_n(&mut server, 10)
        .await
        .expect_err("a forged record must not be accepted");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

/// RFC 8446 §4.6.3: rustls's `refresh_traffic_keys` sends KeyUpdate with update_requested;
/// the server must read the client's next records with the new keys, and answer with its
/// own KeyUpdate before its next record, sealed with new keys too. Twice, for a second
/// generation.
#[tokio::test]
async fn key_updates_from_the_client_are_followed_both_ways() {
    use rustls::crypto::ring::cipher_suite as suites;
    for suite in [
        suites::TLS13_AES_128_GCM_SHA256,
        suites::TLS13_AES_256_GCM_SHA384,
        suites::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let Pair {
            server, mut client, ..
        } = connect_with_suite(suite).await;
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

/// Anything but a well-formed KeyUpdate, as a handshake message after the handshake, ends
/// the connection.
#[tokio::test]
async fn only_a_well_formed_key_update_is_accepted() {
    let Pair { server, .. } = connect(&[&rustls::version::TLS13]).await;
    let mut server = records(server);
    for message in [
        &[24u8, 0, 0, 1, 2][..],
        &[24, 0, 0, 2, 0, 0],
        &[4, 0, 0, 0],
        &[24, 0, 0, 1],
        &[],
    ] {
        assert!(server.key_update(message).is_err(), "{message:?}");
    }
    assert!(server.key_update(&[24, 0, 0, 1, 0]).is_ok());
}

/// Each TLS 1.3 AEAD suite rustls offers is taken over and works both ways.
#[tokio::test]
async fn every_tls13_suite_is_taken_over() {
    use rustls::crypto::ring::cipher_suite as suites;
    for suite in [
        suites::TLS13_AES_128_GCM_SHA256,
        suites::TLS13_AES_256_GCM_SHA384,
        suites::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let Pair {
            server, mut client, ..
        } = connect_with_suite(suite).await;
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

#[tokio::test]
async fn tls12_stays_with_rustls() {
    let Pair {
        server, mut client, ..
    } = connect(&[&rustls::version::TLS12]).await;
    let Secured::Rustls(mut tls) = server else {
        panic!("TLS 1.2 must stay with rustls")
    };
    client.write_all(b"hello").await.unwrap();
    client.flush().await.unwrap();
    let mut got = [0u8; 5];
    tls.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello");
}
