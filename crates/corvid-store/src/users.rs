//! Accounts: who may log in, and the SCRAM secrets that prove it.
//!
//! Users are keyed by `(username, domain)`, both already normalized by the caller (nodeprep and
//! domain normalization via the `jid` crate); this layer compares them byte for byte.
//! Only salted SCRAM keys are stored, never a password (DESIGN.md, Storage).

use async_trait::async_trait;
use corvid_proto::sasl::Credentials;

use crate::StoreError;

/// Account storage.
#[async_trait]
pub trait Users: Send + Sync {
    /// Creates an account. [`StoreError::Conflict`] if it already exists.
    async fn create_user(
        &self,
        username: &str,
        domain: &str,
        creds: &Credentials,
    ) -> Result<(), StoreError>;

    /// The account's SCRAM secrets, or `None` if there is no such account.
    async fn credentials(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Option<Credentials>, StoreError>;

    /// Replaces the account's secrets (password change). [`StoreError::NotFound`] if absent.
    async fn set_credentials(
        &self,
        username: &str,
        domain: &str,
        creds: &Credentials,
    ) -> Result<(), StoreError>;

    /// Deletes the account and, atomically, every piece of data stored for it.
    /// [`StoreError::NotFound`] if absent.
    async fn delete_user(&self, username: &str, domain: &str) -> Result<(), StoreError>;

    /// Whether the account exists.
    async fn user_exists(&self, username: &str, domain: &str) -> Result<bool, StoreError>;

    /// All accounts as `(username, domain)`, or only those of `domain`, sorted by domain then
    /// username (byte order).
    async fn list_users(&self, domain: Option<&str>) -> Result<Vec<(String, String)>, StoreError>;
}
