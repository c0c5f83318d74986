//! Step 5: vCards (XMPPvCardTempModule): publish our own, then fetch one cache-first
//! (`vCardTempForJID:shouldFetch:`) and forced (`fetchvCardTempForJID:ignoreStorage:`).
//!
//! ```sh
//! cargo run -p corvid-client --example vcard -- "Juliet Capulet"   # set our name, show it
//! cargo run -p corvid-client --example vcard -- --show romeo@localhost
//! ```

mod common;

use std::sync::Arc;

use corvid_client::{MemoryVCardStorage, VCards};
use corvid_proto::ns;
use corvid_xml::Element;

#[tokio::main]
async fn main() -> common::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (client, _events) = common::builder()?.build();
    let vcards = VCards::attach(&client, Arc::new(MemoryVCardStorage::default()));
    client.connect().await?;
    let own = client.account().to_string();
    let jid = match args.as_slice() {
        [flag, jid] if flag == "--show" => jid.clone(),
        [name] => {
            let vcard = Element::new("vCard", ns::VCARD)
                .with_child(Element::new("FN", ns::VCARD).with_text(name.as_str()));
            vcards.update_own(vcard).await?;
            println!("published our vCard");
            own
        }
        _ => own,
    };
    // From the server the first time, then from the storage.
    let Some(fetched) = vcards.fetch(&jid, false).await? else {
        println!("{jid} has no vCard");
        client.disconnect().await;
        return Ok(());
    };
    // Now from the storage, without asking the server.
    let cached = vcards.cached(&jid).await?.ok_or("the vCard was not kept")?;
    assert_eq!(fetched.to_string(), cached.to_string());
    let name = fetched.get_child("FN", ns::VCARD).map(Element::text);
    println!("{jid}: FN={}", name.unwrap_or_default());
    client.disconnect().await;
    Ok(())
}
