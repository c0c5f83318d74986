//! XEP-0054 vcard-temp (own and others' vCards, with a size limit) and XEP-0153 vCard-based
//! avatars: the server knows each account's photo hash and puts it in the account's
//! outgoing presence, and re-announces presence when the photo changes.

use async_trait::async_trait;
use base64::Engine as _;
use corvid_proto::Bare;
use corvid_proto::{BareJid, Iq, IqType, StanzaError, ns};
use corvid_store::{Users as _, VCards as _};
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
            _ => self.set(ctx, &requester, &iq.payload).await.map(|_| None),
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

impl VCard {
    async fn set(&self, ctx: &Ctx, user: &BareJid, vcard: &Element) -> Result<(), StanzaError> {
        let xml = String::from_utf8_lossy(&vcard.to_bytes(ns::CLIENT)).into_owned();
        if xml.len() > ctx.server.config.vcard.max_bytes {
            return Err(StanzaError::not_acceptable().with_text("vCard too large"));
        }
        let hash = photo_hash(vcard);
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
        }
        Ok(())
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

/// SHA-1 (hex) of the decoded PHOTO/BINVAL (XEP-0153 §3.1), if there is a photo.
fn photo_hash(vcard: &Element) -> Option<String> {
    let binval = vcard
        .get_child("PHOTO", ns::VCARD)?
        .get_child("BINVAL", ns::VCARD)?
        .text();
    let compact: String = binval
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()?;
    if bytes.is_empty() {
        return None;
    }
    Some(
        Sha1::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
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
