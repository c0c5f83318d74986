use corvid_client::Subscription;

use super::command::Command;
use super::*;

pub(super) fn state() -> State {
    State::new("me@x", true, "t")
}

pub(super) fn contact(jid: &str, name: Option<&str>) -> Input {
    Input::Contact(RosterItem {
        jid: jid.into(),
        name: name.map(str::to_owned),
        subscription: Subscription::Both,
        ..RosterItem::default()
    })
}

pub(super) fn chat(from: &str, to: &str, body: &str, id: &str) -> ChatMessage {
    ChatMessage {
        from: from.into(),
        to: Some(to.into()),
        kind: "chat".into(),
        body: body.into(),
        id: Some(id.into()),
        stamp: "2024-01-02T03:04:05Z".into(),
        archive_id: None,
    }
}

pub(super) fn groupchat(from: &str, body: &str, id: &str) -> ChatMessage {
    ChatMessage {
        kind: "groupchat".into(),
        ..chat(from, "me@x/desk", body, id)
    }
}

pub(super) fn room_input(room: &str, input: RoomInput) -> Input {
    Input::Room {
        room: room.into(),
        input,
    }
}

pub(super) fn typed(state: &mut State, text: &str) -> Vec<Action> {
    for c in text.chars() {
        assert!(state.key(Key::Char(c)).is_empty());
    }
    state.key(Key::Enter)
}

pub(super) fn bodies(state: &State, with: &str) -> Vec<String> {
    state.conversations[with]
        .lines
        .iter()
        .map(|l| match l.system {
            true => format!("-- {}", l.body),
            false => format!("{}: {}", l.who, l.body),
        })
        .collect()
}

#[test]
fn roster_and_presence_fill_the_contact_list() {
    let mut s = state();
    s.apply(contact("romeo@x", Some("Romeo")));
    s.apply(contact("benvolio@x", None));
    s.apply(Input::Presence {
        jid: "romeo@x".into(),
        show: Some(Show::Away),
    });
    // Presence of someone not in the roster (a room occupant, say) adds nobody.
    s.apply(Input::Presence {
        jid: "stranger@x".into(),
        show: Some(Show::Online),
    });
    assert_eq!(s.contacts["romeo@x"].presence, Some(Show::Away));
    assert_eq!(s.contacts["romeo@x"].subscription, "both");
    let jids: Vec<_> = s.entries().into_iter().map(|e| e.jid).collect();
    assert_eq!(jids, ["benvolio@x", "romeo@x"]);
    s.apply(Input::ContactRemoved("benvolio@x".into()));
    assert_eq!(s.entries().len(), 1);
}

#[test]
fn messages_to_other_conversations_count_as_unread_until_opened() {
    let mut s = state();
    s.apply(contact("romeo@x", None));
    s.apply(Input::Message(chat("romeo@x/phone", "me@x", "hi", "1")));
    s.apply(Input::Message(chat("romeo@x/phone", "me@x", "there?", "2")));
    assert_eq!(s.unread("romeo@x"), 2);
    let actions = s.key(Key::Tab);
    assert_eq!(
        actions,
        [Action::LoadHistory {
            with: "romeo@x".into(),
            archive: Archive::Account,
            before: String::new()
        }]
    );
    assert_eq!(s.unread("romeo@x"), 0);
    // The open conversation gains no unread count.
    s.apply(Input::Message(chat("romeo@x/phone", "me@x", "ok", "3")));
    assert_eq!(s.unread("romeo@x"), 0);
    assert_eq!(
        bodies(&s, "romeo@x"),
        ["romeo@x: hi", "romeo@x: there?", "romeo@x: ok"]
    );
    // History is asked for once per conversation.
    s.key(Key::Tab);
    assert!(s.key(Key::Tab).is_empty());
}

#[test]
fn strangers_get_a_conversation_too() {
    let mut s = state();
    s.apply(Input::Message(chat("juliet@y/a", "me@x", "hello?", "1")));
    assert!(s.contacts.contains_key("juliet@y"));
    assert!(!s.contacts["juliet@y"].in_roster);
    assert_eq!(s.unread("juliet@y"), 1);
}

#[test]
fn enter_sends_to_the_selected_contact_and_shows_it() {
    let mut s = state();
    s.apply(contact("romeo@x", Some("Romeo")));
    assert!(typed(&mut s, "nobody selected").is_empty());
    assert!(s.notice.contains("select"));
    s.key(Key::Down);
    let actions = typed(&mut s, "hello Romeo");
    assert_eq!(
        actions,
        [Action::SendChat {
            to: "romeo@x".into(),
            body: "hello Romeo".into(),
            id: "t-1".into()
        }]
    );
    assert_eq!(s.input, "");
    // The carbon of our own message (same id) is not shown twice.
    s.apply(Input::Message(chat(
        "me@x/other",
        "romeo@x",
        "hello Romeo",
        "t-1",
    )));
    s.apply(Input::Message(chat("romeo@x/a", "me@x", "hi", "r1")));
    assert_eq!(bodies(&s, "romeo@x"), ["me: hello Romeo", "Romeo: hi"]);
}

#[test]
fn history_goes_before_live_lines_without_duplicates() {
    let mut s = state();
    s.apply(contact("romeo@x", None));
    s.apply(Input::Message(chat("romeo@x/a", "me@x", "live", "2")));
    s.apply(Input::History {
        with: "romeo@x".into(),
        messages: vec![
            chat("me@x/old", "romeo@x", "earlier", "0"),
            chat("romeo@x/a", "me@x", "before", "1"),
            chat("romeo@x/a", "me@x", "live", "2"),
        ],
        complete: false,
    });
    assert_eq!(
        bodies(&s, "romeo@x"),
        ["me: earlier", "romeo@x: before", "romeo@x: live"]
    );
}

#[test]
fn joining_a_room_selects_it_and_room_messages_show_by_nick() {
    let mut s = state();
    let actions = typed(&mut s, "/join Lobby@conf.x juliet");
    assert_eq!(
        actions,
        [Action::Join {
            room: "lobby@conf.x".into(),
            nick: "juliet".into(),
            password: None,
        }]
    );
    assert_eq!(s.selected.as_deref(), Some("lobby@conf.x"));
    s.apply(room_input(
        "lobby@conf.x",
        RoomInput::Joined {
            nick: "juliet".into(),
        },
    ));
    assert!(s.rooms["lobby@conf.x"].joined);
    // Our message goes to the room and shows when the room reflects it.
    let actions = typed(&mut s, "hi all");
    assert_eq!(
        actions,
        [Action::SendRoom {
            room: "lobby@conf.x".into(),
            body: "hi all".into()
        }]
    );
    s.apply(Input::Message(groupchat(
        "lobby@conf.x/juliet",
        "hi all",
        "g1",
    )));
    s.apply(Input::Message(groupchat(
        "lobby@conf.x/romeo",
        "hello",
        "g2",
    )));
    // A room we are not in says nothing.
    s.apply(Input::Message(groupchat("other@conf.x/x", "psst", "g3")));
    // A private message from an occupant stays with the room, marked private.
    s.apply(Input::Message(chat(
        "lobby@conf.x/romeo",
        "me@x/desk",
        "psst",
        "p1",
    )));
    assert_eq!(
        bodies(&s, "lobby@conf.x"),
        ["juliet: hi all", "romeo: hello", "romeo (private): psst"]
    );
    assert!(!s.contacts.contains_key("lobby@conf.x"));
    assert!(s.conversations["lobby@conf.x"].lines[0].outgoing);
    assert!(!s.conversations.contains_key("other@conf.x"));
    assert_eq!(
        typed(&mut s, "/leave"),
        [Action::Leave {
            room: "lobby@conf.x".into(),
        }]
    );
    assert!(s.rooms.is_empty());
}

#[test]
fn friend_requests_are_listed_first_and_answered() {
    let mut s = state();
    s.apply(contact("romeo@x", None));
    s.apply(Input::Request("tybalt@x".into()));
    s.apply(Input::Request("paris@x".into()));
    let kinds: Vec<_> = s.entries().into_iter().map(|e| (e.kind, e.jid)).collect();
    assert_eq!(
        kinds,
        [
            (EntryKind::Request, "paris@x".to_string()),
            (EntryKind::Request, "tybalt@x".to_string()),
            (EntryKind::Contact, "romeo@x".to_string()),
        ]
    );
    // Accept the selected request, refuse another by JID.
    s.key(Key::Tab);
    assert_eq!(typed(&mut s, "/accept"), [Action::Accept("paris@x".into())]);
    assert_eq!(
        typed(&mut s, "/refuse tybalt@x/res"),
        [Action::Refuse("tybalt@x".into())]
    );
    assert!(s.requests.is_empty());
    assert!(typed(&mut s, "/accept").is_empty());
}

#[test]
fn selection_wraps_around_both_ways() {
    let mut s = state();
    s.mam = false;
    assert!(s.key(Key::Tab).is_empty());
    assert_eq!(s.selected, None);
    s.apply(contact("a@x", None));
    s.apply(contact("b@x", None));
    s.key(Key::Up);
    assert_eq!(s.selected.as_deref(), Some("b@x"));
    s.key(Key::Down);
    assert_eq!(s.selected.as_deref(), Some("a@x"));
    s.key(Key::BackTab);
    assert_eq!(s.selected.as_deref(), Some("b@x"));
}

#[test]
fn editing_keys() {
    let mut s = state();
    s.key(Key::Char('a'));
    s.key(Key::Char('b'));
    s.key(Key::Backspace);
    assert_eq!(s.input, "a");
    s.key(Key::Esc);
    assert_eq!(s.input, "");
    assert_eq!(s.key(Key::Interrupt), [Action::Quit]);
    assert_eq!(typed(&mut s, "/quit"), [Action::Quit]);
}

#[test]
fn commands_parse() {
    assert_eq!(
        parse_command("/status away out for lunch"),
        Ok(Command::Status {
            show: Show::Away,
            text: Some("out for lunch".into())
        })
    );
    assert_eq!(
        parse_command("/status online"),
        Ok(Command::Status {
            show: Show::Online,
            text: None
        })
    );
    assert_eq!(
        parse_command("/away brb"),
        Ok(Command::Status {
            show: Show::Away,
            text: Some("brb".into())
        })
    );
    assert!(parse_command("/status sleepy").is_err());
    assert_eq!(
        parse_command("/add romeo@x"),
        Ok(Command::Add("romeo@x".into()))
    );
    assert!(parse_command("/add").is_err());
    assert!(parse_command("/add a@x b@x").is_err());
    assert!(parse_command("/join room nick").is_err(), "a room is a JID");
    assert_eq!(
        parse_command("/join r@c"),
        Ok(Command::Join {
            room: Some("r@c".into()),
            nick: None
        })
    );
    assert_eq!(
        parse_command("/join"),
        Ok(Command::Join {
            room: None,
            nick: None
        })
    );
    assert!(parse_command("/join r@c nick extra").is_err());
    assert_eq!(
        parse_command("/chat Romeo@X/phone"),
        Ok(Command::Chat("romeo@x".into()))
    );
    assert_eq!(parse_command("/accept"), Ok(Command::Accept(None)));
    assert!(parse_command("/frobnicate").is_err());
}

#[test]
fn a_lost_connection_shows_in_the_status_bar_until_it_is_back() {
    let mut s = state();
    s.apply(Input::Reconnecting { attempt: 2 });
    assert_eq!(s.connection, Connection::Reconnecting { attempt: 2 });
    assert!(
        s.notice.contains("reconnecting (attempt 2)…"),
        "{}",
        s.notice
    );
    s.apply(Input::Back);
    assert_eq!(s.connection, Connection::Online);
    assert_eq!(s.notice, "back");
}

#[test]
fn status_and_disconnection_show_in_the_status_bar() {
    let mut s = state();
    assert_eq!(
        typed(&mut s, "/status dnd busy"),
        [Action::Status {
            show: Show::Dnd,
            text: Some("busy".into())
        }]
    );
    assert_eq!(s.own_show, Show::Dnd);
    s.apply(Input::Disconnected("connection lost".into()));
    assert_eq!(s.connection, Connection::Offline);
    assert!(s.notice.contains("connection lost"));
}
