//! Account operations shared by in-band registration and the operator CLI: one place
//! that normalizes user names and turns passwords into SCRAM credentials.

use corvid_proto::sasl::{Credentials, DEFAULT_ITERATIONS};
use corvid_proto::BareJid;
use corvid_store::{SqlStore, StoreError, Users};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0:?} is not a valid user JID (expected user@domain)")]
    InvalidJid(String),
    #[error("this server does not serve the domain {0:?}")]
    UnknownDomain(String),
    #[error("the account already exists")]
    Exists,
    #[error("no such account")]
    NotFound,
    #[error("the password must not be empty")]
    EmptyPassword,
    #[error("storage: {0}")]
    Store(StoreError),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => AccountError::Exists,
            StoreError::NotFound => AccountError::NotFound,
            other => AccountError::Store(other),
        }
    }
}

/// Parses `user@domain` into a normalized bare JID on one of our domains.
pub fn parse_user(text: &str, config: &Config) -> Result<BareJid, AccountError> {
    let jid = BareJid::new(text.trim()).map_err(|_| AccountError::InvalidJid(text.to_string()))?;
    if jid.node().is_none() {
        return Err(AccountError::InvalidJid(text.to_string()));
    }
    if !config.serves(jid.domain().as_str()) {
        return Err(AccountError::UnknownDomain(jid.domain().to_string()));
    }
    Ok(jid)
}

/// The user name as SASL and the store know it (the JID's normalized localpart).
pub fn username(user: &BareJid) -> &str {
    user.node().map(|n| n.as_str()).unwrap_or_default()
}

async fn derive(password: &str) -> Result<Credentials, AccountError> {
    if password.is_empty() {
        return Err(AccountError::EmptyPassword);
    }
    let password = password.to_string();
    // PBKDF2 takes milliseconds of CPU: never on the async threads.
    tokio::task::spawn_blocking(move || Credentials::new_random(&password, DEFAULT_ITERATIONS))
        .await
        .map_err(|_| AccountError::Internal("credential derivation failed"))
}

pub async fn create(store: &SqlStore, user: &BareJid, password: &str) -> Result<(), AccountError> {
    let creds = derive(password).await?;
    store.create_user(username(user), user.domain().as_str(), &creds).await?;
    Ok(())
}

pub async fn set_password(store: &SqlStore, user: &BareJid, password: &str) -> Result<(), AccountError> {
    let creds = derive(password).await?;
    store.set_credentials(username(user), user.domain().as_str(), &creds).await?;
    Ok(())
}

pub async fn remove(store: &SqlStore, user: &BareJid) -> Result<(), AccountError> {
    store.delete_user(username(user), user.domain().as_str()).await?;
    Ok(())
}

pub async fn exists(store: &SqlStore, user: &BareJid) -> Result<bool, AccountError> {
    Ok(store.user_exists(username(user), user.domain().as_str()).await?)
}
