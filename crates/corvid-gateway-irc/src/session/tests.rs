//! The mapping, line by line and stanza by stanza, with no sockets.

use corvid_proto::ns;
use corvid_xml::Element;
use jid::Jid;

use super::{Params, Session};
use crate::irc::line::Line;

const ROOM: &str = "#test%irc.example@irc.localhost";

fn session() -> Session {
    Session::new(Params {
        id: 1,
        user: "alice@localhost".parse().unwrap(),
        server: "irc.example".into(),
        domain: "irc.localhost".into(),
        nick: "alice".into(),
        username: "alice".into(),
        realname: "Alice".into(),
        password: None,
        nickserv_password: None,
        max_channels: 10,
    })
}

fn me() -> Jid {
    "alice@localhost/phone".parse().unwrap()
}

fn wire(session: &mut Session) -> Vec<String> {
    session
        .to_irc
        .drain(..)
        .map(|l| l.to_wire().unwrap().trim_end().to_string())
        .collect()
}

fn irc(session: &mut Session, raw: &str) {
    session.on_irc(&Line::parse(raw).unwrap());
}

fn join_presence() -> Element {
    Element::new("presence", ns::CLIENT)
        .with_attr("from", "alice@localhost/phone")
        .with_attr("to", format!("{ROOM}/alice"))
        .with_child(Element::new("x", ns::MUC))
}

fn codes(el: &Element) -> Vec<String> {
    el.get_child("x", ns::MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A session registered and in #test with bob (op) and carol.
fn joined() -> Session {
    let mut s = session();
    s.on_stanza(&join_presence(), &me(), "#test", Some("alice"));
    irc(&mut s, ":srv 001 alice :Welcome");
    irc(&mut s, ":alice!a@h JOIN #test");
    irc(&mut s, ":srv 332 alice #test :the \x02topic\x02");
    irc(&mut s, ":srv 353 alice = #test :alice @bob carol");
    irc(&mut s, ":srv 366 alice #test :End of /NAMES list.");
    s.to_irc.clear();
    s.to_xmpp.clear();
    s
}

#[test]
fn registers_and_holds_the_join_until_welcomed() {
    let mut s = session();
    s.on_stanza(&join_presence(), &me(), "#test", Some("alice"));
    assert_eq!(wire(&mut s), ["NICK alice", "USER alice 0 * Alice"]);
    irc(&mut s, "PING :srv");
    assert_eq!(wire(&mut s), ["PONG srv"]);
    irc(&mut s, ":srv 001 alice :Welcome");
    assert_eq!(wire(&mut s), ["JOIN #test"]);
}

#[test]
fn a_taken_nick_gets_an_underscore_and_status_210() {
    let mut s = session();
    s.on_stanza(&join_presence(), &me(), "#test", Some("alice"));
    s.to_irc.clear();
    irc(&mut s, ":srv 433 * alice :Nickname is already in use");
    assert_eq!(wire(&mut s), ["NICK alice_"]);
    irc(&mut s, ":srv 001 alice_ :Welcome");
    irc(&mut s, ":alice_!a@h JOIN #test");
    irc(&mut s, ":srv 353 alice_ = #test :alice_");
    irc(&mut s, ":srv 366 alice_ #test :End");
    let own = &s.to_xmpp[0];
    assert_eq!(own.attr("from"), Some(&*format!("{ROOM}/alice_")));
    assert_eq!(codes(own), ["110", "210"]);
}

#[test]
fn names_become_occupants_then_self_presence_then_subject() {
    let mut s = session();
    s.on_stanza(&join_presence(), &me(), "#test", Some("alice"));
    irc(&mut s, ":srv 001 alice :Welcome");
    irc(&mut s, ":alice!a@h JOIN #test");
    irc(&mut s, ":srv 332 alice #test :the \x02topic\x02");
    irc(&mut s, ":srv 333 alice #test bob!b@h 1700000000");
    irc(&mut s, ":srv 353 alice = #test :alice @bob +carol");
    assert!(s.to_xmpp.is_empty());
    irc(&mut s, ":srv 366 alice #test :End of /NAMES list.");
    let out = &s.to_xmpp;
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[0].attr("from"), Some(&*format!("{ROOM}/bob")));
    let item = |el: &Element| {
        let x = el.get_child("x", ns::MUC_USER).unwrap();
        let item = x.get_child("item", ns::MUC_USER).unwrap();
        (
            item.attr("role").unwrap().to_string(),
            item.attr("affiliation").unwrap().to_string(),
        )
    };
    assert_eq!(item(&out[0]), ("moderator".into(), "admin".into()));
    assert_eq!(out[1].attr("from"), Some(&*format!("{ROOM}/carol")));
    assert_eq!(item(&out[1]), ("participant".into(), "member".into()));
    assert_eq!(out[2].attr("from"), Some(&*format!("{ROOM}/alice")));
    assert_eq!(codes(&out[2]), ["110"]);
    let subject = out[3].get_child("subject", ns::CLIENT).unwrap();
    assert_eq!(subject.text(), "the topic");
    assert_eq!(out[3].attr("from"), Some(&*format!("{ROOM}/bob")));
}

#[test]
fn messages_go_both_ways() {
    let mut s = joined();
    irc(&mut s, ":bob!b@h PRIVMSG #test :h\x0304é\x03llo");
    let msg = s.to_xmpp.remove(0);
    assert_eq!(msg.attr("type"), Some("groupchat"));
    assert_eq!(msg.attr("from"), Some(&*format!("{ROOM}/bob")));
    assert_eq!(msg.get_child("body", ns::CLIENT).unwrap().text(), "héllo");
    irc(&mut s, ":bob!b@h PRIVMSG #test :\x01ACTION waves\x01");
    let action = s.to_xmpp.remove(0);
    assert_eq!(
        action.get_child("body", ns::CLIENT).unwrap().text(),
        "/me waves"
    );

    let out = Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_attr("id", "m1")
        .with_child(Element::new("body", ns::CLIENT).with_text("one\ntwo"));
    s.on_stanza(&out, &me(), "#test", None);
    assert_eq!(wire(&mut s), ["PRIVMSG #test one", "PRIVMSG #test two"]);
    let echo = s.to_xmpp.remove(0);
    assert_eq!(echo.attr("id"), Some("m1"));
    assert_eq!(echo.attr("from"), Some(&*format!("{ROOM}/alice")));
}

#[test]
fn private_messages_go_both_ways() {
    let mut s = joined();
    irc(&mut s, ":bob!b@h PRIVMSG alice :psst");
    let msg = s.to_xmpp.remove(0);
    assert_eq!(msg.attr("type"), Some("chat"));
    assert_eq!(msg.attr("from"), Some("bob%irc.example@irc.localhost"));
    assert_eq!(msg.attr("to"), Some("alice@localhost"));
    let out = Element::new("message", ns::CLIENT)
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::CLIENT).with_text("hi bob"));
    s.on_stanza(&out, &me(), "bob", None);
    assert_eq!(wire(&mut s), ["PRIVMSG bob :hi bob"]);
}

#[test]
fn nick_changes_carry_303() {
    let mut s = joined();
    irc(&mut s, ":carol!c@h NICK carla");
    assert_eq!(s.to_xmpp.len(), 2);
    assert_eq!(s.to_xmpp[0].attr("type"), Some("unavailable"));
    assert_eq!(codes(&s.to_xmpp[0]), ["303"]);
    assert_eq!(s.to_xmpp[1].attr("from"), Some(&*format!("{ROOM}/carla")));
    s.to_xmpp.clear();
    irc(&mut s, ":alice!a@h NICK alicia");
    assert_eq!(codes(&s.to_xmpp[0]), ["303", "110"]);
    assert_eq!(s.nick, "alicia");
}

#[test]
fn parts_quits_and_kicks_are_unavailable_presences() {
    let mut s = joined();
    irc(&mut s, ":carol!c@h PART #test :bye");
    let part = s.to_xmpp.remove(0);
    assert_eq!(part.attr("type"), Some("unavailable"));
    assert_eq!(part.get_child("status", ns::CLIENT).unwrap().text(), "bye");
    irc(&mut s, ":op!o@h JOIN #test");
    s.to_xmpp.clear();
    irc(&mut s, ":bob!b@h KICK #test op :behave");
    let kick = s.to_xmpp.remove(0);
    assert_eq!(codes(&kick), ["307"]);
    irc(&mut s, ":bob!b@h QUIT :gone");
    assert_eq!(
        s.to_xmpp.remove(0).attr("from"),
        Some(&*format!("{ROOM}/bob"))
    );
    irc(&mut s, ":bob!b@h KICK #test alice :out");
    let kicked = s.to_xmpp.remove(0);
    assert_eq!(codes(&kicked), ["110", "307"]);
    assert!(s.finished, "the last channel is gone: QUIT");
}

#[test]
fn leaving_the_last_channel_parts_and_quits() {
    let mut s = joined();
    let leave = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable");
    s.on_stanza(&leave, &me(), "#test", Some("alice"));
    assert_eq!(wire(&mut s), ["PART #test", "QUIT :Gateway: leaving"]);
    assert_eq!(codes(&s.to_xmpp[0]), ["110"]);
    assert!(s.finished);
}

#[test]
fn topics_go_both_ways() {
    let mut s = joined();
    irc(&mut s, ":bob!b@h TOPIC #test :new topic");
    let subject = s.to_xmpp.remove(0);
    assert_eq!(
        subject.get_child("subject", ns::CLIENT).unwrap().text(),
        "new topic"
    );
    let change = Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_child(Element::new("subject", ns::CLIENT).with_text("mine"));
    s.on_stanza(&change, &me(), "#test", None);
    assert_eq!(wire(&mut s), ["TOPIC #test mine"]);
}

#[test]
fn mode_changes_update_roles() {
    let mut s = joined();
    irc(&mut s, ":bob!b@h MODE #test +vo-o carol carol bob");
    let roles: Vec<_> = s
        .to_xmpp
        .iter()
        .map(|p| {
            let x = p.get_child("x", ns::MUC_USER).unwrap();
            let item = x.get_child("item", ns::MUC_USER).unwrap();
            (
                p.attr("from").unwrap().to_string(),
                item.attr("role").unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            (format!("{ROOM}/carol"), "participant".to_string()),
            (format!("{ROOM}/carol"), "moderator".to_string()),
            (format!("{ROOM}/bob"), "participant".to_string()),
        ]
    );
}

#[test]
fn a_lost_connection_tells_every_room() {
    let mut s = joined();
    s.on_stanza(&join_presence(), &me(), "#other", Some("alice"));
    s.on_disconnected("connection lost");
    assert_eq!(s.to_xmpp.len(), 2);
    let (mut errors, mut gone) = (0, 0);
    for el in &s.to_xmpp {
        match el.attr("type") {
            Some("error") => {
                errors += 1;
                let error = el.get_child("error", ns::CLIENT).unwrap();
                assert!(error.has_child("remote-server-not-found", ns::STANZA_ERRORS));
            }
            Some("unavailable") => {
                gone += 1;
                assert_eq!(codes(el), ["110", "332"]);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((errors, gone), (1, 1));
}

#[test]
fn a_refused_join_is_a_presence_error() {
    let mut s = session();
    s.on_stanza(&join_presence(), &me(), "#test", Some("alice"));
    irc(&mut s, ":srv 001 alice :Welcome");
    irc(&mut s, ":srv 474 alice #test :Cannot join channel (+b)");
    let error = s.to_xmpp.remove(0);
    assert_eq!(error.attr("type"), Some("error"));
    let condition = error.get_child("error", ns::CLIENT).unwrap();
    assert!(condition.has_child("forbidden", ns::STANZA_ERRORS));
}

#[test]
fn garbage_lines_change_nothing() {
    let mut s = joined();
    for raw in [
        ":x PRIVMSG",
        ":x!y@z PRIVMSG #nowhere :hi",
        ":srv 353",
        ":srv 366",
        ":x KICK",
        ":x NICK",
        "MODE #test +o",
        ":srv 005 alice PREFIX=( :x",
        ":srv 332 alice",
    ] {
        irc(&mut s, raw);
    }
    assert!(s.to_xmpp.is_empty());
}
