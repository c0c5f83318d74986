//! Message carbons (XEP-0280; XMPPFramework's `XMPPMessageCarbons`): copies of the
//! account's conversations on its other devices.
//!
//! [`Carbons::attach`] unwraps carbon copies into [`CarbonEvent`]s (and keeps them from the
//! application's message events); [`Carbons::enable`] asks the server for them. Only
//! copies from the account's own bare JID are believed (XEP-0280 §11: anyone else sending
//! one is forging a conversation).

use std::sync::Arc;

use corvid_proto::{Jid, ns};
use corvid_xml::Element;
use tokio::sync::mpsc;

use crate::client::{Client, Handled, StanzaHandler};
use crate::error::RequestError;

/// A copy of a message of the account's, seen from another of its devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CarbonEvent {
    /// Another resource received this message.
    Received(Element),
    /// Another resource sent this message.
    Sent(Element),
}

#[derive(Debug)]
struct Hook {
    account: String,
    events: mpsc::UnboundedSender<CarbonEvent>,
}

impl StanzaHandler for Hook {
    fn handle(&self, stanza: &Element) -> Handled {
        if stanza.name() != "message" {
            return Handled::No;
        }
        let wrapper = stanza
            .children()
            .find(|c| c.ns() == ns::CARBONS && matches!(c.name(), "received" | "sent"));
        let Some(wrapper) = wrapper else {
            return Handled::No;
        };
        let from_account = stanza
            .attr("from")
            .and_then(|from| Jid::new(from).ok())
            .is_some_and(|from| from.to_string() == self.account);
        if !from_account {
            // A forged copy: dropped, neither a carbon nor a message.
            return Handled::Yes;
        }
        let inner = wrapper
            .get_child("forwarded", ns::FORWARD)
            .and_then(|f| f.get_child("message", ns::CLIENT))
            .cloned();
        if let Some(inner) = inner {
            let event = if wrapper.name() == "received" {
                CarbonEvent::Received(inner)
            } else {
                CarbonEvent::Sent(inner)
            };
            let _ = self.events.send(event);
        }
        Handled::Yes
    }
}

/// Carbons for one client.
#[derive(Debug)]
pub struct Carbons {
    client: Client,
}

impl Carbons {
    /// Unwraps the carbons `client` gets; attach before connecting.
    pub fn attach(client: &Client) -> (Arc<Carbons>, mpsc::UnboundedReceiver<CarbonEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        client.add_handler(Arc::new(Hook {
            account: client.account().to_string(),
            events,
        }));
        (
            Arc::new(Carbons {
                client: client.clone(),
            }),
            receiver,
        )
    }

    /// Asks the server to send this resource carbons (XEP-0280 §4).
    pub async fn enable(&self) -> Result<(), RequestError> {
        self.switch("enable").await
    }

    /// Stops them.
    pub async fn disable(&self) -> Result<(), RequestError> {
        self.switch("disable").await
    }

    async fn switch(&self, what: &str) -> Result<(), RequestError> {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(Element::new(what, ns::CARBONS));
        self.client.request(iq).await.map(|_| ())
    }
}
