//! Presence as corvid-chat shows and sends it: one availability per contact (from all its
//! resources) and our own `<show/>` and status.

use std::collections::BTreeMap;

use corvid_client::PresenceInfo;
use corvid_proto::ns;
use corvid_xml::Element;

/// RFC 6121 §4.7.2.1 availability, plus plain "online".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Show {
    Chat,
    #[default]
    Online,
    Away,
    Xa,
    Dnd,
}

impl Show {
    /// The `<show/>` value (`None`: plain available); unknown values read as online
    /// (RFC 6121 §4.7.2.1 allows no others).
    pub fn from_show(show: Option<&str>) -> Show {
        match show {
            Some("chat") => Show::Chat,
            Some("away") => Show::Away,
            Some("xa") => Show::Xa,
            Some("dnd") => Show::Dnd,
            _ => Show::Online,
        }
    }

    /// What a user types: `online`/`available`, `chat`, `away`, `xa`, `dnd`.
    pub fn from_word(word: &str) -> Option<Show> {
        Some(match word {
            "online" | "available" => Show::Online,
            "chat" => Show::Chat,
            "away" => Show::Away,
            "xa" => Show::Xa,
            "dnd" => Show::Dnd,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Show::Chat => "chat",
            Show::Online => "online",
            Show::Away => "away",
            Show::Xa => "xa",
            Show::Dnd => "dnd",
        }
    }

    /// The `<show/>` element's text, none for plain available.
    fn show_element(self) -> Option<&'static str> {
        match self {
            Show::Online => None,
            other => Some(other.as_str()),
        }
    }

    /// How reachable: the higher the better.
    fn reachability(self) -> u8 {
        match self {
            Show::Chat => 4,
            Show::Online => 3,
            Show::Away => 2,
            Show::Xa => 1,
            Show::Dnd => 0,
        }
    }
}

/// A contact's availability: its highest-priority resource's, the most reachable among
/// equals; `None` when no resource is online.
pub fn summary(resources: &BTreeMap<String, PresenceInfo>) -> Option<Show> {
    resources
        .values()
        .map(|info| (info.priority, Show::from_show(info.show.as_deref())))
        .max_by_key(|(priority, show)| (*priority, show.reachability()))
        .map(|(_, show)| show)
}

/// Our available presence with `show` and an optional status text.
pub fn own_presence(show: Show, status: Option<&str>) -> Element {
    let mut presence = Element::new("presence", ns::CLIENT);
    if let Some(show) = show.show_element() {
        presence.append_child(Element::new("show", ns::CLIENT).with_text(show));
    }
    if let Some(status) = status {
        presence.append_child(Element::new("status", ns::CLIENT).with_text(status));
    }
    presence
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(show: Option<&str>, priority: i8) -> PresenceInfo {
        PresenceInfo {
            show: show.map(str::to_owned),
            status: None,
            priority,
        }
    }

    #[test]
    fn the_highest_priority_resource_speaks_for_the_contact() {
        let mut resources = BTreeMap::new();
        assert_eq!(summary(&resources), None);
        resources.insert("phone".into(), info(Some("away"), 5));
        resources.insert("desk".into(), info(None, 1));
        assert_eq!(summary(&resources), Some(Show::Away));
        resources.insert("laptop".into(), info(Some("chat"), 5));
        assert_eq!(summary(&resources), Some(Show::Chat));
    }

    #[test]
    fn own_presence_omits_show_when_plainly_online() {
        let p = own_presence(Show::Online, None);
        assert!(!p.has_child("show", ns::CLIENT));
        let p = own_presence(Show::Away, Some("lunch"));
        assert_eq!(
            p.get_child("show", ns::CLIENT)
                .map(Element::text)
                .as_deref(),
            Some("away")
        );
        assert_eq!(
            p.get_child("status", ns::CLIENT)
                .map(Element::text)
                .as_deref(),
            Some("lunch")
        );
    }
}
