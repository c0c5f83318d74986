//! The admin socket: a Unix socket in the data directory (mode 0600, so only the server's
//! own user) through which the `corvid` CLI asks a running server about its live state.
//!
//! One request per connection, a line naming what is wanted; the answer is tab-separated
//! lines, then the connection closes:
//! - `components`: each configured external component, `DOMAIN\tconnected` or `DOMAIN\taway`.
//! - `sessions`: the number of client sessions, `sessions\tN`; in a cluster, then the
//!   whole cluster's as this node knows them, `cluster_sessions\tN`.
//! - `s2s`: each server-to-server connection, `REMOTE\tLOCAL\tin|out\tSTATE\tAUTH\tTLS\tSECONDS`
//!   (the remote and local domains, the direction, `connecting`, `negotiating` or
//!   `established`, `dialback`, `sasl-external` or `-`, `tls` (STARTTLS), `direct-tls`
//!   (XEP-0368) or `plain`, and how long it has been up).
//!
//! An unknown request gets one line, `error\tunknown request`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::server::Server;

/// The longest request line.
const MAX_REQUEST: usize = 256;
/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the admin socket at `path`, replacing a stale one, readable by our user only.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        // A socket left by a server that is gone (a live one would still answer).
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another server answers on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers requests until shutdown, then removes the socket.
pub async fn serve(server: Arc<Server>, listener: UnixListener, path: std::path::PathBuf) {
    let mut shutdown = server.shutdown_signal();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(answer(server.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn answer(server: Arc<Server>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let mut request = String::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut request)).await;
    if !matches!(read, Ok(Ok(_))) {
        return;
    }
    let reply = respond(&server, request.trim());
    let _ = write.write_all(reply.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// The answer to one request.
pub fn respond(server: &Server, request: &str) -> String {
    match request {
        "components" => crate::operations::components(server)
            .into_iter()
            .map(|(domain, up)| {
                let state = if up { "connected" } else { "away" };
                format!("{domain}\t{state}\n")
            })
            .collect(),
        "sessions" => {
            let here = crate::operations::stats(server).sessions;
            let mut lines = format!("sessions\t{here}\n");
            if server.sessions.clustered() {
                let elsewhere: usize = server.sessions.remote_counts().iter().map(|(_, n)| n).sum();
                lines.push_str(&format!("cluster_sessions\t{}\n", here + elsewhere));
            }
            lines
        }
        "s2s" => s2s_lines(server),
        _ => "error\tunknown request\n".to_owned(),
    }
}

fn s2s_lines(server: &Server) -> String {
    use crate::s2s::{AuthMethod, Direction, State};
    let now = std::time::SystemTime::now();
    server
        .s2s
        .connections()
        .into_iter()
        .map(|c| {
            let direction = match c.direction {
                Direction::Incoming => "in",
                Direction::Outgoing => "out",
            };
            let state = match c.state {
                State::Connecting => "connecting",
                State::Negotiating => "negotiating",
                State::Established => "established",
            };
            let auth = match c.auth {
                Some(AuthMethod::Dialback) => "dialback",
                Some(AuthMethod::SaslExternal) => "sasl-external",
                None => "-",
            };
            let tls = match (c.tls, c.direct_tls) {
                (_, true) => "direct-tls",
                (true, false) => "tls",
                (false, false) => "plain",
            };
            let up = now.duration_since(c.since).unwrap_or_default().as_secs();
            let name = |d: &str| {
                if d.is_empty() {
                    "?".to_owned()
                } else {
                    d.to_owned()
                }
            };
            format!(
                "{}\t{}\t{direction}\t{state}\t{auth}\t{tls}\t{up}\n",
                name(&c.remote),
                name(&c.local)
            )
        })
        .collect()
}

/// Asks the server listening on `path` (for the CLI): the answer's lines.
pub async fn ask(path: &Path, request: &str) -> std::io::Result<Vec<String>> {
    let mut stream = UnixStream::connect(path).await?;
    stream.write_all(format!("{request}\n").as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer.lines().map(str::to_owned).collect())
}
