//! XEP-0191 Blocking Command: block, unblock, list. Blocked entities get nothing from the
//! account and reach nothing of it: their messages and IQ requests are answered
//! `service-unavailable` (§3.5), their presence dropped, and they see the account offline.

use corvid_proto::Bare;
use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use corvid_proto::{BareJid, Iq, IqType, Jid, StanzaError, ns};
use corvid_store::Blocklists as _;
use corvid_xml::Element;
use dashmap::DashMap;

use crate::module::{Ctx, Direction, Flow, IqResult, Module, SessionEvent};

#[derive(Default)]
pub struct Blocking {
    /// Blocklists of accounts with a bound session (every hooked stanza consults one),
    /// dropped at the account's last logout. Others are read from the store each time: a
    /// client naming made-up accounts must not grow this map.
    lists: DashMap<BareJid, Arc<HashSet<String>>>,
}

#[async_trait]
impl Module for Blocking {
    fn name(&self) -> &'static str {
        "blocking"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::BLOCKING]
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::BLOCKING]
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        let user = iq.from.bare();
        if iq.to.node().is_some() && iq.to.bare() != user {
            return Err(StanzaError::forbidden());
        }
        match (iq.kind, iq.payload.name()) {
            (IqType::Get, "blocklist") => {
                if let Ok(from) = iq.from.clone().try_into_full() {
                    ctx.server.sessions.update(&from, |s| s.blocklist = true);
                }
                let list = self.list(ctx, &user).await?;
                let mut sorted: Vec<&String> = list.iter().collect();
                sorted.sort();
                let mut el = Element::new("blocklist", ns::BLOCKING);
                for jid in sorted {
                    el.append_child(
                        Element::new("item", ns::BLOCKING).with_attr("jid", jid.as_str()),
                    );
                }
                Ok(Some(el))
            }
            (IqType::Set, "block") => self.block(ctx, &user, &iq.payload).await.map(|_| None),
            (IqType::Set, "unblock") => self.unblock(ctx, &user, &iq.payload).await.map(|_| None),
            _ => Err(StanzaError::bad_request()),
        }
    }

    async fn on_message(&self, ctx: &Ctx, msg: &mut Element, dir: Direction) -> Flow {
        self.filter(ctx, msg, dir, true).await
    }

    async fn on_presence(&self, ctx: &Ctx, pres: &mut Element, dir: Direction) -> Flow {
        self.filter(ctx, pres, dir, false).await
    }

    async fn on_iq(&self, ctx: &Ctx, iq: &mut Element, dir: Direction) -> Flow {
        self.filter(ctx, iq, dir, true).await
    }

    async fn on_session(&self, ctx: &Ctx, event: &SessionEvent) {
        if let SessionEvent::Closed { jid, .. } = event {
            let user = jid.bare();
            if ctx.server.sessions.resources(&user).is_empty() {
                self.lists.remove(&user);
            }
        }
    }

    /// Another node changed a blocklist: the copy here is read again when next needed.
    async fn on_store_change(&self, _ctx: &Ctx, change: &corvid_store::StoreChange) {
        if let corvid_store::StoreChange::Blocklist { username, domain } = change
            && let Ok(user) = BareJid::new(&format!("{username}@{domain}"))
        {
            self.lists.remove(&user);
        }
    }

    /// As `filter` does for a presence to a client: withheld when either side blocked the other.
    async fn on_broadcast(&self, ctx: &Ctx, from: &Jid, to: &BareJid) -> Flow {
        let (from, to) = (from.clone(), Jid::from(to.clone()));
        if from.bare() != to.bare()
            && (self.is_blocked_by(ctx, &to.bare(), &from).await
                || self.is_blocked_by(ctx, &from.bare(), &to).await)
        {
            return Flow::Handled;
        }
        Flow::Continue
    }
}

fn storage_error(e: corvid_store::StoreError) -> StanzaError {
    tracing::warn!(error = %e, "blocklist storage failed");
    StanzaError::internal_server_error()
}

/// The JIDs named by `<item jid=…/>` children, normalized.
fn items(payload: &Element) -> Result<Vec<String>, StanzaError> {
    payload
        .children()
        .filter(|c| c.is("item", ns::BLOCKING))
        .map(|c| {
            c.attr("jid")
                .and_then(|j| Jid::new(j).ok())
                .map(|j| j.to_string())
                .ok_or_else(StanzaError::jid_malformed)
        })
        .collect()
}

/// XEP-0191 §3.4: a JID is blocked by its own entry, its bare JID's or its domain's.
fn blocks(list: &HashSet<String>, jid: &Jid) -> bool {
    list.contains(jid.as_str())
        || list.contains(jid.bare().as_str())
        || list.contains(jid.domain().as_str())
}

impl Blocking {
    async fn list(&self, ctx: &Ctx, user: &BareJid) -> Result<Arc<HashSet<String>>, StanzaError> {
        if let Some(list) = self.lists.get(user) {
            return Ok(list.clone());
        }
        let (username, domain) = Ctx::key(user);
        let list: Arc<HashSet<String>> = Arc::new(
            ctx.server
                .store
                .blocklist(username, domain)
                .await
                .map_err(storage_error)?
                .into_iter()
                .collect(),
        );
        if !ctx.server.sessions.resources(user).is_empty() {
            self.lists.insert(user.clone(), list.clone());
        }
        Ok(list)
    }

    async fn block(&self, ctx: &Ctx, user: &BareJid, payload: &Element) -> Result<(), StanzaError> {
        let jids = items(payload)?;
        if jids.is_empty() {
            return Err(StanzaError::bad_request());
        }
        // XEP-0191 §3.3: the blocked contacts now see us as offline. Sent before the block
        // takes effect, since afterwards nothing of ours reaches them.
        for jid in &jids {
            for resource in ctx.server.sessions.resources_where(user, |s| s.available) {
                let unavailable = Element::new("presence", ns::CLIENT)
                    .with_attr("type", "unavailable")
                    .with_attr("from", resource.as_str())
                    .with_attr("to", jid.as_str());
                ctx.route(unavailable).await;
            }
        }
        let (username, domain) = Ctx::key(user);
        ctx.server
            .store
            .block(username, domain, &jids)
            .await
            .map_err(storage_error)?;
        self.lists.remove(user);
        push(ctx, user, payload.clone());
        Ok(())
    }

    async fn unblock(
        &self,
        ctx: &Ctx,
        user: &BareJid,
        payload: &Element,
    ) -> Result<(), StanzaError> {
        let jids = items(payload)?;
        let (username, domain) = Ctx::key(user);
        let store = &ctx.server.store;
        let unblocked: Vec<String> = if jids.is_empty() {
            let all = store
                .blocklist(username, domain)
                .await
                .map_err(storage_error)?;
            store
                .unblock_all(username, domain)
                .await
                .map_err(storage_error)?;
            all
        } else {
            store
                .unblock(username, domain, &jids)
                .await
                .map_err(storage_error)?;
            jids
        };
        self.lists.remove(user);
        // XEP-0191 §3.4: contacts that may see our presence get it again.
        for jid in unblocked.iter().filter_map(|j| BareJid::new(j).ok()) {
            super::presence::send_presence_action(
                ctx,
                user,
                &jid,
                super::subscription::PresenceAction::Available,
            )
            .await;
        }
        push(ctx, user, payload.clone());
        Ok(())
    }

    async fn filter(
        &self,
        ctx: &Ctx,
        stanza: &Element,
        dir: Direction,
        bounce_requests: bool,
    ) -> Flow {
        let (Some(Ok(from)), Some(Ok(to))) = (
            stanza.attr("from").map(Jid::new),
            stanza.attr("to").map(Jid::new),
        ) else {
            return Flow::Continue;
        };
        if corvid_proto::same_bare(&from, &to) {
            return Flow::Continue;
        }
        let is_error = stanza.attr("type") == Some("error");
        match dir {
            // XEP-0191 §3.5: a client sending to an entity it blocked gets <blocked/>.
            Direction::FromClient => {
                if !self.is_blocked_by(ctx, &from.bare(), &to).await {
                    return Flow::Continue;
                }
                if bounce_requests && !is_error {
                    // XEP-0191 §3.5 Example 9: cancel/not-acceptable plus <blocked/>.
                    let refused = StanzaError {
                        kind: corvid_proto::ErrorType::Cancel,
                        ..StanzaError::not_acceptable()
                    };
                    let mut reply = corvid_proto::stanza::error_reply(stanza, &refused);
                    if let Some(e) = reply.get_child_mut("error", ns::CLIENT) {
                        e.append_child(Element::new("blocked", ns::BLOCKING_ERRORS));
                    }
                    // Straight to the sender: routing it would meet the same block.
                    if let Ok(sender) = from.clone().try_into_full() {
                        ctx.deliver_to(&sender, &reply);
                    }
                }
                Flow::Handled
            }
            // Nothing reaches an account from an entity it blocked (§3.4), nor from the
            // account's side to an entity it blocked — the server's own broadcasts and probe
            // answers included, so the blocked entity sees the account offline (§3.3).
            Direction::ToClient => {
                let blocked_by_recipient = self.is_blocked_by(ctx, &to.bare(), &from).await;
                let blocked_by_sender =
                    !blocked_by_recipient && self.is_blocked_by(ctx, &from.bare(), &to).await;
                if !blocked_by_recipient && !blocked_by_sender {
                    return Flow::Continue;
                }
                // XEP-0191 §3.5: messages and IQs from a blocked entity are answered with
                // service-unavailable, presence is dropped.
                if blocked_by_recipient
                    && matches!(stanza.name(), "iq" | "message")
                    && corvid_proto::stanza::may_bounce(stanza)
                {
                    // Answered as if no one were there; delivered directly, since routing it
                    // from the blocking account would meet the block again.
                    let reply = corvid_proto::stanza::error_reply(
                        stanza,
                        &StanzaError::service_unavailable(),
                    );
                    match from.clone().try_into_full() {
                        Ok(sender) if ctx.server.config.serves(sender.domain().as_str()) => {
                            ctx.deliver_to(&sender, &reply)
                        }
                        _ => ctx.route(reply).await,
                    }
                }
                Flow::Handled
            }
            Direction::ToServer => Flow::Continue,
        }
    }

    /// Whether local account `owner` blocks `other`.
    async fn is_blocked_by(&self, ctx: &Ctx, owner: &BareJid, other: &Jid) -> bool {
        if owner.node().is_none() || !ctx.server.config.serves(owner.domain().as_str()) {
            return false;
        }
        match self.list(ctx, owner).await {
            Ok(list) => !list.is_empty() && blocks(&list, other),
            Err(_) => false,
        }
    }
}

/// XEP-0191 §3.3: the change goes to every resource that asked for the blocklist.
fn push(ctx: &Ctx, user: &BareJid, payload: Element) {
    for resource in ctx.server.sessions.resources_where(user, |s| s.blocklist) {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("block-push-{}", crate::random_id()))
            .with_attr("to", resource.as_str())
            .with_child(payload.clone());
        ctx.deliver_to(&resource, &iq);
    }
}
