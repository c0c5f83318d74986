//! Outgoing connections: to the remote domain's server, TLS (at once where it listens for
//! direct TLS, else STARTTLS), authentication (SASL EXTERNAL, else dialback), then the
//! stanzas of one (local, remote) pair, until the connection is idle, lost or the server
//! stops.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use corvid_proto::{StanzaError, StreamErrorCondition as Cond, ns};
use corvid_xml::{Element, StreamEvent};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::link::{End, Link, NS_DIALBACK, escape, header};
use super::{AuthMethod, Connection, Direction, Registration, State};
use crate::server::Server;

/// How long one TCP connection attempt may take.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection could not be set up: what its stanzas are bounced with.
#[derive(Debug)]
pub(super) enum Failure {
    /// Unresolvable, unreachable, or it refused us (RFC 6120 §8.3.3.14).
    NotFound(String),
    /// Not set up within `connect_timeout_secs` (§8.3.3.15).
    Timeout,
}

impl Failure {
    fn stanza_error(&self, remote: &str) -> StanzaError {
        match self {
            Failure::NotFound(why) => {
                StanzaError::remote_server_not_found().with_text(format!("{remote}: {why}"))
            }
            Failure::Timeout => StanzaError::remote_server_timeout()
                .with_text(format!("{remote} could not be reached in time")),
        }
    }
}

fn failed(end: End) -> Failure {
    Failure::NotFound(match end {
        End::Error(error) => format!("stream error: {error}"),
        End::Io(e) => format!("connection failed: {e}"),
        End::Closed => "the server closed the stream".into(),
        End::Shutdown => "shutting down".into(),
        End::Idle => "idle".into(),
    })
}

/// The outgoing connection of one (local, remote) pair, from connecting to closing.
pub(super) async fn run(
    server: Arc<Server>,
    local: String,
    remote: String,
    mut queue: mpsc::Receiver<Element>,
) {
    let registration = server.s2s.register(Connection {
        id: 0,
        direction: Direction::Outgoing,
        local: local.clone(),
        remote: remote.clone(),
        auth: None,
        state: State::Connecting,
        tls: false,
        direct_tls: false,
        since: SystemTime::now(),
        peer: None,
    });
    let timeout = Duration::from_secs(server.config.s2s.connect_timeout_secs);
    let set_up =
        tokio::time::timeout(timeout, establish(&server, &local, &remote, &registration)).await;
    let (mut link, auth) = match set_up {
        Ok(Ok(established)) => established,
        Ok(Err(failure)) => return give_up(&server, &local, &remote, queue, failure).await,
        Err(_) => return give_up(&server, &local, &remote, queue, Failure::Timeout).await,
    };
    tracing::info!(%local, %remote, ?auth, "s2s outgoing connection established");
    registration.update(|c| {
        c.state = State::Established;
        c.auth = Some(auth);
    });
    let end = exchange(&server, &mut link, &mut queue).await;
    tracing::info!(%local, %remote, end = ?end, "s2s outgoing connection ended");
    queue.close();
    server.s2s.forget_closed(&(local, remote));
    let mut left = Vec::new();
    while let Ok(stanza) = queue.try_recv() {
        left.push(stanza);
    }
    let idle = matches!(end, End::Idle);
    link.finish(&end).await;
    drop(registration);
    for stanza in left {
        if idle {
            // Queued as the connection went idle: they get a new one.
            crate::router::route(&server, stanza).await;
        } else {
            crate::router::bounce(&server, &stanza, StanzaError::remote_server_not_found()).await;
        }
    }
}

/// Bounces everything queued for a connection that never came up.
async fn give_up(
    server: &Arc<Server>,
    local: &str,
    remote: &str,
    mut queue: mpsc::Receiver<Element>,
    failure: Failure,
) {
    tracing::info!(%local, %remote, ?failure, "s2s outgoing connection failed");
    queue.close();
    server
        .s2s
        .forget_closed(&(local.to_owned(), remote.to_owned()));
    let error = failure.stanza_error(remote);
    while let Ok(stanza) = queue.try_recv() {
        crate::router::bounce(server, &stanza, error.clone()).await;
    }
}

/// Connects, secures and authenticates.
async fn establish(
    server: &Arc<Server>,
    local: &str,
    remote: &str,
    registration: &Registration,
) -> Result<(Link, AuthMethod), Failure> {
    let (mut link, features, id) = open_stream(server, local, remote, Some(registration)).await?;
    let external = features
        .get_child("mechanisms", ns::SASL)
        .is_some_and(|m| m.children().any(|c| c.text().trim() == "EXTERNAL"));
    if link.is_tls() && external {
        match sasl_external(server, &mut link, local, remote).await {
            Ok(true) => return Ok((link, AuthMethod::SaslExternal)),
            Ok(false) => tracing::debug!(%remote, "SASL EXTERNAL refused; trying dialback"),
            Err(end) => return Err(failed(end)),
        }
    }
    // Dialback is tried whether or not the peer announces it (XEP-0220 §2.4's feature is
    // recent; older servers do dialback without saying so).
    match dialback(server, &mut link, local, remote, &id).await {
        Ok(true) => Ok((link, AuthMethod::Dialback)),
        Ok(false) => {
            link.finish(&End::Closed).await;
            Err(Failure::NotFound("dialback was refused".into()))
        }
        Err(end) => Err(failed(end)),
    }
}

/// Resolves and connects to `remote`, opens the stream from `local`, and upgrades it to
/// TLS when offered (required with `require_tls`), unless TLS is on from the start (direct
/// TLS, XEP-0368: then STARTTLS must not be used, §3). The link, the features of the last
/// stream and its id.
pub(super) async fn open_stream(
    server: &Arc<Server>,
    local: &str,
    remote: &str,
    registration: Option<&Registration>,
) -> Result<(Link, Element, String), Failure> {
    let mut link = connect(server, remote).await?;
    if let Some(registration) = registration {
        let (peer, direct_tls) = (link.peer_addr(), link.is_tls());
        registration.update(|c| {
            c.state = State::Negotiating;
            c.peer = peer;
            c.tls = direct_tls;
            c.direct_tls = direct_tls;
        });
    }
    let (mut features, mut id) = start_stream(&mut link, local, remote)
        .await
        .map_err(failed)?;
    if link.is_tls() {
        return Ok((link, features, id));
    }
    if features.has_child("starttls", ns::TLS) {
        link.write(format!("<starttls xmlns='{}'/>", ns::TLS).as_bytes())
            .await
            .map_err(failed)?;
        match link.next().await.map_err(failed)? {
            StreamEvent::Stanza(el) if el.is("proceed", ns::TLS) => {}
            _ => return Err(Failure::NotFound("STARTTLS failed".into())),
        }
        link.connect_tls(server.s2s.tls.client.clone(), remote)
            .await
            .map_err(failed)?;
        if let Some(registration) = registration {
            registration.update(|c| c.tls = true);
        }
        (features, id) = start_stream(&mut link, local, remote)
            .await
            .map_err(failed)?;
    } else if server.config.s2s.require_tls {
        link.finish(&End::error(Cond::PolicyViolation, "TLS is required"))
            .await;
        return Err(Failure::NotFound("the server does not offer TLS".into()));
    }
    Ok((link, features, id))
}

/// The first of `remote`'s targets that takes a TCP connection (and, for a direct TLS
/// one, completes the TLS handshake: SNI `remote`, ALPN `xmpp-server`).
async fn connect(server: &Arc<Server>, remote: &str) -> Result<Link, Failure> {
    let targets = server.s2s.resolver.resolve(remote).await;
    let mut last_error = String::from("no address found");
    for target in &targets {
        let (host, port) = (target.host.as_str(), target.port);
        let tcp = match tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect((host, port)))
            .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                last_error = format!("{host}:{port}: {e}");
                continue;
            }
            Err(_) => {
                last_error = format!("{host}:{port}: timed out");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let mut link = Link::new(tcp, server.config.limits.max_stanza_bytes);
        if !target.direct_tls {
            return Ok(link);
        }
        let handshake = link.connect_tls(server.s2s.tls.direct_client.clone(), remote);
        let handshake = tokio::time::timeout(TCP_CONNECT_TIMEOUT, handshake).await;
        match handshake {
            Ok(Ok(())) => return Ok(link),
            Ok(Err(end)) => last_error = format!("{host}:{port}: direct TLS: {end:?}"),
            Err(_) => last_error = format!("{host}:{port}: direct TLS timed out"),
        }
    }
    Err(Failure::NotFound(last_error))
}

/// Writes our stream header and reads the peer's and its features.
async fn start_stream(
    link: &mut Link,
    local: &str,
    remote: &str,
) -> Result<(Element, String), End> {
    link.write(header(local, Some(remote), None).as_bytes())
        .await?;
    let id = match link.next().await? {
        StreamEvent::Open(header) if header.name == "stream" && header.ns == ns::STREAM => {
            header.attr("id").unwrap_or_default().to_owned()
        }
        _ => return Err(End::error(Cond::InvalidNamespace, "Not an XMPP stream")),
    };
    match link.next().await? {
        StreamEvent::Stanza(features) if features.is("features", ns::STREAM) => Ok((features, id)),
        StreamEvent::Stanza(error) if error.is("error", ns::STREAM) => {
            Err(End::Io(std::io::Error::other(stream_error_text(&error))))
        }
        _ => Err(End::error(Cond::BadFormat, "Expected stream features")),
    }
}

fn stream_error_text(error: &Element) -> String {
    let condition = error
        .children()
        .find(|c| c.ns() == ns::STREAM_ERRORS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_default();
    format!("the server sent stream error {condition}")
}

/// SASL EXTERNAL with our certificate (XEP-0178 §2): whether it succeeded; on success the
/// stream is restarted and authenticated.
async fn sasl_external(
    _server: &Arc<Server>,
    link: &mut Link,
    local: &str,
    remote: &str,
) -> Result<bool, End> {
    let authzid = base64::engine::general_purpose::STANDARD.encode(local);
    link.write(
        format!(
            "<auth xmlns='{}' mechanism='EXTERNAL'>{authzid}</auth>",
            ns::SASL
        )
        .as_bytes(),
    )
    .await?;
    loop {
        match link.next().await? {
            StreamEvent::Stanza(el) if el.is("success", ns::SASL) => {
                link.restart();
                start_stream(link, local, remote).await?;
                return Ok(true);
            }
            StreamEvent::Stanza(el) if el.is("failure", ns::SASL) => return Ok(false),
            StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => return Err(End::Closed),
            StreamEvent::Stanza(_) => {}
            StreamEvent::Open(_) | StreamEvent::Close => return Err(End::Closed),
        }
    }
}

/// Dialback (XEP-0220 §2.1): our key for this stream, and the receiving server's verdict.
async fn dialback(
    server: &Arc<Server>,
    link: &mut Link,
    local: &str,
    remote: &str,
    stream_id: &str,
) -> Result<bool, End> {
    let key = server.s2s.secret.key(remote, local, stream_id);
    link.write(
        format!(
            "<db:result from='{}' to='{}'>{key}</db:result>",
            escape(local),
            escape(remote)
        )
        .as_bytes(),
    )
    .await?;
    loop {
        match link.next().await? {
            StreamEvent::Stanza(el)
                if el.is("result", NS_DIALBACK)
                    && el
                        .attr("from")
                        .is_some_and(|f| f.eq_ignore_ascii_case(remote))
                    && el.attr("to").is_some_and(|t| t.eq_ignore_ascii_case(local)) =>
            {
                return Ok(el.attr("type") == Some("valid"));
            }
            StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => {
                return Err(End::Io(std::io::Error::other(stream_error_text(&el))));
            }
            StreamEvent::Stanza(_) => {}
            StreamEvent::Open(_) | StreamEvent::Close => return Err(End::Closed),
        }
    }
}

/// Writes queued stanzas; reads only to notice the end (we do not take stanzas on our
/// own outgoing streams: no XEP-0288).
async fn exchange(
    server: &Arc<Server>,
    link: &mut Link,
    queue: &mut mpsc::Receiver<Element>,
) -> End {
    let idle = Duration::from_secs(server.config.s2s.idle_timeout_secs);
    let mut deadline = Instant::now() + idle;
    let mut shutdown = server.shutdown_signal();
    loop {
        match link.parse_buffered() {
            Ok(Some(StreamEvent::Stanza(el))) if el.is("error", ns::STREAM) => {
                tracing::info!(error = %stream_error_text(&el), "s2s peer ended our stream");
                return End::Closed;
            }
            Ok(Some(StreamEvent::Close | StreamEvent::Open(_))) => return End::Closed,
            Ok(Some(StreamEvent::Stanza(el))) => {
                tracing::debug!(name = el.name(), "ignored on an outgoing s2s stream");
                continue;
            }
            Ok(None) => {}
            Err(end) => return end,
        }
        tokio::select! {
            _ = shutdown.changed() => return End::Shutdown,
            read = link.read_more() => {
                if let Err(end) = read {
                    return end;
                }
                deadline = Instant::now() + idle;
            }
            stanza = queue.recv() => {
                let Some(stanza) = stanza else { return End::Closed };
                // Written in jabber:client without a declaration, a stanza takes the
                // stream's default namespace, jabber:server.
                if let Err(end) = link.write(&stanza.to_bytes(ns::CLIENT)).await {
                    crate::router::bounce(server, &stanza, StanzaError::remote_server_not_found()).await;
                    return end;
                }
                deadline = Instant::now() + idle;
            }
            _ = tokio::time::sleep_until(deadline) => return End::Idle,
        }
    }
}
