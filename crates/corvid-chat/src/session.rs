//! A logged-in session: the client with the modules corvid-chat uses attached, connected.

use std::sync::Arc;

use anyhow::Context;
use corvid_client::{
    Client, Events, Mam, MemoryRosterStorage, MemoryVCardStorage, ReceiptEvents, Receipts, Roster,
    RosterEvents, VCards,
};
use corvid_proto::ns;
use corvid_xml::Element;

use crate::account::Account;

/// A connected client and its modules.
pub struct Session {
    pub client: Client,
    pub events: Events,
    pub roster: Arc<Roster>,
    pub roster_events: RosterEvents,
    pub receipts: Arc<Receipts>,
    pub receipt_events: ReceiptEvents,
    pub vcards: Arc<VCards>,
    pub mam: Arc<Mam>,
}

impl Session {
    /// Logs in to `account`. Modules are attached before connecting, so nothing is missed;
    /// receipts are answered (XEP-0184) whatever the command.
    pub async fn connect(account: &Account) -> anyhow::Result<Session> {
        let password = account.password()?;
        let mut builder = Client::builder(account.jid.clone(), password)
            .security(account.security)
            .verification(account.verification()?);
        if let Some((host, port)) = &account.server {
            builder = builder.server(host.clone(), *port);
        }
        if let Some(resource) = &account.resource {
            builder = builder.resource(resource.clone());
        }
        let (client, events) = builder.build();
        let (roster, roster_events) =
            Roster::attach(&client, Arc::new(MemoryRosterStorage::default()));
        let (receipts, receipt_events) = Receipts::attach(&client, true);
        let vcards = VCards::attach(&client, Arc::new(MemoryVCardStorage::default()));
        let mam = Mam::attach(&client);
        client
            .connect()
            .await
            .with_context(|| format!("cannot log in as {}", account.jid))?;
        Ok(Session {
            client,
            events,
            roster,
            roster_events,
            receipts,
            receipt_events,
            vcards,
            mam,
        })
    }

    /// Initial presence (RFC 6121 §4.2): messages to the bare JID reach us, contacts'
    /// presences come in.
    pub async fn go_online(&self) -> anyhow::Result<()> {
        self.client
            .send(&Element::new("presence", ns::CLIENT))
            .await?;
        Ok(())
    }

    /// Whether the account's archive can be queried (XEP-0313 §7: the account's bare JID
    /// advertises `urn:xmpp:mam:2`).
    pub async fn has_mam(&self) -> bool {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("to", self.client.account().as_str())
            .with_child(Element::new("query", ns::DISCO_INFO));
        let Ok(info) = self.client.request(iq).await else {
            return false;
        };
        info.get_child("query", ns::DISCO_INFO).is_some_and(|q| {
            q.children()
                .any(|f| f.is("feature", ns::DISCO_INFO) && f.attr("var") == Some(ns::MAM))
        })
    }
}
