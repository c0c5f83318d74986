//! XEP-0357 push notifications: a client registers an app server (a JID and a node that
//! stands for its device); when a message waits for that client — stored offline, or
//! held for its stream-management session whose connection dropped — the server publishes
//! a summary to the app server, which wakes the device through its vendor's push service.
//!
//! Registrations are kept with the account (`corvid-store`'s `PushRegistrations`), so
//! they survive restarts. A message stored offline notifies every registration of the
//! account; one held for a detached session notifies the registration that session made,
//! as only its device needs waking. An app server that answers with a permanent error
//! (anything but `wait`) has its registration removed, as XEP-0357 §9 suggests.
//!
//! What the notification tells the app server is configurable (`[push]`): the sender by
//! default, the body only when asked, since the app server (and the vendor's push
//! service behind it) is a third party.

use std::time::Duration;

use async_trait::async_trait;
use corvid_proto::{Bare, BareJid, Iq, IqType, Jid, StanzaError, forms, ns};
use corvid_store::{PushRegistration, PushRegistrations as _, StoreError};
use corvid_xml::Element;
use dashmap::DashMap;

use crate::module::{Ctx, IqResult, Module, SessionEvent};
use crate::sessions::SessionId;

/// How long an app server may take to answer a notification.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Push {
    /// The registration each bound session made last: a detached session notifies only its own.
    by_session: DashMap<SessionId, (String, String)>,
}

#[async_trait]
impl Module for Push {
    fn name(&self) -> &'static str {
        "push"
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::PUSH]
    }

    /// XEP-0357 §4: the account's server says it can push on the account's behalf.
    fn account_features(&self) -> &[&'static str] {
        &[ns::PUSH]
    }

    async fn handle_iq(&self, ctx: &Ctx, iq: Iq) -> IqResult {
        if iq.kind != IqType::Set {
            return Err(StanzaError::bad_request());
        }
        // Only the account itself enables pushes for itself.
        let user = iq.from.bare();
        if iq.to.node().is_none() || iq.to.bare() != user || iq.to.resource().is_some() {
            return Err(StanzaError::forbidden());
        }
        let (username, domain) = Ctx::key(&user);
        let payload = &iq.payload;
        let service = payload
            .attr("jid")
            .and_then(|j| Jid::new(j).ok())
            .ok_or_else(|| {
                StanzaError::bad_request().with_text("A push service jid is required")
            })?;
        let node = payload.attr("node").filter(|n| !n.is_empty());
        let store = &ctx.server.store;
        match payload.name() {
            "enable" => {
                let node =
                    node.ok_or_else(|| StanzaError::bad_request().with_text("A node is required"))?;
                let registration = PushRegistration {
                    service: service.to_string(),
                    node: node.to_string(),
                    options: publish_options(payload),
                };
                store
                    .add_push_registration(username, domain, &registration)
                    .await
                    .map_err(store_error)?;
                if let Ok(full) = iq.from.clone().try_into_full()
                    && let Some((id, ())) = ctx.server.sessions.update_session(&full, |_| ())
                {
                    self.by_session
                        .insert(id, (registration.service, registration.node));
                }
                Ok(None)
            }
            "disable" => {
                let service = service.to_string();
                store
                    .remove_push_registrations(username, domain, &service, node)
                    .await
                    .map_err(store_error)?;
                self.by_session
                    .retain(|_, (s, n)| !(*s == service && node.is_none_or(|node| node == n)));
                Ok(None)
            }
            _ => Err(StanzaError::bad_request()),
        }
    }

    async fn on_message_waiting(
        &self,
        ctx: &Ctx,
        to: &BareJid,
        session: Option<SessionId>,
        msg: &Element,
    ) {
        // A detached session wakes only the device that registered through it.
        let own = match session {
            Some(id) => match self.by_session.get(&id) {
                Some(target) => Some(target.clone()),
                None => return,
            },
            None => None,
        };
        let (username, domain) = Ctx::key(to);
        let registrations = match ctx.server.store.push_registrations(username, domain).await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "reading push registrations failed");
                return;
            }
        };
        let config = &ctx.server.config.push;
        let summary = summary(msg, config.include_sender, config.include_body);
        for registration in registrations {
            if own
                .as_ref()
                .is_some_and(|(s, n)| *s != registration.service || *n != registration.node)
            {
                continue;
            }
            notify(ctx, to, registration, summary.clone()).await;
        }
    }

    async fn on_session(&self, _ctx: &Ctx, event: &SessionEvent) {
        if let SessionEvent::Closed { id, .. } = event {
            self.by_session.remove(id);
        }
    }
}

/// The `publish-options` form of an `<enable/>`, serialized, if it has one (§5).
fn publish_options(enable: &Element) -> String {
    enable
        .children()
        .find(|x| {
            x.is("x", ns::DATA_FORMS)
                && forms::value(x, "FORM_TYPE").as_deref() == Some(ns::PUBSUB_PUBLISH_OPTIONS)
        })
        .map(|x| String::from_utf8_lossy(&x.to_bytes(ns::CLIENT)).into_owned())
        .unwrap_or_default()
}

/// The `urn:xmpp:push:summary` form of a notification (XEP-0357 §7).
fn summary(msg: &Element, include_sender: bool, include_body: bool) -> Element {
    let mut form = forms::form("submit").with_child(forms::form_type_field(ns::PUSH_SUMMARY));
    form.append_child(forms::field("message-count", "text-single", None, &["1"]));
    if include_sender && let Some(from) = msg.attr("from") {
        form.append_child(forms::field(
            "last-message-sender",
            "jid-single",
            None,
            &[from],
        ));
    }
    if include_body && let Some(body) = msg.get_child("body", ns::CLIENT) {
        let body = body.text();
        form.append_child(forms::field(
            "last-message-body",
            "text-single",
            None,
            &[&body],
        ));
    }
    form
}

/// Publishes one notification (§7) now, and drops the registration if the app server
/// refuses it for good (its answer is awaited in a task of its own).
async fn notify(ctx: &Ctx, user: &BareJid, registration: PushRegistration, summary: Element) {
    let Ok(service) = Jid::new(&registration.service) else {
        return;
    };
    let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(
        Element::new("publish", ns::PUBSUB)
            .with_attr("node", registration.node.as_str())
            .with_child(
                Element::new("item", ns::PUBSUB)
                    .with_child(Element::new("notification", ns::PUSH).with_child(summary)),
            ),
    );
    if let Ok(options) = corvid_xml::parse_element(&registration.options, ns::CLIENT) {
        pubsub.append_child(Element::new("publish-options", ns::PUBSUB).with_child(options));
    }
    let server = &ctx.server;
    let (id, answer) = server.iq_tracker.register(service.clone());
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", id.as_str())
        .with_attr("from", user.as_str())
        .with_attr("to", service.as_str())
        .with_child(pubsub);
    ctx.route(iq).await;
    tokio::spawn(forget_refused(
        ctx.clone(),
        user.clone(),
        registration,
        id,
        answer,
    ));
}

async fn forget_refused(
    ctx: Ctx,
    user: BareJid,
    registration: PushRegistration,
    id: String,
    answer: tokio::sync::oneshot::Receiver<Element>,
) {
    let server = &ctx.server;
    let service = &registration.service;
    let Some(answer) = server.iq_tracker.wait(&id, answer, ANSWER_TIMEOUT).await else {
        tracing::debug!(service = %service, "push service did not answer");
        return;
    };
    if answer.attr("type") != Some("error") {
        return;
    }
    let temporary = answer
        .get_child("error", ns::CLIENT)
        .is_some_and(|e| e.attr("type") == Some("wait"));
    if temporary {
        return;
    }
    tracing::info!(service = %service, node = registration.node, "push service refused a notification; registration removed");
    let (username, domain) = Ctx::key(&user);
    let removed = server
        .store
        .remove_push_registrations(
            username,
            domain,
            &registration.service,
            Some(&registration.node),
        )
        .await;
    if let Err(e) = removed {
        tracing::warn!(error = %e, "removing a push registration failed");
    }
}

fn store_error(e: StoreError) -> StanzaError {
    match e {
        StoreError::NotFound => StanzaError::item_not_found(),
        e => {
            tracing::warn!(error = %e, "push registration storage failed");
            StanzaError::internal_server_error()
        }
    }
}
