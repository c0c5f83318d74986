//! What every example needs: the account and its server, from the environment.
//!
//! - `CORVID_JID`, `CORVID_PASSWORD`: the account (required).
//! - `CORVID_SERVER`: `host:port` to connect to; without it the domain is looked up in DNS.
//! - `CORVID_CERT`: a PEM certificate file the server must present (a self-signed test
//!   server's); without it the certificate is checked against the system's roots.
//! - `CORVID_PEER`: the JID of someone to talk to, for the examples that need one.

#![allow(dead_code)] // each example uses what it needs

use std::error::Error;
use std::time::Duration;

use corvid_client::{Client, ClientBuilder, Event, Events, Verification};
use corvid_proto::BareJid;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// How long an example waits for something before giving up.
pub const WAIT: Duration = Duration::from_secs(15);

fn var(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/common/mod.rs)").into())
}

/// A client builder for the account in the environment.
pub fn builder() -> Result<ClientBuilder> {
    let jid: BareJid = var("CORVID_JID")?.parse()?;
    let mut builder = Client::builder(jid, var("CORVID_PASSWORD")?);
    if let Ok(server) = std::env::var("CORVID_SERVER") {
        let (host, port) = server
            .rsplit_once(':')
            .ok_or("CORVID_SERVER is host:port")?;
        builder = builder.server(host, port.parse()?);
    }
    if let Ok(path) = std::env::var("CORVID_CERT") {
        let cert = CertificateDer::from_pem_file(&path)?;
        builder = builder.verification(Verification::Pinned(vec![cert]));
    }
    Ok(builder)
}

/// The peer to talk to.
pub fn peer() -> Result<String> {
    var("CORVID_PEER")
}

/// Waits for the first event `wanted` accepts, printing the others.
pub async fn wait_for(
    events: &mut Events,
    what: &str,
    wanted: impl Fn(&Event) -> bool,
) -> Result<Event> {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if wanted(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err(format!("the stream ended before {what}").into()),
        Err(_) => Err(format!("no {what} within {WAIT:?}").into()),
    }
}
