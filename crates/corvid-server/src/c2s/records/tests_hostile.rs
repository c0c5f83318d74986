//! Hostile and unusual peers against the record layer: records built by hand with a rustls
//! client's extracted keys (sizes at and over the limits, empty and padding-only records,
//! alerts, handshake messages after the handshake), and a client whose KeyUpdate arrives in
//! the same segment as its Finished. Each reproduces a finding of the records review.

use std::sync::{Arc, Mutex};

use rustls::AlertDescription;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tests::{Server, configs, connect_over, pattern, read_n, records};
use super::*;

/// A client that speaks TLS 1.3 records by hand after a rustls handshake.
struct RawClient {
    tcp: TcpStream,
    tx: Direction,
    rx: Direction,
}

async fn raw_client() -> (Records, RawClient) {
    raw_client_logging(Arc::new(rustls::NoKeyLog)).await
}

/// The client's traffic secret, as its key log sees it.
#[derive(Debug, Default)]
struct ClientSecret(Mutex<Vec<u8>>);

impl rustls::KeyLog for ClientSecret {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if label == "CLIENT_TRAFFIC_SECRET_0" {
            *self.0.lock().unwrap() = secret.to_vec();
        }
    }
}

/// RFC 8446 §7.1 HKDF-Expand-Label with SHA-256 and an empty context: the test's own
/// derivation, independent of rustls's, to follow a KeyUpdate the raw client sends.
fn expand_label(secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    struct Len(usize);
    impl ring::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = ring::hkdf::Prk::new_less_safe(ring::hkdf::HKDF_SHA256, secret);
    let info: [&[u8]; 5] = [
        &(len as u16).to_be_bytes(),
        &[(6 + label.len()) as u8],
        b"tls13 ",
        label,
        &[0],
    ];
    let mut out = vec![0; len];
    prk.expand(&info, Len(len)).unwrap().fill(&mut out).unwrap();
    out
}

async fn raw_client_logging(key_log: Arc<dyn rustls::KeyLog>) -> (Records, RawClient) {
    let (server_config, mut client_config) = configs(
        &[&rustls::version::TLS13],
        Some(rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256),
    );
    client_config.enable_secret_extraction = true;
    client_config.key_log = key_log;
    let (server, client) = connect_over(client_config, server_config, |tcp| tcp).await;
    let (tcp, conn) = client.into_inner();
    let secrets = conn.dangerous_extract_secrets().expect("secrets");
    let client = RawClient {
        tcp,
        tx: Direction::from_secrets(secrets.tx.0, secrets.tx.1).expect("tx"),
        rx: Direction::from_secrets(secrets.rx.0, secrets.rx.1).expect("rx"),
    };
    (records(server.await.expect("server")), client)
}

impl RawClient {
    /// One record with this inner plaintext (content, type, padding: RFC 8446 §5.2).
    fn record(&mut self, inner: &[u8]) -> Vec<u8> {
        let len = inner.len() + TAG_LEN;
        let header = [CONTENT_APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        let mut body = inner.to_vec();
        let nonce = self.tx.next_nonce().expect("nonce");
        let tag = self
            .tx
            .key()
            .unwrap()
            .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(header), &mut body)
            .expect("seal");
        [&header[..], &body, tag.as_ref()].concat()
    }

    async fn send(&mut self, inners: &[&[u8]]) {
        let mut wire = Vec::new();
        for inner in inners {
            wire.extend(self.record(inner));
        }
        self.tcp.write_all(&wire).await.expect("send");
    }

    /// Everything the server sends until it closes, opened: (content type, content).
    async fn received(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut wire = Vec::new();
        let _ = self.tcp.read_to_end(&mut wire).await;
        let mut got = Vec::new();
        let mut rest = &mut wire[..];
        while rest.len() >= HEADER_LEN {
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            let (record, tail) = rest.split_at_mut(HEADER_LEN + len);
            let (header, body) = record.split_at_mut(HEADER_LEN);
            let nonce = self.rx.next_nonce().expect("nonce");
            let inner = self
                .rx
                .key()
                .unwrap()
                .open_in_place(nonce, ring::aead::Aad::from(&*header), body)
                .expect("the server's record opens");
            let end = inner.iter().rposition(|&b| b != 0).expect("type");
            got.push((inner[end], inner[..end].to_vec()));
            rest = tail;
        }
        got
    }
}

/// The server refuses what the client sent: the read fails, and after shutdown the client
/// has received exactly one record, this fatal alert (no close_notify after it, §6.2).
async fn refused_with(mut server: Records, mut client: RawClient, alert: AlertDescription) {
    let err = read_n(&mut server, usize::MAX).await.expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    server.shutdown().await.expect("shutdown");
    drop(server);
    assert_eq!(
        client.received().await,
        vec![(CONTENT_ALERT, vec![FATAL, u8::from(alert)])],
        "{err}"
    );
}

fn app_data(content: &[u8]) -> Vec<u8> {
    [content, &[CONTENT_APPLICATION_DATA]].concat()
}

#[tokio::test]
async fn zero_length_and_padding_only_records_are_accepted_in_moderation() {
    let (mut server, mut client) = raw_client().await;
    let padded = [&[CONTENT_APPLICATION_DATA][..], &[0; 16_000]].concat();
    let mut inners: Vec<&[u8]> = vec![&[CONTENT_APPLICATION_DATA]; 16];
    inners.extend(std::iter::repeat_n(&padded[..], 16));
    let x = app_data(b"x");
    inners.push(&x);
    client.send(&inners).await;
    assert_eq!(read_n(&mut server, 1).await.unwrap(), b"x");
}

/// Records that carry nothing still cost the client its rate limit: each read reports the
/// bytes it took off the socket, which the session charges to its token bucket.
#[tokio::test]
async fn records_without_content_are_reported_as_bytes_read() {
    let (mut server, mut client) = raw_client().await;
    let mut wire = Vec::new();
    for _ in 0..10 {
        wire.extend(client.record(&[CONTENT_APPLICATION_DATA]));
    }
    client.tcp.write_all(&wire).await.unwrap();
    let mut into = Vec::new();
    let mut counted = 0;
    while counted < wire.len() {
        let n = std::future::poll_fn(|cx| server.poll_read_into(cx, &mut into, 4096))
            .await
            .unwrap()
            .expect("not the end");
        assert!(into.is_empty(), "no content");
        counted += n;
    }
    assert_eq!(counted, wire.len());
}

#[tokio::test]
async fn a_flood_of_records_without_content_is_refused() {
    let (server, mut client) = raw_client().await;
    let x = app_data(b"x");
    let mut inners: Vec<&[u8]> = vec![&[CONTENT_APPLICATION_DATA]; 100];
    inners.push(&x);
    client.send(&inners).await;
    refused_with(server, client, AlertDescription::UnexpectedMessage).await;
}

/// The largest inner plaintext (2^14 content + type) passes; padding counts towards the
/// 2^14 + 1 limit (RFC 8446 §5.4), so one byte of it more is record_overflow.
#[tokio::test]
async fn inner_plaintext_is_limited_padding_included() {
    let (mut server, mut client) = raw_client().await;
    let full = app_data(&pattern(MAX_PLAINTEXT));
    client.send(&[&full]).await;
    assert_eq!(
        read_n(&mut server, MAX_PLAINTEXT).await.unwrap(),
        pattern(MAX_PLAINTEXT)
    );
    let padded = [&full[..], &[0]].concat();
    client.send(&[&padded]).await;
    refused_with(server, client, AlertDescription::RecordOverflow).await;
}

/// A ciphertext of exactly 2^14 + 256 bytes is allowed by §5.2, but what it carries then
/// exceeds 2^14 + 1: record_overflow.
#[tokio::test]
async fn a_record_of_2_14_plus_256_is_record_overflow() {
    let (server, mut client) = raw_client().await;
    let inner = [&app_data(b"a")[..], &vec![0; MAX_CIPHERTEXT - TAG_LEN - 2]].concat();
    let record = client.record(&inner);
    assert_eq!(record.len(), HEADER_LEN + MAX_CIPHERTEXT);
    client.tcp.write_all(&record).await.unwrap();
    refused_with(server, client, AlertDescription::RecordOverflow).await;
}

/// A header announcing more than 2^14 + 256 is refused at once, before its body.
#[tokio::test]
async fn a_record_over_2_14_plus_256_is_refused_from_its_header() {
    let (server, mut client) = raw_client().await;
    let len = MAX_CIPHERTEXT + 1;
    let header = [CONTENT_APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
    client.tcp.write_all(&header).await.unwrap();
    refused_with(server, client, AlertDescription::RecordOverflow).await;
}

#[tokio::test]
async fn a_record_without_content_type_is_unexpected() {
    let (server, mut client) = raw_client().await;
    client.send(&[&[0; 10]]).await;
    refused_with(server, client, AlertDescription::UnexpectedMessage).await;
}

/// RFC 8446 §6: in TLS 1.3 the alert level is ignored; close_notify sent as "fatal" is
/// still a clean end.
#[tokio::test]
async fn close_notify_with_level_fatal_is_a_clean_end() {
    let (mut server, mut client) = raw_client().await;
    let data = app_data(b"<bye/>");
    client.send(&[&data, &[FATAL, 0, CONTENT_ALERT]]).await;
    assert_eq!(read_n(&mut server, 100).await.unwrap(), b"<bye/>");
    // Our answer is a close_notify (RFC 8446 §6.1).
    server.shutdown().await.unwrap();
    drop(server);
    assert_eq!(
        client.received().await,
        vec![(CONTENT_ALERT, CLOSE_NOTIFY.to_vec())]
    );
}

/// An error alert from the client ends the connection; we answer nothing, not even a
/// close_notify.
#[tokio::test]
async fn an_error_alert_from_the_client_ends_the_connection_silently() {
    let (mut server, mut client) = raw_client().await;
    client.send(&[&[FATAL, 40, CONTENT_ALERT]]).await;
    let err = read_n(&mut server, 1).await.expect_err("ended");
    assert!(err.to_string().contains("HandshakeFailure"), "{err}");
    server.shutdown().await.unwrap();
    drop(server);
    assert_eq!(client.received().await, vec![]);
}

/// A ClientHello after a TLS 1.3 handshake (renegotiation does not exist in 1.3).
#[tokio::test]
async fn a_client_hello_after_the_handshake_is_unexpected() {
    let (server, mut client) = raw_client().await;
    let hello = [1, 0, 0, 2, 3, 3, CONTENT_HANDSHAKE];
    client.send(&[&hello]).await;
    refused_with(server, client, AlertDescription::UnexpectedMessage).await;
}

#[tokio::test]
async fn a_key_update_with_an_unknown_request_is_an_illegal_parameter() {
    let (server, mut client) = raw_client().await;
    client.send(&[&[24, 0, 0, 1, 2, CONTENT_HANDSHAKE]]).await;
    refused_with(server, client, AlertDescription::IllegalParameter).await;
}

#[tokio::test]
async fn a_key_update_of_the_wrong_length_is_a_decode_error() {
    let (server, mut client) = raw_client().await;
    client
        .send(&[&[24, 0, 0, 2, 0, 0, CONTENT_HANDSHAKE]])
        .await;
    refused_with(server, client, AlertDescription::DecodeError).await;
}

/// §5.1: a key change must line up with the end of a record.
#[tokio::test]
async fn two_key_updates_in_one_record_are_unexpected() {
    let (server, mut client) = raw_client().await;
    let two = [24, 0, 0, 1, 0, 24, 0, 0, 1, 0, CONTENT_HANDSHAKE];
    client.send(&[&two]).await;
    refused_with(server, client, AlertDescription::UnexpectedMessage).await;
}

/// RFC 8446 §5.1: a handshake message may span records; a KeyUpdate split in two is
/// followed, and answered before our next record.
#[tokio::test]
async fn a_key_update_split_across_records_is_followed() {
    let secret = Arc::new(ClientSecret::default());
    let (mut server, mut client) = raw_client_logging(secret.clone()).await;
    client
        .send(&[&[24, 0, CONTENT_HANDSHAKE], &[0, 1, 1, CONTENT_HANDSHAKE]])
        .await;
    let next = expand_label(&secret.0.lock().unwrap(), b"traffic upd", 32);
    let key = expand_label(&next, b"key", 16);
    let iv = expand_label(&next, b"iv", 12).try_into().unwrap();
    client.tx = Direction::new(&ring::aead::AES_128_GCM, &key, iv, 0).unwrap();
    client.send(&[&app_data(b"<after/>")]).await;
    assert_eq!(read_n(&mut server, 8).await.unwrap(), b"<after/>");
    // Asked to: our KeyUpdate goes before the reply, the reply under our new key.
    server.write_all(b"<reply/>").await.unwrap();
    assert_eq!(server.tx.seq, 1);
}

/// §5.1: nothing else may come between the fragments of a handshake message.
#[tokio::test]
async fn data_inside_a_split_key_update_is_unexpected() {
    let (server, mut client) = raw_client().await;
    client
        .send(&[&[24, 0, CONTENT_HANDSHAKE], &app_data(b"x")])
        .await;
    refused_with(server, client, AlertDescription::UnexpectedMessage).await;
}

/// The client's socket: after the ClientHello, writes are held back until released, then
/// sent in one segment (so the Finished and what follows arrive together).
struct Cork {
    tcp: TcpStream,
    writes: usize,
    held: Arc<Mutex<Option<Vec<u8>>>>,
}

impl AsyncRead for Cork {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Cork {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.writes >= 1
            && let Some(held) = this.held.lock().unwrap().as_mut()
        {
            held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        this.writes += 1;
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Records review, finding 2: a KeyUpdate(update_requested) arriving with the client's
/// Finished must reach the record layer (rustls sees no record after Finished), so the
/// server follows the client's new key and answers with its own KeyUpdate.
#[tokio::test]
async fn a_key_update_arriving_with_finished_is_not_lost() {
    for suite in super::tests::TLS13_SUITES {
        let (server_config, client_config) = configs(&[&rustls::version::TLS13], Some(suite));
        let held = Arc::new(Mutex::new(Some(Vec::new())));
        let cork_held = held.clone();
        let (server, mut client) = connect_over(client_config, server_config, move |tcp| Cork {
            tcp,
            writes: 0,
            held: cork_held,
        })
        .await;
        client.get_mut().1.refresh_traffic_keys().unwrap();
        client.write_all(b"hello").await.unwrap();
        client.flush().await.unwrap();
        let segment = held.lock().unwrap().take().unwrap();
        client.get_mut().0.tcp.write_all(&segment).await.unwrap();
        let Server::Records(mut server) = server.await.unwrap() else {
            panic!("TLS 1.3")
        };
        assert_eq!(read_n(&mut server, 5).await.unwrap(), b"hello");
        server.write_all(b"<reply/>").await.unwrap();
        server.flush().await.unwrap();
        let mut got = [0u8; 8];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"<reply/>", "{suite:?}");
        // And on to the next generation, both ways.
        client.get_mut().1.refresh_traffic_keys().unwrap();
        client.write_all(b"again").await.unwrap();
        client.flush().await.unwrap();
        assert_eq!(read_n(&mut server, 5).await.unwrap(), b"again");
        server.write_all(b"<reply/>").await.unwrap();
        server.flush().await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"<reply/>", "{suite:?}");
    }
}
