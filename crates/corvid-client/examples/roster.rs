//! Step 3: the roster (XMPPRoster with XMPPRosterMemoryStorage, or the SQLite storage
//! that plays XMPPRosterCoreDataStorage's part): fetch it, with versioning, and list the
//! contacts with their presence.

mod common;

use std::sync::Arc;
use std::time::Duration;

use corvid_client::{Roster, RosterEvent, SqliteStorage};
use corvid_proto::ns;
use corvid_xml::Element;

#[tokio::main]
async fn main() -> common::Result<()> {
    let (client, _events) = common::builder()?.build();
    // Kept on disk: the next run asks the server only for what changed.
    let path = std::env::temp_dir().join("corvid-example-roster.sqlite");
    let storage = Arc::new(SqliteStorage::open(&path).await?);
    // Attach before connecting, so no push or presence is missed.
    let (roster, mut roster_events) = Roster::attach(&client, storage);
    client.connect().await?;
    roster.fetch().await?;
    client.send(&Element::new("presence", ns::CLIENT)).await?;
    // Presence comes in for a moment after ours goes out.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(event) = roster_events.next().await {
            if let RosterEvent::Presence {
                jid,
                resource,
                presence,
            } = event
            {
                let state =
                    presence.map_or("offline".into(), |p| p.show.unwrap_or("online".into()));
                println!("presence: {jid}/{resource} {state}");
            }
        }
    })
    .await;
    println!("version {}", roster.version().unwrap_or_default());
    for item in roster.items() {
        let online = roster.presence(&item.jid).len();
        println!(
            "{} name={} subscription={} resources online={online}",
            item.jid,
            item.name.unwrap_or_default(),
            item.subscription.as_str()
        );
    }
    client.disconnect().await;
    Ok(())
}
