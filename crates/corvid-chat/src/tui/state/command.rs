//! The commands typed on the input line (`/join`, `/chat` …): parsed into a [`Command`],
//! then carried out on the state, which returns what the runtime is to do.

use super::{Action, EntryKind, Room, State};
use crate::message::bare;
use crate::presence::Show;

/// A command typed on the input line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `/join [ROOM [NICK]]`: the selected invitation's room without one; our JID's local
    /// part as the nick without one.
    Join {
        room: Option<String>,
        nick: Option<String>,
    },
    Leave(Option<String>),
    /// `/subject TEXT`: the selected room's new subject (empty: none).
    Subject(String),
    Add(String),
    Accept(Option<String>),
    Refuse(Option<String>),
    Chat(String),
    Status {
        show: Show,
        text: Option<String>,
    },
    Help,
    Quit,
}

const HELP: &str = "/chat JID, /join [ROOM [NICK]], /leave, /subject TEXT, /add JID, /accept [JID], \
                    /refuse [JID], /status online|chat|away|xa|dnd [TEXT], /quit; \
                    Tab/Up/Down select, PageUp/PageDown scroll";

/// Parses `/command args`.
pub fn parse_command(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let (name, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let mut words = rest.split_whitespace();
    let one = |what: &str| -> Result<String, String> {
        let mut words = rest.split_whitespace();
        match (words.next(), words.next()) {
            (Some(word), None) => Ok(word.to_owned()),
            _ => Err(format!("{name} takes {what}")),
        }
    };
    let optional = || -> Option<String> { rest.split_whitespace().next().map(str::to_owned) };
    match name {
        "/join" => match (words.next(), words.next(), words.next()) {
            (room, nick, None) if room.is_none_or(|r| r.contains('@')) => Ok(Command::Join {
                room: room.map(bare),
                nick: nick.map(str::to_owned),
            }),
            _ => Err("/join takes ROOM@SERVICE and a NICK, or nothing for an invitation".into()),
        },
        "/leave" | "/part" => Ok(Command::Leave(optional())),
        "/subject" | "/topic" => Ok(Command::Subject(rest.to_owned())),
        "/add" => one("a JID").map(Command::Add),
        "/accept" => Ok(Command::Accept(optional())),
        "/refuse" => Ok(Command::Refuse(optional())),
        "/chat" | "/msg" => one("a JID").map(|jid| Command::Chat(bare(&jid))),
        "/status" | "/away" => {
            let (show, text) = if name == "/away" {
                (Some("away"), rest)
            } else {
                let (show, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                (Some(show), text.trim())
            };
            let show = show
                .and_then(Show::from_word)
                .ok_or("/status takes online, chat, away, xa or dnd, then a text")?;
            let text = (!text.is_empty()).then(|| text.to_owned());
            Ok(Command::Status { show, text })
        }
        "/help" => Ok(Command::Help),
        "/quit" | "/exit" => Ok(Command::Quit),
        other => Err(format!("unknown command {other}; /help lists them")),
    }
}

impl State {
    pub(super) fn command(&mut self, command: Command) -> Vec<Action> {
        match command {
            Command::Join { room, nick } => self.join(room, nick),
            Command::Leave(room) => self.leave(room),
            Command::Subject(subject) => match self.selected_of(EntryKind::Room) {
                Some(room) => vec![Action::SetSubject { room, subject }],
                None => {
                    self.notice = "/subject is for a room: select one".into();
                    Vec::new()
                }
            },
            Command::Add(jid) => {
                let jid = bare(&jid);
                self.notice = format!("asked {jid} to be your contact");
                vec![Action::Add(jid)]
            }
            Command::Accept(jid) => match jid
                .map(|j| bare(&j))
                .or_else(|| self.selected_of(EntryKind::Request))
            {
                Some(jid) => {
                    self.requests.remove(&jid);
                    self.notice = format!("accepted {jid}");
                    vec![Action::Accept(jid)]
                }
                None => {
                    self.notice = "/accept whom? select a request or give its JID".into();
                    Vec::new()
                }
            },
            Command::Refuse(None) if self.selected_of(EntryKind::Invitation).is_some() => {
                if let Some(room) = self.selected_of(EntryKind::Invitation) {
                    self.invitations.remove(&room);
                    self.notice = format!("ignored the invitation to {room}");
                }
                Vec::new()
            }
            Command::Refuse(jid) => match jid
                .map(|j| bare(&j))
                .or_else(|| self.selected_of(EntryKind::Request))
            {
                Some(jid) => {
                    self.requests.remove(&jid);
                    self.notice = format!("refused {jid}");
                    vec![Action::Refuse(jid)]
                }
                None => {
                    self.notice = "/refuse whom? select a request or give its JID".into();
                    Vec::new()
                }
            },
            Command::Chat(jid) => {
                self.contacts.entry(jid.clone()).or_default();
                self.select(&jid)
            }
            Command::Status { show, text } => {
                self.own_show = show;
                self.own_status = text.clone();
                self.notice = format!("status: {}", show.as_str());
                vec![Action::Status { show, text }]
            }
            Command::Help => {
                self.notice = HELP.into();
                Vec::new()
            }
            Command::Quit => vec![Action::Quit],
        }
    }

    /// The selected entry's JID, if it is of `kind`.
    fn selected_of(&self, kind: EntryKind) -> Option<String> {
        self.selected_entry()
            .filter(|e| e.kind == kind)
            .map(|e| e.jid)
    }

    /// `/join`: enters `room` (the selected invitation's without one) as `nick` (our
    /// local part without one), with the password an invitation gave.
    fn join(&mut self, room: Option<String>, nick: Option<String>) -> Vec<Action> {
        let Some(room) = room.or_else(|| self.selected_of(EntryKind::Invitation)) else {
            self.notice =
                "/join which room? give ROOM@SERVICE [NICK], or select an invitation".into();
            return Vec::new();
        };
        if self.rooms.contains_key(&room) {
            self.notice = format!("already in {room}");
            return self.select(&room);
        }
        let nick = nick.unwrap_or_else(|| self.default_nick());
        let password = self.invitations.remove(&room).and_then(|i| i.password);
        self.notice = format!("joining {room} as {nick}…");
        self.rooms.insert(room.clone(), Room::new(&nick));
        let mut actions = vec![Action::Join {
            room: room.clone(),
            nick,
            password,
        }];
        actions.extend(self.select(&room));
        actions
    }

    fn leave(&mut self, room: Option<String>) -> Vec<Action> {
        let room = room
            .map(|r| bare(&r))
            .or_else(|| self.selected_of(EntryKind::Room));
        match room.filter(|r| self.rooms.remove(r).is_some()) {
            Some(room) => {
                self.notice = format!("left {room}");
                vec![Action::Leave { room }]
            }
            None => {
                self.notice = "not in that room".into();
                Vec::new()
            }
        }
    }

    /// Our JID's local part (the domain for a JID without one): a nick to start with.
    fn default_nick(&self) -> String {
        let local = self.me.split_once('@').map_or(self.me.as_str(), |(l, _)| l);
        local.to_owned()
    }
}
