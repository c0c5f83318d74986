//! Scrolling a conversation back (PageUp, PageDown) and, past its oldest line, paging back
//! through the archive that keeps it (XEP-0313 with XEP-0059 `<before/>`: the page before
//! the oldest archive id shown).

use std::collections::BTreeSet;

use super::{Action, Archive, State};
use crate::message::ChatMessage;

impl State {
    /// PageUp: a page further back; at the oldest line already, the archive's page before
    /// it, if there is an archive and it may hold more.
    pub(super) fn page_up(&mut self) -> Vec<Action> {
        let Some(with) = self.selected.clone() else {
            return Vec::new();
        };
        let page = self.page.max(1);
        let archive = self.archive_of(&with);
        let conversation = self.conversations.entry(with.clone()).or_default();
        let top = conversation.lines.len().saturating_sub(page);
        if conversation.scroll < top {
            conversation.scroll = (conversation.scroll + page).min(top);
            return Vec::new();
        }
        conversation.scroll = top;
        let Some(archive) = archive else {
            return Vec::new();
        };
        if conversation.archive_exhausted {
            self.notice = format!("the beginning of the conversation with {with}");
            return Vec::new();
        }
        if conversation.loading_older {
            return Vec::new();
        }
        conversation.loading_older = true;
        // Without an archive id on screen, the newest page: what is shown already is not
        // shown twice.
        let before = conversation
            .lines
            .iter()
            .find_map(|l| l.archive_id.clone())
            .unwrap_or_default();
        self.notice = "loading older messages…".into();
        vec![Action::LoadHistory {
            with,
            archive,
            before,
        }]
    }

    /// PageDown: a page nearer the newest line.
    pub(super) fn page_down(&mut self) {
        let page = self.page.max(1);
        if let Some(with) = &self.selected
            && let Some(conversation) = self.conversations.get_mut(with)
        {
            conversation.scroll = conversation.scroll.saturating_sub(page);
        }
    }

    /// Which archive keeps the conversation with `with`, if any does.
    fn archive_of(&self, with: &str) -> Option<Archive> {
        match self.rooms.get(with) {
            Some(room) => room.archived.then_some(Archive::Room),
            None => self.mam.then_some(Archive::Account),
        }
    }

    /// A page of the archive goes before what is shown already, without the messages
    /// shown (by id or archive id). Asked for by PageUp, it comes into view.
    pub(super) fn history(&mut self, with: &str, messages: Vec<ChatMessage>, complete: bool) {
        let conversation = self.conversations.entry(with.to_owned()).or_default();
        let ids: BTreeSet<String> = conversation
            .lines
            .iter()
            .filter_map(|l| l.id.clone())
            .collect();
        let archive_ids: BTreeSet<String> = conversation
            .lines
            .iter()
            .filter_map(|l| l.archive_id.clone())
            .collect();
        let known = |id: &Option<String>, known: &BTreeSet<String>| {
            id.as_ref().is_some_and(|id| known.contains(id))
        };
        let mut lines = Vec::new();
        for message in messages {
            if let Some((_, line)) = self.line_of(&message)
                && !known(&line.id, &ids)
                && !known(&line.archive_id, &archive_ids)
            {
                lines.push(line);
            }
        }
        let added = lines.len();
        let page = self.page.max(1);
        let conversation = self.conversations.entry(with.to_owned()).or_default();
        lines.append(&mut conversation.lines);
        conversation.lines = lines;
        if complete {
            conversation.archive_exhausted = true;
        }
        if std::mem::take(&mut conversation.loading_older) {
            let top = conversation.lines.len().saturating_sub(page);
            conversation.scroll = (conversation.scroll + added.min(page)).min(top);
            self.notice = match (added, complete) {
                (0, true) => format!("the beginning of the conversation with {with}"),
                (n, _) => format!("{n} older messages"),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bodies, chat, contact, groupchat, room_input, state, typed};
    use super::super::{Input, Key, RoomInput};
    use super::*;

    /// `n` archived messages from romeo, ids `{prefix}{i}` (archive ids too).
    fn archived(prefix: &str, range: std::ops::Range<usize>) -> Vec<ChatMessage> {
        range
            .map(|i| {
                let id = format!("{prefix}{i}");
                chat("romeo@x/a", "me@x", &id, &id).archived_as(&id)
            })
            .collect()
    }

    fn scroll(s: &State, with: &str) -> usize {
        s.conversations[with].scroll
    }

    #[test]
    fn page_up_scrolls_back_then_loads_the_archive_page_before_the_oldest_line() {
        let mut s = state();
        s.page = 3;
        s.apply(contact("romeo@x", None));
        assert_eq!(s.key(Key::Tab).len(), 1, "the newest page is asked for");
        s.apply(Input::History {
            with: "romeo@x".into(),
            messages: archived("a", 4..8),
            complete: false,
        });
        // Seven lines up to the top: one line to scroll, then the archive.
        assert!(s.key(Key::PageUp).is_empty());
        assert_eq!(scroll(&s, "romeo@x"), 1);
        assert_eq!(
            s.key(Key::PageUp),
            [Action::LoadHistory {
                with: "romeo@x".into(),
                archive: Archive::Account,
                before: "a4".into()
            }]
        );
        assert!(s.conversations["romeo@x"].loading_older);
        // One page at a time.
        assert!(s.key(Key::PageUp).is_empty());
        // The older page goes on top, without what is shown already, and comes into view.
        let mut older = archived("a", 0..4);
        older.push(chat("romeo@x/a", "me@x", "a4", "a4").archived_as("a4"));
        s.apply(Input::History {
            with: "romeo@x".into(),
            messages: older,
            complete: true,
        });
        assert_eq!(
            bodies(&s, "romeo@x"),
            ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7"].map(|b| format!("romeo@x: {b}"))
        );
        assert_eq!(scroll(&s, "romeo@x"), 4);
        assert_eq!(s.notice, "4 older messages");
        // The top of a complete archive is the beginning.
        assert!(s.key(Key::PageUp).is_empty());
        assert_eq!(scroll(&s, "romeo@x"), 5);
        assert!(s.key(Key::PageUp).is_empty());
        assert!(s.notice.contains("the beginning"), "{}", s.notice);
        // A new message while scrolled back leaves the view where it is.
        s.apply(Input::Message(chat("romeo@x/a", "me@x", "new", "n1")));
        assert_eq!(scroll(&s, "romeo@x"), 6);
        s.key(Key::PageDown);
        s.key(Key::PageDown);
        assert_eq!(scroll(&s, "romeo@x"), 0);
        s.key(Key::PageDown);
        assert_eq!(scroll(&s, "romeo@x"), 0);
    }

    #[test]
    fn without_an_archive_the_top_is_the_top() {
        let mut s = state();
        s.mam = false;
        s.page = 2;
        s.apply(contact("romeo@x", None));
        s.key(Key::Tab);
        for i in 0..3 {
            let id = i.to_string();
            s.apply(Input::Message(chat("romeo@x/a", "me@x", &id, &id)));
        }
        assert!(s.key(Key::PageUp).is_empty());
        assert!(s.key(Key::PageUp).is_empty());
        assert_eq!(scroll(&s, "romeo@x"), 1);
        // Nothing selected, nothing to scroll.
        let mut s = state();
        assert!(s.key(Key::PageUp).is_empty());
    }

    #[test]
    fn a_failed_page_can_be_asked_for_again() {
        let mut s = state();
        s.apply(contact("romeo@x", None));
        s.key(Key::Tab);
        assert_eq!(s.key(Key::PageUp).len(), 1);
        s.apply(Input::HistoryFailed {
            with: "romeo@x".into(),
            why: "timeout".into(),
        });
        assert!(s.notice.contains("timeout"));
        assert_eq!(s.key(Key::PageUp).len(), 1);
    }

    #[test]
    fn a_room_with_an_archive_pages_back_through_its_own() {
        let mut s = state();
        typed(&mut s, "/join lobby@conf.x juliet");
        s.apply(room_input(
            "lobby@conf.x",
            RoomInput::Joined {
                nick: "juliet".into(),
            },
        ));
        s.apply(Input::Message(
            groupchat("lobby@conf.x/romeo", "hi", "g1").archived_as("r7"),
        ));
        // Until the room says it keeps an archive, there is none to page through.
        assert!(s.key(Key::PageUp).is_empty());
        s.apply(room_input("lobby@conf.x", RoomInput::Archived));
        assert_eq!(
            s.key(Key::PageUp),
            [Action::LoadHistory {
                with: "lobby@conf.x".into(),
                archive: Archive::Room,
                before: "r7".into()
            }]
        );
    }
}
