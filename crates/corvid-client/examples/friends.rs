//! Step 4: add, accept and remove a friend (XMPPRoster's `addUser:withNickname:`,
//! `acceptPresenceSubscriptionRequestFrom:andAddToRoster:` and `removeUser:`).
//!
//! ```sh
//! cargo run -p corvid-client --example friends -- add romeo@localhost Romeo
//! cargo run -p corvid-client --example friends -- accept      # waits for a request
//! cargo run -p corvid-client --example friends -- remove romeo@localhost
//! ```

mod common;

use std::sync::Arc;

use corvid_client::{MemoryRosterStorage, Roster, RosterEvent};
use corvid_proto::ns;
use corvid_xml::Element;

#[tokio::main]
async fn main() -> common::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (client, _events) = common::builder()?.build();
    let (roster, mut roster_events) =
        Roster::attach(&client, Arc::new(MemoryRosterStorage::default()));
    client.connect().await?;
    roster.fetch().await?;
    client.send(&Element::new("presence", ns::CLIENT)).await?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["add", jid, rest @ ..] => {
            // A contact in the roster, then a request to see its presence.
            roster.set(jid, rest.first().copied(), &[]).await?;
            roster.subscribe(jid).await?;
            println!("added {jid} and asked to see its presence");
        }
        ["accept"] => {
            println!("waiting for a friend request");
            let from = tokio::time::timeout(common::WAIT, async {
                while let Some(event) = roster_events.next().await {
                    if let RosterEvent::SubscriptionRequest(from) = event {
                        return Some(from);
                    }
                }
                None
            })
            .await
            .ok()
            .flatten()
            .ok_or("no friend request came")?;
            // Accept, and ask for theirs in return.
            roster.accept(&from, true).await?;
            println!("accepted {from}");
        }
        ["remove", jid] => {
            roster.remove(jid).await?;
            println!("removed {jid}");
        }
        _ => return Err("usage: friends add JID [NAME] | accept | remove JID".into()),
    }
    client.disconnect().await;
    Ok(())
}
