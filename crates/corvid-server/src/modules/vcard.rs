//! XEP-0054 vcard-temp (own and others' vCards, with a size limit) and XEP-0153 vCard-based
//! avatars: the server knows each account's photo hash and puts it in the account's
//! outgoing presence, and re-announces presence when the photo changes.
//!
//! The vCard photo and the XEP-0084 PEP avatar are one avatar (XEP-0398): a photo set in
//! the vCard is published to the avatar nodes, and an avatar published there becomes the
//! vCard's photo, so the hash in presence always names the current avatar.

use async_trait::async_trait;
use base64::Engine as _;
use corvid_proto::Bare;
use corvid_proto::{BareJid, Iq, IqType, StanzaError, ns};
use corvid_store::{PubSubStore as _, Users as _, VCards as _};
use corvid_xml::Element;
use dashmap::DashMap;
use sha1::{Digest, Sha1};

use crate::module::{Ctx, Direction, Flow, IqResult, Module};

#[derive(Default)]
pub struct VCard {
    /// Photo hash per account ("" for none), so presence does not hit the store.
    hashes: DashMap<BareJid, String>,
}

#[async_trait]
impl Module for VCard {
    fn name(&self) -> &'static str {
        "vcard"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::VCARD]
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::VCARD]
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        if iq.payload.name() != "vCard" {
            return Err(StanzaError::bad_request());
        }
        let requester = iq.from.bare();
        let target = if iq.to.node().is_none() {
            requester.clone()
        } else {
            iq.to.bare()
        };
        match iq.kind {
            IqType::Get => get(ctx, &target, target == requester).await,
            _ if target != requester => Err(StanzaError::forbidden()),
            _ => {
                let photo = self.set(ctx, &requester, &iq.payload).await?;
                publish_avatar(ctx, &requester, photo).await;
                Ok(None)
            }
        }
    }

    async fn on_pep_published(
        &self,
        ctx: &Ctx,
        owner: &BareJid,
        node: &str,
        item: &corvid_store::StoredItem,
    ) {
        if node == ns::AVATAR_METADATA {
            self.follow_pep_avatar(ctx, owner, item).await;
        }
    }

    /// Another node stored the user's vCard: the photo hash is read again when next needed.
    async fn on_store_change(&self, _ctx: &Ctx, change: &corvid_store::StoreChange) {
        if let corvid_store::StoreChange::Photo { username, domain } = change
            && let Ok(user) = BareJid::new(&format!("{username}@{domain}"))
        {
            self.hashes.remove(&user);
        }
    }

    async fn on_presence(&self, ctx: &Ctx, pres: &mut Element, dir: Direction) -> Flow {
        // XEP-0153 §4.1: available presence the user sends carries the current photo hash.
        if dir != Direction::FromClient || pres.attr("type").is_some() {
            return Flow::Continue;
        }
        let Some(Ok(from)) = pres.attr("from").map(corvid_proto::Jid::new) else {
            return Flow::Continue;
        };
        let hash = self.hash_of(ctx, &from.bare()).await;
        pres.remove_children(|c| c.is("x", ns::VCARD_UPDATE));
        let mut photo = Element::new("photo", ns::VCARD_UPDATE);
        if let Some(hash) = hash.filter(|h| !h.is_empty()) {
            photo.append_text(hash);
        }
        pres.append_child(Element::new("x", ns::VCARD_UPDATE).with_child(photo));
        Flow::Continue
    }
}

fn storage_error(e: corvid_store::StoreError) -> StanzaError {
    tracing::warn!(error = %e, "vCard storage failed");
    StanzaError::internal_server_error()
}

async fn get(ctx: &Ctx, target: &BareJid, own: bool) -> IqResult {
    let (username, domain) = Ctx::key(target);
    let store = &ctx.server.store;
    match store.vcard(username, domain).await.map_err(storage_error)? {
        Some(xml) => corvid_xml::parse_element(&xml, ns::CLIENT)
            .map(Some)
            .map_err(|e| {
                tracing::warn!(error = %e, "stored vCard unreadable");
                StanzaError::internal_server_error()
            }),
        // XEP-0054 §3.1: one's own missing vCard is an empty one.
        None if own
            && store
                .user_exists(username, domain)
                .await
                .map_err(storage_error)? =>
        {
            Ok(Some(Element::new("vCard", ns::VCARD)))
        }
        // §3.3: another user's missing vCard and a missing user look the same.
        None => Err(StanzaError::service_unavailable()),
    }
}

/// A vCard photo as XEP-0084 has it: SHA-1 id (hex), media type, base64 data.
pub struct Photo {
    id: String,
    kind: String,
    base64: String,
    bytes: usize,
}

impl VCard {
    /// Stores the vCard; the photo it carries, if it changed (`Some(None)`: removed).
    async fn set(
        &self,
        ctx: &Ctx,
        user: &BareJid,
        vcard: &Element,
    ) -> Result<Option<Option<Photo>>, StanzaError> {
        let xml = String::from_utf8_lossy(&vcard.to_bytes(ns::CLIENT)).into_owned();
        if xml.len() > ctx.server.config.vcard.max_bytes {
            return Err(StanzaError::not_acceptable().with_text("vCard too large"));
        }
        let photo = photo_of(vcard);
        let hash = photo.as_ref().map(|p| p.id.clone());
        let (username, domain) = Ctx::key(user);
        ctx.server
            .store
            .set_vcard(username, domain, &xml, hash.as_deref())
            .await
            .map_err(storage_error)?;
        let hash = hash.unwrap_or_default();
        let changed = self
            .hashes
            .insert(user.clone(), hash.clone())
            .is_none_or(|old| old != hash);
        if changed {
            reannounce(ctx, user).await;
            return Ok(Some(photo));
        }
        Ok(None)
    }

    /// XEP-0084 metadata was published: the vCard photo becomes that avatar (or goes,
    /// when the metadata is empty: avatar disabled, XEP-0084 §4.5).
    async fn follow_pep_avatar(&self, ctx: &Ctx, owner: &BareJid, item: &corvid_store::StoredItem) {
        let Ok(metadata) = corvid_xml::parse_element(&item.payload, "") else {
            return;
        };
        let (username, domain) = Ctx::key(owner);
        let store = &ctx.server.store;
        let mut vcard = match store.vcard(username, domain).await {
            Ok(Some(xml)) => match corvid_xml::parse_element(&xml, ns::CLIENT) {
                Ok(vcard) => vcard,
                Err(_) => return,
            },
            Ok(None) => Element::new("vCard", ns::VCARD),
            Err(e) => {
                storage_error(e);
                return;
            }
        };
        vcard.remove_children(|c| c.is("PHOTO", ns::VCARD));
        // The first <info/> is the PNG (or the one) whose bytes the data node holds.
        if let Some(info) = metadata.get_child("info", ns::AVATAR_METADATA) {
            let (Some(id), Some(kind)) = (info.attr("id"), info.attr("type")) else {
                return;
            };
            let query = corvid_store::ItemQuery {
                ids: vec![id.to_string()],
                max: Some(1),
                ..Default::default()
            };
            let Ok(page) = store
                .pubsub_items(owner.as_str(), ns::AVATAR_DATA, &query)
                .await
            else {
                return;
            };
            let Some(data) = page
                .items
                .first()
                .and_then(|i| corvid_xml::parse_element(&i.payload, "").ok())
            else {
                return;
            };
            vcard.append_child(
                Element::new("PHOTO", ns::VCARD)
                    .with_child(Element::new("TYPE", ns::VCARD).with_text(kind))
                    .with_child(Element::new("BINVAL", ns::VCARD).with_text(data.text())),
            );
        }
        if let Err(err) = self.set(ctx, owner, &vcard).await {
            tracing::info!(%err, "vCard: following the PEP avatar failed");
        }
    }

    async fn hash_of(&self, ctx: &Ctx, user: &BareJid) -> Option<String> {
        if let Some(hash) = self.hashes.get(user) {
            return Some(hash.clone());
        }
        let (username, domain) = Ctx::key(user);
        let hash = ctx
            .server
            .store
            .photo_hash(username, domain)
            .await
            .ok()?
            .unwrap_or_default();
        self.hashes.insert(user.clone(), hash.clone());
        Some(hash)
    }
}

/// The vCard's photo, if it has one that decodes; its id is the SHA-1 (hex) of the decoded
/// PHOTO/BINVAL, the hash presence carries (XEP-0153 §3.1).
fn photo_of(vcard: &Element) -> Option<Photo> {
    let photo = vcard.get_child("PHOTO", ns::VCARD)?;
    let base64: String = photo
        .get_child("BINVAL", ns::VCARD)?
        .text()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&base64)
        .ok()?;
    if bytes.is_empty() {
        return None;
    }
    let kind = photo
        .get_child("TYPE", ns::VCARD)
        .map(|t| t.text())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "image/png".into());
    Some(Photo {
        id: hex_sha1(&bytes),
        kind,
        base64,
        bytes: bytes.len(),
    })
}

/// A photo set through the vCard goes to the XEP-0084 nodes: data first, then metadata
/// (§4.1, §4.2); a removed one is announced as empty metadata (§4.5).
async fn publish_avatar(ctx: &Ctx, user: &BareJid, changed: Option<Option<Photo>>) {
    let Some(photo) = changed else {
        return;
    };
    let engine = &ctx.server.pubsub;
    let mut metadata = Element::new("metadata", ns::AVATAR_METADATA);
    let mut id = crate::random_id();
    if let Some(photo) = photo {
        let data = Element::new("item", ns::PUBSUB)
            .with_attr("id", photo.id.as_str())
            .with_child(Element::new("data", ns::AVATAR_DATA).with_text(photo.base64));
        if let Err(err) = engine
            .publish_for_owner(ctx, user, ns::AVATAR_DATA, data, None)
            .await
        {
            tracing::info!(%err, "vCard: publishing the avatar data failed");
            return;
        }
        metadata.append_child(
            Element::new("info", ns::AVATAR_METADATA)
                .with_attr("id", photo.id.as_str())
                .with_attr("bytes", photo.bytes.to_string())
                .with_attr("type", photo.kind),
        );
        id = photo.id;
    }
    let item = Element::new("item", ns::PUBSUB)
        .with_attr("id", id)
        .with_child(metadata);
    if let Err(err) = engine
        .publish_for_owner(ctx, user, ns::AVATAR_METADATA, item, None)
        .await
    {
        tracing::info!(%err, "vCard: publishing the avatar metadata failed");
    }
}

fn hex_sha1(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// XEP-0153 §4.1: after a photo change, every available resource's presence goes out again
/// (through the client path, so it picks up the new hash).
async fn reannounce(ctx: &Ctx, user: &BareJid) {
    for (resource, state) in ctx.server.sessions.states(user) {
        if let (true, Some(mut presence)) =
            (state.available, state.presence.and_then(|p| p.element()))
        {
            presence.set_attr("from", resource.as_str());
            presence.remove_attr("to");
            ctx.route_from_client(presence).await;
        }
    }
}
