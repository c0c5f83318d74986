//! Prometheus metrics at `/metrics` (`[http] metrics`), in the text exposition format,
//! rendered from the server's counters (`metrics.rs`) when scraped. Only loopback and the
//! addresses in `[http] metrics_allow` may read it; others get 403.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Peer, client_of};
use crate::server::Server;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes() -> Router<Arc<Server>> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(
    State(server): State<Arc<Server>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let config = &server.config.http;
    let client = client_of(config, &peer, &headers);
    if !client.ip.is_loopback() && !config.metrics_allow.contains(&client.ip) {
        return (
            StatusCode::FORBIDDEN,
            "metrics are not served to this address\n",
        )
            .into_response();
    }
    let text = crate::operations::metrics_text(&server);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}
