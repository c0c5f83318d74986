//! One room's state (XEP-0045 §4, §5): configuration, affiliations, occupants by nick,
//! subject and history, and how an occupant's presence is shown to the others.
//!
//! A room lives behind its own mutex, locked only for the synchronous work of one stanza:
//! the methods here never await. What they send goes straight to the occupants' sessions
//! through an [`Out`] callback, while the room is locked, so every occupant sees the same
//! order of events.

use corvid_proto::Bare;
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use corvid_proto::{BareJid, FullJid, ns};
use corvid_xml::Element;

use super::history::History;
use super::roomconfig::RoomConfig;

/// Where a room's stanzas go: (recipient's real full JID, serialized stanza).
pub type Out<'a> = dyn FnMut(&FullJid, Bytes) + 'a;

/// XEP-0045 §5.2 affiliations, lowest first (the order the permission checks compare).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn name(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// XEP-0045 §5.1 roles, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }

    /// XEP-0045 §5.1.1: the role an affiliation gets on entering.
    pub fn default_for(affiliation: Affiliation, moderated: bool) -> Role {
        match affiliation {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            Affiliation::None if moderated => Role::Visitor,
            Affiliation::None => Role::Participant,
            Affiliation::Outcast => Role::None,
        }
    }
}

/// Someone in the room: one nick held by one user. The resources of one bare JID may share
/// it ("multi-session nicks": §7.2.9 makes a nick conflict a matter between different
/// users); the others see one occupant, and each device gets what the occupant gets.
#[derive(Clone, Debug)]
pub struct Occupant {
    pub nick: String,
    /// The device that entered first (the one an IQ to the occupant goes to).
    pub jid: FullJid,
    /// Further resources of the same user sharing the nick, in the order they entered.
    pub more_devices: Vec<FullJid>,
    pub role: Role,
    /// XEP-0421: the occupant's stable, opaque id in this room.
    pub occupant_id: String,
    /// The occupant's own presence payload (show, status, extensions), without the MUC
    /// join element and without addresses.
    pub presence: Element,
}

impl Occupant {
    /// Every device of the occupant, the first one first.
    pub fn devices(&self) -> impl Iterator<Item = &FullJid> {
        std::iter::once(&self.jid).chain(&self.more_devices)
    }

    /// Sends the occupant's copy of `stanza` (its `to` unset) to each of its devices.
    pub fn send(&self, stanza: &Element, out: &mut Out) {
        let fan = stanza.fan_out(ns::CLIENT);
        for device in self.devices() {
            out(device, fan.to(device.as_str()));
        }
    }
}

/// The current subject (§8.1): who set it, and the text.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    pub nick: Option<String>,
    pub text: String,
}

pub struct Room {
    pub jid: BareJid,
    pub config: RoomConfig,
    /// §10.1.2: a new room stays locked until its owner configures it.
    pub locked: bool,
    /// Set when the room was destroyed while someone waited for its lock.
    pub destroyed: bool,
    /// Affiliations other than `none`, by bare JID.
    pub affiliations: HashMap<BareJid, Affiliation>,
    occupants: BTreeMap<String, Occupant>,
    by_jid: HashMap<FullJid, String>,
    pub subject: Subject,
    pub history: History,
    /// Who created it (the per-user room limit counts this).
    pub creator: BareJid,
    /// The store has a copy (it is, or was, persistent).
    pub stored: bool,
    /// Restored after a restart with archiving on: its history is read back from the
    /// archive before the first occupant enters.
    pub history_in_archive: bool,
}

impl Room {
    pub fn new(jid: BareJid, creator: BareJid, config: RoomConfig) -> Room {
        let mut affiliations = HashMap::new();
        affiliations.insert(creator.clone(), Affiliation::Owner);
        Room {
            jid,
            config,
            locked: true,
            destroyed: false,
            affiliations,
            occupants: BTreeMap::new(),
            by_jid: HashMap::new(),
            subject: Subject::default(),
            history: History::default(),
            creator,
            stored: false,
            history_in_archive: false,
        }
    }

    pub fn affiliation(&self, user: &BareJid) -> Affiliation {
        self.affiliations
            .get(user)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    pub fn set_affiliation_of(&mut self, user: BareJid, affiliation: Affiliation) {
        if affiliation == Affiliation::None {
            self.affiliations.remove(&user);
        } else {
            self.affiliations.insert(user, affiliation);
        }
    }

    pub fn owners(&self) -> usize {
        self.affiliations
            .values()
            .filter(|a| **a == Affiliation::Owner)
            .count()
    }

    pub fn occupant(&self, nick: &str) -> Option<&Occupant> {
        self.occupants.get(nick)
    }

    pub fn occupant_mut(&mut self, nick: &str) -> Option<&mut Occupant> {
        self.occupants.get_mut(nick)
    }

    /// The occupant a real full JID is in the room as.
    pub fn occupant_by_jid(&self, jid: &FullJid) -> Option<&Occupant> {
        self.by_jid
            .get(jid)
            .and_then(|nick| self.occupants.get(nick))
    }

    pub fn occupants(&self) -> impl Iterator<Item = &Occupant> {
        self.occupants.values()
    }

    pub fn occupant_count(&self) -> usize {
        self.occupants.len()
    }

    pub fn insert_occupant(&mut self, occupant: Occupant) {
        for device in occupant.devices() {
            self.by_jid.insert(device.clone(), occupant.nick.clone());
        }
        self.occupants.insert(occupant.nick.clone(), occupant);
    }

    pub fn remove_occupant(&mut self, nick: &str) -> Option<Occupant> {
        let occupant = self.occupants.remove(nick)?;
        for device in occupant.devices() {
            self.by_jid.remove(device);
        }
        Some(occupant)
    }

    /// Another resource of the occupant's user joins it under the same nick.
    pub fn add_device(&mut self, nick: &str, device: FullJid) {
        if let Some(occupant) = self.occupants.get_mut(nick) {
            self.by_jid.insert(device.clone(), nick.to_owned());
            occupant.more_devices.push(device);
        }
    }

    /// One device of a multi-device occupant leaves; the occupant stays with the others.
    /// The first remaining device takes the place of the first. `false` when `device` is
    /// the occupant's only one (the occupant itself has to leave).
    pub fn remove_device(&mut self, nick: &str, device: &FullJid) -> bool {
        let Some(occupant) = self.occupants.get_mut(nick) else {
            return false;
        };
        if occupant.more_devices.is_empty() {
            return false;
        }
        if &occupant.jid == device {
            occupant.jid = occupant.more_devices.remove(0);
        } else {
            occupant.more_devices.retain(|d| d != device);
        }
        self.by_jid.remove(device);
        true
    }

    /// The occupants that are resources of `user`.
    pub fn nicks_of(&self, user: &BareJid) -> Vec<String> {
        self.occupants
            .values()
            .filter(|o| &o.jid.bare() == user)
            .map(|o| o.nick.clone())
            .collect()
    }

    /// `room@service/nick`.
    pub fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{}", self.jid, nick)
    }

    /// §7.2.3 / §5.2: whether `viewer` is shown the real JIDs of the occupants.
    pub fn shows_jids_to(&self, viewer: &Occupant) -> bool {
        self.config.whois_anyone || viewer.role == Role::Moderator
    }

    /// An occupant's presence as the room shows it (§7.2.3): `from` the occupant's room
    /// JID, its own payload, and a muc#user `<item/>` with affiliation, role and, when
    /// `with_jid`, the real JID; then `codes` (§15.6 status codes).
    pub fn presence_of(
        &self,
        occupant: &Occupant,
        note: &Note,
        with_jid: bool,
        codes: &[u16],
    ) -> Element {
        let mut presence = Element::new("presence", ns::CLIENT)
            .with_attr("from", self.occupant_jid(&occupant.nick));
        if let (Some(id), false) = (
            occupant.presence.attr("id"),
            note.unavailable && !note.keep_status,
        ) {
            presence.set_attr("id", id);
        }
        if note.unavailable {
            presence.set_attr("type", "unavailable");
        }
        if !note.unavailable || note.keep_status {
            for child in occupant.presence.children() {
                presence.append_child(child.clone());
            }
        }
        let role = if note.unavailable {
            Role::None
        } else {
            occupant.role
        };
        let mut item = Element::new("item", ns::MUC_USER)
            .with_attr("affiliation", self.affiliation(&occupant.jid.bare()).name())
            .with_attr("role", role.name());
        if with_jid {
            item.set_attr("jid", occupant.jid.as_str());
        }
        if let Some(nick) = &note.new_nick {
            item.set_attr("nick", nick.as_str());
        }
        if let Some(actor) = &note.actor {
            item.append_child(
                Element::new("actor", ns::MUC_USER).with_attr("nick", actor.as_str()),
            );
        }
        if let Some(reason) = &note.reason {
            item.append_child(Element::new("reason", ns::MUC_USER).with_text(reason.as_str()));
        }
        presence.append_child(super::occupant_id::element(&occupant.occupant_id));
        let mut x = Element::new("x", ns::MUC_USER).with_child(item);
        if let Some(destroy) = &note.destroy {
            x.append_child(destroy.clone());
        }
        for code in note.codes.iter().chain(codes) {
            x.append_child(
                Element::new("status", ns::MUC_USER).with_attr("code", code.to_string()),
            );
        }
        presence.append_child(x);
        presence
    }

    /// Sends `occupant`'s presence to every occupant but itself, serialized at most twice
    /// (with and without the real JID) and each copy addressed by splicing in its `to`.
    pub fn broadcast_presence(&self, occupant: &Occupant, note: &Note, out: &mut Out) {
        let mut plain = None;
        let mut with_jid = None;
        for viewer in self.occupants.values() {
            if viewer.nick == occupant.nick {
                continue;
            }
            let shows = self.shows_jids_to(viewer);
            let slot = if shows { &mut with_jid } else { &mut plain };
            let fan = slot.get_or_insert_with(|| {
                self.presence_of(occupant, note, shows, &[])
                    .fan_out(ns::CLIENT)
            });
            for device in viewer.devices() {
                out(device, fan.to(device.as_str()));
            }
        }
    }

    /// Sends an occupant its own presence (§7.2.2: with status 110, and `self_codes`), on
    /// each of its devices.
    pub fn send_self_presence(
        &self,
        occupant: &Occupant,
        note: &Note,
        self_codes: &[u16],
        out: &mut Out,
    ) {
        for device in occupant.devices() {
            self.send_self_presence_to(occupant, device, note, self_codes, out);
        }
    }

    /// An occupant's own presence to one of its devices (one device entering or leaving).
    pub fn send_self_presence_to(
        &self,
        occupant: &Occupant,
        device: &FullJid,
        note: &Note,
        self_codes: &[u16],
        out: &mut Out,
    ) {
        let mut codes = vec![110];
        codes.extend_from_slice(self_codes);
        let mut presence = self.presence_of(occupant, note, true, &codes);
        presence.set_attr("to", device.as_str());
        out(device, presence.to_bytes(ns::CLIENT));
    }

    /// Sends a stanza (its `to` unset) to every device of every occupant.
    pub fn send_to_all(&self, stanza: &Element, out: &mut Out) {
        let fan = stanza.fan_out(ns::CLIENT);
        for device in self.occupants.values().flat_map(Occupant::devices) {
            out(device, fan.to(device.as_str()));
        }
    }

    /// §7.2.15: the subject message sent last on entering, `<subject/>` empty when unset.
    pub fn subject_message(&self) -> Element {
        let from = match &self.subject.nick {
            Some(nick) => self.occupant_jid(nick),
            None => self.jid.to_string(),
        };
        Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("from", from)
            .with_attr("id", crate::random_id())
            .with_child(Element::new("subject", ns::CLIENT).with_text(self.subject.text.as_str()))
    }

    /// Removes an occupant with a presence of type `unavailable` to everyone, itself
    /// included (§7.14 leaving, §8.2 kick, §9.1 ban: the codes tell which).
    pub fn remove_with_notice(
        &mut self,
        nick: &str,
        note: &Note,
        out: &mut Out,
    ) -> Option<Occupant> {
        let occupant = self.remove_occupant(nick)?;
        self.broadcast_presence(&occupant, note, out);
        self.send_self_presence(&occupant, note, &[], out);
        Some(occupant)
    }
}

/// What a presence says besides the occupant's own payload.
#[derive(Clone, Debug, Default)]
pub struct Note {
    pub unavailable: bool,
    /// Keep the occupant's status text in an unavailable presence (leaving with a status).
    pub keep_status: bool,
    /// Status codes everyone sees (301 banned, 303 nick change, 307 kicked …).
    pub codes: Vec<u16>,
    pub new_nick: Option<String>,
    pub actor: Option<String>,
    pub reason: Option<String>,
    /// §10.9: the `<destroy/>` element when the room is destroyed.
    pub destroy: Option<Element>,
}

impl Note {
    pub fn unavailable(codes: &[u16]) -> Note {
        Note {
            unavailable: true,
            codes: codes.to_vec(),
            ..Note::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_roles_follow_affiliation_and_moderation() {
        assert_eq!(
            Role::default_for(Affiliation::Owner, false),
            Role::Moderator
        );
        assert_eq!(Role::default_for(Affiliation::Admin, true), Role::Moderator);
        assert_eq!(
            Role::default_for(Affiliation::Member, true),
            Role::Participant
        );
        assert_eq!(Role::default_for(Affiliation::None, true), Role::Visitor);
        assert_eq!(
            Role::default_for(Affiliation::None, false),
            Role::Participant
        );
    }

    #[test]
    fn names_round_trip() {
        for a in [
            Affiliation::Outcast,
            Affiliation::None,
            Affiliation::Member,
            Affiliation::Admin,
            Affiliation::Owner,
        ] {
            assert_eq!(Affiliation::parse(a.name()), Some(a));
        }
        for r in [
            Role::None,
            Role::Visitor,
            Role::Participant,
            Role::Moderator,
        ] {
            assert_eq!(Role::parse(r.name()), Some(r));
        }
        assert_eq!(Affiliation::parse("king"), None);
    }
}
