//! Offline messages (XEP-0160): messages for an account with no available resource, kept
//! until a session of that account takes them.
//!
//! Writes return [`StoreError::NotFound`] if the account does not exist.

use async_trait::async_trait;

use crate::StoreError;

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineMessage {
    /// Unique for the life of the database (never reused, even after deletion).
    pub id: i64,
    /// The serialized `<message/>`.
    pub stanza: String,
    /// When the server received it, milliseconds since the Unix epoch (for XEP-0203 delay).
    pub stamp_ms: i64,
}

/// Offline message storage.
#[async_trait]
pub trait Offline: Send + Sync {
    /// Stores a message unless the account already holds `quota` or more, in which case
    /// nothing is stored and [`StoreError::QuotaExceeded`] is returned. The check and the
    /// insert are one atomic step, and the message is durable once this returns `Ok`.
    async fn store_offline(
        &self,
        username: &str,
        domain: &str,
        stanza: &str,
        stamp_ms: i64,
        quota: usize,
    ) -> Result<(), StoreError>;

    /// Every stored message of the account, oldest (first stored) first.
    async fn offline_messages(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Vec<OfflineMessage>, StoreError>;

    /// Deletes the account's messages with these ids; ids that are absent or belong to
    /// another account are ignored.
    async fn delete_offline(
        &self,
        username: &str,
        domain: &str,
        ids: &[i64],
    ) -> Result<(), StoreError>;

    /// How many messages the account holds.
    async fn count_offline(&self, username: &str, domain: &str) -> Result<usize, StoreError>;
}
