//! A logged-in session: the client with the modules corvid-chat uses attached, connected;
//! for the commands that stay online, one that comes back by itself after a lost
//! connection (the SDK's [`Reconnect`] policy).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use corvid_client::{
    Client, Events, Mam, MemoryRosterStorage, MemoryVCardStorage, Muc, MucEvents, ReceiptEvents,
    Receipts, Reconnect, Roster, RosterEvents, VCards,
};
use corvid_proto::ns;
use corvid_xml::Element;

use crate::account::Account;

/// The longest wait between two reconnection attempts: a person at the terminal should not
/// wait a minute once the network is back.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(15);

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
    pub muc: Arc<Muc>,
    pub muc_events: MucEvents,
}

/// How long a session lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// One thing, then gone: a lost connection is an error.
    Brief,
    /// Until told to stop: a lost connection is brought back, resuming the session (XEP-0198)
    /// or catching up from the archive, so no message is missed or seen twice.
    Lasting,
}

impl Session {
    /// Logs in to `account`. Modules are attached before connecting, so nothing is missed;
    /// receipts are answered (XEP-0184) whatever the command.
    pub async fn connect(account: &Account, lifetime: Lifetime) -> anyhow::Result<Session> {
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
        if lifetime == Lifetime::Lasting {
            builder = builder.reconnect(Reconnect::default().max_delay(MAX_RECONNECT_DELAY));
        }
        let (client, events) = builder.build();
        let (roster, roster_events) =
            Roster::attach(&client, Arc::new(MemoryRosterStorage::default()));
        let (receipts, receipt_events) = Receipts::attach(&client, true);
        let vcards = VCards::attach(&client, Arc::new(MemoryVCardStorage::default()));
        let mam = Mam::attach(&client);
        let (muc, muc_events) = Muc::attach(&client);
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
            muc,
            muc_events,
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

    /// Whether the account's archive can be queried.
    pub async fn has_mam(&self) -> bool {
        keeps_archive(&self.client, self.client.account().as_str()).await
    }
}

/// Whether `jid` (the account, or a room) keeps an archive that can be queried (XEP-0313
/// §7: it advertises `urn:xmpp:mam:2`).
pub async fn keeps_archive(client: &Client, jid: &str) -> bool {
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", jid)
        .with_child(Element::new("query", ns::DISCO_INFO));
    let Ok(info) = client.request(iq).await else {
        return false;
    };
    info.get_child("query", ns::DISCO_INFO).is_some_and(|q| {
        q.children()
            .any(|f| f.is("feature", ns::DISCO_INFO) && f.attr("var") == Some(ns::MAM))
    })
}
