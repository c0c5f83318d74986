//! Step 6: avatars (XMPPvCardAvatarModule, XEP-0153 and XEP-0084): publish ours both ways
//! (PEP data and metadata, vCard PHOTO, presence hash), or watch contacts' avatars change.
//!
//! ```sh
//! cargo run -p corvid-client --example avatar -- publish face.png 64 64
//! cargo run -p corvid-client --example avatar -- watch     # for 15 s
//! ```

mod common;

use std::sync::Arc;

use corvid_client::{
    AvatarEvent, AvatarSources, Avatars, Capabilities, Identity, MemoryAvatarStorage, avatar,
};
use corvid_proto::ns;
use corvid_xml::Element;

#[tokio::main]
async fn main() -> common::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (client, _events) = common::builder()?.build();
    // Contacts' PEP sends their avatar metadata to those whose caps ask for it.
    let caps = Capabilities::attach(&client, Identity::client("corvid example"), None);
    caps.add_feature(avatar::METADATA_NOTIFY);
    let (avatars, mut avatar_events) = Avatars::attach(
        &client,
        Arc::new(MemoryAvatarStorage::default()),
        AvatarSources::default(),
    );
    client.connect().await?;
    let mut presence = Element::new("presence", ns::CLIENT);
    caps.decorate(&mut presence);
    avatars.send_presence(presence).await?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["publish", path, size @ ..] => {
            let bytes = std::fs::read(path)?;
            let mime = if path.ends_with(".png") {
                "image/png"
            } else {
                "image/jpeg"
            };
            let (width, height) = match size {
                [w, h] => (w.parse()?, h.parse()?),
                _ => (0, 0),
            };
            let hash = avatars.publish_own(&bytes, mime, width, height).await?;
            println!("published {} bytes as {hash}", bytes.len());
        }
        ["watch"] => {
            let _ = tokio::time::timeout(common::WAIT, async {
                while let Some(event) = avatar_events.next().await {
                    if let AvatarEvent::Changed { jid, hash, source } = event {
                        let size = avatars
                            .cached(&hash)
                            .await
                            .ok()
                            .flatten()
                            .map(|a| a.bytes.len());
                        println!(
                            "{jid}: {hash} ({} bytes, from {source:?})",
                            size.unwrap_or(0)
                        );
                    }
                }
            })
            .await;
        }
        _ => return Err("usage: avatar publish FILE [WIDTH HEIGHT] | watch".into()),
    }
    client.disconnect().await;
    Ok(())
}
