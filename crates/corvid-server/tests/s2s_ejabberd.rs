//! Federation with a real ejabberd (the Debian package, 23.01), started by each test on
//! loopback serving `e.test` (with its MUC service at `conference.e.test`), while Corvid
//! serves `a.test`: chat both ways over Server Dialback (self-signed certificates) and over
//! SASL EXTERNAL (certificates from a test CA both trust), presence subscriptions both
//! ways, a user of either server in a room of the other's, and avatars both ways (the
//! room and avatar scenarios are common/services.rs's, which Prosody also runs).
//!
//! Corvid finds ejabberd through its `[s2s] hosts` map. ejabberd has no such map: it looks
//! up `_xmpp-server._tcp.<domain>` SRV records with Erlang's own resolver (`inet_res`), then
//! the target's address with the system's `getaddrinfo` (xmpp 1.6.1's
//! `xmpp_stream_out:a_lookup`, so Erlang's `inetrc` host entries do not reach it). The
//! test therefore gives ejabberd's VM a name server of its own (an `inetrc` nameserver
//! line) that answers those SRV queries with `127.0.0.1` and Corvid's s2s port: nothing
//! on the machine (DNS, /etc/hosts) is changed.

#[macro_use]
mod common;
#[path = "../../../tests/shared/dns_server.rs"]
mod dns_server;
#[path = "../../../tests/shared/ejabberd_process.rs"]
mod ejabberd_process;

use std::path::Path;

use anyhow::{Context, Result, ensure};
use common::TestServer;
use common::federation::{
    Identity, PASSWORD, Pki, chat, corvid, create, expect, expect_message, online, self_signed,
};
use common::services::{Federated, Home};
use corvid_client::{Client, Event, Events};
use corvid_proto::ns;
use corvid_server::s2s::{AuthMethod, Direction, State};
use corvid_xml::Element;
use dns_server::{DnsServer, Records};
use ejabberd_process::{Ejabberd, Setup, free_port};

const A: &str = "a.test";
const A_MUC: &str = "conference.a.test";
const E: &str = "e.test";
const E_MUC: &str = "conference.e.test";

/// How the two servers authenticate each other.
enum Trust {
    /// Self-signed certificates on both sides; ejabberd with `mod_s2s_dialback`, whose
    /// default access (`all`) also turns off its own check of Corvid's certificate.
    Dialback,
    /// Certificates from a test CA both trust (ejabberd's `ca_file`), STARTTLS required,
    /// and no `mod_s2s_dialback`: SASL EXTERNAL or nothing.
    SaslExternal,
}

/// Corvid for a.test (with alice) and ejabberd for e.test (with erin), each able to reach
/// the other's s2s port.
struct Federation {
    corvid: TestServer,
    ejabberd: Ejabberd,
    ejabberd_c2s: u16,
    _dns: DnsServer,
    /// Where the self-signed certificates are, or the CA that issued them.
    _certificates: (Option<tempfile::TempDir>, Option<Pki>),
}

impl Federation {
    async fn start(trust: Trust) -> Result<Federation> {
        let (certificates, a, e, ca) = match trust {
            Trust::Dialback => {
                let dir = tempfile::tempdir()?;
                let (a, e) = (self_signed(dir.path(), A)?, self_signed(dir.path(), E)?);
                ((Some(dir), None), a, e, None)
            }
            Trust::SaslExternal => {
                let pki = Pki::new()?;
                let (a, e, ca) = (pki.issue(A)?, pki.issue(E)?, pki.ca_file.clone());
                ((None, Some(pki)), a, e, Some(ca))
            }
        };
        let corvid = corvid(A, &a, ca.as_deref(), |_| {}).await?;
        create(&corvid, "alice@a.test").await?;
        let corvid_s2s = corvid.s2s_addr.context("no s2s port")?.port();
        let dns = DnsServer::start(srv_records(corvid_s2s)).await?;
        let (ejabberd, (ejabberd_c2s, ejabberd_s2s)) = ejabberd_process::start(|dir| {
            let (c2s, s2s) = (free_port()?, free_port()?);
            let setup = Setup {
                config: config(dir, &e, ca.as_deref(), c2s, s2s)?,
                inetrc: inetrc(dns.addr.port()),
                ports: vec![c2s, s2s],
                accounts: vec![("erin".to_owned(), E.to_owned())],
                password: PASSWORD.to_owned(),
            };
            Ok((setup, (c2s, s2s)))
        })
        .await?;
        for domain in [E, E_MUC] {
            corvid
                .server
                .s2s
                .resolver
                .map_host(domain, "127.0.0.1", ejabberd_s2s);
        }
        Ok(Federation {
            corvid,
            ejabberd,
            ejabberd_c2s,
            _dns: dns,
            _certificates: certificates,
        })
    }

    async fn alice(&self) -> Result<User> {
        User::online("alice@a.test", self.corvid.c2s_addr.port()).await
    }

    async fn erin(&self) -> Result<User> {
        User::online("erin@e.test", self.ejabberd_c2s).await
    }

    /// How Corvid's established connection with `remote` in `direction` authenticated.
    fn auth(&self, direction: Direction, remote: &str) -> Option<AuthMethod> {
        self.corvid
            .server
            .s2s
            .connections()
            .into_iter()
            .find(|c| {
                c.direction == direction && c.remote == remote && c.state == State::Established
            })
            .and_then(|c| c.auth)
    }

    /// ejabberd's log, for a failure's context.
    fn log(&self) -> String {
        format!("ejabberd's log:\n{}", self.ejabberd.log())
    }
}

impl Federated for Federation {
    fn corvid_home(&self) -> Home {
        Home::new(A, self.corvid.c2s_addr.port())
    }

    fn foreign_home(&self) -> Home {
        Home::new(E, self.ejabberd_c2s)
    }

    fn foreign_user(&self) -> &'static str {
        "erin"
    }

    fn explain(&self, outcome: Result<()>) -> Result<()> {
        outcome.with_context(|| self.log())
    }
}

/// The VM's resolver asks only the test's name server: /etc/resolv.conf, which it would
/// otherwise read again before each query and prefer, is turned off first.
fn inetrc(dns_port: u16) -> String {
    format!("{{resolv_conf, \"\"}}.\n{{nameserver, {{127,0,0,1}}, {dns_port}}}.\n")
}

/// Corvid's domains, as ejabberd's SRV lookups find them (RFC 6120 §3.2.1): STARTTLS on
/// Corvid's s2s port (no `_xmpps-server` records for direct TLS, XEP-0368), at an address
/// `getaddrinfo` takes as it is.
fn srv_records(corvid_s2s: u16) -> Records {
    [A, A_MUC]
        .into_iter()
        .map(|domain| {
            (
                format!("_xmpp-server._tcp.{domain}."),
                vec![(0, 0, corvid_s2s, "127.0.0.1.".to_owned())],
            )
        })
        .collect()
}

/// Someone logged in (resource `r`), available, with what they receive.
struct User {
    jid: &'static str,
    client: Client,
    events: Events,
}

impl User {
    async fn online(jid: &'static str, port: u16) -> Result<User> {
        let (client, events) = online(jid, port).await?;
        Ok(User {
            jid,
            client,
            events,
        })
    }

    fn full_jid(&self) -> String {
        format!("{}/r", self.jid)
    }

    async fn send(&self, stanza: &Element) -> Result<()> {
        Ok(self.client.send(stanza).await?)
    }
}

/// ejabberd's configuration for `e.test` with `identity` (copied into its directory, which
/// its user owns), trusting `ca` when given (then SASL EXTERNAL only).
fn config(
    dir: &Path,
    identity: &Identity,
    ca: Option<&Path>,
    c2s: u16,
    s2s: u16,
) -> Result<String> {
    std::fs::copy(&identity.cert, dir.join("e.crt"))?;
    std::fs::copy(&identity.key, dir.join("e.key"))?;
    let root = dir.display();
    let trust = match ca {
        Some(ca) => {
            std::fs::copy(ca, dir.join("ca.pem"))?;
            format!("ca_file: \"{root}/ca.pem\"\ns2s_use_starttls: required\n")
        }
        None => "s2s_use_starttls: optional\n".to_owned(),
    };
    let dialback = if ca.is_none() {
        "  mod_s2s_dialback: {}\n"
    } else {
        ""
    };
    Ok(format!(
        r#"hosts: [{E}]
loglevel: info
certfiles: ["{root}/e.crt", "{root}/e.key"]
{trust}# A name server that does not know a name answers at once; one that does not answer
# at all should not hold a test up for long.
s2s_dns_timeout: 2
s2s_dns_retries: 1
listen:
  - port: {c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
  - port: {s2s}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
auth_method: internal
modules:
  mod_caps: {{}}
  mod_disco: {{}}
  mod_muc:
    host: {E_MUC}
  mod_ping: {{}}
  mod_pubsub:
    plugins: [pep]
  mod_roster: {{}}
  mod_vcard: {{}}
  mod_vcard_xupdate: {{}}
{dialback}"#
    ))
}

fn presence(to: &str, kind: &str) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_attr("to", to)
        .with_attr("type", kind)
}

/// A message each way between alice@a.test and erin@e.test.
async fn chat_both_ways(federation: &Federation) -> Result<()> {
    let mut alice = federation.alice().await?;
    let mut erin = federation.erin().await?;
    alice
        .send(&chat(&erin.full_jid(), "hello ejabberd"))
        .await?;
    let got = expect_message(&mut erin.events, "hello ejabberd")
        .await
        .with_context(|| federation.log())?;
    ensure!(got.attr("from") == Some("alice@a.test/r"), "{got}");
    erin.send(&chat(alice.jid, "hello corvid")).await?;
    let got = expect_message(&mut alice.events, "hello corvid")
        .await
        .with_context(|| federation.log())?;
    ensure!(got.attr("from") == Some("erin@e.test/r"), "{got}");
    alice.client.disconnect().await;
    erin.client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn chat_with_ejabberd_over_dialback() -> Result<()> {
    let federation = Federation::start(Trust::Dialback).await?;
    // ejabberd offers SASL EXTERNAL on every TLS stream: Corvid tries it, is refused (its
    // certificate is self-signed) and falls back to dialback. Corvid offers it only for a
    // certificate that verifies, so ejabberd finds no mechanism and does dialback.
    chat_both_ways(&federation).await?;
    let outgoing = federation.auth(Direction::Outgoing, E);
    let incoming = federation.auth(Direction::Incoming, E);
    ensure!(
        outgoing == Some(AuthMethod::Dialback) && incoming == Some(AuthMethod::Dialback),
        "outgoing {outgoing:?}, incoming {incoming:?}; {}",
        federation.log()
    );
    Ok(())
}

#[tokio::test]
async fn chat_with_ejabberd_over_sasl_external_with_trusted_certificates() -> Result<()> {
    let federation = Federation::start(Trust::SaslExternal).await?;
    chat_both_ways(&federation).await?;
    let outgoing = federation.auth(Direction::Outgoing, E);
    let incoming = federation.auth(Direction::Incoming, E);
    ensure!(
        outgoing == Some(AuthMethod::SaslExternal) && incoming == Some(AuthMethod::SaslExternal),
        "outgoing {outgoing:?}, incoming {incoming:?}; {}",
        federation.log()
    );
    Ok(())
}

/// `from`'s presence with `status`, as `to` receives it.
async fn expect_status(to: &mut User, from: &str, status: &str) -> Result<()> {
    expect(
        &mut to.events,
        &format!("{from}'s presence {status:?}"),
        |e| {
            matches!(e, Event::Presence(p) if p.attr("from") == Some(from)
            && p.get_child("status", ns::CLIENT).map(Element::text).as_deref() == Some(status))
        },
    )
    .await?;
    Ok(())
}

/// `subscriber` asks `contact` (who sees the request), and `contact` approves (which
/// `subscriber` sees).
async fn subscribe(subscriber: &mut User, contact: &mut User) -> Result<()> {
    subscriber.send(&presence(contact.jid, "subscribe")).await?;
    let from = subscriber.jid;
    expect(
        &mut contact.events,
        &format!("{from}'s subscription request"),
        |e| {
            matches!(e, Event::Presence(p) if p.attr("type") == Some("subscribe")
            && p.attr("from") == Some(from))
        },
    )
    .await?;
    contact
        .send(&presence(subscriber.jid, "subscribed"))
        .await?;
    let from = contact.jid;
    expect(&mut subscriber.events, &format!("{from}'s approval"), |e| {
        matches!(e, Event::Presence(p) if p.attr("type") == Some("subscribed")
            && p.attr("from") == Some(from))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn presence_subscriptions_both_ways_with_ejabberd() -> Result<()> {
    let federation = Federation::start(Trust::Dialback).await?;
    let mut alice = federation.alice().await?;
    let mut erin = federation.erin().await?;
    subscribe(&mut alice, &mut erin)
        .await
        .with_context(|| federation.log())?;
    subscribe(&mut erin, &mut alice)
        .await
        .with_context(|| federation.log())?;

    // Each one's next presence reaches the other, now a subscriber, across.
    let status = |text: &str| {
        Element::new("presence", ns::CLIENT)
            .with_child(Element::new("status", ns::CLIENT).with_text(text))
    };
    erin.send(&status("from ejabberd")).await?;
    expect_status(&mut alice, "erin@e.test/r", "from ejabberd")
        .await
        .with_context(|| federation.log())?;
    alice.send(&status("from corvid")).await?;
    expect_status(&mut erin, "alice@a.test/r", "from corvid")
        .await
        .with_context(|| federation.log())?;

    // RFC 6121 §3: a subscription each way is `both` in alice's roster.
    let get = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_child(Element::new("query", ns::ROSTER));
    let roster = alice.client.request(get).await?;
    let item = roster
        .get_child("query", ns::ROSTER)
        .and_then(|q| q.children().find(|i| i.attr("jid") == Some("erin@e.test")))
        .with_context(|| format!("no erin@e.test in {roster}"))?;
    ensure!(item.attr("subscription") == Some("both"), "{item}");
    alice.client.disconnect().await;
    erin.client.disconnect().await;
    Ok(())
}

/// The federation for the shared scenarios: SASL EXTERNAL when `trusted`, else dialback.
async fn federation(trusted: bool) -> Result<Federation> {
    Federation::start(if trusted {
        Trust::SaslExternal
    } else {
        Trust::Dialback
    })
    .await
}

cross_server_scenarios!(federation);
