//! Drawing the state: contacts, rooms, requests and invitations on the left; the open
//! conversation on the right (a room's with its subject in the title and its occupants
//! beside); the input line and a status bar below. Plain ASCII markers, so the screen
//! reads the same on any terminal (and in `tmux capture-pane`).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph};

use super::state::{Connection, EntryKind, Line, State};
use crate::presence::Show;

const LEFT_WIDTH: u16 = 44;
/// The width of a room's occupant list.
const OCCUPANTS_WIDTH: u16 = 24;

/// The main area (entries and conversation) and, below it, the input line and the status.
fn rows(area: Rect) -> [Rect; 3] {
    Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(area)
}

/// How many lines of a conversation fit on a screen of `area`: a page to scroll by.
pub fn conversation_rows(area: Rect) -> usize {
    let [main, ..] = rows(area);
    main.height.saturating_sub(2) as usize
}

pub fn draw(frame: &mut Frame, state: &State) {
    let [main, input, status] = rows(frame.area());
    let [left, right] =
        Layout::horizontal([Constraint::Length(LEFT_WIDTH), Constraint::Min(10)]).areas(main);
    draw_entries(frame, state, left);
    let room = state.selected.as_ref().and_then(|jid| state.rooms.get(jid));
    match room {
        Some(room) => {
            let [conversation, occupants] =
                Layout::horizontal([Constraint::Min(10), Constraint::Length(OCCUPANTS_WIDTH)])
                    .areas(right);
            draw_conversation(frame, state, conversation);
            draw_occupants(frame, room, occupants);
        }
        None => draw_conversation(frame, state, right),
    }
    draw_input(frame, state, input);
    draw_status(frame, state, status);
}

/// The marker before a contact: `+` available, `~` away, `!` busy, `.` offline.
fn presence_marker(show: Option<Show>) -> char {
    match show {
        Some(Show::Chat | Show::Online) => '+',
        Some(Show::Away | Show::Xa) => '~',
        Some(Show::Dnd) => '!',
        None => '.',
    }
}

fn draw_entries(frame: &mut Frame, state: &State, area: Rect) {
    let entries = state.entries();
    let items: Vec<ListItem> = entries
        .iter()
        .map(|entry| {
            let unread = match state.unread(&entry.jid) {
                0 => String::new(),
                n => format!(" ({n})"),
            };
            let text = match entry.kind {
                EntryKind::Request => format!("? {} (request)", entry.jid),
                EntryKind::Invitation => format!("! {} (invitation)", entry.jid),
                EntryKind::Room => {
                    let joined = state.rooms.get(&entry.jid).is_some_and(|r| r.joined);
                    let mark = if joined { "" } else { " (joining)" };
                    format!("# {}{mark}{unread}", entry.jid)
                }
                EntryKind::Contact => {
                    let contact = &state.contacts[&entry.jid];
                    let label = match &contact.name {
                        Some(name) => format!("{name} <{}>", entry.jid),
                        None => entry.jid.clone(),
                    };
                    let ask = if contact.pending_out { " (asked)" } else { "" };
                    format!("{} {label}{ask}{unread}", presence_marker(contact.presence))
                }
            };
            ListItem::new(text)
        })
        .collect();
    let selected = state
        .selected
        .as_ref()
        .and_then(|s| entries.iter().position(|e| &e.jid == s));
    let list = List::new(items)
        .block(Block::bordered().title(" Contacts "))
        .highlight_symbol(">")
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut list_state = ListState::default().with_selected(selected);
    frame.render_stateful_widget(list, area, &mut list_state);
}

fn draw_conversation(frame: &mut Frame, state: &State, area: Rect) {
    let Some(with) = state.selected.as_deref() else {
        let help = Paragraph::new(
            "Tab or Up/Down select a contact or room; /chat JID talks to anyone; \
             /join ROOM NICK; /help lists all commands.",
        )
        .block(Block::bordered().title(" No conversation "));
        frame.render_widget(help, area);
        return;
    };
    let conversation = state.conversations.get(with);
    let lines = conversation.map_or(&[][..], |c| &c.lines[..]);
    let scroll = conversation.map_or(0, |c| c.scroll);
    // The lines that fit, ending `scroll` lines above the newest; oldest at the top.
    let height = area.height.saturating_sub(2) as usize;
    let end = lines.len().saturating_sub(scroll);
    let shown = &lines[end.saturating_sub(height)..end];
    let text: Vec<TextLine> = shown.iter().map(line).collect();
    let subject = state
        .rooms
        .get(with)
        .and_then(|r| r.subject.as_deref())
        .map_or_else(String::new, |s| format!("- {s} "));
    let position = match conversation {
        Some(c) if c.loading_older => "[loading older…] ".to_owned(),
        Some(c) if c.scroll > 0 => {
            format!("[{} newer below, PageDown] ", c.scroll.min(lines.len()))
        }
        _ => String::new(),
    };
    let title = format!(" {with} {subject}{position}");
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(title)),
        area,
    );
}

fn draw_occupants(frame: &mut Frame, room: &super::state::Room, area: Rect) {
    let items: Vec<ListItem> = room
        .occupants
        .iter()
        .map(|nick| {
            let me = if *nick == room.nick { " (you)" } else { "" };
            ListItem::new(format!("{nick}{me}"))
        })
        .collect();
    let title = format!(" Occupants ({}) ", room.occupants.len());
    frame.render_widget(List::new(items).block(Block::bordered().title(title)), area);
}

fn line(line: &Line) -> TextLine<'_> {
    // `YYYY-MM-DDThh:mm…`: the time of day.
    let time = line.stamp.get(11..16).unwrap_or("--:--");
    if line.system {
        return TextLine::from(vec![
            Span::raw(format!("{time} ")),
            Span::styled(
                format!("-- {}", line.body),
                Style::new().add_modifier(Modifier::ITALIC),
            ),
        ]);
    }
    let who_style = if line.outgoing {
        Style::new().add_modifier(Modifier::DIM)
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    };
    TextLine::from(vec![
        Span::raw(format!("{time} ")),
        Span::styled(format!("<{}>", line.who), who_style),
        Span::raw(format!(" {}", line.body)),
    ])
}

fn draw_input(frame: &mut Frame, state: &State, area: Rect) {
    let title = match state.selected_entry() {
        Some(entry) => format!(" To {} (Enter sends) ", entry.jid),
        None => " Command (/help) ".to_owned(),
    };
    // The end of a long input stays visible.
    let width = area.width.saturating_sub(2) as usize;
    let chars = state.input.chars().count();
    let visible: String = state
        .input
        .chars()
        .skip(chars.saturating_sub(width.saturating_sub(1)))
        .collect();
    let cursor_x = area.x + 1 + visible.chars().count() as u16;
    frame.render_widget(
        Paragraph::new(visible).block(Block::bordered().title(title)),
        area,
    );
    frame.set_cursor_position(Position::new(cursor_x, area.y + 1));
}

fn draw_status(frame: &mut Frame, state: &State, area: Rect) {
    let connection = match state.connection {
        Connection::Online => state.own_show.as_str(),
        Connection::Reconnecting { .. } => "reconnecting",
        Connection::Offline => "offline",
    };
    let status = state
        .own_status
        .as_deref()
        .map_or_else(String::new, |s| format!(" \"{s}\""));
    let text = format!(" {} [{connection}{status}] | {}", state.me, state.notice);
    frame.render_widget(
        Paragraph::new(text).style(Style::new().add_modifier(Modifier::REVERSED)),
        area,
    );
}
