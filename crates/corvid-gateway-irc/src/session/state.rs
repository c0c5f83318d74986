//! One XMPP account's connection to one IRC server, as state: the channels it is in (with
//! the XMPP resources that joined each), their occupants and topics, and our nick. The
//! handlers here take a stanza or an IRC line and queue what it causes (IRC lines to send,
//! stanzas to send); they do no I/O, so the whole mapping is testable without sockets.
//! This file is the XMPP side; `irc_events.rs` is the IRC side.

use std::collections::{BTreeMap, HashMap};

use corvid_proto::stanza::error_reply;
use corvid_proto::{StanzaError, ns};
use corvid_xml::Element;
use jid::{BareJid, FullJid, Jid};

use crate::address::{channel_jid, occupant_jid};
use crate::irc::line::Line;
use crate::irc::text::{irc_lines, privmsg_budget};
use crate::irc::{fold, is_channel};
use crate::muc::{self, OccupantPresence, status};

/// What a session is started with.
#[derive(Clone, Debug)]
pub struct Params {
    /// Tells this session from an earlier one for the same account and server.
    pub id: u64,
    pub user: BareJid,
    pub server: String,
    /// The gateway's domain.
    pub domain: String,
    /// The nick to register with.
    pub nick: String,
    pub username: String,
    pub realname: String,
    /// The server password (`PASS`), if the user set one.
    pub password: Option<String>,
    /// Sent to NickServ once registered, if the user set one.
    pub nickserv_password: Option<String>,
    pub max_channels: usize,
}

/// A user in a channel.
#[derive(Clone, Debug)]
pub struct Occupant {
    pub nick: String,
    /// Channel prefixes (`@`, `+`…), highest first.
    pub prefixes: String,
}

/// A channel this account is in or joining.
#[derive(Debug)]
pub struct Channel {
    pub name: String,
    /// The XMPP resources in the room, each with the nick it asked for.
    pub resources: Vec<(Jid, String)>,
    /// The server sent the end of the names list: the room is shown.
    pub joined: bool,
    /// Folded nick → occupant (ourselves included).
    pub occupants: BTreeMap<String, Occupant>,
    pub topic: String,
    pub topic_setter: Option<String>,
}

/// The state of one IRC connection (see the module doc).
pub struct Session {
    pub p: Params,
    /// Our nick on the IRC server.
    pub nick: String,
    /// The server welcomed us (001): lines other than registration may go out.
    pub registered: bool,
    /// Folded channel name → channel.
    pub channels: HashMap<String, Channel>,
    /// IRC lines to write, in order.
    pub to_irc: Vec<Line>,
    /// Stanzas to send, in order.
    pub to_xmpp: Vec<Element>,
    /// QUIT was sent (or the connection is gone): the session ends once flushed.
    pub finished: bool,
    /// Lines waiting for registration to finish.
    pub(super) held: Vec<Line>,
    /// Channel prefix modes and their prefixes, from ISUPPORT `PREFIX` (RFC 2812 default).
    pub(super) prefix_modes: Vec<(char, char)>,
    pub(super) nick_attempts: u32,
    /// A nick change a resource asked for: (nick, resource, folded channel).
    pub(super) pending_nick: Option<(String, Jid, String)>,
    /// The text of the server's last ERROR line.
    pub(super) last_error: Option<String>,
    counter: u64,
}

impl Session {
    /// A session that registers as soon as its lines are written.
    pub fn new(p: Params) -> Session {
        let mut session = Session {
            nick: p.nick.clone(),
            p,
            registered: false,
            channels: HashMap::new(),
            to_irc: Vec::new(),
            to_xmpp: Vec::new(),
            finished: false,
            held: Vec::new(),
            prefix_modes: vec![('o', '@'), ('v', '+')],
            nick_attempts: 0,
            pending_nick: None,
            last_error: None,
            counter: 0,
        };
        if let Some(password) = session.p.password.clone() {
            session.send_irc(Line::new("PASS", &[&password]));
        }
        let (nick, username, realname) = (
            session.nick.clone(),
            session.p.username.clone(),
            session.p.realname.clone(),
        );
        session.send_irc(Line::new("NICK", &[&nick]));
        session.send_irc(Line::new("USER", &[&username, "0", "*", &realname]));
        session
    }

    /// Queues a line; all but registration and PONG wait for the welcome.
    pub(super) fn send_irc(&mut self, line: Line) {
        let early = matches!(
            line.command.as_str(),
            "PASS" | "NICK" | "USER" | "PONG" | "QUIT"
        );
        if self.registered || early {
            self.to_irc.push(line);
        } else {
            self.held.push(line);
        }
    }

    pub(super) fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("irc{}-{}", self.p.id, self.counter)
    }

    pub(super) fn room(&self, channel: &str) -> Option<Jid> {
        channel_jid(channel, &self.p.server, &self.p.domain).map(Jid::from)
    }

    pub(super) fn occupant(&self, channel: &str, nick: &str) -> Option<FullJid> {
        occupant_jid(channel, &self.p.server, nick, &self.p.domain)
    }

    /// Handles a stanza from the user to `channel` (with the occupant `nick`, if any) or to
    /// the IRC user `nick`.
    pub fn on_stanza(&mut self, el: &Element, from: &Jid, target: &str, nick: Option<&str>) {
        match (el.name(), is_channel(target), nick) {
            ("presence", true, Some(nick)) => match el.attr("type") {
                None => self.on_join_presence(el, from, target, nick),
                Some("unavailable") => self.on_leave_presence(el, from, target),
                _ => {}
            },
            ("message", true, None) if el.attr("type") == Some("groupchat") => {
                self.on_groupchat(el, from, target)
            }
            ("message", true, Some(nick)) => self.on_private_message(el, nick),
            ("message", false, None) => self.on_private_message(el, target),
            ("iq", true, Some(nick)) => self.on_occupant_iq(el, from, target, nick),
            _ => {
                if corvid_proto::stanza::may_bounce(el) {
                    self.to_xmpp
                        .push(error_reply(el, &StanzaError::service_unavailable()));
                }
            }
        }
    }

    fn on_join_presence(&mut self, el: &Element, from: &Jid, channel: &str, nick: &str) {
        let key = fold(channel);
        if let Some(ch) = self.channels.get_mut(&key) {
            if ch.resources.iter().any(|(r, _)| r == from) {
                // Already in: a presence update, or a nick change (XEP-0045 §7.6), which
                // on IRC changes the nick on the whole server.
                if ch.joined && fold(nick) != fold(&self.nick) {
                    self.pending_nick = Some((nick.to_string(), from.clone(), key));
                    self.send_irc(Line::new("NICK", &[nick]));
                }
                return;
            }
            ch.resources.push((from.clone(), nick.to_string()));
            if ch.joined {
                let shown = self.room_state(&key, from, nick);
                self.to_xmpp.extend(shown);
            }
            return;
        }
        if self.channels.len() >= self.p.max_channels {
            let error = StanzaError::resource_constraint()
                .with_text("too many channels on this IRC server");
            if let Some(occupant) = self.occupant(channel, nick) {
                self.to_xmpp.push(muc::join_error(&occupant, from, &error));
            }
            return;
        }
        let password = el
            .get_child("x", ns::MUC)
            .and_then(|x| x.get_child("password", ns::MUC))
            .map(Element::text);
        match password.as_deref() {
            Some(key) if !key.is_empty() && !key.contains(' ') => {
                self.send_irc(Line::new("JOIN", &[channel, key]))
            }
            _ => self.send_irc(Line::new("JOIN", &[channel])),
        }
        self.channels.insert(
            key,
            Channel {
                name: channel.to_string(),
                resources: vec![(from.clone(), nick.to_string())],
                joined: false,
                occupants: BTreeMap::new(),
                topic: String::new(),
                topic_setter: None,
            },
        );
    }

    /// The whole room for a resource that just joined (XEP-0045 §7.2.3): the other
    /// occupants, then its own presence (110, and 210 when the IRC nick is not the one it
    /// asked for), then the subject.
    pub(super) fn room_state(&mut self, key: &str, to: &Jid, asked: &str) -> Vec<Element> {
        let mut out = Vec::new();
        let Some(ch) = self.channels.get(key) else {
            return out;
        };
        let me = fold(&self.nick);
        for (folded, occupant) in &ch.occupants {
            if *folded == me {
                continue;
            }
            if let Some(from) = self.occupant(&ch.name, &occupant.nick) {
                out.push(presence(&from, to, true, &occupant.prefixes, &[]));
            }
        }
        let own_prefixes = ch
            .occupants
            .get(&me)
            .map(|o| o.prefixes.clone())
            .unwrap_or_default();
        let codes: &[u16] = if asked == self.nick {
            &[status::SELF]
        } else {
            &[status::SELF, status::NICK_ASSIGNED]
        };
        if let Some(from) = self.occupant(&ch.name, &self.nick) {
            out.push(presence(&from, to, true, &own_prefixes, codes));
        }
        let subject_from = ch
            .topic_setter
            .as_deref()
            .and_then(|setter| self.occupant(&ch.name, setter))
            .map(Jid::from)
            .or_else(|| self.room(&ch.name));
        let topic = ch.topic.clone();
        if let Some(from) = subject_from {
            let id = self.next_id();
            out.push(muc::subject(&from, to, &id, &topic));
        }
        out
    }

    fn on_leave_presence(&mut self, el: &Element, from: &Jid, channel: &str) {
        let key = fold(channel);
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        let Some(index) = ch.resources.iter().position(|(r, _)| r == from) else {
            return;
        };
        ch.resources.remove(index);
        let now_empty = ch.resources.is_empty();
        let name = ch.name.clone();
        let reason = el
            .get_child("status", ns::CLIENT)
            .map(Element::text)
            .unwrap_or_default();
        // XEP-0045 §7.14: the leaving occupant gets its own unavailable presence.
        if let Some(me) = self.occupant(&name, &self.nick) {
            self.to_xmpp.push(presence_with(
                &me,
                from,
                false,
                "",
                &[status::SELF],
                None,
                None,
            ));
        }
        if now_empty {
            self.channels.remove(&key);
            if reason.is_empty() {
                self.send_irc(Line::new("PART", &[&name]));
            } else {
                self.send_irc(Line::new("PART", &[&name, &reason]));
            }
            if self.channels.is_empty() {
                self.quit(&reason);
            }
        }
    }

    /// Leaves the server: QUIT, and every room left on the XMPP side.
    pub fn quit(&mut self, reason: &str) {
        let reason = if reason.is_empty() {
            "Gateway: leaving"
        } else {
            reason
        };
        self.leave_all_rooms(reason);
        self.to_irc.push(Line::new("QUIT", &[reason]));
        self.finished = true;
    }

    /// The IRC connection is gone (or never came): every resource is told it left its
    /// rooms, or that its join failed (`remote-server-not-found`).
    pub fn on_disconnected(&mut self, reason: &str) {
        let reason = match self.last_error.take() {
            Some(error) => format!("{reason}: {error}"),
            None => reason.to_string(),
        };
        self.leave_all_rooms(&reason);
        self.finished = true;
    }

    fn leave_all_rooms(&mut self, reason: &str) {
        let channels: Vec<Channel> = self.channels.drain().map(|(_, ch)| ch).collect();
        for ch in channels {
            for (resource, asked) in &ch.resources {
                if ch.joined {
                    if let Some(me) = self.occupant(&ch.name, &self.nick) {
                        let codes = [status::SELF, status::SHUTDOWN];
                        let el =
                            presence_with(&me, resource, false, "", &codes, None, Some(reason));
                        self.to_xmpp.push(el);
                    }
                } else if let Some(asked) = self.occupant(&ch.name, asked) {
                    let error = StanzaError::remote_server_not_found().with_text(reason);
                    self.to_xmpp.push(muc::join_error(&asked, resource, &error));
                }
            }
        }
    }

    fn on_groupchat(&mut self, el: &Element, from: &Jid, channel: &str) {
        let key = fold(channel);
        let in_room = self
            .channels
            .get(&key)
            .is_some_and(|ch| ch.resources.iter().any(|(r, _)| r == from));
        if !in_room {
            // XEP-0045 §7.4: only occupants may send to the room.
            let error = StanzaError::not_acceptable().with_text("join the channel first");
            self.to_xmpp.push(error_reply(el, &error));
            return;
        }
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        let name = ch.name.clone();
        let resources: Vec<Jid> = ch.resources.iter().map(|(r, _)| r.clone()).collect();
        if let Some(body) = el.get_child("body", ns::CLIENT).map(Element::text) {
            let budget = privmsg_budget("PRIVMSG", &self.nick, &name);
            for text in irc_lines(&body, budget) {
                self.send_irc(Line::new("PRIVMSG", &[&name, &text]));
            }
            // XEP-0045 §7.4: the room reflects the message to its sender, same id.
            let id = match el.attr("id") {
                Some(id) => id.to_string(),
                None => self.next_id(),
            };
            if let Some(me) = self.occupant(&name, &self.nick) {
                for resource in &resources {
                    self.to_xmpp.push(muc::groupchat(&me, resource, &id, &body));
                }
            }
        } else if let Some(subject) = el.get_child("subject", ns::CLIENT) {
            let topic = subject.text().replace(['\r', '\n'], " ");
            self.send_irc(Line::new("TOPIC", &[&name, &topic]));
        }
    }

    fn on_private_message(&mut self, el: &Element, nick: &str) {
        if matches!(el.attr("type"), Some("error") | Some("groupchat")) {
            return;
        }
        let Some(body) = el.get_child("body", ns::CLIENT).map(Element::text) else {
            return;
        };
        let budget = privmsg_budget("PRIVMSG", &self.nick, nick);
        for text in irc_lines(&body, budget) {
            self.send_irc(Line::new("PRIVMSG", &[nick, &text]));
        }
    }

    /// XEP-0410 self-ping: a resource asks whether it is still in the room.
    fn on_occupant_iq(&mut self, el: &Element, from: &Jid, channel: &str, nick: &str) {
        if !matches!(el.attr("type"), Some("get") | Some("set")) {
            return;
        }
        let is_ping = el.children().any(|c| c.is("ping", ns::PING));
        let joined = self
            .channels
            .get(&fold(channel))
            .is_some_and(|ch| ch.joined && ch.resources.iter().any(|(r, _)| r == from));
        let reply = if is_ping && joined && fold(nick) == fold(&self.nick) {
            iq_result(el)
        } else if is_ping {
            error_reply(el, &StanzaError::not_acceptable())
        } else {
            error_reply(el, &StanzaError::service_unavailable())
        };
        self.to_xmpp.push(reply);
    }
}

/// An occupant presence with no nick change or reason.
pub(super) fn presence(
    from: &FullJid,
    to: &Jid,
    available: bool,
    prefixes: &str,
    codes: &[u16],
) -> Element {
    presence_with(from, to, available, prefixes, codes, None, None)
}

pub(super) fn presence_with(
    from: &FullJid,
    to: &Jid,
    available: bool,
    prefixes: &str,
    codes: &[u16],
    new_nick: Option<&str>,
    reason: Option<&str>,
) -> Element {
    OccupantPresence {
        from,
        to,
        available,
        prefixes,
        codes,
        new_nick,
        reason,
    }
    .to_element()
}

/// An empty IQ result answering `iq`.
pub fn iq_result(iq: &Element) -> Element {
    let mut reply = Element::new("iq", ns::CLIENT).with_attr("type", "result");
    for attr in ["id"] {
        if let Some(value) = iq.attr(attr) {
            reply.set_attr(attr, value);
        }
    }
    if let Some(to) = iq.attr("to") {
        reply.set_attr("from", to);
    }
    if let Some(from) = iq.attr("from") {
        reply.set_attr("to", from);
    }
    reply
}
