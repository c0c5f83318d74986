//! Rosters (RFC 6121 §2) and pending inbound subscription requests (§3.1.3).

use async_trait::async_trait;

use crate::StoreError;

/// The `subscription` attribute of a roster item (RFC 6121 §2.1.2.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Subscription {
    #[default]
    None,
    /// The user receives the contact's presence.
    To,
    /// The contact receives the user's presence.
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Subscription::None),
            "to" => Some(Subscription::To),
            "from" => Some(Subscription::From),
            "both" => Some(Subscription::Both),
            _ => None,
        }
    }

    /// The user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// The contact receives the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }
}

/// One roster item with its full subscription state (RFC 6121 Appendix A).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's bare JID, normalized.
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// "Pending Out": the user asked to subscribe and the contact has not answered (`ask='subscribe'`).
    pub pending_out: bool,
    /// "Pending In": the contact asked to subscribe and the user has not answered.
    pub pending_in: bool,
    /// Subscription pre-approval (RFC 6121 §3.4).
    pub approved: bool,
    pub groups: Vec<String>,
    /// Shown in the roster. False for a contact known only from an inbound subscription
    /// request, which RFC 6121 §3.1.3 says must not add a roster item by itself.
    pub in_roster: bool,
    /// The inbound `<presence type='subscribe'/>` (serialized) to show the user again at
    /// login while the request is pending (RFC 6121 §3.1.3 step 2).
    pub pending_in_stanza: Option<String>,
}

/// Roster storage, per account `(username, domain)` (normalized, compared byte for byte).
///
/// Every change bumps the account's roster version (XEP-0237) in the same transaction, so a
/// version names exactly one roster state; reads never change it. Writes return
/// [`StoreError::NotFound`] if the account does not exist.
#[async_trait]
pub trait Rosters: Send + Sync {
    /// The current roster version and the items shown in the roster (`in_roster`), sorted by
    /// `jid` (byte order), read from one consistent snapshot.
    async fn roster(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<(i64, Vec<RosterItem>), StoreError>;

    /// The stored state of one contact, whether shown in the roster or not.
    async fn roster_item(
        &self,
        username: &str,
        domain: &str,
        contact: &str,
    ) -> Result<Option<RosterItem>, StoreError>;

    /// Stores `item` (keyed by `item.jid`), replacing every field of an existing row, groups
    /// included (kept in order; any string is a valid group name here). Returns the new version.
    async fn put_roster_item(
        &self,
        username: &str,
        domain: &str,
        item: &RosterItem,
    ) -> Result<i64, StoreError>;

    /// Forgets `contact` entirely. Returns the new version, or `None` (version unchanged) if
    /// there was no such row.
    async fn remove_roster_item(
        &self,
        username: &str,
        domain: &str,
        contact: &str,
    ) -> Result<Option<i64>, StoreError>;

    /// The current roster version; 0 if the roster never changed.
    async fn roster_version(&self, username: &str, domain: &str) -> Result<i64, StoreError>;

    /// `(contact, stanza)` of every pending inbound subscription request that has a stored
    /// stanza, sorted by contact, to present again at login (RFC 6121 §3.1.3).
    async fn pending_subscription_requests(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Every item whose subscription is not `none`, sorted by `jid`: the contacts to probe
    /// (`to`) and to broadcast presence to (`from`).
    async fn contacts_with_subscription(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Vec<RosterItem>, StoreError>;

    /// The subscription between the account and `contact`; `None` when there is no item.
    /// What presence handling asks per stanza (RFC 6121 §4.3.2, §4.6), so implementations
    /// may answer it from a cache.
    async fn subscription(
        &self,
        username: &str,
        domain: &str,
        contact: &str,
    ) -> Result<Subscription, StoreError> {
        let item = self.roster_item(username, domain, contact).await?;
        Ok(item.map_or(Subscription::None, |i| i.subscription))
    }
}
