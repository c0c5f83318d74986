//! Client state indication (XEP-0352) over real sockets: what an inactive client is
//! spared, and that it gets everything, in order, when it matters or when it is active.

mod common;

use anyhow::{Result, ensure};
use common::{message, message_body, start_server_with_users};
use corvid_proto::ns;
use corvid_xml::Element;

const PASSWORD: &str = "secret-pass";

fn directed_presence(to: &str, status: &str) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_attr("to", to)
        .with_child(Element::new("status", ns::CLIENT).with_text(status))
}

fn status(el: &Element) -> Option<String> {
    el.get_child("status", ns::CLIENT).map(|s| s.text())
}

#[tokio::test]
async fn an_inactive_client_gets_held_presence_and_chat_states_before_the_next_message()
-> Result<()> {
    let ts = start_server_with_users(&["alice", "bob"], PASSWORD).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("phone")).await?;
    ensure!(
        alice.has_feature("csi", ns::CSI),
        "no <csi/> stream feature"
    );
    alice.send_presence(0).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("desk")).await?;
    alice.send(&Element::new("inactive", ns::CSI)).await?;
    alice.sync().await?;
    for s in ["away", "xa", "dnd"] {
        bob.send(&directed_presence("alice@localhost/phone", s))
            .await?;
    }
    let composing = Element::new("message", ns::CLIENT)
        .with_attr("to", "alice@localhost/phone")
        .with_attr("type", "chat")
        .with_child(Element::new("composing", ns::CHATSTATES));
    bob.send(&composing).await?;
    bob.send(&message("alice@localhost/phone", "chat", "wake up"))
        .await?;
    // Nothing before the message but the latest presence and the chat state, in order.
    let first = alice.recv().await?;
    ensure!(
        first.is("presence", ns::CLIENT) && status(&first).as_deref() == Some("dnd"),
        "got {first}"
    );
    let second = alice.recv().await?;
    ensure!(
        second.has_child("composing", ns::CHATSTATES),
        "got {second}"
    );
    let third = alice.recv().await?;
    ensure!(
        message_body(&third).as_deref() == Some("wake up"),
        "got {third}"
    );
    // Held again until the client is active.
    bob.send(&directed_presence("alice@localhost/phone", "back"))
        .await?;
    bob.sync().await?;
    alice.send(&Element::new("active", ns::CSI)).await?;
    let held = alice.recv().await?;
    ensure!(status(&held).as_deref() == Some("back"), "got {held}");
    // Active: presence flows at once again.
    bob.send(&directed_presence("alice@localhost/phone", "online"))
        .await?;
    let live = alice.recv().await?;
    ensure!(status(&live).as_deref() == Some("online"), "got {live}");
    Ok(())
}

#[tokio::test]
async fn iq_requests_reach_an_inactive_client_at_once() -> Result<()> {
    let ts = start_server_with_users(&["alice", "bob"], PASSWORD).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("phone")).await?;
    alice.send_presence(0).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("desk")).await?;
    alice.send(&Element::new("inactive", ns::CSI)).await?;
    alice.sync().await?;
    bob.send(&directed_presence("alice@localhost/phone", "held"))
        .await?;
    let ping = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", "call-1")
        .with_attr("to", "alice@localhost/phone")
        .with_child(Element::new("ping", ns::PING));
    bob.send(&ping).await?;
    let first = alice.recv().await?;
    ensure!(
        status(&first).as_deref() == Some("held"),
        "held presence first, got {first}"
    );
    let iq = alice.recv().await?;
    ensure!(
        iq.is("iq", ns::CLIENT) && iq.attr("id") == Some("call-1"),
        "got {iq}"
    );
    Ok(())
}
