//! XEP-0156: where a web client finds this server's WebSocket and BOSH endpoints, in
//! `/.well-known/host-meta` (XRD) and `/.well-known/host-meta.json` (JRD).
//!
//! The links are made from `[http] public_url` when set, else from the request itself
//! (its `Host`, over the scheme the client used), so that a default install answers with
//! addresses the asking client can reach.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use corvid_xml::escape;

use super::Peer;
use crate::server::Server;

const WEBSOCKET_REL: &str = "urn:xmpp:alt-connections:websocket";
const BOSH_REL: &str = "urn:xmpp:alt-connections:xbosh";

pub fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/.well-known/host-meta", get(xrd))
        .route("/.well-known/host-meta.json", get(jrd))
}

/// The base URL (`https://host:port`, no trailing slash) the client should use.
pub fn base_url(server: &Server, peer: &Peer, headers: &HeaderMap) -> String {
    let config = &server.config.http;
    if let Some(url) = &config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let forwarded_https = config.trusted_proxies.contains(&peer.addr.ip())
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let scheme = if peer.https || forwarded_https {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| valid_host(h))
        .map(str::to_owned)
        .unwrap_or_else(|| peer_local_host(server));
    format!("{scheme}://{host}")
}

/// A `Host` header fit to put in a link: a name or address, perhaps with a port.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

fn peer_local_host(server: &Server) -> String {
    server.config.default_domain().to_owned()
}

/// The endpoints offered, as (rel, URL).
fn links(server: &Server, peer: &Peer, headers: &HeaderMap) -> Vec<(&'static str, String)> {
    let base = base_url(server, peer, headers);
    let config = &server.config.http;
    let mut links = Vec::new();
    if config.websocket {
        let ws = base
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        links.push((WEBSOCKET_REL, format!("{ws}/xmpp-websocket")));
    }
    if config.bosh {
        links.push((BOSH_REL, format!("{base}/http-bind")));
    }
    links
}

async fn xrd(
    State(server): State<Arc<Server>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let mut body = String::from(
        "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n",
    );
    for (rel, href) in links(&server, &peer, &headers) {
        body.push_str(&format!("  <Link rel='{rel}' href='{}'/>\n", escape(&href)));
    }
    body.push_str("</XRD>\n");
    (
        [
            (header::CONTENT_TYPE, "application/xrd+xml"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
}

async fn jrd(
    State(server): State<Arc<Server>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let links: Vec<serde_json::Value> = links(&server, &peer, &headers)
        .into_iter()
        .map(|(rel, href)| serde_json::json!({ "rel": rel, "href": href }))
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        serde_json::json!({ "links": links }).to_string(),
    )
}
