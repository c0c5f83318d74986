//! vCards (XEP-0054) and the hash of their photo (XEP-0153), which presence carries.
//!
//! Writes return [`StoreError::NotFound`] if the account does not exist.

use async_trait::async_trait;

use crate::StoreError;

/// vCard storage.
#[async_trait]
pub trait VCards: Send + Sync {
    /// The account's serialized `<vCard/>`, or `None` if it never set one.
    async fn vcard(&self, username: &str, domain: &str) -> Result<Option<String>, StoreError>;

    /// Replaces the account's vCard and its photo hash (`None`: no photo).
    async fn set_vcard(
        &self,
        username: &str,
        domain: &str,
        xml: &str,
        photo_hash: Option<&str>,
    ) -> Result<(), StoreError>;

    /// The photo hash stored with the vCard; `None` if there is no vCard or no photo.
    async fn photo_hash(&self, username: &str, domain: &str) -> Result<Option<String>, StoreError>;
}
