//! XEP-0012 Last Activity: the server's uptime, and for an account, how long ago its last
//! resource went offline (to the account itself and to contacts with a subscription).

use corvid_proto::Bare;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use corvid_proto::{Iq, IqType, StanzaError, ns};
use corvid_store::{LastActivity as _, Rosters as _};
use corvid_xml::Element;

use crate::module::{Ctx, Direction, Flow, IqResult, Module, SessionEvent};

pub struct Last;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn query(seconds: i64, status: &str) -> Element {
    let mut q = Element::new("query", ns::LAST).with_attr("seconds", seconds.max(0).to_string());
    if !status.is_empty() {
        q.append_text(status);
    }
    q
}

#[async_trait]
impl Module for Last {
    fn name(&self) -> &'static str {
        "last"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::LAST]
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::LAST]
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        if iq.kind != IqType::Get {
            return Err(StanzaError::bad_request());
        }
        if iq.to.node().is_none() {
            // XEP-0012 §5: for a server, the time since it started.
            return Ok(Some(query(
                ctx.server.started.elapsed().as_secs() as i64,
                "",
            )));
        }
        let user = iq.to.bare();
        let requester = iq.from.bare();
        let (username, domain) = Ctx::key(&user);
        let store = &ctx.server.store;
        let failed = |e: corvid_store::StoreError| {
            tracing::warn!(error = %e, "last activity lookup failed");
            StanzaError::internal_server_error()
        };
        if requester != user {
            // XEP-0012 §4: only those allowed to see the user's presence.
            let item = store
                .roster_item(username, domain, requester.as_str())
                .await
                .map_err(failed)?;
            if !item.is_some_and(|i| i.subscription.has_from()) {
                return Err(StanzaError::forbidden());
            }
        }
        if ctx.server.sessions.is_available(&user) {
            return Ok(Some(query(0, "")));
        }
        match store.last_logout(username, domain).await.map_err(failed)? {
            Some((at, status)) => Ok(Some(query(now_secs() - at, &status))),
            None => Err(StanzaError::item_not_found()),
        }
    }

    async fn on_presence(&self, ctx: &Ctx, pres: &mut Element, dir: Direction) -> Flow {
        // An explicit unavailable carries the status XEP-0012 §4 reports.
        if dir == Direction::FromClient
            && pres.attr("to").is_none()
            && pres.attr("type") == Some("unavailable")
            && let Some(Ok(from)) = pres
                .attr("from")
                .map(|f| f.parse::<corvid_proto::FullJid>())
        {
            let status = pres
                .get_child("status", ns::CLIENT)
                .map(|s| s.text())
                .unwrap_or_default();
            record_logout(ctx, &from, &status).await;
        }
        Flow::Continue
    }

    async fn on_session(&self, ctx: &Ctx, event: &SessionEvent) {
        // A connection lost while available is a logout too (one that said unavailable
        // was recorded then, with its status).
        if let SessionEvent::Closed { jid, last, .. } = event
            && last.available
        {
            record_logout(ctx, jid, "").await;
        }
    }
}

/// Records the logout when `jid` was the account's last available resource.
async fn record_logout(ctx: &Ctx, jid: &corvid_proto::FullJid, status: &str) {
    let user = jid.bare();
    if ctx
        .server
        .sessions
        .resources_where(&user, |s| s.available)
        .iter()
        .any(|r| r != jid)
    {
        return;
    }
    let (username, domain) = Ctx::key(&user);
    match ctx
        .server
        .store
        .set_last_logout(username, domain, now_secs(), status)
        .await
    {
        // The account was just removed.
        Ok(()) | Err(corvid_store::StoreError::NotFound) => {}
        Err(e) => tracing::warn!(error = %e, "recording last activity failed"),
    }
}
