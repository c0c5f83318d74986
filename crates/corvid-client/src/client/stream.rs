//! One connection's stream: reading and dispatching, writing what is queued, stream
//! management's counters and acknowledgements, answers matched to requests.

use super::*;

/// A connection and its stream-management session.
pub(super) struct Link {
    pub(super) conn: Conn,
    pub(super) sm: Option<Sm>,
}

impl Link {
    /// Writes a stanza, keeping it until the server acknowledges it.
    async fn send_stanza(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.conn.send(&bytes).await?;
        if let Some(sm) = &mut self.sm {
            sm.sent(bytes);
            if sm.should_ask() {
                sm.asked = true;
                self.conn
                    .send(format!("<r xmlns='{}'/>", ns::SM).as_bytes())
                    .await?;
            }
        }
        Ok(())
    }
}

/// How a stream (re)starts.
pub(super) enum Start {
    /// The first login.
    First,
    /// A resumed stream-management session; `held` were sent while we were away.
    Resumed { held: Vec<Bytes> },
    /// A new session after a loss: `resend` the server never had, then catch up.
    Fresh { resend: Vec<Bytes> },
}

/// Runs one connection: reads and dispatches, writes what is queued, until it ends.
pub(super) async fn run(
    link: &mut Link,
    start: Start,
    commands: &mut mpsc::Receiver<Command>,
    shared: &Arc<Shared>,
) -> DisconnectReason {
    if let Err(e) = begin(link, start, shared).await {
        return DisconnectReason::ConnectionLost(e.to_string());
    }
    loop {
        match link.conn.parse_buffered() {
            Ok(Some(event)) => match dispatch(link, shared, event).await {
                Some(reason) => return reason,
                None => continue,
            },
            Ok(None) => {}
            Err(e) => return lost(e),
        }
        tokio::select! {
            filled = link.conn.fill() => {
                if let Err(e) = filled {
                    return lost(e);
                }
            }
            command = commands.recv() => {
                let written = match command {
                    Some(Command::Stanza(bytes)) => link.send_stanza(bytes).await,
                    Some(Command::Send(bytes)) => link.conn.send(&bytes).await,
                    Some(Command::Abort(reason)) => return DisconnectReason::ConnectionLost(reason),
                    Some(Command::Close) | None => {
                        close(&mut link.conn).await;
                        return DisconnectReason::Requested;
                    }
                };
                if let Err(e) = written {
                    return DisconnectReason::ConnectionLost(e.to_string());
                }
            }
        }
    }
}

/// What a stream does first: enables stream management on a new session, sends again what
/// was not acknowledged, and, on a new session after a loss, catches up.
pub(super) async fn begin(
    link: &mut Link,
    start: Start,
    shared: &Arc<Shared>,
) -> std::io::Result<()> {
    let offered = lock(&shared.stream)
        .as_ref()
        .and_then(|s| s.session.as_ref())
        .is_some_and(|s| s.features.has_child("sm", ns::SM));
    if link.sm.is_none() && offered && shared.settings.stream_management {
        let enable = Element::new("enable", ns::SM).with_attr("resume", "true");
        link.conn.send(&enable.to_bytes(ns::CLIENT)).await?;
        link.sm = Some(Sm::default());
    }
    match start {
        Start::First => {}
        Start::Resumed { held } => {
            let unacked: Vec<Bytes> = link
                .sm
                .as_ref()
                .map(|sm| sm.unacked().cloned().collect())
                .unwrap_or_default();
            let resent = unacked.len();
            for bytes in unacked {
                link.conn.send(&bytes).await?;
            }
            for bytes in held {
                link.send_stanza(bytes).await?;
            }
            if let Some(sm) = &mut link.sm
                && sm.should_ask()
            {
                sm.asked = true;
                link.conn
                    .send(format!("<r xmlns='{}'/>", ns::SM).as_bytes())
                    .await?;
            }
            let _ = shared.events.send(Event::Resumed { resent }).await;
            restarted(shared, true);
        }
        Start::Fresh { resend } => {
            for bytes in resend {
                link.send_stanza(bytes).await?;
            }
            restarted(shared, false);
            tokio::spawn(catch_up(Client {
                shared: shared.clone(),
            }));
        }
    }
    Ok(())
}

pub(super) fn restarted(shared: &Shared, resumed: bool) {
    let handlers = lock(&shared.handlers).clone();
    for handler in handlers {
        handler.restarted(resumed);
    }
}

/// Handles one stream event; the reason the stream ends, if it does.
pub(super) async fn dispatch(
    link: &mut Link,
    shared: &Shared,
    event: StreamEvent,
) -> Option<DisconnectReason> {
    let stanza = match event {
        StreamEvent::Stanza(stanza) => stanza,
        StreamEvent::Close => {
            let _ = link.conn.send(b"</stream:stream>").await;
            return Some(DisconnectReason::ServerClosed);
        }
        StreamEvent::Open(_) => {
            return Some(DisconnectReason::Protocol("a second stream header".into()));
        }
    };
    if stanza.is("error", ns::STREAM) {
        let condition = stream_error_condition(&stanza);
        let text = stanza
            .get_child("text", ns::STREAM_ERRORS)
            .map(Element::text);
        let _ = shared
            .events
            .send(Event::StreamError {
                condition: condition.clone(),
                text,
            })
            .await;
        let _ = link.conn.send(b"</stream:stream>").await;
        return Some(DisconnectReason::StreamError(condition));
    }
    if stanza.ns() == ns::SM {
        return stream_management(link, &stanza).await;
    }
    let is_stanza = is_stanza(&stanza);
    if is_stanza && let Some(sm) = &mut link.sm {
        sm.received();
    }
    // A message delivered already (resent after a resumption, or fetched from the archive
    // and then from offline storage) is not delivered again.
    if stanza.is("message", ns::CLIENT)
        && let Some(id) = own_stanza_id(&stanza, &shared.settings.jid)
        && !lock(&shared.seen).insert(id)
    {
        return None;
    }
    // Answers to our requests go to them first.
    let stanza = if stanza.is("iq", ns::CLIENT) {
        answer_for(shared, stanza)?
    } else {
        stanza
    };
    if is_stanza {
        match handled(link, shared, &stanza).await {
            Some(true) => {}
            Some(false) => return None,
            None => return Some(DisconnectReason::ConnectionLost("cannot write".into())),
        }
    }
    let event = match stanza.name() {
        "message" if is_stanza => Event::Message(stanza),
        "presence" if is_stanza => Event::Presence(stanza),
        "iq" if is_stanza && is_ping(&stanza) => {
            let pong = reply_to(&stanza);
            if let Err(e) = link.send_stanza(pong.to_bytes(ns::CLIENT)).await {
                return Some(DisconnectReason::ConnectionLost(e.to_string()));
            }
            return None;
        }
        "iq" if is_stanza => Event::Iq(stanza),
        _ => Event::Other(stanza),
    };
    let _ = shared.events.send(event).await;
    None
}

/// XEP-0198's elements: `<enabled/>`, `<failed/>`, `<r/>`, `<a/>`.
pub(super) async fn stream_management(link: &mut Link, el: &Element) -> Option<DisconnectReason> {
    let Some(sm) = &mut link.sm else {
        return None;
    };
    match el.name() {
        "enabled" => {
            sm.enabled = true;
            let resumable = matches!(el.attr("resume"), Some("true" | "1"));
            sm.id = el.attr("id").filter(|_| resumable).map(str::to_owned);
        }
        "failed" => link.sm = None,
        "r" => {
            let ack = Element::new("a", ns::SM).with_attr("h", sm.inbound.to_string());
            if let Err(e) = link.conn.send(&ack.to_bytes(ns::CLIENT)).await {
                return Some(DisconnectReason::ConnectionLost(e.to_string()));
            }
        }
        "a" => {
            let h = el.attr("h").and_then(|h| h.parse().ok());
            if h.is_none_or(|h| sm.acknowledged(h).is_err()) {
                let error = format!(
                    "<stream:error><undefined-condition xmlns='{}'/><handled-count-too-high xmlns='{}' h='{}' send-count='{}'/></stream:error></stream:stream>",
                    ns::STREAM_ERRORS,
                    ns::SM,
                    h.unwrap_or_default(),
                    sm.unacked_len()
                );
                let _ = link.conn.send(error.as_bytes()).await;
                return Some(DisconnectReason::Protocol(
                    "the server acknowledged stanzas we never sent".into(),
                ));
            }
        }
        _ => {}
    }
    None
}

/// Offers a stanza to the modules: `Some(true)` if it is still to be dispatched, `Some(false)`
/// if a module took it, `None` (the stream's end) if writing a module's reply failed.
pub(super) async fn handled(link: &mut Link, shared: &Shared, stanza: &Element) -> Option<bool> {
    let handlers = lock(&shared.handlers).clone();
    for handler in handlers {
        match handler.handle(stanza) {
            Handled::No => {}
            Handled::Yes => return Some(false),
            Handled::Reply(reply) => {
                link.send_stanza(reply.to_bytes(ns::CLIENT)).await.ok()?;
                return Some(false);
            }
            Handled::Also(extra) => {
                link.send_stanza(extra.to_bytes(ns::CLIENT)).await.ok()?;
            }
        }
    }
    Some(true)
}

/// Hands an IQ answer to the request waiting for it; the IQ back if it answers none.
pub(super) fn answer_for(shared: &Shared, iq: Element) -> Option<Element> {
    if !matches!(iq.attr("type"), Some("result" | "error")) {
        return Some(iq);
    }
    let Some(id) = iq.attr("id") else {
        return Some(iq);
    };
    let mut pending = lock(&shared.pending);
    let Some(waiting) = pending.get(id) else {
        return Some(iq);
    };
    let own = session_jid(shared);
    if !from_addressee(iq.attr("from"), waiting.to.as_deref(), own.as_ref()) {
        // Someone else answering our request's id: not the answer.
        return Some(iq);
    }
    let waiting = pending.remove(&iq.attr("id").unwrap_or_default().to_owned())?;
    let _ = waiting.answer.send(iq);
    None
}

/// Whether an answer from `from` can be the answer to a request sent to `to` (RFC 6120
/// §8.1.2.1: the answer comes from whom the request went to; a request without `to` went
/// to the account, answered by the server for it with no `from`, or the bare JID, or the
/// domain).
pub(super) fn from_addressee(from: Option<&str>, to: Option<&str>, own: Option<&FullJid>) -> bool {
    let same = |a: &str, b: &str| match (Jid::new(a), Jid::new(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    match (from, to) {
        (None, None) => true,
        (Some(from), Some(to)) => same(from, to),
        (None, Some(to)) => own.is_some_and(|own| same(to, own.to_bare().as_str())),
        (Some(from), None) => own.is_some_and(|own| {
            same(from, own.to_bare().as_str())
                || same(from, own.domain().as_str())
                || same(from, own.as_str())
        }),
    }
}

/// A XEP-0199 ping addressed to us, which the stream answers itself.
pub(super) fn is_ping(iq: &Element) -> bool {
    iq.attr("type") == Some("get") && iq.has_child("ping", ns::PING)
}

/// An empty result for `iq`.
pub(super) fn reply_to(iq: &Element) -> Element {
    let mut reply = Element::new("iq", ns::CLIENT).with_attr("type", "result");
    if let Some(id) = iq.attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(from) = iq.attr("from") {
        reply.set_attr("to", from);
    }
    reply
}

/// Ends the stream politely: unavailable presence, our close, then the server's close (or
/// the end of the connection) for a short while.
pub(super) async fn close(conn: &mut Conn) {
    let goodbye = format!(
        "<presence type='unavailable' xmlns='{}'/></stream:stream>",
        ns::CLIENT
    );
    if conn.send(goodbye.as_bytes()).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        loop {
            match conn.next_event().await {
                Ok(StreamEvent::Close) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut conn.io).await;
}

pub(super) fn lost(e: ReadError) -> DisconnectReason {
    match e {
        ReadError::Xml(e) => DisconnectReason::Protocol(e.to_string()),
        other => DisconnectReason::ConnectionLost(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_must_come_from_whom_the_request_went_to() {
        let own = FullJid::new("juliet@capulet.example/balcony").unwrap();
        let own = Some(&own);
        assert!(from_addressee(
            Some("capulet.example"),
            Some("capulet.example"),
            own
        ));
        assert!(!from_addressee(
            Some("evil.example"),
            Some("capulet.example"),
            own
        ));
        // To the account: no `from`, the bare JID, the domain.
        assert!(from_addressee(None, None, own));
        assert!(from_addressee(Some("juliet@capulet.example"), None, own));
        assert!(from_addressee(Some("capulet.example"), None, own));
        assert!(!from_addressee(Some("romeo@montague.example"), None, own));
        // To our own bare JID, answered without `from`.
        assert!(from_addressee(None, Some("juliet@capulet.example"), own));
        assert!(!from_addressee(None, Some("romeo@montague.example"), own));
    }
}
