//! The module interface: every XEP is a module; the core knows none of them by name.
//!
//! A module declares the disco features it implements and the IQ namespaces it answers,
//! and may hook messages, presence and session events, or own a service domain (MUC's
//! `conference.example.org`) whose every stanza the router hands to it. [`ModuleRegistry`]
//! dispatches IQs by payload namespace and runs the hooks in registration order.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use corvid_proto::{BareJid, FullJid, Iq, Jid, StanzaError};
use corvid_store::StoredItem;
use corvid_xml::Element;

use crate::config::Config;
use crate::server::Server;
use crate::sessions::{OutboundFilter, Queued, ResourceState, SessionId};

/// Reply to an IQ request: a result with an optional payload, or a stanza error.
pub type IqResult = Result<Option<Element>, StanzaError>;

/// For queries only the server itself answers (its version, its time): a `get` addressed
/// to the server; an account's bare JID is the account's business, not ours.
pub fn server_get(iq: &Iq) -> Result<(), StanzaError> {
    if iq.to.node().is_some() {
        return Err(StanzaError::service_unavailable());
    }
    if iq.kind != corvid_proto::IqType::Get {
        return Err(StanzaError::bad_request());
    }
    Ok(())
}

/// Whether a hook let the stanza continue through the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Handled,
}

/// Where a hooked stanza is going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent by a local client, before routing.
    FromClient,
    /// About to be delivered to a local account (full or bare JID).
    ToClient,
    /// Addressed to the server's own domain.
    ToServer,
}

/// Session lifecycle events. Each names the session by id as well as by full JID: a new
/// login may replace a session on the same full JID, and an event about the old one must
/// not act on the new one.
#[derive(Clone, Debug)]
pub enum SessionEvent {
    Bound {
        jid: FullJid,
        id: SessionId,
    },
    /// The resource sent its initial presence (RFC 6121 §4.2): time for offline messages.
    Available {
        jid: FullJid,
        id: SessionId,
    },
    /// The session ended or was replaced, and is no longer bound; `last` is its final
    /// state (its presence, directed presences, flags). Sent once per session.
    Closed {
        jid: FullJid,
        id: SessionId,
        last: ResourceState,
    },
    /// A session bound on another node of the cluster ended (or its node died): what this
    /// node holds of it (its places in rooms run here, its capabilities) goes. The node it
    /// ran on, or the node that noticed it died, sends the `Closed` event.
    Gone {
        jid: FullJid,
    },
}

/// What a module can reach: the whole server (router, sessions, store, config).
#[derive(Clone)]
pub struct Ctx {
    pub server: Arc<Server>,
}

impl Ctx {
    /// Routes a stanza whose `from` is already right (the server's, or a user's it vouches for).
    pub async fn route(&self, stanza: Element) {
        crate::router::route(&self.server, stanza).await;
    }

    /// Routes a stanza as if the client `from` had sent it (running the client-side hooks).
    pub async fn route_from_client(&self, stanza: Element) {
        crate::router::route_from_client(&self.server, stanza).await;
    }

    /// Sends a stanza straight to one bound resource, bypassing the hooks.
    pub fn deliver_to(&self, to: &FullJid, stanza: &Element) {
        let _ = crate::router::deliver_to_full(&self.server, to, Queued::of(stanza));
    }

    /// The (username, domain) store key of an account.
    pub fn key(user: &BareJid) -> (&str, &str) {
        (
            user.node().map(|n| n.as_str()).unwrap_or_default(),
            user.domain().as_str(),
        )
    }
}

#[async_trait]
pub trait Module: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// disco#info features this module adds (only what works).
    fn features(&self) -> &[&'static str] {
        &[]
    }

    /// IQ payload namespaces this module answers.
    fn iq_namespaces(&self) -> &[&'static str] {
        &[]
    }

    /// Answers an IQ whose payload is in one of `iq_namespaces`, addressed to the server
    /// or to a local account's bare JID (the server answers on the account's behalf).
    async fn handle_iq(&self, _ctx: &Ctx, _iq: Iq) -> IqResult {
        Err(StanzaError::service_unavailable())
    }

    async fn on_message(&self, _ctx: &Ctx, _msg: &mut Element, _dir: Direction) -> Flow {
        Flow::Continue
    }

    async fn on_presence(&self, _ctx: &Ctx, _pres: &mut Element, _dir: Direction) -> Flow {
        Flow::Continue
    }

    /// A broadcast of `from` — its presence (RFC 6121 §4.2.2, §4.4.2) or a PEP notification
    /// (XEP-0163) — is about to reach the local contact `to`. It is serialized once for all
    /// contacts, so it skips the `ToClient` hooks: a module whose hook would withhold it
    /// returns `Handled` here.
    async fn on_broadcast(&self, _ctx: &Ctx, _from: &Jid, _to: &BareJid) -> Flow {
        Flow::Continue
    }

    /// IQs between clients (never those the server answers itself).
    async fn on_iq(&self, _ctx: &Ctx, _iq: &mut Element, _dir: Direction) -> Flow {
        Flow::Continue
    }

    /// A message for a local account that no resource could take (RFC 6121 §8.5.2.2.1):
    /// store it, or let it continue to be bounced.
    async fn on_undeliverable(&self, _ctx: &Ctx, _msg: &Element, _to: &BareJid) -> Flow {
        Flow::Continue
    }

    /// A message was delivered to these resources of `to`.
    async fn on_delivered(
        &self,
        _ctx: &Ctx,
        _msg: &Element,
        _to: &BareJid,
        _delivered: &[FullJid],
    ) {
    }

    async fn on_session(&self, _ctx: &Ctx, _event: &SessionEvent) {}

    /// Another node of the cluster changed stored data this module may keep a copy of.
    async fn on_store_change(&self, _ctx: &Ctx, _change: &corvid_store::StoreChange) {}

    /// A message for `to` waits for a client to come back (what XEP-0357 push wakes a
    /// device for): stored offline (`session` is `None`), or held for `session`, whose
    /// connection dropped and which waits to be resumed (XEP-0198).
    async fn on_message_waiting(
        &self,
        _ctx: &Ctx,
        _to: &BareJid,
        _session: Option<SessionId>,
        _msg: &Element,
    ) {
    }

    /// Stream features offered once the client has authenticated (RFC 6120 §4.3.2).
    fn stream_features(&self, _server: &Server) -> Vec<Element> {
        Vec::new()
    }

    /// Domains this module serves as a service of its own (a MUC service such as
    /// `conference.example.org`): the router hands it every stanza addressed there.
    fn service_domains(&self, _config: &Config) -> Vec<String> {
        Vec::new()
    }

    /// A stanza (any kind, `from` trustworthy) addressed to one of `service_domains`.
    async fn handle_service_stanza(&self, _ctx: &Ctx, _stanza: Element) {}

    /// A filter to see (and perhaps withhold) every stanza queued for any session.
    fn outbound_filter(&self) -> Option<Arc<dyn OutboundFilter>> {
        None
    }

    /// The rooms this module hosts, for operators (the admin API), if it hosts any.
    fn room_service(&self) -> Option<&dyn RoomService> {
        None
    }

    /// disco#info identities (category, type) this module adds to every local account's
    /// bare JID (XEP-0030 §3.1; PEP's `pubsub/pep`, XEP-0163 §1).
    fn account_identities(&self) -> &[(&'static str, &'static str)] {
        &[]
    }

    /// disco#info features this module adds to every local account's bare JID.
    fn account_features(&self) -> &[&'static str] {
        &[]
    }

    /// disco#items of a local account that this module contributes, as `requester` may
    /// see them (PEP nodes, XEP-0163 §6).
    async fn account_items(
        &self,
        _ctx: &Ctx,
        _account: &BareJid,
        _requester: &Jid,
    ) -> Vec<Element> {
        Vec::new()
    }

    /// A disco#info or #items query on a node of a local account: `Some` if the node is
    /// this module's.
    async fn account_node_disco(&self, _ctx: &Ctx, _iq: &Iq) -> Option<IqResult> {
        None
    }

    /// An item was published to (or retracted from) a node of `owner`'s PEP service by a
    /// client — the hook through which vCard avatars and legacy bookmarks follow PEP.
    async fn on_pep_published(
        &self,
        _ctx: &Ctx,
        _owner: &BareJid,
        _node: &str,
        _item: &StoredItem,
    ) {
    }

    async fn on_pep_retracted(&self, _ctx: &Ctx, _owner: &BareJid, _node: &str, _id: &str) {}

    /// A client stored an element in its private XML storage (XEP-0049).
    async fn on_private_stored(&self, _ctx: &Ctx, _owner: &BareJid, _data: &Element) {}
}

/// What an operator sees of a room, whatever service hosts it.
#[derive(Clone, Debug)]
pub struct RoomSummary {
    pub jid: BareJid,
    pub name: String,
    pub occupants: usize,
    pub persistent: bool,
    pub public: bool,
}

/// A service hosting rooms (MUC), as operators manage it.
#[async_trait]
pub trait RoomService: Send + Sync {
    /// Every room, sorted by JID.
    async fn list_rooms(&self, ctx: &Ctx) -> Vec<RoomSummary>;
    /// Destroys a room as its owner would (its occupants are told, with `reason`); false
    /// when there is no such room.
    async fn destroy_room(&self, ctx: &Ctx, room: &BareJid, reason: Option<&str>) -> bool;
}

/// The enabled modules, indexed by IQ namespace.
pub struct ModuleRegistry {
    modules: Vec<Arc<dyn Module>>,
    by_namespace: HashMap<&'static str, Arc<dyn Module>>,
    by_service_domain: HashMap<String, Arc<dyn Module>>,
}

/// Two enabled modules claim the same thing: the server refuses to start rather than let
/// one silently shadow the other.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("modules {first} and {second} both answer IQ namespace {namespace}")]
    NamespaceTaken {
        namespace: &'static str,
        first: &'static str,
        second: &'static str,
    },
    #[error("modules {first} and {second} both serve domain {domain}")]
    DomainTaken {
        domain: String,
        first: &'static str,
        second: &'static str,
    },
}

impl ModuleRegistry {
    pub fn new(modules: Vec<Arc<dyn Module>>, config: &Config) -> Result<Self, RegistryError> {
        let mut by_namespace: HashMap<&'static str, Arc<dyn Module>> = HashMap::new();
        let mut by_service_domain: HashMap<String, Arc<dyn Module>> = HashMap::new();
        for module in &modules {
            for ns in module.iq_namespaces() {
                if let Some(first) = by_namespace.insert(ns, module.clone()) {
                    return Err(RegistryError::NamespaceTaken {
                        namespace: ns,
                        first: first.name(),
                        second: module.name(),
                    });
                }
            }
            for domain in module.service_domains(config) {
                if let Some(first) = by_service_domain.insert(domain.clone(), module.clone()) {
                    return Err(RegistryError::DomainTaken {
                        domain,
                        first: first.name(),
                        second: module.name(),
                    });
                }
            }
        }
        Ok(ModuleRegistry {
            modules,
            by_namespace,
            by_service_domain,
        })
    }

    /// The module owning a service domain, if any.
    pub fn for_service_domain(&self, domain: &str) -> Option<&Arc<dyn Module>> {
        self.by_service_domain.get(domain)
    }

    /// Every service domain, sorted (the server's disco#items).
    pub fn service_domains(&self) -> Vec<&str> {
        let mut domains: Vec<&str> = self.by_service_domain.keys().map(String::as_str).collect();
        domains.sort_unstable();
        domains
    }

    /// The enabled modules that host rooms.
    pub fn room_services(&self) -> impl Iterator<Item = &dyn RoomService> {
        self.modules.iter().filter_map(|m| m.room_service())
    }

    pub fn for_namespace(&self, ns: &str) -> Option<&Arc<dyn Module>> {
        self.by_namespace.get(ns)
    }

    /// Every feature of every enabled module, sorted and deduplicated.
    pub fn features(&self) -> Vec<&'static str> {
        let mut features: Vec<_> = self
            .modules
            .iter()
            .flat_map(|m| m.features().iter().copied())
            .collect();
        features.sort_unstable();
        features.dedup();
        features
    }

    pub async fn on_message(&self, ctx: &Ctx, msg: &mut Element, dir: Direction) -> Flow {
        for module in &self.modules {
            if module.on_message(ctx, msg, dir).await == Flow::Handled {
                return Flow::Handled;
            }
        }
        Flow::Continue
    }

    pub async fn on_presence(&self, ctx: &Ctx, pres: &mut Element, dir: Direction) -> Flow {
        for module in &self.modules {
            if module.on_presence(ctx, pres, dir).await == Flow::Handled {
                return Flow::Handled;
            }
        }
        Flow::Continue
    }

    pub async fn on_broadcast(&self, ctx: &Ctx, from: &Jid, to: &BareJid) -> Flow {
        for module in &self.modules {
            if module.on_broadcast(ctx, from, to).await == Flow::Handled {
                return Flow::Handled;
            }
        }
        Flow::Continue
    }

    pub async fn on_iq(&self, ctx: &Ctx, iq: &mut Element, dir: Direction) -> Flow {
        for module in &self.modules {
            if module.on_iq(ctx, iq, dir).await == Flow::Handled {
                return Flow::Handled;
            }
        }
        Flow::Continue
    }

    pub async fn on_undeliverable(&self, ctx: &Ctx, msg: &Element, to: &BareJid) -> Flow {
        for module in &self.modules {
            if module.on_undeliverable(ctx, msg, to).await == Flow::Handled {
                return Flow::Handled;
            }
        }
        Flow::Continue
    }

    pub async fn on_delivered(
        &self,
        ctx: &Ctx,
        msg: &Element,
        to: &BareJid,
        delivered: &[FullJid],
    ) {
        for module in &self.modules {
            module.on_delivered(ctx, msg, to, delivered).await;
        }
    }

    pub async fn on_session(&self, ctx: &Ctx, event: &SessionEvent) {
        for module in &self.modules {
            module.on_session(ctx, event).await;
        }
    }

    pub async fn on_store_change(&self, ctx: &Ctx, change: &corvid_store::StoreChange) {
        for module in &self.modules {
            module.on_store_change(ctx, change).await;
        }
    }

    pub async fn on_message_waiting(
        &self,
        ctx: &Ctx,
        to: &BareJid,
        session: Option<SessionId>,
        msg: &Element,
    ) {
        for module in &self.modules {
            module.on_message_waiting(ctx, to, session, msg).await;
        }
    }

    /// Identities and features of a local account's bare JID, sorted and deduplicated.
    pub fn account_info(&self) -> (Vec<(&'static str, &'static str)>, Vec<&'static str>) {
        let mut identities: Vec<_> = self
            .modules
            .iter()
            .flat_map(|m| m.account_identities().iter().copied())
            .collect();
        identities.sort_unstable();
        identities.dedup();
        let mut features: Vec<_> = self
            .modules
            .iter()
            .flat_map(|m| m.account_features().iter().copied())
            .collect();
        features.sort_unstable();
        features.dedup();
        (identities, features)
    }

    pub async fn account_items(
        &self,
        ctx: &Ctx,
        account: &BareJid,
        requester: &Jid,
    ) -> Vec<Element> {
        let mut items = Vec::new();
        for module in &self.modules {
            items.extend(module.account_items(ctx, account, requester).await);
        }
        items
    }

    pub async fn account_node_disco(&self, ctx: &Ctx, iq: &Iq) -> Option<IqResult> {
        for module in &self.modules {
            if let Some(answer) = module.account_node_disco(ctx, iq).await {
                return Some(answer);
            }
        }
        None
    }

    pub async fn on_pep_published(
        &self,
        ctx: &Ctx,
        owner: &BareJid,
        node: &str,
        item: &StoredItem,
    ) {
        for module in &self.modules {
            module.on_pep_published(ctx, owner, node, item).await;
        }
    }

    pub async fn on_pep_retracted(&self, ctx: &Ctx, owner: &BareJid, node: &str, id: &str) {
        for module in &self.modules {
            module.on_pep_retracted(ctx, owner, node, id).await;
        }
    }

    pub async fn on_private_stored(&self, ctx: &Ctx, owner: &BareJid, data: &Element) {
        for module in &self.modules {
            module.on_private_stored(ctx, owner, data).await;
        }
    }

    /// The enabled modules' outbound filters, in module order.
    pub fn outbound_filters(&self) -> Vec<Arc<dyn OutboundFilter>> {
        self.modules
            .iter()
            .filter_map(|m| m.outbound_filter())
            .collect()
    }

    pub fn stream_features(&self, server: &Server) -> Vec<Element> {
        self.modules
            .iter()
            .flat_map(|m| m.stream_features(server))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Claims(&'static str, &'static [&'static str], &'static str);

    #[async_trait]
    impl Module for Claims {
        fn name(&self) -> &'static str {
            self.0
        }
        fn iq_namespaces(&self) -> &[&'static str] {
            self.1
        }
        fn service_domains(&self, _config: &Config) -> Vec<String> {
            [self.2]
                .into_iter()
                .filter(|d| !d.is_empty())
                .map(String::from)
                .collect()
        }
    }

    fn registry(modules: Vec<Claims>) -> Result<ModuleRegistry, RegistryError> {
        let modules = modules
            .into_iter()
            .map(|m| Arc::new(m) as Arc<dyn Module>)
            .collect();
        ModuleRegistry::new(modules, &Config::default())
    }

    #[test]
    fn two_modules_answering_one_namespace_is_a_startup_error() {
        let err = registry(vec![
            Claims("pep", &["urn:x:pubsub"], ""),
            Claims("pubsub", &["urn:x:pubsub"], ""),
        ]);
        assert!(matches!(
            err,
            Err(RegistryError::NamespaceTaken {
                first: "pep",
                second: "pubsub",
                ..
            })
        ));
    }

    #[test]
    fn two_modules_serving_one_domain_is_a_startup_error() {
        let err = registry(vec![
            Claims("muc", &[], "rooms.x"),
            Claims("pubsub", &[], "rooms.x"),
        ]);
        assert!(matches!(err, Err(RegistryError::DomainTaken { .. })));
        assert!(
            registry(vec![
                Claims("muc", &["a"], "rooms.x"),
                Claims("pubsub", &["b"], "ps.x")
            ])
            .is_ok()
        );
    }

    #[test]
    fn the_built_in_modules_claim_nothing_twice() {
        let config = Config::default();
        assert!(ModuleRegistry::new(crate::modules::enabled(&config), &config).is_ok());
    }
}
