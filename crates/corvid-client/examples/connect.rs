//! Step 1: connect and go online (XMPPStream: `connectWithTimeout:`, then
//! `authenticateWithPassword:`, then sending `<presence/>` in
//! `xmppStreamDidAuthenticate:`).
//!
//! ```sh
//! CORVID_JID=juliet@localhost CORVID_PASSWORD=secret CORVID_SERVER=127.0.0.1:5222 \
//!     CORVID_CERT=/path/to/cert.pem cargo run -p corvid-client --example connect
//! ```

mod common;

use corvid_client::Event;
use corvid_proto::ns;
use corvid_xml::Element;

#[tokio::main]
async fn main() -> common::Result<()> {
    let (client, mut events) = common::builder()?.build();
    client.connect().await?;
    // The steps the stream went through, as events.
    while let Some(event) = events.try_next() {
        match event {
            Event::Connecting { host, port } => println!("connecting to {host}:{port}"),
            Event::Connected => println!("connected"),
            Event::Authenticated { jid, mechanism } => {
                println!("authenticated as {jid} with {}", mechanism.name());
            }
            other => println!("{other:?}"),
        }
    }
    client.send(&Element::new("presence", ns::CLIENT)).await?;
    println!("online");
    client.disconnect().await;
    println!("offline");
    Ok(())
}
