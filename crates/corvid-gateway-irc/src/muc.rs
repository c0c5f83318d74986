//! The XEP-0045 stanzas a channel shows itself with: occupant presences (roles and
//! affiliations from IRC channel modes, status codes), room messages and subjects, and
//! the errors of a failed join.

use corvid_proto::{StanzaError, ns};
use corvid_xml::Element;
use jid::{FullJid, Jid};

/// XEP-0045 §15.6 status codes the gateway uses.
pub mod status {
    /// This presence is about you (§7.2.3).
    pub const SELF: u16 = 110;
    /// The service changed your nick (§7.2.9): the IRC nick differs from the one asked.
    pub const NICK_ASSIGNED: u16 = 210;
    /// The occupant changed nick (§7.6).
    pub const NICK_CHANGED: u16 = 303;
    /// The occupant was kicked (§8.2).
    pub const KICKED: u16 = 307;
    /// The service is going away (§9.7 uses it for shutdown): the IRC connection ended.
    pub const SHUTDOWN: u16 = 332;
}

/// An occupant's channel modes as a MUC affiliation and role: `~` owner, `&`/`@` admin,
/// `%`/`+` member; op-like modes moderate, everyone else may speak (IRC has no visitors
/// unless the channel is +m, which the gateway does not track).
pub fn affiliation_and_role(prefixes: &str) -> (&'static str, &'static str) {
    if prefixes.contains('~') {
        ("owner", "moderator")
    } else if prefixes.contains(['&', '@']) {
        ("admin", "moderator")
    } else if prefixes.contains('%') {
        ("member", "moderator")
    } else if prefixes.contains('+') {
        ("member", "participant")
    } else {
        ("none", "participant")
    }
}

/// One occupant presence, available or not.
pub struct OccupantPresence<'a> {
    pub from: &'a FullJid,
    pub to: &'a Jid,
    pub available: bool,
    /// The occupant's channel prefixes (`@`, `+`…).
    pub prefixes: &'a str,
    pub codes: &'a [u16],
    /// The new nick, with status 303.
    pub new_nick: Option<&'a str>,
    /// A kick's reason (in the item) or a part/quit message (as the presence status).
    pub reason: Option<&'a str>,
}

impl OccupantPresence<'_> {
    pub fn to_element(&self) -> Element {
        let mut presence = Element::new("presence", ns::CLIENT)
            .with_attr("from", self.from.as_str())
            .with_attr("to", self.to.as_str());
        let (affiliation, role) = affiliation_and_role(self.prefixes);
        let mut item = Element::new("item", ns::MUC_USER).with_attr("affiliation", affiliation);
        if self.available {
            item.set_attr("role", role);
        } else {
            presence.set_attr("type", "unavailable");
            item.set_attr("role", "none");
        }
        if let Some(nick) = self.new_nick {
            item.set_attr("nick", nick);
        }
        let kicked = self.codes.contains(&status::KICKED);
        if let (true, Some(reason)) = (kicked, self.reason) {
            item.append_child(Element::new("reason", ns::MUC_USER).with_text(reason));
        }
        let mut x = Element::new("x", ns::MUC_USER).with_child(item);
        for code in self.codes {
            x.append_child(
                Element::new("status", ns::MUC_USER).with_attr("code", code.to_string()),
            );
        }
        if let (false, Some(reason)) = (kicked, self.reason.filter(|r| !r.is_empty())) {
            presence.append_child(Element::new("status", ns::CLIENT).with_text(reason));
        }
        presence.with_child(x)
    }
}

/// The error answer to a join (XEP-0045 §7.2.6…): from the occupant JID asked for.
pub fn join_error(from: &FullJid, to: &Jid, error: &StanzaError) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_attr("type", "error")
        .with_attr("from", from.as_str())
        .with_attr("to", to.as_str())
        .with_child(Element::new("x", ns::MUC))
        .with_child(error.to_element(ns::CLIENT))
}

/// A room message, from an occupant.
pub fn groupchat(from: &FullJid, to: &Jid, id: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_attr("from", from.as_str())
        .with_attr("to", to.as_str())
        .with_attr("id", id)
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

/// The room subject (§7.2.15): from the occupant who set it, or from the room.
pub fn subject(from: &Jid, to: &Jid, id: &str, subject: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_attr("from", from.as_str())
        .with_attr("to", to.as_str())
        .with_attr("id", id)
        .with_child(Element::new("subject", ns::CLIENT).with_text(subject))
}

/// A one-to-one message from an IRC user.
pub fn chat(from: &Jid, to: &Jid, id: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("type", "chat")
        .with_attr("from", from.as_str())
        .with_attr("to", to.as_str())
        .with_attr("id", id)
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

/// A message error not answering any particular stanza (the IRC server refused a message
/// some time after it was sent).
pub fn message_error(from: &Jid, to: &Jid, error: &StanzaError) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("type", "error")
        .with_attr("from", from.as_str())
        .with_attr("to", to.as_str())
        .with_child(error.to_element(ns::CLIENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_roles() {
        assert_eq!(affiliation_and_role("@"), ("admin", "moderator"));
        assert_eq!(affiliation_and_role("@+"), ("admin", "moderator"));
        assert_eq!(affiliation_and_role("+"), ("member", "participant"));
        assert_eq!(affiliation_and_role(""), ("none", "participant"));
        assert_eq!(affiliation_and_role("~"), ("owner", "moderator"));
    }

    #[test]
    fn a_nick_change_carries_303_and_the_new_nick() {
        let from: FullJid = "#c%s@gw/old".parse().unwrap();
        let to: Jid = "u@h/r".parse().unwrap();
        let el = OccupantPresence {
            from: &from,
            to: &to,
            available: false,
            prefixes: "+",
            codes: &[status::NICK_CHANGED],
            new_nick: Some("new"),
            reason: None,
        }
        .to_element();
        assert_eq!(el.attr("type"), Some("unavailable"));
        let x = el.get_child("x", ns::MUC_USER).unwrap();
        let item = x.get_child("item", ns::MUC_USER).unwrap();
        assert_eq!(item.attr("nick"), Some("new"));
        assert_eq!(item.attr("role"), Some("none"));
        assert_eq!(item.attr("affiliation"), Some("member"));
        let status = x.get_child("status", ns::MUC_USER).unwrap();
        assert_eq!(status.attr("code"), Some("303"));
    }
}
