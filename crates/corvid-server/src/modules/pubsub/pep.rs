//! XEP-0163 Personal Eventing Protocol: a pubsub service on every account's bare JID,
//! sharing the engine. Nodes are created by publishing to them; notifications go to the
//! owner's resources and to contacts with a `from`/`both` subscription whose entity caps
//! (XEP-0115) carry `<node>+notify` (§4); each node's last item goes to a contact's
//! resource when it comes online or its caps change (§4.3.4).

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use corvid_proto::{BareJid, FullJid, Iq, Jid, StanzaError, ns};
use corvid_store::Rosters;
use corvid_xml::Element;
use dashmap::DashMap;

use super::disco::{FEATURES, PEP_FEATURES};
use super::node::ServiceKind;
use super::node_config::{AccessModel, NodeConfig, SendLast};
use super::ops::{Access, check_access};
use super::{Request, notify};
use crate::module::{Ctx, Direction, Flow, IqResult, Module, SessionEvent};

/// How long a resource's unknown caps are waited for before its last items are given up.
const CAPS_WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Pep {
    /// The caps verification string each resource had when it was last sent the last
    /// items: a presence that changes nothing else sends nothing again.
    served: DashMap<FullJid, String>,
    /// The same for remote contacts' resources, per local owner whose items they were sent.
    remote_served: DashMap<(BareJid, FullJid), String>,
    /// Every feature PEP adds to an account's disco#info.
    features: std::sync::OnceLock<Vec<&'static str>>,
}

#[async_trait]
impl Module for Pep {
    /// Another node of the cluster changed a service: the copy here is loaded again.
    async fn on_store_change(&self, ctx: &Ctx, change: &corvid_store::StoreChange) {
        if let corvid_store::StoreChange::PubSub { service } = change {
            ctx.server.pubsub.forget(service);
        }
    }

    fn name(&self) -> &'static str {
        "pep"
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::PUBSUB, ns::PUBSUB_OWNER]
    }

    fn account_identities(&self) -> &[(&'static str, &'static str)] {
        &[("pubsub", "pep")]
    }

    fn account_features(&self) -> &[&'static str] {
        self.features
            .get_or_init(|| FEATURES.iter().chain(PEP_FEATURES).copied().collect())
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        if iq.to.node().is_none() {
            let text = format!(
                "Publish-subscribe is served at {} and on every account",
                ctx.server.config.pubsub_domain()
            );
            return Err(StanzaError::service_unavailable().with_text(text));
        }
        let owner = iq.to.to_bare();
        if !crate::accounts::exists(&ctx.server.store, &owner)
            .await
            .map_err(|_| StanzaError::internal_server_error())?
        {
            return Err(StanzaError::service_unavailable());
        }
        let outcome = ctx
            .server
            .pubsub
            .handle(ctx, ServiceKind::Pep(owner), &iq)
            .await;
        if !outcome.then.is_empty() {
            // After the reply, which the router sends when this returns.
            let ctx = ctx.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                for message in outcome.then {
                    ctx.route(message).await;
                }
            });
        }
        outcome.reply
    }

    async fn account_items(&self, ctx: &Ctx, account: &BareJid, requester: &Jid) -> Vec<Element> {
        let Ok(svc) = ctx
            .server
            .pubsub
            .service(ctx, ServiceKind::Pep(account.clone()))
            .await
        else {
            return Vec::new();
        };
        let request = Request::new(ctx, &svc, requester);
        request
            .visible_nodes()
            .await
            .into_iter()
            .map(|(name, _)| {
                Element::new("item", ns::DISCO_ITEMS)
                    .with_attr("jid", account.as_str())
                    .with_attr("node", name)
            })
            .collect()
    }

    async fn account_node_disco(&self, ctx: &Ctx, iq: &Iq) -> Option<IqResult> {
        iq.payload.attr("node")?;
        let owner = iq.to.to_bare();
        Some(super::disco::answer(ctx, ServiceKind::Pep(owner), iq).await)
    }

    async fn on_presence(&self, ctx: &Ctx, pres: &mut Element, dir: Direction) -> Flow {
        if dir == Direction::ToClient && pres.attr("type") == Some("subscribed") {
            new_subscriber(ctx, pres);
            return Flow::Continue;
        }
        if dir == Direction::ToClient {
            self.remote_contact_presence(ctx, pres);
            return Flow::Continue;
        }
        if dir != Direction::FromClient || pres.attr("to").is_some() || pres.attr("type").is_some()
        {
            return Flow::Continue;
        }
        let Some(Ok(from)) = pres.attr("from").map(|f| f.parse::<FullJid>()) else {
            return Flow::Continue;
        };
        let Some(ver) = ctx.server.caps.ver_of(&from) else {
            return Flow::Continue;
        };
        if self.served.insert(from.clone(), ver.clone()).as_ref() == Some(&ver) {
            return Flow::Continue;
        }
        let ctx = ctx.clone();
        tokio::spawn(async move { send_last_items(&ctx, &from, &ver).await });
        Flow::Continue
    }

    async fn on_session(&self, ctx: &Ctx, event: &SessionEvent) {
        if let SessionEvent::Closed { jid, .. } = event {
            self.served.remove(jid);
            let owner = jid.to_bare();
            if ctx.server.sessions.resources(&owner).is_empty() {
                self.remote_served.retain(|(o, _), _| *o != owner);
            }
            // Nothing of an account nobody uses stays in memory; others' reads load it again.
            let owner = jid.to_bare();
            if ctx.server.sessions.resources(&owner).is_empty() {
                ctx.server.pubsub.forget_idle(owner.as_str());
            }
        }
    }
}

/// XEP-0163 §4.3.4: a contact whose subscription to the owner's presence was just approved
/// is a new subscriber: its available resources get the owner's last items.
fn new_subscriber(ctx: &Ctx, pres: &Element) {
    let (Some(Ok(owner)), Some(Ok(contact))) = (
        pres.attr("from").map(Jid::new),
        pres.attr("to").map(Jid::new),
    ) else {
        return;
    };
    let (owner, contact) = (owner.to_bare(), contact.to_bare());
    let serves = |j: &BareJid| ctx.server.config.serves(j.domain().as_str());
    if !serves(&owner) || !serves(&contact) || owner == contact {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        // After the subscription module has recorded the approval this stanza carries.
        tokio::task::yield_now().await;
        let caps = &ctx.server.caps;
        for resource in ctx
            .server
            .sessions
            .resources_where(&contact, |s| s.available)
        {
            let Some(features) = caps.resource_features(&resource) else {
                continue;
            };
            let wanted = notify_nodes(&features);
            if !wanted.is_empty() {
                send_last_items_of(&ctx, &owner, &resource, &wanted).await;
            }
        }
    });
}

/// The nodes a resource's caps ask notifications of: `<node>+notify` features.
fn notify_nodes(features: &[String]) -> HashSet<&str> {
    features
        .iter()
        .filter_map(|f| f.strip_suffix("+notify"))
        .collect()
}

/// XEP-0163 §4.3.4: a resource that came online (or changed caps) gets the last item of
/// every node it wants, of its own account and of each contact whose presence it receives.
async fn send_last_items(ctx: &Ctx, to: &FullJid, ver: &str) {
    let Some(features) = ctx.server.caps.features_when_learned(ver, CAPS_WAIT).await else {
        return;
    };
    let wanted = notify_nodes(&features);
    if wanted.is_empty() {
        return;
    }
    let user = to.to_bare();
    let mut owners = vec![user.clone()];
    let (username, domain) = Ctx::key(&user);
    if let Ok(contacts) = ctx
        .server
        .store
        .contacts_with_subscription(username, domain)
        .await
    {
        owners.extend(
            contacts
                .iter()
                .filter(|c| c.subscription.has_to())
                .filter_map(|c| BareJid::new(&c.jid).ok())
                .filter(|c| ctx.server.config.serves(c.domain().as_str())),
        );
    }
    for owner in owners {
        send_last_items_of(ctx, &owner, to, &wanted).await;
    }
}

async fn send_last_items_of(ctx: &Ctx, owner: &BareJid, to: &FullJid, wanted: &HashSet<&str>) {
    let engine = &ctx.server.pubsub;
    let Ok(svc) = engine.service(ctx, ServiceKind::Pep(owner.clone())).await else {
        return;
    };
    let requester = to.to_bare();
    let candidates: Vec<(String, NodeConfig, Access)> = {
        let nodes = svc.nodes.lock().await;
        nodes
            .values()
            .filter(|n| wanted.contains(n.name.as_str()))
            .filter(|n| n.config.send_last_published_item == SendLast::OnSubAndPresence)
            .map(|n| (n.name.clone(), n.config.clone(), Access::of(n, &requester)))
            .collect()
    };
    let own = *owner == requester;
    if !own && blocked(ctx, owner, &requester).await {
        return;
    }
    for (name, config, access) in candidates {
        if !own && check_access(ctx, &access, &requester, false).await.is_err() {
            continue;
        }
        if let Ok(Some(item)) = super::items::last_item(ctx, &svc, &name).await {
            let event = super::items::last_item_event(&svc, &name, &config, &item);
            notify::deliver(ctx, event, &[Jid::from(to.clone())]).await;
        }
    }
}

/// Whether a block between the two (XEP-0191, either way) withholds `owner`'s events.
async fn blocked(ctx: &Ctx, owner: &BareJid, contact: &BareJid) -> bool {
    let from = Jid::from(owner.clone());
    ctx.server.modules.on_broadcast(ctx, &from, contact).await == Flow::Handled
}

impl Pep {
    /// XEP-0163 §4.3.4 across the federation: a remote contact's resource that comes online
    /// (or changes caps) gets the last items it wants of the local user its presence is
    /// for, once its caps are known. Its server sends the presence to each local contact:
    /// each owner answers once per resource and caps.
    fn remote_contact_presence(&self, ctx: &Ctx, pres: &Element) {
        let (Some(Ok(from)), Some(Ok(to))) = (
            pres.attr("from").map(|f| f.parse::<FullJid>()),
            pres.attr("to").map(Jid::new),
        ) else {
            return;
        };
        let config = &ctx.server.config;
        if config.serves(from.domain().as_str()) || !config.serves(to.domain().as_str()) {
            return;
        }
        let key = (to.to_bare(), from.clone());
        let ver = match pres.attr("type") {
            None => pres
                .get_child("c", ns::CAPS)
                .and_then(|c| c.attr("ver"))
                .filter(|v| v.len() <= 64),
            Some("unavailable") => {
                self.remote_served.remove(&key);
                return;
            }
            Some(_) => return,
        };
        let Some(ver) = ver.map(str::to_owned) else {
            return;
        };
        if self.remote_served.len() >= config.limits.caps_remote_resources {
            return;
        }
        if self.remote_served.insert(key.clone(), ver.clone()).as_ref() == Some(&ver) {
            return;
        }
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let Some(features) = ctx.server.caps.features_when_learned(&ver, CAPS_WAIT).await
            else {
                return;
            };
            let wanted = notify_nodes(&features);
            if !wanted.is_empty() {
                send_last_items_of(&ctx, &key.0, &from, &wanted).await;
            }
        });
    }
}

/// XEP-0163 §4.3.2: the resources a notification from `owner`'s node goes to without an
/// explicit subscription — the owner's own and its contacts' (by the node's access model),
/// each only if its caps carry `<node>+notify` (filtered notifications, §4.3.3).
pub async fn interested(
    ctx: &Ctx,
    owner: &BareJid,
    node: &str,
    config: &NodeConfig,
) -> Vec<FullJid> {
    let feature = format!("{node}+notify");
    let caps = &ctx.server.caps;
    let sessions = &ctx.server.sessions;
    let mut out = wanting(
        ctx,
        sessions.resources_where(owner, |s| s.available),
        &feature,
    )
    .await;
    if config.access_model == AccessModel::Whitelist {
        return out;
    }
    let (username, domain) = Ctx::key(owner);
    let Ok(contacts) = ctx
        .server
        .store
        .contacts_with_subscription(username, domain)
        .await
    else {
        return out;
    };
    for contact in contacts.iter().filter(|c| c.subscription.has_from()) {
        if config.access_model == AccessModel::Roster
            && !contact
                .groups
                .iter()
                .any(|g| config.roster_groups_allowed.contains(g))
        {
            continue;
        }
        let Ok(bare) = BareJid::new(&contact.jid) else {
            continue;
        };
        if blocked(ctx, owner, &bare).await {
            continue;
        }
        // A remote contact's resources are those its server told us of, with their caps.
        let resources = if ctx.server.config.serves(bare.domain().as_str()) {
            sessions.resources_where(&bare, |s| s.available)
        } else {
            caps.remote_resources(&bare)
        };
        out.extend(wanting(ctx, resources, &feature).await);
    }
    out
}

/// How long a notification waits for the caps of a resource being asked about: its
/// presence came a moment ago (on another node of a cluster, whose answer comes round
/// through this one), and without them it would miss the item.
const CAPS_BEING_LEARNED_WAIT: Duration = Duration::from_secs(2);

/// The resources whose caps carry `feature`, waiting briefly for those being learned.
async fn wanting(ctx: &Ctx, resources: Vec<FullJid>, feature: &str) -> Vec<FullJid> {
    let caps = &ctx.server.caps;
    let mut out = Vec::with_capacity(resources.len());
    for full in resources {
        let features = match caps.resource_features(&full) {
            Some(features) => Some(features),
            None => match caps.ver_of(&full) {
                Some(ver) => {
                    caps.features_when_learned(&ver, CAPS_BEING_LEARNED_WAIT)
                        .await
                }
                None => None,
            },
        };
        if features.is_some_and(|f| f.iter().any(|f| f == feature)) {
            out.push(full);
        }
    }
    out
}
