//! HTTP file upload (XEP-0363) and external service discovery (XEP-0215) against a real
//! server: slots asked for over XMPP, files PUT and fetched over real HTTP (a small
//! HTTP/1.1 client below), the refusals a wrong, forged or late upload gets, the XEP's
//! errors for files too large and full quotas, and expired files going away.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use common::*;
use corvid_proto::{BareJid, ns};
use corvid_xml::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "pw";
const UPLOAD: &str = "upload.localhost";

// --- a small HTTP/1.1 client ---------------------------------------------------------

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a connection of its own (`Connection: close`), read to the end.
async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let mut tcp = TcpStream::connect(addr).await?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(READ_TIMEOUT, tcp.read_to_end(&mut raw))
        .await
        .context("HTTP response timed out")??;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = std::str::from_utf8(&raw[..end])?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut response = HttpResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body)?;
    }
    Ok(response)
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk"))?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end])?.trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The path and query of a URL (the test talks to the bound address whatever the host).
fn target_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or("/", |slash| &after_scheme[slash..])
}

// --- slots -----------------------------------------------------------------------------

struct Slot {
    put: String,
    get: String,
}

fn request(filename: &str, size: usize, content_type: Option<&str>) -> Element {
    let mut el = Element::new("request", ns::HTTP_UPLOAD)
        .with_attr("filename", filename)
        .with_attr("size", size.to_string());
    if let Some(content_type) = content_type {
        el.set_attr("content-type", content_type);
    }
    el
}

async fn slot(
    client: &mut Client,
    filename: &str,
    size: usize,
    content_type: Option<&str>,
) -> Result<Slot> {
    let reply = client
        .iq_result("get", Some(UPLOAD), request(filename, size, content_type))
        .await?;
    let slot = reply
        .get_child("slot", ns::HTTP_UPLOAD)
        .ok_or_else(|| anyhow!("no slot in {reply}"))?;
    let url = |name: &str| {
        slot.get_child(name, ns::HTTP_UPLOAD)
            .and_then(|el| el.attr("url"))
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no {name} URL in {reply}"))
    };
    Ok(Slot {
        put: url("put")?,
        get: url("get")?,
    })
}

async fn put(addr: SocketAddr, url: &str, content_type: &str, body: &[u8]) -> Result<HttpResponse> {
    let length = body.len().to_string();
    http(
        addr,
        "PUT",
        target_of(url),
        &[("Content-Type", content_type), ("Content-Length", &length)],
        body,
    )
    .await
}

async fn start(adjust: impl FnOnce(&mut corvid_server::Config)) -> Result<(TestServer, Client)> {
    let ts = start_server_with(adjust).await?;
    ts.create_user("juliet", PASSWORD).await?;
    let client = ts.login("juliet", PASSWORD, Some("balcony")).await?;
    Ok((ts, client))
}

fn http_addr(ts: &TestServer) -> Result<SocketAddr> {
    ts.http_addr.ok_or_else(|| anyhow!("no HTTP listener"))
}

#[tokio::test]
async fn a_file_is_uploaded_once_and_downloaded_byte_for_byte() -> Result<()> {
    let (ts, mut juliet) = start(|c| c.http.public_url = Some("http://files.test/".into())).await?;
    let addr = http_addr(&ts)?;

    let items = juliet
        .iq_result("get", Some(DOMAIN), Element::new("query", ns::DISCO_ITEMS))
        .await?;
    ensure!(
        items.to_string().contains(UPLOAD),
        "the service is listed: {items}"
    );
    let info = juliet
        .iq_result("get", Some(UPLOAD), Element::new("query", ns::DISCO_INFO))
        .await?;
    let info_text = info.to_string();
    for expected in [
        "category='store'",
        "type='file'",
        ns::HTTP_UPLOAD,
        "max-file-size",
        &(100u64 * 1024 * 1024).to_string(),
    ] {
        ensure!(info_text.contains(expected), "{expected} in {info_text}");
    }

    let content: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let slot = slot(
        &mut juliet,
        "nurse's letter.bin",
        content.len(),
        Some("application/x-letter"),
    )
    .await?;
    ensure!(
        slot.get.starts_with("http://files.test/upload/")
            && slot.get.ends_with("/nurse%27s%20letter.bin"),
        "URLs from public_url, file name encoded: {}",
        slot.get
    );
    ensure!(slot.put.starts_with(&slot.get) && slot.put.contains("?token="));

    let before = http(addr, "GET", target_of(&slot.get), &[], b"").await?;
    ensure!(before.status == 404, "nothing to get before the upload");

    let preflight = http(
        addr,
        "OPTIONS",
        target_of(&slot.put),
        &[
            ("Origin", "https://web.example"),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
    .await?;
    ensure!(
        preflight.status == 204,
        "preflight answered: {}",
        preflight.status
    );
    ensure!(preflight.header("access-control-allow-origin") == Some("*"));
    ensure!(
        preflight
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("PUT"))
    );

    let uploaded = put(addr, &slot.put, "application/x-letter", &content).await?;
    ensure!(uploaded.status == 201, "upload: {}", uploaded.status);
    ensure!(uploaded.header("access-control-allow-origin") == Some("*"));

    let again = put(addr, &slot.put, "application/x-letter", &content).await?;
    ensure!(
        again.status == 409,
        "a slot takes one upload: {}",
        again.status
    );

    let got = http(addr, "GET", target_of(&slot.get), &[], b"").await?;
    ensure!(got.status == 200, "download: {}", got.status);
    ensure!(got.body == content, "the same bytes back");
    ensure!(got.header("content-type") == Some("application/x-letter"));
    ensure!(got.header("content-length") == Some("70000"));
    ensure!(got.header("access-control-allow-origin") == Some("*"));
    ensure!(got.header("x-content-type-options") == Some("nosniff"));
    let disposition = got.header("content-disposition").unwrap_or_default();
    ensure!(
        disposition.starts_with("attachment;") && disposition.contains("nurse"),
        "{disposition}"
    );

    let head = http(addr, "HEAD", target_of(&slot.get), &[], b"").await?;
    ensure!(head.status == 200 && head.body.is_empty());

    // The file name in the URL is part of it.
    let renamed = slot.get.replace("letter.bin", "letter.exe");
    let wrong = http(addr, "GET", target_of(&renamed), &[], b"").await?;
    ensure!(wrong.status == 404);
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn wrong_forged_late_or_mismatched_uploads_are_refused() -> Result<()> {
    let (ts, mut juliet) = start(|_| {}).await?;
    let addr = http_addr(&ts)?;
    let body = b"0123456789";
    let slot = slot(&mut juliet, "a.txt", body.len(), Some("text/plain")).await?;

    let token_at = slot.put.find("token=").context("token")? + "token=".len();
    let mut forged = slot.put.clone().into_bytes();
    forged[token_at] = if forged[token_at] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged)?;
    ensure!(put(addr, &forged, "text/plain", body).await?.status == 403);
    ensure!(
        put(addr, &slot.get, "text/plain", body).await?.status == 403,
        "no token"
    );
    let other_name = slot.put.replace("/a.txt?", "/b.txt?");
    ensure!(put(addr, &other_name, "text/plain", body).await?.status == 403);

    ensure!(
        put(addr, &slot.put, "text/plain", b"012345678")
            .await?
            .status
            == 400
    );
    ensure!(
        put(addr, &slot.put, "text/plain", b"0123456789a")
            .await?
            .status
            == 413
    );
    ensure!(put(addr, &slot.put, "text/html", body).await?.status == 415);
    // A body cut short of its Content-Length.
    let short = http(
        addr,
        "PUT",
        target_of(&slot.put),
        &[("Content-Type", "text/plain"), ("Content-Length", "10")],
        b"01234",
    );
    let short = tokio::time::timeout(Duration::from_millis(500), short).await;
    ensure!(short.is_err(), "the server waits for the rest");

    // None of that used the slot up (once the server has seen the cut connection close).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let status = put(addr, &slot.put, "text/plain", body).await?.status;
        if status == 201 {
            break;
        }
        ensure!(
            status == 409 && tokio::time::Instant::now() < deadline,
            "upload after the refusals: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = http(addr, "GET", target_of(&slot.get), &[], b"").await?;
    ensure!(got.body == body);
    ts.shutdown().await;

    let (ts, mut juliet) = start(|c| c.upload.slot_valid_secs = 1).await?;
    let late = self::slot(&mut juliet, "late.txt", body.len(), None).await?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let refused = put(http_addr(&ts)?, &late.put, "text/plain", body).await?;
    ensure!(refused.status == 403, "expired slot: {}", refused.status);
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn too_large_over_quota_and_malformed_requests_get_the_xep_errors() -> Result<()> {
    let (ts, mut juliet) = start(|c| {
        c.upload.max_file_bytes = 1000;
        c.upload.quota_bytes_per_user = 1500;
        c.upload.content_types = vec!["image/*".into()];
    })
    .await?;

    let reply = juliet
        .iq(
            "get",
            Some(UPLOAD),
            request("big.png", 1001, Some("image/png")),
        )
        .await?;
    ensure!(
        stanza_error(&reply) == Some(("modify".into(), "not-acceptable".into())),
        "{reply}"
    );
    let max = reply
        .get_child("error", ns::CLIENT)
        .and_then(|e| e.get_child("file-too-large", ns::HTTP_UPLOAD))
        .and_then(|f| f.get_child("max-file-size", ns::HTTP_UPLOAD))
        .map(|m| m.text());
    ensure!(max.as_deref() == Some("1000"), "{reply}");

    slot(&mut juliet, "one.png", 800, Some("image/png")).await?;
    let reply = juliet
        .iq(
            "get",
            Some(UPLOAD),
            request("two.png", 800, Some("image/png")),
        )
        .await?;
    ensure!(
        stanza_error(&reply) == Some(("wait".into(), "resource-constraint".into())),
        "{reply}"
    );
    let retry = reply
        .get_child("error", ns::CLIENT)
        .and_then(|e| e.get_child("retry", ns::HTTP_UPLOAD))
        .and_then(|r| r.attr("stamp").map(str::to_owned));
    ensure!(
        retry.is_some_and(|s| s.ends_with('Z')),
        "a retry time (the unused slot expires): {reply}"
    );
    slot(&mut juliet, "three.png", 700, Some("image/png")).await?;

    for (bad, condition) in [
        (request("../x.png", 10, Some("image/png")), "bad-request"),
        (request("x.png", 0, Some("image/png")), "bad-request"),
        (
            Element::new("request", ns::HTTP_UPLOAD).with_attr("filename", "x.png"),
            "bad-request",
        ),
        (request("x.html", 10, Some("text/html")), "not-acceptable"),
    ] {
        let (_, got) = juliet.iq_error("get", Some(UPLOAD), bad).await?;
        ensure!(got == condition, "{got} instead of {condition}");
    }
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn expired_files_are_deleted() -> Result<()> {
    let (ts, mut juliet) = start(|c| c.upload.expire_after_secs = 2).await?;
    let addr = http_addr(&ts)?;
    let slot = slot(&mut juliet, "brief.txt", 5, Some("text/plain")).await?;
    ensure!(put(addr, &slot.put, "text/plain", b"hello").await?.status == 201);
    ensure!(
        http(addr, "GET", target_of(&slot.get), &[], b"")
            .await?
            .status
            == 200
    );
    let upload_dir = ts.dir.path().join("upload");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let status = http(addr, "GET", target_of(&slot.get), &[], b"")
            .await?
            .status;
        let left = std::fs::read_dir(&upload_dir)?.count();
        if status == 404 && left == 0 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "still there: {status}, {left} entries"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_service_is_absent_when_disabled() -> Result<()> {
    let (ts, mut juliet) = start(|c| c.upload.enabled = false).await?;
    let items = juliet
        .iq_result("get", Some(DOMAIN), Element::new("query", ns::DISCO_ITEMS))
        .await?;
    ensure!(!items.to_string().contains(UPLOAD), "{items}");
    let response = http(http_addr(&ts)?, "GET", "/upload/x/y/z", &[], b"").await?;
    ensure!(response.status == 404);
    ts.shutdown().await;
    Ok(())
}

// --- XEP-0215 --------------------------------------------------------------------------

fn turn_services(config: &mut corvid_server::Config) {
    let services = r#"
        [[external_services]]
        type = "stun"
        host = "stun.example.org"
        [[external_services]]
        type = "turn"
        host = "turn.example.org"
        secret = "north"
        credentials_ttl_secs = 600
        [[external_services]]
        type = "turns"
        host = "turn.example.org"
        port = 443
        username = "guest"
        password = "nurse"
    "#;
    let parsed = corvid_server::Config::parse(services).expect("valid services");
    config.external_services = parsed.external_services;
}

fn services_of(reply: &Element, wrapper: &str) -> Vec<Element> {
    reply
        .get_child(wrapper, ns::EXTDISCO)
        .map(|s| s.children().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn external_services_and_their_credentials_are_told_to_local_users() -> Result<()> {
    let (ts, mut juliet) = start(turn_services).await?;
    let info = juliet
        .iq_result("get", Some(DOMAIN), Element::new("query", ns::DISCO_INFO))
        .await?;
    ensure!(info.to_string().contains(ns::EXTDISCO), "{info}");

    let all = juliet
        .iq_result("get", Some(DOMAIN), Element::new("services", ns::EXTDISCO))
        .await?;
    let all = services_of(&all, "services");
    ensure!(all.len() == 3, "{all:?}");
    let stun = &all[0];
    ensure!(stun.attr("type") == Some("stun") && stun.attr("port") == Some("3478"));
    ensure!(stun.attr("transport") == Some("udp") && stun.attr("username").is_none());

    let turn = juliet
        .iq_result(
            "get",
            Some(DOMAIN),
            Element::new("services", ns::EXTDISCO).with_attr("type", "turn"),
        )
        .await?;
    let turn = services_of(&turn, "services");
    ensure!(turn.len() == 1, "only the turn service: {turn:?}");
    let username = turn[0].attr("username").context("username")?;
    let (expiry, user) = username.split_once(':').context("expiry:user")?;
    ensure!(user == "juliet@localhost");
    let expiry: u64 = expiry.parse()?;
    let (_, password) = corvid_server::modules::extdisco::time_limited_credentials(
        "north",
        expiry,
        &BareJid::new("juliet@localhost")?,
    );
    ensure!(turn[0].attr("password") == Some(password.as_str()));
    ensure!(turn[0].attr("expires").is_some());

    let asked = Element::new("credentials", ns::EXTDISCO).with_child(
        Element::new("service", ns::EXTDISCO)
            .with_attr("host", "turn.example.org")
            .with_attr("type", "turns"),
    );
    let creds = juliet.iq_result("get", Some(DOMAIN), asked).await?;
    let creds = services_of(&creds, "credentials");
    ensure!(creds.len() == 1 && creds[0].attr("username") == Some("guest"));
    ensure!(creds[0].attr("port") == Some("443"));

    let no_creds = Element::new("credentials", ns::EXTDISCO).with_child(
        Element::new("service", ns::EXTDISCO)
            .with_attr("host", "stun.example.org")
            .with_attr("type", "stun"),
    );
    let (_, condition) = juliet.iq_error("get", Some(DOMAIN), no_creds).await?;
    ensure!(condition == "item-not-found");
    ts.shutdown().await;

    let (ts, mut juliet) = start(|_| {}).await?;
    let info = juliet
        .iq_result("get", Some(DOMAIN), Element::new("query", ns::DISCO_INFO))
        .await?;
    ensure!(
        !info.to_string().contains(ns::EXTDISCO),
        "not without services"
    );
    let (_, condition) = juliet
        .iq_error("get", Some(DOMAIN), Element::new("services", ns::EXTDISCO))
        .await?;
    ensure!(condition == "service-unavailable");
    ts.shutdown().await;
    Ok(())
}
