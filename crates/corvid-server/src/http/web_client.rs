//! The bundled web client: Converse.js (pinned in `web/package.json`, installed with
//! `npm ci --prefix web`), served as static files, with a page at `/` that starts it
//! against this server over WebSocket. Nothing is fetched from elsewhere at run time.
//!
//! The files come from `[http] web_client_dir` (by default Converse's `dist` under
//! `web/node_modules`, relative to the working directory); a page says how to install
//! them when they are missing.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::server::Server;

pub fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/", get(index))
        .route("/corvid-web.js", get(start_script))
        .route("/dist/{*path}", get(asset))
}

async fn index(State(server): State<Arc<Server>>) -> Response {
    let config = &server.config;
    if !installed(&server) {
        let page = format!(
            "<!doctype html><meta charset='utf-8'><title>Corvid</title>\
             <p>This Corvid serves <b>{}</b>. Its web client is not installed here: run \
             <code>npm ci --prefix web</code> in Corvid's source directory (or set \
             <code>[http] web_client_dir</code>), then reload.</p>",
            corvid_xml::escape(config.default_domain())
        );
        return (StatusCode::NOT_FOUND, Html(page)).into_response();
    }
    let page = PAGE.replace("{title}", &corvid_xml::escape(config.default_domain()));
    // Files shared through HTTP upload are put to and shown from the upload URLs.
    let uploads = server
        .upload
        .as_ref()
        .and_then(|_| origin(&crate::modules::upload::base_url(config)))
        .unwrap_or_default();
    let policy = POLICY.replace("{uploads}", &uploads);
    (
        [
            (header::CACHE_CONTROL, "no-cache".to_owned()),
            (header::CONTENT_SECURITY_POLICY, policy),
        ],
        Html(page),
    )
        .into_response()
}

/// The script that starts Converse, with this server's domains.
async fn start_script(State(server): State<Arc<Server>>) -> Response {
    let config = &server.config;
    let script = START
        .replace("{domain}", &js_string(config.default_domain()))
        .replace("{muc}", &js_string(&config.muc_domain()));
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        script,
    )
        .into_response()
}

fn installed(server: &Server) -> bool {
    server
        .config
        .http
        .web_client_dir
        .join("converse.min.js")
        .is_file()
}

/// A string as a JavaScript string literal's contents (inside single quotes), safe in a
/// `<script>` element.
fn js_string(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' | '@' => vec![c],
            c => format!("\\u{:04x}", c as u32).chars().collect(),
        })
        .collect()
}

/// Nothing but this server: the page loads no script, style, image or font from
/// elsewhere, and talks only to its own WebSocket. (Converse's full-screen footer shows
/// its sponsors' logos from conversejs.org: blocked here, and hidden.)
/// (`{uploads}`: the origin of HTTP upload's URLs, when the service runs.)
const POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: {uploads}; \
    media-src 'self' data: blob: {uploads}; font-src 'self' data:; \
    connect-src 'self' {uploads}; worker-src 'self' blob:; frame-src 'none'; \
    object-src 'none'; base-uri 'self'";

/// The origin (`scheme://host[:port]`) of a URL, when it is a plain http(s) one fit for a
/// policy.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let host = rest.split('/').next()?;
    let fit = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    fit.then(|| format!("{scheme}://{host}"))
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Corvid — {title}</title>
<link rel="stylesheet" type="text/css" media="screen" href="/dist/converse.min.css">
<style>.sponsors { display: none; }</style>
<script type="module" src="/dist/converse.min.js" charset="utf-8"></script>
<!-- Modules run in order: Converse has defined itself by then. -->
<script type="module" src="/corvid-web.js"></script>
</head>
<body class="converse-fullscreen">
<noscript>The Corvid web client needs JavaScript.</noscript>
</body>
</html>
"#;

const START: &str = r#"converse.initialize({
    assets_path: '/dist/',
    websocket_url: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/xmpp-websocket',
    discover_connection_methods: false,
    view_mode: 'fullscreen',
    locked_domain: '{domain}',
    muc_domain: '{muc}',
    auto_reconnect: true,
    allow_registration: false,
    show_client_info: false,
    play_sounds: false,
    i18n: 'en'
});
"#;

async fn asset(State(server): State<Arc<Server>>, UrlPath(path): UrlPath<String>) -> Response {
    let Some(file) = inside(&server.config.http.web_client_dir, &path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&file)),
                (header::CACHE_CONTROL, "public, max-age=3600"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `path` under `root`, when it names something there: plain names only (no `..`, no
/// absolute parts, no hidden files).
fn inside(root: &Path, path: &str) -> Option<PathBuf> {
    let mut file = root.to_path_buf();
    for part in Path::new(path).components() {
        match part {
            Component::Normal(name) if !name.to_string_lossy().starts_with('.') => file.push(name),
            _ => return None,
        }
    }
    file.is_file().then_some(file)
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "eot" => "application/vnd.ms-fontobject",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "html" => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_under_the_root_are_served() {
        let dir = tempfile_dir();
        std::fs::write(dir.join("a.js"), "x").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/b.css"), "y").unwrap();
        std::fs::write(dir.join(".secret"), "z").unwrap();
        assert_eq!(inside(&dir, "a.js"), Some(dir.join("a.js")));
        assert_eq!(inside(&dir, "sub/b.css"), Some(dir.join("sub/b.css")));
        for bad in [
            "../a.js",
            "sub/../../etc/passwd",
            "/etc/passwd",
            ".secret",
            "sub",
            "nope.js",
        ] {
            assert_eq!(inside(&dir, bad), None, "{bad}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn upload_origins_are_taken_from_plain_urls_only() {
        assert_eq!(
            origin("https://chat.example.org:5443/files").as_deref(),
            Some("https://chat.example.org:5443")
        );
        assert_eq!(origin("ftp://x"), None);
        assert_eq!(origin("https://a;b"), None);
        assert_eq!(origin("https://a b"), None);
    }

    #[test]
    fn domains_become_safe_script_strings() {
        assert_eq!(js_string("chat.example.org"), "chat.example.org");
        assert_eq!(
            js_string("a'</script>"),
            "a\\u0027\\u003c\\u002fscript\\u003e"
        );
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("corvid-web-{}", crate::random_id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
