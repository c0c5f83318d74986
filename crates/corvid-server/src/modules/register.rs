//! XEP-0077 In-Band Registration for authenticated users (change password, cancel the
//! account), and the form and account creation the pre-authentication c2s path shares.

use async_trait::async_trait;
use corvid_proto::Bare;
use corvid_proto::{
    BareJid, Iq, IqType, StanzaError, StreamError, StreamErrorCondition, forms, ns,
};
use corvid_xml::Element;

use crate::accounts::{self, AccountError};
use crate::module::{Ctx, IqResult, Module};
use crate::server::Server;

pub struct Register;

/// What a `set` asks for.
pub enum RegisterRequest {
    Credentials { username: String, password: String },
    Remove,
}

impl RegisterRequest {
    /// A `set`'s query: `<remove/>`, a submitted `jabber:iq:register` data form (XEP-0077
    /// §6, what Dino sends), or the legacy `<username/>` and `<password/>` fields (§3.1).
    pub fn parse(query: &Element) -> Result<RegisterRequest, StanzaError> {
        if query.has_child("remove", ns::REGISTER) {
            return Ok(RegisterRequest::Remove);
        }
        let (username, password) = match submitted_form(query)? {
            Some(form) => (
                forms::value(form, "username"),
                forms::value(form, "password"),
            ),
            None => {
                let field = |name| query.get_child(name, ns::REGISTER).map(|e| e.text());
                (field("username"), field("password"))
            }
        };
        match (username, password) {
            (Some(username), Some(password)) if !username.is_empty() && !password.is_empty() => {
                Ok(RegisterRequest::Credentials { username, password })
            }
            // XEP-0077 §3.1: missing or empty required fields are not acceptable.
            _ => Err(StanzaError::not_acceptable().with_text("username and password are required")),
        }
    }
}

/// The query's data form, if it has one: it must be a `submit` of `FORM_TYPE`
/// `jabber:iq:register` (XEP-0077 §6, XEP-0068 §3).
fn submitted_form(query: &Element) -> Result<Option<&Element>, StanzaError> {
    let Some(form) = query.get_child("x", ns::DATA_FORMS) else {
        return Ok(None);
    };
    if form.attr("type") != Some("submit") {
        return Err(StanzaError::bad_request().with_text("submit the registration form"));
    }
    match forms::value(form, "FORM_TYPE").as_deref() {
        Some(ns::REGISTER) | None => Ok(Some(form)),
        Some(_) => Err(StanzaError::bad_request().with_text("not a jabber:iq:register form")),
    }
}

/// The registration form (XEP-0077 §3.1): the legacy fields every older client
/// understands, and the same as a data form (§6) for the clients that render only data
/// forms (Dino). Field types are those of the §14.5 registry.
pub fn registration_form() -> Element {
    let instructions = "Choose a username and password.";
    Element::new("query", ns::REGISTER)
        .with_child(Element::new("instructions", ns::REGISTER).with_text(instructions))
        .with_child(Element::new("username", ns::REGISTER))
        .with_child(Element::new("password", ns::REGISTER))
        .with_child(data_form(instructions, None))
}

/// The `jabber:iq:register` data form; `username` pre-filled for a registered account.
fn data_form(instructions: &str, username: Option<&str>) -> Element {
    let required = |var: &str, kind: &str, label: &str, value: Option<&str>| {
        let values: Vec<&str> = value.into_iter().collect();
        forms::field(var, kind, Some(label), &values)
            .with_child(Element::new("required", ns::DATA_FORMS))
    };
    forms::form("form")
        .with_child(forms::text("title", "Account"))
        .with_child(forms::text("instructions", instructions))
        .with_child(forms::form_type_field(ns::REGISTER))
        .with_child(required("username", "text-single", "Username", username))
        .with_child(required("password", "text-private", "Password", None))
}

/// Creates `username@domain`, mapping failures to the XEP-0077 errors.
pub async fn create_account(
    server: &Server,
    username: &str,
    domain: &str,
    password: &str,
) -> Result<(), StanzaError> {
    if username.contains(['@', '/']) {
        return Err(StanzaError::not_acceptable().with_text("invalid username"));
    }
    let user = accounts::parse_user(&format!("{username}@{domain}"), &server.config)
        .map_err(|_| StanzaError::not_acceptable().with_text("invalid username"))?;
    match accounts::create(&server.store, &user, password).await {
        Ok(()) => {
            tracing::info!(jid = %user, "account registered in-band");
            Ok(())
        }
        Err(AccountError::Exists) => Err(StanzaError::conflict()),
        Err(AccountError::EmptyPassword) => Err(StanzaError::not_acceptable()),
        Err(e) => {
            tracing::warn!(error = %e, "registration failed");
            Err(StanzaError::internal_server_error())
        }
    }
}

#[async_trait]
impl Module for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::REGISTER]
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::REGISTER]
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        let user = iq.from.bare();
        // Only about one's own account: addressed to the server, or sent without `to`,
        // which RFC 6120 §10.3.3 makes the account's own bare JID (XEP-0077 §3.2 and §3.3
        // show requests without `to`).
        let to_own_account = iq.to.resource().is_none() && iq.to.bare() == user;
        if (iq.to.node().is_some() && !to_own_account)
            || !ctx.server.config.serves(user.domain().as_str())
        {
            return Err(StanzaError::service_unavailable());
        }
        match iq.kind {
            IqType::Get => Ok(Some(registered_form(&user))),
            _ => match RegisterRequest::parse(&iq.payload)? {
                RegisterRequest::Credentials { username, password } => {
                    change_password(ctx, &user, &username, &password)
                        .await
                        .map(|_| None)
                }
                RegisterRequest::Remove => remove_account(ctx, &iq.from, &user).await.map(|_| None),
            },
        }
    }
}

/// XEP-0077 §3.2: `<registered/>`, and the fields (legacy and data form) a password
/// change submits.
fn registered_form(user: &BareJid) -> Element {
    let username = accounts::username(user);
    Element::new("query", ns::REGISTER)
        .with_child(Element::new("registered", ns::REGISTER))
        .with_child(Element::new("username", ns::REGISTER).with_text(username))
        .with_child(Element::new("password", ns::REGISTER))
        .with_child(data_form("Choose a new password.", Some(username)))
}

/// XEP-0077 §3.3.
async fn change_password(
    ctx: &Ctx,
    user: &BareJid,
    username: &str,
    password: &str,
) -> Result<(), StanzaError> {
    let named = BareJid::new(&format!("{username}@{}", user.domain())).ok();
    if named.as_ref() != Some(user) {
        return Err(StanzaError::not_allowed().with_text("you can change only your own password"));
    }
    accounts::set_password(&ctx.server.store, user, password)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "password change failed");
            StanzaError::internal_server_error()
        })?;
    tracing::info!(jid = %user, "password changed in-band");
    Ok(())
}

/// XEP-0077 §3.2: the account's contacts see it go offline and lose their subscriptions;
/// the result goes out first, then every session of the account is closed.
pub(crate) async fn remove_account(
    ctx: &Ctx,
    from: &corvid_proto::Jid,
    user: &BareJid,
) -> Result<(), StanzaError> {
    // RFC 6121 §3.2/§3.3 as if the user cancelled every subscription, so contacts see it
    // happen like any other cancellation.
    if let Ok(from) = from.clone().try_into_full() {
        let (username, domain) = Ctx::key(user);
        let items = corvid_store::Rosters::roster(&ctx.server.store, username, domain)
            .await
            .map(|(_, items)| items)
            .unwrap_or_default();
        for item in items {
            let Ok(contact) = BareJid::new(&item.jid) else {
                continue;
            };
            if item.subscription.has_from() || item.pending_in {
                super::roster::send_subscription(ctx, &from, &contact, "unsubscribed").await;
            }
            if item.subscription.has_to() || item.pending_out {
                super::roster::send_subscription(ctx, &from, &contact, "unsubscribe").await;
            }
        }
    }
    for (resource, state) in ctx.server.sessions.states(user) {
        if state.available {
            // Announced now: once the roster is gone, logout has no one to tell.
            let unavailable = Element::new("presence", ns::CLIENT)
                .with_attr("type", "unavailable")
                .with_attr("from", resource.as_str());
            ctx.route_from_client(unavailable).await;
        }
    }
    let updated = accounts::remove(&ctx.server.store, user, &ctx.server.config)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "account removal failed");
            StanzaError::internal_server_error()
        })?;
    // Its PEP nodes went with it in the store; none may linger in memory either.
    ctx.server.pubsub.forget(user.as_str());
    for (contact, item, version) in updated {
        super::roster::push(ctx, &contact, &super::roster::item_element(&item), version);
    }
    tracing::info!(jid = %user, "account removed in-band");
    let sessions = ctx.server.clone();
    let user = user.clone();
    tokio::spawn(async move {
        // Let the IQ result reach the session's queue before it is told to close.
        tokio::task::yield_now().await;
        sessions.sessions.close_user(
            &user,
            StreamError::with_text(
                StreamErrorCondition::NotAuthorized,
                "The account was removed",
            ),
        );
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::muc::form_registry::departures;

    fn form_of(query: &Element) -> &Element {
        query
            .get_child("x", ns::DATA_FORMS)
            .expect("the query has a data form")
    }

    fn submitted(fields: &[(&str, &str)]) -> Element {
        Element::new("query", ns::REGISTER).with_child(forms::submit(fields))
    }

    #[test]
    fn the_registration_forms_match_the_xep_0077_registry() {
        let user = BareJid::new("alice@x").unwrap();
        for query in [registration_form(), registered_form(&user)] {
            assert_eq!(departures(form_of(&query)), Vec::<String>::new());
        }
    }

    #[test]
    fn a_submitted_form_and_the_legacy_fields_both_give_credentials() {
        let form = submitted(&[
            ("FORM_TYPE", ns::REGISTER),
            ("username", "dino"),
            ("password", "pw"),
        ]);
        let legacy = Element::new("query", ns::REGISTER)
            .with_child(Element::new("username", ns::REGISTER).with_text("dino"))
            .with_child(Element::new("password", ns::REGISTER).with_text("pw"));
        for query in [form, legacy] {
            match RegisterRequest::parse(&query) {
                Ok(RegisterRequest::Credentials { username, password }) => {
                    assert_eq!((username.as_str(), password.as_str()), ("dino", "pw"));
                }
                _ => panic!("no credentials from {query}"),
            }
        }
    }

    #[test]
    fn an_incomplete_or_foreign_form_is_refused() {
        let missing = submitted(&[("FORM_TYPE", ns::REGISTER), ("username", "dino")]);
        let foreign = submitted(&[
            ("FORM_TYPE", "urn:example"),
            ("username", "dino"),
            ("password", "pw"),
        ]);
        let conditions: Vec<_> = [missing, foreign]
            .iter()
            .map(|q| RegisterRequest::parse(q).err().map(|e| e.condition))
            .collect();
        assert_eq!(conditions, [Some("not-acceptable"), Some("bad-request")]);
    }
}
