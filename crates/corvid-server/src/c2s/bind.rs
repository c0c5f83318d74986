//! Resource binding (RFC 6120 §7): the client's chosen resource, or one we generate.

use corvid_proto::{BareJid, FullJid, StanzaError, ns};
use corvid_xml::Element;

use super::session::{End, Session};

impl Session {
    pub(super) async fn bind_resource(&mut self, iq: &Element, user: BareJid) -> Result<(), End> {
        let requested = iq
            .first_child()
            .and_then(|bind| bind.get_child("resource", ns::BIND))
            .map(|r| r.text())
            .filter(|r| !r.trim().is_empty());
        let jid = match requested {
            // RFC 6120 §7.7.2.1: a resource that fails resourceprep is `bad-request`.
            Some(resource) => match user.with_resource_str(resource.trim()) {
                Ok(jid) => jid,
                Err(_) => return self.reply_error(iq, StanzaError::bad_request()).await,
            },
            None => generated_resource(&user),
        };
        let max = self.server.config.limits.max_resources_per_account;
        let origin = crate::sessions::Origin {
            ip: self.origin.0,
            transport: self.origin.1,
            since: std::time::SystemTime::now(),
        };
        let Some(bound) = self.server.sessions.bind_from(jid.clone(), max, origin) else {
            // RFC 6120 §7.6.2.2: the account has as many resources as it may.
            let full = StanzaError::resource_constraint().with_text("Too many resources bound");
            return self.reply_error(iq, full).await;
        };
        let mut result = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_child(
                Element::new("bind", ns::BIND)
                    .with_child(Element::new("jid", ns::BIND).with_text(jid.as_str())),
            );
        if let Some(id) = iq.attr("id") {
            result.set_attr("id", id);
        }
        self.send(&result).await?;
        self.established(jid, bound).await;
        Ok(())
    }
}

/// A server-chosen resource: unguessable, so it cannot collide with another session's.
fn generated_resource(user: &BareJid) -> FullJid {
    let resource = format!("corvid-{}", crate::random_id());
    user.with_resource_str(&resource)
        .unwrap_or_else(|_| unreachable_resource(user))
}

#[cold]
fn unreachable_resource(user: &BareJid) -> FullJid {
    // Hex digits always pass resourceprep; this path exists only to avoid a panic.
    user.with_resource_str("corvid")
        .expect("a constant ASCII resource is valid")
}
