//! XEP-0313 Message Archive Management (`urn:xmpp:mam:2` and `#extended`): every account's
//! one-to-one messages, and the groupchat of rooms that enable archiving, kept in the
//! store's archives ([`corvid_store::Archive`]) and paged back to clients.
//!
//! - `archiving.rs`: which messages go into which archive, under which id;
//! - `prefs.rs`: the archiving preferences (§6) and their cache;
//! - `query.rs`: queries (§4), their form and RSM paging, and the result messages;
//! - `muc.rs`: room archives (what the MUC module hands over);
//! - `upkeep.rs`: retention and per-archive quota.
//!
//! Appending only queues a message for the store's group committer, so archiving never
//! waits for the disk while a stanza is being routed; stream management waits for
//! durability itself (`archive_sync`) before it acknowledges.

mod archiving;
pub mod muc;
mod prefs;
mod query;
mod upkeep;

use std::sync::OnceLock;

use async_trait::async_trait;
use corvid_proto::{Bare, Iq, IqType, StanzaError, ns};
use corvid_xml::Element;

use crate::module::{Ctx, Direction, Flow, IqResult, Module, SessionEvent};

#[derive(Default)]
pub struct Mam {
    prefs: prefs::PrefsCache,
    quota: upkeep::QuotaCounter,
    /// The retention task, started with the first session.
    retention: OnceLock<()>,
}

const FEATURES: &[&str] = &[ns::MAM, ns::MAM_EXTENDED];

#[async_trait]
impl Module for Mam {
    fn name(&self) -> &'static str {
        "mam"
    }

    fn features(&self) -> &[&'static str] {
        FEATURES
    }

    fn account_features(&self) -> &[&'static str] {
        FEATURES
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::MAM]
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        let Ok(requester) = iq.from.clone().try_into_full() else {
            return Err(StanzaError::bad_request());
        };
        let archive = requester.bare();
        // §4.1: a user's archive is the user's alone.
        if iq.to.node().is_some() && iq.to.bare() != archive {
            return Err(StanzaError::forbidden().with_text("this archive is not yours"));
        }
        match (iq.kind, iq.payload.name()) {
            (IqType::Get, "query") => Ok(Some(query::fields_form())),
            (IqType::Set, "query") => {
                let reader = query::Reader::Owner;
                query::run(ctx, archive.as_str(), &requester, reader, &iq.payload).await
            }
            (IqType::Get, "metadata") => query::metadata(ctx, archive.as_str()).await,
            (IqType::Get, "prefs") => self.prefs.get_element(ctx, &archive).await,
            (IqType::Set, "prefs") => self.prefs.set_element(ctx, &archive, &iq.payload).await,
            _ => Err(StanzaError::bad_request()),
        }
    }

    async fn on_message(&self, ctx: &Ctx, msg: &mut Element, dir: Direction) -> Flow {
        let entry = match dir {
            Direction::FromClient => archiving::sender_copy(ctx, &self.prefs, msg).await,
            Direction::ToClient => archiving::recipient_copy(ctx, &self.prefs, msg).await,
            Direction::ToServer => None,
        };
        if let Some(entry) = entry {
            upkeep::append(ctx, &self.quota, entry).await;
        }
        Flow::Continue
    }

    async fn on_session(&self, ctx: &Ctx, event: &SessionEvent) {
        if let SessionEvent::Bound { jid, .. } = event {
            self.retention
                .get_or_init(|| upkeep::start_retention(ctx.server.clone()));
            // Read afresh at each login: the account may have been deleted and made again
            // (`corvid user`, XEP-0077 cancel) since they were cached.
            self.prefs.forget(&jid.bare());
        }
    }
}
