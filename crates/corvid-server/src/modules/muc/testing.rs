//! Fixtures shared by the MUC unit tests: rooms with occupants already in.

use std::time::SystemTime;

use bytes::Bytes;
use corvid_proto::{FullJid, ns};
use corvid_xml::Element;

use super::history::Request;
use super::occupant::{Join, enter};
use super::room::Room;
use super::roomconfig::{Caps, RoomConfig};

pub(super) const CAPS: Caps = Caps {
    max_history: 2,
    max_occupants: 10,
};

/// A plain join request: no password, default history, occupant id `id-<nick>`.
pub(super) fn join(nick: &str, jid: &str) -> Join {
    Join {
        nick: nick.into(),
        jid: jid.parse().unwrap(),
        presence: Element::new("presence", ns::CLIENT),
        password: None,
        history: Request::default(),
        created: false,
        occupant_id: format!("id-{nick}"),
    }
}

/// An unlocked room of `room@conf.x` owned by `owner`, with `occupants` (nick, full JID) in.
pub(super) fn room_with(owner: &str, config: RoomConfig, occupants: &[(&str, &str)]) -> Room {
    let mut room = Room::new(
        "room@conf.x".parse().unwrap(),
        owner.parse().unwrap(),
        config,
    );
    room.locked = false;
    for (nick, jid) in occupants {
        enter(
            &mut room,
            join(nick, jid),
            10,
            SystemTime::now(),
            &mut |_: &FullJid, _: Bytes| {},
        )
        .unwrap();
    }
    room
}

/// [`room_with`] and the default configuration.
pub(super) fn room_of(owner: &str, occupants: &[(&str, &str)]) -> Room {
    room_with(owner, RoomConfig::new(CAPS), occupants)
}
