//! The admin API (`[http] admin_api`): JSON under `/api/v1/`, for bearer tokens made
//! with `corvid token create` (`api_tokens.rs`). Each endpoint parses its request into
//! typed values, then calls the operation the CLI uses too (`accounts.rs`,
//! `operations.rs`). Errors are JSON as well: `{"error": "…"}` with 400 (bad input), 401
//! (no or a wrong token), 403 (not over a secure connection), 404, 409 or 500.
//!
//! - `GET /stats`
//! - `GET /users[?domain=D]`, `POST /users {"jid","password"}`, `DELETE /users/{jid}`,
//!   `PUT /users/{jid}/password {"password"}`
//! - `GET /sessions`, `DELETE /sessions/{full jid}`
//! - `GET /rooms`, `DELETE /rooms/{jid}[?reason=R]`
//! - `POST /messages {"to","body"}`, `POST /announcements {"body"}`
//! - `GET /s2s`, `GET /components`

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use corvid_proto::{BareJid, FullJid, Jid};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Peer, client_of};
use crate::accounts::{self, AccountError};
use crate::operations;
use crate::server::Server;

pub fn routes() -> Router<Arc<Server>> {
    let api = Router::new()
        .route("/stats", get(stats))
        .route("/users", get(list_users).post(add_user))
        .route("/users/{jid}", delete(remove_user))
        .route("/users/{jid}/password", put(set_password))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{*jid}", delete(kick_session))
        .route("/rooms", get(list_rooms))
        .route("/rooms/{jid}", delete(destroy_room))
        .route("/messages", post(send_message))
        .route("/announcements", post(announce))
        .route("/s2s", get(list_s2s))
        .route("/components", get(list_components))
        .fallback(not_found);
    Router::new().nest("/api/v1", api)
}

/// An error answered as `{"error": "…"}`.
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(text: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, text.into())
    }

    fn not_found(text: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, text.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.1 }).to_string();
        let mut response =
            (self.0, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let status = match e {
            AccountError::InvalidJid(_)
            | AccountError::UnknownDomain(_)
            | AccountError::EmptyPassword => StatusCode::BAD_REQUEST,
            AccountError::Exists => StatusCode::CONFLICT,
            AccountError::NotFound => StatusCode::NOT_FOUND,
            AccountError::Store(_) | AccountError::Internal(_) => {
                tracing::warn!(error = %e, "admin API: account operation failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(value: Value) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A request that bore a valid token, over a secure connection. Every endpoint takes it,
/// so nothing under `/api/v1/` (not even a 404) answers without it.
struct Authorized;

impl FromRequestParts<Arc<Server>> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        server: &Arc<Server>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = || {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required".into(),
            )
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(unauthorized)?;
        let file = crate::api_tokens::path(&server.config);
        let tokens = match tokio::fs::read_to_string(&file).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                tracing::warn!(path = %file.display(), error = %e, "admin API: cannot read the tokens");
                return Err(ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the tokens cannot be read".into(),
                ));
            }
        };
        let Some(name) = crate::api_tokens::verify(&tokens, presented) else {
            return Err(unauthorized());
        };
        if let Some(peer) = parts.extensions.get::<Peer>() {
            let client = client_of(&server.config.http, peer, &parts.headers);
            if !client.secure {
                return Err(ApiError(
                    StatusCode::FORBIDDEN,
                    "the admin API is served over HTTPS only".into(),
                ));
            }
            tracing::debug!(token = %name, ip = %client.ip, path = %parts.uri.path(), "admin API request");
        }
        Ok(Authorized)
    }
}

/// A JSON body of type `T`, or 400.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

fn user_jid(server: &Server, text: &str) -> Result<BareJid, ApiError> {
    Ok(accounts::parse_user(text, &server.config)?)
}

async fn not_found(_: Authorized) -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn stats(_: Authorized, State(server): State<Arc<Server>>) -> ApiResult {
    let stats = operations::stats(&server);
    let by_transport: serde_json::Map<String, Value> = stats
        .sessions_by_transport
        .iter()
        .map(|(t, n)| ((*t).to_owned(), json!(n)))
        .collect();
    ok(json!({
        "uptime_seconds": stats.uptime.as_secs(),
        "sessions": stats.sessions,
        "sessions_by_transport": by_transport,
        "s2s_connections": { "in": stats.s2s_incoming, "out": stats.s2s_outgoing },
        "resident_memory_bytes": stats.resident_memory,
    }))
}

async fn list_users(
    _: Authorized,
    State(server): State<Arc<Server>>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let users = accounts::list(
        &server.store,
        &server.config,
        query.get("domain").map(String::as_str),
    )
    .await?;
    ok(json!({ "users": users }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    jid: String,
    password: String,
}

async fn add_user(_: Authorized, State(server): State<Arc<Server>>, bytes: Bytes) -> ApiResult {
    let new: NewUser = body(&bytes)?;
    let user = user_jid(&server, &new.jid)?;
    accounts::create(&server.store, &user, &new.password).await?;
    tracing::info!(jid = %user, "account created by the administrator");
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "jid": user.as_str() })),
    )
        .into_response())
}

async fn remove_user(
    _: Authorized,
    State(server): State<Arc<Server>>,
    Path(jid): Path<String>,
) -> ApiResult {
    let user = user_jid(&server, &jid)?;
    operations::remove_user(&server, &user).await?;
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

async fn set_password(
    _: Authorized,
    State(server): State<Arc<Server>>,
    Path(jid): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let user = user_jid(&server, &jid)?;
    let new: NewPassword = body(&bytes)?;
    accounts::set_password(&server.store, &user, &new.password).await?;
    no_content()
}

async fn list_sessions(_: Authorized, State(server): State<Arc<Server>>) -> ApiResult {
    let sessions: Vec<Value> = operations::sessions(&server)
        .into_iter()
        .map(|s| {
            // In a cluster, where each runs; its address and transport only its node knows.
            let node = s.node.as_deref().map(str::to_owned).or_else(|| {
                server
                    .cluster
                    .get()
                    .map(|cluster| cluster.node().to_string())
            });
            json!({
                "jid": s.jid.as_str(),
                "ip": s.origin.map(|o| o.ip.to_string()),
                "transport": s.origin.map(|o| o.transport),
                "since": unix_seconds(s.since),
                "node": node,
            })
        })
        .collect();
    ok(json!({ "sessions": sessions }))
}

async fn kick_session(
    _: Authorized,
    State(server): State<Arc<Server>>,
    Path(jid): Path<String>,
) -> ApiResult {
    let jid = FullJid::new(&jid)
        .map_err(|_| ApiError::bad_request(format!("{jid:?} is not a full JID")))?;
    if !operations::kick(&server, &jid) {
        return Err(ApiError::not_found(format!("no session is bound to {jid}")));
    }
    no_content()
}

async fn list_rooms(_: Authorized, State(server): State<Arc<Server>>) -> ApiResult {
    let rooms: Vec<Value> = operations::rooms(&server)
        .await
        .into_iter()
        .map(|r| {
            json!({
                "jid": r.jid.as_str(),
                "name": r.name,
                "occupants": r.occupants,
                "persistent": r.persistent,
                "public": r.public,
            })
        })
        .collect();
    ok(json!({ "rooms": rooms }))
}

async fn destroy_room(
    _: Authorized,
    State(server): State<Arc<Server>>,
    Path(jid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let room = BareJid::new(&jid)
        .ok()
        .filter(|r| r.node().is_some())
        .ok_or_else(|| ApiError::bad_request(format!("{jid:?} is not a room JID")))?;
    let reason = query.get("reason").map(String::as_str);
    if !operations::destroy_room(&server, &room, reason).await {
        return Err(ApiError::not_found(format!("no room {room}")));
    }
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMessage {
    to: String,
    body: String,
}

async fn send_message(_: Authorized, State(server): State<Arc<Server>>, bytes: Bytes) -> ApiResult {
    let message: NewMessage = body(&bytes)?;
    let to = Jid::new(&message.to)
        .map_err(|_| ApiError::bad_request(format!("{:?} is not a JID", message.to)))?;
    if message.body.is_empty() {
        return Err(ApiError::bad_request("the body must not be empty"));
    }
    operations::send_message(&server, &to, &message.body).await;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "to": to.as_str() })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Announcement {
    body: String,
}

async fn announce(_: Authorized, State(server): State<Arc<Server>>, bytes: Bytes) -> ApiResult {
    let announcement: Announcement = body(&bytes)?;
    if announcement.body.is_empty() {
        return Err(ApiError::bad_request("the body must not be empty"));
    }
    let sessions = operations::announce(&server, &announcement.body).await;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "sessions": sessions })),
    )
        .into_response())
}

async fn list_s2s(_: Authorized, State(server): State<Arc<Server>>) -> ApiResult {
    use crate::s2s::{AuthMethod, Direction, State};
    let connections: Vec<Value> = server
        .s2s
        .connections()
        .into_iter()
        .map(|c| {
            json!({
                "remote": c.remote,
                "local": c.local,
                "direction": match c.direction {
                    Direction::Incoming => "in",
                    Direction::Outgoing => "out",
                },
                "state": match c.state {
                    State::Connecting => "connecting",
                    State::Negotiating => "negotiating",
                    State::Established => "established",
                },
                "auth": c.auth.map(|a| match a {
                    AuthMethod::Dialback => "dialback",
                    AuthMethod::SaslExternal => "sasl-external",
                }),
                "tls": c.tls,
                "direct_tls": c.direct_tls,
                "since": unix_seconds(c.since),
            })
        })
        .collect();
    ok(json!({ "connections": connections }))
}

async fn list_components(_: Authorized, State(server): State<Arc<Server>>) -> ApiResult {
    let components: Vec<Value> = operations::components(&server)
        .into_iter()
        .map(|(domain, connected)| json!({ "domain": domain, "connected": connected }))
        .collect();
    ok(json!({ "components": components }))
}

fn unix_seconds(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
