//! Step 9: keeping the connection checked (XEP-0199, XMPPAutoPing): a ping every second,
//! each answered within two seconds or the connection is dropped as dead. Prints three
//! round trips.

mod common;

use std::time::Duration;

use corvid_client::{AutoPing, PingEvent};

#[tokio::main]
async fn main() -> common::Result<()> {
    let (client, _events) = common::builder()?.build();
    client.connect().await?;
    let (_pinger, mut pings) =
        AutoPing::start(&client, Duration::from_secs(1), Duration::from_secs(2));
    let mut pongs = 0;
    while pongs < 3 {
        match tokio::time::timeout(common::WAIT, pings.recv()).await {
            Ok(Some(PingEvent::Sent)) => println!("ping"),
            Ok(Some(PingEvent::Pong { rtt })) => {
                pongs += 1;
                println!("pong after {rtt:?}");
            }
            Ok(Some(PingEvent::Timeout)) => return Err("the server did not answer".into()),
            Ok(None) | Err(_) => return Err("the pinger stopped".into()),
        }
    }
    client.disconnect().await;
    Ok(())
}
