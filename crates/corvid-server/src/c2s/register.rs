//! In-band registration before authentication (XEP-0077 §3.1): the form, and account
//! creation when registration is open.

use corvid_proto::{StanzaError, StreamError, StreamErrorCondition as Cond, ns};
use corvid_xml::Element;

use super::session::{End, Session};
use crate::modules::register::{RegisterRequest, create_account, registration_form};

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
                    create_account(&self.server, &username, &self.domain, &password)
                        .await
                        .map(|_| None)
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
