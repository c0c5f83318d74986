//! The HTTP side of XEP-0363 file upload: `PUT` of a slot's file, `GET`/`HEAD` of it by
//! anyone with the URL, and CORS (`OPTIONS` preflight, `Access-Control-Allow-Origin: *`)
//! since web clients upload from pages of other origins.
//!
//! A PUT is taken only with the slot's token, before the slot expires, once, with the
//! `Content-Length` and `Content-Type` the slot was asked for (XEP-0363 §6). Its body is
//! streamed to `<slot>.part` and renamed to `<slot>.data` once exactly that many bytes
//! arrived; it is never held in memory.
//!
//! Downloads say `Content-Disposition: attachment` for anything a browser could run
//! (HTML, SVG, scripts), and `X-Content-Type-Options: nosniff` and a sandboxing
//! `Content-Security-Policy` always: an upload must not become a page of this origin.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::Body as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::modules::upload::files::{self, Files, SlotMeta};
use crate::modules::upload::{PATH_PREFIX, encode_segment};
use crate::server::Server;

/// How long an upload may stall before it is given up.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// What a download without a content type is served as.
const OCTET_STREAM: &str = "application/octet-stream";
/// Types a browser shows without running anything.
const INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "text/plain",
];

pub fn routes() -> Router<Arc<Server>> {
    Router::new().route(
        &format!("{PATH_PREFIX}/{{user}}/{{slot}}/{{filename}}"),
        get(download).put(upload).options(preflight),
    )
}

#[derive(Deserialize)]
struct UploadQuery {
    token: Option<String>,
}

/// A refusal, with the CORS header a browser needs to read it.
fn refuse(status: StatusCode, why: &'static str) -> Response {
    (
        status,
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        format!("{why}\n"),
    )
        .into_response()
}

/// The slot a URL names, with its metadata, if the URL is well-formed and the slot
/// exists under that file name.
async fn slot_of<'a>(
    server: &'a Server,
    user: &str,
    slot: &str,
    filename: &str,
) -> Option<(&'a Files, SlotMeta)> {
    let files = server.upload.as_ref()?;
    if !files::valid_id(user) || !files::valid_id(slot) {
        return None;
    }
    let bytes = tokio::fs::read(files.path(user, slot, "json")).await.ok()?;
    let meta: SlotMeta = serde_json::from_slice(&bytes).ok()?;
    (meta.filename == filename).then_some((files, meta))
}

/// CORS preflight (the Fetch standard): any origin may PUT with a `Content-Type`.
async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "GET, HEAD, PUT, OPTIONS",
            ),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type"),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

async fn upload(
    State(server): State<Arc<Server>>,
    Path((user, slot, filename)): Path<(String, String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((files, meta)) = slot_of(&server, &user, &slot, &filename).await else {
        return refuse(StatusCode::FORBIDDEN, "No such upload slot");
    };
    let token = query.token.unwrap_or_default();
    if !files.verify_token(&user, &slot, &meta, &token) {
        return refuse(StatusCode::FORBIDDEN, "Invalid token");
    }
    if files::now() > meta.put_until {
        return refuse(StatusCode::FORBIDDEN, "Upload slot expired");
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        None => return refuse(StatusCode::LENGTH_REQUIRED, "Content-Length required"),
        Some(n) if n > meta.size => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "Larger than the slot");
        }
        Some(n) if n < meta.size => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Content-Length differs from the slot",
            );
        }
        Some(_) => {}
    }
    if let Some(expected) = &meta.content_type {
        let sent = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !sent.trim().eq_ignore_ascii_case(expected) {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type differs from the slot",
            );
        }
    }
    let data = files.path(&user, &slot, "data");
    if tokio::fs::try_exists(&data).await.unwrap_or(true) {
        return refuse(StatusCode::CONFLICT, "Already uploaded");
    }
    let part = files.path(&user, &slot, "part");
    let file = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .await
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return refuse(StatusCode::CONFLICT, "An upload to this slot is under way");
        }
        Err(e) => {
            tracing::warn!(path = %part.display(), error = %e, "cannot create upload file");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "Cannot store the file");
        }
    };
    match receive(body, file, meta.size).await {
        Ok(()) => {}
        Err(status) => {
            let _ = tokio::fs::remove_file(&part).await;
            return refuse(status, "Upload incomplete");
        }
    }
    if let Err(e) = tokio::fs::rename(&part, &data).await {
        tracing::warn!(path = %data.display(), error = %e, "cannot complete upload");
        let _ = tokio::fs::remove_file(&part).await;
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "Cannot store the file");
    }
    tracing::info!(owner = %meta.owner, size = meta.size, slot, "file uploaded");
    (
        StatusCode::CREATED,
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
    )
        .into_response()
}

/// Streams the body into `file`: exactly `size` bytes, or an error status.
async fn receive(mut body: Body, mut file: tokio::fs::File, size: u64) -> Result<(), StatusCode> {
    let mut received: u64 = 0;
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let frame = match tokio::time::timeout(BODY_IDLE_TIMEOUT, frame).await {
            Err(_) => return Err(StatusCode::REQUEST_TIMEOUT),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(StatusCode::BAD_REQUEST),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        received += chunk.len() as u64;
        if received > size {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        if let Err(e) = file.write_all(&chunk).await {
            tracing::warn!(error = %e, "cannot write upload");
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
    if received != size {
        return Err(StatusCode::BAD_REQUEST);
    }
    match file.sync_all().await {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot write upload");
            Err(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

async fn download(
    State(server): State<Arc<Server>>,
    Path((user, slot, filename)): Path<(String, String, String)>,
) -> Response {
    let Some((files, meta)) = slot_of(&server, &user, &slot, &filename).await else {
        return refuse(StatusCode::NOT_FOUND, "Not found");
    };
    let file = match tokio::fs::File::open(files.path(&user, &slot, "data")).await {
        Ok(file) => file,
        Err(_) => return refuse(StatusCode::NOT_FOUND, "Not found"),
    };
    let length = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return refuse(StatusCode::NOT_FOUND, "Not found"),
    };
    let content_type = meta.content_type.as_deref().unwrap_or(OCTET_STREAM);
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    let content_type_value =
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static(OCTET_STREAM));
    headers.insert(header::CONTENT_TYPE, content_type_value);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(value) = HeaderValue::from_str(&disposition(content_type, &meta.filename)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    response
}

/// `Content-Disposition` (RFC 6266): `inline` only for types that run nothing; the name
/// both as plain ASCII and, exactly, as RFC 8187 UTF-8.
fn disposition(content_type: &str, filename: &str) -> String {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let inline = INLINE_TYPES.contains(&essence.as_str())
        || essence.starts_with("audio/")
        || essence.starts_with("video/");
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        encode_segment(filename)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_types_are_shown_inline() {
        assert_eq!(
            disposition("image/png", "a.png"),
            "inline; filename=\"a.png\"; filename*=UTF-8''a.png"
        );
        assert!(disposition("text/html", "x.html").starts_with("attachment;"));
        assert!(disposition("image/svg+xml", "x.svg").starts_with("attachment;"));
        assert_eq!(
            disposition("text/plain; charset=utf-8", "é \"q\".txt"),
            "inline; filename=\"_ _q_.txt\"; filename*=UTF-8''%C3%A9%20%22q%22.txt"
        );
    }
}
