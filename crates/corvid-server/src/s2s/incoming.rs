//! Incoming connections from other servers, on the STARTTLS port or (TLS first) the direct
//! TLS one: our stream features (STARTTLS unless TLS is on; then SASL EXTERNAL when the
//! peer's certificate proves its domain, and dialback), authentication, and the stanzas of
//! the authenticated (remote, local) domain pairs.
//!
//! Dialback keys are checked by dialing back: a connection to the originating domain's
//! authoritative server asking it `<db:verify/>` (XEP-0220 §2.1.3), while this stream goes
//! on. A peer whose certificate already proves the domain is believed without it
//! ("dialback without dialback", XEP-0344 §2.4). The same stream answers `<db:verify/>`
//! for keys we made, before any authentication, as that is how peers check ours.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use corvid_proto::{BareJid, Jid, StanzaKind, StreamErrorCondition as Cond, ns};
use corvid_xml::{Element, StreamEvent, StreamHeader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::link::{End, Link, NS_DIALBACK, NS_DIALBACK_FEATURE, escape, header};
use super::{AuthMethod, Connection, Direction, Registration, State, is_local, outgoing};
use crate::server::Server;

/// Dialback verifications one stream may have under way at once.
const MAX_PENDING_VERIFICATIONS: usize = 16;

/// The outcome of checking a dialback key.
struct Verdict {
    remote: String,
    local: String,
    valid: bool,
}

struct Incoming {
    server: Arc<Server>,
    link: Link,
    registration: Registration,
    /// The id of the current stream (a new one after each restart).
    id: String,
    /// The stream header's `to` and `from`.
    local: String,
    remote: Option<String>,
    /// The domain SASL EXTERNAL was offered for (its certificate verified).
    external_for: Option<String>,
    sasl_done: bool,
    /// Authenticated (remote, local) pairs: stanzas are taken for these only.
    authenticated: HashSet<(String, String)>,
    pending: usize,
    verdicts: (mpsc::Sender<Verdict>, mpsc::Receiver<Verdict>),
}

/// Serves one incoming server-to-server connection (the listener calls it for each).
pub async fn serve(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr) {
    let link = Link::new(tcp, server.config.limits.max_stanza_bytes);
    serve_link(server, link, peer).await;
}

/// Serves one connection on a `direct_tls_listen` address (XEP-0368): the TLS handshake
/// first (ALPN `xmpp-server`), bounded by the unauthenticated timeout, then the same
/// stream as on the STARTTLS port, whose features then have no `<starttls/>`. The SNI the
/// peer sends is not checked: there is one certificate for all our domains and services,
/// and the stream header's `to` decides which one the peer wants (`host-unknown` if none).
pub async fn serve_direct_tls(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr) {
    let mut link = Link::new(tcp, server.config.limits.max_stanza_bytes);
    let timeout = Duration::from_secs(server.config.limits.unauthenticated_timeout_secs);
    let handshake = link.accept_tls(server.s2s.tls.direct_server.clone());
    let handshake = tokio::time::timeout(timeout, handshake).await;
    match handshake {
        Ok(Ok(())) => serve_link(server, link, peer).await,
        // Plain text, another protocol, a refused ALPN: nothing to answer in XMPP.
        Ok(Err(end)) => tracing::info!(%peer, ?end, "s2s direct TLS handshake failed"),
        Err(_) => tracing::info!(%peer, "s2s direct TLS handshake timed out"),
    }
}

async fn serve_link(server: Arc<Server>, link: Link, peer: SocketAddr) {
    let direct_tls = link.is_tls();
    let registration = server.s2s.register(Connection {
        id: 0,
        direction: Direction::Incoming,
        local: String::new(),
        remote: String::new(),
        auth: None,
        state: State::Negotiating,
        tls: direct_tls,
        direct_tls,
        since: SystemTime::now(),
        peer: Some(peer),
    });
    let mut stream = Incoming {
        link,
        server,
        registration,
        id: String::new(),
        local: String::new(),
        remote: None,
        external_for: None,
        sasl_done: false,
        authenticated: HashSet::new(),
        pending: 0,
        verdicts: mpsc::channel(MAX_PENDING_VERIFICATIONS),
    };
    let end = stream.run().await;
    match &end {
        End::Error(error) => {
            tracing::info!(%peer, remote = ?stream.remote, %error, "s2s incoming stream refused")
        }
        end => tracing::info!(%peer, remote = ?stream.remote, ?end, "s2s incoming stream ended"),
    }
    stream.link.finish(&end).await;
}

impl Incoming {
    async fn run(&mut self) -> End {
        let started = Instant::now();
        let unauthenticated =
            Duration::from_secs(self.server.config.limits.unauthenticated_timeout_secs);
        let idle = Duration::from_secs(self.server.config.s2s.idle_timeout_secs);
        let mut last_activity = Instant::now();
        let mut shutdown = self.server.shutdown_signal();
        loop {
            match self.link.parse_buffered() {
                Ok(Some(event)) => {
                    if let Err(end) = self.event(event).await {
                        return end;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(end) => return end,
            }
            let deadline = if self.authenticated.is_empty() {
                started + unauthenticated
            } else {
                last_activity + idle
            };
            tokio::select! {
                _ = shutdown.changed() => return End::Shutdown,
                read = self.link.read_more() => {
                    if let Err(end) = read {
                        return end;
                    }
                    last_activity = Instant::now();
                }
                Some(verdict) = self.verdicts.1.recv() => {
                    if let Err(end) = self.verdict(verdict).await {
                        return end;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return if self.authenticated.is_empty() {
                        End::error(Cond::ConnectionTimeout, "Not authenticated in time")
                    } else {
                        End::Idle
                    };
                }
            }
        }
    }

    async fn event(&mut self, event: StreamEvent) -> Result<(), End> {
        match event {
            StreamEvent::Open(header) => self.open(header).await,
            StreamEvent::Close => Err(End::Closed),
            StreamEvent::Stanza(el) => self.element(el).await,
        }
    }

    /// A stream header (the first, or after a restart): ours in reply, then the features.
    async fn open(&mut self, header: StreamHeader) -> Result<(), End> {
        self.id = crate::random_id();
        let to = header.attr("to").map(str::to_ascii_lowercase);
        let from = header.attr("from").map(str::to_ascii_lowercase);
        let ours = to
            .clone()
            .filter(|to| is_local(&self.server, to))
            .unwrap_or_else(|| self.server.config.default_domain().to_owned());
        // RFC 6120 §4.9.1.1: our header goes first, even when an error follows.
        let reply = header_reply(&ours, from.as_deref(), &self.id);
        self.link.write(reply.as_bytes()).await?;
        if header.name != "stream" || header.ns != ns::STREAM || header.default_ns != ns::SERVER {
            return Err(End::error(
                Cond::InvalidNamespace,
                "Servers speak jabber:server",
            ));
        }
        match &to {
            Some(to) if is_local(&self.server, to) => {}
            _ => {
                return Err(End::error(
                    Cond::HostUnknown,
                    "This server does not serve that domain",
                ));
            }
        }
        if header.attr("version") != Some("1.0") {
            return Err(End::error(Cond::UnsupportedVersion, "XMPP 1.0 only"));
        }
        if let Some(from) = &from {
            self.check_remote(from)?;
        }
        self.local = ours;
        self.remote = from;
        let (local, remote) = (self.local.clone(), self.remote.clone().unwrap_or_default());
        self.registration.update(|c| {
            c.local = local;
            c.remote = remote;
        });
        let features = self.features();
        self.link.write(features.as_bytes()).await
    }

    /// A remote domain must be a domain, and one we federate with.
    fn check_remote(&self, domain: &str) -> Result<(), End> {
        if BareJid::new(domain).map_or(true, |j| j.node().is_some()) {
            return Err(End::error(Cond::InvalidFrom, "Not a domain"));
        }
        if !self.server.config.s2s.permits(domain) {
            return Err(End::error(
                Cond::PolicyViolation,
                format!("This server does not federate with {domain}"),
            ));
        }
        Ok(())
    }

    fn features(&mut self) -> String {
        let require_tls = self.server.config.s2s.require_tls;
        let mut features = String::from("<stream:features>");
        if !self.link.is_tls() {
            let required = if require_tls { "<required/>" } else { "" };
            features.push_str(&format!(
                "<starttls xmlns='{}'>{required}</starttls>",
                ns::TLS
            ));
        }
        self.external_for = None;
        let offer_external = self.link.is_tls() && !self.sasl_done;
        if let Some(remote) = self
            .remote
            .clone()
            .filter(|r| offer_external && self.certificate_proves(r))
        {
            features.push_str(&format!(
                "<mechanisms xmlns='{}'><mechanism>EXTERNAL</mechanism></mechanisms>",
                ns::SASL
            ));
            self.external_for = Some(remote);
        }
        if self.link.is_tls() || !require_tls {
            features.push_str(&format!(
                "<dialback xmlns='{NS_DIALBACK_FEATURE}'><errors/></dialback>"
            ));
        }
        features.push_str("</stream:features>");
        features
    }

    /// Whether the peer's certificate proves `domain` (never for `insecure_domains`).
    fn certificate_proves(&self, domain: &str) -> bool {
        let s2s = &self.server.config.s2s;
        self.link.is_tls()
            && !s2s.insecure(domain)
            && self.server.s2s.tls.verifies(&self.link.peer_certs, domain)
    }

    async fn element(&mut self, el: Element) -> Result<(), End> {
        if el.is("starttls", ns::TLS) && !self.link.is_tls() {
            self.link
                .write(format!("<proceed xmlns='{}'/>", ns::TLS).as_bytes())
                .await?;
            self.link
                .accept_tls(self.server.s2s.tls.server.clone())
                .await?;
            self.registration.update(|c| c.tls = true);
            return Ok(());
        }
        if el.is("auth", ns::SASL) {
            return self.sasl_external(&el).await;
        }
        if el.is("result", NS_DIALBACK) {
            return self.dialback_result(&el).await;
        }
        if el.is("verify", NS_DIALBACK) {
            return self.dialback_verify(&el).await;
        }
        if el.ns() == ns::SERVER && matches!(el.name(), "message" | "presence" | "iq") {
            return self.stanza(el).await;
        }
        if el.is("error", ns::STREAM) {
            return Err(End::Closed);
        }
        Err(End::error(
            Cond::UnsupportedStanzaType,
            format!("<{}/> is not expected here", el.name()),
        ))
    }

    async fn sasl_external(&mut self, auth: &Element) -> Result<(), End> {
        let failure =
            |condition: &str| format!("<failure xmlns='{}'><{condition}/></failure>", ns::SASL);
        let Some(remote) = self.external_for.clone() else {
            return self
                .link
                .write(failure("invalid-mechanism").as_bytes())
                .await;
        };
        if auth.attr("mechanism") != Some("EXTERNAL") {
            return self
                .link
                .write(failure("invalid-mechanism").as_bytes())
                .await;
        }
        // XEP-0178 §2: the authorization identity is the domain, or empty ("=").
        let text = auth.text();
        let text = text.trim();
        if !text.is_empty() && text != "=" {
            let authzid = base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if !authzid.is_some_and(|a| a.eq_ignore_ascii_case(&remote)) {
                return self.link.write(failure("invalid-authzid").as_bytes()).await;
            }
        }
        self.link
            .write(format!("<success xmlns='{}'/>", ns::SASL).as_bytes())
            .await?;
        self.link.restart();
        self.sasl_done = true;
        self.authenticated(remote, self.local.clone(), AuthMethod::SaslExternal);
        Ok(())
    }

    fn authenticated(&mut self, remote: String, local: String, method: AuthMethod) {
        tracing::info!(%remote, %local, ?method, "s2s incoming stream authenticated");
        self.registration.update(|c| {
            c.state = State::Established;
            c.auth.get_or_insert(method);
            if c.remote.is_empty() {
                c.remote = remote.clone();
            }
        });
        self.authenticated.insert((remote, local));
    }

    /// `<db:result>` with a key: the peer asks to be believed for its `from` domain.
    async fn dialback_result(&mut self, el: &Element) -> Result<(), End> {
        if self.server.config.s2s.require_tls && !self.link.is_tls() {
            return Err(End::error(Cond::PolicyViolation, "STARTTLS first"));
        }
        if el.attr("type").is_some() {
            return Ok(());
        }
        let (Some(remote), Some(local)) = (el.attr("from"), el.attr("to")) else {
            return Err(End::error(
                Cond::ImproperAddressing,
                "<db:result/> needs 'from' and 'to'",
            ));
        };
        let (remote, local) = (remote.to_ascii_lowercase(), local.to_ascii_lowercase());
        if !is_local(&self.server, &local) {
            return Err(End::error(
                Cond::HostUnknown,
                "This server does not serve that domain",
            ));
        }
        self.check_remote(&remote)?;
        if self
            .authenticated
            .contains(&(remote.clone(), local.clone()))
            || self.certificate_proves(&remote)
        {
            return self
                .verdict(Verdict {
                    remote,
                    local,
                    valid: true,
                })
                .await;
        }
        if self.pending >= MAX_PENDING_VERIFICATIONS {
            return Err(End::error(
                Cond::PolicyViolation,
                "Too many dialback requests",
            ));
        }
        self.pending += 1;
        let (server, verdicts, id, key) = (
            self.server.clone(),
            self.verdicts.0.clone(),
            self.id.clone(),
            el.text(),
        );
        tokio::spawn(async move {
            let valid = verify_by_dialing_back(&server, &local, &remote, &id, key.trim()).await;
            let _ = verdicts
                .send(Verdict {
                    remote,
                    local,
                    valid,
                })
                .await;
        });
        Ok(())
    }

    async fn verdict(&mut self, verdict: Verdict) -> Result<(), End> {
        self.pending = self.pending.saturating_sub(1);
        let kind = if verdict.valid { "valid" } else { "invalid" };
        self.link
            .write(
                format!(
                    "<db:result from='{}' to='{}' type='{kind}'/>",
                    escape(&verdict.local),
                    escape(&verdict.remote)
                )
                .as_bytes(),
            )
            .await?;
        if verdict.valid {
            self.authenticated(verdict.remote, verdict.local, AuthMethod::Dialback);
        } else if self.authenticated.is_empty() && self.pending == 0 {
            return Err(End::error(Cond::NotAuthorized, "Dialback failed"));
        }
        Ok(())
    }

    /// `<db:verify>`: is this a key we made? (We are the authoritative server.)
    async fn dialback_verify(&mut self, el: &Element) -> Result<(), End> {
        let (Some(receiving), Some(originating), Some(id)) =
            (el.attr("from"), el.attr("to"), el.attr("id"))
        else {
            return Err(End::error(
                Cond::ImproperAddressing,
                "<db:verify/> needs 'from', 'to' and 'id'",
            ));
        };
        let valid = is_local(&self.server, originating)
            && self
                .server
                .s2s
                .secret
                .verify(receiving, originating, id, &el.text());
        let kind = if valid { "valid" } else { "invalid" };
        let reply = format!(
            "<db:verify from='{}' to='{}' id='{}' type='{kind}'/>",
            escape(originating),
            escape(receiving),
            escape(id)
        );
        self.link.write(reply.as_bytes()).await
    }

    /// A stanza from the peer: its addresses held to what was authenticated, then routed.
    async fn stanza(&mut self, el: Element) -> Result<(), End> {
        if self.authenticated.is_empty() {
            return Err(End::error(Cond::NotAuthorized, "Authenticate first"));
        }
        let (Some(from), Some(to)) = (el.attr("from"), el.attr("to")) else {
            return Err(End::error(
                Cond::ImproperAddressing,
                "Stanzas between servers need 'from' and 'to'",
            ));
        };
        let (Ok(from), Ok(to)) = (Jid::new(from), Jid::new(to)) else {
            return Err(End::error(Cond::ImproperAddressing, "Malformed address"));
        };
        let to_domain = to.domain().as_str();
        if !is_local(&self.server, to_domain) {
            return Err(End::error(
                Cond::HostUnknown,
                format!("{to_domain} is not served here"),
            ));
        }
        let pair = (from.domain().as_str().to_owned(), to_domain.to_owned());
        if !self.authenticated.contains(&pair) {
            return Err(End::error(
                Cond::InvalidFrom,
                format!("{} is not authenticated on this stream", pair.0),
            ));
        }
        let el = el.map_ns(ns::SERVER, ns::CLIENT);
        if let Some(kind) = StanzaKind::of(&el, ns::CLIENT) {
            self.server.metrics.stanzas_in.count(kind);
        }
        crate::router::route(&self.server, el).await;
        Ok(())
    }
}

fn header_reply(from: &str, to: Option<&str>, id: &str) -> String {
    header(from, to, Some(id))
}

/// XEP-0220 §2.1.3: asks `remote`'s authoritative server whether `key` is one it made for
/// this stream.
async fn verify_by_dialing_back(
    server: &Arc<Server>,
    local: &str,
    remote: &str,
    stream_id: &str,
    key: &str,
) -> bool {
    let timeout = Duration::from_secs(server.config.s2s.connect_timeout_secs);
    let verified = tokio::time::timeout(timeout, async {
        let (mut link, _, _) = outgoing::open_stream(server, local, remote, None)
            .await
            .ok()?;
        let request = format!(
            "<db:verify from='{}' to='{}' id='{}'>{}</db:verify>",
            escape(local),
            escape(remote),
            escape(stream_id),
            escape(key)
        );
        link.write(request.as_bytes()).await.ok()?;
        let valid = loop {
            match link.next().await.ok()? {
                StreamEvent::Stanza(el)
                    if el.is("verify", NS_DIALBACK) && el.attr("id") == Some(stream_id) =>
                {
                    break el.attr("type") == Some("valid");
                }
                StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => return None,
                StreamEvent::Stanza(_) => {}
                StreamEvent::Open(_) | StreamEvent::Close => return None,
            }
        };
        link.finish(&End::Closed).await;
        Some(valid)
    })
    .await;
    let valid = matches!(verified, Ok(Some(true)));
    tracing::debug!(%remote, %local, valid, "dialback key checked");
    valid
}
