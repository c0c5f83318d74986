//! vCards (XEP-0054; XMPPFramework's `XMPPvCardTempModule` with its storage).
//!
//! [`VCards::fetch`] answers from the storage unless told to ask the server
//! (`fetchvCardTempForJID:ignoreStorage:`); what the server sends is stored. [`VCards::cached`]
//! is the storage alone (`vCardTempForJID:shouldFetch:NO`). [`VCards::update_own`] publishes
//! the account's own vCard (`updateMyvCardTemp:`) and stores it once the server took it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use corvid_proto::{Jid, ns};
use corvid_xml::Element;

use crate::client::Client;
use crate::error::RequestError;
use crate::roster::StorageError;

/// Where fetched vCards are kept (XMPPvCardTempModuleStorage), as serialized `<vCard/>`s.
#[async_trait]
pub trait VCardStorage: Send + Sync + std::fmt::Debug {
    /// The vCard kept for `jid`, as seen by `account`.
    async fn load_vcard(&self, account: &str, jid: &str) -> Result<Option<String>, StorageError>;
    /// Keeps `vcard` for `jid`, replacing what was kept.
    async fn store_vcard(&self, account: &str, jid: &str, vcard: &str) -> Result<(), StorageError>;
}

/// vCards in memory, for one process's lifetime.
#[derive(Debug, Default)]
pub struct MemoryVCardStorage {
    vcards: Mutex<HashMap<(String, String), String>>,
}

#[async_trait]
impl VCardStorage for MemoryVCardStorage {
    async fn load_vcard(&self, account: &str, jid: &str) -> Result<Option<String>, StorageError> {
        let vcards = self.vcards.lock().unwrap_or_else(|e| e.into_inner());
        Ok(vcards.get(&(account.to_owned(), jid.to_owned())).cloned())
    }

    async fn store_vcard(&self, account: &str, jid: &str, vcard: &str) -> Result<(), StorageError> {
        let mut vcards = self.vcards.lock().unwrap_or_else(|e| e.into_inner());
        vcards.insert((account.to_owned(), jid.to_owned()), vcard.to_owned());
        Ok(())
    }
}

/// Why a vCard operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VCardError {
    /// The server refused, or did not answer.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// What was given is not a JID.
    #[error("not a JID: {0}")]
    BadJid(String),
    /// What the storage kept is not a vCard.
    #[error("the stored vCard does not parse: {0}")]
    Corrupt(String),
}

/// The vCards of one client.
#[derive(Debug)]
pub struct VCards {
    client: Client,
    storage: Arc<dyn VCardStorage>,
}

impl VCards {
    /// The vCard module for `client`, caching in `storage` (XMPPvCardTempModule's
    /// `initWithvCardStorage:` then `activate:`).
    pub fn attach(client: &Client, storage: Arc<dyn VCardStorage>) -> Arc<VCards> {
        Arc::new(VCards {
            client: client.clone(),
            storage,
        })
    }

    /// The vCard of `jid` (a bare JID): the stored one unless `ignore_storage` or none is
    /// stored, else the server's, which is then stored. `None` when the server has none for
    /// that JID (`item-not-found`, or `service-unavailable` for an account that does not
    /// exist). An account with no vCard yet has an empty `<vCard/>`.
    pub async fn fetch(
        &self,
        jid: &str,
        ignore_storage: bool,
    ) -> Result<Option<Element>, VCardError> {
        let key = self.key(jid)?;
        if !ignore_storage && let Some(stored) = self.cached(&key).await? {
            return Ok(Some(stored));
        }
        let mut iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_child(Element::new("vCard", ns::VCARD));
        if key != self.client.account().as_str() {
            iq.set_attr("to", key.as_str());
        }
        let vcard = match self.client.request(iq).await {
            Ok(result) => result
                .get_child("vCard", ns::VCARD)
                .cloned()
                .unwrap_or_else(|| Element::new("vCard", ns::VCARD)),
            Err(RequestError::Error { condition, .. })
                if condition == "item-not-found" || condition == "service-unavailable" =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        self.store(&key, &vcard).await?;
        Ok(Some(vcard))
    }

    /// The stored vCard of `jid`, without asking the server.
    pub async fn cached(&self, jid: &str) -> Result<Option<Element>, VCardError> {
        let key = self.key(jid)?;
        let account = self.client.account().to_string();
        let Some(xml) = self.storage.load_vcard(&account, &key).await? else {
            return Ok(None);
        };
        corvid_xml::parse_element(&xml, ns::CLIENT)
            .map(Some)
            .map_err(|e| VCardError::Corrupt(e.to_string()))
    }

    /// Publishes the account's own vCard, then stores it.
    pub async fn update_own(&self, vcard: Element) -> Result<(), VCardError> {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(vcard.clone());
        self.client.request(iq).await?;
        let own = self.client.account().to_string();
        self.store(&own, &vcard).await
    }

    async fn store(&self, key: &str, vcard: &Element) -> Result<(), VCardError> {
        let account = self.client.account().to_string();
        let xml = String::from_utf8_lossy(&vcard.to_bytes(ns::CLIENT)).into_owned();
        Ok(self.storage.store_vcard(&account, key, &xml).await?)
    }

    /// The bare JID vCards are kept under.
    fn key(&self, jid: &str) -> Result<String, VCardError> {
        Jid::new(jid)
            .map(|jid| jid.to_bare().to_string())
            .map_err(|_| VCardError::BadJid(jid.to_owned()))
    }
}
