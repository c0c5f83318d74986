//! What an operator can do to a running server, one function per operation: the admin
//! socket (`admin.rs`, for the CLI) and the HTTP admin API (`http/admin_api.rs`) both call
//! these, so the two never disagree. Account operations that also work on the store alone
//! (`corvid user …` without a server) are in `accounts.rs`; those here add what a running
//! server must do besides (close the sessions of a removed account, tell its contacts).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use corvid_proto::{BareJid, FullJid, Jid, StreamError, StreamErrorCondition, ns};
use corvid_xml::Element;

use crate::accounts::{self, AccountError};
use crate::module::{Ctx, RoomSummary};
use crate::s2s::Direction;
use crate::server::Server;
use crate::sessions::SessionInfo;

/// The server at a glance.
#[derive(Clone, Debug)]
pub struct Stats {
    pub uptime: Duration,
    pub sessions: usize,
    pub sessions_by_transport: Vec<(&'static str, usize)>,
    pub s2s_incoming: usize,
    pub s2s_outgoing: usize,
    /// Resident memory in bytes, where the OS tells it.
    pub resident_memory: Option<u64>,
}

pub fn stats(server: &Server) -> Stats {
    let by_transport = server.sessions.count_by_transport();
    let (incoming, outgoing) = s2s_by_direction(server);
    Stats {
        uptime: server.started.elapsed(),
        sessions: by_transport.iter().map(|(_, n)| n).sum(),
        sessions_by_transport: by_transport,
        s2s_incoming: incoming,
        s2s_outgoing: outgoing,
        resident_memory: crate::metrics::resident_memory(),
    }
}

fn s2s_by_direction(server: &Server) -> (usize, usize) {
    let connections = server.s2s.connections();
    let incoming = connections
        .iter()
        .filter(|c| c.direction == Direction::Incoming)
        .count();
    (incoming, connections.len() - incoming)
}

/// The `/metrics` page: the counters, with what is measured now.
pub fn metrics_text(server: &Server) -> String {
    let now = stats(server);
    server.metrics.render(&crate::metrics::Snapshot {
        uptime: now.uptime,
        sessions: now.sessions_by_transport,
        s2s_incoming: now.s2s_incoming,
        s2s_outgoing: now.s2s_outgoing,
        resident_memory: now.resident_memory,
    })
}

/// Each configured external component's domain, and whether it is connected now.
pub fn components(server: &Server) -> Vec<(String, bool)> {
    let connected = server.components.connected();
    server
        .config
        .components
        .iter()
        .map(|c| {
            let domain = c.domain.to_ascii_lowercase();
            let up = connected.contains(&domain);
            (domain, up)
        })
        .collect()
}

/// Every bound client session.
pub fn sessions(server: &Server) -> Vec<SessionInfo> {
    server.sessions.list()
}

/// Closes one session (its client sees a `policy-violation` stream error saying why);
/// false when no session has that full JID.
pub fn kick(server: &Server, jid: &FullJid) -> bool {
    let error = StreamError::with_text(
        StreamErrorCondition::PolicyViolation,
        "Disconnected by the server administrator",
    );
    server.sessions.close_session(jid, error)
}

/// Removes an account as in-band removal does (XEP-0077 §3.2): its available resources
/// go unavailable, local contacts lose their subscriptions and get roster pushes, then its
/// sessions close.
pub async fn remove_user(server: &Arc<Server>, user: &BareJid) -> Result<(), AccountError> {
    if !accounts::exists(&server.store, user).await? {
        return Err(AccountError::NotFound);
    }
    let ctx = Ctx {
        server: server.clone(),
    };
    let by = Jid::from(user.clone());
    crate::modules::register::remove_account(&ctx, &by, user)
        .await
        .map_err(|_| AccountError::Internal("the account could not be removed"))?;
    tracing::info!(jid = %user, "account removed by the administrator");
    Ok(())
}

/// Every room of every service that hosts rooms.
pub async fn rooms(server: &Arc<Server>) -> Vec<RoomSummary> {
    let ctx = Ctx {
        server: server.clone(),
    };
    let mut rooms = Vec::new();
    for service in server.modules.room_services() {
        rooms.extend(service.list_rooms(&ctx).await);
    }
    rooms
}

/// Destroys a room (XEP-0045 §10.9: its occupants are told, with `reason`); false when
/// there is no such room.
pub async fn destroy_room(server: &Arc<Server>, room: &BareJid, reason: Option<&str>) -> bool {
    let ctx = Ctx {
        server: server.clone(),
    };
    let Some(module) = server.modules.for_service_domain(room.domain().as_str()) else {
        return false;
    };
    match module.room_service() {
        Some(service) => service.destroy_room(&ctx, room, reason).await,
        None => false,
    }
}

/// Sends a message from the server's (first) domain to `to`, routed like any other: to
/// the account's resources, its offline storage, or another server.
pub async fn send_message(server: &Arc<Server>, to: &Jid, body: &str) {
    let message = server_message(server, to, "normal", body);
    crate::router::route(server, message).await;
}

/// Sends an announcement from the server's domain to every session bound now; how many
/// got it.
pub async fn announce(server: &Arc<Server>, body: &str) -> usize {
    let sessions = server.sessions.list();
    for session in &sessions {
        let to = Jid::from(session.jid.clone());
        let message = server_message(server, &to, "headline", body);
        crate::router::route(server, message).await;
    }
    sessions.len()
}

fn server_message(server: &Server, to: &Jid, kind: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("from", server.config.default_domain())
        .with_attr("to", to.as_str())
        .with_attr("type", kind)
        .with_attr("id", crate::random_id())
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

/// Seconds since `since`, zero for a time in the future.
pub fn seconds_since(since: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(since)
        .unwrap_or_default()
        .as_secs()
}
