//! The interactive client: logs in, then runs the terminal UI until `/quit` or Ctrl-C.
//!
//! The runtime here is the only part that touches the network and the terminal: it turns
//! stream, roster and carbon events into [`state::Input`]s, keys into [`state::Key`]s, and
//! carries out the [`state::Action`]s the state returns. The state itself (`state.rs`)
//! and the drawing (`view.rs`) do no I/O.

pub mod state;
mod view;

use std::sync::Arc;

use corvid_client::{CarbonEvent, Carbons, Client, Event, Mam, MamQuery, Roster, RosterEvent};
use corvid_xml::Element;
use ratatui::crossterm::event::{self as term, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use self::state::{Action, Input, Key, State};
use crate::account::Account;
use crate::message::{self, ChatMessage};
use crate::muc::{self, JoinOutcome};
use crate::presence;
use crate::session::Session;

/// Archived messages loaded when a conversation is opened.
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
    let session = Session::connect(account).await?;
    let mam_available = session.has_mam().await;
    let Session {
        client,
        mut events,
        roster,
        mut roster_events,
        mam,
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
    let actions = spawn_worker(client.clone(), roster.clone(), mam, feedback.clone());
    let mut terminal_events = spawn_terminal_reader();
    let mut terminal = ratatui::try_init()?;

    let result: anyhow::Result<()> = async {
        loop {
            terminal.draw(|frame| view::draw(frame, &state))?;
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
                    Some(event) => stream_event(&mut state, &client, &feedback, event),
                    None => return Ok(()),
                },
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
        KeyCode::Esc => Key::Esc,
        _ => return None,
    })
}

/// Carries out actions in the order given (messages keep their order); the archive and
/// room unlocking, which wait for answers, run beside.
fn spawn_worker(
    client: Client,
    roster: Arc<Roster>,
    mam: Arc<Mam>,
    feedback: mpsc::UnboundedSender<Input>,
) -> mpsc::UnboundedSender<Action> {
    let (sender, mut actions) = mpsc::unbounded_channel::<Action>();
    tokio::spawn(async move {
        while let Some(action) = actions.recv().await {
            if let Action::LoadHistory(with) = action {
                tokio::spawn(load_history(mam.clone(), with, feedback.clone()));
                continue;
            }
            if let Err(e) = perform(&client, &roster, action).await {
                let _ = feedback.send(Input::Notice(e));
            }
        }
    });
    sender
}

async fn perform(client: &Client, roster: &Roster, action: Action) -> Result<(), String> {
    let failed = |what: &str, e: &dyn std::fmt::Display| format!("{what} failed: {e}");
    match action {
        Action::SendChat { to, body, id } => client
            .send(&message::outgoing(&to, "chat", &body, &id))
            .await
            .map_err(|e| failed("sending", &e)),
        Action::SendRoom { room, body } => client
            .send(&message::outgoing(
                &room,
                "groupchat",
                &body,
                &client.new_id(),
            ))
            .await
            .map_err(|e| failed("sending", &e)),
        Action::Join { room, nick } => client
            .send(&muc::join_presence(&room, &nick))
            .await
            .map_err(|e| failed("joining", &e)),
        Action::Leave { room, nick } => client
            .send(&muc::leave_presence(&room, &nick))
            .await
            .map_err(|e| failed("leaving", &e)),
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
        Action::LoadHistory(_) | Action::Quit => Ok(()),
    }
}

/// The last page of the archive with `with` (XEP-0313 with XEP-0059 `<before/>`).
async fn load_history(mam: Arc<Mam>, with: String, feedback: mpsc::UnboundedSender<Input>) {
    let query = MamQuery {
        with: Some(with.clone()),
        before: Some(String::new()),
        max: Some(HISTORY_PAGE),
        ..MamQuery::default()
    };
    let input = match mam.query(&query).await {
        Ok(page) => Input::History {
            with,
            messages: page
                .messages
                .iter()
                .filter_map(|m| ChatMessage::parse(&m.message, m.stamp))
                .collect(),
        },
        Err(e) => Input::Notice(format!("no history with {with}: {e}")),
    };
    let _ = feedback.send(input);
}

fn stream_event(
    state: &mut State,
    client: &Client,
    feedback: &mpsc::UnboundedSender<Input>,
    event: Event,
) {
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
        Event::Presence(presence) => room_presence(state, client, feedback, &presence),
        Event::Disconnected(reason) => state.apply(Input::Disconnected(format!("{reason:?}"))),
        _ => {}
    }
}

/// A presence from a room we are joining: are we in? A new room is unlocked as an instant
/// room (XEP-0045 §10.1.2).
fn room_presence(
    state: &mut State,
    client: &Client,
    feedback: &mpsc::UnboundedSender<Input>,
    presence: &Element,
) {
    let joining: Vec<(String, String)> = state
        .rooms
        .iter()
        .filter(|(_, r)| !r.joined)
        .map(|(jid, r)| (jid.clone(), r.nick.clone()))
        .collect();
    for (room, nick) in joining {
        match muc::join_outcome(presence, &room, &nick) {
            Some(JoinOutcome::Joined { created }) => {
                if created {
                    let client = client.clone();
                    let feedback = feedback.clone();
                    let room = room.clone();
                    tokio::spawn(async move {
                        if let Err(e) = client.request(muc::instant_room(&room)).await {
                            let _ =
                                feedback.send(Input::Notice(format!("cannot unlock {room}: {e}")));
                        }
                    });
                }
                state.apply(Input::Joined { room, nick });
            }
            Some(JoinOutcome::Refused(why)) => state.apply(Input::Left { room, why }),
            None => {}
        }
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
