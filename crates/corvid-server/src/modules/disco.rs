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
        let account = match iq.to.node() {
            None => None,
            Some(_) => {
                let user = iq.to.bare();
                if !crate::accounts::exists(&ctx.server.store, &user)
                    .await
                    .map_err(|_| StanzaError::internal_server_error())?
                {
                    return Err(StanzaError::service_unavailable());
                }
                Some(user)
            }
        };
        Ok(Some(match (iq.payload.ns(), account) {
            (ns::DISCO_INFO, None) => server_info_of(&ctx.server),
            (ns::DISCO_INFO, Some(user)) => account_info(&user),
            (_, None) => server_items(&ctx.server),
            _ => Element::new("query", ns::DISCO_ITEMS),
        }))
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
    query
}

fn account_info(_user: &BareJid) -> Element {
    let query =
        Element::new("query", ns::DISCO_INFO).with_child(identity("account", "registered", None));
    // XEP-0359 §6: the account's messages get stanza-ids by its bare JID.
    with_features(query, [ns::DISCO_INFO, ns::STANZA_ID])
}
