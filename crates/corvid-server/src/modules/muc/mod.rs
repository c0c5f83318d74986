//! XEP-0045 Multi-User Chat: a service on a domain of its own (`[muc] domain`, by default
//! `conference.<first domain>`). The router hands this module every stanza addressed
//! there; this file sorts them by address and kind and hands each to the file that owns
//! the use case:
//!
//! - `occupant.rs`: presence to `room@service/nick` (enter, update, nick change, leave);
//! - `message.rs`: groupchat, subject, private messages, invitations; `voice.rs`: voice requests;
//! - `admin.rs`: `muc#admin` roles and affiliations; `owner.rs`: `muc#owner` config, destroy;
//! - `disco.rs`: service discovery; `room.rs`, `history.rs`, `roomconfig.rs`: the state;
//! - `persist.rs`: persistent rooms, loaded from the store on the service's first stanza;
//! - `archive.rs`: the room's message archive (XEP-0313) as the service sees it;
//! - `occupant_id.rs`: XEP-0421 occupant ids.
//!
//! Rooms live in a sharded map, each behind its own mutex that is held only for the
//! synchronous handling of one stanza (never across an `.await`). A nick belongs to one
//! user; the resources of that user may share it (multi-session nicks, §7.2.9), anyone
//! else asking for it gets `conflict`.

mod admin;
mod archive;
mod disco;
#[cfg(test)]
pub(crate) mod form_registry;
mod history;
mod iq;
mod message;
mod occupant;
mod occupant_id;
mod owner;
mod persist;
mod room;
mod roomconfig;
#[cfg(test)]
mod testing;
mod voice;

use corvid_proto::Bare;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use corvid_proto::{BareJid, FullJid, Iq, IqType, Jid, StanzaError, StanzaKind, ns};
use corvid_xml::Element;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::config::Config;
use crate::module::{Ctx, Module, RoomService, RoomSummary, SessionEvent};
use crate::modules::mam::muc::RoomArchive;
use crate::server::Server;
use corvid_store::MucRooms;
use occupant::Join;
use room::Room;
use roomconfig::{Caps, RoomConfig};

/// Longest room name (the JID localpart) accepted, in bytes.
pub const MAX_ROOM_NAME_BYTES: usize = 256;

type RoomRef = Arc<Mutex<Room>>;

#[derive(Default)]
pub struct Muc {
    rooms: DashMap<BareJid, RoomRef>,
    /// How many existing rooms each user created (`[muc] max_rooms_per_user`).
    created_by: DashMap<BareJid, usize>,
    /// The rooms each session is in, to leave them when it closes.
    joined: DashMap<FullJid, Vec<BareJid>>,
    /// Persistent rooms (and the occupant-id secret) are loaded once, before the first
    /// stanza is handled.
    loaded: tokio::sync::OnceCell<()>,
    occupant_id_secret: std::sync::OnceLock<occupant_id::Secret>,
    /// IQs forwarded between occupants, waiting for their answers.
    iqs: iq::Forwarded,
    /// Room snapshots are taken and written one at a time, so the last write is the newest.
    save_order: tokio::sync::Mutex<()>,
    /// Room archives (XEP-0313), for rooms that enable archiving.
    archive: RoomArchive,
}

#[async_trait]
impl Module for Muc {
    fn name(&self) -> &'static str {
        "muc"
    }

    fn service_domains(&self, config: &Config) -> Vec<String> {
        vec![config.muc_domain()]
    }

    async fn handle_service_stanza(&self, ctx: &Ctx, stanza: Element) {
        self.dispatch(ctx, stanza).await;
    }

    async fn on_session(&self, ctx: &Ctx, event: &SessionEvent) {
        // In a cluster, rooms run here hear of occupants on other nodes leaving (`Gone`).
        if let SessionEvent::Closed { jid, .. } | SessionEvent::Gone { jid } = event {
            self.leave_all(ctx, jid);
            if let Some(cluster) = ctx.server.cluster.get() {
                cluster.session_ended(jid);
            }
        }
    }

    fn room_service(&self) -> Option<&dyn RoomService> {
        Some(self)
    }
}

#[async_trait]
impl RoomService for Muc {
    async fn list_rooms(&self, ctx: &Ctx) -> Vec<RoomSummary> {
        self.loaded.get_or_init(|| self.load(ctx)).await;
        let rooms: Vec<RoomRef> = self.rooms.iter().map(|e| e.value().clone()).collect();
        let mut list: Vec<RoomSummary> = rooms
            .iter()
            .map(|r| {
                let room = lock(r);
                RoomSummary {
                    jid: room.jid.clone(),
                    name: room.config.name.clone(),
                    occupants: room.occupant_count(),
                    persistent: room.config.persistent,
                    public: room.config.public,
                }
            })
            .collect();
        list.sort_by(|a, b| a.jid.as_str().cmp(b.jid.as_str()));
        list
    }

    async fn destroy_room(&self, ctx: &Ctx, jid: &BareJid, reason: Option<&str>) -> bool {
        self.loaded.get_or_init(|| self.load(ctx)).await;
        let Some(room_ref) = self.room(jid) else {
            return false;
        };
        // §10.9, as if an owner had asked, with the operator's reason.
        let mut request = Element::new("destroy", ns::MUC_OWNER);
        if let Some(reason) = reason {
            request.append_child(Element::new("reason", ns::MUC_OWNER).with_text(reason));
        }
        {
            let mut room = lock(&room_ref);
            if room.destroyed {
                return false;
            }
            owner::destroy_room(&mut room, &request, &mut deliver(&ctx.server));
            self.forget_if_abandoned(ctx, room, &room_ref);
        }
        self.persist(ctx, &room_ref).await;
        true
    }
}

fn lock(room: &RoomRef) -> MutexGuard<'_, Room> {
    room.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends straight to an occupant: its session when it is a local user, else through its
/// server (federation) or component, in order.
fn deliver(server: &Arc<Server>) -> impl FnMut(&FullJid, Bytes) + '_ {
    move |to, bytes| {
        let _ = crate::router::deliver_to_full(server, to, &bytes);
    }
}

fn caps(config: &Config) -> Caps {
    Caps {
        max_history: config.muc.max_history,
        max_occupants: config.muc.max_occupants,
    }
}

async fn bounce(ctx: &Ctx, stanza: &Element, err: StanzaError) {
    crate::router::bounce(&ctx.server, stanza, err).await;
}

impl Muc {
    async fn dispatch(&self, ctx: &Ctx, stanza: Element) {
        self.loaded.get_or_init(|| self.load(ctx)).await;
        let Some(kind) = StanzaKind::of(&stanza, ns::CLIENT) else {
            return;
        };
        // Occupants are sessions: the stream layer stamped a full JID.
        let Some(Ok(from)) = stanza.attr("from").map(FullJid::new) else {
            return bounce(ctx, &stanza, StanzaError::not_acceptable()).await;
        };
        let Some(Ok(to)) = stanza.attr("to").map(Jid::new) else {
            return;
        };
        let room_jid = to.bare();
        match (room_jid.node(), to.resource(), kind) {
            (None, _, StanzaKind::Iq) => self.service_iq(ctx, &stanza, from, to).await,
            (None, _, StanzaKind::Message) => {
                bounce(
                    ctx,
                    &stanza,
                    StanzaError::service_unavailable()
                        .with_text("the service takes no messages itself"),
                )
                .await
            }
            (None, _, StanzaKind::Presence) => {}
            (Some(node), _, _) if node.as_str().len() > MAX_ROOM_NAME_BYTES => {
                bounce(
                    ctx,
                    &stanza,
                    StanzaError::not_acceptable().with_text("room name too long"),
                )
                .await
            }
            // §7.2.1: entering needs a nick.
            (Some(_), None, StanzaKind::Presence) => match stanza.attr("type") {
                None => {
                    bounce(
                        ctx,
                        &stanza,
                        StanzaError::jid_malformed().with_text("a nick is required"),
                    )
                    .await
                }
                // §7.14 addresses the exit to the occupant JID; clients such as aioxmpp
                // send it to the room's bare JID, which can only mean leaving too.
                Some("unavailable") => self.leave(ctx, &room_jid, &from, Some(&stanza)),
                Some(_) => {}
            },
            (Some(_), None, StanzaKind::Message) => {
                self.room_message(ctx, &stanza, from, room_jid).await
            }
            (Some(_), None, StanzaKind::Iq) => self.room_iq(ctx, &stanza, from, to).await,
            (Some(_), Some(nick), StanzaKind::Presence) => {
                let nick = nick.as_str().to_string();
                self.occupant_presence(ctx, &stanza, from, room_jid, nick)
                    .await
            }
            (Some(_), Some(nick), StanzaKind::Message) => {
                let nick = nick.as_str().to_string();
                self.private_message(ctx, &stanza, from, room_jid, &nick)
                    .await
            }
            (Some(_), Some(_), StanzaKind::Iq) => self.occupant_iq(ctx, &stanza, from, to).await,
        }
    }

    /// Loads the persistent rooms of the service.
    async fn load(&self, ctx: &Ctx) {
        let _ = self
            .occupant_id_secret
            .set(occupant_id::load_secret(&ctx.server.config.data_dir).await);
        let service = ctx.server.config.muc_domain();
        let stored = match ctx.server.store.muc_rooms(&service).await {
            Ok(rooms) => rooms,
            Err(e) => return tracing::error!(error = %e, "muc: cannot load the persistent rooms"),
        };
        for row in &stored {
            let Some(room) = persist::restore(row, caps(&ctx.server.config)) else {
                tracing::warn!(room = %row.name, "muc: a stored room could not be read; skipped");
                continue;
            };
            *self.created_by.entry(room.creator.clone()).or_insert(0) += 1;
            self.rooms
                .insert(room.jid.clone(), Arc::new(Mutex::new(room)));
        }
        tracing::info!(rooms = stored.len(), %service, "muc: persistent rooms loaded");
    }

    /// Brings the store in line with a room after a change: saved while persistent,
    /// deleted once destroyed or made temporary.
    async fn persist(&self, ctx: &Ctx, room_ref: &RoomRef) {
        let _order = self.save_order.lock().await;
        let (save, jid) = {
            let mut room = lock(room_ref);
            let keep = room.config.persistent && !room.destroyed;
            if !keep && !room.stored {
                return;
            }
            room.stored = keep;
            (keep.then(|| persist::snapshot(&room)), room.jid.clone())
        };
        let result = match save {
            Some(snapshot) => ctx.server.store.save_muc_room(&snapshot).await,
            None => {
                let name = jid.node().map(|n| n.as_str()).unwrap_or_default();
                ctx.server
                    .store
                    .delete_muc_room(jid.domain().as_str(), name)
                    .await
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, room = %jid, "muc: cannot store the room");
        }
    }

    fn room(&self, jid: &BareJid) -> Option<RoomRef> {
        self.rooms.get(jid).map(|r| r.clone())
    }

    /// The room, created (locked, §10.1.1) for `creator` when it does not exist yet.
    fn room_or_create(
        &self,
        ctx: &Ctx,
        jid: &BareJid,
        creator: &BareJid,
    ) -> Result<(RoomRef, bool), StanzaError> {
        let config = &ctx.server.config.muc;
        if let Some(room) = self.room(jid) {
            return Ok((room, false));
        }
        if self.rooms.len() >= config.max_rooms {
            return Err(
                StanzaError::resource_constraint().with_text("too many rooms on this service")
            );
        }
        match self.rooms.entry(jid.clone()) {
            Entry::Occupied(e) => Ok((e.get().clone(), false)),
            Entry::Vacant(e) => {
                let mut count = self.created_by.entry(creator.clone()).or_insert(0);
                if *count >= config.max_rooms_per_user {
                    return Err(
                        StanzaError::not_allowed().with_text("you have created too many rooms")
                    );
                }
                *count += 1;
                drop(count);
                let mut config = RoomConfig::new(caps(&ctx.server.config));
                config.archiving = RoomArchive::enabled(&ctx.server.config);
                let room = Room::new(jid.clone(), creator.clone(), config);
                let room = Arc::new(Mutex::new(room));
                e.insert(room.clone());
                Ok((room, true))
            }
        }
    }

    /// Forgets a room that was destroyed, or is temporary and empty (§7.14: the last
    /// occupant left; or a kick or ban by an owner outside emptied it).
    fn forget_if_abandoned(&self, ctx: &Ctx, mut room: MutexGuard<'_, Room>, room_ref: &RoomRef) {
        if !room.destroyed && (room.occupant_count() > 0 || room.config.persistent) {
            return;
        }
        room.destroyed = true;
        let (jid, creator) = (room.jid.clone(), room.creator.clone());
        drop(room);
        self.remove_room(ctx, &jid, room_ref, &creator);
    }

    /// Forgets a destroyed room (unless it was replaced meanwhile), and its archive.
    fn remove_room(&self, ctx: &Ctx, jid: &BareJid, room: &RoomRef, creator: &BareJid) {
        if self
            .rooms
            .remove_if(jid, |_, r| Arc::ptr_eq(r, room))
            .is_some()
        {
            self.created_by.remove_if_mut(creator, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
            RoomArchive::forget(ctx, jid);
        }
    }

    /// Presence to `room@service/nick` (§7.2, §7.3, §7.6, §7.14).
    async fn occupant_presence(
        &self,
        ctx: &Ctx,
        stanza: &Element,
        from: FullJid,
        room_jid: BareJid,
        nick: String,
    ) {
        match stanza.attr("type") {
            None => {
                self.restore_history(ctx, &room_jid).await;
                if let Err(err) = self.available(ctx, stanza, &from, &room_jid, nick) {
                    bounce(ctx, stanza, err).await;
                }
            }
            // An error from the occupant's client means it is gone (§7.14 in effect).
            Some("unavailable") | Some("error") => self.leave(ctx, &room_jid, &from, Some(stanza)),
            Some(_) => {}
        }
    }

    fn available(
        &self,
        ctx: &Ctx,
        stanza: &Element,
        from: &FullJid,
        room_jid: &BareJid,
        nick: String,
    ) -> Result<(), StanzaError> {
        occupant::validate_nick(&nick)?;
        let server = &ctx.server;
        let payload = occupant::checked_payload(stanza)?;
        // A room destroyed while we waited for its lock is retried once, as a new room.
        for _ in 0..2 {
            let (room_ref, created) = self.room_or_create(ctx, room_jid, &from.bare())?;
            let mut room = lock(&room_ref);
            if room.destroyed {
                continue;
            }
            let mut out = deliver(server);
            let join_el = stanza.get_child("x", ns::MUC);
            if let Some(current) = room.occupant_by_jid(from).map(|o| o.nick.clone()) {
                return match (current == nick, join_el) {
                    (true, None) => {
                        occupant::update_presence(&mut room, &nick, payload, &mut out);
                        Ok(())
                    }
                    (true, Some(x)) => {
                        let history = history::Request::parse(Some(x));
                        occupant::rejoin(
                            &mut room,
                            &nick,
                            from,
                            payload,
                            &history,
                            SystemTime::now(),
                            &mut out,
                        );
                        Ok(())
                    }
                    (false, _) => {
                        occupant::change_nick(&mut room, &current, nick, payload, &mut out)
                    }
                };
            }
            let join = Join {
                nick,
                jid: from.clone(),
                presence: payload,
                password: join_el
                    .and_then(|x| x.get_child("password", ns::MUC))
                    .map(Element::text),
                history: history::Request::parse(join_el),
                created,
                occupant_id: occupant_id::of(
                    self.occupant_id_secret.get().unwrap_or(&[0; 32]),
                    room_jid,
                    &from.bare(),
                ),
            };
            let result = occupant::enter(
                &mut room,
                join,
                server.config.muc.max_occupants,
                SystemTime::now(),
                &mut out,
            );
            if result.is_err() && created {
                room.destroyed = true;
                let creator = room.creator.clone();
                drop(room);
                self.remove_room(ctx, room_jid, &room_ref, &creator);
            } else if result.is_ok() {
                drop(room);
                let mut rooms = self.joined.entry(from.clone()).or_default();
                if !rooms.contains(room_jid) {
                    rooms.push(room_jid.clone());
                }
            }
            return result;
        }
        Err(StanzaError::resource_constraint())
    }

    /// §7.14: `from` leaves the room (whatever nick it addressed); an empty temporary
    /// room is destroyed.
    fn leave(&self, ctx: &Ctx, room_jid: &BareJid, from: &FullJid, stanza: Option<&Element>) {
        let Some(room_ref) = self.room(room_jid) else {
            return;
        };
        let mut room = lock(&room_ref);
        let Some(nick) = room.occupant_by_jid(from).map(|o| o.nick.clone()) else {
            return;
        };
        let status = stanza.filter(|s| s.attr("type") == Some("unavailable"));
        occupant::leave(&mut room, &nick, from, status, &mut deliver(&ctx.server));
        self.forget_if_abandoned(ctx, room, &room_ref);
        self.joined.remove_if_mut(from, |_, rooms| {
            rooms.retain(|r| r != room_jid);
            rooms.is_empty()
        });
    }

    /// A closed session leaves every room it was in (§7.14; usually the presence module
    /// already did so with the unavailable presence it sends at logout).
    fn leave_all(&self, ctx: &Ctx, jid: &FullJid) {
        let Some((_, rooms)) = self.joined.remove(jid) else {
            return;
        };
        for room_jid in rooms {
            self.leave(ctx, &room_jid, jid, None);
        }
    }

    /// A message to the room itself: groupchat (§7.4, §8.1), invitations (§7.8.2) or
    /// voice requests (§7.13).
    async fn room_message(&self, ctx: &Ctx, stanza: &Element, from: FullJid, room_jid: BareJid) {
        let Some(room_ref) = self.room(&room_jid) else {
            return bounce(
                ctx,
                stanza,
                StanzaError::item_not_found().with_text("no such room"),
            )
            .await;
        };
        let result = match stanza.attr("type") {
            Some("error") => return,
            Some("groupchat") => {
                let seq = corvid_store::Archive::next_archive_seq(&ctx.server.store);
                let stanza_id = corvid_store::archive_id(seq);
                let archived = message::groupchat(
                    &mut lock(&room_ref),
                    &from,
                    stanza,
                    (SystemTime::now(), &stanza_id),
                    &mut deliver(&ctx.server),
                );
                match archived {
                    Ok(Some(reflected)) => {
                        self.archive.append(ctx, &room_jid, &reflected).await;
                        Ok(Vec::new())
                    }
                    Ok(None) => Ok(Vec::new()),
                    Err(err) => Err(err),
                }
            }
            _ => match (
                stanza.get_child("x", ns::MUC_USER),
                voice::request_form(stanza),
            ) {
                (Some(x), _) if x.has_child("invite", ns::MUC_USER) => {
                    message::invitations(&mut lock(&room_ref), &from, x)
                }
                (Some(x), _) if x.has_child("decline", ns::MUC_USER) => {
                    Ok(decline(&room_jid, &from, x).into_iter().collect())
                }
                (_, Some(form)) => {
                    voice::handle(&mut lock(&room_ref), &from, form, &mut deliver(&ctx.server))
                        .map(|_| Vec::new())
                }
                _ => Err(StanzaError::bad_request()),
            },
        };
        match result {
            Ok(to_route) => {
                // A new subject, or members added by invitation, are kept with the room.
                if !to_route.is_empty() || stanza.has_child("subject", ns::CLIENT) {
                    self.persist(ctx, &room_ref).await;
                }
                for stanza in to_route {
                    ctx.route(stanza).await;
                }
            }
            Err(err) => bounce(ctx, stanza, err).await,
        }
    }

    /// §7.5: a private message to an occupant.
    async fn private_message(
        &self,
        ctx: &Ctx,
        stanza: &Element,
        from: FullJid,
        room_jid: BareJid,
        nick: &str,
    ) {
        if stanza.attr("type") == Some("error") {
            return;
        }
        let Some(room_ref) = self.room(&room_jid) else {
            return bounce(
                ctx,
                stanza,
                StanzaError::item_not_found().with_text("no such room"),
            )
            .await;
        };
        let result = message::private(
            &lock(&room_ref),
            &from,
            nick,
            stanza,
            &mut deliver(&ctx.server),
        );
        if let Err(err) = result {
            bounce(ctx, stanza, err).await;
        }
    }

    /// IQs to `room@service/nick`: a self-ping (XEP-0410) is answered here, other requests
    /// are forwarded to the occupant, and its answers back to whoever asked.
    async fn occupant_iq(&self, ctx: &Ctx, stanza: &Element, from: FullJid, to: Jid) {
        let nick = to.resource().map(|r| r.as_str()).unwrap_or_default();
        let mut out = deliver(&ctx.server);
        let result = match (IqType::parse(stanza.attr("type")), self.room(&to.bare())) {
            (Some(IqType::Result | IqType::Error), _) => {
                return self.iqs.answer(&from, stanza, &mut out);
            }
            (None, _) => return,
            (Some(_), None) => Err(StanzaError::item_not_found().with_text("no such occupant")),
            (Some(_), Some(room_ref)) => {
                let room = lock(&room_ref);
                let is_self = room.occupant_by_jid(&from).is_some_and(|o| o.nick == nick);
                if is_self && stanza.has_child("ping", ns::PING) {
                    Ok(true)
                } else {
                    self.iqs
                        .request(&room, &from, nick, stanza, &mut out)
                        .map(|_| false)
                }
            }
        };
        match result {
            Ok(true) => {
                if let Some(iq) = Iq::from_element(stanza, Jid::from(from), to) {
                    ctx.route(iq.result(None)).await;
                }
            }
            Ok(false) => {}
            Err(err) => bounce(ctx, stanza, err).await,
        }
    }

    /// IQs to the room: disco (§6.4), `muc#owner` (§10), `muc#admin` (§8, §9).
    async fn room_iq(&self, ctx: &Ctx, stanza: &Element, from: FullJid, to: Jid) {
        let Some(iq) = Iq::from_element(stanza, Jid::from(from.clone()), to.clone()) else {
            if IqType::parse(stanza.attr("type")).is_some_and(IqType::is_request) {
                bounce(ctx, stanza, StanzaError::bad_request()).await;
            }
            return;
        };
        let room_jid = to.bare();
        let room_ref = self.room(&room_jid);
        if iq.payload.ns() == ns::MAM {
            return self.archive_iq(ctx, &iq, &from, &room_jid, room_ref).await;
        }
        let result = match room_ref {
            None => Err(StanzaError::item_not_found().with_text("no such room")),
            Some(ref room_ref) => self.room_iq_locked(ctx, &iq, &from, room_ref),
        };
        if let (Some(room_ref), Ok(_), IqType::Set) = (&room_ref, &result, iq.kind) {
            self.persist(ctx, room_ref).await;
        }
        let reply = match result {
            Ok(payload) => iq.result(payload),
            Err(err) => iq.error(&err),
        };
        ctx.route(reply).await;
    }

    fn room_iq_locked(
        &self,
        ctx: &Ctx,
        iq: &Iq,
        from: &FullJid,
        room_ref: &RoomRef,
    ) -> Result<Option<Element>, StanzaError> {
        let mut room = lock(room_ref);
        let owner = room.affiliation(&from.bare()) == room::Affiliation::Owner;
        if room.destroyed || (room.locked && !owner) {
            return Err(StanzaError::item_not_found().with_text("no such room"));
        }
        let mut out = deliver(&ctx.server);
        match (iq.payload.ns(), iq.kind) {
            (ns::DISCO_INFO, IqType::Get) => {
                disco::check_query(&iq.payload).map(|_| Some(disco::room_info(&room)))
            }
            (ns::DISCO_ITEMS, IqType::Get) => {
                disco::check_query(&iq.payload).map(|_| Some(disco::room_items()))
            }
            (ns::PING, IqType::Get) => Ok(None),
            (ns::MUC_ADMIN, _) => {
                let result = admin::handle(&mut room, iq, &mut out)?;
                self.forget_if_abandoned(ctx, room, room_ref);
                Ok(result)
            }
            (ns::MUC_OWNER, _) => {
                match owner::handle(&mut room, iq, caps(&ctx.server.config), &mut out)? {
                    owner::Outcome::Done(payload) => Ok(payload),
                    // A room made temporary while empty is gone at once (§10.2 persistentroom).
                    owner::Outcome::Configured | owner::Outcome::Destroyed => {
                        self.forget_if_abandoned(ctx, room, room_ref);
                        Ok(None)
                    }
                }
            }
            _ => Err(StanzaError::service_unavailable()
                .with_text("the room does not answer that request")),
        }
    }

    /// IQs to the service itself: disco (§6.1, §6.3).
    async fn service_iq(&self, ctx: &Ctx, stanza: &Element, from: FullJid, to: Jid) {
        let Some(iq) = Iq::from_element(stanza, Jid::from(from), to) else {
            if IqType::parse(stanza.attr("type")).is_some_and(IqType::is_request) {
                bounce(ctx, stanza, StanzaError::bad_request()).await;
            }
            return;
        };
        let result = match (iq.payload.ns(), iq.kind) {
            (ns::DISCO_INFO, IqType::Get) => {
                disco::check_query(&iq.payload).map(|_| Some(disco::service_info()))
            }
            (ns::DISCO_ITEMS, IqType::Get) => {
                disco::check_query(&iq.payload).map(|_| Some(self.public_rooms()))
            }
            (ns::PING, IqType::Get) => Ok(None),
            _ => Err(StanzaError::service_unavailable()
                .with_text("the service does not answer that request")),
        };
        let reply = match result {
            Ok(payload) => iq.result(payload),
            Err(err) => iq.error(&err),
        };
        ctx.route(reply).await;
    }

    /// §6.3: the public, unlocked rooms, by JID.
    fn public_rooms(&self) -> Element {
        let rooms: Vec<RoomRef> = self.rooms.iter().map(|e| e.value().clone()).collect();
        let mut items: Vec<Element> = rooms
            .iter()
            .filter_map(|r| disco::service_item(&lock(r)))
            .collect();
        items.sort_by(|a, b| a.attr("jid").cmp(&b.attr("jid")));
        let mut query = Element::new("query", ns::DISCO_ITEMS);
        for item in items {
            query.append_child(item);
        }
        query
    }
}

/// §7.8.2: a decline goes back to the inviter, from the room, naming who declined.
fn decline(room_jid: &BareJid, from: &FullJid, x: &Element) -> Option<Element> {
    let decline = x.get_child("decline", ns::MUC_USER)?;
    let inviter = Jid::new(decline.attr("to")?).ok()?;
    let mut body = Element::new("decline", ns::MUC_USER).with_attr("from", from.bare().as_str());
    if let Some(reason) = decline.get_child("reason", ns::MUC_USER) {
        body.append_child(reason.clone());
    }
    Some(
        Element::new("message", ns::CLIENT)
            .with_attr("from", room_jid.as_str())
            .with_attr("to", inviter.as_str())
            .with_child(Element::new("x", ns::MUC_USER).with_child(body)),
    )
}
