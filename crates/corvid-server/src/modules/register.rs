//! XEP-0077 In-Band Registration for authenticated users (change password, cancel the
//! account), and the form and account creation the pre-authentication c2s path shares.

use async_trait::async_trait;
use corvid_proto::Bare;
use corvid_proto::{BareJid, Iq, IqType, StanzaError, StreamError, StreamErrorCondition, ns};
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
    pub fn parse(query: &Element) -> Result<RegisterRequest, StanzaError> {
        if query.has_child("remove", ns::REGISTER) {
            return Ok(RegisterRequest::Remove);
        }
        let field = |name| query.get_child(name, ns::REGISTER).map(|e| e.text());
        match (field("username"), field("password")) {
            (Some(username), Some(password)) if !username.is_empty() && !password.is_empty() => {
                Ok(RegisterRequest::Credentials { username, password })
            }
            // XEP-0077 §3.1: missing or empty required fields are not acceptable.
            _ => Err(StanzaError::not_acceptable().with_text("username and password are required")),
        }
    }
}

/// The registration form (XEP-0077 §3.1, the plain fields every client understands).
pub fn registration_form() -> Element {
    Element::new("query", ns::REGISTER)
        .with_child(
            Element::new("instructions", ns::REGISTER).with_text("Choose a username and password."),
        )
        .with_child(Element::new("username", ns::REGISTER))
        .with_child(Element::new("password", ns::REGISTER))
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

fn registered_form(user: &BareJid) -> Element {
    Element::new("query", ns::REGISTER)
        .with_child(Element::new("registered", ns::REGISTER))
        .with_child(Element::new("username", ns::REGISTER).with_text(accounts::username(user)))
        .with_child(Element::new("password", ns::REGISTER))
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
async fn remove_account(
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
