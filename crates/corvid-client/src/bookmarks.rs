//! Conference bookmarks in PEP (XEP-0402 `urn:xmpp:bookmarks:1`); XMPPFramework's
//! `XMPPBookmarksModule`, which keeps XEP-0048 bookmarks, in their current form.
//!
//! Each bookmarked room is one item of the account's `urn:xmpp:bookmarks:1` node, its id
//! the room's JID. Items are published with the publish-options of XEP-0402 §5 (kept,
//! unlimited, never sent on presence, visible only to the account), so a server that has
//! no bookmarks module of its own still keeps them right. Servers that mirror them to
//! XEP-0048 private storage (Corvid always, Prosody with `mod_bookmarks`) say
//! `urn:xmpp:bookmarks:1#compat` in the account's disco#info. Other devices of the account
//! learn of changes from the node's notifications: declare `urn:xmpp:bookmarks:1+notify`
//! ([`crate::Capabilities`]) and read them with a PEP [`crate::PubSub`] and
//! [`Bookmark::from_item`].

use corvid_proto::{BareJid, forms, ns};
use corvid_xml::Element;

use crate::client::Client;
use crate::error::RequestError;
use crate::pubsub::{Item, ItemsQuery, PubSub, PubSubError};

/// XEP-0402 §5: how the bookmarks node must be configured.
const PUBLISH_OPTIONS: &[(&str, &str)] = &[
    ("pubsub#persist_items", "true"),
    ("pubsub#max_items", "max"),
    ("pubsub#send_last_published_item", "never"),
    ("pubsub#access_model", "whitelist"),
];

/// What is left of [`PUBLISH_OPTIONS`] for a service that refuses them: the private
/// storage options of XEP-0223 (kept, visible only to the account), without XEP-0402's
/// `max_items` (whose `max` came with XEP-0060 1.16) and `send_last_published_item`.
/// ejabberd 23.01 knows only these two publish-options and rejects any other field.
const PRIVATE_STORAGE_OPTIONS: &[(&str, &str)] = &[
    ("pubsub#persist_items", "true"),
    ("pubsub#access_model", "whitelist"),
];

/// The item limit the node is configured with when the publish-options could not ask for
/// `max`: more bookmarks than anyone keeps.
const MANY: u32 = 1000;

/// One bookmarked room (XEP-0402 §3: the `<conference/>` element).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bookmark {
    /// The room's JID (the item's id).
    pub room: BareJid,
    /// A name for the room, for people.
    pub name: Option<String>,
    /// Join the room when the client starts.
    pub autojoin: bool,
    /// The nickname to join with.
    pub nick: Option<String>,
    /// The room's password, if it has one.
    pub password: Option<String>,
}

impl Bookmark {
    /// A bookmark of `room` with nothing else said.
    pub fn new(room: BareJid) -> Self {
        Bookmark {
            room,
            name: None,
            autojoin: false,
            nick: None,
            password: None,
        }
    }

    /// The bookmark an item of the bookmarks node holds (from a fetch or a notification).
    pub fn from_item(item: &Item) -> Option<Bookmark> {
        let room = BareJid::new(item.id.as_deref()?).ok()?;
        let conference = item
            .payload
            .as_ref()
            .filter(|p| p.is("conference", ns::BOOKMARKS))?;
        let child = |name: &str| conference.get_child(name, ns::BOOKMARKS).map(Element::text);
        Some(Bookmark {
            room,
            name: conference.attr("name").map(str::to_owned),
            // XML Schema booleans: `true` or `1`.
            autojoin: matches!(conference.attr("autojoin"), Some("true" | "1")),
            nick: child("nick"),
            password: child("password"),
        })
    }

    fn to_element(&self) -> Element {
        let mut conference = Element::new("conference", ns::BOOKMARKS)
            .with_attr("autojoin", if self.autojoin { "true" } else { "false" });
        if let Some(name) = &self.name {
            conference.set_attr("name", name.as_str());
        }
        if let Some(nick) = &self.nick {
            conference.append_child(Element::new("nick", ns::BOOKMARKS).with_text(nick.as_str()));
        }
        if let Some(password) = &self.password {
            conference
                .append_child(Element::new("password", ns::BOOKMARKS).with_text(password.as_str()));
        }
        conference
    }
}

/// The account's room bookmarks.
#[derive(Debug)]
pub struct Bookmarks {
    pep: PubSub,
}

impl Bookmarks {
    /// The bookmarks of `client`'s account (XMPPBookmarksModule's `activate:`).
    pub fn attach(client: &Client) -> Bookmarks {
        Bookmarks {
            pep: PubSub::requests(client, None),
        }
    }

    /// Every bookmark (`fetchBookmarks`); none if the node does not exist yet.
    pub async fn list(&self) -> Result<Vec<Bookmark>, PubSubError> {
        match self.pep.items(ns::BOOKMARKS, &ItemsQuery::default()).await {
            Ok(page) => Ok(page.items.iter().filter_map(Bookmark::from_item).collect()),
            Err(e) if e.condition() == Some("item-not-found") => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Adds the bookmark, or replaces the one of the same room (XEP-0402 §4.2).
    pub async fn set(&self, bookmark: &Bookmark) -> Result<(), PubSubError> {
        let publish = |options| {
            self.pep.publish(
                ns::BOOKMARKS,
                Some(bookmark.room.as_str()),
                bookmark.to_element(),
                Some(options),
            )
        };
        match publish(PUBLISH_OPTIONS).await {
            // Refused, perhaps for a field the service does not know (XEP-0060 §7.1.5 has
            // it reject those): once more with the options every service with
            // publish-options has, the account-only access above all.
            Err(PubSubError::Request(RequestError::Error { .. })) => {
                // The node may keep a single item then (ejabberd 23.01's PEP default), and
                // a new one would replace the others: its limit is raised first, or, for a
                // node the publish creates, right after (nothing is lost with one item).
                let existed = match self.keep_many().await {
                    Ok(()) => true,
                    Err(e) if e.condition() == Some("item-not-found") => false,
                    Err(e) => return Err(e),
                };
                publish(PRIVATE_STORAGE_OPTIONS).await?;
                if !existed {
                    self.keep_many().await?;
                }
                Ok(())
            }
            outcome => outcome.map(|_| ()),
        }
    }

    /// Configures the bookmarks node to keep [`MANY`] items, if it keeps fewer.
    async fn keep_many(&self) -> Result<(), PubSubError> {
        let form = self.pep.configuration(ns::BOOKMARKS).await?;
        let limit = forms::value(&form, "pubsub#max_items");
        let few = limit
            .and_then(|l| l.parse::<u32>().ok())
            .is_some_and(|n| n < MANY);
        if !few {
            return Ok(());
        }
        self.pep
            .configure(ns::BOOKMARKS, &[("pubsub#max_items", &MANY.to_string())])
            .await
    }

    /// Removes the room's bookmark, telling the account's other devices (XEP-0402 §4.3).
    pub async fn remove(&self, room: &BareJid) -> Result<(), PubSubError> {
        self.pep.retract(ns::BOOKMARKS, room.as_str(), true).await
    }
}
