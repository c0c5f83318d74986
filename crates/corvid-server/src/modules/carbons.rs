//! XEP-0280 Message Carbons: resources that enable carbons get copies of the chat
//! messages their account sends and receives on its other resources.

use async_trait::async_trait;
use corvid_proto::Bare;
use corvid_proto::{BareJid, FullJid, Iq, IqType, StanzaError, ns};
use corvid_xml::Element;

use crate::module::{Ctx, Direction, Flow, IqResult, Module};

pub struct Carbons;

#[async_trait]
impl Module for Carbons {
    fn name(&self) -> &'static str {
        "carbons"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::CARBONS]
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::CARBONS]
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        let enable = match (iq.kind, iq.payload.name()) {
            (IqType::Set, "enable") => true,
            (IqType::Set, "disable") => false,
            _ => return Err(StanzaError::bad_request()),
        };
        let Ok(from) = iq.from.clone().try_into_full() else {
            return Err(StanzaError::bad_request());
        };
        if iq.to.node().is_some() && iq.to.bare() != from.bare() {
            return Err(StanzaError::forbidden());
        }
        ctx.server.sessions.update(&from, |s| s.carbons = enable);
        Ok(None)
    }

    async fn on_message(&self, ctx: &Ctx, msg: &mut Element, dir: Direction) -> Flow {
        if dir == Direction::FromClient
            && eligible(msg)
            && let Some(Ok(from)) = msg.attr("from").map(|f| f.parse::<FullJid>())
        {
            // XEP-0280 §7: copies of what one resource sends, to the others.
            copy_to(ctx, &from.bare(), msg, "sent", |r| r != &from);
        }
        Flow::Continue
    }

    async fn on_delivered(&self, ctx: &Ctx, msg: &Element, to: &BareJid, delivered: &[FullJid]) {
        // XEP-0280 §6: copies of what some resources received, to the others.
        if eligible(msg) {
            copy_to(ctx, to, msg, "received", |r| !delivered.contains(r));
        }
    }
}

/// XEP-0280 §8: chat messages (and normal ones with a body), not marked private or no-copy.
fn eligible(msg: &Element) -> bool {
    let kind_ok = match msg.attr("type") {
        Some("chat") => true,
        None | Some("normal") => msg.has_child("body", ns::CLIENT),
        _ => false,
    };
    kind_ok
        && !msg.has_child("private", ns::CARBONS)
        && !msg.has_child("no-copy", ns::HINTS)
        && !msg.has_child("received", ns::CARBONS)
        && !msg.has_child("sent", ns::CARBONS)
}

fn copy_to(
    ctx: &Ctx,
    user: &BareJid,
    msg: &Element,
    direction: &str,
    pick: impl Fn(&FullJid) -> bool,
) {
    let targets: Vec<FullJid> = ctx
        .server
        .sessions
        .resources_where(user, |s| s.carbons)
        .into_iter()
        .filter(|r| pick(r))
        .collect();
    if targets.is_empty() {
        return;
    }
    let forwarded = Element::new("forwarded", ns::FORWARD).with_child(msg.clone());
    let mut copy = Element::new("message", ns::CLIENT)
        .with_attr("from", user.as_str())
        .with_attr("type", msg.attr("type").unwrap_or("normal"))
        .with_child(Element::new(direction, ns::CARBONS).with_child(forwarded));
    for target in targets {
        copy.set_attr("to", target.as_str());
        ctx.deliver_to(&target, &copy);
    }
}
