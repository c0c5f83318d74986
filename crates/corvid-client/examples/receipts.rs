//! Step 8: message receipts (XEP-0184, XMPPMessageDeliveryReceipts): send a message that
//! asks for a receipt, and wait for the receipt of that very message. Receipts asked of
//! us are answered by the module (`autoSendMessageDeliveryReceipts`).

mod common;

use corvid_client::{ReceiptEvent, Receipts};
use corvid_proto::ns;
use corvid_xml::Element;

#[tokio::main]
async fn main() -> common::Result<()> {
    let peer = common::peer()?;
    let (client, _events) = common::builder()?.build();
    let (receipts, mut receipt_events) = Receipts::attach(&client, true);
    client.connect().await?;
    client.send(&Element::new("presence", ns::CLIENT)).await?;
    let message = Element::new("message", ns::CLIENT)
        .with_attr("to", peer.as_str())
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::CLIENT).with_text("did you get this?"));
    let id = receipts.send(message).await?;
    println!("sent {id}, waiting for its receipt");
    let receipt = tokio::time::timeout(common::WAIT, receipt_events.next())
        .await
        .map_err(|_| "no receipt in time")?
        .ok_or("the receipts module ended")?;
    match receipt {
        ReceiptEvent::Received { from, id: got } if got == id => println!("{from} got {got}"),
        other => return Err(format!("unexpected {other:?}").into()),
    }
    client.disconnect().await;
    Ok(())
}
