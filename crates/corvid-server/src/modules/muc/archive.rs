//! A room's message archive (XEP-0313 §5) as the service sees it: who may query it, the
//! queries handed to the MAM module, and the discussion history read back from it when a
//! persistent room comes back after a restart (XEP-0045 §7.2.15 history then survives).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corvid_proto::{Bare, BareJid, FullJid, Iq, StanzaError, ns};
use corvid_store::{Archive as _, ArchiveQuery};

use super::room::{Affiliation, Room};
use super::{Muc, RoomRef, lock};
use crate::config::Config;
use crate::module::Ctx;
use crate::modules::mam::muc::RoomArchive;

impl Muc {
    /// XEP-0313 requests to a room: answered from its archive, for those who may read it.
    pub(super) async fn archive_iq(
        &self,
        ctx: &Ctx,
        iq: &Iq,
        from: &FullJid,
        room_jid: &BareJid,
        room_ref: Option<RoomRef>,
    ) {
        let allowed = match room_ref {
            None => Err(StanzaError::item_not_found().with_text("no such room")),
            Some(room_ref) => may_read_archive(&lock(&room_ref), from, &ctx.server.config),
        };
        let result = match allowed {
            Ok(real_jids) => {
                self.archive
                    .handle_iq(ctx, room_jid, from, real_jids, iq)
                    .await
            }
            Err(err) => Err(err),
        };
        let reply = match result {
            Ok(payload) => iq.result(payload),
            Err(err) => iq.error(&err),
        };
        ctx.route(reply).await;
    }

    /// Before the first entry into a room restored after a restart: its last messages, as
    /// many as its history keeps, come back from the archive.
    pub(super) async fn restore_history(&self, ctx: &Ctx, room_jid: &BareJid) {
        let Some(room_ref) = self.room(room_jid) else {
            return;
        };
        let capacity = {
            let mut room = lock(&room_ref);
            if !std::mem::take(&mut room.history_in_archive) {
                return;
            }
            room.config.history_length
        };
        let query = ArchiveQuery {
            max: capacity,
            from_end: true,
            ..ArchiveQuery::default()
        };
        let page = match ctx
            .server
            .store
            .query_archive(room_jid.as_str(), &query)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                return tracing::warn!(error = %e, room = %room_jid, "muc: cannot read the history back from the archive");
            }
        };
        let older = page
            .messages
            .iter()
            .filter_map(|m| {
                let mut message = corvid_xml::parse_element(&m.stanza, ns::CLIENT).ok()?;
                // History is what the room reflected: messages with a body, no real JIDs.
                if !message.has_child("body", ns::CLIENT) {
                    return None;
                }
                message.remove_children(|c| c.is("x", ns::MUC_USER));
                let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(m.stamp_ms).ok()?);
                Some((message, at.min(SystemTime::now())))
            })
            .collect();
        lock(&room_ref).history.prepend_older(older, capacity);
    }
}

/// Who may read a room's archive (XEP-0313 §7.1.2): anyone may read an open room's, only
/// occupants and members a members-only room's; outcasts never. `Ok(true)` when the reader
/// may also see the senders' real JIDs (a non-anonymous room, or a moderator in it).
fn may_read_archive(room: &Room, from: &FullJid, config: &Config) -> Result<bool, StanzaError> {
    let affiliation = room.affiliation(&from.bare());
    if room.destroyed || (room.locked && affiliation != Affiliation::Owner) {
        return Err(StanzaError::item_not_found().with_text("no such room"));
    }
    if !room.config.archiving || !RoomArchive::enabled(config) {
        return Err(StanzaError::service_unavailable().with_text("this room keeps no archive"));
    }
    let occupant = room.occupant_by_jid(from);
    if affiliation == Affiliation::Outcast
        || (room.config.members_only && affiliation < Affiliation::Member && occupant.is_none())
    {
        return Err(StanzaError::forbidden().with_text("only members may read this room's archive"));
    }
    Ok(room.config.whois_anyone || occupant.is_some_and(|o| room.shows_jids_to(o)))
}
