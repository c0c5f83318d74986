//! Step 10: staying connected (XMPPReconnect with XMPPStreamManagement): after a lost
//! connection the client comes back by itself, resuming the stream-management session
//! when the server kept it (nothing lost, nothing twice), else logging in again and
//! fetching what it missed from the archive. Prints the stream's events and the messages
//! received for `CORVID_SECONDS` (default 60); cut the network meanwhile to watch it.

mod common;

use std::time::Duration;

use corvid_client::{Event, Reconnect};
use corvid_proto::ns;
use corvid_xml::Element;

#[tokio::main]
async fn main() -> common::Result<()> {
    let seconds: u64 = std::env::var("CORVID_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let policy = Reconnect::default()
        .initial_delay(Duration::from_millis(500))
        .max_delay(Duration::from_secs(30));
    let (client, mut events) = common::builder()?.reconnect(policy).build();
    client.connect().await?;
    client.send(&Element::new("presence", ns::CLIENT)).await?;
    let _ = tokio::time::timeout(Duration::from_secs(seconds), async {
        while let Some(event) = events.next().await {
            match event {
                Event::Message(m) => {
                    if let Some(body) = m.get_child("body", ns::CLIENT) {
                        let from = m.attr("from").unwrap_or_default();
                        println!("message from {from}: {}", body.text());
                    }
                }
                Event::Presence(_) | Event::Iq(_) | Event::Other(_) => {}
                other => println!("{other:?}"),
            }
        }
    })
    .await;
    client.disconnect().await;
    Ok(())
}
