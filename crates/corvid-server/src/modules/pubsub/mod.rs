//! XEP-0060 publish-subscribe: one engine serving the service on its own domain
//! (`pubsub.<domain>`, module `pubsub`) and PEP on every account's bare JID (XEP-0163,
//! module `pep` in `pep.rs`).
//!
//! The engine keeps each service's nodes in memory ([`node::ServiceState`], loaded at first
//! use) and its items in the store. Requests are parsed and applied in `ops.rs` (entities),
//! `owner.rs` (node owners) and `items.rs` (publishing and reading); notifications go out
//! serialized once (`notify.rs`); disco lives in `disco.rs`.

mod disco;
mod errors;
mod items;
pub mod node;
pub mod node_config;
mod notify;
mod ops;
mod owner;
pub mod pep;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use corvid_proto::{BareJid, Iq, IqType, Jid, StanzaError, ns};
use corvid_store::PubSubStore;
use corvid_xml::Element;
use dashmap::DashMap;
use tokio::sync::{Mutex, OnceCell};

use crate::config::Config;
use crate::module::{Ctx, Module};
use crate::throttle::RateLimiter;
use node::{Node, ServiceKind, ServiceState};

/// The shared engine: services by store key, loaded once each.
#[derive(Default)]
pub struct Engine {
    services: DashMap<String, Arc<OnceCell<Arc<ServiceState>>>>,
    publishes: OnceLock<RateLimiter<BareJid>>,
}

/// What an operation answers, and what it sends once the answer is on its way (the last
/// item after a subscription, XEP-0060 §6.1.7).
pub struct Outcome {
    pub reply: Result<Option<Element>, StanzaError>,
    pub then: Vec<Element>,
}

impl From<Result<Option<Element>, StanzaError>> for Outcome {
    fn from(reply: Result<Option<Element>, StanzaError>) -> Self {
        Outcome {
            reply,
            then: Vec::new(),
        }
    }
}

impl Engine {
    /// The service, loaded from the store at first use.
    pub async fn service(
        &self,
        ctx: &Ctx,
        kind: ServiceKind,
    ) -> Result<Arc<ServiceState>, StanzaError> {
        let key = kind.key();
        let cell = self.services.entry(key.clone()).or_default().clone();
        cell.get_or_try_init(|| async {
            let stored = ctx
                .server
                .store
                .pubsub_nodes(&key)
                .await
                .map_err(errors::storage)?;
            let defaults = kind.default_config();
            let max_items = ctx.server.config.pubsub.max_items_per_node;
            let nodes = stored
                .iter()
                .map(|n| {
                    let node = Node::from_stored(n, &defaults, max_items);
                    (node.name.clone(), node)
                })
                .collect();
            Ok(Arc::new(ServiceState {
                kind,
                key,
                nodes: Mutex::new(nodes),
            }))
        })
        .await
        .cloned()
    }

    /// Forgets a service held in memory (its account was deleted).
    pub fn forget(&self, key: &str) {
        self.services.remove(key);
    }

    /// Forgets a service nobody is using right now (memory for accounts no one uses). One
    /// in use stays: a request holding it would otherwise change a copy the next load
    /// no longer sees.
    pub fn forget_idle(&self, key: &str) {
        self.services.remove_if(key, |_, cell| {
            Arc::strong_count(cell) == 1 && cell.get().is_none_or(|svc| Arc::strong_count(svc) == 1)
        });
    }

    /// Paces one account's publications: `Err` when it is far over its rate.
    fn admit_publish(
        &self,
        ctx: &Ctx,
        publisher: &BareJid,
    ) -> Result<std::time::Duration, StanzaError> {
        let config = &ctx.server.config.pubsub;
        let limiter = self.publishes.get_or_init(|| {
            RateLimiter::new(
                config.publishes_per_sec_per_user,
                config.publish_burst_per_user,
                std::time::Duration::from_secs(2),
            )
        });
        limiter
            .reserve(publisher.clone(), std::time::Instant::now())
            .map_err(|retry| {
                errors::resource_constraint(&format!(
                    "Publishing too fast; try again in {} s",
                    retry.as_secs().max(1)
                ))
            })
    }

    /// Publishes to `owner`'s PEP node as the owner would, with publish-options, without
    /// telling the modules that mirror PEP (they are the ones calling).
    pub async fn publish_for_owner(
        &self,
        ctx: &Ctx,
        owner: &BareJid,
        node: &str,
        item: Element,
        options: Option<Element>,
    ) -> Result<(), StanzaError> {
        let publish = Element::new("publish", ns::PUBSUB)
            .with_attr("node", node)
            .with_child(item);
        let mut payload = Element::new("pubsub", ns::PUBSUB).with_child(publish.clone());
        if let Some(options) = options {
            payload.append_child(Element::new("publish-options", ns::PUBSUB).with_child(options));
        }
        let (svc, from) = (self.pep_of(ctx, owner).await?, Jid::from(owner.clone()));
        let request = Request::quiet(ctx, &svc, &from);
        request.publish(&publish, &payload).await.map(|_| ())
    }

    async fn pep_of(&self, ctx: &Ctx, owner: &BareJid) -> Result<Arc<ServiceState>, StanzaError> {
        self.service(ctx, ServiceKind::Pep(owner.clone())).await
    }

    /// Retracts an item of `owner`'s PEP node, quietly (see [`Engine::publish_for_owner`]).
    pub async fn retract_for_owner(
        &self,
        ctx: &Ctx,
        owner: &BareJid,
        node: &str,
        id: &str,
    ) -> Result<(), StanzaError> {
        let retract = Element::new("retract", ns::PUBSUB)
            .with_attr("node", node)
            .with_attr("notify", "true")
            .with_child(Element::new("item", ns::PUBSUB).with_attr("id", id));
        let (svc, from) = (self.pep_of(ctx, owner).await?, Jid::from(owner.clone()));
        let request = Request::quiet(ctx, &svc, &from);
        request.retract(&retract).await.map(|_| ())
    }

    /// Answers one pubsub IQ addressed to a service.
    pub async fn handle(&self, ctx: &Ctx, kind: ServiceKind, iq: &Iq) -> Outcome {
        let svc = match self.service(ctx, kind).await {
            Ok(svc) => svc,
            Err(err) => return Err(err).into(),
        };
        let request = Request::new(ctx, &svc, &iq.from);
        match (iq.payload.ns(), iq.kind) {
            (ns::PUBSUB, kind) => request.entity(&iq.payload, kind).await,
            (ns::PUBSUB_OWNER, kind) => request.owner(&iq.payload, kind).await.into(),
            _ => Err(StanzaError::service_unavailable()).into(),
        }
    }
}

/// One request being answered: who asks, of which service.
pub struct Request<'a> {
    pub ctx: &'a Ctx,
    pub svc: &'a Arc<ServiceState>,
    /// The requesting entity, as it sent the request.
    pub from: &'a Jid,
    pub requester: BareJid,
    /// Made by the server on the owner's behalf (a vCard photo mirrored to PEP): the
    /// modules that mirror PEP elsewhere are not told, so nothing echoes back.
    pub quiet: bool,
}

impl<'a> Request<'a> {
    /// A request from `from` to `svc`.
    pub fn new(ctx: &'a Ctx, svc: &'a Arc<ServiceState>, from: &'a Jid) -> Self {
        Request {
            ctx,
            svc,
            from,
            requester: from.to_bare(),
            quiet: false,
        }
    }

    /// A request the server makes as the owner of `svc` (`from`, a bare JID).
    fn quiet(ctx: &'a Ctx, svc: &'a Arc<ServiceState>, from: &'a Jid) -> Self {
        Request {
            quiet: true,
            ..Request::new(ctx, svc, from)
        }
    }

    /// Whether the requester administers the service (or owns the PEP service).
    pub fn is_admin(&self) -> bool {
        match &self.svc.kind {
            ServiceKind::Pep(owner) => *owner == self.requester,
            ServiceKind::Domain(_) => self
                .ctx
                .server
                .config
                .pubsub
                .admins
                .iter()
                .any(|a| BareJid::new(a).is_ok_and(|a| a == self.requester)),
        }
    }

    fn max_items_limit(&self) -> usize {
        self.ctx.server.config.pubsub.max_items_per_node
    }
}

/// The `node` attribute of a request's element, required.
fn node_attr(el: &Element) -> Result<&str, StanzaError> {
    el.attr("node")
        .filter(|n| !n.is_empty())
        .ok_or_else(errors::nodeid_required)
}

/// The child of `<pubsub/>` that says what is asked: `<options/>`, `<configure/>`,
/// `<publish-options/>` and RSM `<set/>` ride along with another (XEP-0060 §6.3.7, §8.1.3,
/// §7.1.5), unless `<options/>` is asked alone (§6.3).
fn verb(payload: &Element) -> Option<&Element> {
    if payload.ns() == ns::PUBSUB_OWNER {
        return payload.first_child();
    }
    payload
        .children()
        .find(|c| {
            !matches!(
                c.name(),
                "options" | "configure" | "publish-options" | "set"
            )
        })
        .or_else(|| payload.children().find(|c| c.name() == "options"))
}

/// The service on its own domain; the engine is the server's (`Server::pubsub`).
pub struct PubSubService;

#[async_trait]
impl Module for PubSubService {
    /// Another node of the cluster changed a service: the copy here is loaded again.
    async fn on_store_change(&self, ctx: &Ctx, change: &corvid_store::StoreChange) {
        if let corvid_store::StoreChange::PubSub { service } = change {
            ctx.server.pubsub.forget(service);
        }
    }

    fn name(&self) -> &'static str {
        "pubsub"
    }

    fn service_domains(&self, config: &Config) -> Vec<String> {
        vec![config.pubsub_domain()]
    }

    async fn handle_service_stanza(&self, ctx: &Ctx, stanza: Element) {
        let domain = ctx.server.config.pubsub_domain();
        let Some(reply) = self.service_stanza(ctx, &domain, &stanza).await else {
            return;
        };
        let (reply, then) = reply;
        ctx.route(reply).await;
        for message in then {
            ctx.route(message).await;
        }
    }
}

impl PubSubService {
    /// The reply to a stanza sent to the service, and what follows it.
    async fn service_stanza(
        &self,
        ctx: &Ctx,
        domain: &str,
        stanza: &Element,
    ) -> Option<(Element, Vec<Element>)> {
        let server = &ctx.server;
        if stanza.name() != "iq" {
            // Messages and presence to the service mean nothing (no presence-based
            // delivery on the service); an error tells a misdirected sender.
            if stanza.name() == "message" && corvid_proto::stanza::may_bounce(stanza) {
                let err = StanzaError::service_unavailable();
                return Some((corvid_proto::stanza::error_reply(stanza, &err), Vec::new()));
            }
            return None;
        }
        let kind = IqType::parse(stanza.attr("type"));
        if !matches!(kind, Some(IqType::Get | IqType::Set)) {
            server.iq_tracker.resolve(stanza);
            return None;
        }
        let from = Jid::new(stanza.attr("from")?).ok()?;
        let to = Jid::new(stanza.attr("to")?).ok()?;
        let Some(iq) = Iq::from_element(stanza, from, to) else {
            let err = StanzaError::bad_request();
            return Some((corvid_proto::stanza::error_reply(stanza, &err), Vec::new()));
        };
        if iq.to.node().is_some() || iq.to.resource().is_some() {
            return Some((iq.error(&StanzaError::service_unavailable()), Vec::new()));
        }
        let service = ServiceKind::Domain(domain.to_string());
        let outcome = match iq.payload.ns() {
            ns::PUBSUB | ns::PUBSUB_OWNER => ctx.server.pubsub.handle(ctx, service, &iq).await,
            ns::DISCO_INFO | ns::DISCO_ITEMS => disco::answer(ctx, service, &iq).await.into(),
            ns::PING if iq.kind == IqType::Get => Ok(None).into(),
            _ => Err(StanzaError::service_unavailable()).into(),
        };
        let reply = match outcome.reply {
            Ok(payload) => iq.result(payload),
            Err(err) => iq.error(&err),
        };
        Some((reply, outcome.then))
    }
}
