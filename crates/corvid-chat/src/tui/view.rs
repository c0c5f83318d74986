//! Drawing the state: contacts, rooms and requests on the left; the open conversation on
//! the right; the input line and a status bar below. Plain ASCII markers, so the screen
//! reads the same on any terminal (and in `tmux capture-pane`).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph};

use super::state::{EntryKind, Line, State};
use crate::presence::Show;

const LEFT_WIDTH: u16 = 44;

pub fn draw(frame: &mut Frame, state: &State) {
    let [main, input, status] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [left, right] =
        Layout::horizontal([Constraint::Length(LEFT_WIDTH), Constraint::Min(10)]).areas(main);
    draw_entries(frame, state, left);
    draw_conversation(frame, state, right);
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
    let lines = state
        .conversations
        .get(with)
        .map_or(&[][..], |c| &c.lines[..]);
    // The newest lines that fit, oldest at the top.
    let height = area.height.saturating_sub(2) as usize;
    let shown = &lines[lines.len().saturating_sub(height)..];
    let text: Vec<TextLine> = shown.iter().map(line).collect();
    let title = format!(" {with} ");
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(title)),
        area,
    );
}

fn line(line: &Line) -> TextLine<'_> {
    // `YYYY-MM-DDThh:mm…`: the time of day.
    let time = line.stamp.get(11..16).unwrap_or("--:--");
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
    let connection = if state.online {
        state.own_show.as_str()
    } else {
        "offline"
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
