//! Push registrations (XEP-0357): the app servers a user's devices asked to be woken
//! through, kept with the account so that they survive restarts.
//!
//! Writes return [`StoreError::NotFound`] if the account does not exist.

use async_trait::async_trait;

use crate::StoreError;

/// One registration (XEP-0357 §5): where to publish, and the publish options to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushRegistration {
    /// The app server's JID.
    pub service: String,
    /// The node on it that stands for one device.
    pub node: String,
    /// The `publish-options` data form the client gave, serialized (empty if none).
    pub options: String,
}

#[async_trait]
pub trait PushRegistrations: Send + Sync {
    /// The account's registrations, by (service, node).
    async fn push_registrations(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Vec<PushRegistration>, StoreError>;

    /// Adds a registration, replacing the one with the same (service, node).
    async fn add_push_registration(
        &self,
        username: &str,
        domain: &str,
        registration: &PushRegistration,
    ) -> Result<(), StoreError>;

    /// Removes the registration (service, node), or every one of `service` when `node` is
    /// `None` (XEP-0357 §6); returns how many went.
    async fn remove_push_registrations(
        &self,
        username: &str,
        domain: &str,
        service: &str,
        node: Option<&str>,
    ) -> Result<u64, StoreError>;
}
