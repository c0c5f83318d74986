//! Blocklists (XEP-0191 blocking command): the JIDs an account refuses to hear from.
//!
//! JIDs are stored as given (normalized by the caller) and compared byte for byte.
//! Writes return [`StoreError::NotFound`] if the account does not exist.

use async_trait::async_trait;

use crate::StoreError;

/// Blocklist storage.
#[async_trait]
pub trait Blocklists: Send + Sync {
    /// The blocked JIDs, sorted (byte order).
    async fn blocklist(&self, username: &str, domain: &str) -> Result<Vec<String>, StoreError>;

    /// Adds `jids`; already blocked ones are left as they are. All or nothing.
    async fn block(&self, username: &str, domain: &str, jids: &[String]) -> Result<(), StoreError>;

    /// Removes `jids`; ones not blocked are ignored. All or nothing.
    async fn unblock(
        &self,
        username: &str,
        domain: &str,
        jids: &[String],
    ) -> Result<(), StoreError>;

    /// Empties the blocklist.
    async fn unblock_all(&self, username: &str, domain: &str) -> Result<(), StoreError>;
}
