//! XEP-0030 Service Discovery: the server's identity and the features its modules add;
//! for an account's bare JID, the account identity.

use async_trait::async_trait;
use corvid_proto::{ns, BareJid, Iq, IqType, StanzaError};
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
        if iq.payload.attr("node").is_some() {
            // No node is published yet (entity caps and PEP come later).
            return Err(StanzaError::item_not_found());
        }
        let account = match iq.to.node() {
            None => None,
            Some(_) => {
                let user = iq.to.to_bare();
                if !crate::accounts::exists(&ctx.server.store, &user).await.map_err(|_| StanzaError::internal_server_error())? {
                    return Err(StanzaError::service_unavailable());
                }
                Some(user)
            }
        };
        Ok(Some(match (iq.payload.ns(), account) {
            (ns::DISCO_INFO, None) => server_info(ctx),
            (ns::DISCO_INFO, Some(user)) => account_info(&user),
            _ => Element::new("query", ns::DISCO_ITEMS),
        }))
    }
}

fn identity(category: &str, kind: &str, name: Option<&str>) -> Element {
    let mut el = Element::new("identity", ns::DISCO_INFO).with_attr("category", category).with_attr("type", kind);
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

fn server_info(ctx: &Ctx) -> Element {
    let query = Element::new("query", ns::DISCO_INFO).with_child(identity("server", "im", Some("Corvid")));
    with_features(query, ctx.server.modules.features())
}

fn account_info(_user: &BareJid) -> Element {
    let query = Element::new("query", ns::DISCO_INFO).with_child(identity("account", "registered", None));
    with_features(query, [ns::DISCO_INFO])
}
