//! The interactive client: logs in, then runs the terminal UI until `/quit` or Ctrl-C.
//!
//! The runtime here is the only part that touches the network and the terminal: it turns
//! stream, roster, carbon, room and invitation events into [`state::Input`]s, keys into
//! [`state::Key`]s, and carries out the [`state::Action`]s the state returns (rooms
//! through `rooms.rs`). The state itself (`state.rs`) and the drawing (`view.rs`) do no
//! I/O. A lost connection comes back by itself (the SDK's reconnect policy); the status
//! line tells.

mod rooms;
pub mod state;
mod view;

use std::sync::Arc;

use corvid_client::{CarbonEvent, Carbons, Client, Event, Mam, MamQuery, Roster, RosterEvent};
use ratatui::crossterm::event::{self as term, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use self::rooms::Rooms;
use self::state::{Action, Archive, Input, Key, State};
use crate::account::Account;
use crate::message::{self, ChatMessage};
use crate::presence;
use crate::session::{Lifetime, Session};

/// Archived messages loaded when a conversation is opened, and per PageUp past the top.
const HISTORY_PAGE: usize = 50;

/// What the terminal reports.
enum Terminal {
    Key(Key),
    /// A resize, or a key we ignore: draw again.
    Redraw,
}

/// Logs in (errors and the password prompt before the screen is taken over), then runs the
/// UI.
pub async fn run(account: &Account) -> anyhow::Result<()> {
    let session = Session::connect(account, Lifetime::Lasting).await?;
    let mam_available = session.has_mam().await;
    let Session {
        client,
        mut events,
        roster,
        mut roster_events,
        mam,
        muc,
        mut muc_events,
        ..
    } = session;
    let (carbons, mut carbon_events) = Carbons::attach(&client);
    // Copies of what our other devices send and receive; a server without carbons is fine.
    let _ = carbons.enable().await;
    roster.fetch().await?;
    client
        .send(&presence::own_presence(presence::Show::Online, None))
        .await?;

    let mut state = State::new(account.jid.as_str(), mam_available, &client.new_id());
    let (feedback, mut feedback_in) = mpsc::unbounded_channel::<Input>();
    let rooms = Rooms::new(muc, client.clone(), feedback.clone());
    let worker = Worker {
        client: client.clone(),
        roster: roster.clone(),
        mam,
        rooms: rooms.clone(),
        feedback: feedback.clone(),
    };
    let actions = worker.spawn();
    let mut terminal_events = spawn_terminal_reader();
    let mut terminal = ratatui::try_init()?;

    let result: anyhow::Result<()> = async {
        loop {
            let mut page = state.page;
            terminal.draw(|frame| {
                page = view::conversation_rows(frame.area());
                view::draw(frame, &state);
            })?;
            state.page = page;
            tokio::select! {
                Some(event) = terminal_events.recv() => {
                    let Terminal::Key(key) = event else { continue };
                    for action in state.key(key) {
                        if action == Action::Quit {
                            return Ok(());
                        }
                        let _ = actions.send(action);
                    }
                }
                event = events.next() => match event {
                    Some(Event::CaughtUp { .. }) => {
                        // A new session: the server forgot our rooms and carbons.
                        state.apply(Input::Back);
                        rooms.rejoin_all();
                        let carbons = carbons.clone();
                        tokio::spawn(async move { carbons.enable().await });
                    }
                    Some(event) => stream_event(&mut state, event),
                    None => return Ok(()),
                },
                Some(event) = muc_events.next() => state.apply(rooms::input_of_muc(event)),
                Some(event) = roster_events.next() => roster_event(&mut state, &roster, event),
                Some(event) = carbon_events.recv() => {
                    let (CarbonEvent::Received(m) | CarbonEvent::Sent(m)) = event;
                    if let Some(message) = ChatMessage::parse(&m, None) {
                        state.apply(Input::Message(message));
                    }
                }
                Some(input) = feedback_in.recv() => state.apply(input),
            }
        }
    }
    .await;
    ratatui::restore();
    client.disconnect().await;
    result
}

/// Reads the terminal on a thread of its own (crossterm's read blocks).
fn spawn_terminal_reader() -> mpsc::UnboundedReceiver<Terminal> {
    let (sender, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        loop {
            let event = match term::read() {
                Ok(term::Event::Key(key)) if key.kind != KeyEventKind::Release => {
                    key_of(key.code, key.modifiers).map_or(Terminal::Redraw, Terminal::Key)
                }
                Ok(_) => Terminal::Redraw,
                Err(_) => break,
            };
            if sender.send(event).is_err() {
                break;
            }
        }
    });
    receiver
}

fn key_of(code: KeyCode, modifiers: KeyModifiers) -> Option<Key> {
    Some(match code {
        KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Esc => Key::Esc,
        _ => return None,
    })
}

/// What carries out the state's actions.
struct Worker {
    client: Client,
    roster: Arc<Roster>,
    mam: Arc<Mam>,
    rooms: Arc<Rooms>,
    feedback: mpsc::UnboundedSender<Input>,
}

impl Worker {
    /// Carries out actions in the order given (messages keep their order); the archive and
    /// entering rooms, which wait for answers, run beside.
    fn spawn(self) -> mpsc::UnboundedSender<Action> {
        let (sender, mut actions) = mpsc::unbounded_channel::<Action>();
        tokio::spawn(async move {
            while let Some(action) = actions.recv().await {
                if let Err(e) = self.perform(action).await {
                    let _ = self.feedback.send(Input::Notice(e));
                }
            }
        });
        sender
    }

    async fn perform(&self, action: Action) -> Result<(), String> {
        let failed = |what: &str, e: &dyn std::fmt::Display| format!("{what} failed: {e}");
        let (client, roster) = (&self.client, &self.roster);
        match action {
            Action::SendChat { to, body, id } => client
                .send(&message::outgoing(&to, "chat", &body, &id))
                .await
                .map_err(|e| failed("sending", &e)),
            Action::SendRoom { room, body } => self.rooms.send(&room, &body).await,
            Action::Join {
                room,
                nick,
                password,
            } => {
                self.rooms.join(room, nick, password);
                Ok(())
            }
            Action::Leave { room } => {
                self.rooms.leave(&room);
                Ok(())
            }
            Action::SetSubject { room, subject } => self.rooms.set_subject(&room, &subject).await,
            Action::Add(jid) => {
                roster
                    .set(&jid, None, &[])
                    .await
                    .map_err(|e| failed("adding", &e))?;
                roster
                    .subscribe(&jid)
                    .await
                    .map_err(|e| failed("asking", &e))
            }
            Action::Accept(jid) => roster
                .accept(&jid, true)
                .await
                .map_err(|e| failed("accepting", &e)),
            Action::Refuse(jid) => roster
                .refuse(&jid)
                .await
                .map_err(|e| failed("refusing", &e)),
            Action::Status { show, text } => client
                .send(&presence::own_presence(show, text.as_deref()))
                .await
                .map_err(|e| failed("changing status", &e)),
            Action::LoadHistory {
                with,
                archive,
                before,
            } => {
                let query = history_query(&with, archive, before);
                tokio::spawn(load_history(
                    self.mam.clone(),
                    with,
                    query,
                    self.feedback.clone(),
                ));
                Ok(())
            }
            Action::Quit => Ok(()),
        }
    }
}

/// A page of the archive with `with`: the account's messages with a contact, or a room's
/// own archive (XEP-0313 with XEP-0059 `<before/>`; empty: the newest page).
fn history_query(with: &str, archive: Archive, before: String) -> MamQuery {
    let (archive, with) = match archive {
        Archive::Account => (None, Some(with.to_owned())),
        Archive::Room => (Some(with.to_owned()), None),
    };
    MamQuery {
        archive,
        with,
        before: Some(before),
        max: Some(HISTORY_PAGE),
        ..MamQuery::default()
    }
}

async fn load_history(
    mam: Arc<Mam>,
    with: String,
    query: MamQuery,
    feedback: mpsc::UnboundedSender<Input>,
) {
    let input = match mam.query(&query).await {
        Ok(page) => Input::History {
            with,
            messages: page
                .messages
                .iter()
                .filter_map(|m| Some(ChatMessage::parse(&m.message, m.stamp)?.archived_as(&m.id)))
                .collect(),
            complete: page.complete,
        },
        Err(e) => Input::HistoryFailed {
            with,
            why: e.to_string(),
        },
    };
    let _ = feedback.send(input);
}

/// A stream event for the state; a new session after a loss is handled by the caller.
fn stream_event(state: &mut State, event: Event) {
    match event {
        Event::Message(stanza) if stanza.attr("type") == Some("error") => {
            let from = stanza.attr("from").unwrap_or("the server");
            state.apply(Input::Notice(format!(
                "error from {from}: {}",
                message::error_text(&stanza)
            )));
        }
        Event::Message(stanza) => {
            if let Some(message) = ChatMessage::parse(&stanza, None) {
                state.apply(Input::Message(message));
            }
        }
        // A loss the SDK comes back from: `Reconnecting` follows.
        Event::Disconnected(reason) if reason.reconnects() => {}
        Event::Disconnected(reason) => state.apply(Input::Disconnected(format!("{reason:?}"))),
        Event::Reconnecting { attempt, .. } => state.apply(Input::Reconnecting { attempt }),
        Event::ReconnectFailed {
            error,
            gave_up: true,
            ..
        } => state.apply(Input::Disconnected(error)),
        Event::Resumed { .. } => state.apply(Input::Back),
        _ => {}
    }
}

fn roster_event(state: &mut State, roster: &Roster, event: RosterEvent) {
    match event {
        RosterEvent::Populated { .. } => {
            for item in roster.items() {
                state.apply(Input::Contact(item));
            }
        }
        RosterEvent::Changed(item) => state.apply(Input::Contact(item)),
        RosterEvent::Removed(jid) => state.apply(Input::ContactRemoved(jid)),
        RosterEvent::SubscriptionRequest(jid) => state.apply(Input::Request(jid)),
        RosterEvent::Presence { jid, .. } => {
            let show = presence::summary(&roster.presence(&jid));
            state.apply(Input::Presence { jid, show });
        }
    }
}
