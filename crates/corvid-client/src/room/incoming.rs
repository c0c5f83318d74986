//! What the rooms receive: the MUC module's [`StanzaHandler`] sorts incoming stanzas by the
//! bare room JID they come from and each room turns its presences and messages into state
//! (the occupant map, joined or not, the subject) and [`RoomEvent`]s. Invitations, which
//! come whether or not we are in the room, become [`MucEvent`]s.
//!
//! All of it runs on the stream task, so it only takes short locks and sends on unbounded
//! channels; whoever waits (a join, a leave, a nick change) waits on a oneshot of its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, Weak};

use corvid_proto::{BareJid, FullJid, Jid, ns};
use corvid_xml::Element;
use tokio::sync::{mpsc, oneshot};

use super::model::{
    Affiliation, Invitation, JoinOptions, LeaveReason, MucEvent, Occupant, Role, RoomError,
    RoomEvent, RoomMessage,
};
use crate::client::{Handled, StanzaHandler};
use crate::error::stanza_error_condition;

/// XEP-0045 §15.6 status codes the rooms act on.
pub(super) mod status {
    pub const SELF: u16 = 110;
    pub const CREATED: u16 = 201;
    pub const NEW_NICK: u16 = 303;
    pub const BANNED: u16 = 301;
    pub const KICKED: u16 = 307;
    pub const AFFILIATION_CHANGED: u16 = 321;
    pub const MEMBERS_ONLY: u16 = 322;
    pub const SHUTDOWN: u16 = 332;
    pub const ERROR: u16 = 333;
}

/// Joining, as a oneshot answered by the self-presence or an error presence.
pub(super) type JoinWaiter = oneshot::Sender<Result<(String, bool), RoomError>>;

/// One room's state, shared by its [`super::Room`] and the handler.
#[derive(Debug)]
pub(super) struct Core {
    pub jid: BareJid,
    pub state: Mutex<State>,
    pub events: mpsc::UnboundedSender<RoomEvent>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// Our nick: the one asked for until the room says otherwise.
    pub nick: String,
    pub joined: bool,
    /// Joining again after a self-ping found us out: no `Joined` event, and occupants not
    /// seen again by the self-presence are gone.
    pub rejoining: bool,
    pub options: JoinOptions,
    pub join: Option<JoinWaiter>,
    pub leave: Option<oneshot::Sender<()>>,
    /// A nick change of ours under way: the nick asked for, and who waits.
    pub renaming: Option<(String, oneshot::Sender<Result<(), RoomError>>)>,
    pub occupants: BTreeMap<String, Occupant>,
    /// Occupants that left with 303: their new nick → who they were.
    pub renamed: HashMap<String, Occupant>,
    /// Nicks presented while (re)joining.
    pub seen: HashSet<String>,
    pub subject: Option<String>,
    /// When the newest room message we saw was sent: joining again asks for the history
    /// from then on, not the whole history again.
    pub last_message: Option<std::time::SystemTime>,
    /// The room's stanza-ids of the newest messages seen, so history that overlaps what
    /// we saw (a rejoin's `since` is to the second) is not delivered twice.
    pub recent: RecentIds,
}

/// The newest few room stanza-ids seen.
#[derive(Debug, Default)]
pub(super) struct RecentIds {
    order: std::collections::VecDeque<String>,
    ids: HashSet<String>,
}

/// How many room message ids a room remembers.
const RECENT: usize = 256;

impl RecentIds {
    /// Records `id`; false if it was seen already.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == RECENT
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.ids.insert(id.to_owned());
        true
    }
}

impl Core {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn emit(&self, event: RoomEvent) {
        let _ = self.events.send(event);
    }

    /// A presence from `room/nick` (or the room itself, for errors).
    pub fn presence(&self, presence: &Element, nick: Option<&str>) {
        match presence.attr("type") {
            Some("error") => self.presence_error(presence),
            Some("unavailable") => {
                if let Some(nick) = nick {
                    self.unavailable(presence, nick);
                }
            }
            None => {
                if let Some(nick) = nick {
                    self.available(presence, nick);
                }
            }
            Some(_) => {}
        }
    }

    /// §7.2: an entering refused; or a nick change (§7.6.3) refused.
    fn presence_error(&self, presence: &Element) {
        let error = RoomError::from_condition(&stanza_error_condition(presence));
        let mut state = self.state();
        if let Some(waiter) = state.join.take() {
            state.rejoining = false;
            let _ = waiter.send(Err(error));
        } else if let Some((_, waiter)) = state.renaming.take() {
            let _ = waiter.send(Err(error));
        }
    }

    fn available(&self, presence: &Element, nick: &str) {
        let x = presence.get_child("x", ns::MUC_USER);
        let codes = x.map(codes).unwrap_or_default();
        let occupant = occupant_of(nick, presence);
        let mut state = self.state();
        // §7.2.2: the self-presence carries 110 (and §7.2.12: its nick may not be ours).
        let is_self = codes.contains(&status::SELF);
        state.seen.insert(nick.to_owned());
        if is_self {
            let old_nick = std::mem::replace(&mut state.nick, nick.to_owned());
            if let Some(renamed) = state.renamed.remove(nick) {
                state.occupants.insert(nick.to_owned(), occupant.clone());
                if let Some((_, waiter)) = state.renaming.take() {
                    let _ = waiter.send(Ok(()));
                }
                drop(state);
                return self.emit(RoomEvent::NickChanged {
                    old: renamed.nick,
                    occupant,
                });
            }
            // Entering, or a join sent again while in (the room answers it like one).
            let entering = !state.joined || state.join.is_some();
            let before = state.occupants.insert(nick.to_owned(), occupant.clone());
            if !entering {
                drop(state);
                if let Some(before) = before.filter(|b| *b != occupant) {
                    self.emit(RoomEvent::OccupantChanged {
                        before,
                        now: occupant,
                    });
                }
                return;
            }
            if old_nick != nick {
                state.occupants.remove(&old_nick);
            }
            let gone = self.entered(&mut state, codes.contains(&status::CREATED));
            drop(state);
            for occupant in gone {
                self.emit(RoomEvent::OccupantLeft {
                    occupant,
                    reason: LeaveReason::Left { status: None },
                });
            }
            return;
        }
        if let Some(renamed) = state.renamed.remove(nick) {
            state.occupants.insert(nick.to_owned(), occupant.clone());
            drop(state);
            return self.emit(RoomEvent::NickChanged {
                old: renamed.nick,
                occupant,
            });
        }
        let before = state.occupants.insert(nick.to_owned(), occupant.clone());
        drop(state);
        match before {
            None => self.emit(RoomEvent::OccupantJoined(occupant)),
            Some(before) if before != occupant => self.emit(RoomEvent::OccupantChanged {
                before,
                now: occupant,
            }),
            Some(_) => {}
        }
    }

    /// Our self-presence arrived: we are in. Returns the occupants that were there before
    /// a rejoin and are no more.
    fn entered(&self, state: &mut State, created: bool) -> Vec<Occupant> {
        state.joined = true;
        let nick = state.nick.clone();
        let mut gone = Vec::new();
        if state.rejoining {
            let seen = std::mem::take(&mut state.seen);
            let missing: Vec<String> = state
                .occupants
                .keys()
                .filter(|n| !seen.contains(*n))
                .cloned()
                .collect();
            for n in missing {
                gone.extend(state.occupants.remove(&n));
            }
        } else {
            self.emit(RoomEvent::Joined {
                nick: nick.clone(),
                created,
            });
        }
        state.seen.clear();
        state.rejoining = false;
        if let Some(waiter) = state.join.take() {
            let _ = waiter.send(Ok((nick, created)));
        }
        gone
    }

    fn unavailable(&self, presence: &Element, nick: &str) {
        let x = presence.get_child("x", ns::MUC_USER);
        let codes = x.map(codes).unwrap_or_default();
        let mut state = self.state();
        let occupant = state
            .occupants
            .remove(nick)
            .unwrap_or_else(|| occupant_of(nick, presence));
        let is_self = codes.contains(&status::SELF) || (state.joined && nick == state.nick);
        // §7.6: a nick change is an unavailable with 303 and the new nick.
        let new_nick = x
            .and_then(|x| x.get_child("item", ns::MUC_USER))
            .and_then(|item| item.attr("nick"));
        if let (true, Some(new_nick)) = (codes.contains(&status::NEW_NICK), new_nick) {
            if is_self {
                state.nick = new_nick.to_owned();
            }
            state.renamed.insert(new_nick.to_owned(), occupant);
            return;
        }
        let reason = leave_reason(presence, &codes);
        if !is_self {
            drop(state);
            return self.emit(RoomEvent::OccupantLeft { occupant, reason });
        }
        let was_joined = std::mem::replace(&mut state.joined, false);
        state.occupants.clear();
        state.renamed.clear();
        if let Some(waiter) = state.leave.take() {
            let _ = waiter.send(());
        }
        drop(state);
        if was_joined {
            self.emit(RoomEvent::Left(reason));
        }
    }

    /// A message from the room or one of its occupants; whether it was the room's (a
    /// message from the room that is none of these, an archive result say, is left to
    /// other modules).
    pub fn message(&self, message: &Element, nick: Option<&str>) -> bool {
        let event = match (message.attr("type"), nick) {
            (Some("error"), _) => RoomEvent::MessageError {
                id: message.attr("id").map(str::to_owned),
                condition: stanza_error_condition(message),
            },
            (Some("groupchat"), _) => {
                self.groupchat(message, nick);
                return true;
            }
            (_, Some(nick)) => RoomEvent::PrivateMessage {
                nick: nick.to_owned(),
                body: text_of(message, "body"),
                stanza: message.clone(),
            },
            (_, None) => {
                let codes = message
                    .get_child("x", ns::MUC_USER)
                    .map(codes)
                    .unwrap_or_default();
                if codes.is_empty() {
                    return false;
                }
                RoomEvent::Status { codes }
            }
        };
        self.emit(event);
        true
    }

    fn groupchat(&self, message: &Element, nick: Option<&str>) {
        let body = text_of(message, "body");
        // §8.1: a subject without a body is the subject (also sent on entering, §7.2.16).
        if let (Some(subject), None) = (message.get_child("subject", ns::CLIENT), &body) {
            let subject = subject.text();
            self.state().subject = Some(subject.clone());
            return self.emit(RoomEvent::Subject {
                subject,
                nick: nick.map(str::to_owned),
            });
        }
        if body.is_none() && nick.is_none() {
            let codes = message
                .get_child("x", ns::MUC_USER)
                .map(codes)
                .unwrap_or_default();
            return self.emit(RoomEvent::Status { codes });
        }
        let room = self.jid.as_str();
        let delayed = message
            .get_child("delay", ns::DELAY)
            .and_then(|d| d.attr("stamp"))
            .and_then(corvid_proto::time::parse_datetime);
        // XEP-0359 §3: only the room's own stanza-id is believed.
        let stanza_id = message
            .children()
            .find(|c| c.is("stanza-id", ns::STANZA_ID) && c.attr("by") == Some(room))
            .and_then(|c| c.attr("id"))
            .map(str::to_owned);
        let jid = {
            let mut state = self.state();
            if let Some(id) = &stanza_id
                && !state.recent.insert(id)
            {
                // History overlapping what we saw before rejoining.
                return;
            }
            let sent = delayed.unwrap_or_else(std::time::SystemTime::now);
            if state.last_message.is_none_or(|last| sent > last) {
                state.last_message = Some(sent);
            }
            nick.and_then(|n| state.occupants.get(n).and_then(|o| o.jid.clone()))
        };
        self.emit(RoomEvent::Message(RoomMessage {
            nick: nick.map(str::to_owned),
            jid,
            body,
            delayed,
            stanza_id,
            stanza: message.clone(),
        }));
    }
}

/// The MUC module's view of the stream: the open rooms by JID, and where invitations go.
#[derive(Debug)]
pub(super) struct Hook {
    pub rooms: Mutex<HashMap<BareJid, Weak<Core>>>,
    pub events: mpsc::UnboundedSender<MucEvent>,
    /// Told when the stream comes back with a new session: the rooms forgot us.
    pub restarts: mpsc::UnboundedSender<()>,
}

impl Hook {
    /// The rooms still open.
    pub fn open_rooms(&self) -> Vec<std::sync::Arc<Core>> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.values().filter_map(Weak::upgrade).collect()
    }

    fn room(&self, jid: &BareJid) -> Option<std::sync::Arc<Core>> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let core = rooms.get(jid).and_then(Weak::upgrade);
        if core.is_none() {
            rooms.remove(jid);
        }
        core
    }
}

impl StanzaHandler for Hook {
    /// A new session after a lost connection is in no room: the rooms we were in are
    /// joined again (by a task of the module's, as joining waits).
    fn restarted(&self, resumed: bool) {
        if !resumed {
            let _ = self.restarts.send(());
        }
    }

    fn handle(&self, stanza: &Element) -> Handled {
        let Some(from) = stanza.attr("from").and_then(|f| Jid::new(f).ok()) else {
            return Handled::No;
        };
        if stanza.name() == "message"
            && let Some(event) = invitation(stanza, &from)
        {
            let _ = self.events.send(event);
            return Handled::Yes;
        }
        if !matches!(stanza.name(), "presence" | "message") {
            return Handled::No;
        }
        let Some(core) = self.room(&from.to_bare()) else {
            return Handled::No;
        };
        let nick = from.resource().map(|r| r.as_str());
        let taken = if stanza.name() == "presence" {
            core.presence(stanza, nick);
            true
        } else {
            core.message(stanza, nick)
        };
        if taken { Handled::Yes } else { Handled::No }
    }
}

/// A mediated (XEP-0045 §7.8.2) or direct (XEP-0249) invitation, or a decline (§7.8.2).
/// The mediated form is read first: Prosody adds a `jabber:x:conference` element to the
/// invitations its rooms relay, for old clients, and the room's own says more.
fn invitation(message: &Element, from: &Jid) -> Option<MucEvent> {
    if message.attr("type") == Some("error") {
        return None;
    }
    if let Some(x) = message.get_child("x", ns::MUC_USER) {
        return mediated(x, from.to_bare());
    }
    let x = message.get_child("x", ns::MUC_DIRECT_INVITE)?;
    let room = BareJid::new(x.attr("jid")?).ok()?;
    Some(MucEvent::Invitation(Invitation {
        room,
        from: Some(from.clone()),
        reason: x.attr("reason").map(str::to_owned),
        password: x.attr("password").map(str::to_owned),
        direct: true,
    }))
}

/// A muc#user `<x/>` from the room `room`: an invitation, a decline, or neither.
fn mediated(x: &Element, room: BareJid) -> Option<MucEvent> {
    let party = |el: &Element, attr: &str| el.attr(attr).and_then(|j| Jid::new(j).ok());
    if let Some(invite) = x.get_child("invite", ns::MUC_USER) {
        return Some(MucEvent::Invitation(Invitation {
            room,
            from: party(invite, "from"),
            reason: text_of(invite, "reason"),
            password: x.get_child("password", ns::MUC_USER).map(Element::text),
            direct: false,
        }));
    }
    let decline = x.get_child("decline", ns::MUC_USER)?;
    Some(MucEvent::Declined {
        room,
        from: party(decline, "from"),
        reason: text_of(decline, "reason"),
    })
}

/// The text of a child `name` in the parent's namespace.
fn text_of(el: &Element, name: &str) -> Option<String> {
    el.get_child(name, el.ns()).map(Element::text)
}

/// The status codes of a muc#user `<x/>`.
pub(super) fn codes(x: &Element) -> Vec<u16> {
    x.children()
        .filter(|c| c.is("status", ns::MUC_USER))
        .filter_map(|c| c.attr("code")?.parse().ok())
        .collect()
}

/// The occupant an available presence from `nick` shows.
fn occupant_of(nick: &str, presence: &Element) -> Occupant {
    let item = presence
        .get_child("x", ns::MUC_USER)
        .and_then(|x| x.get_child("item", ns::MUC_USER));
    Occupant {
        nick: nick.to_owned(),
        role: Role::parse(item.and_then(|i| i.attr("role"))),
        affiliation: Affiliation::parse(item.and_then(|i| i.attr("affiliation"))),
        jid: item
            .and_then(|i| i.attr("jid"))
            .and_then(|j| FullJid::new(j).ok()),
        show: presence.get_child("show", ns::CLIENT).map(Element::text),
        status: presence.get_child("status", ns::CLIENT).map(Element::text),
    }
}

/// Why an unavailable presence took its occupant out (§15.6 codes; §10.9 destroy).
fn leave_reason(presence: &Element, codes: &[u16]) -> LeaveReason {
    let x = presence.get_child("x", ns::MUC_USER);
    if let Some(destroy) = x.and_then(|x| x.get_child("destroy", ns::MUC_USER)) {
        return LeaveReason::Destroyed {
            reason: text_of(destroy, "reason"),
            alternate: destroy.attr("jid").and_then(|j| BareJid::new(j).ok()),
        };
    }
    let item = x.and_then(|x| x.get_child("item", ns::MUC_USER));
    let actor = item
        .and_then(|i| i.get_child("actor", ns::MUC_USER))
        .and_then(|a| a.attr("nick").or(a.attr("jid")))
        .map(str::to_owned);
    let reason = item.and_then(|i| text_of(i, "reason"));
    let has = |code| codes.contains(&code);
    if has(status::BANNED) {
        LeaveReason::Banned { actor, reason }
    } else if has(status::KICKED) {
        LeaveReason::Kicked { actor, reason }
    } else if has(status::AFFILIATION_CHANGED) {
        LeaveReason::AffiliationChanged
    } else if has(status::MEMBERS_ONLY) {
        LeaveReason::MembersOnly
    } else if has(status::SHUTDOWN) {
        LeaveReason::Shutdown
    } else if has(status::ERROR) {
        LeaveReason::Error
    } else {
        LeaveReason::Left {
            status: presence.get_child("status", ns::CLIENT).map(Element::text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> (Core, mpsc::UnboundedReceiver<RoomEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let core = Core {
            jid: BareJid::new("room@conf.x").unwrap(),
            state: Mutex::new(State {
                nick: "me".into(),
                ..State::default()
            }),
            events,
        };
        (core, receiver)
    }

    fn presence(kind: Option<&str>, role: &str, codes: &[u16], nick: Option<&str>) -> Element {
        let mut item = Element::new("item", ns::MUC_USER)
            .with_attr("affiliation", "none")
            .with_attr("role", role);
        if let Some(nick) = nick {
            item.set_attr("nick", nick);
        }
        let mut x = Element::new("x", ns::MUC_USER).with_child(item);
        for code in codes {
            x.append_child(
                Element::new("status", ns::MUC_USER).with_attr("code", code.to_string()),
            );
        }
        let mut p = Element::new("presence", ns::CLIENT).with_child(x);
        if let Some(kind) = kind {
            p.set_attr("type", kind);
        }
        p
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<RoomEvent>) -> Vec<RoomEvent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn joining_then_a_nick_change_is_one_change() {
        let (core, mut rx) = core();
        core.presence(&presence(None, "participant", &[], None), Some("other"));
        core.presence(&presence(None, "moderator", &[110, 201], None), Some("me"));
        let events = drain(&mut rx);
        assert!(matches!(&events[0], RoomEvent::OccupantJoined(o) if o.nick == "other"));
        assert!(matches!(
            &events[1],
            RoomEvent::Joined { created: true, .. }
        ));
        assert!(core.state().joined);

        core.presence(
            &presence(Some("unavailable"), "participant", &[303], Some("new")),
            Some("other"),
        );
        core.presence(&presence(None, "participant", &[], None), Some("new"));
        let events = drain(&mut rx);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            matches!(&events[0], RoomEvent::NickChanged { old, occupant } if old == "other" && occupant.nick == "new")
        );
        assert_eq!(
            core.state().occupants.keys().collect::<Vec<_>>(),
            ["me", "new"]
        );
    }

    #[test]
    fn kicks_bans_and_destruction_are_told_apart() {
        let (core, mut rx) = core();
        core.presence(&presence(None, "participant", &[], None), Some("a"));
        core.presence(&presence(None, "moderator", &[110], None), Some("me"));
        drain(&mut rx);
        core.presence(
            &presence(Some("unavailable"), "none", &[307], None),
            Some("a"),
        );
        assert!(matches!(
            &drain(&mut rx)[0],
            RoomEvent::OccupantLeft {
                reason: LeaveReason::Kicked { .. },
                ..
            }
        ));
        let mut destroyed = presence(Some("unavailable"), "none", &[110], None);
        destroyed
            .get_child_mut("x", ns::MUC_USER)
            .unwrap()
            .append_child(
                Element::new("destroy", ns::MUC_USER)
                    .with_attr("jid", "new@conf.x")
                    .with_child(Element::new("reason", ns::MUC_USER).with_text("moved")),
            );
        core.presence(&destroyed, Some("me"));
        let events = drain(&mut rx);
        assert!(
            matches!(&events[0], RoomEvent::Left(LeaveReason::Destroyed { reason: Some(r), alternate: Some(a) })
                if r == "moved" && a.as_str() == "new@conf.x"),
            "{events:?}"
        );
        assert!(!core.state().joined);
        assert!(core.state().occupants.is_empty());
    }

    #[test]
    fn invitations_mediated_and_direct() {
        let room = Jid::new("room@conf.x").unwrap();
        let mediated = Element::new("message", ns::CLIENT)
            .with_child(
                Element::new("x", ns::MUC_USER)
                    .with_child(
                        Element::new("invite", ns::MUC_USER)
                            .with_attr("from", "a@x/r")
                            .with_child(Element::new("reason", ns::MUC_USER).with_text("come")),
                    )
                    .with_child(Element::new("password", ns::MUC_USER).with_text("pw")),
            )
            // Prosody's compatibility copy, which must not make it a direct invitation.
            .with_child(Element::new("x", ns::MUC_DIRECT_INVITE).with_attr("jid", "room@conf.x"));
        let Some(MucEvent::Invitation(got)) = invitation(&mediated, &room) else {
            panic!("not an invitation");
        };
        assert_eq!(got.room.as_str(), "room@conf.x");
        assert_eq!(got.reason.as_deref(), Some("come"));
        assert_eq!(got.password.as_deref(), Some("pw"));
        assert!(!got.direct);

        let direct = Element::new("message", ns::CLIENT).with_child(
            Element::new("x", ns::MUC_DIRECT_INVITE)
                .with_attr("jid", "room@conf.x")
                .with_attr("reason", "hi"),
        );
        let from = Jid::new("a@x/r").unwrap();
        let Some(MucEvent::Invitation(got)) = invitation(&direct, &from) else {
            panic!("not an invitation");
        };
        assert!(got.direct);
        assert_eq!(got.from, Some(from));
        assert!(invitation(&Element::new("message", ns::CLIENT), &room).is_none());
    }
}
