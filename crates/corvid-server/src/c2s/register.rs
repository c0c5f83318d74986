//! In-band registration before authentication (XEP-0077 §3.1): the form, and account
//! creation when registration is open.
//!
//! Registrations are paced per address (`limits.registrations_per_sec_per_ip`): over the
//! rate a request waits for its turn, so a burst from one address (a NAT, a provisioning
//! script) is slowed, not failed; one that would wait longer than
//! [`MAX_REGISTRATION_WAIT`] gets `resource-constraint` with a text saying when to retry
//! (XEP-0077 §3.1 lets the server refuse; the stream stays up).

use std::time::{Duration, Instant};

use corvid_proto::{StanzaError, StreamError, StreamErrorCondition as Cond, ns};
use corvid_xml::Element;

use super::session::{End, Session};
use crate::modules::register::{RegisterRequest, create_account, registration_form};

/// The longest a registration waits for its address's turn before it is refused.
pub(crate) const MAX_REGISTRATION_WAIT: Duration = Duration::from_secs(10);

impl Session {
    pub(super) async fn on_pre_auth_register(&mut self, iq: Element) -> Result<(), End> {
        if !self.transport.is_tls() && self.server.config.c2s.require_tls {
            return Err(self
                .fail(StreamError::with_text(
                    Cond::PolicyViolation,
                    "Use TLS first",
                ))
                .await);
        }
        let Some(query) = iq.get_child("query", ns::REGISTER) else {
            return self.reply_error(&iq, StanzaError::bad_request()).await;
        };
        if !self.server.config.registration_open() {
            return self.reply_error(&iq, StanzaError::not_allowed()).await;
        }
        let payload = match iq.attr("type") {
            Some("get") => Ok(Some(registration_form())),
            Some("set") => match RegisterRequest::parse(query) {
                Ok(RegisterRequest::Credentials { username, password }) => {
                    match self.registration_turn().await {
                        Ok(()) => create_account(&self.server, &username, &self.domain, &password)
                            .await
                            .map(|_| None),
                        Err(err) => Err(err),
                    }
                }
                Ok(RegisterRequest::Remove) => Err(StanzaError::not_authorized()),
                Err(err) => Err(err),
            },
            _ => Err(StanzaError::bad_request()),
        };
        match payload {
            Ok(payload) => {
                let mut result = Element::new("iq", ns::CLIENT).with_attr("type", "result");
                if let Some(id) = iq.attr("id") {
                    result.set_attr("id", id);
                }
                if let Some(payload) = payload {
                    result.append_child(payload);
                }
                self.send(&result).await
            }
            Err(err) => self.reply_error(&iq, err).await,
        }
    }
}

impl Session {
    /// Waits for this address's turn to register, or says why it may not.
    async fn registration_turn(&mut self) -> Result<(), StanzaError> {
        let key = self.guard.key();
        let server = &self.server;
        match server.registrations.reserve(key, Instant::now()) {
            Ok(wait) if wait.is_zero() => Ok(()),
            Ok(wait) => {
                let delayed = &server.connections.counters.registrations_delayed;
                server
                    .connections
                    .note(key, "registrations paced: address over its rate", delayed);
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Err(retry_after) => {
                let refused = &server.connections.counters.registrations_refused;
                server.connections.note(
                    key,
                    "registration refused: address far over its rate",
                    refused,
                );
                let secs = retry_after.as_secs().max(1);
                Err(StanzaError::resource_constraint().with_text(format!(
                    "Too many registrations from your address; try again in {secs} s"
                )))
            }
        }
    }
}
