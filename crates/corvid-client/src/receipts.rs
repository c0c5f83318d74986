//! Message delivery receipts (XEP-0184; XMPPFramework's `XMPPMessageDeliveryReceipts`).
//!
//! [`Receipts::send`] asks for a receipt with the message it sends and returns the id the
//! receipt will name; when it comes, a [`ReceiptEvent::Received`] says so. Messages that
//! ask for a receipt are answered at once when `auto_answer` is on (XMPPFramework's
//! `autoSendMessageDeliveryReceipts`), and still reach the application.

use std::sync::Arc;

use corvid_proto::ns;
use corvid_xml::Element;
use tokio::sync::mpsc;

use crate::client::{Client, Handled, StanzaHandler};
use crate::error::RequestError;

/// What the receipts module reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptEvent {
    /// `from` got our message `id`.
    Received {
        /// Who got it.
        from: String,
        /// Our message's id.
        id: String,
    },
}

/// The receipts module's end of its events.
#[derive(Debug)]
pub struct ReceiptEvents {
    receiver: mpsc::UnboundedReceiver<ReceiptEvent>,
}

impl ReceiptEvents {
    /// The next event; `None` once the module is gone.
    pub async fn next(&mut self) -> Option<ReceiptEvent> {
        self.receiver.recv().await
    }
}

/// Receipts for one client.
#[derive(Debug)]
pub struct Receipts {
    client: Client,
}

#[derive(Debug)]
struct Hook {
    auto_answer: bool,
    events: mpsc::UnboundedSender<ReceiptEvent>,
}

impl StanzaHandler for Hook {
    fn handle(&self, stanza: &Element) -> Handled {
        if stanza.name() != "message" || stanza.attr("type") == Some("error") {
            return Handled::No;
        }
        let from = stanza.attr("from").unwrap_or_default();
        if let Some(received) = stanza.get_child("received", ns::RECEIPTS) {
            if let Some(id) = received.attr("id") {
                let _ = self.events.send(ReceiptEvent::Received {
                    from: from.to_owned(),
                    id: id.to_owned(),
                });
            }
            return Handled::No;
        }
        // XEP-0184 §5.1: answer a request on a message with an id, never on groupchat (the
        // room would reflect it to everyone).
        let asked = stanza.has_child("request", ns::RECEIPTS);
        match (asked && self.auto_answer, stanza.attr("id")) {
            (true, Some(id)) if !from.is_empty() && stanza.attr("type") != Some("groupchat") => {
                let mut receipt = Element::new("message", ns::CLIENT)
                    .with_attr("to", from)
                    .with_child(Element::new("received", ns::RECEIPTS).with_attr("id", id));
                if let Some(kind) = stanza.attr("type") {
                    receipt.set_attr("type", kind);
                }
                Handled::Also(receipt)
            }
            _ => Handled::No,
        }
    }
}

impl Receipts {
    /// Receipts for `client`; with `auto_answer`, messages asking for one are answered.
    pub fn attach(client: &Client, auto_answer: bool) -> (Arc<Receipts>, ReceiptEvents) {
        let (events, receiver) = mpsc::unbounded_channel();
        client.add_handler(Arc::new(Hook {
            auto_answer,
            events,
        }));
        let receipts = Arc::new(Receipts {
            client: client.clone(),
        });
        (receipts, ReceiptEvents { receiver })
    }

    /// Sends `message` asking for a receipt; the id the receipt will name (the message's
    /// own, or a new one).
    pub async fn send(&self, mut message: Element) -> Result<String, RequestError> {
        let id = match message.attr("id") {
            Some(id) => id.to_owned(),
            None => {
                let id = self.client.new_id();
                message.set_attr("id", id.clone());
                id
            }
        };
        if !message.has_child("request", ns::RECEIPTS) {
            message.append_child(Element::new("request", ns::RECEIPTS));
        }
        self.client.send(&message).await?;
        Ok(id)
    }
}
