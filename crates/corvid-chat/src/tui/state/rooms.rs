//! Rooms in the state: entering and leaving, the occupant list and the subject (shown with
//! the room's conversation), comings and goings as system lines, and invitations waiting
//! for a `/join`.

use std::collections::BTreeSet;

use super::State;

/// A room we are in or entering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    pub nick: String,
    pub joined: bool,
    /// Everyone in, by nick, ourselves included.
    pub occupants: BTreeSet<String>,
    pub subject: Option<String>,
    /// The room keeps an archive (XEP-0313) to page back through.
    pub archived: bool,
}

impl Room {
    /// A room being entered as `nick`.
    pub fn new(nick: &str) -> Room {
        Room {
            nick: nick.to_owned(),
            joined: false,
            occupants: BTreeSet::new(),
            subject: None,
            archived: false,
        }
    }
}

/// An invitation into a room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invitation {
    /// Who invites.
    pub from: Option<String>,
    pub reason: Option<String>,
    /// The room's password, if it needs one.
    pub password: Option<String>,
}

/// What a room told (XEP-0045 §7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomInput {
    /// We are in as `nick` (again, after a new session).
    Joined {
        nick: String,
    },
    /// The room refused us, or we are out (left, kicked, the room destroyed …).
    Left {
        why: String,
    },
    OccupantJoined {
        nick: String,
    },
    OccupantLeft {
        nick: String,
        why: String,
    },
    NickChanged {
        old: String,
        new: String,
    },
    /// The subject, on entering and when it changes; `by` who set it.
    Subject {
        subject: String,
        by: Option<String>,
    },
    /// The room keeps an archive.
    Archived,
}

impl State {
    pub(super) fn room_input(&mut self, jid: String, input: RoomInput) {
        // A room we left (or never asked to enter) says nothing any more.
        let Some(room) = self.rooms.get_mut(&jid) else {
            return;
        };
        match input {
            RoomInput::Joined { nick } => {
                self.notice = format!("joined {jid} as {nick}");
                room.joined = true;
                room.occupants.insert(nick.clone());
                room.nick = nick;
            }
            RoomInput::Left { why } => {
                self.notice = format!("left {jid}: {why}");
                self.rooms.remove(&jid);
            }
            RoomInput::OccupantJoined { nick } => {
                // Those already in when we enter are listed, not announced.
                let announce = room.joined;
                room.occupants.insert(nick.clone());
                if announce {
                    self.say(&jid, format!("{nick} joined"));
                }
            }
            RoomInput::OccupantLeft { nick, why } => {
                room.occupants.remove(&nick);
                self.say(&jid, format!("{nick} {why}"));
            }
            RoomInput::NickChanged { old, new } => {
                room.occupants.remove(&old);
                room.occupants.insert(new.clone());
                if room.nick == old {
                    room.nick = new.clone();
                }
                self.say(&jid, format!("{old} is now known as {new}"));
            }
            RoomInput::Subject { subject, by } => {
                let changed = room.subject.as_deref().unwrap_or("") != subject;
                room.subject = (!subject.is_empty()).then(|| subject.clone());
                if changed {
                    let text = match (by, subject.is_empty()) {
                        (Some(by), false) => format!("{by} set the subject: {subject}"),
                        (Some(by), true) => format!("{by} cleared the subject"),
                        (None, _) => format!("subject: {subject}"),
                    };
                    self.say(&jid, text);
                }
            }
            RoomInput::Archived => room.archived = true,
        }
    }

    pub(super) fn invited(&mut self, room: String, invitation: Invitation) {
        if self.rooms.contains_key(&room) {
            return;
        }
        let from = invitation.from.as_deref().unwrap_or("someone");
        let reason = invitation
            .reason
            .as_deref()
            .map_or_else(String::new, |r| format!(" ({r})"));
        self.notice = format!("{from} invites you to {room}{reason}: select it and /join");
        self.invitations.insert(room, invitation);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bodies, groupchat, room_input, state, typed};
    use super::super::{Action, EntryKind, Input, Key};
    use super::*;

    const LOBBY: &str = "lobby@conf.x";

    fn lobby(input: RoomInput) -> Input {
        room_input(LOBBY, input)
    }

    #[test]
    fn occupants_subject_and_comings_and_goings_show_with_the_room() {
        let mut s = state();
        typed(&mut s, "/join lobby@conf.x juliet");
        // Those in before us are listed, not announced.
        s.apply(lobby(RoomInput::OccupantJoined {
            nick: "romeo".into(),
        }));
        s.apply(lobby(RoomInput::Joined {
            nick: "juliet".into(),
        }));
        assert!(s.rooms[LOBBY].joined);
        s.apply(lobby(RoomInput::Subject {
            subject: "Verona".into(),
            by: None,
        }));
        s.apply(lobby(RoomInput::OccupantJoined {
            nick: "tybalt".into(),
        }));
        s.apply(lobby(RoomInput::NickChanged {
            old: "tybalt".into(),
            new: "cat".into(),
        }));
        s.apply(lobby(RoomInput::OccupantLeft {
            nick: "romeo".into(),
            why: "left".into(),
        }));
        // The same subject again (entering again) says nothing new.
        s.apply(lobby(RoomInput::Subject {
            subject: "Verona".into(),
            by: None,
        }));
        s.apply(lobby(RoomInput::Subject {
            subject: "Mantua".into(),
            by: Some("cat".into()),
        }));
        assert_eq!(
            bodies(&s, LOBBY),
            [
                "-- subject: Verona",
                "-- tybalt joined",
                "-- tybalt is now known as cat",
                "-- romeo left",
                "-- cat set the subject: Mantua",
            ]
        );
        let room = &s.rooms[LOBBY];
        assert_eq!(room.occupants.iter().collect::<Vec<_>>(), ["cat", "juliet"]);
        assert_eq!(room.subject.as_deref(), Some("Mantua"));
        assert_eq!(
            typed(&mut s, "/subject Padua at dawn"),
            [Action::SetSubject {
                room: LOBBY.into(),
                subject: "Padua at dawn".into()
            }]
        );
        // Our own nick change is ours.
        s.apply(lobby(RoomInput::NickChanged {
            old: "juliet".into(),
            new: "jules".into(),
        }));
        assert_eq!(s.rooms[LOBBY].nick, "jules");
        // Kicked: the room is gone, and what it says next is not heard.
        s.apply(lobby(RoomInput::Left {
            why: "kicked by cat".into(),
        }));
        assert!(s.rooms.is_empty());
        assert!(s.notice.contains("kicked by cat"));
        s.apply(lobby(RoomInput::OccupantJoined {
            nick: "ghost".into(),
        }));
        assert!(s.rooms.is_empty());
    }

    #[test]
    fn history_sent_again_on_entering_again_shows_once() {
        let mut s = state();
        typed(&mut s, "/join lobby@conf.x juliet");
        s.apply(lobby(RoomInput::Joined {
            nick: "juliet".into(),
        }));
        let said = groupchat("lobby@conf.x/romeo", "hello", "g1").archived_as("r1");
        s.apply(Input::Message(said.clone()));
        // After a new session: in again, and the room sends its history again.
        s.apply(lobby(RoomInput::Joined {
            nick: "juliet".into(),
        }));
        s.apply(Input::Message(said));
        assert_eq!(bodies(&s, LOBBY), ["romeo: hello"]);
    }

    #[test]
    fn an_invitation_is_listed_and_accepted_with_join() {
        let mut s = state();
        s.apply(Input::Invited {
            room: "ball@conf.x".into(),
            invitation: Invitation {
                from: Some("romeo@x/a".into()),
                reason: Some("a party".into()),
                password: Some("masks".into()),
            },
        });
        assert!(
            s.notice
                .contains("romeo@x/a invites you to ball@conf.x (a party)"),
            "{}",
            s.notice
        );
        assert_eq!(s.entries()[0].kind, EntryKind::Invitation);
        s.key(Key::Tab);
        assert!(typed(&mut s, "hello?").is_empty());
        assert!(s.notice.contains("is an invitation"));
        // `/join` alone takes the selected invitation, our local part as the nick, and
        // the password it gave.
        assert_eq!(
            typed(&mut s, "/join"),
            [Action::Join {
                room: "ball@conf.x".into(),
                nick: "me".into(),
                password: Some("masks".into()),
            }]
        );
        assert!(s.invitations.is_empty());
        assert_eq!(s.selected.as_deref(), Some("ball@conf.x"));
        // An invitation to a room we are in says nothing; another can be ignored.
        s.apply(Input::Invited {
            room: "ball@conf.x".into(),
            invitation: Invitation::default(),
        });
        assert!(s.invitations.is_empty());
        s.apply(Input::Invited {
            room: "crypt@conf.x".into(),
            invitation: Invitation::default(),
        });
        s.select("crypt@conf.x");
        assert!(typed(&mut s, "/refuse").is_empty());
        assert!(s.invitations.is_empty());
        // Without an invitation selected, `/join` needs a room.
        assert!(typed(&mut s, "/join").is_empty());
        assert!(s.notice.contains("which room"));
    }
}
