//! The scriptable subcommands: `send`, `roster`, `listen`, `join`, `vcard`. Each logs in,
//! does one thing, prints machine-friendly lines on stdout (diagnostics go to stderr) and
//! exits non-zero when it could not do it.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use corvid_client::{
    DisconnectReason, Event, Events, JoinOptions, Joined, ReceiptEvent, Room, RoomEvent,
};
use corvid_proto::BareJid;
use corvid_xml::Element;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::message::{self, ChatMessage};
use crate::muc;
use crate::presence::{self, Show};
use crate::session::Session;

/// How long `join` waits for the room to let us in.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// `send JID TEXT`: sends one message; with `receipt`, waits for its XEP-0184 receipt.
pub async fn send(
    session: Session,
    to: &str,
    text: &str,
    kind: &str,
    receipt: Option<Duration>,
) -> anyhow::Result<()> {
    let Session {
        client,
        events,
        receipts,
        mut receipt_events,
        ..
    } = session;
    let _drain = drain(events);
    let id = client.new_id();
    let stanza = message::outgoing(to, kind, text, &id);
    let Some(timeout) = receipt else {
        client.send(&stanza).await?;
        client.disconnect().await;
        return Ok(());
    };
    let id = receipts.send(stanza).await?;
    let wanted = message::bare(to);
    let got = tokio::time::timeout(timeout, async {
        while let Some(ReceiptEvent::Received { from, id: of }) = receipt_events.next().await {
            if of == id && message::bare(&from) == wanted {
                return true;
            }
        }
        false
    })
    .await;
    client.disconnect().await;
    match got {
        Ok(true) => {
            eprintln!("{to} received it");
            Ok(())
        }
        _ => bail!(
            "sent, but no receipt from {to} within {}s",
            timeout.as_secs()
        ),
    }
}

/// One contact as `roster --json` prints it.
#[derive(Serialize)]
struct ContactLine<'a> {
    jid: &'a str,
    name: Option<&'a str>,
    subscription: &'a str,
    ask: bool,
    groups: &'a [String],
    presence: &'a str,
}

/// `roster`: one line per contact (JID, name, subscription, presence), tab-separated or as
/// JSON. Presences come in after our initial presence; they are waited for until none has
/// come for a moment, `wait` at most.
pub async fn roster(session: Session, wait: Duration, json: bool) -> anyhow::Result<()> {
    let Session {
        client,
        events,
        roster,
        mut roster_events,
        ..
    } = session;
    let _drain = drain(events);
    roster.fetch().await.context("cannot fetch the roster")?;
    client
        .send(&presence::own_presence(Show::Online, None))
        .await?;
    let deadline = tokio::time::Instant::now() + wait;
    let quiet = Duration::from_millis(300);
    loop {
        let until = deadline.min(tokio::time::Instant::now() + quiet);
        match tokio::time::timeout_at(until, roster_events.next()).await {
            Ok(Some(_)) if tokio::time::Instant::now() < deadline => continue,
            _ => break,
        }
    }
    let mut out = std::io::stdout().lock();
    for item in roster.items() {
        let shown = presence::summary(&roster.presence(&item.jid));
        let presence = shown.map_or("offline", Show::as_str);
        if json {
            let line = ContactLine {
                jid: &item.jid,
                name: item.name.as_deref(),
                subscription: item.subscription.as_str(),
                ask: item.pending_out,
                groups: &item.groups,
                presence,
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        } else {
            let name = item.name.as_deref().unwrap_or("-");
            let subscription = item.subscription.as_str();
            writeln!(out, "{}\t{name}\t{subscription}\t{presence}", item.jid)?;
        }
    }
    out.flush()?;
    drop(out);
    client.disconnect().await;
    Ok(())
}

/// `listen`: goes online and prints every message with a body as a JSON line, until killed
/// (or the connection is lost for good, an error). A lost connection comes back by itself;
/// what came meanwhile is printed once (the SDK resumes the session or catches up from the
/// archive, and drops what it delivered already).
pub async fn listen(session: Session) -> anyhow::Result<()> {
    session.go_online().await?;
    eprintln!(
        "listening as {}",
        session
            .client
            .jid()
            .map_or_else(String::new, |j| j.to_string())
    );
    let Session {
        mut events,
        roster_events,
        ..
    } = session;
    drop(roster_events);
    while let Some(event) = events.next().await {
        match event {
            Event::Message(stanza) => {
                if let Some(message) = ChatMessage::parse(&stanza, None) {
                    print_line(&message.json_line())?;
                }
            }
            other => {
                if let Connection::Over(outcome) = connection(&other) {
                    return outcome;
                }
            }
        }
    }
    Ok(())
}

/// `join ROOM NICK`: enters the room (unlocking it as an instant room if we created it),
/// prints the room's messages as JSON lines and sends each line of stdin to the room; at
/// the end of stdin, leaves. After a lost connection that could not resume the session, it
/// enters again; the history the room sends then is not printed twice.
pub async fn join(session: Session, room: &str, nick: &str) -> anyhow::Result<()> {
    let Session {
        client,
        mut events,
        muc,
        ..
    } = session;
    let jid: BareJid = room
        .parse()
        .with_context(|| format!("{room} is not a room's JID"))?;
    let (room, mut room_events) = muc.room(jid, nick);
    let mut shown = muc::Shown::default();
    // Until the room lets us in, nothing is read from stdin.
    let joined = enter_taking_events(&room, &mut events).await?;
    eprintln!("joined {} as {}", room.jid(), joined.nick);
    let mut lines = stdin_lines();
    loop {
        tokio::select! {
            event = room_events.next() => match event {
                Some(event) => print_room_event(&event, &mut shown)?,
                None => bail!("the room is gone"),
            },
            event = events.next() => match event.as_ref().map(connection) {
                Some(Connection::Over(outcome)) => return outcome,
                // A new session: the room forgot us (a resumed one keeps us in).
                Some(Connection::NewSession) => {
                    let room = room.clone();
                    tokio::spawn(async move {
                        if let Err(e) = muc::enter(&room, JoinOptions::default()).await {
                            eprintln!("cannot enter {} again: {e}", room.jid());
                        }
                    });
                }
                Some(Connection::Going) => {}
                None => bail!("the client is gone"),
            },
            line = lines.recv() => match line {
                Some(line) => {
                    room.send_message(&line).await?;
                }
                None => break,
            },
        }
    }
    // Leaving waits for the room's goodbye; the stream's events must flow meanwhile.
    let _drain = drain(events);
    if let Err(e) = room.leave(None).await {
        eprintln!("leaving {}: {e}", room.jid());
    }
    client.disconnect().await;
    Ok(())
}

/// Enters `room`, taking the stream's events meanwhile (the stream waits for them to be
/// taken, and a lost connection is told).
async fn enter_taking_events(room: &Room, events: &mut Events) -> anyhow::Result<Joined> {
    let jid = room.jid();
    let entering = tokio::time::timeout(JOIN_TIMEOUT, muc::enter(room, JoinOptions::default()));
    tokio::pin!(entering);
    loop {
        tokio::select! {
            entered = &mut entering => return match entered {
                Ok(Ok(joined)) => Ok(joined),
                Ok(Err(e)) => Err(anyhow!("{jid} refused the join: {e}")),
                Err(_) => Err(anyhow!("{jid} did not answer the join")),
            },
            event = events.next() => match event.as_ref().map(connection) {
                Some(Connection::Over(outcome)) => {
                    outcome?;
                    bail!("disconnected before entering {jid}");
                }
                Some(_) => {}
                None => bail!("the client is gone"),
            },
        }
    }
}

/// `vcard JID`: the vCard's fields, one `NAME: value` (or `NAME.PART: value`) per line.
pub async fn vcard(session: Session, jid: &str) -> anyhow::Result<()> {
    let _drain = drain(session.events);
    let vcard = session.vcards.fetch(jid, true).await?;
    session.client.disconnect().await;
    let Some(vcard) = vcard else {
        bail!("{jid} has no vCard");
    };
    let lines = vcard_lines(&vcard);
    if lines.is_empty() {
        eprintln!("{jid}'s vCard is empty");
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// The fields of a `<vCard/>`: simple ones as `NAME: value`, structured ones (N, EMAIL,
/// PHOTO …) as `NAME.PART: value`, binary data by its size only.
pub fn vcard_lines(vcard: &Element) -> Vec<String> {
    let mut lines = Vec::new();
    for field in vcard.children() {
        let parts: Vec<&Element> = field.children().collect();
        if parts.is_empty() {
            let text = field.text();
            if !text.trim().is_empty() {
                lines.push(format!("{}: {}", field.name(), text.trim()));
            }
            continue;
        }
        for part in parts {
            let text = part.text();
            let text = text.trim();
            if part.name() == "BINVAL" {
                lines.push(format!(
                    "{}.BINVAL: <{} base64 characters>",
                    field.name(),
                    text.len()
                ));
            } else if text.is_empty() {
                // Flags such as <HOME/> or <INTERNET/>.
                lines.push(format!("{}.{}", field.name(), part.name()));
            } else {
                lines.push(format!("{}.{}: {text}", field.name(), part.name()));
            }
        }
    }
    lines
}

/// The message a room event carries as a JSON line, unless it was printed already.
fn print_room_event(event: &RoomEvent, shown: &mut muc::Shown) -> anyhow::Result<()> {
    if let Some(message) = muc::message_of(event)
        && shown.first_time(&message)
    {
        print_line(&message.json_line())?;
    }
    Ok(())
}

/// One line on stdout, flushed at once (a pipe would otherwise hold it).
fn print_line(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Where the connection stands after a stream event, for the commands that stay online.
enum Connection {
    /// Still up, or coming back by itself: lost connections are told on stderr.
    Going,
    /// Back with a new session (not a resumed one): what the server kept for the old one,
    /// room occupancy say, is gone.
    NewSession,
    /// Over for good: `Ok` if asked for, else why.
    Over(anyhow::Result<()>),
}

fn connection(event: &Event) -> Connection {
    match event {
        Event::Disconnected(DisconnectReason::Requested) => Connection::Over(Ok(())),
        Event::Disconnected(reason) if !reason.reconnects() => {
            Connection::Over(Err(anyhow!("disconnected: {reason:?}")))
        }
        Event::Disconnected(reason) => {
            eprintln!("connection lost ({reason:?})");
            Connection::Going
        }
        Event::Reconnecting { attempt, delay } => {
            eprintln!(
                "reconnecting (attempt {attempt}) in {:.1}s",
                delay.as_secs_f64()
            );
            Connection::Going
        }
        Event::ReconnectFailed {
            error,
            gave_up: true,
            ..
        } => Connection::Over(Err(anyhow!("cannot reconnect: {error}"))),
        Event::ReconnectFailed { attempt, error, .. } => {
            eprintln!("reconnection attempt {attempt} failed: {error}");
            Connection::Going
        }
        Event::Resumed { .. } => {
            eprintln!("back (session resumed)");
            Connection::Going
        }
        Event::CaughtUp { messages } => {
            eprintln!("back ({messages} missed messages from the archive)");
            Connection::NewSession
        }
        _ => Connection::Going,
    }
}

/// Takes the client's events and drops them, for commands that do not read them (the
/// stream waits for its events to be taken).
fn drain(mut events: Events) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while events.next().await.is_some() {} })
}

/// The lines of stdin, read on a thread of their own (a blocking read cannot be cancelled);
/// the channel closes at the end of input.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (lines, receiver) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines.blocking_send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;
    use corvid_proto::ns;

    #[test]
    fn vcard_fields_one_per_line() {
        let vcard = Element::new("vCard", ns::VCARD)
            .with_child(Element::new("FN", ns::VCARD).with_text("Juliet Capulet"))
            .with_child(Element::new("NICKNAME", ns::VCARD).with_text(" jc "))
            .with_child(
                Element::new("EMAIL", ns::VCARD)
                    .with_child(Element::new("INTERNET", ns::VCARD))
                    .with_child(Element::new("USERID", ns::VCARD).with_text("j@c.example")),
            )
            .with_child(
                Element::new("PHOTO", ns::VCARD)
                    .with_child(Element::new("TYPE", ns::VCARD).with_text("image/png"))
                    .with_child(Element::new("BINVAL", ns::VCARD).with_text("aGVsbG8=")),
            );
        assert_eq!(
            vcard_lines(&vcard),
            [
                "FN: Juliet Capulet",
                "NICKNAME: jc",
                "EMAIL.INTERNET",
                "EMAIL.USERID: j@c.example",
                "PHOTO.TYPE: image/png",
                "PHOTO.BINVAL: <8 base64 characters>",
            ]
        );
    }
}
