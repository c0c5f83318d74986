//! The gateway's core: reads each stanza from the component stream, answers what the
//! gateway answers itself (disco, ad-hoc settings, registration, pings), and hands the
//! rest to the session of (sender's account, IRC server), starting one for a room join.
//! Sessions are tasks of their own; the router only keeps their mailboxes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corvid_client::transport::Conn;
use corvid_proto::stanza::{error_reply, may_bounce};
use corvid_proto::{StanzaError, StanzaKind, ns};
use corvid_xml::{Element, StreamEvent};
use jid::{BareJid, Jid};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::address::Address;
use crate::adhoc::{self, COMMANDS, Outcome, Scope};
use crate::component::{from_wire, to_wire};
use crate::config::Config;
use crate::irc::fold;
use crate::session::{self, Ended, Handle, Params, ToSession, iq_result};
use crate::settings::Settings;

/// Why a component stream ended.
#[derive(Debug)]
pub enum StreamEnd {
    /// The server closed it or the socket failed.
    Lost(String),
    /// We are stopping.
    Shutdown,
}

pub struct Router {
    config: Arc<Config>,
    settings: Settings,
    sessions: HashMap<(BareJid, String), Handle>,
    next_session: u64,
    out_tx: mpsc::Sender<Element>,
    out_rx: mpsc::Receiver<Element>,
    ended_tx: mpsc::UnboundedSender<Ended>,
    ended_rx: mpsc::UnboundedReceiver<Ended>,
}

impl Router {
    pub fn new(config: Arc<Config>, settings: Settings) -> Router {
        let (out_tx, out_rx) = mpsc::channel(1024);
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Router {
            config,
            settings,
            sessions: HashMap::new(),
            next_session: 1,
            out_tx,
            out_rx,
            ended_tx,
            ended_rx,
        }
    }

    /// Serves one established component stream until it ends or `shutdown` fires.
    pub async fn serve(
        &mut self,
        conn: &mut Conn,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> StreamEnd {
        // Stanzas queued while there was no stream (sessions that ended with it telling
        // their users they left the rooms) go out first, on this new stream.
        loop {
            match conn.parse_buffered() {
                Ok(Some(event)) => {
                    if let Some(end) = self.on_event(event).await {
                        return end;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => return StreamEnd::Lost(e.to_string()),
            }
            tokio::select! {
                read = conn.fill() => if let Err(e) = read {
                    return StreamEnd::Lost(e.to_string());
                },
                Some(el) = self.out_rx.recv() => {
                    if let Err(e) = conn.send(&to_wire(&el)).await {
                        return StreamEnd::Lost(e.to_string());
                    }
                }
                Some((user, server, id)) = self.ended_rx.recv() => self.forget(user, server, id),
                _ = shutdown.changed() => {
                    self.stop_sessions("Gateway: stopping").await;
                    while let Ok(el) = self.out_rx.try_recv() {
                        let _ = conn.send(&to_wire(&el)).await;
                    }
                    let _ = conn.send(b"</stream:stream>").await;
                    return StreamEnd::Shutdown;
                }
            }
        }
    }

    async fn on_event(&mut self, event: StreamEvent) -> Option<StreamEnd> {
        match event {
            StreamEvent::Stanza(el) if el.is("error", ns::STREAM) => {
                Some(StreamEnd::Lost(format!("stream error: {el}")))
            }
            StreamEvent::Stanza(el) => {
                self.on_stanza(from_wire(&el)).await;
                None
            }
            StreamEvent::Close => Some(StreamEnd::Lost("the server closed the stream".into())),
            StreamEvent::Open(_) => Some(StreamEnd::Lost("unexpected stream header".into())),
        }
    }

    fn forget(&mut self, user: BareJid, server: String, id: u64) {
        let key = (user, server);
        if self.sessions.get(&key).is_some_and(|h| h.id == id) {
            self.sessions.remove(&key);
        }
    }

    /// Tells every session to QUIT and waits (briefly) for them to end.
    pub async fn stop_sessions(&mut self, reason: &str) {
        let sessions: Vec<Handle> = self.sessions.drain().map(|(_, h)| h).collect();
        let count = sessions.len();
        for handle in &sessions {
            let _ = handle.tx.try_send(ToSession::Quit(reason.to_string()));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut ended = 0;
        while ended < count {
            match tokio::time::timeout_at(deadline, self.ended_rx.recv()).await {
                Ok(Some(_)) => ended += 1,
                _ => break,
            }
        }
    }

    fn send(&self, el: Element) {
        if self.out_tx.try_send(el).is_err() {
            warn!("outgoing stanza queue full; stanza dropped");
        }
    }

    fn bounce(&self, el: &Element, error: StanzaError) {
        if may_bounce(el) {
            self.send(error_reply(el, &error));
        }
    }

    async fn on_stanza(&mut self, el: Element) {
        let Some(kind) = StanzaKind::of(&el, ns::CLIENT) else {
            return;
        };
        let (Some(from), Some(to)) = (
            el.attr("from").and_then(|f| Jid::new(f).ok()),
            el.attr("to").and_then(|t| Jid::new(t).ok()),
        ) else {
            debug!("stanza without a valid from or to dropped");
            return;
        };
        let Some(address) = Address::parse(&to, &self.config.component.domain) else {
            self.bounce(&el, StanzaError::item_not_found());
            return;
        };
        if let Some(server) = address.server()
            && !self.config.server_allowed(server)
        {
            let error =
                StanzaError::not_allowed().with_text("this gateway does not serve that IRC server");
            return self.refuse(&el, error);
        }
        match (kind, &address) {
            (StanzaKind::Iq, Address::Gateway | Address::Server { .. }) => {
                self.on_service_iq(&el, &from, &address).await
            }
            (
                StanzaKind::Iq,
                Address::Channel {
                    nick: None,
                    channel,
                    ..
                },
            ) => self.on_room_iq(&el, channel),
            (StanzaKind::Iq, Address::User { .. }) => {
                self.bounce(&el, StanzaError::service_unavailable())
            }
            (
                _,
                Address::Channel {
                    channel,
                    server,
                    nick,
                },
            ) => self.route_to_session(el.clone(), from, server, channel, nick.clone()),
            (StanzaKind::Message, Address::User { nick, server }) => {
                self.route_to_session(el.clone(), from, server, nick, None)
            }
            (StanzaKind::Message, _) => self.bounce(&el, StanzaError::service_unavailable()),
            _ => {}
        }
    }

    /// A refusal that a MUC client understands: an error presence for a join.
    fn refuse(&self, el: &Element, error: StanzaError) {
        if el.name() == "presence" && el.attr("type").is_some() {
            return;
        }
        let mut reply = error_reply(el, &error);
        if el.name() == "presence" {
            reply.append_child(Element::new("x", ns::MUC));
        }
        if may_bounce(el) {
            self.send(reply);
        }
    }

    fn route_to_session(
        &mut self,
        el: Element,
        from: Jid,
        server: &str,
        target: &str,
        nick: Option<String>,
    ) {
        let key = (from.to_bare(), fold(server));
        let is_join = el.name() == "presence"
            && el.attr("type").is_none()
            && crate::irc::is_channel(target)
            && nick.is_some();
        if el.name() == "presence" && nick.is_none() {
            // XEP-0045 §7.2.1: a join without a nick.
            return self.refuse(&el, StanzaError::jid_malformed());
        }
        let msg = ToSession::Stanza {
            el: el.clone(),
            from: from.clone(),
            target: target.to_string(),
            nick: nick.clone(),
        };
        let msg = match self.sessions.get(&key) {
            Some(handle) => match handle.tx.try_send(msg) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return self.bounce(&el, StanzaError::resource_constraint());
                }
                Err(mpsc::error::TrySendError::Closed(msg)) => {
                    self.sessions.remove(&key);
                    msg
                }
            },
            None => msg,
        };
        if !is_join {
            if el.name() == "message" {
                let error = StanzaError::recipient_unavailable()
                    .with_text("not connected to that IRC server; join one of its channels first");
                self.bounce(&el, error);
            }
            return;
        }
        let per_user = self
            .sessions
            .keys()
            .filter(|(user, _)| *user == key.0)
            .count();
        if per_user >= self.config.limits.servers_per_user {
            let error =
                StanzaError::resource_constraint().with_text("too many IRC servers at once");
            return self.refuse(&el, error);
        }
        let handle = self.start_session(&key.0, server, nick.as_deref().unwrap_or("user"), msg);
        self.sessions.insert(key, handle);
    }

    fn start_session(
        &mut self,
        user: &BareJid,
        server: &str,
        asked_nick: &str,
        first: ToSession,
    ) -> Handle {
        let settings = self.settings.effective(user, server);
        let id = self.next_session;
        self.next_session += 1;
        let nick = settings.nick.unwrap_or_else(|| sanitize_nick(asked_nick));
        let username = user
            .node()
            .map(|n| n.as_str())
            .unwrap_or("corvid")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect::<String>();
        let params = Params {
            id,
            user: user.clone(),
            server: server.to_string(),
            domain: self.config.component.domain.clone(),
            nick,
            username: if username.is_empty() {
                "corvid".into()
            } else {
                username
            },
            realname: settings
                .realname
                .unwrap_or_else(|| self.config.irc.realname.clone()),
            password: settings.password,
            nickserv_password: settings.nickserv_password,
            max_channels: self.config.limits.channels_per_server,
        };
        info!(%user, server, id, "starting an IRC session");
        session::spawn(
            params,
            session::Wiring {
                port: self.config.irc.port,
                connect_timeout: Duration::from_secs(self.config.irc.connect_timeout_secs),
                out: self.out_tx.clone(),
                ended: self.ended_tx.clone(),
            },
            first,
        )
    }

    async fn on_service_iq(&mut self, el: &Element, from: &Jid, address: &Address) {
        if !matches!(el.attr("type"), Some("get") | Some("set")) {
            return;
        }
        let Some(payload) = el.children().next() else {
            return self.bounce(el, StanzaError::bad_request());
        };
        let scope = match address {
            Address::Server { server } => Scope::Server(server),
            _ => Scope::Gateway,
        };
        let get = el.attr("type") == Some("get");
        let answer = match (payload.name(), payload.ns(), get) {
            ("query", ns::DISCO_INFO, true) => Ok(Some(service_info(payload, scope))),
            ("query", ns::DISCO_ITEMS, true) => Ok(Some(service_items(payload, el, scope))),
            ("ping", ns::PING, true) => Ok(None),
            ("query", ns::VERSION, true) => Ok(Some(version())),
            ("command", COMMANDS, false) => self.on_command(payload, from, scope).await,
            ("query", ns::REGISTER, _) if matches!(scope, Scope::Gateway) => {
                self.on_register(payload, from, get).await
            }
            _ => Err(StanzaError::service_unavailable()),
        };
        match answer {
            Ok(payload) => {
                let mut reply = iq_result(el);
                if let Some(payload) = payload {
                    reply.append_child(payload);
                }
                self.send(reply);
            }
            Err(error) => self.bounce(el, error),
        }
    }

    async fn on_command(
        &mut self,
        command: &Element,
        from: &Jid,
        scope: Scope<'_>,
    ) -> Result<Option<Element>, StanzaError> {
        let user = from.to_bare();
        let current = self.settings.user(&user);
        match adhoc::execute(command, scope, &current)? {
            Outcome::Reply(reply) => Ok(Some(reply)),
            Outcome::Save(updated, reply) => {
                self.save(&user, updated).await?;
                Ok(Some(reply))
            }
        }
    }

    async fn on_register(
        &mut self,
        query: &Element,
        from: &Jid,
        get: bool,
    ) -> Result<Option<Element>, StanzaError> {
        let user = from.to_bare();
        let current = self.settings.user(&user);
        if get {
            return Ok(Some(adhoc::register_query(&current)));
        }
        if query.has_child("remove", ns::REGISTER) {
            self.save(&user, Default::default()).await?;
            return Ok(None);
        }
        let form = query
            .get_child("x", ns::DATA_FORMS)
            .ok_or_else(|| StanzaError::bad_request().with_text("submit the data form"))?;
        let updated = adhoc::apply(form, Scope::Gateway, &current);
        self.save(&user, updated).await?;
        Ok(None)
    }

    async fn save(
        &mut self,
        user: &BareJid,
        updated: crate::settings::UserSettings,
    ) -> Result<(), StanzaError> {
        self.settings.set_user(user, updated).await.map_err(|e| {
            warn!(error = %e, "cannot store settings");
            StanzaError::internal_server_error()
        })
    }

    /// disco on a room: a MUC room (XEP-0045 §6.4) whose items (occupants) are not listed.
    fn on_room_iq(&self, el: &Element, channel: &str) {
        if !matches!(el.attr("type"), Some("get") | Some("set")) {
            return;
        }
        let payload = el.children().next();
        let answer = match payload.map(|p| (p.name(), p.ns(), el.attr("type") == Some("get"))) {
            Some(("query", ns::DISCO_INFO, true)) => {
                let node_given = payload.is_some_and(|p| p.attr("node").is_some());
                if node_given {
                    None
                } else {
                    let mut info = Element::new("query", ns::DISCO_INFO).with_child(identity(
                        "conference",
                        "text",
                        channel,
                    ));
                    for feature in [
                        ns::DISCO_INFO,
                        ns::MUC,
                        "muc_open",
                        "muc_persistent",
                        "muc_semianonymous",
                        "http://jabber.org/protocol/muc#self-ping-optimization",
                    ] {
                        info.append_child(feature_el(feature));
                    }
                    Some(info)
                }
            }
            Some(("query", ns::DISCO_ITEMS, true)) => Some(Element::new("query", ns::DISCO_ITEMS)),
            Some(("ping", ns::PING, true)) => {
                return self.send(iq_result(el));
            }
            _ => None,
        };
        match answer {
            Some(payload) => self.send(iq_result(el).with_child(payload)),
            None => self.bounce(el, StanzaError::service_unavailable()),
        }
    }
}

fn identity(category: &str, kind: &str, name: &str) -> Element {
    Element::new("identity", ns::DISCO_INFO)
        .with_attr("category", category)
        .with_attr("type", kind)
        .with_attr("name", name)
}

fn feature_el(var: &str) -> Element {
    Element::new("feature", ns::DISCO_INFO).with_attr("var", var)
}

/// disco#info of the gateway (a MUC service for IRC, and a gateway) or of a server.
fn service_info(query: &Element, scope: Scope<'_>) -> Element {
    let mut info = Element::new("query", ns::DISCO_INFO);
    if let Some(node) = query.attr("node") {
        info.set_attr("node", node);
        if node == adhoc::CONFIGURE {
            info.append_child(identity("automation", "command-node", "Configure"));
            info.append_child(feature_el(COMMANDS));
            info.append_child(feature_el(ns::DATA_FORMS));
        }
        return info;
    }
    match scope {
        Scope::Gateway => {
            info.append_child(identity("conference", "irc", "IRC gateway"));
            info.append_child(identity("gateway", "irc", "IRC gateway"));
        }
        Scope::Server(server) => {
            info.append_child(identity("conference", "irc", server));
        }
    }
    let mut features = vec![ns::DISCO_INFO, ns::DISCO_ITEMS, ns::MUC, COMMANDS, ns::PING];
    if matches!(scope, Scope::Gateway) {
        features.extend([ns::VERSION, ns::REGISTER]);
    }
    for feature in features {
        info.append_child(feature_el(feature));
    }
    info
}

/// disco#items: the commands node lists `configure`; otherwise nothing (IRC has no
/// cheap channel list to show).
fn service_items(query: &Element, iq: &Element, scope: Scope<'_>) -> Element {
    let to = iq.attr("to").unwrap_or_default();
    if query.attr("node") == Some(COMMANDS) {
        return adhoc::command_items(to, scope);
    }
    let mut items = Element::new("query", ns::DISCO_ITEMS);
    if let Some(node) = query.attr("node") {
        items.set_attr("node", node);
    }
    items
}

fn version() -> Element {
    Element::new("query", ns::VERSION)
        .with_child(Element::new("name", ns::VERSION).with_text("corvid-gateway-irc"))
        .with_child(Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION")))
}

/// An IRC nick from a MUC nick: no spaces, commas or other characters IRC refuses
/// (RFC 2812 §2.3.1 lets letters, digits and `[]\`_^{|}-` in), not starting with a digit
/// or `-`. The server may still refuse it; then the session tries with `_` appended.
pub fn sanitize_nick(asked: &str) -> String {
    let mut nick: String = asked
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "[]\\`_^{|}-".contains(*c))
        .take(30)
        .collect();
    if nick.is_empty() || nick.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        nick.insert(0, '_');
    }
    nick
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicks_are_made_acceptable_to_irc() {
        assert_eq!(sanitize_nick("Alice"), "Alice");
        assert_eq!(sanitize_nick("Jürgen M."), "JrgenM");
        assert_eq!(sanitize_nick("9lives"), "_9lives");
        assert_eq!(sanitize_nick("  "), "_");
    }

    #[test]
    fn the_gateway_is_a_conference_service_and_a_gateway() {
        let info = service_info(&Element::new("query", ns::DISCO_INFO), Scope::Gateway);
        let identities: Vec<_> = info
            .children()
            .filter(|c| c.name() == "identity")
            .map(|c| (c.attr("category").unwrap(), c.attr("type").unwrap()))
            .collect();
        assert_eq!(identities, [("conference", "irc"), ("gateway", "irc")]);
        assert!(info.children().any(|c| c.attr("var") == Some(ns::MUC)));
    }
}
