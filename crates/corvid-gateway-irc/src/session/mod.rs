//! A session: one task per (XMPP account, IRC server), owning the IRC socket and the
//! [`Session`] state. The router hands it the account's stanzas for that server; it writes
//! IRC lines and sends stanzas back through the component's queue. It ends after QUIT or
//! when the IRC connection is lost, and says so on `ended`.

mod irc_events;
mod state;

use std::time::Duration;

use corvid_xml::Element;
use jid::{BareJid, Jid};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span};

use crate::irc::conn::{LineReader, write_line};
use crate::irc::line::Line;
use crate::irc::text::decode;

pub use state::{Params, Session, iq_result};

/// What the router sends a session.
#[derive(Debug)]
pub enum ToSession {
    /// A stanza from the user for `target` (a channel or a nick) on this server; `nick` is
    /// the occupant nick of a room address.
    Stanza {
        el: Element,
        from: Jid,
        target: String,
        nick: Option<String>,
    },
    /// Leave the server (the gateway is stopping or lost its XMPP stream).
    Quit(String),
}

/// A session's mailbox, as the router keeps it.
pub struct Handle {
    pub id: u64,
    pub tx: mpsc::Sender<ToSession>,
}

/// Said on `ended` when a session is over: (account, folded server, session id).
pub type Ended = (BareJid, String, u64);

/// How a session reaches its server and its peers.
pub struct Wiring {
    pub port: u16,
    pub connect_timeout: Duration,
    /// Stanzas for the component stream.
    pub out: mpsc::Sender<Element>,
    pub ended: mpsc::UnboundedSender<Ended>,
}

/// How long the IRC server may take to welcome us.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts a session task.
pub fn spawn(params: Params, wiring: Wiring, first: ToSession) -> Handle {
    let (tx, rx) = mpsc::channel(256);
    // In the channel before the session starts: a connection that fails at once still
    // finds the stanza that opened it, and answers it.
    let _ = tx.try_send(first);
    let id = params.id;
    let span = info_span!("irc", user = %params.user, server = %params.server, id);
    tokio::spawn(run(Session::new(params), rx, wiring).instrument(span));
    Handle { id, tx }
}

async fn run(mut session: Session, mut rx: mpsc::Receiver<ToSession>, wiring: Wiring) {
    let address = (session.p.server.clone(), wiring.port);
    let connect = tokio::time::timeout(wiring.connect_timeout, TcpStream::connect(address));
    tokio::pin!(connect);
    // Stanzas that arrive while connecting are handled at once (joins wait in the state).
    let tcp = loop {
        tokio::select! {
            result = &mut connect => break result,
            msg = rx.recv() => match msg {
                Some(msg) => handle(&mut session, msg),
                None => return finish(session, &wiring).await,
            },
        }
        if flush_xmpp(&mut session, &wiring).await.is_err() {
            return finish(session, &wiring).await;
        }
    };
    let tcp = match tcp {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            info!(error = %e, "cannot connect to the IRC server");
            drain(&mut session, &mut rx);
            session.on_disconnected(&format!("cannot connect to {}: {e}", session.p.server));
            return finish(session, &wiring).await;
        }
        Err(_) => {
            drain(&mut session, &mut rx);
            session.on_disconnected(&format!("no answer from {}", session.p.server));
            return finish(session, &wiring).await;
        }
    };
    info!("connected to the IRC server");
    let (read, mut write) = tcp.into_split();
    let mut reader = LineReader::new(read);
    let deadline = tokio::time::Instant::now() + REGISTRATION_TIMEOUT;
    loop {
        if flush_xmpp(&mut session, &wiring).await.is_err() {
            session.quit("Gateway: stopping");
        }
        for line in std::mem::take(&mut session.to_irc) {
            if let Err(e) = write_line(&mut write, &line).await {
                session.on_disconnected(&format!("connection to the IRC server lost: {e}"));
                break;
            }
        }
        if session.finished {
            break;
        }
        tokio::select! {
            line = reader.next_line() => match line {
                Ok(Some(bytes)) => on_line(&mut session, &bytes),
                Ok(None) => session.on_disconnected("the IRC server closed the connection"),
                Err(e) => session.on_disconnected(&format!("connection to the IRC server lost: {e}")),
            },
            msg = rx.recv() => match msg {
                Some(msg) => handle(&mut session, msg),
                None => session.quit("Gateway: stopping"),
            },
            _ = tokio::time::sleep_until(deadline), if !session.registered => {
                session.on_disconnected("the IRC server did not accept the registration in time");
            }
        }
    }
    use tokio::io::AsyncWriteExt;
    let _ = write.shutdown().await;
    finish(session, &wiring).await
}

fn on_line(session: &mut Session, bytes: &[u8]) {
    let text = decode(bytes);
    match Line::parse(&text) {
        Ok(line) => {
            debug!(line = %text, "irc in");
            session.on_irc(&line);
        }
        Err(e) => debug!(error = %e, "IRC line dropped"),
    }
}

fn handle(session: &mut Session, msg: ToSession) {
    match msg {
        ToSession::Stanza {
            el,
            from,
            target,
            nick,
        } => session.on_stanza(&el, &from, &target, nick.as_deref()),
        ToSession::Quit(reason) => session.quit(&reason),
    }
}

/// Handles what is already queued (the connection failed: joins get their error).
fn drain(session: &mut Session, rx: &mut mpsc::Receiver<ToSession>) {
    while let Ok(msg) = rx.try_recv() {
        handle(session, msg);
    }
}

async fn flush_xmpp(session: &mut Session, wiring: &Wiring) -> Result<(), ()> {
    for el in std::mem::take(&mut session.to_xmpp) {
        wiring.out.send(el).await.map_err(|_| ())?;
    }
    Ok(())
}

async fn finish(mut session: Session, wiring: &Wiring) {
    let _ = flush_xmpp(&mut session, wiring).await;
    let key = crate::irc::fold(&session.p.server);
    let _ = wiring
        .ended
        .send((session.p.user.clone(), key, session.p.id));
    info!("session ended");
}

#[cfg(test)]
mod tests;
