//! Coming back after a lost connection ([`Reconnect`]): the supervisor around each
//! connection, the attempts with backoff, resumption or a new session, and the archive
//! catch-up that follows a new session.

use super::*;

/// The stream task: runs the stream and, by the [`Reconnect`] policy, brings it back after
/// a loss.
pub(super) async fn supervise(
    mut link: Link,
    mut commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
) {
    let mut start = Start::First;
    loop {
        let reason = run(&mut link, start, &mut commands, &shared).await;
        // Requests still waiting learn that no answer will come.
        lock(&shared.pending).clear();
        let policy = shared
            .settings
            .reconnect
            .clone()
            .filter(|_| reason.reconnects());
        {
            let mut stream = lock(&shared.stream);
            let ours = stream
                .as_ref()
                .is_some_and(|s| s.task.id() == tokio::task::id());
            if ours && policy.is_some() {
                if let Some(session) = stream.as_mut().and_then(|s| s.session.as_mut()) {
                    session.live = false;
                }
            } else if ours {
                // A stream that ended by itself is no longer the client's.
                *stream = None;
            }
        }
        let _ = shared.events.send(Event::Disconnected(reason)).await;
        let Some(policy) = policy else {
            return;
        };
        match come_back(&policy, link.sm.take(), &mut commands, &shared).await {
            Some((next, next_start)) => {
                link = next;
                start = next_start;
            }
            None => {
                let mut stream = lock(&shared.stream);
                if stream
                    .as_ref()
                    .is_some_and(|s| s.task.id() == tokio::task::id())
                {
                    *stream = None;
                }
                return;
            }
        }
    }
}

/// Reconnects by `policy`: the new link and how it starts, or `None` if the client gave up
/// or was told to disconnect meanwhile.
pub(super) async fn come_back(
    policy: &Reconnect,
    mut sm: Option<Sm>,
    commands: &mut mpsc::Receiver<Command>,
    shared: &Arc<Shared>,
) -> Option<(Link, Start)> {
    // Stanzas the application sent while we were away, and those of a session that could
    // not be resumed, in order.
    let mut held: Vec<Bytes> = Vec::new();
    let mut resend: Vec<Bytes> = Vec::new();
    for attempt in 1.. {
        let delay = policy.delay(attempt, reconnect::random());
        let _ = shared
            .events
            .send(Event::Reconnecting { attempt, delay })
            .await;
        let wait = tokio::time::sleep(delay);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                command = commands.recv() => match command {
                    Some(Command::Stanza(bytes)) => held.push(bytes),
                    Some(Command::Send(_) | Command::Abort(_)) => {}
                    Some(Command::Close) | None => return None,
                },
            }
        }
        match attempt_once(shared, &mut sm, &mut resend).await {
            Ok((link, resumed)) => {
                let start = if resumed {
                    Start::Resumed { held }
                } else {
                    resend.append(&mut held);
                    Start::Fresh { resend }
                };
                return Some((link, start));
            }
            Err(e) => {
                let gave_up = matches!(e, ConnectError::Auth(_) | ConnectError::Config(_))
                    || policy.gives_up_after(attempt + 1);
                let _ = shared
                    .events
                    .send(Event::ReconnectFailed {
                        attempt,
                        error: e.to_string(),
                        gave_up,
                    })
                    .await;
                if gave_up {
                    return None;
                }
            }
        }
    }
    None
}

/// One reconnection: resumes the stream-management session `sm` if the server can, else
/// binds a new session (what `sm` never had acknowledged moves to `resend`). True if
/// resumed.
pub(super) async fn attempt_once(
    shared: &Shared,
    sm: &mut Option<Sm>,
    resend: &mut Vec<Bytes>,
) -> Result<(Link, bool), ConnectError> {
    let Authenticated {
        mut conn,
        features,
        mechanism,
    } = open(shared).await?;
    let offered = features.has_child("sm", ns::SM);
    if let Some(mut old) = sm.take_if(|old| old.resumable() && offered) {
        let previd = old.id.clone().unwrap_or_default();
        match login::resume(&mut conn, &previd, old.inbound).await {
            Ok(Resumption::Resumed { h }) => {
                if old.acknowledged(h).is_ok() {
                    old.asked = false;
                    if let Some(jid) = last_jid(shared) {
                        set_session(shared, jid, features);
                    }
                    return Ok((
                        Link {
                            conn,
                            sm: Some(old),
                        },
                        true,
                    ));
                }
                // The server claims stanzas we never sent: start afresh.
                resend.extend(old.into_unacked());
                return Err(ConnectError::Protocol(
                    "the server acknowledged more than we sent".into(),
                ));
            }
            Ok(Resumption::Failed { h }) => {
                if let Some(h) = h {
                    let _ = old.acknowledged(h);
                }
                resend.extend(old.into_unacked());
            }
            Err(e) => {
                // Keep the session for the next attempt.
                *sm = Some(old);
                return Err(e);
            }
        }
    } else if let Some(old) = sm.take() {
        resend.extend(old.into_unacked());
    }
    // The resource we had, so the application's address stays the same.
    let resource = last_resource(shared);
    let jid = login::bind_session(&mut conn, &features, resource.as_deref()).await?;
    let _ = shared
        .events
        .send(Event::Authenticated {
            jid: jid.clone(),
            mechanism,
        })
        .await;
    set_session(shared, jid, features);
    Ok((Link { conn, sm: None }, false))
}

pub(super) fn set_session(shared: &Shared, jid: FullJid, features: Element) {
    if let Some(stream) = lock(&shared.stream).as_mut() {
        stream.session = Some(Session {
            jid,
            features,
            live: true,
        });
    }
}

pub(super) fn last_resource(shared: &Shared) -> Option<String> {
    last_jid(shared)
        .map(|jid| jid.resource().as_str().to_owned())
        .or_else(|| shared.settings.resource.clone())
}

/// After a new session: what came while we were away, from the archive, then our
/// presence again.
pub(super) async fn catch_up(client: Client) {
    let shared = &client.shared;
    let policy_catches_up = shared
        .settings
        .reconnect
        .as_ref()
        .is_some_and(Reconnect::catches_up);
    let mut delivered = 0;
    if policy_catches_up {
        delivered = fetch_missed(&client).await;
    }
    let presence = lock(&shared.presence).clone();
    if let Some(presence) = presence {
        let _ = client.command(Command::Stanza(presence)).await;
    }
    let _ = shared
        .events
        .send(Event::CaughtUp {
            messages: delivered,
        })
        .await;
}

/// Delivers the messages the archive has since the last one seen (or since the first
/// login); how many. A server without an archive has none.
pub(super) async fn fetch_missed(client: &Client) -> usize {
    let shared = &client.shared;
    let mam = shared.mam.get_or_init(|| Mam::attach(client)).clone();
    let own = shared.settings.jid.clone();
    let mut query = MamQuery {
        max: Some(CATCH_UP_PAGE),
        ..MamQuery::default()
    };
    match lock(&shared.seen).last.clone() {
        Some(last) => query.after = Some(last),
        None => query.start = shared.first_login.get().copied(),
    }
    let mut delivered = 0;
    for _ in 0..CATCH_UP_PAGES {
        let Ok(page) = mam.query(&query).await else {
            break;
        };
        for archived in page.messages {
            if !lock(&shared.seen).insert(&archived.id) {
                continue;
            }
            let incoming = archived
                .message
                .attr("from")
                .and_then(|from| Jid::new(from).ok())
                .is_some_and(|from| from.to_bare() != own);
            if !incoming || archived.message.attr("type") == Some("groupchat") {
                continue;
            }
            let message = with_archive_marks(archived.message, &own, &archived.id, archived.stamp);
            let _ = shared.events.send(Event::Message(message)).await;
            delivered += 1;
        }
        if page.complete || page.last.is_none() {
            break;
        }
        query.after = page.last;
        query.start = None;
    }
    delivered
}

/// An archived message as it would have come: with its stanza-id and, if it has none, a
/// delay stamp (XEP-0203) of when the archive took it.
pub(super) fn with_archive_marks(
    mut message: Element,
    own: &BareJid,
    id: &str,
    stamp: Option<SystemTime>,
) -> Element {
    let has_id = message
        .children()
        .any(|c| c.is("stanza-id", ns::STANZA_ID) && c.attr("by") == Some(own.as_str()));
    if !has_id {
        message.append_child(
            Element::new("stanza-id", ns::STANZA_ID)
                .with_attr("by", own.as_str())
                .with_attr("id", id),
        );
    }
    if let Some(stamp) = stamp
        && !message.has_child("delay", ns::DELAY)
    {
        message.append_child(
            Element::new("delay", ns::DELAY)
                .with_attr("stamp", corvid_proto::time::format_datetime(stamp)),
        );
    }
    message
}

/// The stanza-id the account's server gave a message (XEP-0359).
pub(super) fn own_stanza_id<'a>(message: &'a Element, own: &BareJid) -> Option<&'a str> {
    message
        .children()
        .find(|c| {
            c.is("stanza-id", ns::STANZA_ID)
                && c.attr("by")
                    .and_then(|by| BareJid::new(by).ok())
                    .is_some_and(|by| &by == own)
        })
        .and_then(|c| c.attr("id"))
}
