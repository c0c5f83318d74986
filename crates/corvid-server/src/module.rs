//! The module interface: every XEP is a module; the core knows none of them by name.
//!
//! A module declares the disco features it implements and the IQ namespaces it answers,
//! and may hook messages, presence and session events. [`ModuleRegistry`] dispatches IQs
//! by payload namespace and runs the hooks in registration order.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use corvid_proto::{FullJid, Iq, StanzaError};
use corvid_xml::Element;

use crate::server::Server;

/// Reply to an IQ request: a result with an optional payload, or a stanza error.
pub type IqResult = Result<Option<Element>, StanzaError>;

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
    /// About to be delivered to a local client.
    ToClient,
}

/// Session lifecycle events.
#[derive(Clone, Debug)]
pub enum SessionEvent {
    Bound(FullJid),
    Closed(FullJid),
}

/// What a module can reach: the whole server (router, sessions, store, config).
#[derive(Clone)]
pub struct Ctx {
    pub server: Arc<Server>,
}

impl Ctx {
    /// Routes a stanza as if it came from the server itself.
    pub async fn route(&self, stanza: Element) {
        crate::router::route(&self.server, stanza).await;
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

    async fn on_session(&self, _ctx: &Ctx, _event: &SessionEvent) {}
}

/// The enabled modules, indexed by IQ namespace.
pub struct ModuleRegistry {
    modules: Vec<Arc<dyn Module>>,
    by_namespace: HashMap<&'static str, Arc<dyn Module>>,
}

impl ModuleRegistry {
    pub fn new(modules: Vec<Arc<dyn Module>>) -> Self {
        let mut by_namespace = HashMap::new();
        for module in &modules {
            for ns in module.iq_namespaces() {
                by_namespace.insert(*ns, module.clone());
            }
        }
        ModuleRegistry { modules, by_namespace }
    }

    pub fn for_namespace(&self, ns: &str) -> Option<&Arc<dyn Module>> {
        self.by_namespace.get(ns)
    }

    /// Every feature of every enabled module, sorted and deduplicated.
    pub fn features(&self) -> Vec<&'static str> {
        let mut features: Vec<_> = self.modules.iter().flat_map(|m| m.features().iter().copied()).collect();
        features.sort_unstable();
        features.dedup();
        features
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.modules.iter().map(|m| m.name()).collect()
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

    pub async fn on_session(&self, ctx: &Ctx, event: &SessionEvent) {
        for module in &self.modules {
            module.on_session(ctx, event).await;
        }
    }
}
