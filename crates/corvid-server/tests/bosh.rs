//! XMPP over BOSH (XEP-0124, XEP-0206) at `/http-bind`, over real HTTP/1.1: a session's
//! whole life (creation, SASL, restart, bind, chat with a TCP client through a held
//! request, terminate), the `rid` window and retransmission, unknown sessions, stream
//! errors, inactivity, and CORS.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use base64::Engine;
use common::{DOMAIN, message, message_body, start_server_with, stream_error_condition};
use corvid_proto::ns;
use corvid_xml::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
const PASSWORD: &str = "secret-pw";

/// One HTTP/1.1 exchange on a connection of its own: (status, headers, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String, String)> {
    let mut tcp = TcpStream::connect(addr).await?;
    let mut request = format!(
        "{method} /http-bind HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    tcp.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut raw))
        .await
        .context("HTTP response timed out")??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status in {head:?}"))?;
    Ok((status, head.to_ascii_lowercase(), body.to_owned()))
}

/// POSTs a `<body/>` and parses the answer's `<body/>`.
async fn post(addr: SocketAddr, body: &str) -> Result<Element> {
    let (status, _, text) = http(addr, "POST", &[], body).await?;
    ensure!(status == 200, "HTTP {status}: {text}");
    let el = corvid_xml::parse_element(&text, HTTPBIND).with_context(|| text.clone())?;
    ensure!(el.is("body", HTTPBIND), "not a <body/>: {text}");
    Ok(el)
}

/// A BOSH client: its session id and next `rid`.
struct Bosh {
    addr: SocketAddr,
    sid: String,
    rid: u64,
    /// The creation response.
    created: Element,
}

impl Bosh {
    async fn create(addr: SocketAddr, to: &str, wait: u64) -> Result<Bosh> {
        let rid = 4000;
        let created = post(
            addr,
            &format!(
                "<body xmlns='{HTTPBIND}' rid='{rid}' to='{to}' wait='{wait}' hold='1' \
                 xml:lang='en' ver='1.6' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>"
            ),
        )
        .await?;
        let sid = created
            .attr("sid")
            .ok_or_else(|| anyhow!("no sid in {created}"))?
            .to_owned();
        Ok(Bosh {
            addr,
            sid,
            rid: rid + 1,
            created,
        })
    }

    /// The next request's `<body/>`, with `attrs` and `payload`.
    fn next_body(&mut self, attrs: &str, payload: &str) -> String {
        let rid = self.rid;
        self.rid += 1;
        format!(
            "<body xmlns='{HTTPBIND}' rid='{rid}' sid='{}' xmlns:xmpp='urn:xmpp:xbosh' {attrs}>{payload}</body>",
            self.sid
        )
    }

    async fn send(&mut self, attrs: &str, payload: &str) -> Result<Element> {
        let body = self.next_body(attrs, payload);
        post(self.addr, &body).await
    }

    /// SASL PLAIN, restart, bind: the full JID.
    async fn login(&mut self, user: &str) -> Result<String> {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{PASSWORD}").as_bytes());
        let answer = self
            .send(
                "",
                &format!(
                    "<auth xmlns='{}' mechanism='PLAIN'>{token}</auth>",
                    ns::SASL
                ),
            )
            .await?;
        ensure!(
            answer.has_child("success", ns::SASL),
            "no SASL success: {answer}"
        );
        let restarted = self.send("xmpp:restart='true'", "").await?;
        ensure!(
            features(&restarted).is_some_and(|f| f.has_child("bind", ns::BIND)),
            "no bind feature after the restart: {restarted}"
        );
        let bound = self
            .send(
                "",
                &format!(
                    "<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='{}'>\
                     <resource>web</resource></bind></iq>",
                    ns::BIND
                ),
            )
            .await?;
        bound
            .get_child("iq", ns::CLIENT)
            .and_then(|iq| iq.get_child("bind", ns::BIND))
            .and_then(|b| b.get_child("jid", ns::BIND))
            .map(|j| j.text())
            .ok_or_else(|| anyhow!("no bound JID in {bound}"))
    }
}

fn features(body: &Element) -> Option<&Element> {
    body.get_child("features", ns::STREAM)
}

#[tokio::test]
async fn a_bosh_client_logs_in_and_chats_with_a_tcp_client_through_held_requests() -> Result<()> {
    let ts = start_server_with(|_| {}).await?;
    ts.create_user("alice", PASSWORD).await?;
    ts.create_user("bob", PASSWORD).await?;
    let addr = ts.http_addr.expect("HTTP listener");

    let mut alice = Bosh::create(addr, DOMAIN, 10).await?;
    let created = &alice.created;
    assert_eq!(created.attr("requests"), Some("2"), "{created}");
    assert_eq!(created.attr("hold"), Some("1"));
    assert_eq!(created.attr("wait"), Some("10"));
    assert_eq!(created.attr("from"), Some(DOMAIN));
    assert!(created.attr("authid").is_some_and(|id| !id.is_empty()));
    assert_eq!(created.attr("{urn:xmpp:xbosh}version"), Some("1.0"));
    assert_eq!(created.attr("{urn:xmpp:xbosh}restartlogic"), Some("true"));
    assert!(
        features(created).is_some_and(|f| f.has_child("mechanisms", ns::SASL)),
        "the first answer carries the stream's features: {created}"
    );
    let alice_jid = alice.login("alice").await?;
    assert_eq!(alice_jid, format!("alice@{DOMAIN}/web"));

    let mut bob = ts.login("bob", PASSWORD, Some("tcp")).await?;
    let bob_jid = format!("bob@{DOMAIN}/tcp");
    let answer = alice
        .send(
            "",
            &format!(
                "<message xmlns='jabber:client' to='{bob_jid}' type='chat'><body>hello from the web</body></message>"
            ),
        )
        .await?;
    ensure!(
        answer.children().next().is_none(),
        "nothing to say yet: {answer}"
    );
    bob.expect_message("hello from the web").await?;

    // An empty request is held until Bob's answer arrives.
    let held = alice.next_body("", "");
    let poll = tokio::spawn(async move { post(addr, &held).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "an empty request is held");
    bob.send(&message(&alice_jid, "chat", "hello from TCP"))
        .await?;
    let answer = poll.await??;
    let got = answer
        .get_child("message", ns::CLIENT)
        .ok_or_else(|| anyhow!("no message in {answer}"))?;
    assert_eq!(message_body(got).as_deref(), Some("hello from TCP"));
    assert_eq!(got.attr("from"), Some(bob_jid.as_str()));

    let ended = alice.send("type='terminate'", "").await?;
    assert_eq!(ended.attr("type"), Some("terminate"));
    let after = alice.send("", "").await?;
    assert_eq!(after.attr("condition"), Some("item-not-found"), "{after}");
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_request_sent_again_gets_the_same_answer_and_rids_outside_the_window_end_the_session()
-> Result<()> {
    let ts = start_server_with(|_| {}).await?;
    ts.create_user("carol", PASSWORD).await?;
    let addr = ts.http_addr.expect("HTTP listener");

    let unknown = post(
        addr,
        &format!("<body xmlns='{HTTPBIND}' rid='1' sid='no-such-session'/>"),
    )
    .await?;
    assert_eq!(unknown.attr("type"), Some("terminate"));
    assert_eq!(unknown.attr("condition"), Some("item-not-found"));

    let mut carol = Bosh::create(addr, DOMAIN, 5).await?;
    carol.login("carol").await?;
    // The bind request again (its answer was lost, say): the same answer.
    carol.rid -= 1;
    let again = carol
        .send("", "<iq xmlns='jabber:client' type='set' id='b1'/>")
        .await?;
    assert!(
        again
            .get_child("iq", ns::CLIENT)
            .is_some_and(|iq| iq.attr("id") == Some("b1")),
        "the retransmitted answer: {again}"
    );

    carol.rid += 5;
    let far = carol.send("", "").await?;
    assert_eq!(far.attr("type"), Some("terminate"));
    assert_eq!(far.attr("condition"), Some("item-not-found"), "{far}");
    carol.rid -= 5;
    let gone = carol.send("", "").await?;
    assert_eq!(gone.attr("condition"), Some("item-not-found"), "{gone}");
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn requests_ahead_of_a_gap_wait_for_it() -> Result<()> {
    let ts = start_server_with(|_| {}).await?;
    ts.create_user("dave", PASSWORD).await?;
    let addr = ts.http_addr.expect("HTTP listener");
    let mut session = Bosh::create(addr, DOMAIN, 5).await?;
    session.login("dave").await?;
    // rid+1 arrives first: it must wait for rid (whose ping comes first in the stream).
    let first = session.next_body(
        "",
        "<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    let second = session.next_body(
        "",
        "<iq xmlns='jabber:client' type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    let later = tokio::spawn(async move { post(addr, &second).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let earlier = post(addr, &first).await?;
    let later = later.await??;
    let ids: Vec<String> = [earlier, later]
        .iter()
        .flat_map(|b| {
            b.children()
                .filter_map(|c| c.attr("id").map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ids, ["p1", "p2"]);
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_stream_error_ends_the_session_with_remote_stream_error() -> Result<()> {
    let ts = start_server_with(|_| {}).await?;
    let addr = ts.http_addr.expect("HTTP listener");
    let answer = post(
        addr,
        &format!(
            "<body xmlns='{HTTPBIND}' rid='10' to='unknown.example' wait='5' hold='1' \
             xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>"
        ),
    )
    .await?;
    assert_eq!(answer.attr("type"), Some("terminate"), "{answer}");
    assert_eq!(answer.attr("condition"), Some("remote-stream-error"));
    let error = answer
        .get_child("error", ns::STREAM)
        .ok_or_else(|| anyhow!("no stream error in {answer}"))?;
    assert_eq!(
        stream_error_condition(error).as_deref(),
        Some("host-unknown")
    );
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_session_no_request_comes_for_ends() -> Result<()> {
    let ts = start_server_with(|config| config.http.bosh_inactivity_secs = 1).await?;
    let addr = ts.http_addr.expect("HTTP listener");
    let mut session = Bosh::create(addr, DOMAIN, 1).await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = session.send("", "").await?;
    assert_eq!(late.attr("type"), Some("terminate"));
    assert_eq!(late.attr("condition"), Some("item-not-found"), "{late}");
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn browsers_get_cors_headers_for_allowed_origins_only() -> Result<()> {
    let ts = start_server_with(|config| {
        config.http.origins = vec!["https://chat.example.org".into()];
    })
    .await?;
    let addr = ts.http_addr.expect("HTTP listener");
    let (status, headers, _) = http(
        addr,
        "OPTIONS",
        &[
            ("Origin", "https://chat.example.org"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    )
    .await?;
    assert!(status == 200 || status == 204, "preflight: {status}");
    assert!(
        headers.contains("access-control-allow-origin: https://chat.example.org"),
        "{headers}"
    );
    assert!(
        headers.contains("access-control-allow-methods:"),
        "{headers}"
    );
    let (status, _, _) = http(
        addr,
        "POST",
        &[("Origin", "https://evil.example")],
        &format!("<body xmlns='{HTTPBIND}' rid='1' to='{DOMAIN}'/>"),
    )
    .await?;
    assert_eq!(status, 403);
    let (status, _, text) = http(addr, "GET", &[], "").await?;
    assert_eq!(status, 200);
    assert!(text.contains("BOSH"), "{text}");
    ts.shutdown().await;
    Ok(())
}
