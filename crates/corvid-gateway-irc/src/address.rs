//! Where an XMPP address points on IRC, and back. The scheme is biboumi's:
//!
//! - `irc.localhost` — the gateway itself (disco, ad-hoc commands, registration);
//! - `irc.example.net@irc.localhost` — an IRC server (its own settings);
//! - `#chan%irc.example.net@irc.localhost` — a channel, seen as a MUC room, whose occupants
//!   are `…/nick`;
//! - `nick%irc.example.net@irc.localhost` — an IRC user, for private messages.
//!
//! Characters a JID localpart cannot hold are escaped as XEP-0106 says (`\20` for a space,
//! `\40` for `@`…), plus `%` as `\25` since it separates channel or nick from server.

use jid::{BareJid, FullJid, Jid};

use crate::irc::is_channel;

/// What a JID at the gateway's domain names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Gateway,
    Server {
        server: String,
    },
    Channel {
        channel: String,
        server: String,
        /// The occupant's nick (the resource), when the JID is an occupant's.
        nick: Option<String>,
    },
    User {
        nick: String,
        server: String,
    },
}

impl Address {
    /// Reads `jid`, addressed to the gateway at `domain`; `None` when it is at another
    /// domain or its localpart names nothing.
    pub fn parse(jid: &Jid, domain: &str) -> Option<Address> {
        if jid.domain().as_str() != domain {
            return None;
        }
        let Some(node) = jid.node() else {
            return Some(Address::Gateway);
        };
        let (name, server) = match node.as_str().rsplit_once('%') {
            Some((name, server)) => (unescape(name), unescape(server)),
            None => {
                let server = unescape(node.as_str());
                return valid_server(&server).then_some(Address::Server { server });
            }
        };
        if name.is_empty() || !valid_server(&server) {
            return None;
        }
        if is_channel(&name) {
            Some(Address::Channel {
                channel: name,
                server,
                nick: jid.resource().map(|r| r.as_str().to_string()),
            })
        } else {
            Some(Address::User { nick: name, server })
        }
    }

    /// The server this address is on, unless it is the gateway itself.
    pub fn server(&self) -> Option<&str> {
        match self {
            Address::Gateway => None,
            Address::Server { server }
            | Address::Channel { server, .. }
            | Address::User { server, .. } => Some(server),
        }
    }
}

/// A server name as it may appear in an address: a host name or an IPv4 address (no
/// spaces, no `@`, `/` or `%`).
fn valid_server(server: &str) -> bool {
    !server.is_empty()
        && server.len() <= 253
        && server
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// The room JID of a channel.
pub fn channel_jid(channel: &str, server: &str, domain: &str) -> Option<BareJid> {
    BareJid::new(&format!("{}%{}@{domain}", escape(channel), escape(server))).ok()
}

/// An occupant's JID in a channel's room.
pub fn occupant_jid(channel: &str, server: &str, nick: &str, domain: &str) -> Option<FullJid> {
    channel_jid(channel, server, domain)?
        .with_resource_str(nick)
        .ok()
}

/// The JID of an IRC user, for private messages.
pub fn user_jid(nick: &str, server: &str, domain: &str) -> Option<BareJid> {
    BareJid::new(&format!("{}%{}@{domain}", escape(nick), escape(server))).ok()
}

const ESCAPES: [(char, &str); 11] = [
    (' ', "\\20"),
    ('"', "\\22"),
    ('%', "\\25"),
    ('&', "\\26"),
    ('\'', "\\27"),
    ('/', "\\2f"),
    (':', "\\3a"),
    ('<', "\\3c"),
    ('>', "\\3e"),
    ('@', "\\40"),
    ('\\', "\\5c"),
];

/// XEP-0106 escaping of a name for a JID localpart (and `%`).
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match ESCAPES.iter().find(|(raw, _)| *raw == c) {
            Some((_, escaped)) => out.push_str(escaped),
            None => out.push(c),
        }
    }
    out
}

/// Undoes [`escape`]; a backslash not starting a known escape is kept as it is.
pub fn unescape(localpart: &str) -> String {
    let mut out = String::with_capacity(localpart.len());
    let mut rest = localpart;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let known = ESCAPES.iter().find(|(_, escaped)| {
            rest.get(..3)
                .is_some_and(|head| head.eq_ignore_ascii_case(escaped))
        });
        match known {
            Some((raw, _)) => {
                out.push(*raw);
                rest = &rest[3..];
            }
            None => {
                out.push('\\');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str = "irc.localhost";

    fn parse(jid: &str) -> Option<Address> {
        Address::parse(&Jid::new(jid).unwrap(), GW)
    }

    #[test]
    fn reads_every_kind_of_address() {
        assert_eq!(parse("irc.localhost"), Some(Address::Gateway));
        assert_eq!(
            parse("irc.example.net@irc.localhost"),
            Some(Address::Server {
                server: "irc.example.net".into()
            })
        );
        assert_eq!(
            parse("#test%irc.example.net@irc.localhost/Some Nick"),
            Some(Address::Channel {
                channel: "#test".into(),
                server: "irc.example.net".into(),
                nick: Some("Some Nick".into())
            })
        );
        assert_eq!(
            parse("bob%127.0.0.1@irc.localhost"),
            Some(Address::User {
                nick: "bob".into(),
                server: "127.0.0.1".into()
            })
        );
        assert_eq!(parse("x@other.example"), None);
        assert_eq!(parse("%irc.example.net@irc.localhost"), None);
        assert_eq!(parse("bob%bad\\20server@irc.localhost"), None);
    }

    #[test]
    fn a_channel_with_a_percent_splits_at_the_last_one() {
        let jid = channel_jid("#50%off", "irc.example.net", GW).unwrap();
        assert_eq!(jid.as_str(), "#50\\25off%irc.example.net@irc.localhost");
        assert_eq!(
            parse(jid.as_str()),
            Some(Address::Channel {
                channel: "#50%off".into(),
                server: "irc.example.net".into(),
                nick: None
            })
        );
    }

    #[test]
    fn escaping_round_trips() {
        for name in ["#a b", "&x@y", "#c:/<>'\"", "nick\\w", "#\\5c", "plain"] {
            assert_eq!(unescape(&escape(name)), name);
        }
        assert_eq!(escape("a\\b"), "a\\5cb");
        assert_eq!(unescape("a\\zz\\"), "a\\zz\\");
        assert_eq!(unescape("\\2F"), "/");
    }

    #[test]
    fn built_jids_read_back() {
        let room = channel_jid("#Room", "irc.example.net", GW).unwrap();
        // Nodeprep folds the localpart: IRC channel names are case-insensitive anyway.
        assert_eq!(room.as_str(), "#room%irc.example.net@irc.localhost");
        let occupant = occupant_jid("#room", "irc.example.net", "Nick[away]", GW).unwrap();
        assert_eq!(occupant.resource().as_str(), "Nick[away]");
        let user = user_jid("we\\ird", "irc.example.net", GW).unwrap();
        assert_eq!(
            Address::parse(&Jid::from(user), GW),
            Some(Address::User {
                nick: "we\\ird".into(),
                server: "irc.example.net".into()
            })
        );
    }
}
