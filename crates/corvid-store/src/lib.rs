//! Corvid storage: one trait per concern ([`Users`], [`Rosters`], [`Offline`], [`VCards`],
//! [`PrivateXml`], [`Blocklists`], [`LastActivity`], [`MucRooms`], [`PubSubStore`], [`Archive`], [`PushRegistrations`]), all implemented by [`SqlStore`] over sqlx.
//! SQLite is embedded (a WAL file in the data directory); PostgreSQL runs the same queries
//! (a few have a variant per backend) over its own migrations, and [`SqlStore::copy_to`]
//! moves a store from one to the other.
//!
//! This crate owns every SQL statement in Corvid; nothing else writes SQL. A write that
//! returns `Ok` is durable, so callers may acknowledge data as soon as it does; the one
//! exception is [`Archive::append_archive`], which queues, and whose messages are durable
//! once [`Archive::archive_sync`] returns (or [`SqlStore::close`] has written them).
//!
//! ```no_run
//! # async fn demo(creds: corvid_proto::sasl::Credentials) -> Result<(), corvid_store::StoreError> {
//! use corvid_store::{SqlStore, Users};
//!
//! let store = SqlStore::open_in_dir(std::path::Path::new("/var/lib/corvid")).await?;
//! store.create_user("juliet", "capulet.example", &creds).await?;
//! assert!(store.user_exists("juliet", "capulet.example").await?);
//! # Ok(()) }
//! ```

mod account_index;
mod archive;
mod blocklist;
mod changes;
mod error;
mod last;
mod muc;
mod offline;
mod private;
mod pubsub;
mod push;
mod roster;
mod roster_cache;
mod sql;
mod users;
mod vcard;

pub use archive::{
    ARCHIVE_SLOTS, Archive, ArchiveEntry, ArchiveIds, ArchivePage, ArchivePrefs, ArchiveQuery,
    ArchivedMessage, With, archive_id, archive_stamp, first_archive_seq_at, parse_archive_id,
};
pub use blocklist::Blocklists;
pub use changes::{ChangeListener, StoreChange};
pub use error::StoreError;
pub use last::LastActivity;
pub use muc::{MucRooms, StoredRoom};
pub use offline::{Offline, OfflineMessage};
pub use private::PrivateXml;
pub use pubsub::{ItemPage, ItemQuery, PubSubStore, StoredItem, StoredNode, StoredSubscription};
pub use push::{PushRegistration, PushRegistrations};
pub use roster::{RosterItem, Rosters, Subscription};
pub use sql::{CopiedTable, SqlStore};
pub use users::Users;
pub use vcard::VCards;
