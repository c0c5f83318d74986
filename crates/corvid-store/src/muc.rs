//! Persistent multi-user chat rooms (XEP-0045 §10.2 `muc#roomconfig_persistentroom`): what
//! must survive a restart — the room's configuration, subject and affiliations. Occupants
//! and history are not kept.
//!
//! The configuration is opaque text to the store (the server keeps its own serialization).

use async_trait::async_trait;

use crate::StoreError;

/// One stored room of a MUC service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredRoom {
    /// The service's domain (`conference.example.org`).
    pub service: String,
    /// The room's localpart.
    pub name: String,
    /// Bare JID of the user who created it.
    pub creator: String,
    /// The room's configuration, serialized by the server.
    pub config: String,
    /// The current subject, and the nick that set it (empty when none).
    pub subject: String,
    pub subject_nick: String,
    /// (bare JID, affiliation) pairs; affiliation is `owner`, `admin`, `member` or `outcast`.
    pub affiliations: Vec<(String, String)>,
}

/// Storage of persistent MUC rooms.
#[async_trait]
pub trait MucRooms: Send + Sync {
    /// Every stored room of a service, affiliations sorted by JID.
    async fn muc_rooms(&self, service: &str) -> Result<Vec<StoredRoom>, StoreError>;

    /// Creates or replaces a room (configuration, subject and all its affiliations) at once.
    async fn save_muc_room(&self, room: &StoredRoom) -> Result<(), StoreError>;

    /// Forgets a room; a no-op if it is not stored.
    async fn delete_muc_room(&self, service: &str, name: &str) -> Result<(), StoreError>;
}
