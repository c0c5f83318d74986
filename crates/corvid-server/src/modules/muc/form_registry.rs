//! The XEP-0068 field registries of the data forms Corvid sends, written down as data, and
//! a check that a form Corvid builds uses only registered fields with their registered
//! types. Clients that bind forms to typed classes (aioxmpp) refuse a form whose field
//! types differ from the registry, so a wrong type locks those clients out (issue 14).
//!
//! Test-only: the tables are the reference the forms are compared against.

use corvid_proto::ns;
use corvid_xml::Element;

/// XEP-0045 §15.5.3, `http://jabber.org/protocol/muc#roomconfig`.
pub const MUC_ROOMCONFIG: &[(&str, &str)] = &[
    ("muc#maxhistoryfetch", "text-single"),
    ("muc#roomconfig_allowpm", "list-single"),
    ("muc#roomconfig_allowinvites", "boolean"),
    ("muc#roomconfig_changesubject", "boolean"),
    ("muc#roomconfig_enablelogging", "boolean"),
    // The XEP-0313 room-archive switch, as servers and clients use it.
    ("muc#roomconfig_enablearchiving", "boolean"),
    ("muc#roomconfig_getmemberlist", "list-multi"),
    ("muc#roomconfig_lang", "text-single"),
    ("muc#roomconfig_pubsub", "text-single"),
    ("muc#roomconfig_maxusers", "list-single"),
    ("muc#roomconfig_membersonly", "boolean"),
    ("muc#roomconfig_moderatedroom", "boolean"),
    ("muc#roomconfig_passwordprotectedroom", "boolean"),
    ("muc#roomconfig_persistentroom", "boolean"),
    ("muc#roomconfig_presencebroadcast", "list-multi"),
    ("muc#roomconfig_publicroom", "boolean"),
    ("muc#roomconfig_roomadmins", "jid-multi"),
    ("muc#roomconfig_roomdesc", "text-single"),
    ("muc#roomconfig_roomname", "text-single"),
    ("muc#roomconfig_roomowners", "jid-multi"),
    ("muc#roomconfig_roomsecret", "text-private"),
    ("muc#roomconfig_whois", "list-single"),
];

/// XEP-0045 §15.5.4, `http://jabber.org/protocol/muc#roominfo`.
pub const MUC_ROOMINFO: &[(&str, &str)] = &[
    ("muc#maxhistoryfetch", "text-single"),
    ("muc#roominfo_contactjid", "jid-multi"),
    ("muc#roominfo_description", "text-single"),
    ("muc#roominfo_lang", "text-single"),
    ("muc#roominfo_ldapgroup", "text-single"),
    ("muc#roominfo_logs", "text-single"),
    ("muc#roominfo_occupants", "text-single"),
    ("muc#roominfo_subject", "text-single"),
    ("muc#roominfo_subjectmod", "boolean"),
];

/// XEP-0045 §15.5.2, `http://jabber.org/protocol/muc#request`.
pub const MUC_REQUEST: &[(&str, &str)] = &[
    ("muc#role", "list-single"),
    ("muc#jid", "jid-single"),
    ("muc#roomnick", "text-single"),
    ("muc#request_allow", "boolean"),
];

/// XEP-0077 §5 and §14.5, `jabber:iq:register`.
pub const IQ_REGISTER: &[(&str, &str)] = &[
    ("username", "text-single"),
    ("nick", "text-single"),
    ("password", "text-private"),
    ("name", "text-single"),
    ("first", "text-single"),
    ("last", "text-single"),
    ("email", "text-single"),
    ("address", "text-single"),
    ("city", "text-single"),
    ("state", "text-single"),
    ("zip", "text-single"),
    ("phone", "text-single"),
    ("url", "text-single"),
    ("date", "text-single"),
    ("misc", "text-single"),
    ("text", "text-single"),
    ("key", "text-single"),
];

/// The registry of a `FORM_TYPE`, if this file knows it.
fn registry(form_type: &str) -> Option<&'static [(&'static str, &'static str)]> {
    match form_type {
        ns::MUC_ROOMCONFIG => Some(MUC_ROOMCONFIG),
        ns::MUC_ROOMINFO => Some(MUC_ROOMINFO),
        "http://jabber.org/protocol/muc#request" => Some(MUC_REQUEST),
        ns::REGISTER => Some(IQ_REGISTER),
        _ => None,
    }
}

/// Every way `form` departs from its registry: a field missing a type, an unregistered
/// field, or a type other than the registered one. `FORM_TYPE` must be a hidden field
/// (XEP-0068 §3). Empty when the form conforms.
pub fn departures(form: &Element) -> Vec<String> {
    let fields: Vec<&Element> = form
        .children()
        .filter(|c| c.is("field", ns::DATA_FORMS))
        .collect();
    let form_type = fields
        .iter()
        .find(|f| f.attr("var") == Some("FORM_TYPE"))
        .and_then(|f| f.get_child("value", ns::DATA_FORMS))
        .map(|v| v.text());
    let Some(table) = form_type.as_deref().and_then(registry) else {
        return vec![format!("unknown FORM_TYPE {form_type:?}")];
    };
    let mut found = Vec::new();
    for f in fields {
        let var = f.attr("var").unwrap_or_default();
        // XEP-0004 §3.3: a field without `type` is `text-single`.
        let kind = f.attr("type").unwrap_or("text-single");
        let expected = if var == "FORM_TYPE" {
            Some("hidden")
        } else {
            table.iter().find(|(v, _)| *v == var).map(|(_, t)| *t)
        };
        match expected {
            None => found.push(format!("{var} is not registered")),
            Some(t) if t != kind => found.push(format!("{var} is {kind}, registered as {t}")),
            Some(_) => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::muc::disco::room_info;
    use crate::modules::muc::roomconfig::RoomConfig;
    use crate::modules::muc::testing::{CAPS, room_of};
    use crate::modules::muc::voice;

    fn form_of(query: &Element) -> &Element {
        query
            .get_child("x", ns::DATA_FORMS)
            .expect("the query has a form")
    }

    #[test]
    fn the_check_catches_a_wrong_type_and_an_unregistered_field() {
        let mut form = RoomConfig::new(CAPS).form(CAPS);
        for f in form.children_mut() {
            if f.attr("var") == Some("muc#roomconfig_roomdesc") {
                f.set_attr("type", "text-multi");
            }
        }
        form.append_child(
            Element::new("field", ns::DATA_FORMS)
                .with_attr("var", "muc#roomconfig_made_up")
                .with_attr("type", "boolean"),
        );
        assert_eq!(
            departures(&form),
            [
                "muc#roomconfig_roomdesc is text-multi, registered as text-single",
                "muc#roomconfig_made_up is not registered"
            ]
        );
    }

    #[test]
    fn the_room_configuration_form_matches_the_registry() {
        let mut config = RoomConfig::new(CAPS);
        config.password = Some("secret".into());
        config.description = "about".into();
        let form = config.form(CAPS);
        assert_eq!(departures(&form), Vec::<String>::new());
        // Every field of the form was checked: it has more than FORM_TYPE.
        assert!(form.children().filter(|c| c.name() == "field").count() > 10);
    }

    #[test]
    fn the_room_info_form_matches_the_registry() {
        let room = room_of("owner@x", &[("owner", "owner@x/1")]);
        let info = room_info(&room);
        assert_eq!(departures(form_of(&info)), Vec::<String>::new());
    }

    #[test]
    fn the_voice_request_approval_form_matches_the_registry() {
        let form = voice::approval_form(&"vis@x/1".parse().unwrap(), "vis");
        assert_eq!(departures(&form), Vec::<String>::new());
    }
}
