//! Archiving preferences (XEP-0313 §6): per account, a default (`always`, `roster`,
//! `never`) and JIDs always or never archived; until an account sets its own, the
//! server's `[mam] default` applies.
//!
//! Each archived message asks the preferences of its archive's owner, so they are cached
//! (bounded; a set replaces the entry after it is stored).

use std::sync::Arc;

use corvid_proto::{Bare, BareJid, Jid, StanzaError, ns};
use corvid_store::{Archive as _, ArchivePrefs, Rosters as _};
use corvid_xml::Element;
use dashmap::DashMap;

use crate::module::{Ctx, IqResult};

/// Accounts whose preferences are cached; past it the cache starts over.
const MAX_CACHED: usize = 100_000;
/// JIDs one list (`always`, `never`) may hold.
const MAX_JIDS: usize = 1_000;

#[derive(Default)]
pub struct PrefsCache {
    cached: DashMap<BareJid, Arc<ArchivePrefs>>,
}

impl PrefsCache {
    /// An account's preferences, its own or the server's default.
    pub async fn get(&self, ctx: &Ctx, account: &BareJid) -> Arc<ArchivePrefs> {
        if let Some(prefs) = self.cached.get(account) {
            return prefs.clone();
        }
        let prefs = match ctx.server.store.archive_prefs(account.as_str()).await {
            Ok(Some(prefs)) => prefs,
            Ok(None) => server_default(ctx),
            Err(e) => {
                // Not cached: the next message asks the store again.
                tracing::warn!(error = %e, "mam: cannot read archiving preferences");
                return Arc::new(server_default(ctx));
            }
        };
        let prefs = Arc::new(prefs);
        if self.cached.len() >= MAX_CACHED {
            self.cached.clear();
        }
        self.cached.insert(account.clone(), prefs.clone());
        prefs
    }

    pub fn forget(&self, account: &BareJid) {
        self.cached.remove(account);
    }

    /// Whether `account` archives its conversation with `contact` (§6.1: a JID listed
    /// `never` wins over `always`, and both over the default).
    pub async fn archives(&self, ctx: &Ctx, account: &BareJid, contact: &Jid) -> bool {
        let prefs = self.get(ctx, account).await;
        let bare = contact.bare();
        let listed = |list: &[String]| {
            list.iter()
                .any(|j| j == bare.as_str() || j == contact.as_str())
        };
        if listed(&prefs.never) {
            return false;
        }
        if listed(&prefs.always) {
            return true;
        }
        match prefs.default.as_str() {
            "always" => true,
            "roster" => in_roster(ctx, account, &bare).await,
            _ => false,
        }
    }

    /// §6.1: the preferences as a `<prefs/>` element.
    pub async fn get_element(&self, ctx: &Ctx, account: &BareJid) -> IqResult {
        Ok(Some(to_element(&*self.get(ctx, account).await)))
    }

    /// §6.1: replaces the preferences; answers with them as stored.
    pub async fn set_element(&self, ctx: &Ctx, account: &BareJid, payload: &Element) -> IqResult {
        let prefs = parse(payload)?;
        ctx.server
            .store
            .set_archive_prefs(account.as_str(), &prefs)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "mam: cannot store archiving preferences");
                StanzaError::internal_server_error()
            })?;
        let element = to_element(&prefs);
        self.cached.insert(account.clone(), Arc::new(prefs));
        Ok(Some(element))
    }
}

fn server_default(ctx: &Ctx) -> ArchivePrefs {
    ArchivePrefs {
        default: ctx.server.config.mam.default.as_str().to_string(),
        always: Vec::new(),
        never: Vec::new(),
    }
}

/// Whether `contact` is in `account`'s roster (§6.1 `roster`), whatever the subscription.
async fn in_roster(ctx: &Ctx, account: &BareJid, contact: &BareJid) -> bool {
    let (username, domain) = Ctx::key(account);
    match ctx
        .server
        .store
        .roster_item(username, domain, contact.as_str())
        .await
    {
        Ok(item) => item.is_some_and(|i| i.in_roster),
        Err(e) => {
            tracing::warn!(error = %e, "mam: cannot read the roster");
            false
        }
    }
}

/// Reads a `<prefs/>` set: a known default, and JIDs (normalized) in `always` and `never`.
pub fn parse(prefs: &Element) -> Result<ArchivePrefs, StanzaError> {
    let default = match prefs.attr("default") {
        Some(d @ ("always" | "never" | "roster")) => d.to_string(),
        _ => {
            return Err(
                StanzaError::bad_request().with_text("default must be always, never or roster")
            );
        }
    };
    let list = |name: &str| -> Result<Vec<String>, StanzaError> {
        let mut jids = Vec::new();
        for list in prefs.children().filter(|c| c.is(name, ns::MAM)) {
            for jid in list.children().filter(|c| c.is("jid", ns::MAM)) {
                let jid = Jid::new(jid.text().trim())
                    .map_err(|_| StanzaError::jid_malformed())?
                    .to_string();
                if !jids.contains(&jid) {
                    jids.push(jid);
                }
            }
        }
        if jids.len() > MAX_JIDS {
            return Err(StanzaError::not_acceptable().with_text("too many JIDs in one list"));
        }
        Ok(jids)
    };
    Ok(ArchivePrefs {
        default,
        always: list("always")?,
        never: list("never")?,
    })
}

pub fn to_element(prefs: &ArchivePrefs) -> Element {
    let list = |name: &str, jids: &[String]| {
        let mut el = Element::new(name, ns::MAM);
        for jid in jids {
            el.append_child(Element::new("jid", ns::MAM).with_text(jid.as_str()));
        }
        el
    };
    Element::new("prefs", ns::MAM)
        .with_attr("default", prefs.default.as_str())
        .with_child(list("always", &prefs.always))
        .with_child(list("never", &prefs.never))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefs_round_trip_normalized_and_deduplicated() {
        let set = Element::new("prefs", ns::MAM)
            .with_attr("default", "roster")
            .with_child(
                Element::new("always", ns::MAM)
                    .with_child(Element::new("jid", ns::MAM).with_text("Romeo@Montague.lit"))
                    .with_child(Element::new("jid", ns::MAM).with_text("romeo@montague.lit")),
            )
            .with_child(
                Element::new("never", ns::MAM)
                    .with_child(Element::new("jid", ns::MAM).with_text("tybalt@capulet.lit/x")),
            );
        let prefs = parse(&set).unwrap();
        assert_eq!(prefs.always, ["romeo@montague.lit"]);
        assert_eq!(prefs.never, ["tybalt@capulet.lit/x"]);
        assert_eq!(parse(&to_element(&prefs)).unwrap(), prefs);
    }

    #[test]
    fn bad_defaults_and_jids_are_refused() {
        let prefs = Element::new("prefs", ns::MAM).with_attr("default", "sometimes");
        assert_eq!(parse(&prefs).unwrap_err().condition, "bad-request");
        let prefs = Element::new("prefs", ns::MAM)
            .with_attr("default", "always")
            .with_child(
                Element::new("never", ns::MAM)
                    .with_child(Element::new("jid", ns::MAM).with_text("@@")),
            );
        assert_eq!(parse(&prefs).unwrap_err().condition, "jid-malformed");
    }
}
