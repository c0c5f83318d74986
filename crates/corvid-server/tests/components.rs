//! External components (XEP-0114): the handshake, routing both ways, addresses checked,
//! stanzas bounced while a component is away, and components listed in disco#items.

mod common;

use anyhow::{Context, Result, ensure};
use common::{Client, DOMAIN, TestServer, message, message_body, stanza_error, start_server_with};
use corvid_proto::ns;
use corvid_server::component::{NS_ACCEPT, handshake_digest};
use corvid_server::config::ComponentConfig;
use corvid_xml::Element;

const GATEWAY: &str = "gw.localhost";
const SECRET: &str = "s3cret";

async fn server() -> Result<TestServer> {
    let ts = start_server_with(|config| {
        config.components = vec![ComponentConfig {
            domain: GATEWAY.into(),
            secret: SECRET.into(),
        }];
    })
    .await?;
    ts.create_user("juliet", "pw").await?;
    Ok(ts)
}

fn header(to: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_ACCEPT}' xmlns:stream='{}' to='{to}'>",
        ns::STREAM
    )
}

/// Opens a component stream to `to` and sends the handshake made with `secret`; the
/// server's answer (the `<handshake/>`, or what came instead).
async fn component(ts: &TestServer, to: &str, secret: &str) -> Result<(Client, Element)> {
    let mut link = Client::connect(ts.component_addr.context("no component port")?).await?;
    link.send_raw(header(to)).await?;
    // The server's header comes first; its id goes into the handshake.
    let id = link
        .read_stream_header()
        .await?
        .attr("id")
        .context("the server's stream header has no id")?
        .to_owned();
    let digest = handshake_digest(&id, secret);
    link.send_raw(format!("<handshake>{digest}</handshake>"))
        .await?;
    let answer = link.recv().await?;
    Ok((link, answer))
}

async fn connected(ts: &TestServer) -> Result<Client> {
    let (link, answer) = component(ts, GATEWAY, SECRET).await?;
    ensure!(
        answer.is("handshake", NS_ACCEPT),
        "expected <handshake/>, got {answer}"
    );
    Ok(link)
}

#[tokio::test]
async fn the_handshake_admits_a_component_with_the_secret() -> Result<()> {
    let ts = server().await?;
    let answer = corvid_server::admin::respond(&ts.server, "components");
    ensure!(answer == format!("{GATEWAY}\taway\n"), "{answer}");
    let link = connected(&ts).await?;
    ensure!(ts.server.components.connected() == [GATEWAY]);
    let answer = corvid_server::admin::respond(&ts.server, "components");
    ensure!(answer == format!("{GATEWAY}\tconnected\n"), "{answer}");
    drop(link);
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_wrong_secret_is_not_authorized_and_closed() -> Result<()> {
    let ts = server().await?;
    let (mut link, answer) = component(&ts, GATEWAY, "guess").await?;
    ensure!(
        common::stream_error_condition(&answer).as_deref() == Some("not-authorized"),
        "{answer}"
    );
    link.expect_closed().await?;
    ensure!(ts.server.components.connected().is_empty());
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_unknown_domain_is_host_unknown() -> Result<()> {
    let ts = server().await?;
    let mut link = Client::connect(ts.component_addr.context("no component port")?).await?;
    link.send_raw(header("nobody.localhost")).await?;
    link.expect_stream_error("host-unknown").await?;
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_second_connection_for_the_same_domain_is_a_conflict() -> Result<()> {
    let ts = server().await?;
    let _first = connected(&ts).await?;
    let (mut second, answer) = component(&ts, GATEWAY, SECRET).await?;
    ensure!(
        common::stream_error_condition(&answer).as_deref() == Some("conflict"),
        "{answer}"
    );
    second.expect_closed().await?;
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn stanzas_go_both_ways_between_users_and_a_component() -> Result<()> {
    let ts = server().await?;
    let mut gateway = connected(&ts).await?;
    let mut juliet = ts.login("juliet", "pw", Some("balcony")).await?;
    // User → component: the stanza arrives stamped with her full JID.
    juliet
        .send(&message(
            &format!("room@{GATEWAY}"),
            "chat",
            "hello gateway",
        ))
        .await?;
    let got = gateway.recv().await?;
    ensure!(got.is("message", NS_ACCEPT), "{got}");
    ensure!(
        got.attr("from") == Some("juliet@localhost/balcony"),
        "{got}"
    );
    ensure!(
        got.get_child("body", NS_ACCEPT)
            .map(Element::text)
            .as_deref()
            == Some("hello gateway"),
        "{got}"
    );
    // Component → user, from any JID at its domain.
    gateway
        .send_raw(format!(
            "<message from='room@{GATEWAY}/nick' to='juliet@{DOMAIN}/balcony' type='chat'><body>hello juliet</body></message>"
        ))
        .await?;
    let got = juliet.recv_skipping_presence().await?;
    ensure!(
        message_body(&got).as_deref() == Some("hello juliet"),
        "{got}"
    );
    ensure!(
        got.attr("from") == Some(&*format!("room@{GATEWAY}/nick")),
        "{got}"
    );
    // An IQ from the user, answered by the component.
    juliet
        .send_raw(format!(
            "<iq type='get' id='v1' to='{GATEWAY}'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await?;
    let iq = gateway.recv().await?;
    ensure!(
        iq.is("iq", NS_ACCEPT) && iq.attr("id") == Some("v1"),
        "{iq}"
    );
    gateway
        .send_raw(format!(
            "<iq type='result' id='v1' from='{GATEWAY}' to='juliet@{DOMAIN}/balcony'><query xmlns='jabber:iq:version'><name>gw</name></query></iq>"
        ))
        .await?;
    let result = juliet.recv_skipping_presence().await?;
    ensure!(
        result.attr("type") == Some("result") && result.attr("id") == Some("v1"),
        "{result}"
    );
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_component_cannot_speak_for_another_domain() -> Result<()> {
    let ts = server().await?;
    let mut gateway = connected(&ts).await?;
    gateway
        .send_raw(format!(
            "<message from='admin@{DOMAIN}' to='juliet@{DOMAIN}'><body>trust me</body></message>"
        ))
        .await?;
    gateway.expect_stream_error("invalid-from").await?;
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_stanza_without_to_is_improper_addressing() -> Result<()> {
    let ts = server().await?;
    let mut gateway = connected(&ts).await?;
    gateway
        .send_raw(format!(
            "<message from='{GATEWAY}'><body>to whom?</body></message>"
        ))
        .await?;
    gateway.expect_stream_error("improper-addressing").await?;
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn stanzas_for_an_absent_component_are_bounced() -> Result<()> {
    let ts = server().await?;
    let mut juliet = ts.login("juliet", "pw", Some("balcony")).await?;
    // Never connected.
    juliet
        .send(&message(&format!("room@{GATEWAY}"), "chat", "anyone?"))
        .await?;
    let bounce = juliet.recv_skipping_presence().await?;
    ensure!(
        stanza_error(&bounce).map(|(_, c)| c).as_deref() == Some("service-unavailable"),
        "{bounce}"
    );
    // Connected, then gone.
    let mut gateway = connected(&ts).await?;
    gateway.send_raw("</stream:stream>").await?;
    gateway.expect_closed().await?;
    for _ in 0..100 {
        if ts.server.components.connected().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    juliet
        .send(&message(&format!("room@{GATEWAY}"), "chat", "still there?"))
        .await?;
    let bounce = juliet.recv_skipping_presence().await?;
    ensure!(
        stanza_error(&bounce).map(|(_, c)| c).as_deref() == Some("service-unavailable"),
        "{bounce}"
    );
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn connected_components_are_server_disco_items() -> Result<()> {
    let ts = server().await?;
    let mut juliet = ts.login("juliet", "pw", Some("balcony")).await?;
    let items = |iq: &Element| -> Vec<String> {
        iq.get_child("query", ns::DISCO_ITEMS)
            .map(|q| {
                q.children()
                    .filter_map(|i| i.attr("jid").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = juliet
        .iq("get", Some(DOMAIN), Element::new("query", ns::DISCO_ITEMS))
        .await?;
    ensure!(!items(&before).contains(&GATEWAY.to_owned()), "{before}");
    let _gateway = connected(&ts).await?;
    let after = juliet
        .iq("get", Some(DOMAIN), Element::new("query", ns::DISCO_ITEMS))
        .await?;
    ensure!(items(&after).contains(&GATEWAY.to_owned()), "{after}");
    ts.shutdown().await;
    Ok(())
}
