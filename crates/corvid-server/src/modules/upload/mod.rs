//! XEP-0363 HTTP file upload: the service on `upload.<domain>` hands out slots — a PUT URL
//! to upload one file to and a GET URL to share — and the HTTP listener takes the upload
//! and serves it (`http/upload.rs`). Files, their metadata and the URL signing key are in
//! `files.rs`; an hourly sweep (more often for short lifetimes) deletes expired files.
//!
//! A slot's URLs are fixed when it is given out: they are made from `[http] public_url`,
//! else `https://<first domain>:<first tls_listen port>`, never from an HTTP request.

pub mod files;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use corvid_proto::{BareJid, ErrorType, Iq, IqType, Jid, StanzaError, forms, ns};
use corvid_xml::Element;

use crate::config::Config;
use crate::module::{Ctx, Module};
use crate::server::Server;
use files::{Files, SlotMeta};

/// Where the HTTP listener serves uploads: `/upload/<account key>/<slot>/<file name>`.
pub const PATH_PREFIX: &str = "/upload";
/// Longest file name accepted, in bytes (what most file systems allow).
const MAX_FILENAME_BYTES: usize = 255;
/// Longest content type accepted.
const MAX_CONTENT_TYPE_BYTES: usize = 255;
/// The longest time between sweeps.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// Whether the service runs: enabled, not left out in `[modules] disabled`, and with an
/// HTTP listener (or a proxy's public URL) to upload to.
pub fn active(config: &Config) -> bool {
    let http = &config.http;
    config.upload.enabled
        && http.enabled
        && (!http.listen.is_empty() || !http.tls_listen.is_empty())
        && !config.modules.disabled.iter().any(|d| d == "upload")
}

/// The base of upload URLs, without a trailing slash.
pub fn base_url(config: &Config) -> String {
    if let Some(url) = &config.http.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let domain = config.default_domain();
    match (config.http.tls_listen.first(), config.http.listen.first()) {
        (Some(tls), _) if tls.port() == 443 => format!("https://{domain}"),
        (Some(tls), _) => format!("https://{domain}:{}", tls.port()),
        (None, Some(plain)) if plain.port() == 80 => format!("http://{domain}"),
        (None, Some(plain)) => format!("http://{domain}:{}", plain.port()),
        (None, None) => format!("https://{domain}"),
    }
}

/// Percent-encodes a URL path segment (RFC 3986 §2.3: unreserved characters stay).
pub fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Deletes expired files every so often, until shutdown.
pub async fn sweep_periodically(server: Arc<Server>) {
    let Some(files) = server.upload.as_ref() else {
        return;
    };
    let expire_after = server.config.upload.expire_after_secs;
    // Often enough that a file outlives its time by at most half of it, but at most hourly.
    let interval = Duration::from_secs((expire_after / 2).max(1)).min(MAX_SWEEP_INTERVAL);
    let mut shutdown = server.shutdown_signal();
    loop {
        {
            let _slots = files.lock.lock().await;
            let dir = files.dir().to_owned();
            let swept =
                tokio::task::spawn_blocking(move || files::sweep(&dir, files::now(), expire_after))
                    .await;
            match swept {
                Ok(Ok(swept)) if swept != Default::default() => {
                    tracing::info!(
                        files = swept.files,
                        unfinished = swept.unfinished,
                        "expired uploads removed"
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "upload sweep failed"),
                Err(e) => tracing::warn!(error = %e, "upload sweep panicked"),
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// The service on its own domain.
pub struct Upload;

#[async_trait]
impl Module for Upload {
    fn name(&self) -> &'static str {
        "upload"
    }

    fn service_domains(&self, config: &Config) -> Vec<String> {
        if active(config) {
            vec![config.upload_domain()]
        } else {
            Vec::new()
        }
    }

    async fn handle_service_stanza(&self, ctx: &Ctx, stanza: Element) {
        if let Some(reply) = self.service_stanza(ctx, &stanza).await {
            ctx.route(reply).await;
        }
    }
}

impl Upload {
    async fn service_stanza(&self, ctx: &Ctx, stanza: &Element) -> Option<Element> {
        if stanza.name() != "iq" {
            if stanza.name() == "message" && corvid_proto::stanza::may_bounce(stanza) {
                let err = StanzaError::service_unavailable();
                return Some(corvid_proto::stanza::error_reply(stanza, &err));
            }
            return None;
        }
        let kind = IqType::parse(stanza.attr("type"));
        if !matches!(kind, Some(IqType::Get | IqType::Set)) {
            ctx.server.iq_tracker.resolve(stanza);
            return None;
        }
        let from = Jid::new(stanza.attr("from")?).ok()?;
        let to = Jid::new(stanza.attr("to")?).ok()?;
        let Some(iq) = Iq::from_element(stanza, from, to) else {
            let err = StanzaError::bad_request();
            return Some(corvid_proto::stanza::error_reply(stanza, &err));
        };
        if iq.to.node().is_some() || iq.to.resource().is_some() {
            return Some(iq.error(&StanzaError::service_unavailable()));
        }
        let answer = match (iq.payload.ns(), iq.payload.name(), iq.kind) {
            (ns::HTTP_UPLOAD, "request", IqType::Get) => slot(ctx, &iq).await,
            (ns::DISCO_INFO, "query", IqType::Get) if iq.payload.attr("node").is_none() => {
                Ok(Some(info(&ctx.server.config)))
            }
            (ns::DISCO_ITEMS, "query", IqType::Get) if iq.payload.attr("node").is_none() => {
                Ok(Some(Element::new("query", ns::DISCO_ITEMS)))
            }
            (ns::DISCO_INFO | ns::DISCO_ITEMS, _, IqType::Get) => {
                Err(StanzaError::item_not_found())
            }
            (ns::PING, "ping", IqType::Get) => Ok(None),
            (ns::HTTP_UPLOAD, _, _) => Err(StanzaError::bad_request()),
            _ => Err(StanzaError::service_unavailable()),
        };
        Some(match answer {
            Ok(payload) => iq.result(payload),
            Err(err) => iq.error(&err),
        })
    }
}

/// The service's disco#info (XEP-0363 §3): its identity, feature, and the largest file
/// in an XEP-0128 form.
fn info(config: &Config) -> Element {
    let max = config.upload.max_file_bytes.to_string();
    let form = forms::form("result")
        .with_child(forms::form_type_field(ns::HTTP_UPLOAD))
        .with_child(forms::field("max-file-size", "text-single", None, &[&max]));
    let mut query = Element::new("query", ns::DISCO_INFO).with_child(
        Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "store")
            .with_attr("type", "file")
            .with_attr("name", "HTTP File Upload"),
    );
    for feature in [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::HTTP_UPLOAD] {
        query.append_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
    }
    query.with_child(form)
}

/// What a slot request asks for, checked.
#[derive(Debug, PartialEq, Eq)]
struct SlotRequest {
    filename: String,
    size: u64,
    content_type: Option<String>,
}

impl SlotRequest {
    /// Reads `<request filename size content-type/>` (XEP-0363 §4).
    fn parse(request: &Element) -> Result<SlotRequest, StanzaError> {
        let filename = request
            .attr("filename")
            .filter(|f| valid_filename(f))
            .ok_or_else(|| StanzaError::bad_request().with_text("Missing or invalid file name"))?;
        let size = request
            .attr("size")
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .ok_or_else(|| StanzaError::bad_request().with_text("Missing or invalid file size"))?;
        let content_type = match request.attr("content-type").map(str::trim) {
            None | Some("") => None,
            Some(t) if valid_content_type(t) => Some(t.to_owned()),
            Some(_) => {
                return Err(StanzaError::bad_request().with_text("Invalid content type"));
            }
        };
        Ok(SlotRequest {
            filename: filename.to_owned(),
            size,
            content_type,
        })
    }
}

/// A file name fit for a URL segment and a download: no path, no control characters.
fn valid_filename(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FILENAME_BYTES
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
}

/// `type/subtype` with optional parameters, in printable ASCII (RFC 9110 §8.3.1).
fn valid_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    value.len() <= MAX_CONTENT_TYPE_BYTES
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && essence
            .split_once('/')
            .is_some_and(|(kind, sub)| token(kind) && token(sub))
}

/// Answers a slot request: checks who asks and what, reserves room, and returns the URLs.
async fn slot(ctx: &Ctx, iq: &Iq) -> Result<Option<Element>, StanzaError> {
    let server = &ctx.server;
    let config = &server.config.upload;
    let files = server
        .upload
        .as_ref()
        .ok_or_else(StanzaError::service_unavailable)?;
    let owner = requester(&server.config, &iq.from)?;
    let request = SlotRequest::parse(&iq.payload)?;
    let max = config
        .max_file_bytes
        .min(match config.quota_bytes_per_user {
            0 => u64::MAX,
            quota => quota,
        });
    if request.size > max {
        return Err(file_too_large(max));
    }
    if let Some(content_type) = &request.content_type
        && !config.allows_content_type(content_type)
    {
        return Err(StanzaError::not_acceptable()
            .with_text(format!("Files of type {content_type} may not be uploaded")));
    }
    let now = files::now();
    let meta = SlotMeta {
        owner: owner.to_string(),
        filename: request.filename,
        size: request.size,
        content_type: request.content_type,
        created: now,
        put_until: now + config.slot_valid_secs,
    };
    let user = files.user_key(&meta.owner);
    let slot = files::new_slot_id();
    reserve(files, config, &user, &slot, &meta).await?;
    let token = files.token(&user, &slot, &meta);
    let get = format!(
        "{}{PATH_PREFIX}/{user}/{slot}/{}",
        base_url(&server.config),
        encode_segment(&meta.filename)
    );
    let put = format!("{get}?token={token}");
    tracing::info!(%owner, size = meta.size, slot, "upload slot given out");
    Ok(Some(
        Element::new("slot", ns::HTTP_UPLOAD)
            .with_child(Element::new("put", ns::HTTP_UPLOAD).with_attr("url", put))
            .with_child(Element::new("get", ns::HTTP_UPLOAD).with_attr("url", get)),
    ))
}

/// The account asking, if it may upload: one of ours, or any when `allow_remote`.
fn requester(config: &Config, from: &Jid) -> Result<BareJid, StanzaError> {
    let local = config.serves(from.domain().as_str());
    if from.node().is_none() || !(local || config.upload.allow_remote) {
        return Err(StanzaError::not_allowed()
            .with_text("Only accounts of this server may upload files here"));
    }
    Ok(from.to_bare())
}

/// Checks the account's quota and writes the slot's metadata, one request at a time.
async fn reserve(
    files: &Files,
    config: &crate::config::UploadConfig,
    user: &str,
    slot: &str,
    meta: &SlotMeta,
) -> Result<(), StanzaError> {
    let _one_at_a_time = files.lock.lock().await;
    let user_dir = files.user_dir(user);
    let (quota, expire_after) = (config.quota_bytes_per_user, config.expire_after_secs);
    let (slot, meta) = (slot.to_owned(), meta.clone());
    let reserved = tokio::task::spawn_blocking(move || {
        let held = files::held(&user_dir, meta.created, expire_after)?;
        if let Err(retry) = files::room_for(&held, meta.size, quota) {
            return Ok(Err(retry));
        }
        files::write_meta(&user_dir, &slot, &meta).map(Ok)
    })
    .await;
    match reserved {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(retry))) => Err(over_quota(quota, retry)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot reserve an upload slot");
            Err(StanzaError::internal_server_error())
        }
        Err(_) => Err(StanzaError::internal_server_error()),
    }
}

/// XEP-0363 §5: `not-acceptable` with the largest size allowed.
fn file_too_large(max: u64) -> StanzaError {
    StanzaError::not_acceptable()
        .with_text(format!(
            "File too large. The maximum file size is {max} bytes"
        ))
        .with_app(
            Element::new("file-too-large", ns::HTTP_UPLOAD).with_child(
                Element::new("max-file-size", ns::HTTP_UPLOAD).with_text(max.to_string()),
            ),
        )
}

/// XEP-0363 §5: a temporary `resource-constraint`, with when to retry if files expire.
fn over_quota(quota: u64, retry: Option<u64>) -> StanzaError {
    let err = StanzaError::resource_constraint()
        .with_kind(ErrorType::Wait)
        .with_text(format!(
            "Quota reached: your files may take {quota} bytes in all"
        ));
    match retry {
        Some(at) => {
            let stamp = corvid_proto::time::format_datetime(UNIX_EPOCH + Duration::from_secs(at));
            err.with_app(Element::new("retry", ns::HTTP_UPLOAD).with_attr("stamp", stamp))
        }
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[(&str, &str)]) -> Element {
        let mut el = Element::new("request", ns::HTTP_UPLOAD);
        for (name, value) in attrs {
            el.set_attr(*name, *value);
        }
        el
    }

    #[test]
    fn slot_requests_are_checked() {
        let ok = SlotRequest::parse(&request(&[
            ("filename", "my juliet.jpg"),
            ("size", "23456"),
            ("content-type", "image/jpeg"),
        ]))
        .unwrap();
        assert_eq!(ok.size, 23456);
        assert_eq!(ok.content_type.as_deref(), Some("image/jpeg"));
        let untyped = SlotRequest::parse(&request(&[("filename", "a"), ("size", "1")])).unwrap();
        assert_eq!(untyped.content_type, None);
        for bad in [
            request(&[("size", "1")]),
            request(&[("filename", "../etc"), ("size", "1")]),
            request(&[("filename", "a/b"), ("size", "1")]),
            request(&[("filename", ".."), ("size", "1")]),
            request(&[("filename", "a\nb"), ("size", "1")]),
            request(&[("filename", "a"), ("size", "-1")]),
            request(&[("filename", "a"), ("size", "0")]),
            request(&[("filename", "a"), ("size", "lots")]),
            request(&[("filename", "a"), ("size", "1"), ("content-type", "text")]),
            request(&[
                ("filename", "a"),
                ("size", "1"),
                ("content-type", "a/b\r\nX: y"),
            ]),
        ] {
            let err = SlotRequest::parse(&bad).unwrap_err();
            assert_eq!(err.condition, "bad-request", "{bad}");
        }
    }

    #[test]
    fn only_local_accounts_may_upload_unless_allowed() {
        let mut config = Config::default();
        let remote = Jid::new("romeo@montague.example/garden").unwrap();
        let local = Jid::new("juliet@localhost/balcony").unwrap();
        assert_eq!(
            requester(&config, &local).unwrap().as_str(),
            "juliet@localhost"
        );
        assert_eq!(
            requester(&config, &remote).unwrap_err().condition,
            "not-allowed"
        );
        assert!(requester(&config, &Jid::new("localhost").unwrap()).is_err());
        config.upload.allow_remote = true;
        assert!(requester(&config, &remote).is_ok());
    }

    #[test]
    fn urls_come_from_the_config_and_encode_the_file_name() {
        let mut config = Config::default();
        config.http.tls_listen = vec!["0.0.0.0:5443".parse().unwrap()];
        assert_eq!(base_url(&config), "https://localhost:5443");
        config.http.public_url = Some("https://chat.example.org/".into());
        assert_eq!(base_url(&config), "https://chat.example.org");
        assert_eq!(encode_segment("a b/ü?.jpg"), "a%20b%2F%C3%BC%3F.jpg");
    }
}
