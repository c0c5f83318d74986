//! Avatars, both ways XMPP has them: vCard-based (XEP-0153; XMPPFramework's
//! `XMPPvCardAvatarModule`) and user avatars in PEP (XEP-0084).
//!
//! Contacts announce a new avatar by its SHA-1 hash: in their presence
//! (`<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>`, XEP-0153 §3.2) and in a
//! metadata notification of their PEP (XEP-0084 §4.2, sent only to clients whose caps
//! declare [`METADATA_NOTIFY`]: add it with [`crate::Capabilities::add_feature`]). An
//! announced hash that the [`AvatarStorage`] lacks is fetched (the contact's vCard PHOTO,
//! or the PEP data item of that id), checked against the hash and stored; then an
//! [`AvatarEvent::Changed`] says so, and [`Avatars::cached`] has the bytes. The storage is
//! keyed by hash only, so an avatar shared by several contacts or sessions is fetched once.
//!
//! [`Avatars::publish_own`] publishes ours both ways with the same hash: PEP data, then
//! metadata (XEP-0084 §4.1), then the vCard PHOTO, then presence. Presence we send should
//! carry our hash (XEP-0153 §4.1): send it with [`Avatars::send_presence`], or add the
//! element with [`Avatars::decorate`].

use crate::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use corvid_proto::{BareJid, Jid, ns};
use corvid_xml::Element;
use sha1::{Digest, Sha1};
use tokio::sync::mpsc;

use crate::client::{Client, Handled, StanzaHandler};
use crate::error::RequestError;
use crate::pubsub::{self, ItemsQuery, PubSub, PubSubError, PubSubEvent};
use crate::roster::StorageError;

/// The caps feature that asks contacts' PEP for their avatar metadata (XEP-0084 §4.2).
pub const METADATA_NOTIFY: &str = "urn:xmpp:avatar:metadata+notify";

/// An avatar image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Avatar {
    /// The image file, as published.
    pub bytes: Vec<u8>,
    /// `image/png`, say.
    pub mime_type: String,
}

impl Avatar {
    /// Its hash, the lowercase hex SHA-1 of the bytes (XEP-0153 §2, XEP-0084 §4.2.1).
    pub fn hash(&self) -> String {
        sha1_hex(&self.bytes)
    }
}

/// Where avatars are kept, by hash (XMPPvCardAvatarModule's storage of photo data).
#[async_trait]
pub trait AvatarStorage: Send + Sync + std::fmt::Debug {
    /// The avatar whose bytes hash to `hash`, if stored.
    async fn load_avatar(&self, hash: &str) -> Result<Option<Avatar>, StorageError>;
    /// Keeps `avatar` under its `hash`.
    async fn store_avatar(&self, hash: &str, avatar: &Avatar) -> Result<(), StorageError>;
}

/// Avatars in memory, for one process's lifetime.
#[derive(Debug, Default)]
pub struct MemoryAvatarStorage {
    avatars: Mutex<HashMap<String, Avatar>>,
}

#[async_trait]
impl AvatarStorage for MemoryAvatarStorage {
    async fn load_avatar(&self, hash: &str) -> Result<Option<Avatar>, StorageError> {
        Ok(lock(&self.avatars).get(hash).cloned())
    }

    async fn store_avatar(&self, hash: &str, avatar: &Avatar) -> Result<(), StorageError> {
        lock(&self.avatars).insert(hash.to_owned(), avatar.clone());
        Ok(())
    }
}

/// Where an avatar's bytes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AvatarSource {
    /// The contact's PEP data node (XEP-0084).
    Pep,
    /// The contact's vCard PHOTO (XEP-0153).
    VCard,
    /// The storage had them: nothing was fetched.
    Storage,
}

/// Which announcements [`Avatars`] follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvatarSources {
    /// XEP-0084 metadata notifications (the caps must declare [`METADATA_NOTIFY`] too).
    pub pep: bool,
    /// XEP-0153 hashes in presence.
    pub vcard: bool,
}

impl Default for AvatarSources {
    fn default() -> Self {
        AvatarSources {
            pep: true,
            vcard: true,
        }
    }
}

/// What the avatars module reports (XMPPvCardAvatarDelegate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AvatarEvent {
    /// A contact's avatar is now the one with this hash, and the storage has it
    /// (`xmppvCardAvatarModule:didReceivePhoto:forJID:`).
    Changed {
        /// The contact.
        jid: BareJid,
        /// The avatar's SHA-1, hex: the key to [`Avatars::cached`].
        hash: String,
        /// Where it was learnt from.
        source: AvatarSource,
    },
    /// A contact has no avatar any more (an empty `<photo/>` or `<metadata/>`).
    Removed {
        /// The contact.
        jid: BareJid,
    },
    /// A contact announced an avatar that could not be fetched, or whose bytes do not
    /// have the announced hash.
    FetchFailed {
        /// The contact.
        jid: BareJid,
        /// The hash it announced.
        hash: String,
        /// What went wrong.
        error: String,
    },
}

/// The avatars module's end of its events.
#[derive(Debug)]
pub struct AvatarEvents {
    receiver: mpsc::UnboundedReceiver<AvatarEvent>,
}

impl AvatarEvents {
    /// The next event; `None` once the client is gone.
    pub async fn next(&mut self) -> Option<AvatarEvent> {
        self.receiver.recv().await
    }
}

/// Why publishing or reading an avatar failed.
#[derive(Debug, thiserror::Error)]
pub enum AvatarError {
    /// A vCard request got no result.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A PEP request got no result.
    #[error(transparent)]
    PubSub(#[from] PubSubError),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// What the contact published is not an avatar (no data, bad base64, another hash).
    #[error("{0}")]
    Invalid(String),
}

/// An announced avatar to look up.
#[derive(Debug)]
struct Announced {
    jid: BareJid,
    hash: String,
    /// The type XEP-0084 metadata gives; the vCard carries its own.
    mime_type: Option<String>,
    via: AvatarSource,
}

#[derive(Debug, Default)]
struct State {
    /// The hash each contact last announced (`None`: no avatar).
    contacts: HashMap<BareJid, Option<String>>,
    /// Ours, once known: `Some(None)` is "no avatar".
    own: Option<Option<String>>,
    /// The last presence [`Avatars::send_presence`] sent, without our hash.
    presence: Option<Element>,
}

#[derive(Debug)]
struct Hook {
    account: BareJid,
    sources: AvatarSources,
    state: Arc<Mutex<State>>,
    lookups: mpsc::UnboundedSender<Announced>,
    events: mpsc::UnboundedSender<AvatarEvent>,
}

impl StanzaHandler for Hook {
    fn handle(&self, stanza: &Element) -> Handled {
        match stanza.name() {
            "presence" if self.sources.vcard => self.presence(stanza),
            "message" if self.sources.pep => self.metadata(stanza),
            _ => {}
        }
        Handled::No
    }
}

impl Hook {
    /// XEP-0153 §4.3: a `<photo/>` in available presence announces the hash (empty: none);
    /// an `<x/>` without one says nothing.
    fn presence(&self, presence: &Element) {
        if presence.attr("type").is_some() {
            return;
        }
        let Some(photo) = presence
            .get_child("x", ns::VCARD_UPDATE)
            .and_then(|x| x.get_child("photo", ns::VCARD_UPDATE))
        else {
            return;
        };
        let Some(jid) = self.sender(presence) else {
            return;
        };
        let hash = Some(photo.text().trim().to_ascii_lowercase()).filter(|h| !h.is_empty());
        self.announced(jid, hash, None, AvatarSource::VCard);
    }

    /// XEP-0084 §4.2: the metadata item's `<info/>` for the data in PEP (no `url`).
    fn metadata(&self, message: &Element) {
        for event in pubsub::parse_events(message) {
            let PubSubEvent::Published {
                service,
                node,
                items,
            } = event
            else {
                continue;
            };
            if node != ns::AVATAR_METADATA || service == self.account {
                continue;
            }
            let Some(metadata) = items
                .last()
                .and_then(|item| item.payload.as_ref())
                .filter(|p| p.is("metadata", ns::AVATAR_METADATA))
            else {
                continue;
            };
            let info = metadata
                .children()
                .find(|i| i.is("info", ns::AVATAR_METADATA) && i.attr("url").is_none());
            match info.and_then(|i| i.attr("id")) {
                Some(id) => {
                    let mime = info.and_then(|i| i.attr("type")).map(str::to_owned);
                    self.announced(
                        service,
                        Some(id.to_ascii_lowercase()),
                        mime,
                        AvatarSource::Pep,
                    );
                }
                None => self.announced(service, None, None, AvatarSource::Pep),
            }
        }
    }

    /// A contact, not ourselves: our own announcements are what we published.
    fn sender(&self, stanza: &Element) -> Option<BareJid> {
        let from = Jid::new(stanza.attr("from")?).ok()?.to_bare();
        (from != self.account).then_some(from)
    }

    /// Records the contact's hash; a new one is looked up. Done here, on the stream task,
    /// so an avatar announced both ways is looked up once.
    fn announced(
        &self,
        jid: BareJid,
        hash: Option<String>,
        mime_type: Option<String>,
        via: AvatarSource,
    ) {
        let previous = lock(&self.state).contacts.insert(jid.clone(), hash.clone());
        if previous.as_ref() == Some(&hash) {
            return;
        }
        match hash {
            Some(hash) => {
                let _ = self.lookups.send(Announced {
                    jid,
                    hash,
                    mime_type,
                    via,
                });
            }
            None => {
                let _ = self.events.send(AvatarEvent::Removed { jid });
            }
        }
    }
}

/// The avatars of one client's contacts, and its own (XMPPvCardAvatarModule).
#[derive(Debug)]
pub struct Avatars {
    client: Client,
    storage: Arc<dyn AvatarStorage>,
    state: Arc<Mutex<State>>,
}

impl Avatars {
    /// Avatars for `client`, kept in `storage`, following `sources`; attach before
    /// connecting so no announcement is missed.
    pub fn attach(
        client: &Client,
        storage: Arc<dyn AvatarStorage>,
        sources: AvatarSources,
    ) -> (Arc<Avatars>, AvatarEvents) {
        let (events, receiver) = mpsc::unbounded_channel();
        let (lookups, mut incoming) = mpsc::unbounded_channel::<Announced>();
        let state = Arc::new(Mutex::new(State::default()));
        client.add_handler(Arc::new(Hook {
            account: client.account().clone(),
            sources,
            state: state.clone(),
            lookups,
            events: events.clone(),
        }));
        let avatars = Arc::new(Avatars {
            client: client.clone(),
            storage,
            state,
        });
        let worker = Arc::downgrade(&avatars);
        tokio::spawn(async move {
            while let Some(announced) = incoming.recv().await {
                let Some(avatars) = worker.upgrade() else {
                    break;
                };
                let event = avatars.look_up(announced).await;
                let _ = events.send(event);
            }
        });
        (avatars, AvatarEvents { receiver })
    }

    /// The hash a contact last announced (`photoHashForJID:`), `None` if none or unknown.
    pub fn hash_of(&self, jid: &BareJid) -> Option<String> {
        lock(&self.state).contacts.get(jid).cloned().flatten()
    }

    /// The stored avatar with this hash (`photoDataForJID:` once the hash is known).
    pub async fn cached(&self, hash: &str) -> Result<Option<Avatar>, AvatarError> {
        Ok(self.storage.load_avatar(hash).await?)
    }

    /// Our own hash, as our presence announces it, once [`Avatars::publish_own`] set it.
    pub fn own_hash(&self) -> Option<String> {
        lock(&self.state).own.clone().flatten()
    }

    /// Adds (or replaces) our `vcard-temp:x:update` in a presence about to be sent:
    /// `<photo>` with our hash once known, an empty `<x/>` (XEP-0153 §4.1: not ready to
    /// say) before.
    pub fn decorate(&self, presence: &mut Element) {
        presence.remove_child("x", ns::VCARD_UPDATE);
        let mut x = Element::new("x", ns::VCARD_UPDATE);
        if let Some(own) = lock(&self.state).own.clone() {
            x.append_child(
                Element::new("photo", ns::VCARD_UPDATE).with_text(own.unwrap_or_default()),
            );
        }
        presence.append_child(x);
    }

    /// Sends `presence` with our hash, and keeps it to send again when our avatar changes.
    pub async fn send_presence(&self, presence: Element) -> Result<(), RequestError> {
        let mut presence = presence;
        presence.remove_child("x", ns::VCARD_UPDATE);
        lock(&self.state).presence = Some(presence.clone());
        self.decorate(&mut presence);
        self.client.send(&presence).await
    }

    /// Publishes our avatar both ways, kept in step (XMPPvCardAvatarModule's photo update
    /// plus XEP-0084 §4.1): the PEP data item, then the metadata with the same id, then the
    /// vCard's PHOTO (the rest of the vCard kept), then presence with the new hash (the last
    /// one [`Avatars::send_presence`] sent, or plain available presence). The hash.
    pub async fn publish_own(
        &self,
        bytes: &[u8],
        mime_type: &str,
        width: u32,
        height: u32,
    ) -> Result<String, AvatarError> {
        let avatar = Avatar {
            bytes: bytes.to_vec(),
            mime_type: mime_type.to_owned(),
        };
        let hash = avatar.hash();
        let encoded = B64.encode(bytes);
        let pep = PubSub::requests(&self.client, None);
        let data = Element::new("data", ns::AVATAR_DATA).with_text(encoded.as_str());
        pep.publish(ns::AVATAR_DATA, Some(&hash), data, None)
            .await?;
        let info = Element::new("info", ns::AVATAR_METADATA)
            .with_attr("id", hash.as_str())
            .with_attr("bytes", bytes.len().to_string())
            .with_attr("type", mime_type)
            .with_attr("width", width.to_string())
            .with_attr("height", height.to_string());
        let metadata = Element::new("metadata", ns::AVATAR_METADATA).with_child(info);
        pep.publish(ns::AVATAR_METADATA, Some(&hash), metadata, None)
            .await?;
        self.update_vcard_photo(&avatar, &encoded).await?;
        self.storage.store_avatar(&hash, &avatar).await?;
        let presence = {
            let mut state = lock(&self.state);
            state.own = Some(Some(hash.clone()));
            state.presence.clone()
        };
        let presence = presence.unwrap_or_else(|| Element::new("presence", ns::CLIENT));
        self.send_presence(presence).await?;
        Ok(hash)
    }

    /// Replaces the PHOTO of our vCard, keeping its other fields (XEP-0153 §3.1).
    async fn update_vcard_photo(&self, avatar: &Avatar, encoded: &str) -> Result<(), AvatarError> {
        let get = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_child(Element::new("vCard", ns::VCARD));
        let mut vcard = match self.client.request(get).await {
            Ok(result) => result.get_child("vCard", ns::VCARD).cloned(),
            // No vCard yet.
            Err(RequestError::Error { condition, .. }) if condition == "item-not-found" => None,
            Err(e) => return Err(e.into()),
        }
        .unwrap_or_else(|| Element::new("vCard", ns::VCARD));
        vcard.remove_children(|c| c.is("PHOTO", ns::VCARD));
        vcard.append_child(
            Element::new("PHOTO", ns::VCARD)
                .with_child(Element::new("TYPE", ns::VCARD).with_text(avatar.mime_type.as_str()))
                .with_child(Element::new("BINVAL", ns::VCARD).with_text(encoded)),
        );
        let set = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(vcard);
        self.client.request(set).await?;
        Ok(())
    }

    /// Finds an announced avatar in the storage, else fetches it where it was announced.
    async fn look_up(&self, announced: Announced) -> AvatarEvent {
        let Announced {
            jid,
            hash,
            mime_type,
            via,
        } = announced;
        let fetched = match self.storage.load_avatar(&hash).await {
            Ok(Some(_)) => Ok(AvatarSource::Storage),
            Ok(None) | Err(_) => self.fetch(&jid, &hash, mime_type, via).await.map(|_| via),
        };
        match fetched {
            Ok(source) => AvatarEvent::Changed { jid, hash, source },
            Err(error) => {
                // Forget the hash, so that announcing it again tries again.
                let mut state = lock(&self.state);
                if state.contacts.get(&jid) == Some(&Some(hash.clone())) {
                    state.contacts.remove(&jid);
                }
                AvatarEvent::FetchFailed {
                    jid,
                    hash,
                    error: error.to_string(),
                }
            }
        }
    }

    async fn fetch(
        &self,
        jid: &BareJid,
        hash: &str,
        mime_type: Option<String>,
        via: AvatarSource,
    ) -> Result<(), AvatarError> {
        let avatar = match via {
            AvatarSource::VCard => self.fetch_vcard_photo(jid).await?,
            _ => self.fetch_pep_data(jid, hash, mime_type).await?,
        };
        let actual = avatar.hash();
        if actual != hash {
            return Err(AvatarError::Invalid(format!(
                "announced {hash}, got an image hashing to {actual}"
            )));
        }
        self.storage.store_avatar(hash, &avatar).await?;
        Ok(())
    }

    /// XEP-0153 §3.3: the PHOTO of the contact's vCard.
    async fn fetch_vcard_photo(&self, jid: &BareJid) -> Result<Avatar, AvatarError> {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("to", jid.as_str())
            .with_child(Element::new("vCard", ns::VCARD));
        let result = self.client.request(iq).await?;
        let photo = result
            .get_child("vCard", ns::VCARD)
            .and_then(|v| v.get_child("PHOTO", ns::VCARD))
            .ok_or_else(|| AvatarError::Invalid("the vCard has no PHOTO".into()))?;
        let binval = photo
            .get_child("BINVAL", ns::VCARD)
            .map(Element::text)
            .ok_or_else(|| AvatarError::Invalid("the PHOTO has no BINVAL".into()))?;
        Ok(Avatar {
            bytes: decode(&binval)?,
            mime_type: photo
                .get_child("TYPE", ns::VCARD)
                .map(Element::text)
                .unwrap_or_default(),
        })
    }

    /// XEP-0084 §4.3: the data item whose id is the hash, from the contact's PEP.
    async fn fetch_pep_data(
        &self,
        jid: &BareJid,
        hash: &str,
        mime_type: Option<String>,
    ) -> Result<Avatar, AvatarError> {
        let pep = PubSub::requests(&self.client, Some(jid.clone()));
        let query = ItemsQuery {
            ids: vec![hash.to_owned()],
            ..ItemsQuery::default()
        };
        let page = pep.items(ns::AVATAR_DATA, &query).await?;
        let data = page
            .items
            .iter()
            .filter_map(|item| item.payload.as_ref())
            .find(|p| p.is("data", ns::AVATAR_DATA))
            .ok_or_else(|| AvatarError::Invalid("no avatar data item".into()))?;
        Ok(Avatar {
            bytes: decode(&data.text())?,
            mime_type: mime_type.unwrap_or_else(|| "image/png".into()),
        })
    }
}

/// Base64 as vCards and PEP carry it, line breaks and all.
fn decode(text: &str) -> Result<Vec<u8>, AvatarError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(compact)
        .map_err(|e| AvatarError::Invalid(format!("bad base64: {e}")))
}

fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lowercase_hex_sha1() {
        let avatar = Avatar {
            bytes: b"abc".to_vec(),
            mime_type: "image/png".into(),
        };
        assert_eq!(avatar.hash(), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn decodes_folded_base64() {
        assert_eq!(decode("YW\r\nJj\n").unwrap(), b"abc");
        assert!(decode("!!").is_err());
    }
}
