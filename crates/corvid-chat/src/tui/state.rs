//! The TUI's state and how it changes, with no terminal and no network: what happened
//! ([`Input`]) goes in through [`State::apply`], key presses through [`State::key`], which
//! returns what to do ([`Action`]) for the runtime to carry out. Rendering reads the state
//! (`view.rs`); the runtime (`mod.rs`) turns stream events into inputs and actions into
//! stanzas.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use corvid_client::RosterItem;

use crate::message::{ChatMessage, bare};
use crate::presence::Show;

/// Messages kept per conversation; older ones scroll away.
const MAX_LINES: usize = 1000;

/// Something that happened, for the state to take in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A roster item was loaded, added or changed.
    Contact(RosterItem),
    ContactRemoved(String),
    /// A contact's availability now (`None`: offline).
    Presence {
        jid: String,
        show: Option<Show>,
    },
    /// Someone asks to see our presence.
    Request(String),
    /// A message, received or (a carbon of one) sent by us.
    Message(ChatMessage),
    /// Archived messages with `with`, oldest first.
    History {
        with: String,
        messages: Vec<ChatMessage>,
    },
    /// The room let us in as `nick`.
    Joined {
        room: String,
        nick: String,
    },
    /// The room refused us or we left.
    Left {
        room: String,
        why: String,
    },
    /// A line for the status bar (an error, a confirmation).
    Notice(String),
    /// The stream ended.
    Disconnected(String),
}

/// A key, as far as the TUI cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Backspace,
    Tab,
    BackTab,
    Up,
    Down,
    Esc,
    /// Ctrl-C.
    Interrupt,
}

/// Something for the runtime to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    SendChat {
        to: String,
        body: String,
        id: String,
    },
    SendRoom {
        room: String,
        body: String,
    },
    Join {
        room: String,
        nick: String,
    },
    Leave {
        room: String,
        nick: String,
    },
    /// Add to the roster and ask to see their presence.
    Add(String),
    /// Let them see our presence, and ask for theirs.
    Accept(String),
    Refuse(String),
    Status {
        show: Show,
        text: Option<String>,
    },
    /// Load the last page of the archive with this JID.
    LoadHistory(String),
    Quit,
}

/// A command typed on the input line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Join { room: String, nick: String },
    Leave(Option<String>),
    Add(String),
    Accept(Option<String>),
    Refuse(Option<String>),
    Chat(String),
    Status { show: Show, text: Option<String> },
    Help,
    Quit,
}

const HELP: &str = "/chat JID, /join ROOM NICK, /leave, /add JID, /accept [JID], /refuse [JID], \
                    /status online|chat|away|xa|dnd [TEXT], /quit; Tab/Up/Down select";

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
            (Some(room), Some(nick), None) if room.contains('@') => Ok(Command::Join {
                room: bare(room),
                nick: nick.to_owned(),
            }),
            _ => Err("/join takes ROOM@SERVICE NICK".into()),
        },
        "/leave" | "/part" => Ok(Command::Leave(optional())),
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

/// One contact in the left pane.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contact {
    pub name: Option<String>,
    pub subscription: String,
    pub pending_out: bool,
    /// In the roster (not only someone we talk to).
    pub in_roster: bool,
    pub presence: Option<Show>,
}

/// A room we are in or joining.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    pub nick: String,
    pub joined: bool,
}

/// One line of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub id: Option<String>,
    /// `me`, the contact's name, or the occupant's nick.
    pub who: String,
    pub body: String,
    pub stamp: String,
    pub outgoing: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conversation {
    pub lines: Vec<Line>,
    pub unread: usize,
    /// The archive was asked already.
    pub history_requested: bool,
}

/// What an entry of the left pane is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Request,
    Room,
    Contact,
}

/// One row of the left pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub jid: String,
}

/// Everything the TUI shows.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// Our bare JID.
    pub me: String,
    /// Whether the server archives our messages (history is loaded from it).
    pub mam: bool,
    pub contacts: BTreeMap<String, Contact>,
    pub rooms: BTreeMap<String, Room>,
    /// Subscription requests waiting for an answer.
    pub requests: BTreeSet<String>,
    pub conversations: HashMap<String, Conversation>,
    /// The selected entry's JID.
    pub selected: Option<String>,
    pub input: String,
    pub notice: String,
    pub own_show: Show,
    pub own_status: Option<String>,
    pub online: bool,
    /// The ids of messages we send: this prefix (unique to the session), then a counter.
    id_prefix: String,
    sent: u64,
}

impl State {
    pub fn new(me: &str, mam: bool, id_prefix: &str) -> State {
        State {
            me: me.to_owned(),
            mam,
            id_prefix: id_prefix.to_owned(),
            own_show: Show::Online,
            online: true,
            notice: format!("connected as {me}; Tab selects, /help lists commands"),
            ..State::default()
        }
    }

    /// The left pane's rows: requests, then rooms, then contacts.
    pub fn entries(&self) -> Vec<Entry> {
        let requests = self.requests.iter().map(|jid| Entry {
            kind: EntryKind::Request,
            jid: jid.clone(),
        });
        let rooms = self.rooms.keys().map(|jid| Entry {
            kind: EntryKind::Room,
            jid: jid.clone(),
        });
        let contacts = self.contacts.keys().map(|jid| Entry {
            kind: EntryKind::Contact,
            jid: jid.clone(),
        });
        requests.chain(rooms).chain(contacts).collect()
    }

    /// The selected row, if it still exists.
    pub fn selected_entry(&self) -> Option<Entry> {
        let selected = self.selected.as_ref()?;
        self.entries().into_iter().find(|e| &e.jid == selected)
    }

    pub fn unread(&self, jid: &str) -> usize {
        self.conversations.get(jid).map_or(0, |c| c.unread)
    }

    /// Takes in what happened.
    pub fn apply(&mut self, input: Input) {
        match input {
            Input::Contact(item) => {
                let contact = self.contacts.entry(item.jid.clone()).or_default();
                contact.name = item.name;
                contact.subscription = item.subscription.as_str().to_owned();
                contact.pending_out = item.pending_out;
                contact.in_roster = true;
            }
            Input::ContactRemoved(jid) => {
                self.contacts.remove(&jid);
            }
            Input::Presence { jid, show } => {
                if let Some(contact) = self.contacts.get_mut(&jid) {
                    contact.presence = show;
                }
            }
            Input::Request(jid) => {
                self.notice = format!("{jid} asks to be your contact: /accept or /refuse");
                self.requests.insert(jid);
            }
            Input::Message(message) => self.message(message),
            Input::History { with, messages } => self.history(&with, messages),
            Input::Joined { room, nick } => {
                self.notice = format!("joined {room} as {nick}");
                self.rooms.insert(room, Room { nick, joined: true });
            }
            Input::Left { room, why } => {
                self.notice = format!("left {room}: {why}");
                self.rooms.remove(&room);
            }
            Input::Notice(text) => self.notice = text,
            Input::Disconnected(why) => {
                self.online = false;
                self.notice = format!("disconnected: {why} (/quit to leave)");
            }
        }
    }

    /// Takes a key; what to do about it.
    pub fn key(&mut self, key: Key) -> Vec<Action> {
        match key {
            Key::Char(c) => {
                self.input.push(c);
                Vec::new()
            }
            Key::Backspace => {
                self.input.pop();
                Vec::new()
            }
            Key::Esc => {
                self.input.clear();
                Vec::new()
            }
            Key::Tab | Key::Down => self.select_by(1),
            Key::BackTab | Key::Up => self.select_by(-1),
            Key::Enter => {
                let line = std::mem::take(&mut self.input);
                self.submit(&line)
            }
            Key::Interrupt => vec![Action::Quit],
        }
    }

    /// Selects the entry `jid` (opening its conversation).
    pub fn select(&mut self, jid: &str) -> Vec<Action> {
        self.selected = Some(jid.to_owned());
        let kind = self.selected_entry().map(|e| e.kind);
        let conversation = self.conversations.entry(jid.to_owned()).or_default();
        conversation.unread = 0;
        if kind == Some(EntryKind::Contact) && self.mam && !conversation.history_requested {
            conversation.history_requested = true;
            return vec![Action::LoadHistory(jid.to_owned())];
        }
        Vec::new()
    }

    fn select_by(&mut self, step: isize) -> Vec<Action> {
        let entries = self.entries();
        if entries.is_empty() {
            return Vec::new();
        }
        let len = entries.len() as isize;
        let current = self
            .selected
            .as_ref()
            .and_then(|s| entries.iter().position(|e| &e.jid == s));
        let next = match current {
            Some(i) => (i as isize + step).rem_euclid(len),
            None if step > 0 => 0,
            None => len - 1,
        };
        let jid = entries[next as usize].jid.clone();
        self.select(&jid)
    }

    /// The input line, sent: a command, or a message to the selected conversation.
    fn submit(&mut self, line: &str) -> Vec<Action> {
        if line.trim().is_empty() {
            return Vec::new();
        }
        if line.starts_with('/') {
            return match parse_command(line) {
                Ok(command) => self.command(command),
                Err(e) => {
                    self.notice = e;
                    Vec::new()
                }
            };
        }
        let Some(entry) = self.selected_entry() else {
            self.notice = "select a contact or room first (Tab), or /chat JID".into();
            return Vec::new();
        };
        match entry.kind {
            EntryKind::Request => {
                self.notice = format!("{} is a request: /accept or /refuse", entry.jid);
                Vec::new()
            }
            // The room reflects our message back (XEP-0045 §7.4): it shows then.
            EntryKind::Room => vec![Action::SendRoom {
                room: entry.jid,
                body: line.to_owned(),
            }],
            EntryKind::Contact => {
                self.sent += 1;
                let id = format!("{}-{}", self.id_prefix, self.sent);
                self.push_line(
                    &entry.jid,
                    Line {
                        id: Some(id.clone()),
                        who: "me".into(),
                        body: line.to_owned(),
                        stamp: corvid_proto::time::format_datetime(std::time::SystemTime::now()),
                        outgoing: true,
                    },
                );
                vec![Action::SendChat {
                    to: entry.jid,
                    body: line.to_owned(),
                    id,
                }]
            }
        }
    }

    fn command(&mut self, command: Command) -> Vec<Action> {
        let selected_request = || {
            self.selected_entry()
                .filter(|e| e.kind == EntryKind::Request)
                .map(|e| e.jid)
        };
        match command {
            Command::Join { room, nick } => {
                self.notice = format!("joining {room} as {nick}…");
                self.rooms.insert(
                    room.clone(),
                    Room {
                        nick: nick.clone(),
                        joined: false,
                    },
                );
                let mut actions = vec![Action::Join {
                    room: room.clone(),
                    nick,
                }];
                actions.extend(self.select(&room));
                actions
            }
            Command::Leave(room) => {
                let room = room.or_else(|| {
                    self.selected_entry()
                        .filter(|e| e.kind == EntryKind::Room)
                        .map(|e| e.jid)
                });
                match room.and_then(|r| self.rooms.remove(&r).map(|room| (r, room))) {
                    Some((room, Room { nick, .. })) => {
                        self.notice = format!("left {room}");
                        vec![Action::Leave { room, nick }]
                    }
                    None => {
                        self.notice = "not in that room".into();
                        Vec::new()
                    }
                }
            }
            Command::Add(jid) => {
                let jid = bare(&jid);
                self.notice = format!("asked {jid} to be your contact");
                vec![Action::Add(jid)]
            }
            Command::Accept(jid) => match jid.map(|j| bare(&j)).or_else(selected_request) {
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
            Command::Refuse(jid) => match jid.map(|j| bare(&j)).or_else(selected_request) {
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

    /// A live message: into its conversation, counted unread unless that one is open.
    fn message(&mut self, message: ChatMessage) {
        let Some((with, line)) = self.line_of(&message) else {
            return;
        };
        if !self.rooms.contains_key(&with) && !self.contacts.contains_key(&with) {
            // Someone not in the roster: still a conversation to see.
            self.contacts.entry(with.clone()).or_default();
        }
        let open = self.selected.as_deref() == Some(with.as_str());
        let outgoing = line.outgoing;
        if self.push_line(&with, line) && !open && !outgoing {
            self.conversations.entry(with).or_default().unread += 1;
        }
    }

    /// Archived messages go before what is shown already, without the ones shown.
    fn history(&mut self, with: &str, messages: Vec<ChatMessage>) {
        let conversation = self.conversations.entry(with.to_owned()).or_default();
        let known: BTreeSet<String> = conversation
            .lines
            .iter()
            .filter_map(|l| l.id.clone())
            .collect();
        let mut lines: Vec<Line> = Vec::new();
        for message in messages {
            if let Some((_, line)) = self.line_of(&message)
                && line.id.as_ref().is_none_or(|id| !known.contains(id))
            {
                lines.push(line);
            }
        }
        let conversation = self.conversations.entry(with.to_owned()).or_default();
        lines.append(&mut conversation.lines);
        conversation.lines = lines;
    }

    /// The conversation a message belongs to and its line; `None` for a groupchat
    /// message from a room we are not in.
    fn line_of(&self, message: &ChatMessage) -> Option<(String, Line)> {
        let from = message.sender_bare();
        let (with, who, outgoing) = if message.kind == "groupchat" {
            let room = self.rooms.get(&from)?;
            let nick = message.sender_resource().unwrap_or_default();
            let outgoing = nick == room.nick;
            (from, nick, outgoing)
        } else if self.rooms.contains_key(&from) {
            // XEP-0045 §7.5: a private message from an occupant; shown in the room, marked.
            let nick = message.sender_resource().unwrap_or_default();
            (from, format!("{nick} (private)"), false)
        } else if from == self.me || message.from.is_empty() {
            // Ours (a carbon, or from the archive): the conversation is with its addressee.
            (bare(message.to.as_deref()?), "me".to_owned(), true)
        } else {
            let who = self
                .contacts
                .get(&from)
                .and_then(|c| c.name.clone())
                .unwrap_or_else(|| from.clone());
            (from, who, false)
        };
        let line = Line {
            id: message.id.clone(),
            who,
            body: message.body.clone(),
            stamp: message.stamp.clone(),
            outgoing,
        };
        Some((with, line))
    }

    /// Adds a line unless one with its id is there (a carbon or reflection of what we
    /// showed already); whether it was added.
    fn push_line(&mut self, with: &str, line: Line) -> bool {
        let conversation = self.conversations.entry(with.to_owned()).or_default();
        if line.id.is_some()
            && conversation
                .lines
                .iter()
                .any(|l| l.id == line.id && l.outgoing == line.outgoing)
        {
            return false;
        }
        conversation.lines.push(line);
        if conversation.lines.len() > MAX_LINES {
            let excess = conversation.lines.len() - MAX_LINES;
            conversation.lines.drain(..excess);
        }
        true
    }
}

#[cfg(test)]
mod tests;
