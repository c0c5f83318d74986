//! The router: decides where a stamped stanza goes by its `to` address (DESIGN.md "Server
//! data flow" step 4) and applies the RFC 6121 §8 rules for local users. Modules see
//! stanzas through hooks at three points: as a client sends them (`FromClient`), as they
//! are about to reach a local account (`ToClient`), and when they address the server.

use corvid_proto::Bare;
use std::sync::Arc;

use corvid_proto::stanza::{error_reply, may_bounce};
use corvid_proto::{BareJid, FullJid, Iq, IqType, Jid, MessageType, StanzaError, StanzaKind, ns};
use corvid_xml::Element;

use crate::module::{Ctx, Direction, Flow};
use crate::server::Server;
use crate::sessions::{Delivery, Queued, StanzaClass};

/// Routes a stanza a local client sent (its `from` already stamped), after the client-side
/// hooks (carbons, blocking, presence broadcast, subscriptions …) had their say.
pub async fn route_from_client(server: &Arc<Server>, mut stanza: Element) {
    let ctx = ctx(server);
    let flow = match StanzaKind::of(&stanza, ns::CLIENT) {
        Some(StanzaKind::Message) => {
            server
                .modules
                .on_message(&ctx, &mut stanza, Direction::FromClient)
                .await
        }
        Some(StanzaKind::Presence) => {
            server
                .modules
                .on_presence(&ctx, &mut stanza, Direction::FromClient)
                .await
        }
        Some(StanzaKind::Iq) => {
            server
                .modules
                .on_iq(&ctx, &mut stanza, Direction::FromClient)
                .await
        }
        None => Flow::Continue,
    };
    if flow == Flow::Continue {
        route(server, stanza).await;
    }
}

/// Routes one stanza whose `from` is already trustworthy (stamped by the stream layer or
/// set by the server itself). Timed for `corvid_routing_duration_seconds`.
pub async fn route(server: &Arc<Server>, stanza: Element) {
    let started = std::time::Instant::now();
    route_untimed(server, stanza).await;
    server.metrics.routing.observe(started.elapsed());
}

async fn route_untimed(server: &Arc<Server>, stanza: Element) {
    let Some(kind) = StanzaKind::of(&stanza, ns::CLIENT) else {
        tracing::debug!(name = stanza.name(), "not a stanza; dropped");
        return;
    };
    let from = stanza.attr("from").and_then(|f| Jid::new(f).ok());
    let to = match stanza.attr("to").map(Jid::new) {
        None => None,
        Some(Ok(to)) => Some(to),
        Some(Err(_)) => return bounce(server, &stanza, StanzaError::jid_malformed()).await,
    };
    let to = match (to, kind, &from) {
        (Some(to), _, _) => to,
        // RFC 6120 §10.3: no `to` means the sender's own account, except for presence,
        // which without `to` is the sender's own availability.
        (None, StanzaKind::Presence, Some(from)) => {
            if let Ok(full) = from.clone().try_into_full() {
                own_presence(server, &stanza, &full);
            }
            return;
        }
        (None, _, Some(from)) => Jid::from(from.bare()),
        (None, _, None) => return,
    };
    if let Some(service) = server.modules.for_service_domain(to.domain().as_str()) {
        if let Some(stanza) = to_owner(server, stanza, &to).await {
            service.handle_service_stanza(&ctx(server), stanza).await;
        }
        return;
    }
    if !server.config.serves(to.domain().as_str()) {
        return to_elsewhere(server, stanza, to.domain().as_str()).await;
    }
    if to.node().is_none() {
        return to_server(server, stanza, kind, to).await;
    }
    match to.try_into_full() {
        Ok(full) => to_full_jid(server, stanza, kind, full).await,
        Err(bare) => to_bare_jid(server, stanza, kind, bare).await,
    }
}

/// In a cluster, a stanza for a room (or the pubsub service) goes to the node that runs it
/// (`cluster/ownership.rs`); it comes back when that is this node.
async fn to_owner(server: &Arc<Server>, stanza: Element, to: &Jid) -> Option<Element> {
    let Some(cluster) = server.cluster.get() else {
        return Some(stanza);
    };
    let domain = to.domain().as_str();
    let key = if domain == server.config.pubsub_domain() {
        domain.to_owned()
    } else if domain == server.config.muc_domain() && to.node().is_some() {
        to.bare().to_string()
    } else {
        return Some(stanza);
    };
    match cluster.owner_of(&key).await {
        crate::cluster::Owner::Here => Some(stanza),
        crate::cluster::Owner::Node(node) => {
            if stanza.name() == "presence" && domain == server.config.muc_domain() {
                cluster.note_room_presence(&stanza, to);
            }
            cluster.send_route(&node, stanza.to_bytes(ns::CLIENT));
            None
        }
    }
}

/// A stanza for a domain this server does not serve itself: an external component's, or
/// a remote server's (federation, `s2s`).
async fn to_elsewhere(server: &Arc<Server>, stanza: Element, domain: &str) {
    if let Err((stanza, error)) = hand_elsewhere(server, stanza, domain) {
        bounce(server, &stanza, error).await;
    }
}

/// Hands a stanza to the component or remote server that serves `domain`, without
/// waiting: their queues keep the order stanzas are handed in. It comes back with the error
/// to bounce it with when neither can take it.
#[allow(clippy::result_large_err)] // the stanza comes back, to be bounced
fn hand_elsewhere(
    server: &Arc<Server>,
    stanza: Element,
    domain: &str,
) -> Result<(), (Element, StanzaError)> {
    use crate::component::Undelivered;
    match server.components.deliver(server, domain, stanza) {
        Ok(()) => Ok(()),
        Err((Undelivered::Away, stanza)) => Err((
            stanza,
            StanzaError::service_unavailable().with_text("The component is not connected"),
        )),
        Err((Undelivered::Full, stanza)) => {
            server
                .metrics
                .component_queue_full
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err((stanza, StanzaError::resource_constraint()))
        }
        Err((Undelivered::NotAComponent, stanza)) => crate::s2s::send(server, stanza, domain),
    }
}

/// Delivers a stanza already serialized for one full JID (a fan-out's copy), bypassing the
/// hooks: to the local session, or, when the JID is another server's or a component's (a
/// remote occupant of a room, a remote contact asked for its capabilities), parsed back and
/// handed there, in the order given. Synchronous, for callers that hold a lock while
/// fanning out; a stanza that cannot be handed on is bounced from a task of its own.
pub fn deliver_to_full(server: &Arc<Server>, to: &FullJid, queued: impl Into<Queued>) -> Delivery {
    let domain = to.domain().as_str();
    // A service's own JIDs have no sessions either; a component's domain is elsewhere.
    if server.config.serves(domain) || server.modules.for_service_domain(domain).is_some() {
        return server.sessions.deliver_to_full(to, queued);
    }
    let queued = queued.into();
    let parsed = std::str::from_utf8(&queued.bytes)
        .ok()
        .and_then(|text| corvid_xml::parse_element(text, ns::CLIENT).ok());
    let Some(stanza) = parsed else {
        tracing::warn!(%to, "a serialized stanza did not parse back; dropped");
        return Delivery::NoSuchResource;
    };
    match hand_elsewhere(server, stanza, domain) {
        Ok(()) => Delivery::Delivered,
        Err((stanza, error)) => {
            let server = server.clone();
            tokio::spawn(async move { bounce(&server, &stanza, error).await });
            Delivery::NoSuchResource
        }
    }
}

fn ctx(server: &Arc<Server>) -> Ctx {
    Ctx {
        server: server.clone(),
    }
}

/// A client's presence without `to` that no module took: at least its availability and
/// priority are recorded, so bare-JID delivery works (RFC 6121 §4.2, §4.7.2.3).
fn own_presence(server: &Arc<Server>, stanza: &Element, from: &FullJid) {
    match stanza.attr("type") {
        None => server
            .sessions
            .set_presence(from, true, presence_priority(stanza)),
        Some("unavailable") => server.sessions.set_presence(from, false, 0),
        Some(_) => {}
    }
}

/// The `<priority/>` of a presence (RFC 6121 §4.7.2.3), 0 when absent or invalid.
pub fn presence_priority(stanza: &Element) -> i8 {
    stanza
        .get_child("priority", ns::CLIENT)
        .and_then(|p| p.text().trim().parse::<i8>().ok())
        .unwrap_or(0)
}

async fn to_server(server: &Arc<Server>, mut stanza: Element, kind: StanzaKind, to: Jid) {
    let ctx = ctx(server);
    match kind {
        StanzaKind::Iq if to.resource().is_none() => dispatch_iq(server, stanza).await,
        StanzaKind::Iq => {
            let err = StanzaError::service_unavailable().with_text("The server has no resources");
            bounce(server, &stanza, err).await
        }
        StanzaKind::Message => {
            if server
                .modules
                .on_message(&ctx, &mut stanza, Direction::ToServer)
                .await
                == Flow::Continue
            {
                bounce(server, &stanza, StanzaError::service_unavailable()).await;
            }
        }
        StanzaKind::Presence => {
            server
                .modules
                .on_presence(&ctx, &mut stanza, Direction::ToServer)
                .await;
        }
    }
}

async fn to_full_jid(server: &Arc<Server>, mut stanza: Element, kind: StanzaKind, to: FullJid) {
    let ctx = ctx(server);
    let flow = match kind {
        StanzaKind::Message => {
            server
                .modules
                .on_message(&ctx, &mut stanza, Direction::ToClient)
                .await
        }
        StanzaKind::Presence => {
            server
                .modules
                .on_presence(&ctx, &mut stanza, Direction::ToClient)
                .await
        }
        StanzaKind::Iq => {
            server
                .modules
                .on_iq(&ctx, &mut stanza, Direction::ToClient)
                .await
        }
    };
    if flow == Flow::Handled {
        return;
    }
    let bytes = stanza.to_bytes(ns::CLIENT);
    let queued = Queued::new(bytes.clone(), StanzaClass::of(&stanza));
    if server.sessions.deliver_to_full(&to, queued) == Delivery::Delivered {
        if kind == StanzaKind::Message {
            server
                .modules
                .on_delivered(&ctx, &stanza, &to.bare(), std::slice::from_ref(&to))
                .await;
        }
        return;
    }
    // RFC 6121 §8.5.3.2: the resource is not connected.
    match kind {
        StanzaKind::Iq => bounce(server, &stanza, StanzaError::service_unavailable()).await,
        StanzaKind::Presence => {}
        StanzaKind::Message => match MessageType::of(&stanza) {
            MessageType::Normal | MessageType::Chat => {
                message_to_bare(server, stanza, to.bare(), bytes).await
            }
            MessageType::Groupchat => {
                bounce(server, &stanza, StanzaError::service_unavailable()).await
            }
            MessageType::Headline | MessageType::Error => {}
        },
    }
}

async fn to_bare_jid(server: &Arc<Server>, mut stanza: Element, kind: StanzaKind, to: BareJid) {
    let ctx = ctx(server);
    match kind {
        // RFC 6121 §8.5.2.1.3 / §8.5.2.2.3: the server answers IQs to a bare JID itself.
        StanzaKind::Iq => dispatch_iq(server, stanza).await,
        StanzaKind::Presence => {
            if server
                .modules
                .on_presence(&ctx, &mut stanza, Direction::ToClient)
                .await
                == Flow::Continue
            {
                server
                    .sessions
                    .deliver_to_available(&to, Queued::of(&stanza));
            }
        }
        StanzaKind::Message => {
            if server
                .modules
                .on_message(&ctx, &mut stanza, Direction::ToClient)
                .await
                == Flow::Handled
            {
                return;
            }
            match MessageType::of(&stanza) {
                MessageType::Normal | MessageType::Chat | MessageType::Headline => {
                    let bytes = stanza.to_bytes(ns::CLIENT);
                    message_to_bare(server, stanza, to, bytes).await
                }
                MessageType::Groupchat => {
                    bounce(server, &stanza, StanzaError::service_unavailable()).await
                }
                MessageType::Error => {}
            }
        }
    }
}

/// RFC 6121 §8.5.2.1.1 and §8.5.2.2.1.
async fn message_to_bare(server: &Arc<Server>, stanza: Element, to: BareJid, bytes: bytes::Bytes) {
    let ctx = ctx(server);
    let queued = Queued::new(bytes, StanzaClass::of(&stanza));
    let delivered = server.sessions.deliver_message_to_bare(&to, queued);
    if !delivered.is_empty() {
        server
            .modules
            .on_delivered(&ctx, &stanza, &to, &delivered)
            .await;
        return;
    }
    if server.modules.on_undeliverable(&ctx, &stanza, &to).await == Flow::Handled {
        return;
    }
    match MessageType::of(&stanza) {
        MessageType::Normal | MessageType::Chat => {
            bounce(server, &stanza, StanzaError::service_unavailable()).await
        }
        _ => {}
    }
}

/// Hands an IQ addressed to the server (or to an account's bare JID) to the module that
/// owns its payload namespace.
async fn dispatch_iq(server: &Arc<Server>, stanza: Element) {
    let kind = IqType::parse(stanza.attr("type"));
    if !matches!(kind, Some(IqType::Get | IqType::Set)) {
        // Results and errors addressed to the server: answers to our own requests, or in a
        // cluster, to another node's, which gets them.
        if !server.iq_tracker.resolve(&stanza)
            && let Some(cluster) = server.cluster.get()
            && let Some(node) = stanza.attr("id").and_then(crate::iq_tracker::node_of)
            && node != &**cluster.node()
        {
            cluster.send_route(&node.into(), stanza.to_bytes(ns::CLIENT));
        }
        return;
    }
    let Some(Ok(from)) = stanza.attr("from").map(Jid::new) else {
        return;
    };
    let to = match stanza.attr("to").map(Jid::new) {
        Some(Ok(to)) => to,
        Some(Err(_)) => return,
        None => Jid::from(from.bare()),
    };
    let Some(iq) = Iq::from_element(&stanza, from, to) else {
        return bounce(server, &stanza, StanzaError::bad_request()).await;
    };
    let reply = match server.modules.for_namespace(iq.payload.ns()) {
        // Say what is missing: clients show this text (Gajim's avatar upload, for one).
        None => {
            let ns: String = iq.payload.ns().chars().take(200).collect();
            let text = format!("This server does not support {ns}");
            iq.error(&StanzaError::service_unavailable().with_text(text))
        }
        Some(module) => match module.handle_iq(&ctx(server), iq.clone()).await {
            Ok(payload) => iq.result(payload),
            Err(err) => iq.error(&err),
        },
    };
    Box::pin(route(server, reply)).await;
}

/// Sends the error reply for a stanza, unless it is an error or a result itself.
pub async fn bounce(server: &Arc<Server>, original: &Element, err: StanzaError) {
    if !may_bounce(original) || original.attr("from").is_none() {
        return;
    }
    let mut reply = error_reply(original, &err);
    if reply.attr("from").is_none() {
        reply.set_attr("from", server.config.default_domain());
    }
    Box::pin(route(server, reply)).await;
}

/// What a session that ended never delivered: stanzas queued for it but never written
/// and, under stream management (XEP-0198 §4.3), written but never acknowledged. The
/// messages among them are treated as undeliverable to that session: they go to the
/// account's other resources or to offline storage (RFC 6121 §8.5.2). IQ requests are
/// answered with an error so their senders do not wait; presence is dropped, as the next
/// one supersedes it.
pub async fn reroute_unsent(server: &Arc<Server>, session: &FullJid, unsent: Vec<bytes::Bytes>) {
    /// XEP-0313 results: a copy of the archive, not a message to anyone.
    const MAM_RESULT: (&str, &str) = ("result", "urn:xmpp:mam:2");
    let ctx = ctx(server);
    let user = session.bare();
    for bytes in unsent {
        let class = StanzaClass::sniff(&bytes);
        if !matches!(class, StanzaClass::Message { .. } | StanzaClass::Iq) {
            continue;
        }
        let Some(stanza) = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| corvid_xml::parse_element(text, ns::CLIENT).ok())
        else {
            continue;
        };
        if class == StanzaClass::Iq {
            if matches!(
                IqType::parse(stanza.attr("type")),
                Some(IqType::Get | IqType::Set)
            ) {
                bounce(server, &stanza, StanzaError::service_unavailable()).await;
            }
            continue;
        }
        let copy = stanza
            .children()
            .any(|c| c.ns() == ns::CARBONS || (c.name(), c.ns()) == MAM_RESULT);
        if copy
            || !matches!(
                MessageType::of(&stanza),
                MessageType::Normal | MessageType::Chat
            )
        {
            continue;
        }
        let queued = Queued::new(bytes, StanzaClass::of(&stanza));
        if server
            .sessions
            .deliver_message_to_bare(&user, queued)
            .is_empty()
        {
            // Stored offline if worth it; never bounced: the sender was told nothing failed.
            server.modules.on_undeliverable(&ctx, &stanza, &user).await;
        }
    }
}
