//! Private XML storage (XEP-0049): one element per namespace, readable only by its owner.
//!
//! Writes return [`StoreError::NotFound`] if the account does not exist.

use async_trait::async_trait;

use crate::StoreError;

/// Private XML storage.
#[async_trait]
pub trait PrivateXml: Send + Sync {
    /// The serialized element stored under `namespace`, or `None`.
    async fn private_xml(
        &self,
        username: &str,
        domain: &str,
        namespace: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Replaces the element stored under `namespace`.
    async fn set_private_xml(
        &self,
        username: &str,
        domain: &str,
        namespace: &str,
        xml: &str,
    ) -> Result<(), StoreError>;
}
