//! XEP-0215 external service discovery: the STUN and TURN servers of
//! `[[external_services]]`, told to local users who ask the server (`<services/>`, all or
//! of one type) with their credentials, and credentials alone for a service they name
//! (`<credentials/>`).
//!
//! A service with a `secret` gets credentials per user and per request, as the TURN REST
//! API draft has them (coturn's `use-auth-secret`): username `<expiry>:<bare JID>`,
//! password base64(HMAC-SHA1(secret, username)).

use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use corvid_proto::{BareJid, Iq, StanzaError, ns};
use corvid_xml::Element;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::config::{Config, ExternalService};
use crate::module::{Ctx, IqResult, Module, server_get};

pub struct ExtDisco {
    features: &'static [&'static str],
}

impl ExtDisco {
    /// The feature is announced only when there is something to discover.
    pub fn new(config: &Config) -> Self {
        ExtDisco {
            features: if config.external_services.is_empty() {
                &[]
            } else {
                &[ns::EXTDISCO]
            },
        }
    }
}

#[async_trait]
impl Module for ExtDisco {
    fn name(&self) -> &'static str {
        "extdisco"
    }

    fn features(&self) -> &[&'static str] {
        self.features
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::EXTDISCO]
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        server_get(&iq)?;
        let config = &ctx.server.config;
        if config.external_services.is_empty() {
            return Err(StanzaError::service_unavailable());
        }
        if iq.from.node().is_none() || !config.serves(iq.from.domain().as_str()) {
            return Err(StanzaError::forbidden());
        }
        let user = iq.from.to_bare();
        let now = crate::modules::upload::files::now();
        match iq.payload.name() {
            "services" => Ok(Some(services(config, &iq.payload, &user, now))),
            "credentials" => credentials(config, &iq.payload, &user, now).map(Some),
            _ => Err(StanzaError::bad_request()),
        }
    }
}

/// `<services/>`: every service, or those of the type asked for.
fn services(config: &Config, request: &Element, user: &BareJid, now: u64) -> Element {
    let wanted = request.attr("type");
    let mut reply = Element::new("services", ns::EXTDISCO);
    if let Some(kind) = wanted {
        reply.set_attr("type", kind);
    }
    for service in &config.external_services {
        if wanted.is_none_or(|w| w == service.kind.as_str()) {
            reply.append_child(service_element(service, user, now));
        }
    }
    reply
}

/// `<credentials><service host type [port]/></credentials>`: the matching services that
/// have credentials.
fn credentials(
    config: &Config,
    request: &Element,
    user: &BareJid,
    now: u64,
) -> Result<Element, StanzaError> {
    let asked = request
        .get_child("service", ns::EXTDISCO)
        .ok_or_else(StanzaError::bad_request)?;
    let (Some(host), Some(kind)) = (asked.attr("host"), asked.attr("type")) else {
        return Err(StanzaError::bad_request().with_text("A service needs host and type"));
    };
    let port = match asked.attr("port") {
        Some(p) => Some(p.parse::<u16>().map_err(|_| StanzaError::bad_request())?),
        None => None,
    };
    let mut reply = Element::new("credentials", ns::EXTDISCO);
    for service in &config.external_services {
        let matches = service.host.eq_ignore_ascii_case(host)
            && service.kind.as_str() == kind
            && port.is_none_or(|p| p == service.port());
        if matches && (service.secret.is_some() || service.username.is_some()) {
            reply.append_child(service_element(service, user, now));
        }
    }
    if reply.children().next().is_none() {
        return Err(StanzaError::item_not_found());
    }
    Ok(reply)
}

/// One `<service/>` (XEP-0215 §2), with credentials for `user` when it has some.
fn service_element(service: &ExternalService, user: &BareJid, now: u64) -> Element {
    let mut el = Element::new("service", ns::EXTDISCO)
        .with_attr("type", service.kind.as_str())
        .with_attr("host", service.host.as_str())
        .with_attr("port", service.port().to_string())
        .with_attr("transport", service.transport());
    if let Some(name) = &service.name {
        el.set_attr("name", name.as_str());
    }
    if let (Some(username), Some(password)) = (&service.username, &service.password) {
        el.set_attr("username", username.as_str());
        el.set_attr("password", password.as_str());
    } else if let Some(secret) = &service.secret {
        let expires = now.saturating_add(service.credentials_ttl_secs);
        let (username, password) = time_limited_credentials(secret, expires, user);
        el.set_attr("username", username);
        el.set_attr("password", password);
        el.set_attr(
            "expires",
            corvid_proto::time::format_datetime(UNIX_EPOCH + Duration::from_secs(expires)),
        );
        el.set_attr("restricted", "1");
    }
    el
}

/// The TURN REST API's credentials: `<expiry>:<user>`, and base64(HMAC-SHA1(secret, it)).
pub fn time_limited_credentials(secret: &str, expires: u64, user: &BareJid) -> (String, String) {
    let username = format!("{expires}:{user}");
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_follow_the_rest_api_draft() {
        let user = BareJid::new("juliet@example.org").unwrap();
        let (username, password) = time_limited_credentials("north", 1_700_000_000, &user);
        assert_eq!(username, "1700000000:juliet@example.org");
        // HMAC-SHA1("north", username), computed independently with openssl.
        assert_eq!(password, "FYAJHfjp7HThAWMlbSvwB1uOUYc=");
    }
}
