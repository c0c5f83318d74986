//! Room archives (XEP-0313 §5 "Querying a MUC archive"): the MUC module hands over each
//! groupchat message with a body that a room archiving it reflects, and the MAM requests
//! addressed to a room once it has checked the requester may read its archive.
//!
//! A room's archive is keyed by the room's bare JID; an entry's id is the XEP-0359
//! stanza-id the room stamped on the message (what every occupant saw), `with` the
//! sender's occupant JID; the stored message carries the sender's real JID, shown only to
//! those who may see it. Destroying a room removes its archive, so a room created later
//! under the same name starts empty.

use corvid_proto::{BareJid, FullJid, Iq, IqType, StanzaError, ns};
use corvid_store::{Archive as _, ArchiveEntry};
use corvid_xml::Element;

use super::upkeep::{self, QuotaCounter};
use crate::config::Config;
use crate::module::{Ctx, IqResult};

#[derive(Default)]
pub struct RoomArchive {
    quota: QuotaCounter,
}

impl RoomArchive {
    /// Whether the service archives at all (the `mam` module is enabled).
    pub fn enabled(config: &Config) -> bool {
        !config.modules.disabled.iter().any(|m| m == "mam")
    }

    /// Archives a message as the room reflected it (its `from` the sender's occupant JID).
    pub async fn append(&self, ctx: &Ctx, room: &BareJid, reflected: &Element) {
        if !Self::enabled(&ctx.server.config) {
            return;
        }
        let Some(seq) = reflected
            .children()
            .find(|c| c.is("stanza-id", ns::STANZA_ID) && c.attr("by") == Some(room.as_str()))
            .and_then(|c| c.attr("id"))
            .and_then(corvid_store::parse_archive_id)
        else {
            return;
        };
        let entry = ArchiveEntry {
            archive: room.to_string(),
            seq,
            with_bare: room.to_string(),
            with_full: reflected.attr("from").unwrap_or(room.as_str()).to_string(),
            stanza: String::from_utf8_lossy(&reflected.to_bytes(ns::CLIENT)).into_owned(),
        };
        upkeep::append(ctx, &self.quota, entry).await;
    }

    /// A MAM request to the room, from someone allowed to read its archive; `real_jids`
    /// when the requester may see the senders' real JIDs.
    pub async fn handle_iq(
        &self,
        ctx: &Ctx,
        room: &BareJid,
        requester: &FullJid,
        real_jids: bool,
        iq: &Iq,
    ) -> IqResult {
        match (iq.kind, iq.payload.name()) {
            (IqType::Get, "query") => Ok(Some(super::query::fields_form())),
            (IqType::Set, "query") => {
                let reader = super::query::Reader::RoomVisitor { real_jids };
                super::query::run(ctx, room.as_str(), requester, reader, &iq.payload).await
            }
            (IqType::Get, "metadata") => super::query::metadata(ctx, room.as_str()).await,
            _ => Err(StanzaError::feature_not_implemented()
                .with_text("rooms answer archive queries and metadata only")),
        }
    }

    /// The room is gone: so is its archive (removed in the background).
    pub fn forget(ctx: &Ctx, room: &BareJid) {
        let (server, room) = (ctx.server.clone(), room.to_string());
        tokio::spawn(async move {
            if let Err(e) = server.store.remove_archive(&room, None).await {
                tracing::warn!(error = %e, %room, "mam: cannot remove a destroyed room's archive");
            }
        });
    }
}
