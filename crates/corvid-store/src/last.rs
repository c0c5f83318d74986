//! Last activity (XEP-0012): when an account's last resource went offline, and the status
//! it left with, to answer `jabber:iq:last` queries about an offline user.
//!
//! Writes return [`StoreError::NotFound`] if the account does not exist.

use async_trait::async_trait;

use crate::StoreError;

/// Last-activity storage.
#[async_trait]
pub trait LastActivity: Send + Sync {
    /// Records a logout at `unix_secs` with the unavailable presence's status text (may be
    /// empty), replacing the previous record.
    async fn set_last_logout(
        &self,
        username: &str,
        domain: &str,
        unix_secs: i64,
        status: &str,
    ) -> Result<(), StoreError>;

    /// `(unix_secs, status)` of the last recorded logout, or `None` if there is none.
    async fn last_logout(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Option<(i64, String)>, StoreError>;
}
