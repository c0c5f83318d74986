//! Push notifications (XEP-0357) over real sockets: a client registers an app server (here
//! another client plays it), and messages waiting for the client — offline, or for its
//! detached stream-management session — are published to it with the client's secret.

mod common;

use anyhow::{Context, Result, ensure};
use common::{Client, TestServer, message, message_body, start_server_with_users};
use corvid_proto::{forms, ns};
use corvid_xml::Element;

const PASSWORD: &str = "secret-pass";
const APP: &str = "pushsrv@localhost/app";

fn enable(node: &str, secret: &str) -> Element {
    let options = forms::form("submit")
        .with_child(forms::form_type_field(ns::PUBSUB_PUBLISH_OPTIONS))
        .with_child(forms::field("secret", "text-single", None, &[secret]));
    Element::new("enable", ns::PUSH)
        .with_attr("jid", APP)
        .with_attr("node", node)
        .with_child(options)
}

async fn setup() -> Result<(TestServer, Client, Client)> {
    let ts = start_server_with_users(&["alice", "carol", "pushsrv"], PASSWORD).await?;
    let app = ts.login("pushsrv", PASSWORD, Some("app")).await?;
    let carol = ts.login("carol", PASSWORD, Some("desk")).await?;
    Ok((ts, app, carol))
}

/// The next notification the app server gets: (node, sender, secret); answered with `answer`.
async fn notification(app: &mut Client, answer: Option<&str>) -> Result<(String, String, String)> {
    let iq = app.recv().await?;
    ensure!(
        iq.is("iq", ns::CLIENT) && iq.attr("type") == Some("set"),
        "expected a publish, got {iq}"
    );
    ensure!(
        iq.attr("from") == Some("alice@localhost"),
        "published from {:?}",
        iq.attr("from")
    );
    let pubsub = iq.get_child("pubsub", ns::PUBSUB).context("no pubsub")?;
    let publish = pubsub
        .get_child("publish", ns::PUBSUB)
        .context("no publish")?;
    let summary = publish
        .get_child("item", ns::PUBSUB)
        .and_then(|i| i.get_child("notification", ns::PUSH))
        .and_then(|n| n.get_child("x", ns::DATA_FORMS))
        .context("no summary form")?;
    ensure!(forms::value(summary, "FORM_TYPE").as_deref() == Some(ns::PUSH_SUMMARY));
    ensure!(
        forms::value(summary, "last-message-body").is_none(),
        "the body is private by default"
    );
    let options = pubsub
        .get_child("publish-options", ns::PUBSUB)
        .and_then(|o| o.get_child("x", ns::DATA_FORMS))
        .context("no publish-options")?;
    let mut reply = Element::new("iq", ns::CLIENT)
        .with_attr("id", iq.attr("id").unwrap_or_default())
        .with_attr("to", "alice@localhost");
    match answer {
        None => reply.set_attr("type", "result"),
        Some(condition) => {
            reply.set_attr("type", "error");
            reply.append_child(
                Element::new("error", ns::CLIENT)
                    .with_attr("type", "cancel")
                    .with_child(Element::new(condition, ns::STANZA_ERRORS)),
            );
        }
    }
    app.send(&reply).await?;
    Ok((
        publish.attr("node").unwrap_or_default().to_string(),
        forms::value(summary, "last-message-sender").unwrap_or_default(),
        forms::value(options, "secret").unwrap_or_default(),
    ))
}

#[tokio::test]
async fn a_message_stored_offline_is_pushed_until_the_client_disables_it() -> Result<()> {
    let (ts, mut app, mut carol) = setup().await?;
    let mut alice = ts.login("alice", PASSWORD, Some("phone")).await?;
    let disco = alice
        .iq_result(
            "get",
            Some("alice@localhost"),
            Element::new("query", ns::DISCO_INFO),
        )
        .await?;
    ensure!(
        disco
            .children()
            .flat_map(Element::children)
            .any(|f| f.attr("var") == Some(ns::PUSH)),
        "urn:xmpp:push:0 not advertised on the account: {disco}"
    );
    alice
        .iq_result("set", None, enable("dev-1", "s3cret"))
        .await?;
    alice.send_raw("</stream:stream>").await?;
    let _ = alice.read_to_end().await;
    carol
        .send(&message("alice@localhost", "chat", "are you there?"))
        .await?;
    let (node, sender, secret) = notification(&mut app, None).await?;
    ensure!(
        (node.as_str(), sender.as_str(), secret.as_str())
            == ("dev-1", "carol@localhost/desk", "s3cret")
    );
    // Disabled: the next one goes offline without a push (the marker comes first).
    let mut alice = ts.login("alice", PASSWORD, Some("phone")).await?;
    let disable = Element::new("disable", ns::PUSH).with_attr("jid", APP);
    alice.iq_result("set", None, disable).await?;
    alice.send_raw("</stream:stream>").await?;
    let _ = alice.read_to_end().await;
    carol
        .send(&message("alice@localhost", "chat", "hello?"))
        .await?;
    carol.send(&message(APP, "chat", "marker")).await?;
    let next = app.recv().await?;
    ensure!(
        message_body(&next).as_deref() == Some("marker"),
        "got {next}"
    );
    Ok(())
}

#[tokio::test]
async fn an_app_server_refusing_a_notification_loses_the_registration() -> Result<()> {
    let (ts, mut app, mut carol) = setup().await?;
    let mut alice = ts.login("alice", PASSWORD, Some("phone")).await?;
    alice.iq_result("set", None, enable("gone", "x")).await?;
    alice.send_raw("</stream:stream>").await?;
    let _ = alice.read_to_end().await;
    carol
        .send(&message("alice@localhost", "chat", "one"))
        .await?;
    notification(&mut app, Some("item-not-found")).await?;
    // The refusal is handled in the background: wait until the registration is gone.
    let (username, domain) = ("alice", "localhost");
    use corvid_store::PushRegistrations as _;
    for _ in 0..100 {
        if ts
            .server
            .store
            .push_registrations(username, domain)
            .await?
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    carol
        .send(&message("alice@localhost", "chat", "two"))
        .await?;
    carol.send(&message(APP, "chat", "marker")).await?;
    let next = app.recv().await?;
    ensure!(
        message_body(&next).as_deref() == Some("marker"),
        "got {next}"
    );
    Ok(())
}

#[tokio::test]
async fn a_detached_session_wakes_only_its_own_device() -> Result<()> {
    let (ts, mut app, mut carol) = setup().await?;
    // Another device's registration, made from a session that then ended.
    let mut tablet = ts.login("alice", PASSWORD, Some("tablet")).await?;
    tablet.iq_result("set", None, enable("tablet", "t")).await?;
    tablet.send_raw("</stream:stream>").await?;
    let _ = tablet.read_to_end().await;
    let mut phone = ts.login("alice", PASSWORD, Some("phone")).await?;
    phone.send_presence(0).await?;
    phone.iq_result("set", None, enable("phone", "p")).await?;
    phone
        .send(&Element::new("enable", ns::SM).with_attr("resume", "true"))
        .await?;
    ensure!(phone.recv().await?.is("enabled", ns::SM));
    drop(phone);
    carol
        .send(&message("alice@localhost/phone", "chat", "wake up"))
        .await?;
    let (node, _, secret) = notification(&mut app, None).await?;
    ensure!(
        (node.as_str(), secret.as_str()) == ("phone", "p"),
        "woke {node}"
    );
    Ok(())
}

#[tokio::test]
async fn only_the_account_enables_pushes_for_itself() -> Result<()> {
    let (_ts, _app, mut carol) = setup().await?;
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", "p1")
        .with_attr("to", "alice@localhost")
        .with_child(enable("evil", "x"));
    carol.send(&iq).await?;
    let reply = carol.recv().await?;
    ensure!(
        reply.attr("type") == Some("error") && reply.to_string().contains("forbidden"),
        "got {reply}"
    );
    Ok(())
}
