//! What goes into an account's archive (XEP-0313 §7 business rules, XEP-0334 hints): which
//! one-to-one messages are worth keeping, whose archive keeps them, and under which id.
//!
//! Both parties keep a copy. The recipient's is taken as the message is about to reach it
//! (after the stanza-id module stamped it), under the XEP-0359 id the recipient sees (an
//! archive number), so a client can page the archive from a message it got live. The
//! sender's is taken as it leaves the sending client, under a number of its own.

use corvid_proto::{Bare, BareJid, FullJid, Jid, MessageType, ns};
use corvid_store::{Archive as _, ArchiveEntry, Users as _, parse_archive_id};
use corvid_xml::Element;

use super::prefs::PrefsCache;
use crate::config::MamConfig;
use crate::module::Ctx;

/// Whether a one-to-one message is worth archiving: chat or normal messages with content a
/// user would look for later (a body, an encrypted payload, a `store` hint, and receipts or
/// markers as configured); never errors, headlines, groupchat, chat states alone, messages
/// hinted `no-store`/`no-permanent-store` (XEP-0334 §4), carbon copies (XEP-0280) or
/// archive results, which were archived once already.
pub fn worth_archiving(msg: &Element, config: &MamConfig) -> bool {
    if !matches!(
        MessageType::of(msg),
        MessageType::Chat | MessageType::Normal
    ) {
        return false;
    }
    if msg.has_child("no-store", ns::HINTS) || msg.has_child("no-permanent-store", ns::HINTS) {
        return false;
    }
    let copy = |c: &Element| {
        (c.ns() == ns::CARBONS && matches!(c.name(), "sent" | "received"))
            || c.is("result", ns::MAM)
    };
    if msg.children().any(copy) {
        return false;
    }
    msg.children().any(|c| match (c.ns(), c.name()) {
        (ns::CLIENT, "body") => true,
        (ns::HINTS, "store") => true,
        (ns::OMEMO_LEGACY | ns::OMEMO, "encrypted") => true,
        (ns::RECEIPTS, "received") => config.archive_receipts,
        // XEP-0333 §4: `markable` only asks for markers; the others say what was read.
        (ns::CHAT_MARKERS, name) => config.archive_markers && name != "markable",
        _ => false,
    })
}

/// The sender's copy of a message a local client sends to a local account (messages to
/// other servers are not routed yet, so nothing would be delivered to archive).
pub async fn sender_copy(ctx: &Ctx, prefs: &PrefsCache, msg: &Element) -> Option<ArchiveEntry> {
    let from: FullJid = msg.attr("from")?.parse().ok()?;
    let to = Jid::new(msg.attr("to")?).ok()?;
    // A message to oneself is archived once, as the recipient's.
    if to.node().is_none() || to.bare() == from.bare() {
        return None;
    }
    if !ctx.server.config.serves(to.domain().as_str())
        || !worth_archiving(msg, &ctx.server.config.mam)
        || !account_exists(ctx, &to.bare()).await
    {
        return None;
    }
    let owner = from.bare();
    if !prefs.archives(ctx, &owner, &to).await {
        return None;
    }
    Some(entry(&owner, ctx.server.store.next_archive_seq(), &to, msg))
}

/// The recipient's copy, under the stanza-id its account's archive gave it (XEP-0359).
pub async fn recipient_copy(ctx: &Ctx, prefs: &PrefsCache, msg: &Element) -> Option<ArchiveEntry> {
    let to = Jid::new(msg.attr("to")?).ok()?;
    let from = Jid::new(msg.attr("from")?).ok()?;
    let owner = to.bare();
    if to.node().is_none() || !worth_archiving(msg, &ctx.server.config.mam) {
        return None;
    }
    let seq = msg
        .children()
        .find(|c| c.is("stanza-id", ns::STANZA_ID) && c.attr("by") == Some(owner.as_str()))
        .and_then(|c| c.attr("id"))
        .and_then(parse_archive_id)?;
    if !account_exists(ctx, &owner).await || !prefs.archives(ctx, &owner, &from).await {
        return None;
    }
    Some(entry(&owner, seq, &from, msg))
}

/// An account with a session exists; otherwise the store says (RFC 6121 §8.5.1: messages
/// to accounts that do not exist are bounced, not archived).
async fn account_exists(ctx: &Ctx, account: &BareJid) -> bool {
    if !ctx.server.sessions.resources(account).is_empty() {
        return true;
    }
    let (username, domain) = Ctx::key(account);
    match ctx.server.store.user_exists(username, domain).await {
        Ok(exists) => exists,
        Err(e) => {
            tracing::warn!(error = %e, "mam: cannot tell whether an account exists");
            false
        }
    }
}

/// An archive entry for `msg`, numbered `seq`.
pub fn entry(archive: &BareJid, seq: i64, with: &Jid, msg: &Element) -> ArchiveEntry {
    ArchiveEntry {
        archive: archive.to_string(),
        seq,
        with_bare: with.bare().to_string(),
        with_full: with.to_string(),
        stanza: String::from_utf8_lossy(&msg.to_bytes(ns::CLIENT)).into_owned(),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(children: Vec<Element>) -> Element {
        let mut msg = Element::new("message", ns::CLIENT).with_attr("type", "chat");
        for c in children {
            msg.append_child(c);
        }
        msg
    }

    fn body() -> Element {
        Element::new("body", ns::CLIENT).with_text("hi")
    }

    #[test]
    fn bodies_encrypted_and_hinted_messages_are_kept() {
        let config = MamConfig::default();
        assert!(worth_archiving(&chat(vec![body()]), &config));
        for encrypted in [ns::OMEMO_LEGACY, ns::OMEMO] {
            let msg = chat(vec![Element::new("encrypted", encrypted)]);
            assert!(worth_archiving(&msg, &config), "{encrypted}");
        }
        let hinted = chat(vec![Element::new("store", ns::HINTS)]);
        assert!(worth_archiving(&hinted, &config));
        let normal = Element::new("message", ns::CLIENT).with_child(body());
        assert!(worth_archiving(&normal, &config));
    }

    #[test]
    fn chat_states_errors_groupchat_and_no_store_are_not() {
        let config = MamConfig::default();
        assert!(!worth_archiving(
            &chat(vec![Element::new("composing", ns::CHATSTATES)]),
            &config
        ));
        for kind in ["error", "groupchat", "headline"] {
            let mut msg = chat(vec![body()]);
            msg.set_attr("type", kind);
            assert!(!worth_archiving(&msg, &config), "{kind}");
        }
        for hint in ["no-store", "no-permanent-store"] {
            let msg = chat(vec![body(), Element::new(hint, ns::HINTS)]);
            assert!(!worth_archiving(&msg, &config), "{hint}");
        }
        let carbon = chat(vec![body(), Element::new("sent", ns::CARBONS)]);
        assert!(!worth_archiving(&carbon, &config));
    }

    #[test]
    fn receipts_and_markers_follow_the_config() {
        let mut config = MamConfig::default();
        let receipt = chat(vec![Element::new("received", ns::RECEIPTS)]);
        let marker = chat(vec![Element::new("displayed", ns::CHAT_MARKERS)]);
        let markable = chat(vec![Element::new("markable", ns::CHAT_MARKERS)]);
        assert!(!worth_archiving(&receipt, &config));
        assert!(worth_archiving(&marker, &config));
        assert!(!worth_archiving(&markable, &config));
        config.archive_receipts = true;
        config.archive_markers = false;
        assert!(worth_archiving(&receipt, &config));
        assert!(!worth_archiving(&marker, &config));
    }
}
