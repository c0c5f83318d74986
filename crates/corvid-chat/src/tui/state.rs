//! The TUI's state and how it changes, with no terminal and no network: what happened
//! ([`Input`]) goes in through [`State::apply`], key presses through [`State::key`], which
//! returns what to do ([`Action`]) for the runtime to carry out. Rendering reads the state
//! (`view.rs`); the runtime (`mod.rs`) turns stream and room events into inputs and
//! actions into stanzas.
//!
//! Typed commands are in `command.rs`, rooms and invitations in `rooms.rs`, scrolling and
//! paging back through the archive in `scroll.rs`.

mod command;
mod rooms;
mod scroll;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use corvid_client::RosterItem;

pub use self::command::parse_command;
pub use self::rooms::{Invitation, Room, RoomInput};
use crate::message::{ChatMessage, bare};
use crate::presence::Show;

/// Lines kept per conversation as new ones come; the oldest scroll away (pages loaded
/// from the archive on purpose stay).
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
    /// A page of the archive with `with` (a contact, or a room's own archive), oldest
    /// first; `complete` when the archive holds nothing older.
    History {
        with: String,
        messages: Vec<ChatMessage>,
        complete: bool,
    },
    /// The archive with `with` could not be read.
    HistoryFailed {
        with: String,
        why: String,
    },
    /// Something about a room we are in or entering.
    Room {
        room: String,
        input: RoomInput,
    },
    /// Someone invites us into a room (XEP-0045 §7.8, XEP-0249).
    Invited {
        room: String,
        invitation: Invitation,
    },
    /// A line for the status bar (an error, a confirmation).
    Notice(String),
    /// The connection was lost; attempt `attempt` to come back is on its way.
    Reconnecting {
        attempt: u32,
    },
    /// Connected again after a loss.
    Back,
    /// The stream ended for good.
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
    PageUp,
    PageDown,
    Esc,
    /// Ctrl-C.
    Interrupt,
}

/// Which archive keeps a conversation (XEP-0313).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archive {
    /// The account's own, queried for messages with a contact.
    Account,
    /// A room's own.
    Room,
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
        password: Option<String>,
    },
    Leave {
        room: String,
    },
    /// Change a room's subject (XEP-0045 §8.1); the room tells the new one back.
    SetSubject {
        room: String,
        subject: String,
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
    /// Load a page of the archive with `with`: the newest page when `before` is empty,
    /// else the one before the archive id `before`.
    LoadHistory {
        with: String,
        archive: Archive,
        before: String,
    },
    Quit,
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

/// One line of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub id: Option<String>,
    /// Its id in the archive that keeps it, where paging back starts.
    pub archive_id: Option<String>,
    /// `me`, the contact's name, or the occupant's nick; empty for a system line.
    pub who: String,
    pub body: String,
    pub stamp: String,
    pub outgoing: bool,
    /// Said by corvid-chat, not by anyone (someone joined a room, the subject changed).
    pub system: bool,
}

impl Line {
    /// A system line, stamped now.
    pub fn system(text: String) -> Line {
        Line {
            id: None,
            archive_id: None,
            who: String::new(),
            body: text,
            stamp: corvid_proto::time::format_datetime(SystemTime::now()),
            outgoing: false,
            system: true,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conversation {
    pub lines: Vec<Line>,
    pub unread: usize,
    /// The archive's newest page was asked for already.
    pub history_requested: bool,
    /// How many lines up from the newest the view is scrolled (0: it follows new lines).
    pub scroll: usize,
    /// An older page of the archive is on its way.
    pub loading_older: bool,
    /// The archive holds nothing older than the oldest line.
    pub archive_exhausted: bool,
}

/// What an entry of the left pane is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Request,
    Invitation,
    Room,
    Contact,
}

/// One row of the left pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub jid: String,
}

/// Whether we are connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Connection {
    #[default]
    Online,
    /// Lost, coming back: this attempt is on its way.
    Reconnecting { attempt: u32 },
    /// Lost for good.
    Offline,
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
    /// Invitations into rooms, by room, waiting for a `/join`.
    pub invitations: BTreeMap<String, Invitation>,
    pub conversations: HashMap<String, Conversation>,
    /// The selected entry's JID.
    pub selected: Option<String>,
    pub input: String,
    pub notice: String,
    pub own_show: Show,
    pub own_status: Option<String>,
    pub connection: Connection,
    /// How many lines of a conversation the screen shows: what PageUp and PageDown move.
    pub page: usize,
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
            page: 20,
            notice: format!("connected as {me}; Tab selects, /help lists commands"),
            ..State::default()
        }
    }

    /// The left pane's rows: requests, invitations, rooms, then contacts.
    pub fn entries(&self) -> Vec<Entry> {
        let of = |kind: EntryKind, jids: &mut dyn Iterator<Item = &String>| -> Vec<Entry> {
            jids.map(|jid| Entry {
                kind,
                jid: jid.clone(),
            })
            .collect()
        };
        let mut entries = of(EntryKind::Request, &mut self.requests.iter());
        entries.extend(of(EntryKind::Invitation, &mut self.invitations.keys()));
        entries.extend(of(EntryKind::Room, &mut self.rooms.keys()));
        entries.extend(of(EntryKind::Contact, &mut self.contacts.keys()));
        entries
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
            Input::History {
                with,
                messages,
                complete,
            } => self.history(&with, messages, complete),
            Input::HistoryFailed { with, why } => {
                self.conversations
                    .entry(with.clone())
                    .or_default()
                    .loading_older = false;
                self.notice = format!("no history with {with}: {why}");
            }
            Input::Room { room, input } => self.room_input(room, input),
            Input::Invited { room, invitation } => self.invited(room, invitation),
            Input::Notice(text) => self.notice = text,
            Input::Reconnecting { attempt } => {
                self.connection = Connection::Reconnecting { attempt };
                self.notice = format!("connection lost; reconnecting (attempt {attempt})…");
            }
            Input::Back => {
                self.connection = Connection::Online;
                self.notice = "back".into();
            }
            Input::Disconnected(why) => {
                self.connection = Connection::Offline;
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
            Key::PageUp => self.page_up(),
            Key::PageDown => {
                self.page_down();
                Vec::new()
            }
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
        // A room's recent history comes with entering it.
        if kind == Some(EntryKind::Contact) && self.mam && !conversation.history_requested {
            conversation.history_requested = true;
            return vec![Action::LoadHistory {
                with: jid.to_owned(),
                archive: Archive::Account,
                before: String::new(),
            }];
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
            EntryKind::Invitation => {
                self.notice = format!("{} is an invitation: /join it", entry.jid);
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
                        archive_id: None,
                        who: "me".into(),
                        body: line.to_owned(),
                        stamp: corvid_proto::time::format_datetime(SystemTime::now()),
                        outgoing: true,
                        system: false,
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
            archive_id: message.archive_id.clone(),
            who,
            body: message.body.clone(),
            stamp: message.stamp.clone(),
            outgoing,
            system: false,
        };
        Some((with, line))
    }

    /// Adds a line unless it is there (a carbon or reflection of what we showed already,
    /// the same id in the same direction; or a room's history sent again, the same archive
    /// id); whether it was added. A conversation scrolled back stays where it is.
    fn push_line(&mut self, with: &str, line: Line) -> bool {
        let conversation = self.conversations.entry(with.to_owned()).or_default();
        if conversation.lines.iter().any(|l| same_message(l, &line)) {
            return false;
        }
        conversation.lines.push(line);
        if conversation.scroll > 0 {
            conversation.scroll += 1;
        }
        if conversation.lines.len() > MAX_LINES {
            let excess = conversation.lines.len() - MAX_LINES;
            conversation.lines.drain(..excess);
        }
        true
    }

    /// A system line in `with`'s conversation.
    fn say(&mut self, with: &str, text: String) {
        self.push_line(with, Line::system(text));
    }
}

/// Whether two lines show the same message.
fn same_message(a: &Line, b: &Line) -> bool {
    let same_archived = a.archive_id.is_some() && a.archive_id == b.archive_id;
    let same_sent = a.id.is_some() && a.id == b.id && a.outgoing == b.outgoing;
    same_archived || same_sent
}

#[cfg(test)]
mod tests;
