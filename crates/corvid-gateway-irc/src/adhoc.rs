//! Per-user settings through XEP-0050 ad-hoc commands: `configure` on the gateway
//! (default nick, realname) and on each server's JID (nick, realname, server password,
//! NickServ password); the gateway's form is also offered as `jabber:iq:register`
//! (XEP-0077 §4 with a data form). The commands are stateless: a submitted form carries
//! everything, so no command session is kept between the steps.

use corvid_proto::{StanzaError, forms, ns};
use corvid_xml::Element;

use crate::settings::{ServerSettings, UserSettings};

pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
pub const CONFIGURE: &str = "configure";

/// Where a command runs: the gateway or one IRC server.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    Gateway,
    Server(&'a str),
}

/// What executing a command step gives.
pub enum Outcome {
    /// Answer with this `<command/>`.
    Reply(Element),
    /// Store these settings, then answer.
    Save(UserSettings, Element),
}

/// The `<query/>` listing the commands at `jid` (disco#items on the commands node).
pub fn command_items(jid: &str, scope: Scope<'_>) -> Element {
    let name = match scope {
        Scope::Gateway => "Configure the gateway (default nick, realname)".to_string(),
        Scope::Server(server) => format!("Configure {server} (nick, passwords)"),
    };
    Element::new("query", ns::DISCO_ITEMS)
        .with_attr("node", COMMANDS)
        .with_child(
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", jid)
                .with_attr("node", CONFIGURE)
                .with_attr("name", name),
        )
}

/// One step of the `configure` command.
pub fn execute(
    command: &Element,
    scope: Scope<'_>,
    current: &UserSettings,
) -> Result<Outcome, StanzaError> {
    if command.attr("node") != Some(CONFIGURE) {
        return Err(StanzaError::item_not_found());
    }
    let reply = |status: &str| {
        Element::new("command", COMMANDS)
            .with_attr("node", CONFIGURE)
            .with_attr("sessionid", command.attr("sessionid").unwrap_or(CONFIGURE))
            .with_attr("status", status)
    };
    if command.attr("action") == Some("cancel") {
        return Ok(Outcome::Reply(reply("canceled")));
    }
    let submitted = command
        .get_child("x", ns::DATA_FORMS)
        .filter(|x| x.attr("type") == Some("submit"));
    match submitted {
        Some(form) => {
            let updated = apply(form, scope, current);
            let note = Element::new("note", COMMANDS)
                .with_attr("type", "info")
                .with_text("Settings saved; they apply to the next connection.");
            Ok(Outcome::Save(updated, reply("completed").with_child(note)))
        }
        None => {
            let actions = Element::new("actions", COMMANDS)
                .with_attr("execute", "complete")
                .with_child(Element::new("complete", COMMANDS));
            Ok(Outcome::Reply(
                reply("executing")
                    .with_child(actions)
                    .with_child(form(scope, current)),
            ))
        }
    }
}

/// The form with the current values.
pub fn form(scope: Scope<'_>, current: &UserSettings) -> Element {
    let mut x = forms::form("form");
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    match scope {
        Scope::Gateway => {
            x.append_child(forms::text("title", "IRC gateway settings"));
            x.append_child(forms::field(
                "nick",
                "text-single",
                Some("Default nick"),
                &[&value(&current.nick)],
            ));
            x.append_child(forms::field(
                "realname",
                "text-single",
                Some("Realname"),
                &[&value(&current.realname)],
            ));
        }
        Scope::Server(server) => {
            let there = current
                .servers
                .get(&crate::irc::fold(server))
                .cloned()
                .unwrap_or_default();
            x.append_child(forms::text("title", &format!("Settings for {server}")));
            x.append_child(forms::field(
                "nick",
                "text-single",
                Some("Nick"),
                &[&value(&there.nick)],
            ));
            x.append_child(forms::field(
                "realname",
                "text-single",
                Some("Realname"),
                &[&value(&there.realname)],
            ));
            // Passwords are never echoed back.
            x.append_child(forms::field(
                "password",
                "text-private",
                Some("Server password"),
                &[],
            ));
            x.append_child(forms::field(
                "nickserv_password",
                "text-private",
                Some("NickServ password"),
                &[],
            ));
        }
    }
    x
}

/// The settings once `form` is applied: an empty field clears a value; a password field
/// left out keeps the stored one.
pub fn apply(form: &Element, scope: Scope<'_>, current: &UserSettings) -> UserSettings {
    let mut updated = current.clone();
    let field = |var: &str| -> Option<Option<String>> {
        let present = form
            .children()
            .any(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some(var));
        present.then(|| clean(forms::value(form, var)))
    };
    match scope {
        Scope::Gateway => {
            if let Some(nick) = field("nick") {
                updated.nick = nick;
            }
            if let Some(realname) = field("realname") {
                updated.realname = realname;
            }
        }
        Scope::Server(server) => {
            let key = crate::irc::fold(server);
            let mut there = updated.servers.remove(&key).unwrap_or_default();
            if let Some(nick) = field("nick") {
                there.nick = nick;
            }
            if let Some(realname) = field("realname") {
                there.realname = realname;
            }
            if let Some(password) = field("password") {
                there.password = password;
            }
            if let Some(password) = field("nickserv_password") {
                there.nickserv_password = password;
            }
            if there != ServerSettings::default() {
                updated.servers.insert(key, there);
            }
        }
    }
    updated
}

/// A value as stored: trimmed, no line breaks, `None` when empty.
fn clean(value: Option<String>) -> Option<String> {
    let value = value?.replace(['\r', '\n'], "");
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// The `jabber:iq:register` answer to a get: the gateway form (XEP-0077 §4).
pub fn register_query(current: &UserSettings) -> Element {
    let mut query = Element::new("query", ns::REGISTER).with_child(
        Element::new("instructions", ns::REGISTER)
            .with_text("Set the nick and realname the gateway uses on IRC."),
    );
    if *current != UserSettings::default() {
        query.append_child(Element::new("registered", ns::REGISTER));
    }
    query.with_child(form(Scope::Gateway, current))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(form: Option<Element>) -> Element {
        let mut cmd = Element::new("command", COMMANDS)
            .with_attr("node", CONFIGURE)
            .with_attr("action", "execute");
        if let Some(form) = form {
            cmd.append_child(form);
        }
        cmd
    }

    #[test]
    fn the_first_step_shows_the_current_values() {
        let current = UserSettings {
            nick: Some("ali".into()),
            ..Default::default()
        };
        let Ok(Outcome::Reply(reply)) = execute(&command(None), Scope::Gateway, &current) else {
            panic!("a form was expected");
        };
        assert_eq!(reply.attr("status"), Some("executing"));
        let form = reply.get_child("x", ns::DATA_FORMS).unwrap();
        assert_eq!(forms::value(form, "nick").as_deref(), Some("ali"));
    }

    #[test]
    fn a_submitted_form_is_saved() {
        let submit = forms::submit(&[("nick", " bob "), ("realname", "")]);
        let current = UserSettings {
            realname: Some("old".into()),
            ..Default::default()
        };
        let Ok(Outcome::Save(saved, reply)) =
            execute(&command(Some(submit)), Scope::Gateway, &current)
        else {
            panic!("a save was expected");
        };
        assert_eq!(reply.attr("status"), Some("completed"));
        assert_eq!(saved.nick.as_deref(), Some("bob"));
        assert_eq!(saved.realname, None);
    }

    #[test]
    fn server_settings_keep_passwords_not_resubmitted() {
        let mut current = UserSettings::default();
        current.servers.insert(
            "irc.example".into(),
            ServerSettings {
                nickserv_password: Some("secret".into()),
                ..Default::default()
            },
        );
        let submit = forms::submit(&[("nick", "n")]);
        let saved = apply(&submit, Scope::Server("IRC.example"), &current);
        let there = &saved.servers["irc.example"];
        assert_eq!(there.nick.as_deref(), Some("n"));
        assert_eq!(there.nickserv_password.as_deref(), Some("secret"));
        let Ok(Outcome::Reply(reply)) =
            execute(&command(None), Scope::Server("irc.example"), &saved)
        else {
            panic!();
        };
        let form = reply.get_child("x", ns::DATA_FORMS).unwrap();
        assert_eq!(forms::value(form, "nickserv_password"), None);
    }

    #[test]
    fn unknown_commands_and_cancel() {
        let other = Element::new("command", COMMANDS).with_attr("node", "other");
        assert!(execute(&other, Scope::Gateway, &UserSettings::default()).is_err());
        let cancel = command(None).with_attr("action", "cancel");
        let Ok(Outcome::Reply(reply)) = execute(&cancel, Scope::Gateway, &UserSettings::default())
        else {
            panic!();
        };
        assert_eq!(reply.attr("status"), Some("canceled"));
    }
}
