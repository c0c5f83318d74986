//! The IRC side of a session: what each line from the server means for the rooms the
//! user sees. Numerics are named as in RFC 2812 §5.

use corvid_proto::StanzaError;
use jid::Jid;
use tracing::debug;

use super::state::{Occupant, Session, presence, presence_with};
use crate::address::user_jid;
use crate::irc::line::Line;
use crate::irc::text::{ctcp_action, is_other_ctcp, strip_formatting};
use crate::irc::{fold, is_channel};
use crate::muc::{self, status};

/// Tries at another nick (appending `_`) before giving up at registration.
const MAX_NICK_ATTEMPTS: u32 = 5;

impl Session {
    /// Handles one line from the IRC server.
    pub fn on_irc(&mut self, line: &Line) {
        match line.command.as_str() {
            "PING" => {
                let token = line.param(0).unwrap_or_default().to_string();
                self.send_irc(Line::new("PONG", &[&token]));
            }
            "001" => self.on_welcome(line),
            "005" => self.on_isupport(line),
            "432" | "433" | "436" | "437" => self.on_nick_refused(line),
            "JOIN" => self.on_join(line),
            "353" => self.on_names(line),
            "366" => self.on_end_of_names(line),
            "332" => self.on_topic_reply(line),
            "333" => self.on_topic_setter(line),
            "TOPIC" => self.on_topic(line),
            "PART" => self.on_part(line),
            "KICK" => self.on_kick(line),
            "QUIT" => self.on_quit(line),
            "NICK" => self.on_nick(line),
            "MODE" => self.on_mode(line),
            "PRIVMSG" | "NOTICE" => self.on_text(line),
            "403" | "405" | "471" | "473" | "474" | "475" | "477" => self.on_join_refused(line),
            "401" => self.on_no_such_nick(line),
            "404" | "482" => self.on_channel_refused(line),
            "ERROR" => self.last_error = line.param(0).map(str::to_string),
            _ => {}
        }
    }

    fn on_welcome(&mut self, line: &Line) {
        self.registered = true;
        if let Some(nick) = line.param(0) {
            self.nick = nick.to_string();
        }
        if let Some(password) = self.p.nickserv_password.clone() {
            self.to_irc.push(Line::new(
                "PRIVMSG",
                &["NickServ", &format!("IDENTIFY {password}")],
            ));
        }
        let held = std::mem::take(&mut self.held);
        self.to_irc.extend(held);
    }

    /// RPL_ISUPPORT `PREFIX=(ov)@+`: which modes give which name prefixes.
    fn on_isupport(&mut self, line: &Line) {
        let tokens = line.params.iter().skip(1);
        for token in tokens {
            let Some(value) = token.strip_prefix("PREFIX=(") else {
                continue;
            };
            if let Some((modes, prefixes)) = value.split_once(')') {
                let pairs: Vec<(char, char)> = modes.chars().zip(prefixes.chars()).collect();
                if !pairs.is_empty() {
                    self.prefix_modes = pairs;
                }
            }
        }
    }

    fn is_me(&self, nick: &str) -> bool {
        fold(nick) == fold(&self.nick)
    }

    fn on_nick_refused(&mut self, line: &Line) {
        let refused = line.param(1).unwrap_or_default().to_string();
        let text = line.params.last().cloned().unwrap_or_default();
        if self.registered {
            // A nick change a resource asked for (XEP-0045 §7.6.3: conflict).
            if let Some((nick, resource, key)) = self.pending_nick.take() {
                let name = self.channels.get(&key).map(|ch| ch.name.clone());
                if let Some(from) = name.and_then(|name| self.occupant(&name, &nick)) {
                    let error = StanzaError::conflict().with_text(text);
                    self.to_xmpp.push(muc::join_error(&from, &resource, &error));
                }
            }
            return;
        }
        self.nick_attempts += 1;
        if line.command == "432" || self.nick_attempts >= MAX_NICK_ATTEMPTS {
            self.last_error = Some(format!("nick {refused} refused: {text}"));
            self.to_irc.push(Line::new("QUIT", &["nick refused"]));
            self.on_disconnected("cannot register on the IRC server");
            return;
        }
        self.nick = format!("{}_", self.nick);
        let nick = self.nick.clone();
        self.to_irc.push(Line::new("NICK", &[&nick]));
    }

    fn on_join(&mut self, line: &Line) {
        let (Some(nick), Some(channel)) = (line.source(), line.param(0)) else {
            return;
        };
        let nick = nick.to_string();
        let key = fold(channel);
        let me = self.is_me(&nick);
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if me {
            ch.occupants.clear();
        }
        ch.occupants.insert(
            fold(&nick),
            Occupant {
                nick: nick.clone(),
                prefixes: String::new(),
            },
        );
        if ch.joined && !me {
            self.broadcast_presence(&key, &nick, true, "", &[], None, None);
        }
    }

    /// RPL_NAMREPLY: `<me> <symbol> <channel> :[prefixes]nick …`.
    fn on_names(&mut self, line: &Line) {
        let count = line.params.len();
        if count < 3 {
            return;
        }
        let channel = &line.params[count - 2];
        let prefixes: String = self.prefix_modes.iter().map(|(_, p)| *p).collect();
        let Some(ch) = self.channels.get_mut(&fold(channel)) else {
            return;
        };
        for entry in line.params[count - 1].split(' ').filter(|n| !n.is_empty()) {
            let nick_start = entry
                .find(|c: char| !prefixes.contains(c))
                .unwrap_or(entry.len());
            let (modes, rest) = entry.split_at(nick_start);
            // userhost-in-names: nick!user@host
            let nick = rest.split('!').next().unwrap_or(rest);
            if nick.is_empty() {
                continue;
            }
            ch.occupants.insert(
                fold(nick),
                Occupant {
                    nick: nick.to_string(),
                    prefixes: modes.to_string(),
                },
            );
        }
    }

    /// RPL_ENDOFNAMES: the join is complete; every resource waiting sees the room.
    fn on_end_of_names(&mut self, line: &Line) {
        let Some(channel) = line.param(1) else {
            return;
        };
        let key = fold(channel);
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if ch.joined {
            return;
        }
        ch.joined = true;
        let resources = ch.resources.clone();
        for (resource, asked) in resources {
            let shown = self.room_state(&key, &resource, &asked);
            self.to_xmpp.extend(shown);
        }
    }

    fn on_topic_reply(&mut self, line: &Line) {
        if let (Some(channel), Some(topic)) = (line.param(1), line.param(2))
            && let Some(ch) = self.channels.get_mut(&fold(channel))
        {
            ch.topic = strip_formatting(topic);
        }
    }

    fn on_topic_setter(&mut self, line: &Line) {
        if let (Some(channel), Some(setter)) = (line.param(1), line.param(2))
            && let Some(ch) = self.channels.get_mut(&fold(channel))
        {
            ch.topic_setter = setter.split('!').next().map(str::to_string);
        }
    }

    fn on_topic(&mut self, line: &Line) {
        let (Some(nick), Some(channel), Some(topic)) =
            (line.source(), line.param(0), line.param(1))
        else {
            return;
        };
        let nick = nick.to_string();
        let Some(ch) = self.channels.get_mut(&fold(channel)) else {
            return;
        };
        ch.topic = strip_formatting(topic);
        ch.topic_setter = Some(nick.clone());
        if !ch.joined {
            return;
        }
        let (name, topic) = (ch.name.clone(), ch.topic.clone());
        let resources: Vec<Jid> = ch.resources.iter().map(|(r, _)| r.clone()).collect();
        let Some(from) = self.occupant(&name, &nick) else {
            return;
        };
        for resource in resources {
            let id = self.next_id();
            self.to_xmpp.push(muc::subject(
                &Jid::from(from.clone()),
                &resource,
                &id,
                &topic,
            ));
        }
    }

    fn on_part(&mut self, line: &Line) {
        let (Some(nick), Some(channel)) = (line.source(), line.param(0)) else {
            return;
        };
        let nick = nick.to_string();
        let reason = line.param(1).map(strip_formatting);
        let key = fold(channel);
        if self.is_me(&nick) {
            // We left on our own when the last resource did (the channel is gone by now);
            // otherwise the server parted us: the room is over for every resource.
            self.remove_self(&key, &[status::SELF], reason.as_deref());
            return;
        }
        self.remove_occupant(&key, &nick, &[], reason.as_deref());
    }

    fn on_kick(&mut self, line: &Line) {
        let (Some(channel), Some(victim)) = (line.param(0), line.param(1)) else {
            return;
        };
        let victim = victim.to_string();
        let reason = line.param(2).map(strip_formatting);
        let key = fold(channel);
        if self.is_me(&victim) {
            self.remove_self(&key, &[status::SELF, status::KICKED], reason.as_deref());
            if self.channels.is_empty() {
                self.quit("");
            }
            return;
        }
        self.remove_occupant(&key, &victim, &[status::KICKED], reason.as_deref());
    }

    fn on_quit(&mut self, line: &Line) {
        let Some(nick) = line.source() else {
            return;
        };
        let nick = nick.to_string();
        let reason = line.param(0).map(strip_formatting);
        let keys: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, ch)| ch.occupants.contains_key(&fold(&nick)))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.remove_occupant(&key, &nick, &[], reason.as_deref());
        }
    }

    /// NICK: unavailable from the old nick with 303 and the new one, then available from
    /// the new one (XEP-0045 §7.6.3); with 110 when it is ours.
    fn on_nick(&mut self, line: &Line) {
        let (Some(old), Some(new)) = (line.source(), line.param(0)) else {
            return;
        };
        let (old, new) = (old.to_string(), new.to_string());
        let me = self.is_me(&old);
        if me {
            self.nick = new.clone();
            self.pending_nick = None;
        }
        let keys: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, ch)| ch.occupants.contains_key(&fold(&old)))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            let Some(ch) = self.channels.get_mut(&key) else {
                continue;
            };
            let Some(mut occupant) = ch.occupants.remove(&fold(&old)) else {
                continue;
            };
            occupant.nick = new.clone();
            let prefixes = occupant.prefixes.clone();
            ch.occupants.insert(fold(&new), occupant);
            if !ch.joined {
                continue;
            }
            let (gone, back): (&[u16], &[u16]) = if me {
                (&[status::NICK_CHANGED, status::SELF], &[status::SELF])
            } else {
                (&[status::NICK_CHANGED], &[])
            };
            self.broadcast_presence(&key, &old, false, &prefixes, gone, Some(&new), None);
            self.broadcast_presence(&key, &new, true, &prefixes, back, None, None);
        }
    }

    /// MODE on a channel: prefix modes (+o, +v…) change an occupant's role.
    fn on_mode(&mut self, line: &Line) {
        let (Some(channel), Some(modes)) = (line.param(0), line.param(1)) else {
            return;
        };
        let key = fold(channel);
        if !self.channels.contains_key(&key) {
            return;
        }
        let mut args = line.params.iter().skip(2);
        let mut adding = true;
        let mut changed = Vec::new();
        for mode in modes.chars() {
            match mode {
                '+' => adding = true,
                '-' => adding = false,
                _ => {
                    if let Some(&(_, prefix)) = self.prefix_modes.iter().find(|(m, _)| *m == mode) {
                        if let Some(nick) = args.next() {
                            changed.push((nick.clone(), prefix, adding));
                        }
                    } else if "beIk".contains(mode) || (mode == 'l' && adding) {
                        args.next();
                    }
                }
            }
        }
        let order: String = self.prefix_modes.iter().map(|(_, p)| *p).collect();
        for (nick, prefix, adding) in changed {
            let Some(ch) = self.channels.get_mut(&key) else {
                return;
            };
            let Some(occupant) = ch.occupants.get_mut(&fold(&nick)) else {
                continue;
            };
            let mut set: Vec<char> = occupant.prefixes.chars().filter(|&c| c != prefix).collect();
            if adding {
                set.push(prefix);
            }
            set.sort_by_key(|c| order.find(*c).unwrap_or(usize::MAX));
            occupant.prefixes = set.into_iter().collect();
            let (nick, prefixes, joined) =
                (occupant.nick.clone(), occupant.prefixes.clone(), ch.joined);
            if joined {
                let codes: &[u16] = if self.is_me(&nick) {
                    &[status::SELF]
                } else {
                    &[]
                };
                self.broadcast_presence(&key, &nick, true, &prefixes, codes, None, None);
            }
        }
    }

    fn on_text(&mut self, line: &Line) {
        let Some(prefix) = &line.prefix else {
            return;
        };
        let (Some(target), Some(text)) = (line.param(0), line.param(1)) else {
            return;
        };
        if !prefix.is_user() || !self.registered {
            debug!(from = %prefix.nick, "server notice not forwarded");
            return;
        }
        let body = match ctcp_action(text) {
            Some(action) => format!("/me {}", strip_formatting(action)),
            None if is_other_ctcp(text) => return,
            None => strip_formatting(text),
        };
        if body.trim().is_empty() {
            return;
        }
        let nick = prefix.nick.clone();
        if is_channel(target) {
            let Some(ch) = self.channels.get(&fold(target)) else {
                return;
            };
            if !ch.joined {
                return;
            }
            let resources: Vec<Jid> = ch.resources.iter().map(|(r, _)| r.clone()).collect();
            let Some(from) = self.occupant(&ch.name, &nick) else {
                return;
            };
            for resource in resources {
                let id = self.next_id();
                self.to_xmpp
                    .push(muc::groupchat(&from, &resource, &id, &body));
            }
        } else if self.is_me(target) {
            let Some(from) = user_jid(&nick, &self.p.server, &self.p.domain) else {
                return;
            };
            let id = self.next_id();
            let to = Jid::from(self.p.user.clone());
            self.to_xmpp
                .push(muc::chat(&Jid::from(from), &to, &id, &body));
        }
    }

    /// A JOIN the server refused: the resources waiting get the MUC error for it.
    fn on_join_refused(&mut self, line: &Line) {
        let Some(channel) = line.param(1) else {
            return;
        };
        let key = fold(channel);
        if self.channels.get(&key).is_none_or(|ch| ch.joined) {
            return;
        }
        let Some(ch) = self.channels.remove(&key) else {
            return;
        };
        let text = line.params.last().cloned().unwrap_or_default();
        let error = match line.command.as_str() {
            "403" => StanzaError::item_not_found(),
            "471" => StanzaError::service_unavailable(),
            "473" => StanzaError::registration_required(),
            "474" => StanzaError::forbidden(),
            "475" => StanzaError::not_authorized(),
            _ => StanzaError::not_allowed(),
        }
        .with_text(text);
        for (resource, asked) in &ch.resources {
            if let Some(from) = self.occupant(&ch.name, asked) {
                self.to_xmpp.push(muc::join_error(&from, resource, &error));
            }
        }
        if self.channels.is_empty() {
            self.quit("");
        }
    }

    fn on_no_such_nick(&mut self, line: &Line) {
        let Some(nick) = line.param(1) else {
            return;
        };
        if is_channel(nick) {
            return;
        }
        let text = line.params.last().cloned().unwrap_or_default();
        if let Some(from) = user_jid(nick, &self.p.server, &self.p.domain) {
            let error = StanzaError::item_not_found().with_text(text);
            let to = Jid::from(self.p.user.clone());
            self.to_xmpp
                .push(muc::message_error(&Jid::from(from), &to, &error));
        }
    }

    /// ERR_CANNOTSENDTOCHAN, ERR_CHANOPRIVSNEEDED: a message or topic change refused.
    fn on_channel_refused(&mut self, line: &Line) {
        let Some(channel) = line.param(1) else {
            return;
        };
        let Some(ch) = self.channels.get(&fold(channel)) else {
            return;
        };
        let text = line.params.last().cloned().unwrap_or_default();
        let error = StanzaError::forbidden().with_text(text);
        let resources: Vec<Jid> = ch.resources.iter().map(|(r, _)| r.clone()).collect();
        if let Some(room) = self.room(&ch.name) {
            for resource in resources {
                self.to_xmpp
                    .push(muc::message_error(&room, &resource, &error));
            }
        }
    }

    /// Removes an occupant who left and tells every resource.
    fn remove_occupant(&mut self, key: &str, nick: &str, codes: &[u16], reason: Option<&str>) {
        let Some(ch) = self.channels.get_mut(key) else {
            return;
        };
        let Some(occupant) = ch.occupants.remove(&fold(nick)) else {
            return;
        };
        if ch.joined {
            let prefixes = occupant.prefixes;
            self.broadcast_presence(key, &occupant.nick, false, &prefixes, codes, None, reason);
        }
    }

    /// We are out of a channel the resources still think they are in.
    fn remove_self(&mut self, key: &str, codes: &[u16], reason: Option<&str>) {
        let Some(ch) = self.channels.remove(key) else {
            return;
        };
        let Some(me) = self.occupant(&ch.name, &self.nick) else {
            return;
        };
        for (resource, _) in &ch.resources {
            self.to_xmpp
                .push(presence_with(&me, resource, false, "", codes, None, reason));
        }
    }

    /// Sends one occupant's presence to every resource in the channel.
    #[allow(clippy::too_many_arguments)]
    fn broadcast_presence(
        &mut self,
        key: &str,
        nick: &str,
        available: bool,
        prefixes: &str,
        codes: &[u16],
        new_nick: Option<&str>,
        reason: Option<&str>,
    ) {
        let Some(ch) = self.channels.get(key) else {
            return;
        };
        let Some(from) = self.occupant(&ch.name, nick) else {
            return;
        };
        for (resource, _) in &ch.resources {
            let el = match (new_nick, reason) {
                (None, None) => presence(&from, resource, available, prefixes, codes),
                _ => presence_with(
                    &from, resource, available, prefixes, codes, new_nick, reason,
                ),
            };
            self.to_xmpp.push(el);
        }
    }
}
