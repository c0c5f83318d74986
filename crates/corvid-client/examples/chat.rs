//! Step 2: send a message and receive one (XMPPStream's `sendElement:` and
//! `xmppStream:didReceiveMessage:`). Sends "hello" to `CORVID_PEER` and prints the first
//! chat message that comes back.

mod common;

use corvid_client::Event;
use corvid_proto::ns;
use corvid_xml::Element;

#[tokio::main]
async fn main() -> common::Result<()> {
    let peer = common::peer()?;
    let (client, mut events) = common::builder()?.build();
    client.connect().await?;
    client.send(&Element::new("presence", ns::CLIENT)).await?;
    let message = Element::new("message", ns::CLIENT)
        .with_attr("to", peer.as_str())
        .with_attr("type", "chat")
        .with_attr("id", client.new_id())
        .with_child(Element::new("body", ns::CLIENT).with_text("hello"));
    client.send(&message).await?;
    println!("sent: hello");
    let reply = common::wait_for(
        &mut events,
        "a reply",
        |e| matches!(e, Event::Message(m) if m.has_child("body", ns::CLIENT)),
    )
    .await?;
    if let Event::Message(m) = reply {
        let from = m.attr("from").unwrap_or_default();
        let body = m.get_child("body", ns::CLIENT).map(Element::text);
        println!("received from {from}: {}", body.unwrap_or_default());
    }
    client.disconnect().await;
    Ok(())
}
