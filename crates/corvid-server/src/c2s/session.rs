//! One client connection: the RFC 6120 stream state machine, from the stream header
//! through STARTTLS, SASL and resource binding to the established session.
//!
//! The task owns the socket. It waits on four things at once: bytes from the client,
//! stanzas queued for it by the router, a close request (conflict, slow consumer, account
//! removal) and its timers. Stanzas are handled inline, in order, so a client that floods
//! only slows itself down.
//!
//! What comes before the session (the wait for a first byte, direct TLS) is in
//! `connection.rs`; the output side (writes, batches, stream errors) in `writer.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corvid_proto::sasl::ChannelBindings;
use corvid_proto::{
    BareJid, FullJid, Jid, StanzaError, StanzaKind, StreamError, StreamErrorCondition as Cond, ns,
};
use corvid_xml::{Element, Limits, StreamEvent, StreamHeader, StreamParser, XmlError};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::Transport;
use super::auth::AuthState;
use super::connection::paced_tls;
use super::csi::Held;
use super::sm::{Detached, Sm};
use super::transport::accept_tls;
use crate::admission::ConnectionGuard;
use crate::limits::TokenBucket;
use crate::module::SessionEvent;
use crate::server::Server;
use crate::sessions::{Outbound, SessionControl};

/// After this long without input, a session gives its scratch memory back.
const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// Why a stream ended (for the log line and the closing handshake).
pub(super) enum End {
    /// The client sent `</stream:stream>`.
    ClientClosed,
    /// The TCP connection ended without a closing tag.
    Disconnected,
    Io(std::io::Error),
    /// We sent this stream error (and the closing tag).
    StreamError(Cond),
    TlsFailed,
    /// A connection resuming this session (XEP-0198) took it over.
    TakenOver,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClientClosed => f.write_str("closed by client"),
            End::Disconnected => f.write_str("connection lost"),
            End::Io(e) => write!(f, "I/O error: {e}"),
            End::StreamError(cond) => write!(f, "stream error {}", cond.name()),
            End::TlsFailed => f.write_str("TLS negotiation failed"),
            End::TakenOver => f.write_str("taken over by a resuming connection"),
        }
    }
}

pub(super) enum Phase {
    /// Before SASL success.
    PreAuth,
    /// SASL done, no resource bound yet.
    Authenticated(BareJid),
    /// Established (RFC 6120 §7): stanzas are routed.
    Bound { jid: FullJid, id: u64 },
}

pub(super) struct Session {
    pub(super) server: Arc<Server>,
    pub(super) transport: Transport,
    pub(super) parser: StreamParser,
    pub(super) guard: ConnectionGuard,
    pub(super) phase: Phase,
    /// The domain the client asked for in its stream header.
    pub(super) domain: String,
    pub(super) header_sent: bool,
    /// Until the client authenticates.
    pub(super) auth: Option<Box<AuthState>>,
    pub(super) control: Option<Arc<SessionControl>>,
    bucket: TokenBucket,
    throttle_until: Option<Instant>,
    pub(super) last_read: Instant,
    ping_sent: Option<Instant>,
    pub(super) auth_deadline: Instant,
    shutdown: watch::Receiver<bool>,
    pub(super) out: Vec<u8>,
    /// Scratch memory was given back since the last input.
    released: bool,
    /// Stream management (XEP-0198), once the client enabled it.
    pub(super) sm: Option<Box<Sm>>,
    /// What is held back while the client says it is inactive (XEP-0352).
    pub(super) csi: Option<Box<Held>>,
    /// The client's address and what carries the stream, for the session list.
    pub(super) origin: (std::net::IpAddr, &'static str),
}

enum Wake {
    Shutdown,
    Closed(StreamError),
    Outbound(Outbound),
    /// Bytes taken off the socket (`None`: end of stream); the data is in the input buffer.
    Read(std::io::Result<Option<usize>>),
    Timer,
    /// Closed to make room for a newer connection (before authentication only).
    Shed,
    /// A connection resuming this session asks for it.
    TakenOver,
}

impl Session {
    pub(super) fn new(
        server: Arc<Server>,
        transport: Transport,
        guard: ConnectionGuard,
        origin: (std::net::IpAddr, &'static str),
    ) -> Session {
        let limits = &server.config.limits;
        let now = Instant::now();
        Session {
            parser: StreamParser::new(xml_limits(&server)),
            bucket: TokenBucket::new(limits.session_bytes_per_sec, limits.session_burst_bytes),
            auth_deadline: now + Duration::from_secs(limits.unauthenticated_timeout_secs),
            domain: server.config.default_domain().to_string(),
            shutdown: server.shutdown_signal(),
            server,
            transport,
            guard,
            phase: Phase::PreAuth,
            header_sent: false,
            auth: None,
            control: None,
            throttle_until: None,
            last_read: now,
            ping_sent: None,
            out: Vec::new(),
            released: false,
            sm: None,
            csi: None,
            origin,
        }
    }

    /// Runs the session to its end: the stream, then, if its connection dropped and it is
    /// resumable, the wait for a resuming connection.
    pub(super) async fn run(mut self) {
        let mut end = self.run_loop().await;
        if self.resumable(&end) {
            match Box::pin(self.detached()).await {
                Detached::Resumed => return,
                Detached::Ended(why) => end = why,
            }
        }
        if let End::TakenOver = end
            && self.hand_over().is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.transport.shutdown()).await;
            return;
        }
        Box::pin(self.finish(end)).await;
    }

    pub(super) async fn run_loop(&mut self) -> End {
        let mut input = Vec::new();
        loop {
            let timer = self.next_deadline();
            let wake = tokio::select! {
                biased;
                _ = self.shutdown.changed() => Wake::Shutdown,
                err = closed(&self.control) => Wake::Closed(err),
                out = next_queued(&self.control) => Wake::Outbound(out),
                read = std::future::poll_fn(|cx| self.transport.poll_read_into(cx, &mut input)),
                    if self.throttle_until.is_none() => Wake::Read(read),
                _ = tokio::time::sleep_until(timer.into()) => Wake::Timer,
                _ = self.guard.shed() => Wake::Shed,
                _ = Session::takeover_wanted(&self.sm) => Wake::TakenOver,
            };
            // Each handler is boxed: the task's future is as large as its largest await
            // point for its whole life, and an idle session waits only in the select above.
            let step = match wake {
                Wake::Shutdown => {
                    let err =
                        StreamError::with_text(Cond::SystemShutdown, "The server is shutting down");
                    Err(Box::pin(self.fail(err)).await)
                }
                Wake::Closed(err) => {
                    Box::pin(self.flush_queue()).await;
                    Err(Box::pin(self.fail(err)).await)
                }
                Wake::Outbound(first) => Box::pin(self.write_queued(first)).await,
                Wake::Read(Ok(None)) => Err(End::Disconnected),
                Wake::Read(Ok(Some(wire))) => {
                    let step = Box::pin(self.on_bytes(&input, wire)).await;
                    input = Vec::new();
                    step
                }
                Wake::Read(Err(e)) => Err(End::Io(e)),
                Wake::Timer => Box::pin(self.on_timer()).await,
                Wake::Shed => Err(Box::pin(self.fail(StreamError::with_text(
                    Cond::ConnectionTimeout,
                    "Closed to make room: too many unauthenticated connections from your address",
                )))
                .await),
                Wake::TakenOver => Err(End::TakenOver),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let limits = &self.server.config.limits;
        let mut deadline = Instant::now() + Duration::from_secs(3600);
        if !matches!(self.phase, Phase::Bound { .. }) {
            deadline = deadline
                .min(self.auth_deadline)
                .min(self.preauth_idle_deadline());
        } else if limits.idle_ping_secs > 0 {
            deadline = deadline.min(match self.ping_sent {
                Some(sent) => sent + Duration::from_secs(limits.ping_timeout_secs),
                None => self.last_read + Duration::from_secs(limits.idle_ping_secs),
            });
        }
        if let Some(until) = self.throttle_until {
            deadline = deadline.min(until);
        }
        if !self.released {
            deadline = deadline.min(self.last_read + IDLE_RELEASE);
        }
        if let Some(ack) = self.sm.as_ref().and_then(|sm| sm.ack_deadline()) {
            deadline = deadline.min(ack);
        }
        deadline
    }

    async fn on_timer(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if self.throttle_until.is_some_and(|t| now >= t) {
            self.throttle_until = None;
        }
        if !self.released && now >= self.last_read + IDLE_RELEASE {
            // Safe mid-stanza too: rxml keeps what it buffered, only the spare capacity goes.
            self.parser.release_memory();
            self.out = Vec::new();
            self.released = true;
        }
        let every = self.server.config.stream_management.ack_request_stanzas;
        if let Some(sm) = &mut self.sm
            && sm.ack_due(every, now)
        {
            sm.asked();
            self.write_raw(super::sm::ACK_REQUEST).await?;
        }
        let limits = &self.server.config.limits;
        match &self.phase {
            Phase::Bound { jid, .. } if limits.idle_ping_secs > 0 => match self.ping_sent {
                Some(sent) if now >= sent + Duration::from_secs(limits.ping_timeout_secs) => {
                    Err(self
                        .fail(StreamError::with_text(
                            Cond::ConnectionTimeout,
                            "No answer to ping",
                        ))
                        .await)
                }
                None if now >= self.last_read + Duration::from_secs(limits.idle_ping_secs) => {
                    // XEP-0199 §3: the server pings an idle client to detect dead connections.
                    let ping = Element::new("iq", ns::CLIENT)
                        .with_attr("type", "get")
                        .with_attr("id", "c2s-idle-ping")
                        .with_attr("from", self.domain.as_str())
                        .with_attr("to", jid.as_str())
                        .with_child(Element::new("ping", ns::PING));
                    self.ping_sent = Some(now);
                    self.send(&ping).await
                }
                _ => Ok(()),
            },
            Phase::Bound { .. } => Ok(()),
            _ if now >= self.auth_deadline => Err(self
                .fail(StreamError::with_text(
                    Cond::ConnectionTimeout,
                    "Authentication took too long",
                ))
                .await),
            _ if now >= self.preauth_idle_deadline() => Err(self
                .fail(StreamError::with_text(
                    Cond::ConnectionTimeout,
                    "Nothing received before authentication",
                ))
                .await),
            _ => Ok(()),
        }
    }

    /// An unauthenticated connection that stays silent this long is closed: idle sockets
    /// are what connection floods are made of.
    fn preauth_idle_deadline(&self) -> Instant {
        self.last_read + Duration::from_secs(self.server.config.limits.unauthenticated_idle_secs)
    }

    /// `data` is what the client sent, `wire` what it cost on the socket (under TLS the
    /// records, including those that carried nothing): the rate limit counts the latter.
    async fn on_bytes(&mut self, data: &[u8], wire: usize) -> Result<(), End> {
        let now = Instant::now();
        self.last_read = now;
        self.guard.touch();
        self.released = false;
        self.ping_sent = None;
        let wait = self.bucket.take(wire, now);
        if !wait.is_zero() {
            self.throttle_until = Some(now + wait);
        }
        let mut input = data;
        loop {
            let event = match self.parser.next_event(&mut input) {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(xml_error(&e)).await),
            };
            match event {
                StreamEvent::Open(header) => self.on_stream_open(&header).await?,
                StreamEvent::Close => return Err(End::ClientClosed),
                StreamEvent::Stanza(el) => {
                    if self.on_element(el).await? == AfterElement::DiscardInput {
                        // RFC 6120 §5.4.3.3: nothing sent before the TLS handshake is kept.
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn on_stream_open(&mut self, header: &StreamHeader) -> Result<(), End> {
        if header.name != "stream" || header.ns != ns::STREAM {
            return Err(self
                .fail(StreamError::with_text(
                    Cond::InvalidNamespace,
                    "The stream must be <stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
                ))
                .await);
        }
        // RFC 6120 §4.8.2: the content namespace of a client stream is jabber:client.
        if header.default_ns != ns::CLIENT {
            return Err(self
                .fail(StreamError::with_text(
                    Cond::InvalidNamespace,
                    "The default namespace must be jabber:client",
                ))
                .await);
        }
        let major = header
            .attr("version")
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major != Some(1) {
            // RFC 6120 §4.7.5: we speak 1.0 only (no pre-RFC 0.9 streams).
            return Err(self
                .fail(StreamError::with_text(
                    Cond::UnsupportedVersion,
                    "Only XMPP 1.0 streams (version='1.0') are served",
                ))
                .await);
        }
        if let Some(to) = header.attr("to") {
            let domain = Jid::new(to)
                .ok()
                .filter(|j| j.node().is_none() && j.resource().is_none());
            match domain {
                // After authentication the restarted stream must stay on the account's domain.
                Some(d) if !matches!(self.phase, Phase::PreAuth) && d.as_str() != self.domain => {
                    return Err(self
                        .fail(StreamError::with_text(
                            Cond::HostUnknown,
                            "The stream changed domains",
                        ))
                        .await);
                }
                Some(d) if self.server.config.serves(d.as_str()) => {
                    self.domain = d.as_str().to_string()
                }
                _ => {
                    let text = format!("This server does not serve {to}");
                    return Err(self
                        .fail(StreamError::with_text(Cond::HostUnknown, text))
                        .await);
                }
            }
        }
        self.send_header().await?;
        let features = self.features();
        self.write_stream_element("features", &features).await
    }

    async fn send_header(&mut self) -> Result<(), End> {
        let id = crate::random_id();
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' id='{id}' from='{}' version='1.0' xml:lang='en'>",
            ns::CLIENT,
            ns::STREAM,
            self.domain
        );
        self.header_sent = true;
        self.write_raw(header.as_bytes()).await
    }

    /// Stream features for the current phase (RFC 6120 §4.3.2).
    fn features(&self) -> Vec<Element> {
        let mut features = Vec::new();
        match &self.phase {
            Phase::PreAuth => {
                if self.transport.can_starttls() {
                    let mut starttls = Element::new("starttls", ns::TLS);
                    if self.server.config.c2s.require_tls {
                        starttls.append_child(Element::new("required", ns::TLS));
                    }
                    features.push(starttls);
                }
                features.extend(self.sasl_features());
                if self.transport.is_tls() && self.server.config.registration_open() {
                    features.push(Element::new("register", ns::REGISTER_FEATURE));
                }
            }
            Phase::Authenticated(_) => {
                features.push(Element::new("bind", ns::BIND));
                // XEP-0198 §2: stream management is offered once the client authenticated;
                // XEP-0352 §3 client state indication too.
                features.push(Element::new("sm", ns::SM));
                features.push(Element::new("csi", ns::CSI));
                features.extend(self.server.modules.stream_features(&self.server));
                // RFC 3921 session establishment, optional (draft-cridland-xmpp-session).
                features.push(
                    Element::new("session", ns::SESSION)
                        .with_child(Element::new("optional", ns::SESSION)),
                );
            }
            Phase::Bound { .. } => {}
        }
        features
    }

    async fn on_element(&mut self, el: Element) -> Result<AfterElement, End> {
        match &self.phase {
            // The rarely taken paths are boxed: a task's future is as large as its largest
            // await point, for its whole life, and these would make every idle session pay.
            Phase::PreAuth => Box::pin(self.on_pre_auth(el)).await,
            Phase::Authenticated(user) => {
                let user = user.clone();
                Box::pin(self.on_authenticated(el, user))
                    .await
                    .map(|_| AfterElement::Continue)
            }
            Phase::Bound { jid, .. } => {
                let jid = jid.clone();
                self.on_established(el, jid)
                    .await
                    .map(|_| AfterElement::Continue)
            }
        }
    }

    async fn on_pre_auth(&mut self, el: Element) -> Result<AfterElement, End> {
        match (el.ns(), el.name()) {
            (ns::TLS, "starttls") => {
                return self.starttls().await.map(|_| AfterElement::DiscardInput);
            }
            (ns::SASL, _) => self.on_sasl(el).await?,
            (ns::CLIENT, "iq") if el.children().any(|c| c.ns() == ns::REGISTER) => {
                self.on_pre_auth_register(el).await?
            }
            _ => {
                return Err(self
                    .fail(StreamError::with_text(
                        Cond::NotAuthorized,
                        "Authenticate first",
                    ))
                    .await);
            }
        }
        Ok(AfterElement::Continue)
    }

    async fn starttls(&mut self) -> Result<(), End> {
        if !self.transport.can_starttls() {
            return Err(self
                .fail(StreamError::with_text(
                    Cond::PolicyViolation,
                    "STARTTLS is not offered on this stream",
                ))
                .await);
        }
        // The handshake is the expensive step: its pace per address is checked before we
        // agree to it (RFC 6120 §5.4.2.2: <failure/>, then the stream is closed).
        let Ok(turn) = self.server.connections.handshake_turn(self.guard.key()) else {
            self.write_raw(format!("<failure xmlns='{}'/></stream:stream>", ns::TLS).as_bytes())
                .await?;
            return Err(End::TlsFailed);
        };
        self.write_raw(format!("<proceed xmlns='{}'/>", ns::TLS).as_bytes())
            .await?;
        let Transport::Plain(tcp) = std::mem::replace(&mut self.transport, Transport::Upgrading)
        else {
            return Err(End::TlsFailed);
        };
        let config = self.server.tls.starttls.clone();
        let handshake = Box::pin(accept_tls(&config, tcp));
        let Some(secure) = paced_tls(&self.guard, turn, self.auth_deadline, handshake).await else {
            return Err(End::TlsFailed);
        };
        self.transport = secure.transport;
        let tls_exporter = secure.tls_exporter;
        self.auth_mut().bindings = self.channel_bindings(tls_exporter);
        self.restart_stream();
        Ok(())
    }

    /// RFC 6120 §4.3.3: after TLS and after SASL success both sides start a new stream.
    pub(super) fn restart_stream(&mut self) {
        self.parser.reset();
        self.header_sent = false;
    }

    pub(super) fn channel_bindings(&self, tls_exporter: Option<Vec<u8>>) -> ChannelBindings {
        ChannelBindings {
            tls_exporter,
            tls_server_end_point: self.server.tls.server_end_point.clone(),
        }
    }

    async fn on_authenticated(&mut self, el: Element, user: BareJid) -> Result<(), End> {
        if el.ns() == ns::SM {
            return self.on_sm(el).await;
        }
        let is_iq_set = el.is("iq", ns::CLIENT) && el.attr("type") == Some("set");
        match el.first_child() {
            Some(bind) if is_iq_set && bind.is("bind", ns::BIND) => {
                self.bind_resource(&el, user).await
            }
            Some(session) if is_iq_set && session.is("session", ns::SESSION) => {
                self.answer_session(&el).await
            }
            _ => Err(self
                .fail(StreamError::with_text(
                    Cond::NotAuthorized,
                    "Bind a resource first",
                ))
                .await),
        }
    }

    /// Called by `bind_resource` once the session manager accepted the resource.
    pub(super) async fn established(&mut self, jid: FullJid, bound: crate::sessions::BoundSession) {
        tracing::Span::current().record("jid", tracing::field::display(&jid));
        tracing::info!("session started");
        self.phase = Phase::Bound {
            jid: jid.clone(),
            id: bound.id,
        };
        self.control = Some(bound.control);
        self.last_read = Instant::now();
        let ctx = crate::module::Ctx {
            server: self.server.clone(),
        };
        // The session this one replaced is cleaned up now, by us, not by its own task
        // whenever its (often dead) socket lets it finish: that would hit this session.
        if let Some((old, last)) = bound.replaced {
            let closed = SessionEvent::Closed {
                jid: jid.clone(),
                id: old,
                last,
            };
            Box::pin(self.server.modules.on_session(&ctx, &closed)).await;
        }
        let event = SessionEvent::Bound { jid, id: bound.id };
        Box::pin(self.server.modules.on_session(&ctx, &event)).await;
    }

    /// Legacy session establishment (RFC 3921 §3): nothing to do but say yes.
    pub(super) async fn answer_session(&mut self, iq: &Element) -> Result<(), End> {
        let mut result = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("from", self.domain.as_str());
        if let Some(id) = iq.attr("id") {
            result.set_attr("id", id);
        }
        self.send(&result).await
    }

    async fn on_established(&mut self, el: Element, jid: FullJid) -> Result<(), End> {
        if el.ns() == ns::SM {
            return Box::pin(self.on_sm(el)).await;
        }
        if el.ns() == ns::CSI {
            return Box::pin(self.on_csi(&el)).await;
        }
        self.on_stanza(el, jid).await?;
        // XEP-0198 §4: every stanza counts as handled once processed, errors included.
        if let Some(sm) = &mut self.sm {
            sm.handled();
        }
        Ok(())
    }

    async fn on_stanza(&mut self, mut el: Element, jid: FullJid) -> Result<(), End> {
        let Some(kind) = StanzaKind::of(&el, ns::CLIENT) else {
            let err = match el.name() {
                "message" | "presence" | "iq" => StreamError::with_text(
                    Cond::InvalidNamespace,
                    "Stanzas on a client stream are in the jabber:client namespace",
                ),
                other => StreamError::with_text(
                    Cond::UnsupportedStanzaType,
                    format!("<{other}/> is not a stanza this stream understands"),
                ),
            };
            return Err(self.fail(err).await);
        };
        // RFC 6120 §8.1.2.1: the server adds the session's full JID as `from`, overriding
        // whatever the client put there. Some clients stamp another address of theirs (poezio
        // puts its in-room address on private messages), so a foreign `from` is corrected,
        // not punished with `invalid-from`, which is for peers claiming unproven domains.
        if el.attr("from").is_some_and(|from| from != jid.as_str()) {
            tracing::debug!(from = el.attr("from"), "client-supplied from overridden");
        }
        el.set_attr("from", jid.as_str());
        if kind == StanzaKind::Iq {
            if el.attr("id").is_none() || corvid_proto::IqType::parse(el.attr("type")).is_none() {
                return self.reply_error(&el, StanzaError::bad_request()).await;
            }
            let to_server = el.attr("to").is_none_or(|to| to == self.domain);
            if to_server
                && el.attr("type") == Some("set")
                && el
                    .first_child()
                    .is_some_and(|c| c.is("session", ns::SESSION))
            {
                return self.answer_session(&el).await;
            }
            if el.attr("type") == Some("set")
                && el.first_child().is_some_and(|c| c.is("bind", ns::BIND))
            {
                // RFC 6120 §7.6.2.1: one resource per stream.
                return self.reply_error(&el, StanzaError::not_allowed()).await;
            }
        }
        self.server.metrics.stanzas_in.count(kind);
        Box::pin(crate::router::route_from_client(&self.server, el)).await;
        Ok(())
    }

    /// Answers a stanza from this client with an error, directly.
    pub(super) async fn reply_error(&mut self, el: &Element, err: StanzaError) -> Result<(), End> {
        if !corvid_proto::stanza::may_bounce(el) {
            return Ok(());
        }
        let mut reply = corvid_proto::stanza::error_reply(el, &err);
        if reply.attr("from").is_none() {
            reply.set_attr("from", self.domain.as_str());
        }
        reply.remove_attr("to");
        if let Phase::Bound { jid, .. } = &self.phase {
            reply.set_attr("to", jid.as_str());
        }
        self.send(&reply).await
    }

    pub(super) async fn finish(mut self, end: End) {
        // A connection on its way out no longer holds a place in the pre-auth budgets.
        self.guard.leave_preauth();
        // Unbind before the (slow) transport shutdown, so nothing more is routed into a
        // queue no one will read: from now on messages go to other resources or offline.
        match &self.phase {
            Phase::Bound { jid, id } => {
                let (jid, id) = (jid.clone(), *id);
                // Only a session still bound is cleaned up here: a replaced one was by the
                // session that replaced it. Modules get its last state with the event.
                let still_bound = self.server.sessions.unbind(&jid, id);
                // What the client never got (or never acknowledged) goes elsewhere, before
                // contacts hear it left: a client that reconnects on seeing that finds it
                // stored (or already at its other resources).
                let (unsent, receipts) = self.unsent();
                Box::pin(crate::router::reroute_unsent(&self.server, &jid, unsent)).await;
                drop(receipts);
                if let Some(last) = still_bound {
                    let ctx = crate::module::Ctx {
                        server: self.server.clone(),
                    };
                    let closed = SessionEvent::Closed {
                        jid: jid.clone(),
                        id,
                        last,
                    };
                    Box::pin(self.server.modules.on_session(&ctx, &closed)).await;
                }
                tracing::info!(reason = %end, "session ended");
            }
            _ => {
                tracing::debug!(reason = %end, "connection closed before a session was established")
            }
        }
        if let End::ClientClosed = end
            && self.header_sent
        {
            let _ = self.write_raw(b"</stream:stream>").await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.transport.shutdown()).await;
    }
}

impl Session {
    /// What this ending session holds that its client never acknowledged (with stream
    /// management) and what was queued but never written, oldest first; with the receipts
    /// of those from other nodes, to drop once they are handed on. Called once the session
    /// is unbound, so nothing more arrives.
    fn unsent(&mut self) -> (Vec<bytes::Bytes>, Vec<Arc<crate::cluster::Receipt>>) {
        let mut unsent: Vec<_> = self.close_sm().into();
        let mut receipts = Vec::new();
        if let Some(control) = &self.control {
            while let Some(queued) = control.pop_queued() {
                receipts.extend(queued.receipt);
                if !queued.stored {
                    unsent.push(queued.bytes);
                }
            }
        }
        (unsent, receipts)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterElement {
    Continue,
    /// Drop the rest of the bytes read so far (the stream was upgraded to TLS).
    DiscardInput,
}

fn xml_limits(server: &Server) -> Limits {
    Limits {
        max_stanza_bytes: server.config.limits.max_stanza_bytes,
        max_depth: server.config.limits.max_depth,
    }
}

fn xml_error(e: &XmlError) -> StreamError {
    let cond = Cond::from_name(e.condition()).unwrap_or(Cond::NotWellFormed);
    StreamError::with_text(cond, e.to_string())
}

pub(super) async fn closed(control: &Option<Arc<SessionControl>>) -> StreamError {
    match control {
        Some(control) => control.closed().await,
        None => std::future::pending().await,
    }
}

async fn next_queued(control: &Option<Arc<SessionControl>>) -> Outbound {
    match control {
        Some(control) => control.next().await,
        None => std::future::pending().await,
    }
}
