//! Helpers for federation tests: a test CA issuing per-domain certificates, Corvid servers
//! serving a domain of their own with them, users logged in with the SDK, and a raw
//! server-to-server link for the hostile cases.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use corvid_client::{Client, Event, Events, Verification};
use corvid_proto::{BareJid, ns};
use corvid_server::Config;
use corvid_xml::{Element, StreamEvent};

use super::{TestServer, start_server_with};

pub const PASSWORD: &str = "pw";
pub const WAIT: Duration = Duration::from_secs(10);

/// A certificate authority for tests, and the files it writes.
pub struct Pki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub ca_file: PathBuf,
    dir: tempfile::TempDir,
}

/// A certificate and its key, as PEM files.
#[derive(Clone)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new() -> Result<Pki> {
        let dir = tempfile::tempdir()?;
        let mut params = short_lived(Vec::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Corvid test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem())?;
        Ok(Pki {
            ca: rcgen::Issuer::new(params, key),
            ca_file,
            dir,
        })
    }

    /// A certificate for `domain` (and its subdomains) signed by the CA.
    pub fn issue(&self, domain: &str) -> Result<Identity> {
        let mut params = short_lived(vec![domain.to_string(), format!("*.{domain}")])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, domain);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        write_identity(self.dir.path(), domain, &cert.pem(), &key.serialize_pem())
    }
}

/// A self-signed certificate for `domain`: nobody trusts it.
pub fn self_signed(dir: &Path, domain: &str) -> Result<Identity> {
    let key = rcgen::KeyPair::generate()?;
    let cert = short_lived(vec![domain.to_string(), format!("*.{domain}")])?.self_signed(&key)?;
    write_identity(
        dir,
        &format!("self-{domain}"),
        &cert.pem(),
        &key.serialize_pem(),
    )
}

/// Certificate parameters for `names`, valid for a week around now: ejabberd 23.01 crashes
/// on a certificate that expires further away than an Erlang timer reaches (49 days), such
/// as rcgen's default of the year 4096 (see tests/shared/ejabberd_process.rs).
fn short_lived(names: Vec<String>) -> Result<rcgen::CertificateParams> {
    let mut params = rcgen::CertificateParams::new(names)?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(7 * 86400);
    Ok(params)
}

fn write_identity(dir: &Path, name: &str, cert: &str, key: &str) -> Result<Identity> {
    let identity = Identity {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&identity.cert, cert)?;
    std::fs::write(&identity.key, key)?;
    Ok(identity)
}

/// A Corvid serving `domain` with `identity`, trusting `ca` (if any), adjusted by `adjust`.
pub async fn corvid(
    domain: &str,
    identity: &Identity,
    ca: Option<&Path>,
    adjust: impl FnOnce(&mut Config),
) -> Result<TestServer> {
    let ts = start_server_with(|config| {
        config.domains = vec![domain.to_string()];
        config.tls.cert = Some(identity.cert.clone());
        config.tls.key = Some(identity.key.clone());
        config.s2s.ca_files = ca.map(Path::to_owned).into_iter().collect();
        config.s2s.connect_timeout_secs = 10;
        adjust(config);
    })
    .await?;
    Ok(ts)
}

/// Each server finds the other's s2s port for its domain and its services' (MUC, PubSub),
/// as DNS would give each its own records.
pub fn introduce(a: &TestServer, a_domain: &str, b: &TestServer, b_domain: &str) -> Result<()> {
    for (from, to, to_domain) in [(a, b, b_domain), (b, a, a_domain)] {
        let port = to.s2s_addr.context("no s2s port")?.port();
        let config = &to.server.config;
        debug_assert!(config.serves(to_domain));
        for domain in [
            to_domain.to_owned(),
            config.muc_domain(),
            config.pubsub_domain(),
        ] {
            from.server
                .s2s
                .resolver
                .map_host(&domain, "127.0.0.1", port);
        }
    }
    Ok(())
}

/// Each server finds the other's direct TLS port (XEP-0368) for its domain.
pub fn introduce_direct_tls(
    a: &TestServer,
    a_domain: &str,
    b: &TestServer,
    b_domain: &str,
) -> Result<()> {
    let a_port = a
        .s2s_direct_tls_addr
        .context("a has no direct TLS port")?
        .port();
    let b_port = b
        .s2s_direct_tls_addr
        .context("b has no direct TLS port")?
        .port();
    a.server
        .s2s
        .resolver
        .map_host_direct_tls(b_domain, "127.0.0.1", b_port);
    b.server
        .s2s
        .resolver
        .map_host_direct_tls(a_domain, "127.0.0.1", a_port);
    Ok(())
}

/// Creates `jid` on `ts` with [`PASSWORD`].
pub async fn create(ts: &TestServer, jid: &str) -> Result<()> {
    corvid_server::accounts::create(&ts.server.store, &BareJid::new(jid)?, PASSWORD).await?;
    Ok(())
}

/// `jid` logged in (resource `r`) on the c2s port `port`, available.
pub async fn online(jid: &str, port: u16) -> Result<(Client, Events)> {
    let (client, mut events) = Client::builder(BareJid::new(jid)?, PASSWORD)
        .server("127.0.0.1", port)
        .verification(Verification::DangerAcceptAny)
        .resource("r")
        .build();
    client.connect().await.context("connect")?;
    expect(&mut events, "authenticated", |e| {
        matches!(e, Event::Authenticated { .. })
    })
    .await?;
    client.send(&Element::new("presence", ns::CLIENT)).await?;
    Ok((client, events))
}

/// The first event `wanted` picks within [`WAIT`].
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

/// The message with `body` that `events` gets next.
pub async fn expect_message(events: &mut Events, body: &str) -> Result<Element> {
    let event = expect(
        events,
        &format!("message {body:?}"),
        |e| matches!(e, Event::Message(m) if message_body(m).as_deref() == Some(body)),
    )
    .await?;
    match event {
        Event::Message(m) => Ok(m),
        _ => unreachable!(),
    }
}

pub fn message_body(m: &Element) -> Option<String> {
    m.get_child("body", ns::CLIENT).map(Element::text)
}

pub fn chat(to: &str, body: &str) -> Element {
    super::message(to, "chat", body)
}

/// The stanza error condition of a bounced message with `body`.
pub async fn expect_bounce(events: &mut Events, body: &str) -> Result<String> {
    let event = expect(events, &format!("the bounce of {body:?}"), |e| {
        matches!(e, Event::Message(m) if m.attr("type") == Some("error") && message_body(m).as_deref() == Some(body))
    })
    .await?;
    match event {
        Event::Message(m) => Ok(super::stanza_error(&m)
            .map(|(_, condition)| condition)
            .unwrap_or_default()),
        _ => unreachable!(),
    }
}

/// A free loopback port nobody listens on.
pub fn closed_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A raw server-to-server link for the hostile tests.
pub struct RawS2s {
    pub link: corvid_server::s2s::link::Link,
}

impl RawS2s {
    /// Connects and opens a stream from `from` to `to`; the features.
    pub async fn open(addr: SocketAddr, from: &str, to: &str) -> Result<(RawS2s, Element)> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut raw = RawS2s {
            link: corvid_server::s2s::link::Link::new(tcp, 1 << 20),
        };
        let features = raw.restart(from, to).await?;
        Ok((raw, features))
    }

    /// Connects with direct TLS (XEP-0368: SNI `to`, ALPN `xmpp-server`) presenting
    /// `identity`, and opens a stream from `from` to `to`; the features.
    pub async fn open_direct_tls(
        addr: SocketAddr,
        identity: &Identity,
        from: &str,
        to: &str,
    ) -> Result<(RawS2s, Element)> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut raw = RawS2s {
            link: corvid_server::s2s::link::Link::new(tcp, 1 << 20),
        };
        let tls = s2s_tls(identity)?;
        raw.link
            .connect_tls(tls.direct_client.clone(), to)
            .await
            .map_err(|e| anyhow::anyhow!("TLS: {e:?}"))?;
        let features = raw.restart(from, to).await?;
        Ok((raw, features))
    }

    /// Our header again; the server's header and features.
    pub async fn restart(&mut self, from: &str, to: &str) -> Result<Element> {
        let header = corvid_server::s2s::link::header(from, Some(to), None);
        self.send(&header).await?;
        match self.next().await? {
            StreamEvent::Open(_) => {}
            other => bail!("expected a stream header, got {other:?}"),
        }
        self.recv().await
    }

    pub async fn send(&mut self, text: &str) -> Result<()> {
        self.link
            .write(text.as_bytes())
            .await
            .map_err(|e| anyhow::anyhow!("write: {e:?}"))
    }

    pub async fn next(&mut self) -> Result<StreamEvent> {
        tokio::time::timeout(WAIT, self.link.next())
            .await
            .context("nothing from the server")?
            .map_err(|e| anyhow::anyhow!("read: {e:?}"))
    }

    pub async fn recv(&mut self) -> Result<Element> {
        match self.next().await? {
            StreamEvent::Stanza(el) => Ok(el),
            other => bail!("expected an element, got {other:?}"),
        }
    }

    /// STARTTLS presenting `identity` as our certificate.
    pub async fn starttls(&mut self, identity: &Identity, from: &str, to: &str) -> Result<Element> {
        self.send(&format!("<starttls xmlns='{}'/>", ns::TLS))
            .await?;
        let proceed = self.recv().await?;
        anyhow::ensure!(proceed.is("proceed", ns::TLS), "{proceed}");
        let tls = s2s_tls(identity)?;
        self.link
            .connect_tls(tls.client.clone(), to)
            .await
            .map_err(|e| anyhow::anyhow!("TLS: {e:?}"))?;
        self.restart(from, to).await
    }

    /// The stream error condition the server ends with.
    pub async fn expect_stream_error(&mut self) -> Result<String> {
        loop {
            let el = self.recv().await?;
            if let Some(condition) = super::stream_error_condition(&el) {
                return Ok(condition);
            }
        }
    }
}

/// Server-to-server TLS configurations presenting `identity`.
pub fn s2s_tls(identity: &Identity) -> Result<corvid_server::s2s::tls::S2sTls> {
    let mut config = Config::default();
    config.tls.cert = Some(identity.cert.clone());
    config.tls.key = Some(identity.key.clone());
    let tls = corvid_server::tls::Tls::load_or_generate(&config)?;
    Ok(corvid_server::s2s::tls::S2sTls::new(&config.s2s, &tls)?)
}
