//! Persistent rooms (XEP-0045 §10.2 `muc#roomconfig_persistentroom`): the snapshot of a
//! room that goes to the store (configuration, subject, affiliations), and the room
//! rebuilt from it after a restart — unlocked, empty, its history to be read back from its
//! archive if it keeps one (`archive.rs`).

use corvid_proto::{BareJid, ns};
use corvid_store::StoredRoom;
use corvid_xml::Element;

use super::room::{Affiliation, Room, Subject};
use super::roomconfig::{Caps, RoomConfig};

/// What the store keeps of a room. The configuration is its own `muc#roomconfig` form.
pub fn snapshot(room: &Room) -> StoredRoom {
    let mut affiliations: Vec<(String, String)> = room
        .affiliations
        .iter()
        .map(|(jid, a)| (jid.to_string(), a.name().to_string()))
        .collect();
    affiliations.sort();
    StoredRoom {
        service: room.jid.domain().to_string(),
        name: room.jid.node().map(|n| n.to_string()).unwrap_or_default(),
        creator: room.creator.to_string(),
        // The stored form is read back by `apply`, which ignores the list options the caps shape.
        config: room
            .config
            .form(Caps {
                max_history: room.config.history_length,
                max_occupants: room.config.max_users,
            })
            .to_string(),
        subject: room.subject.text.clone(),
        subject_nick: room.subject.nick.clone().unwrap_or_default(),
        affiliations,
    }
}

/// Rebuilds a stored room; `None` (logged by the caller) when the row makes no sense.
pub fn restore(stored: &StoredRoom, caps: Caps) -> Option<Room> {
    let jid = BareJid::new(&format!("{}@{}", stored.name, stored.service)).ok()?;
    let creator = BareJid::new(&stored.creator).ok()?;
    let form: Element = corvid_xml::parse_element(&stored.config, ns::CLIENT).ok()?;
    let config = RoomConfig::new(caps).apply(&form, caps).ok()?;
    let mut room = Room::new(jid, creator.clone(), config);
    room.affiliations.clear();
    for (jid, affiliation) in &stored.affiliations {
        if let (Ok(jid), Some(affiliation)) = (BareJid::new(jid), Affiliation::parse(affiliation)) {
            room.set_affiliation_of(jid, affiliation);
        }
    }
    if room.owners() == 0 {
        room.set_affiliation_of(creator, Affiliation::Owner);
    }
    room.subject = Subject {
        nick: Some(stored.subject_nick.clone()).filter(|n| !n.is_empty()),
        text: stored.subject.clone(),
    };
    room.locked = false;
    room.stored = true;
    room.history_in_archive = room.config.archiving;
    Some(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        max_history: 20,
        max_occupants: 100,
    };

    #[test]
    fn a_room_round_trips_through_its_snapshot() {
        let mut config = RoomConfig::new(CAPS);
        config.name = "Balcony <&> 🌙".into();
        config.persistent = true;
        config.members_only = true;
        config.password = Some("sesame".into());
        config.max_users = 7;
        let mut room = Room::new(
            "balcony@conf.x".parse().unwrap(),
            "romeo@x".parse().unwrap(),
            config.clone(),
        );
        room.set_affiliation_of("juliet@x".parse().unwrap(), Affiliation::Member);
        room.set_affiliation_of("tybalt@x".parse().unwrap(), Affiliation::Outcast);
        room.subject = Subject {
            nick: Some("romeo".into()),
            text: "hello".into(),
        };
        let back = restore(&snapshot(&room), CAPS).unwrap();
        assert_eq!(back.jid, room.jid);
        assert_eq!(back.config, config);
        assert_eq!(back.affiliations, room.affiliations);
        assert_eq!(back.subject.text, "hello");
        assert!(!back.locked && back.stored);
    }

    #[test]
    fn garbage_rows_are_refused() {
        let stored = StoredRoom {
            service: "conf.x".into(),
            name: "r".into(),
            creator: "a@x".into(),
            config: "<x".into(),
            ..Default::default()
        };
        assert!(restore(&stored, CAPS).is_none());
    }
}
