//! The roster (XMPPFramework's `XMPPRoster`, with `XMPPRosterMemoryStorage` and
//! `XMPPRosterCoreDataStorage` as [`MemoryRosterStorage`] and [`crate::SqliteStorage`]).
//!
//! [`Roster::attach`] hooks into a [`Client`]: roster pushes (RFC 6121 §2.1.6) update the
//! storage and are acknowledged, presences fill the presence map (per contact and resource),
//! subscription requests become events. [`Roster::fetch`] loads the stored roster, then asks
//! the server for changes with roster versioning (RFC 6121 §2.6) when the server offers it:
//! an unchanged roster costs the server an empty answer. Changes go to the storage and out
//! as [`RosterEvent`]s, in the order the server sent them.

use crate::lock;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use corvid_proto::{BareJid, FullJid, Jid, ns};
use corvid_xml::Element;
use tokio::sync::mpsc;

use crate::client::{Client, Handled, StanzaHandler};
use crate::error::RequestError;

/// RFC 6121 §2.1.2.5 subscription states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Subscription {
    /// Neither sees the other's presence.
    #[default]
    None,
    /// We see the contact's presence.
    To,
    /// The contact sees ours.
    From,
    /// Both ways.
    Both,
}

impl Subscription {
    /// The state an attribute names; anything else (or nothing) is `none`.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("to") => Subscription::To,
            Some("from") => Subscription::From,
            Some("both") => Subscription::Both,
            _ => Subscription::None,
        }
    }

    /// The attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }
}

/// One contact (XMPPUserMemoryStorageObject).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's bare JID (`jid`).
    pub jid: String,
    /// The name we gave it (`nickname`).
    pub name: Option<String>,
    /// Who sees whose presence.
    pub subscription: Subscription,
    /// A subscription request of ours is pending (`ask='subscribe'`).
    pub pending_out: bool,
    /// The groups it is in.
    pub groups: Vec<String>,
}

impl RosterItem {
    /// The item of a roster `<item/>`; `None` for `subscription='remove'` or no JID.
    fn parse(item: &Element) -> Option<Result<RosterItem, String>> {
        let jid = item.attr("jid")?;
        if item.attr("subscription") == Some("remove") {
            return Some(Err(normalized(jid)));
        }
        Some(Ok(RosterItem {
            jid: normalized(jid),
            name: item.attr("name").map(str::to_owned),
            subscription: Subscription::parse(item.attr("subscription")),
            pending_out: item.attr("ask") == Some("subscribe"),
            groups: item
                .children()
                .filter(|c| c.is("group", ns::ROSTER))
                .map(Element::text)
                .collect(),
        }))
    }
}

/// A JID in the form the roster keys it by (RFC 7622 normalization where it parses).
fn normalized(jid: &str) -> String {
    Jid::new(jid).map_or_else(|_| jid.to_owned(), |j| j.to_string())
}

/// What a contact's resource said in its last presence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceInfo {
    /// `away`, `chat`, `dnd`, `xa`, or `None` for plain available.
    pub show: Option<String>,
    /// Its status text.
    pub status: Option<String>,
    /// Its priority (RFC 6121 §4.7.2.3).
    pub priority: i8,
}

/// What the roster reports (XMPPRosterDelegate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RosterEvent {
    /// The roster is loaded (from storage and the server): `xmppRosterDidEndPopulating:`.
    Populated {
        /// How many contacts.
        items: usize,
    },
    /// A contact was added or changed (`xmppRoster:didReceiveRosterItem:`).
    Changed(RosterItem),
    /// A contact was removed.
    Removed(String),
    /// Someone asks to see our presence (`didReceivePresenceSubscriptionRequest:`).
    SubscriptionRequest(String),
    /// A contact's resource changed its presence; `None` when it went offline.
    Presence {
        /// The contact's bare JID.
        jid: String,
        /// Which of its resources.
        resource: String,
        /// What it said; `None` when it went offline.
        presence: Option<PresenceInfo>,
    },
}

/// The roster's end of its events.
#[derive(Debug)]
pub struct RosterEvents {
    receiver: mpsc::UnboundedReceiver<RosterEvent>,
}

impl RosterEvents {
    /// The next event; `None` once the roster is gone.
    pub async fn next(&mut self) -> Option<RosterEvent> {
        self.receiver.recv().await
    }
}

/// Where a roster is kept between sessions (XMPPRosterStorage).
#[async_trait]
pub trait RosterStorage: Send + Sync + std::fmt::Debug {
    /// The stored version and items of `account`'s roster.
    async fn load(&self, account: &str) -> Result<(Option<String>, Vec<RosterItem>), StorageError>;
    /// Replaces the whole roster.
    async fn replace(
        &self,
        account: &str,
        version: Option<&str>,
        items: &[RosterItem],
    ) -> Result<(), StorageError>;
    /// Stores one item (or removes the JID, with `None`) and the new version.
    async fn update(
        &self,
        account: &str,
        version: Option<&str>,
        jid: &str,
        item: Option<&RosterItem>,
    ) -> Result<(), StorageError>;
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[error("roster storage: {0}")]
pub struct StorageError(pub String);

/// A stored roster: its version and its items by JID.
type StoredRoster = (Option<String>, BTreeMap<String, RosterItem>);

/// Rosters in memory, for one process's lifetime.
#[derive(Debug, Default)]
pub struct MemoryRosterStorage {
    rosters: Mutex<HashMap<String, StoredRoster>>,
}

#[async_trait]
impl RosterStorage for MemoryRosterStorage {
    async fn load(&self, account: &str) -> Result<(Option<String>, Vec<RosterItem>), StorageError> {
        let rosters = lock(&self.rosters);
        Ok(rosters
            .get(account)
            .map_or((None, Vec::new()), |(ver, items)| {
                (ver.clone(), items.values().cloned().collect())
            }))
    }

    async fn replace(
        &self,
        account: &str,
        version: Option<&str>,
        items: &[RosterItem],
    ) -> Result<(), StorageError> {
        let items = items.iter().map(|i| (i.jid.clone(), i.clone())).collect();
        lock(&self.rosters).insert(account.to_owned(), (version.map(str::to_owned), items));
        Ok(())
    }

    async fn update(
        &self,
        account: &str,
        version: Option<&str>,
        jid: &str,
        item: Option<&RosterItem>,
    ) -> Result<(), StorageError> {
        let mut rosters = lock(&self.rosters);
        let (stored_version, items) = rosters.entry(account.to_owned()).or_default();
        *stored_version = version.map(str::to_owned);
        match item {
            Some(item) => items.insert(jid.to_owned(), item.clone()),
            None => items.remove(jid),
        };
        Ok(())
    }
}

/// A change the worker applies, in arrival order.
#[derive(Debug)]
enum Change {
    Push {
        version: Option<String>,
        item: Result<RosterItem, String>,
    },
    Presence(Element),
    /// A new session after a lost connection.
    Restarted,
}

/// The roster of one client.
#[derive(Debug)]
pub struct Roster {
    client: Client,
    storage: Arc<dyn RosterStorage>,
    state: Arc<Mutex<State>>,
    events: mpsc::UnboundedSender<RosterEvent>,
}

#[derive(Debug, Default)]
struct State {
    version: Option<String>,
    items: BTreeMap<String, RosterItem>,
    /// Contact → resource → presence.
    presence: HashMap<String, BTreeMap<String, PresenceInfo>>,
    /// The application fetched the roster, so a new session fetches it again.
    fetched: bool,
}

/// The stream-side part: turns stanzas into changes for the worker.
#[derive(Debug)]
struct Hook {
    account: BareJid,
    changes: mpsc::UnboundedSender<Change>,
}

impl StanzaHandler for Hook {
    /// A new session missed the pushes and presence of the time away: presence starts
    /// over, and the roster is fetched again (cheaply, where the server versions rosters).
    fn restarted(&self, resumed: bool) {
        if !resumed {
            let _ = self.changes.send(Change::Restarted);
        }
    }

    fn handle(&self, stanza: &Element) -> Handled {
        if stanza.name() == "presence" {
            let _ = self.changes.send(Change::Presence(stanza.clone()));
            return Handled::No;
        }
        // RFC 6121 §2.1.6: a push is an IQ set from our account (no `from`, or our bare JID).
        let Some(query) = stanza.get_child("query", ns::ROSTER) else {
            return Handled::No;
        };
        let from_account = stanza
            .attr("from")
            .is_none_or(|from| normalized(from) == self.account.as_str());
        if stanza.name() != "iq" || stanza.attr("type") != Some("set") || !from_account {
            return Handled::No;
        }
        let items: Vec<&Element> = query
            .children()
            .filter(|c| c.is("item", ns::ROSTER))
            .collect();
        let item = match items.as_slice() {
            [item] => RosterItem::parse(item),
            _ => None,
        };
        let Some(item) = item else {
            return Handled::Reply(error_reply(stanza));
        };
        let version = query.attr("ver").map(str::to_owned);
        let _ = self.changes.send(Change::Push { version, item });
        let mut reply = Element::new("iq", ns::CLIENT).with_attr("type", "result");
        if let Some(id) = stanza.attr("id") {
            reply.set_attr("id", id);
        }
        Handled::Reply(reply)
    }
}

/// RFC 6121 §2.1.6: a push with other than one item is answered `bad-request`.
fn error_reply(iq: &Element) -> Element {
    let mut reply = Element::new("iq", ns::CLIENT).with_attr("type", "error");
    if let Some(id) = iq.attr("id") {
        reply.set_attr("id", id);
    }
    reply.with_child(
        Element::new("error", ns::CLIENT)
            .with_attr("type", "modify")
            .with_child(Element::new("bad-request", ns::STANZA_ERRORS)),
    )
}

impl Roster {
    /// The roster of `client`'s account, kept in `storage`, and its events. Attach before
    /// connecting, so no push or presence is missed.
    pub fn attach(client: &Client, storage: Arc<dyn RosterStorage>) -> (Arc<Roster>, RosterEvents) {
        let (events, receiver) = mpsc::unbounded_channel();
        let (changes, mut incoming) = mpsc::unbounded_channel();
        let roster = Arc::new(Roster {
            client: client.clone(),
            storage,
            state: Arc::new(Mutex::new(State::default())),
            events,
        });
        client.add_handler(Arc::new(Hook {
            account: client.account().clone(),
            changes,
        }));
        let worker = Arc::downgrade(&roster);
        tokio::spawn(async move {
            while let Some(change) = incoming.recv().await {
                let Some(roster) = worker.upgrade() else {
                    break;
                };
                roster.apply(change).await;
            }
        });
        (roster, RosterEvents { receiver })
    }

    /// Loads the stored roster, then asks the server for what changed since (the whole
    /// roster if it does not version rosters); `Populated` once done.
    pub async fn fetch(&self) -> Result<(), RosterError> {
        let account = self.client.account().to_string();
        let (version, items) = self.storage.load(&account).await?;
        {
            let mut state = lock(&self.state);
            state.version = version.clone();
            state.items = items.into_iter().map(|i| (i.jid.clone(), i)).collect();
            state.fetched = true;
        }
        let versioning = self
            .client
            .features()
            .is_some_and(|f| f.has_child("ver", ns::ROSTER_VER));
        let mut query = Element::new("query", ns::ROSTER);
        if versioning {
            query.set_attr("ver", version.unwrap_or_default());
        }
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_child(query);
        let answer = self.client.request(iq).await?;
        // An empty result: nothing changed since our version; pushes bring what did.
        if let Some(query) = answer.get_child("query", ns::ROSTER) {
            let items: Vec<RosterItem> = query
                .children()
                .filter(|c| c.is("item", ns::ROSTER))
                .filter_map(RosterItem::parse)
                .filter_map(Result::ok)
                .collect();
            let version = query.attr("ver").map(str::to_owned);
            self.storage
                .replace(&account, version.as_deref(), &items)
                .await?;
            let mut state = lock(&self.state);
            state.version = version;
            state.items = items.into_iter().map(|i| (i.jid.clone(), i)).collect();
        }
        let count = lock(&self.state).items.len();
        let _ = self.events.send(RosterEvent::Populated { items: count });
        Ok(())
    }

    /// Every contact, by JID.
    pub fn items(&self) -> Vec<RosterItem> {
        lock(&self.state).items.values().cloned().collect()
    }

    /// One contact.
    pub fn item(&self, jid: &str) -> Option<RosterItem> {
        lock(&self.state).items.get(&normalized(jid)).cloned()
    }

    /// The roster version the storage holds.
    pub fn version(&self) -> Option<String> {
        lock(&self.state).version.clone()
    }

    /// The available resources of a contact and what each said, by resource.
    pub fn presence(&self, jid: &str) -> BTreeMap<String, PresenceInfo> {
        lock(&self.state)
            .presence
            .get(&normalized(jid))
            .cloned()
            .unwrap_or_default()
    }

    /// Adds or updates a contact (`addUser:withNickname:groups:`); the server's push
    /// brings the change into the roster.
    pub async fn set(
        &self,
        jid: &str,
        name: Option<&str>,
        groups: &[&str],
    ) -> Result<(), RosterError> {
        let mut item = Element::new("item", ns::ROSTER).with_attr("jid", jid);
        if let Some(name) = name {
            item.set_attr("name", name);
        }
        for group in groups {
            item.append_child(Element::new("group", ns::ROSTER).with_text(*group));
        }
        self.roster_set(item).await
    }

    /// Removes a contact, cancelling subscriptions both ways (`removeUser:`).
    pub async fn remove(&self, jid: &str) -> Result<(), RosterError> {
        let item = Element::new("item", ns::ROSTER)
            .with_attr("jid", jid)
            .with_attr("subscription", "remove");
        self.roster_set(item).await
    }

    /// Asks to see a contact's presence (`subscribePresenceToUser:`).
    pub async fn subscribe(&self, jid: &str) -> Result<(), RosterError> {
        self.presence_to(jid, "subscribe").await
    }

    /// Lets someone who asked see our presence (`acceptPresenceSubscriptionRequestFrom:`);
    /// with `and_subscribe`, asks for theirs too.
    pub async fn accept(&self, jid: &str, and_subscribe: bool) -> Result<(), RosterError> {
        self.presence_to(jid, "subscribed").await?;
        if and_subscribe {
            self.presence_to(jid, "subscribe").await?;
        }
        Ok(())
    }

    /// Refuses a request, or stops letting a contact see our presence
    /// (`rejectPresenceSubscriptionRequestFrom:`).
    pub async fn refuse(&self, jid: &str) -> Result<(), RosterError> {
        self.presence_to(jid, "unsubscribed").await
    }

    async fn roster_set(&self, item: Element) -> Result<(), RosterError> {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(Element::new("query", ns::ROSTER).with_child(item));
        self.client.request(iq).await?;
        Ok(())
    }

    async fn presence_to(&self, jid: &str, kind: &str) -> Result<(), RosterError> {
        let presence = Element::new("presence", ns::CLIENT)
            .with_attr("to", jid)
            .with_attr("type", kind);
        Ok(self.client.send(&presence).await?)
    }

    /// Applies one change from the stream: storage first, then state and event.
    async fn apply(&self, change: Change) {
        match change {
            Change::Push { version, item } => {
                let account = self.client.account().to_string();
                let (jid, item) = match item {
                    Ok(item) => (item.jid.clone(), Some(item)),
                    Err(jid) => (jid, None),
                };
                if let Err(e) = self
                    .storage
                    .update(&account, version.as_deref(), &jid, item.as_ref())
                    .await
                {
                    tracing::warn!(error = %e, "roster: cannot store a push");
                }
                let mut state = lock(&self.state);
                state.version = version;
                let event = match item {
                    Some(item) => {
                        state.items.insert(jid, item.clone());
                        RosterEvent::Changed(item)
                    }
                    None => {
                        state.items.remove(&jid);
                        state.presence.remove(&jid);
                        RosterEvent::Removed(jid)
                    }
                };
                let _ = self.events.send(event);
            }
            Change::Presence(presence) => {
                if let Some(event) = self.presence_changed(&presence) {
                    let _ = self.events.send(event);
                }
            }
            Change::Restarted => {
                let (gone, fetched) = {
                    let mut state = lock(&self.state);
                    (std::mem::take(&mut state.presence), state.fetched)
                };
                for (jid, resources) in gone {
                    for resource in resources.into_keys() {
                        let _ = self.events.send(RosterEvent::Presence {
                            jid: jid.clone(),
                            resource,
                            presence: None,
                        });
                    }
                }
                if fetched && let Err(e) = self.fetch().await {
                    tracing::warn!(error = %e, "roster: cannot fetch after reconnecting");
                }
            }
        }
    }

    fn presence_changed(&self, presence: &Element) -> Option<RosterEvent> {
        let from = presence.attr("from")?;
        let kind = presence.attr("type");
        if kind == Some("subscribe") {
            return Some(RosterEvent::SubscriptionRequest(normalized(
                &Jid::new(from).ok()?.to_bare().to_string(),
            )));
        }
        let from = FullJid::new(from).ok()?;
        let contact = from.to_bare().to_string();
        let resource = from.resource().as_str().to_owned();
        let mut state = lock(&self.state);
        let info = match kind {
            None => Some(PresenceInfo {
                show: presence.get_child("show", ns::CLIENT).map(Element::text),
                status: presence.get_child("status", ns::CLIENT).map(Element::text),
                priority: presence
                    .get_child("priority", ns::CLIENT)
                    .and_then(|p| p.text().trim().parse().ok())
                    .unwrap_or(0),
            }),
            Some("unavailable") => None,
            _ => return None,
        };
        let resources = state.presence.entry(contact.clone()).or_default();
        match &info {
            Some(info) => resources.insert(resource.clone(), info.clone()),
            None => resources.remove(&resource),
        };
        if resources.is_empty() {
            state.presence.remove(&contact);
        }
        Some(RosterEvent::Presence {
            jid: contact,
            resource,
            presence: info,
        })
    }
}

/// Why a roster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// The server refused, or did not answer.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
