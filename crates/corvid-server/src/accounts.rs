//! Account operations shared by in-band registration and the operator CLI: one place
//! that normalizes user names and turns passwords into SCRAM credentials.

use corvid_proto::BareJid;
use corvid_proto::sasl::{Credentials, DEFAULT_ITERATIONS};
use corvid_store::{RosterItem, Rosters, SqlStore, StoreError, Subscription, Users};

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
    store
        .create_user(username(user), user.domain().as_str(), &creds)
        .await?;
    Ok(())
}

pub async fn set_password(
    store: &SqlStore,
    user: &BareJid,
    password: &str,
) -> Result<(), AccountError> {
    let creds = derive(password).await?;
    store
        .set_credentials(username(user), user.domain().as_str(), &creds)
        .await?;
    Ok(())
}

/// Deletes an account and all its data. Local contacts lose their subscriptions with it, as
/// if it had sent them `unsubscribe` and `unsubscribed` (RFC 6121 §3.2, §3.3): their items
/// stay in their rosters with subscription `none`. Returns those contacts' updated items
/// and roster versions, for the caller to push to them.
pub async fn remove(
    store: &SqlStore,
    user: &BareJid,
    config: &Config,
) -> Result<Vec<(BareJid, RosterItem, i64)>, AccountError> {
    let (name, domain) = (username(user), user.domain().as_str());
    if !store.user_exists(name, domain).await? {
        return Err(AccountError::NotFound);
    }
    let (_, items) = store.roster(name, domain).await?;
    let mut contacts: Vec<BareJid> = items
        .iter()
        .filter_map(|i| BareJid::new(&i.jid).ok())
        .collect();
    contacts.extend(
        store
            .pending_subscription_requests(name, domain)
            .await?
            .into_iter()
            .filter_map(|(c, _)| BareJid::new(&c).ok()),
    );
    contacts.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    contacts.dedup();
    store.delete_user(name, domain).await?;
    let mut updated = Vec::new();
    for contact in contacts
        .into_iter()
        .filter(|c| config.serves(c.domain().as_str()) && c.node().is_some())
    {
        let (c_name, c_domain) = (username(&contact), contact.domain().as_str());
        // Serialized with the contact's subscription processing in this process (another
        // process, such as `corvid user remove` beside a running server, is not covered).
        let _guard = crate::modules::subscriptions::lock_roster(&contact).await;
        let Some(mut item) = store.roster_item(c_name, c_domain, user.as_str()).await? else {
            continue;
        };
        item.subscription = Subscription::None;
        item.pending_out = false;
        item.pending_in = false;
        item.approved = false;
        item.pending_in_stanza = None;
        match store.put_roster_item(c_name, c_domain, &item).await {
            Ok(version) => updated.push((contact, item, version)),
            // The contact's account went away meanwhile.
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(updated)
}

/// Removes an account's archived messages (XEP-0313): all of them, or those older than
/// `older_than_days`. Returns how many went.
pub async fn clear_archive(
    store: &SqlStore,
    user: &BareJid,
    older_than_days: Option<u64>,
) -> Result<u64, AccountError> {
    use corvid_store::Archive as _;
    if !exists(store, user).await? {
        return Err(AccountError::NotFound);
    }
    let before_ms = older_than_days.map(|days| {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        now_ms.saturating_sub(i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX))
    });
    Ok(store.remove_archive(user.as_str(), before_ms).await?)
}

/// Every account (`user@domain`), of one served domain or of all.
pub async fn list(
    store: &SqlStore,
    config: &Config,
    domain: Option<&str>,
) -> Result<Vec<String>, AccountError> {
    use corvid_store::Users as _;
    if let Some(domain) = domain
        && !config.serves(domain)
    {
        return Err(AccountError::UnknownDomain(domain.to_owned()));
    }
    let users = store.list_users(domain).await?;
    Ok(users
        .into_iter()
        .map(|(username, domain)| format!("{username}@{domain}"))
        .collect())
}

pub async fn exists(store: &SqlStore, user: &BareJid) -> Result<bool, AccountError> {
    Ok(store
        .user_exists(username(user), user.domain().as_str())
        .await?)
}
