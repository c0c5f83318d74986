//! XMPP over BOSH (XEP-0124, XEP-0206) at `/http-bind`: the client POSTs `<body/>`
//! wrappers of stanzas and the server answers each, holding one request open until it has
//! something to say. As with WebSocket, the stream itself is the c2s state machine TCP
//! clients get, over a [`Bridge`](crate::c2s::bridge::Bridge); each session's carrier is a
//! task of its own (`session.rs`) that the HTTP requests talk to.
//!
//! - `body.rs`: the `<body/>` wrapper read and written;
//! - `window.rs`: the `rid` window (order, retransmission);
//! - `session.rs`: one session's carrier (holding, batching, timeouts).
//!
//! Limits: browsers' `Origin` is checked against `[http] origins` (and answered with
//! CORS headers); a session is admitted like a TCP connection (per-address limits, the
//! connection limit); a request's body is bounded by twice `limits.max_stanza_bytes`; a
//! session has at most `requests` requests in its window; a session no request comes for
//! within `inactivity` seconds ends.

mod body;
mod session;
mod window;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body as HttpBody;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

use self::body::Body;
use self::session::{Request, Session, Settings};
use super::{Peer, client_of};
use crate::c2s::bridge;
use crate::server::Server;

/// At most this many requests of a session wait for its task at once (more wait in
/// their HTTP handlers).
const REQUEST_QUEUE: usize = 4;
/// XEP-0124 §7.1: `hold` above 1 only delays; `requests` is one more than `hold`.
const MAX_HOLD: u64 = 1;
/// The shortest polling interval announced (XEP-0124 §7.1 `polling`).
const POLLING: Duration = Duration::from_secs(2);

/// The live sessions by `sid`.
#[derive(Default)]
pub struct Sessions {
    by_sid: DashMap<String, mpsc::Sender<Request>>,
}

impl Sessions {
    fn remove(&self, sid: &str) {
        self.by_sid.remove(sid);
    }
}

pub fn routes() -> Router<Arc<Server>> {
    let sessions = Arc::new(Sessions::default());
    let service = post(request).get(help).options(preflight);
    Router::new()
        .route("/http-bind", service.clone())
        .route("/http-bind/", service)
        .layer(Extension(sessions))
}

async fn help() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "This is a BOSH (XEP-0124, XEP-0206) endpoint: POST <body/> requests here.\n",
    )
}

/// A browser asking whether it may POST (CORS preflight).
async fn preflight(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    match cors(&server, &headers) {
        Ok(mut allowed) => {
            allowed.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            allowed.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Content-Type"),
            );
            allowed.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
            (StatusCode::NO_CONTENT, allowed).into_response()
        }
        Err(refused) => refused,
    }
}

/// The CORS headers for a request from a browser page whose origin may use the server;
/// a refusal otherwise.
#[allow(clippy::result_large_err)]
fn cors(server: &Server, headers: &HeaderMap) -> Result<HeaderMap, Response> {
    let mut out = HeaderMap::new();
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(out);
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|o| server.config.http.allows_origin(o));
    if !allowed {
        tracing::debug!(?origin, "BOSH from an origin not allowed");
        return Err((StatusCode::FORBIDDEN, "This origin may not connect\n").into_response());
    }
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    Ok(out)
}

async fn request(
    State(server): State<Arc<Server>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    http_body: HttpBody,
) -> Response {
    let cors = match cors(&server, &headers) {
        Ok(cors) => cors,
        Err(refused) => return refused,
    };
    let limit = server.config.limits.max_stanza_bytes.saturating_mul(2);
    let Ok(bytes) = axum::body::to_bytes(http_body, limit).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, cors, "Request too large\n").into_response();
    };
    let parsed = std::str::from_utf8(&bytes)
        .map_err(|e| body::BodyError::Malformed(e.to_string()))
        .and_then(Body::parse);
    let body = match parsed {
        Ok(body) => body,
        Err(e) => {
            tracing::debug!(error = %e, "bad BOSH request");
            let answer = body::terminate(Some("bad-request"), &[]);
            return xml(StatusCode::BAD_REQUEST, cors, answer);
        }
    };
    let answer = match body.sid.as_deref() {
        None => create(&server, &sessions, &peer, &headers, body).await,
        Some(sid) => match sessions.by_sid.get(sid).map(|s| s.clone()) {
            Some(session) => {
                let (reply, answer) = oneshot::channel();
                if session.send(Request { body, reply }).await.is_err() {
                    body::terminate(Some("item-not-found"), &[])
                } else {
                    answer
                        .await
                        .unwrap_or_else(|_| body::terminate(Some("item-not-found"), &[]))
                }
            }
            None => body::terminate(Some("item-not-found"), &[]),
        },
    };
    xml(StatusCode::OK, cors, answer)
}

fn xml(status: StatusCode, mut headers: HeaderMap, body: Bytes) -> Response {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    // Answers to long polls must never come from a cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (status, headers, body).into_response()
}

/// A session creation request (XEP-0124 §7.1): a stream on a new bridge, and the answer
/// once the stream's features are there.
async fn create(
    server: &Arc<Server>,
    sessions: &Arc<Sessions>,
    peer: &Peer,
    headers: &HeaderMap,
    body: Body,
) -> Bytes {
    let config = &server.config.http;
    let client = client_of(config, peer, headers);
    let Some(sid) = new_sid() else {
        return body::terminate(Some("internal-server-error"), &[]);
    };
    let guard = match server.connections.admit(client.ip) {
        Ok(guard) => guard,
        Err(refusal) => {
            tracing::debug!(ip = %client.ip, ?refusal, "BOSH session refused");
            return body::terminate(Some("policy-violation"), &[]);
        }
    };
    let max_wait = config.bosh_max_wait_secs.max(1);
    let hold = body.hold.unwrap_or(MAX_HOLD).clamp(1, MAX_HOLD);
    let settings = Settings {
        sid: sid.clone(),
        wait: Duration::from_secs(body.wait.unwrap_or(max_wait).clamp(1, max_wait)),
        hold: hold as usize,
        requests: hold + 1,
        inactivity: Duration::from_secs(config.bosh_inactivity_secs.max(1)),
        max_pause: Duration::from_secs(config.bosh_max_pause_secs),
        polling: POLLING,
        secure: client.secure,
        max_queued: server.config.limits.max_stanza_bytes,
    };
    let (bridge, carrier) = bridge::bridge(client.secure);
    tokio::spawn(crate::c2s::run_bridged(
        server.clone(),
        bridge,
        SocketAddr::new(client.ip, 0),
        "bosh",
        guard,
    ));
    let header = bridge::open_header(body.to.as_deref(), body.lang.as_deref());
    let (to_task, requests) = mpsc::channel(REQUEST_QUEUE);
    sessions.by_sid.insert(sid.clone(), to_task);
    let (reply, answer) = oneshot::channel();
    let session = Session::new(settings, carrier, Request { body, reply }, header);
    tokio::spawn(session.run(requests, sessions.clone()));
    tracing::debug!(%sid, ip = %client.ip, "BOSH session created");
    answer
        .await
        .unwrap_or_else(|_| body::terminate(Some("remote-connection-failed"), &[]))
}

/// A session id no one can guess: 128 random bits from the OS.
fn new_sid() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
