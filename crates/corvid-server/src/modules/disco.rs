//! XEP-0030 Service Discovery: the server's identity and the features its modules add;
//! for an account's bare JID, the account identity.

use async_trait::async_trait;
use corvid_proto::Bare;
use corvid_proto::{BareJid, Iq, IqType, StanzaError, ns};
use corvid_xml::Element;

use crate::module::{Ctx, IqResult, Module};

pub struct Disco;

#[async_trait]
impl Module for Disco {
    fn name(&self) -> &'static str {
        "disco"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::DISCO_INFO, ns::DISCO_ITEMS]
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::DISCO_INFO, ns::DISCO_ITEMS]
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        if iq.kind != IqType::Get || iq.payload.name() != "query" {
            return Err(StanzaError::bad_request());
        }
        let node = iq.payload.attr("node");
        if node.is_some() && iq.to.node().is_some() {
            // A node of an account (PEP): the module whose node it is answers.
            self.account(ctx, &iq).await?;
            return match ctx.server.modules.account_node_disco(ctx, &iq).await {
                Some(answer) => answer,
                None => Err(StanzaError::item_not_found()),
            };
        }
        if let Some(node) = node {
            // The only node so far: our own entity-caps node (XEP-0115 §6.2).
            let caps_node = format!(
                "{}#{}",
                super::caps::NODE,
                super::caps::server_ver(&ctx.server)
            );
            if node != caps_node || iq.to.node().is_some() || iq.payload.ns() != ns::DISCO_INFO {
                return Err(StanzaError::item_not_found());
            }
            return Ok(Some(server_info_of(&ctx.server).with_attr("node", node)));
        }
        let account = self.account(ctx, &iq).await?;
        Ok(Some(match (iq.payload.ns(), account) {
            (ns::DISCO_INFO, None) => server_info_of(&ctx.server),
            (ns::DISCO_INFO, Some(_)) => account_info(&ctx.server),
            (_, None) => server_items(&ctx.server),
            (_, Some(user)) => {
                let mut query = Element::new("query", ns::DISCO_ITEMS);
                for item in ctx.server.modules.account_items(ctx, &user, &iq.from).await {
                    query.append_child(item);
                }
                query
            }
        }))
    }
}

impl Disco {
    /// The account a query is addressed to (`None`: the server), which must exist.
    async fn account(&self, ctx: &Ctx, iq: &Iq) -> Result<Option<BareJid>, StanzaError> {
        if iq.to.node().is_none() {
            return Ok(None);
        }
        let user = iq.to.bare();
        if !crate::accounts::exists(&ctx.server.store, &user)
            .await
            .map_err(|_| StanzaError::internal_server_error())?
        {
            return Err(StanzaError::service_unavailable());
        }
        Ok(Some(user))
    }
}

fn identity(category: &str, kind: &str, name: Option<&str>) -> Element {
    let mut el = Element::new("identity", ns::DISCO_INFO)
        .with_attr("category", category)
        .with_attr("type", kind);
    if let Some(name) = name {
        el.set_attr("name", name);
    }
    el
}

fn with_features<'a>(mut query: Element, features: impl IntoIterator<Item = &'a str>) -> Element {
    for feature in features {
        query.append_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
    }
    query
}

/// The server's disco#info: identity and every enabled module's features.
pub fn server_info_of(server: &crate::server::Server) -> Element {
    let query =
        Element::new("query", ns::DISCO_INFO).with_child(identity("server", "im", Some("Corvid")));
    with_features(query, server.modules.features())
}

/// The server's disco#items: the services on domains of their own (XEP-0030 §4).
fn server_items(server: &crate::server::Server) -> Element {
    let mut query = Element::new("query", ns::DISCO_ITEMS);
    for domain in server.modules.service_domains() {
        query.append_child(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", domain));
    }
    // External components (XEP-0114) that are connected.
    for domain in server.components.connected() {
        query.append_child(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", domain));
    }
    query
}

/// An account's disco#info: its identity and what modules add to every account (PEP).
fn account_info(server: &crate::server::Server) -> Element {
    let (identities, features) = server.modules.account_info();
    let mut query =
        Element::new("query", ns::DISCO_INFO).with_child(identity("account", "registered", None));
    for (category, kind) in identities {
        query.append_child(identity(category, kind, None));
    }
    // XEP-0359 §6: the account's messages get stanza-ids by its bare JID.
    let mut all = vec![ns::DISCO_INFO, ns::DISCO_ITEMS, ns::STANZA_ID];
    all.extend(features);
    with_features(query, all)
}
