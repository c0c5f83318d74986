//! XEP-0049 Private XML Storage: one element per namespace, readable only by its owner.

use async_trait::async_trait;
use corvid_proto::Bare;
use corvid_proto::{Iq, IqType, StanzaError, ns};
use corvid_store::PrivateXml as _;
use corvid_xml::Element;

use crate::module::{Ctx, IqResult, Module};

pub struct Private;

#[async_trait]
impl Module for Private {
    fn name(&self) -> &'static str {
        "private"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::PRIVATE]
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::PRIVATE]
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        let user = iq.from.bare();
        if iq.to.node().is_some() && iq.to.bare() != user {
            return Err(StanzaError::forbidden());
        }
        let mut children = iq.payload.children();
        // XEP-0049 §2: exactly one child, in a namespace other than jabber:iq:private.
        let (Some(data), None) = (children.next(), children.next()) else {
            return Err(StanzaError::not_acceptable());
        };
        if data.ns() == ns::PRIVATE || data.ns().is_empty() || data.ns() == ns::CLIENT {
            return Err(StanzaError::not_acceptable());
        }
        let (username, domain) = Ctx::key(&user);
        let store = &ctx.server.store;
        let failed = |e: corvid_store::StoreError| {
            tracing::warn!(error = %e, "private XML storage failed");
            StanzaError::internal_server_error()
        };
        match iq.kind {
            IqType::Get => {
                let stored = store
                    .private_xml(username, domain, data.ns())
                    .await
                    .map_err(failed)?;
                let element = stored
                    .and_then(|xml| corvid_xml::parse_element(&xml, ns::CLIENT).ok())
                    .unwrap_or_else(|| data.clone());
                Ok(Some(Element::new("query", ns::PRIVATE).with_child(element)))
            }
            _ => {
                let xml = String::from_utf8_lossy(&data.to_bytes(ns::CLIENT)).into_owned();
                if xml.len() > ctx.server.config.vcard.max_bytes {
                    return Err(StanzaError::not_acceptable().with_text("too large"));
                }
                store
                    .set_private_xml(username, domain, data.ns(), &xml)
                    .await
                    .map_err(failed)?;
                ctx.server.modules.on_private_stored(ctx, &user, data).await;
                Ok(None)
            }
        }
    }
}
