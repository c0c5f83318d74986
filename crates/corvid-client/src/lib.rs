#![warn(missing_docs)]
//! Corvid's XMPP client SDK: what the iOS XMPPFramework gives app developers, in async Rust,
//! against any standard server (Corvid, Prosody, ejabberd).
//!
//! This first part is the stream ([`Client`], XMPPFramework's `XMPPStream`): connecting to
//! a host and port, STARTTLS or direct TLS with the certificate checked (system roots by
//! default, or given roots, or a pinned certificate), SASL (SCRAM-SHA-256/SHA-1, with
//! -PLUS channel binding over TLS 1.3, PLAIN only over TLS), resource binding, one typed
//! event stream, sending, requests that wait for their answer, and a graceful disconnect.
//! On it, the [`Roster`] (XMPPRoster) and [`VCards`] (XMPPvCardTempModule), with their
//! storage in memory or SQLite ([`SqliteStorage`]), [`Receipts`]
//! (XEP-0184), [`AutoPing`] (XEP-0199), [`Carbons`] (XEP-0280), [`Mam`] queries
//! (XEP-0313), [`PubSub`] (XEP-0060, and PEP, XEP-0163) with the client's
//! [`Capabilities`] (XEP-0030/XEP-0115: what PEP reads to know whom to notify), [`Avatars`]
//! (XEP-0153 and XEP-0084) and room [`Bookmarks`] (XEP-0402).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use corvid_client::{Client, Event};
//!
//! let jid = "juliet@capulet.example".parse()?;
//! let (client, mut events) = Client::builder(jid, "secret").build();
//! client.connect().await?;
//! while let Some(event) = events.next().await {
//!     if let Event::Message(message) = event {
//!         println!("{message}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```

pub mod autoping;
pub mod avatar;
pub mod bookmarks;
pub mod caps;
pub mod carbons;
pub mod client;
mod dns;
pub mod error;
pub mod forms;
pub mod login;
pub mod mam;
pub mod pubsub;
pub mod receipts;
pub mod reconnect;
pub mod room;
pub mod roster;
mod sm;
mod sqlite_storage;
pub mod tls;
pub mod transport;
pub mod vcard;

pub use autoping::{AutoPing, PingEvent};
pub use avatar::{
    Avatar, AvatarError, AvatarEvent, AvatarEvents, AvatarSource, AvatarSources, AvatarStorage,
    Avatars, MemoryAvatarStorage,
};
pub use bookmarks::{Bookmark, Bookmarks};
pub use caps::{Capabilities, Identity};
pub use carbons::{CarbonEvent, Carbons};
pub use client::{Client, ClientBuilder, DisconnectReason, Event, Events, Handled, StanzaHandler};
pub use error::{ConnectError, RequestError};
pub use forms::{DataForm, FormField};
pub use login::Security;
pub use mam::{ArchivedMessage, Mam, MamPage, MamQuery};
pub use pubsub::{
    Item, ItemsPage, ItemsQuery, PubSub, PubSubError, PubSubEvent, PubSubEvents, SubscriptionInfo,
    SubscriptionState,
};
pub use receipts::{ReceiptEvent, ReceiptEvents, Receipts};
pub use reconnect::Reconnect;
pub use room::{
    Affiliation, History, Invitation, JoinOptions, Joined, LeaveReason, ListItem, Muc, MucEvent,
    MucEvents, Occupant, Role, Room, RoomError, RoomEvent, RoomEvents, RoomMessage,
};
pub use roster::{
    MemoryRosterStorage, PresenceInfo, Roster, RosterEvent, RosterEvents, RosterItem,
    RosterStorage, Subscription,
};
pub use sqlite_storage::SqliteStorage;
pub use tls::Verification;
pub use vcard::{MemoryVCardStorage, VCardError, VCardStorage, VCards};

/// Locks a mutex, poisoned or not: what the crate guards with `std::sync::Mutex` is never
/// left half-updated by a panic (no guard is held across a call that could panic midway).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
