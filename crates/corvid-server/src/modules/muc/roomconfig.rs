//! Room configuration (XEP-0045 §10.2): the settings of a room, the `muc#roomconfig`
//! data form an owner gets, and the validation of the form they submit back.
//!
//! Parsing never touches a room: [`RoomConfig::apply`] returns a new configuration, or the
//! stanza error to answer, and the caller swaps it in.

use std::collections::HashMap;

use corvid_proto::forms::{self, field};
use corvid_proto::{StanzaError, ns};
use corvid_xml::Element;

/// Longest room name or description accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
/// Longest room password accepted, in characters.
pub const MAX_SECRET_CHARS: usize = 256;

/// §15.5.3: the registered field for the number of history messages the room sends.
const MAX_HISTORY_FETCH: &str = "muc#maxhistoryfetch";
/// The unregistered name older Corvid versions used (and stored) for it.
const LEGACY_HISTORY_LENGTH: &str = "muc#roomconfig_historylength";

/// The field XEP-0313 room archives are switched with (XEP-0045's `enablelogging` is about
/// public logs, another thing).
const ENABLE_ARCHIVING: &str = "muc#roomconfig_enablearchiving";

/// The service limits a room's own settings are capped by.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub max_history: usize,
    pub max_occupants: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    /// Listed in the service's disco#items (§6.3).
    pub public: bool,
    pub members_only: bool,
    pub moderated: bool,
    /// Non-anonymous: everyone sees real JIDs (`whois` = anyone); else moderators only.
    pub whois_anyone: bool,
    pub password: Option<String>,
    pub max_users: usize,
    /// Occupants (not only moderators) may change the subject (§8.1).
    pub change_subject: bool,
    pub allow_invites: bool,
    pub history_length: usize,
    /// Groupchat messages go to the room's archive (XEP-0313 `muc#roomconfig_enablearchiving`).
    /// On by default, as a room's history is what its occupants come back for; owners may
    /// turn it off.
    pub archiving: bool,
}

impl RoomConfig {
    pub fn new(caps: Caps) -> RoomConfig {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            whois_anyone: false,
            password: None,
            max_users: caps.max_occupants,
            change_subject: false,
            allow_invites: false,
            history_length: caps.max_history,
            archiving: true,
        }
    }

    /// The `muc#roomconfig` form with the current values (§10.2). Every field has the
    /// type §15.5.3 registers for it: clients that bind the form to typed fields
    /// (aioxmpp) refuse a form whose types differ.
    pub fn form(&self, caps: Caps) -> Element {
        let caps_max_occupants = caps.max_occupants;
        let mut x = forms::form("form");
        x.append_child(forms::text("title", "Room configuration"));
        x.append_child(forms::form_type_field(ns::MUC_ROOMCONFIG));
        x.append_child(field(
            "muc#roomconfig_roomname",
            "text-single",
            Some("Name"),
            &[&self.name],
        ));
        x.append_child(field(
            "muc#roomconfig_roomdesc",
            "text-single",
            Some("Description"),
            &[&self.description],
        ));
        x.append_child(boolean(
            "muc#roomconfig_persistentroom",
            "Keep the room when empty",
            self.persistent,
        ));
        x.append_child(boolean(
            "muc#roomconfig_publicroom",
            "List the room publicly",
            self.public,
        ));
        x.append_child(boolean(
            "muc#roomconfig_membersonly",
            "Members only",
            self.members_only,
        ));
        x.append_child(boolean(
            "muc#roomconfig_moderatedroom",
            "Moderated (visitors have no voice)",
            self.moderated,
        ));
        let mut whois = field(
            "muc#roomconfig_whois",
            "list-single",
            Some("Who may see real JIDs"),
            &[if self.whois_anyone {
                "anyone"
            } else {
                "moderators"
            }],
        );
        for option in ["moderators", "anyone"] {
            whois.append_child(
                Element::new("option", ns::DATA_FORMS)
                    .with_attr("label", option)
                    .with_child(Element::new("value", ns::DATA_FORMS).with_text(option)),
            );
        }
        x.append_child(whois);
        x.append_child(boolean(
            "muc#roomconfig_passwordprotectedroom",
            "Password protected",
            self.password.is_some(),
        ));
        x.append_child(field(
            "muc#roomconfig_roomsecret",
            "text-private",
            Some("Password"),
            &[self.password.as_deref().unwrap_or("")],
        ));
        x.append_child(self.max_users_field(caps_max_occupants));
        x.append_child(boolean(
            "muc#roomconfig_changesubject",
            "Occupants may change the subject",
            self.change_subject,
        ));
        x.append_child(boolean(
            "muc#roomconfig_allowinvites",
            "Occupants may invite others",
            self.allow_invites,
        ));
        // §15.5.3 registers the history size as `muc#maxhistoryfetch`.
        x.append_child(field(
            MAX_HISTORY_FETCH,
            "text-single",
            Some("Messages of history kept"),
            &[&self.history_length.to_string()],
        ));
        x.append_child(boolean(
            ENABLE_ARCHIVING,
            "Archive the discussion (message archive, XEP-0313)",
            self.archiving,
        ));
        x
    }

    /// `muc#roomconfig_maxusers` is a `list-single` (§15.5.3): the usual sizes up to the
    /// service's cap, the cap itself and the current value.
    fn max_users_field(&self, cap: usize) -> Element {
        let mut sizes: Vec<usize> = [10, 20, 30, 50, 100]
            .into_iter()
            .filter(|n| *n < cap)
            .chain([cap, self.max_users])
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        let mut f = field(
            "muc#roomconfig_maxusers",
            "list-single",
            Some("Most occupants"),
            &[&self.max_users.to_string()],
        );
        for n in sizes {
            let n = n.to_string();
            f.append_child(
                Element::new("option", ns::DATA_FORMS)
                    .with_attr("label", n.as_str())
                    .with_child(Element::new("value", ns::DATA_FORMS).with_text(n)),
            );
        }
        f
    }

    /// Applies a submitted form (§10.2): fields absent keep their value; values out of
    /// range are `not-acceptable`; unknown fields are ignored (§10.2 lets a service
    /// ignore what it does not support).
    pub fn apply(&self, form: &Element, caps: Caps) -> Result<RoomConfig, StanzaError> {
        let values = submitted_values(form);
        let mut next = self.clone();
        let one = |var: &str| values.get(var).map(|v| v.join("\n"));
        let flag = |var: &str, current: bool| -> Result<bool, StanzaError> {
            match values.get(var).and_then(|v| v.first()) {
                None => Ok(current),
                Some(v) => parse_bool(v).ok_or_else(|| bad(var)),
            }
        };
        if let Some(name) = one("muc#roomconfig_roomname") {
            next.name = limited(name, MAX_TEXT_CHARS, "muc#roomconfig_roomname")?;
        }
        if let Some(desc) = one("muc#roomconfig_roomdesc") {
            next.description = limited(desc, MAX_TEXT_CHARS, "muc#roomconfig_roomdesc")?;
        }
        next.persistent = flag("muc#roomconfig_persistentroom", self.persistent)?;
        next.public = flag("muc#roomconfig_publicroom", self.public)?;
        next.members_only = flag("muc#roomconfig_membersonly", self.members_only)?;
        next.moderated = flag("muc#roomconfig_moderatedroom", self.moderated)?;
        next.change_subject = flag("muc#roomconfig_changesubject", self.change_subject)?;
        next.allow_invites = flag("muc#roomconfig_allowinvites", self.allow_invites)?;
        next.archiving = flag(ENABLE_ARCHIVING, self.archiving)?;
        if let Some(whois) = one("muc#roomconfig_whois") {
            next.whois_anyone = match whois.as_str() {
                "anyone" => true,
                "moderators" => false,
                _ => return Err(bad("muc#roomconfig_whois")),
            };
        }
        let protected = flag(
            "muc#roomconfig_passwordprotectedroom",
            self.password.is_some(),
        )?;
        let secret = match one("muc#roomconfig_roomsecret") {
            Some(s) => Some(limited(s, MAX_SECRET_CHARS, "muc#roomconfig_roomsecret")?),
            None => self.password.clone(),
        };
        next.password = match (protected, secret) {
            (false, _) => None,
            (true, Some(secret)) if !secret.is_empty() => Some(secret),
            (true, _) => return Err(bad("muc#roomconfig_roomsecret")),
        };
        if let Some(max) = one("muc#roomconfig_maxusers") {
            next.max_users = match max.trim() {
                "none" | "" => caps.max_occupants,
                n => n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad("muc#roomconfig_maxusers"))?,
            }
            .min(caps.max_occupants);
        }
        // Stored rooms saved before the registered name kept `muc#roomconfig_historylength`.
        if let Some(len) = one(MAX_HISTORY_FETCH).or_else(|| one(LEGACY_HISTORY_LENGTH)) {
            let len = len
                .trim()
                .parse::<usize>()
                .map_err(|_| bad(MAX_HISTORY_FETCH))?;
            next.history_length = len.min(caps.max_history);
        }
        Ok(next)
    }

    /// The disco#info features this configuration shows (§6.4, §15.3: only what holds).
    pub fn features(&self) -> [&'static str; 6] {
        [
            if self.public {
                "muc_public"
            } else {
                "muc_hidden"
            },
            if self.members_only {
                "muc_membersonly"
            } else {
                "muc_open"
            },
            if self.moderated {
                "muc_moderated"
            } else {
                "muc_unmoderated"
            },
            if self.whois_anyone {
                "muc_nonanonymous"
            } else {
                "muc_semianonymous"
            },
            if self.persistent {
                "muc_persistent"
            } else {
                "muc_temporary"
            },
            if self.password.is_some() {
                "muc_passwordprotected"
            } else {
                "muc_unsecured"
            },
        ]
    }
}

fn bad(var: &str) -> StanzaError {
    StanzaError::not_acceptable().with_text(format!("invalid value for {var}"))
}

fn limited(value: String, max_chars: usize, var: &str) -> Result<String, StanzaError> {
    if value.chars().count() > max_chars {
        return Err(bad(var));
    }
    Ok(value)
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Whether a form is `type='cancel'` (§10.1.3).
pub fn is_cancel(form: &Element) -> bool {
    form.attr("type") == Some("cancel")
}

/// The values of a submitted form, by field `var`.
fn submitted_values(form: &Element) -> HashMap<String, Vec<String>> {
    form.children()
        .filter(|c| c.is("field", ns::DATA_FORMS))
        .filter_map(|f| {
            let var = f.attr("var")?.to_string();
            let values = f
                .children()
                .filter(|v| v.is("value", ns::DATA_FORMS))
                .map(|v| v.text())
                .collect();
            Some((var, values))
        })
        .collect()
}

fn boolean(var: &str, label: &str, value: bool) -> Element {
    field(
        var,
        "boolean",
        Some(label),
        &[if value { "1" } else { "0" }],
    )
}

/// A `result` form of `FORM_TYPE` with text fields (the room's disco#info extension, §15.5.4).
pub fn result_form(form_type: &str, fields: &[(&str, &str, String)]) -> Element {
    let mut x = forms::form("result");
    x.append_child(forms::form_type_field(form_type));
    for (var, label, value) in fields {
        x.append_child(field(var, "text-single", Some(label), &[value]));
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        max_history: 20,
        max_occupants: 100,
    };

    use corvid_proto::forms::submit;

    #[test]
    fn empty_submit_keeps_the_defaults() {
        let config = RoomConfig::new(CAPS);
        assert_eq!(config.apply(&submit(&[]), CAPS), Ok(config.clone()));
        assert_eq!(config.features()[1], "muc_open");
    }

    #[test]
    fn submitted_values_apply_within_caps() {
        let config = RoomConfig::new(CAPS);
        let next = config
            .apply(
                &submit(&[
                    ("muc#roomconfig_roomname", "Lounge"),
                    ("muc#roomconfig_membersonly", "1"),
                    ("muc#roomconfig_whois", "anyone"),
                    ("muc#roomconfig_persistentroom", "true"),
                    ("muc#roomconfig_maxusers", "5000"),
                    ("muc#maxhistoryfetch", "3"),
                    ("muc#roomconfig_passwordprotectedroom", "1"),
                    ("muc#roomconfig_roomsecret", "s3cret"),
                    ("muc#roomconfig_unknown", "whatever"),
                ]),
                CAPS,
            )
            .unwrap();
        assert_eq!(next.name, "Lounge");
        assert!(next.members_only && next.whois_anyone && next.persistent);
        assert_eq!(next.max_users, 100);
        assert_eq!(next.history_length, 3);
        assert_eq!(next.password.as_deref(), Some("s3cret"));
        assert_eq!(
            next.features(),
            [
                "muc_public",
                "muc_membersonly",
                "muc_unmoderated",
                "muc_nonanonymous",
                "muc_persistent",
                "muc_passwordprotected"
            ]
        );
    }

    #[test]
    fn the_history_size_is_read_under_its_registered_and_its_old_name() {
        let config = RoomConfig::new(CAPS);
        for var in [MAX_HISTORY_FETCH, LEGACY_HISTORY_LENGTH] {
            let next = config.apply(&submit(&[(var, "4")]), CAPS).unwrap();
            assert_eq!(next.history_length, 4, "{var}");
        }
    }

    #[test]
    fn max_users_offers_the_current_value_and_the_cap() {
        let mut config = RoomConfig::new(CAPS);
        config.max_users = 42;
        let form = config.form(CAPS);
        let field = form
            .children()
            .find(|f| f.attr("var") == Some("muc#roomconfig_maxusers"))
            .unwrap();
        let options: Vec<String> = field
            .children()
            .filter(|c| c.name() == "option")
            .filter_map(|o| o.get_child("value", ns::DATA_FORMS).map(Element::text))
            .collect();
        assert_eq!(options, ["10", "20", "30", "42", "50", "100"]);
    }

    #[test]
    fn invalid_values_are_not_acceptable() {
        let config = RoomConfig::new(CAPS);
        for fields in [
            &[("muc#roomconfig_membersonly", "maybe")][..],
            &[("muc#roomconfig_whois", "everyone")],
            &[("muc#roomconfig_maxusers", "-1")],
            &[("muc#roomconfig_passwordprotectedroom", "1")],
        ] {
            let err = config.apply(&submit(fields), CAPS).unwrap_err();
            assert_eq!(err.condition, "not-acceptable", "{fields:?}");
        }
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert!(
            config
                .apply(&submit(&[("muc#roomconfig_roomname", &long)]), CAPS)
                .is_err()
        );
    }

    #[test]
    fn form_lists_every_field_with_current_values() {
        let form = RoomConfig::new(CAPS).form(CAPS);
        let vars: Vec<_> = form.children().filter_map(|f| f.attr("var")).collect();
        for var in [
            "FORM_TYPE",
            "muc#roomconfig_roomname",
            "muc#roomconfig_whois",
            "muc#roomconfig_roomsecret",
        ] {
            assert!(vars.contains(&var), "{var}");
        }
    }
}
