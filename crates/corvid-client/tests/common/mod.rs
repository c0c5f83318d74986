//! The stream scenarios every server must pass, run against Corvid (`corvid.rs`) and
//! Prosody (`prosody.rs`): the SDK is checked against more than our own reading.

#![allow(dead_code)] // each test binary uses what it needs

use std::time::Duration;

use anyhow::{Context, Result, bail};
use corvid_client::{
    Client, ClientBuilder, ConnectError, DisconnectReason, Event, Events, RequestError, Security,
    Verification,
};
use corvid_proto::{BareJid, ns};
use corvid_xml::Element;
use rustls::pki_types::CertificateDer;

pub const PASSWORD: &str = "correct horse battery staple";
pub const WAIT: Duration = Duration::from_secs(10);

/// A server under test on loopback, with accounts `juliet` and `romeo` (password
/// [`PASSWORD`]) on `localhost`, and its certificate.
pub struct Target {
    pub starttls_port: u16,
    pub direct_tls_port: u16,
    pub cert: CertificateDer<'static>,
}

impl Target {
    pub fn builder(&self, user: &str) -> ClientBuilder {
        let jid = BareJid::new(&format!("{user}@localhost")).expect("jid");
        Client::builder(jid, PASSWORD)
            .server("127.0.0.1", self.starttls_port)
            .verification(Verification::Pinned(vec![self.cert.clone()]))
    }

    /// Logged in as `user` with resource `test`, available.
    pub async fn online(&self, user: &str) -> Result<(Client, Events)> {
        let (client, mut events) = self.builder(user).resource("test").build();
        client.connect().await?;
        client.send(&Element::new("presence", ns::CLIENT)).await?;
        expect(&mut events, "authenticated", |e| {
            matches!(e, Event::Authenticated { .. })
        })
        .await?;
        Ok((client, events))
    }
}

/// Waits for the first event `wanted` accepts, skipping others.
pub async fn expect(
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
        Ok(None) => bail!("events ended before {what}"),
        Err(_) => bail!("no {what} within {WAIT:?}"),
    }
}

fn body(event: &Event) -> Option<String> {
    match event {
        Event::Message(m) => m.get_child("body", ns::CLIENT).map(Element::text),
        _ => None,
    }
}

/// STARTTLS with a pinned certificate; the events tell each step; the bound JID is ours.
pub async fn logs_in_with_starttls(target: &Target) -> Result<Event> {
    let (client, mut events) = target.builder("juliet").resource("balcony").build();
    client.connect().await?;
    let jid = client.jid().context("bound")?;
    assert_eq!(jid.as_str(), "juliet@localhost/balcony");
    let mut steps = Vec::new();
    while let Some(event) = events.try_next() {
        steps.push(event);
    }
    assert!(
        matches!(steps[0], Event::Connecting { port, .. } if port == target.starttls_port),
        "{steps:?}"
    );
    assert!(matches!(steps[1], Event::Connected), "{steps:?}");
    let authenticated = steps[2].clone();
    match &authenticated {
        Event::Authenticated { jid: bound, .. } => assert_eq!(bound, &jid),
        other => bail!("expected authentication, got {other:?}"),
    }
    client.disconnect().await;
    Ok(authenticated)
}

/// Direct TLS (XEP-0368), trusting the certificate as a root.
pub async fn logs_in_with_direct_tls(target: &Target) -> Result<Event> {
    let (client, mut events) = target
        .builder("juliet")
        .server("127.0.0.1", target.direct_tls_port)
        .security(Security::DirectTls)
        .verification(Verification::Roots(vec![target.cert.clone()]))
        .build();
    client.connect().await?;
    let event = expect(&mut events, "authenticated", |e| {
        matches!(e, Event::Authenticated { .. })
    })
    .await?;
    client.disconnect().await;
    Ok(event)
}

/// Verification is on by default: the system's roots do not vouch for a self-signed
/// certificate, and a pin of `other` does not match it.
pub async fn refuses_an_untrusted_or_unpinned_certificate(
    target: &Target,
    other: CertificateDer<'static>,
) -> Result<()> {
    let jid = BareJid::new("juliet@localhost")?;
    let (system, _events) = Client::builder(jid.clone(), PASSWORD)
        .server("127.0.0.1", target.starttls_port)
        .build();
    let refused = system.connect().await;
    assert!(matches!(refused, Err(ConnectError::Tls(_))), "{refused:?}");
    let (pinned, _events) = Client::builder(jid, PASSWORD)
        .server("127.0.0.1", target.starttls_port)
        .verification(Verification::Pinned(vec![other]))
        .build();
    let refused = pinned.connect().await;
    assert!(matches!(refused, Err(ConnectError::Tls(_))), "{refused:?}");
    assert!(pinned.jid().is_none());
    Ok(())
}

pub async fn refuses_a_wrong_password(target: &Target) -> Result<()> {
    let jid = BareJid::new("juliet@localhost")?;
    let (client, _events) = Client::builder(jid, "wrong")
        .server("127.0.0.1", target.starttls_port)
        .verification(Verification::Pinned(vec![target.cert.clone()]))
        .build();
    match client.connect().await {
        Err(ConnectError::Auth(condition)) => assert_eq!(condition, "not-authorized"),
        other => bail!("expected not-authorized, got {other:?}"),
    }
    Ok(())
}

pub async fn exchanges_messages(target: &Target) -> Result<()> {
    let (juliet, mut juliet_events) = target.online("juliet").await?;
    let (romeo, mut romeo_events) = target.online("romeo").await?;
    let message = |to: &str, text: &str| {
        Element::new("message", ns::CLIENT)
            .with_attr("to", to)
            .with_attr("type", "chat")
            .with_child(Element::new("body", ns::CLIENT).with_text(text))
    };
    juliet
        .send(&message("romeo@localhost", "wherefore art thou"))
        .await?;
    let got = expect(&mut romeo_events, "juliet's message", |e| body(e).is_some()).await?;
    assert_eq!(body(&got).as_deref(), Some("wherefore art thou"));
    match &got {
        Event::Message(m) => assert_eq!(m.attr("from"), Some("juliet@localhost/test")),
        _ => unreachable!(),
    }
    romeo
        .send(&message("juliet@localhost/test", "here"))
        .await?;
    let got = expect(&mut juliet_events, "romeo's reply", |e| body(e).is_some()).await?;
    assert_eq!(body(&got).as_deref(), Some("here"));
    juliet.disconnect().await;
    romeo.disconnect().await;
    Ok(())
}

pub async fn answers_requests(target: &Target) -> Result<()> {
    let (client, _events) = target.online("juliet").await?;
    let disco = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", "localhost")
        .with_child(Element::new("query", ns::DISCO_INFO));
    let info = client.request(disco).await?;
    let features: Vec<String> = info
        .get_child("query", ns::DISCO_INFO)
        .context("query")?
        .children()
        .filter(|c| c.is("feature", ns::DISCO_INFO))
        .filter_map(|c| c.attr("var").map(str::to_owned))
        .collect();
    assert!(features.iter().any(|f| f == ns::PING), "{features:?}");

    let nobody = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", "nobody@localhost")
        .with_child(Element::new("query", ns::DISCO_INFO));
    match client.request(nobody).await {
        Err(RequestError::Error { condition, stanza }) => {
            assert_eq!(stanza.attr("type"), Some("error"));
            assert!(
                ["service-unavailable", "item-not-found"].contains(&condition.as_str()),
                "{condition}"
            );
        }
        other => bail!("expected an error, got {other:?}"),
    }
    let result = Element::new("iq", ns::CLIENT).with_attr("type", "result");
    assert!(matches!(
        client.request(result).await,
        Err(RequestError::NotARequest)
    ));
    client.disconnect().await;
    Ok(())
}

/// A stream replaced by a new login of the same resource ends with `conflict`; a disconnect
/// ends the stream, and requests fail at once afterwards.
pub async fn ends_streams(target: &Target) -> Result<Client> {
    let (first, mut first_events) = target.online("juliet").await?;
    let (second, mut second_events) = target.online("juliet").await?;
    let ended = expect(&mut first_events, "the first stream's end", |e| {
        matches!(e, Event::Disconnected(_))
    })
    .await?;
    assert!(
        matches!(
            &ended,
            Event::Disconnected(DisconnectReason::StreamError(c)) if c == "conflict"
        ),
        "{ended:?}"
    );
    assert!(first.jid().is_none());

    second.disconnect().await;
    let ended = expect(&mut second_events, "the second stream's end", |e| {
        matches!(e, Event::Disconnected(_))
    })
    .await?;
    assert!(matches!(
        ended,
        Event::Disconnected(DisconnectReason::Requested)
    ));
    let ping = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_child(Element::new("ping", ns::PING));
    assert!(matches!(
        second.request(ping).await,
        Err(RequestError::NotConnected)
    ));
    Ok(second)
}
