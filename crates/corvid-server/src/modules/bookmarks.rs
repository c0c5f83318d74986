//! XEP-0402 PEP native bookmarks, kept in step with XEP-0048 bookmarks in private XML
//! storage (XEP-0049) for clients that still use those (`urn:xmpp:bookmarks:1#compat`,
//! XEP-0402 §3): a change through either is mirrored to the other.
//!
//! The `urn:xmpp:bookmarks:1` node holds one item per room, its ItemID the room's JID;
//! the private `storage:bookmarks` element holds them all, plus the URL bookmarks that
//! XEP-0402 has no place for (kept as they are).

use async_trait::async_trait;
use corvid_proto::{BareJid, forms, ns};
use corvid_store::{ItemQuery, PrivateXml, PubSubStore, StoredItem};
use corvid_xml::Element;

use crate::module::{Ctx, Module};

/// Most bookmarks mirrored from one side to the other.
const MAX_BOOKMARKS: usize = 1000;

pub struct Bookmarks;

#[async_trait]
impl Module for Bookmarks {
    fn name(&self) -> &'static str {
        "bookmarks"
    }

    fn account_features(&self) -> &[&'static str] {
        &[ns::BOOKMARKS_COMPAT]
    }

    async fn on_pep_published(&self, ctx: &Ctx, owner: &BareJid, node: &str, _item: &StoredItem) {
        if node == ns::BOOKMARKS {
            mirror_to_private(ctx, owner).await;
        }
    }

    async fn on_pep_retracted(&self, ctx: &Ctx, owner: &BareJid, node: &str, _id: &str) {
        if node == ns::BOOKMARKS {
            mirror_to_private(ctx, owner).await;
        }
    }

    async fn on_private_stored(&self, ctx: &Ctx, owner: &BareJid, data: &Element) {
        if data.is("storage", ns::BOOKMARKS_LEGACY) {
            mirror_to_pep(ctx, owner, data).await;
        }
    }
}

/// XEP-0402 §5: how the bookmarks node is configured.
fn publish_options() -> Element {
    forms::submit(&[
        ("FORM_TYPE", ns::PUBSUB_PUBLISH_OPTIONS),
        ("pubsub#persist_items", "true"),
        ("pubsub#max_items", "max"),
        ("pubsub#send_last_published_item", "never"),
        ("pubsub#access_model", "whitelist"),
    ])
}

/// A legacy `<conference/>` as a XEP-0402 item: (room JID, `<conference/>` payload).
fn to_native(conference: &Element) -> Option<(String, Element)> {
    let room = BareJid::new(conference.attr("jid")?).ok()?;
    let mut native = Element::new("conference", ns::BOOKMARKS);
    if let Some(name) = conference.attr("name") {
        native.set_attr("name", name);
    }
    if matches!(conference.attr("autojoin"), Some("true" | "1")) {
        native.set_attr("autojoin", "true");
    }
    for child in ["nick", "password"] {
        if let Some(value) = conference.get_child(child, ns::BOOKMARKS_LEGACY) {
            native.append_child(Element::new(child, ns::BOOKMARKS).with_text(value.text()));
        }
    }
    Some((room.to_string(), native))
}

/// A XEP-0402 item as a legacy `<conference/>`.
fn to_legacy(item: &StoredItem) -> Option<Element> {
    let native = corvid_xml::parse_element(&item.payload, "").ok()?;
    if !native.is("conference", ns::BOOKMARKS) {
        return None;
    }
    let mut legacy =
        Element::new("conference", ns::BOOKMARKS_LEGACY).with_attr("jid", item.id.as_str());
    if let Some(name) = native.attr("name") {
        legacy.set_attr("name", name);
    }
    let autojoin = matches!(native.attr("autojoin"), Some("true" | "1"));
    legacy.set_attr("autojoin", if autojoin { "true" } else { "false" });
    for child in ["nick", "password"] {
        if let Some(value) = native.get_child(child, ns::BOOKMARKS) {
            legacy.append_child(Element::new(child, ns::BOOKMARKS_LEGACY).with_text(value.text()));
        }
    }
    Some(legacy)
}

/// The native bookmarks now on PEP, oldest first.
async fn native_items(ctx: &Ctx, owner: &BareJid) -> Option<Vec<StoredItem>> {
    let query = ItemQuery {
        max: Some(MAX_BOOKMARKS),
        ..ItemQuery::default()
    };
    match ctx
        .server
        .store
        .pubsub_items(owner.as_str(), ns::BOOKMARKS, &query)
        .await
    {
        Ok(page) => Some(page.items.into_iter().rev().collect()),
        Err(corvid_store::StoreError::NotFound) => Some(Vec::new()),
        Err(err) => {
            tracing::warn!(error = %err, "bookmarks: reading PEP failed");
            None
        }
    }
}

/// Rewrites the private `storage:bookmarks` from the PEP node, keeping its URL bookmarks.
async fn mirror_to_private(ctx: &Ctx, owner: &BareJid) {
    let Some(items) = native_items(ctx, owner).await else {
        return;
    };
    let (username, domain) = Ctx::key(owner);
    let store = &ctx.server.store;
    let mut storage = Element::new("storage", ns::BOOKMARKS_LEGACY);
    if let Ok(Some(old)) = store
        .private_xml(username, domain, ns::BOOKMARKS_LEGACY)
        .await
        && let Ok(old) = corvid_xml::parse_element(&old, ns::CLIENT)
    {
        for url in old.children().filter(|c| c.is("url", ns::BOOKMARKS_LEGACY)) {
            storage.append_child(url.clone());
        }
    }
    for conference in items.iter().filter_map(to_legacy) {
        storage.append_child(conference);
    }
    let xml = String::from_utf8_lossy(&storage.to_bytes(ns::CLIENT)).into_owned();
    if let Err(err) = store
        .set_private_xml(username, domain, ns::BOOKMARKS_LEGACY, &xml)
        .await
    {
        tracing::warn!(error = %err, "bookmarks: writing private storage failed");
    }
}

/// Publishes each legacy conference as a native item, and retracts the native items the
/// legacy list no longer has.
async fn mirror_to_pep(ctx: &Ctx, owner: &BareJid, storage: &Element) {
    let engine = &ctx.server.pubsub;
    let wanted: Vec<(String, Element)> = storage
        .children()
        .filter(|c| c.is("conference", ns::BOOKMARKS_LEGACY))
        .filter_map(to_native)
        .take(MAX_BOOKMARKS)
        .collect();
    let Some(existing) = native_items(ctx, owner).await else {
        return;
    };
    for (room, native) in &wanted {
        let unchanged = existing.iter().any(|i| {
            &i.id == room && corvid_xml::parse_element(&i.payload, "").is_ok_and(|p| p == *native)
        });
        if unchanged {
            continue;
        }
        let item = Element::new("item", ns::PUBSUB)
            .with_attr("id", room.as_str())
            .with_child(native.clone());
        if let Err(err) = engine
            .publish_for_owner(ctx, owner, ns::BOOKMARKS, item, Some(publish_options()))
            .await
        {
            tracing::info!(%err, "bookmarks: mirroring a private bookmark to PEP failed");
            return;
        }
    }
    for gone in existing
        .iter()
        .filter(|i| !wanted.iter().any(|(room, _)| *room == i.id))
    {
        let _ = engine
            .retract_for_owner(ctx, owner, ns::BOOKMARKS, &gone.id)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bookmark_survives_the_round_trip_between_the_two_forms() {
        let legacy = Element::new("conference", ns::BOOKMARKS_LEGACY)
            .with_attr("jid", "room@conference.example.org")
            .with_attr("name", "The Room")
            .with_attr("autojoin", "1")
            .with_child(Element::new("nick", ns::BOOKMARKS_LEGACY).with_text("juliet"));
        let (id, native) = to_native(&legacy).unwrap();
        assert_eq!(id, "room@conference.example.org");
        assert_eq!(native.attr("autojoin"), Some("true"));
        let item = StoredItem {
            id,
            payload: native.to_string(),
            ..StoredItem::default()
        };
        let back = to_legacy(&item).unwrap();
        assert_eq!(back.attr("jid"), Some("room@conference.example.org"));
        assert_eq!(back.attr("name"), Some("The Room"));
        assert_eq!(back.attr("autojoin"), Some("true"));
        assert_eq!(
            back.get_child("nick", ns::BOOKMARKS_LEGACY)
                .map(|n| n.text()),
            Some("juliet".to_string())
        );
    }

    #[test]
    fn a_conference_without_a_valid_jid_is_skipped() {
        let legacy = Element::new("conference", ns::BOOKMARKS_LEGACY).with_attr("jid", "@@");
        assert!(to_native(&legacy).is_none());
    }
}
