//! XEP-0359 unique and stable stanza IDs: each message delivered to an account gets a
//! `<stanza-id/>` by that account's bare JID; any such element a sender forged is removed.
//! The id is a new archive number (see corvid-store's archive.rs): the one the message is
//! archived under, if it is.

use async_trait::async_trait;
use corvid_proto::Bare;
use corvid_proto::{Jid, ns};
use corvid_store::Archive as _;
use corvid_xml::Element;

use crate::module::{Ctx, Direction, Flow, Module};

pub struct StanzaId;

#[async_trait]
impl Module for StanzaId {
    fn name(&self) -> &'static str {
        "stanza_id"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::STANZA_ID]
    }

    async fn on_message(&self, ctx: &Ctx, msg: &mut Element, dir: Direction) -> Flow {
        if dir != Direction::ToClient || msg.attr("type") == Some("error") {
            return Flow::Continue;
        }
        let Some(Ok(to)) = msg.attr("to").map(Jid::new) else {
            return Flow::Continue;
        };
        let by = to.bare().to_string();
        // XEP-0359 §5: an id claiming to be by the recipient's own archive must come from us.
        msg.remove_children(|c| {
            c.is("stanza-id", ns::STANZA_ID) && c.attr("by") == Some(by.as_str())
        });
        msg.append_child(
            Element::new("stanza-id", ns::STANZA_ID)
                .with_attr(
                    "id",
                    corvid_store::archive_id(ctx.server.store.next_archive_seq()),
                )
                .with_attr("by", by),
        );
        Flow::Continue
    }
}
