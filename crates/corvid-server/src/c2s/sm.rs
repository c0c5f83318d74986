//! Stream management (XEP-0198, `urn:xmpp:sm:3`): acknowledgements and resumption.
//!
//! Once a client enables it, both sides count the stanzas they handled. Every stanza the
//! session writes is kept ([`Sm::record`]: a reference to bytes the queue already holds,
//! not a copy) until the client's `<a h/>` covers it, and the server asks for acks once a
//! few are outstanding. The `<a/>` we answer to the client's `<r/>` is sent only after
//! what it acknowledges is durable (the archive's group commit), so an acknowledged
//! message survives a crash.
//!
//! When the connection of a resumable session drops, the session stays bound — its
//! presence, its place in contacts' rosters — and its task keeps collecting what arrives
//! for it ([`Session::detached`]), for up to the negotiated timeout. A new connection of
//! the same account that sends `<resume/>` asks that task, through the session's
//! [`ResumeSlot`], for a [`Handover`]: the session's identity, queue and counters. The new
//! connection's task carries on as the session, resends what was not acknowledged, and
//! the old task ends without a trace (no unavailable presence, nothing re-broadcast). The
//! old connection may still look alive when that happens (phones reconnect before the
//! server notices): the request interrupts whatever the old task is doing, a write to a
//! dead socket included.
//!
//! A session that ends for good hands what was never acknowledged back to the router
//! (`router::reroute_unsent`): messages go to the account's other resources or to offline
//! storage, never lost.

use crate::lock;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use corvid_proto::Bare;
use corvid_proto::{BareJid, FullJid, StreamError, StreamErrorCondition as Cond, ns};
use corvid_xml::Element;
use dashmap::DashMap;
use tokio::sync::{Notify, oneshot};

use super::session::{End, Phase, Session};
use corvid_store::Archive as _;

use crate::sessions::{SessionControl, SessionId, StanzaClass};

mod moved;
pub(crate) use moved::{end_moved, give_away};

/// How long a resuming connection waits for the old session's task to hand over.
const HANDOVER_WAIT: Duration = Duration::from_secs(10);
/// Fewer unacknowledged stanzas than `ack_request_stanzas` are asked about after this.
const ACK_REQUEST_DELAY: Duration = Duration::from_secs(10);

/// The resumable sessions, by stream management id.
#[derive(Default)]
pub struct ResumeRegistry {
    slots: DashMap<String, Arc<ResumeSlot>>,
    /// In a cluster, ids begin with this node's name and a colon: a node a client resumes
    /// on knows where to ask for the session (`cluster/resume.rs`).
    node: std::sync::OnceLock<String>,
}

impl ResumeRegistry {
    /// Makes the ids of sessions enabled from now on name this node.
    pub fn set_node(&self, node: &str) {
        let _ = self.node.set(node.to_owned());
    }

    /// The node an id names, if it names one.
    fn node_of(id: &str) -> Option<&str> {
        id.rsplit_once(':').map(|(node, _)| node)
    }

    fn open(&self, owner: BareJid) -> Arc<ResumeSlot> {
        let id = match self.node.get() {
            Some(node) => format!("{node}:{}", crate::random_id()),
            None => crate::random_id(),
        };
        self.open_as(id, owner)
    }

    /// A slot under an id made elsewhere: a session moved here keeps its id.
    fn open_as(&self, id: String, owner: BareJid) -> Arc<ResumeSlot> {
        let slot = Arc::new(ResumeSlot {
            id,
            owner,
            wanted: Notify::new(),
            state: Mutex::new(SlotState::Live),
        });
        self.slots.insert(slot.id.clone(), slot.clone());
        slot
    }

    /// The slot of a resumable session of `owner`; another account's id is as unknown as
    /// a made-up one.
    fn find(&self, id: &str, owner: &BareJid) -> Option<Arc<ResumeSlot>> {
        let slot = self.slots.get(id)?.clone();
        (slot.owner == *owner).then_some(slot)
    }

    fn close(&self, slot: &ResumeSlot) {
        *lock(&slot.state) = SlotState::Gone;
        self.slots.remove(&slot.id);
    }

    /// Resumable sessions (attached or not).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Where a resuming connection asks a resumable session's task to hand it over.
pub struct ResumeSlot {
    id: String,
    owner: BareJid,
    wanted: Notify,
    state: Mutex<SlotState>,
}

enum SlotState {
    Live,
    /// A resuming connection waits here for the session.
    Wanted(oneshot::Sender<Handover>),
    Gone,
}

impl ResumeSlot {
    /// Resolves once a resuming connection asked for the session (and stays resolved
    /// until the session was handed over).
    async fn wanted(&self) {
        loop {
            let notified = self.wanted.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if matches!(*lock(&self.state), SlotState::Wanted(_)) {
                return;
            }
            notified.await;
        }
    }

    /// Asks for the session; `None` if it ended meanwhile.
    fn request(&self) -> Option<oneshot::Receiver<Handover>> {
        let mut state = lock(&self.state);
        if matches!(*state, SlotState::Gone) {
            return None;
        }
        // A second resumption attempt replaces the first (whose wait then fails).
        let (tx, rx) = oneshot::channel();
        *state = SlotState::Wanted(tx);
        drop(state);
        self.wanted.notify_waiters();
        Some(rx)
    }

    /// The waiting resumer, if any; the slot is live again (for the next resumption).
    fn take_request(&self) -> Option<oneshot::Sender<Handover>> {
        let mut state = lock(&self.state);
        match std::mem::replace(&mut *state, SlotState::Live) {
            SlotState::Wanted(tx) => Some(tx),
            other => {
                *state = other;
                None
            }
        }
    }
}

/// A resumable session, as its old task hands it to the connection resuming it.
pub(super) struct Handover {
    jid: FullJid,
    id: SessionId,
    control: Arc<SessionControl>,
    sm: Box<Sm>,
}

/// One session's stream management state.
pub(super) struct Sm {
    /// Stanzas handled from the client (its `h`).
    handled: u32,
    /// Stanzas sent to the client: the number of the newest in `unacked`.
    sent: u32,
    /// Sent and not yet acknowledged, oldest first.
    unacked: VecDeque<Bytes>,
    unacked_bytes: usize,
    /// Since when `unacked` has not been empty.
    unacked_since: Option<Instant>,
    /// An `<r/>` of ours is unanswered.
    asked: bool,
    slot: Option<Arc<ResumeSlot>>,
    timeout: Duration,
}

/// The client acknowledged more than was sent (XEP-0198 §4 `handled-count-too-high`).
pub(super) struct TooHigh {
    h: u32,
    sent: u32,
}

impl Sm {
    fn new(start: u32) -> Self {
        Sm {
            handled: start,
            sent: start,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            unacked_since: None,
            asked: false,
            slot: None,
            timeout: Duration::ZERO,
        }
    }

    /// A stanza is being sent (or, while detached, is waiting to be).
    pub(super) fn record(&mut self, stanza: Bytes, now: Instant) {
        self.sent = self.sent.wrapping_add(1);
        self.unacked_bytes += stanza.len();
        self.unacked.push_back(stanza);
        self.unacked_since.get_or_insert(now);
    }

    /// A stanza from the client was handled.
    pub(super) fn handled(&mut self) {
        self.handled = self.handled.wrapping_add(1);
    }

    /// The client handled every stanza up to `h` (counted modulo 2^32, XEP-0198 §4).
    fn ack(&mut self, h: u32) -> Result<(), TooHigh> {
        let acked = self.sent.wrapping_sub(self.unacked.len() as u32);
        let newly = h.wrapping_sub(acked) as usize;
        if newly > self.unacked.len() {
            return Err(TooHigh { h, sent: self.sent });
        }
        for stanza in self.unacked.drain(..newly) {
            self.unacked_bytes -= stanza.len();
        }
        if self.unacked.is_empty() {
            self.unacked_since = None;
            if self.unacked.capacity() > 64 {
                self.unacked = VecDeque::new();
            }
        }
        self.asked = false;
        Ok(())
    }

    /// Whether to ask for an ack now.
    pub(super) fn ack_due(&self, every: u32, now: Instant) -> bool {
        !self.asked
            && (self.unacked.len() >= every.max(1) as usize
                || self
                    .unacked_since
                    .is_some_and(|since| now >= since + ACK_REQUEST_DELAY))
    }

    pub(super) fn asked(&mut self) {
        self.asked = true;
    }

    /// When the few unacknowledged stanzas are to be asked about.
    pub(super) fn ack_deadline(&self) -> Option<Instant> {
        match self.asked {
            true => None,
            false => self.unacked_since.map(|since| since + ACK_REQUEST_DELAY),
        }
    }

    pub(super) fn over(&self, max_bytes: usize) -> bool {
        self.unacked_bytes > max_bytes
    }

    /// What was never acknowledged, oldest first.
    pub(super) fn take_unacked(&mut self) -> VecDeque<Bytes> {
        self.unacked_bytes = 0;
        self.unacked_since = None;
        std::mem::take(&mut self.unacked)
    }
}

/// `<r/>`, as we send it.
pub(super) const ACK_REQUEST: &[u8] = b"<r xmlns='urn:xmpp:sm:3'/>";

/// How a detached session's wait ended.
pub(super) enum Detached {
    /// Handed over to a resuming connection: this task has nothing left to do.
    Resumed,
    /// Not resumed: the session ends for this reason.
    Ended(End),
}

impl Session {
    /// A stream management element from the client (`ns::SM`).
    pub(super) async fn on_sm(&mut self, el: Element) -> Result<(), End> {
        match el.name() {
            "enable" => self.enable_sm(&el).await,
            "resume" => self.resume_sm(&el).await,
            "r" if self.sm.is_some() => self.answer_ack_request().await,
            "a" if self.sm.is_some() => self.on_ack(&el).await,
            _ => Err(self
                .fail(StreamError::with_text(
                    Cond::UnsupportedStanzaType,
                    "Unexpected stream management element",
                ))
                .await),
        }
    }

    async fn enable_sm(&mut self, el: &Element) -> Result<(), End> {
        // XEP-0198 §3: only once, and only once a resource is bound.
        let Phase::Bound { jid, .. } = &self.phase else {
            return self.sm_failed("unexpected-request", None).await;
        };
        if self.sm.is_some() {
            return self.sm_failed("unexpected-request", None).await;
        }
        let config = &self.server.config.stream_management;
        let mut sm = Box::new(Sm::new(config.counter_start));
        let mut enabled = Element::new("enabled", ns::SM);
        if matches!(el.attr("resume"), Some("true" | "1")) {
            let max = config.max_resume_timeout_secs;
            let secs = el
                .attr("max")
                .and_then(|m| m.parse::<u64>().ok())
                .unwrap_or(config.resume_timeout_secs)
                .min(max);
            let slot = self.server.resumption.open(jid.bare());
            enabled.set_attr("id", slot.id.as_str());
            enabled.set_attr("resume", "true");
            enabled.set_attr("max", secs.to_string());
            sm.slot = Some(slot);
            sm.timeout = Duration::from_secs(secs);
        }
        self.sm = Some(sm);
        self.write_nonza(&enabled).await
    }

    /// `<resume/>`, instead of binding a resource (XEP-0198 §5).
    async fn resume_sm(&mut self, el: &Element) -> Result<(), End> {
        let Phase::Authenticated(user) = &self.phase else {
            return self.sm_failed("unexpected-request", None).await;
        };
        let (Some(previd), Some(h)) = (
            el.attr("previd"),
            el.attr("h").and_then(|h| h.parse::<u32>().ok()),
        ) else {
            return self.sm_failed("bad-request", None).await;
        };
        let Some(slot) = self.server.resumption.find(previd, user) else {
            let user = user.clone();
            return self.resume_moved(previd, &user, h).await;
        };
        let handover = match slot.request() {
            Some(rx) => tokio::time::timeout(HANDOVER_WAIT, rx)
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        let Some(Handover {
            jid,
            id,
            control,
            mut sm,
        }) = handover
        else {
            return self.sm_failed("item-not-found", None).await;
        };
        tracing::Span::current().record("jid", tracing::field::display(&jid));
        self.phase = Phase::Bound { jid, id };
        self.control = Some(control);
        self.last_read = Instant::now();
        let acked = sm.ack(h);
        let handled = sm.handled;
        self.sm = Some(sm);
        if let Err(too_high) = acked {
            return Err(self.fail(too_high.stream_error()).await);
        }
        tracing::info!("session resumed");
        let resumed = Element::new("resumed", ns::SM)
            .with_attr("h", handled.to_string())
            .with_attr("previd", previd);
        self.write_nonza(&resumed).await?;
        self.resend_unacked().await
    }

    /// Writes every unacknowledged stanza again, in order (after a resumption).
    async fn resend_unacked(&mut self) -> Result<(), End> {
        let Some(sm) = &mut self.sm else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(sm.unacked_bytes + ACK_REQUEST.len());
        for stanza in &sm.unacked {
            out.extend_from_slice(stanza);
        }
        if !sm.unacked.is_empty() {
            out.extend_from_slice(ACK_REQUEST);
            sm.asked();
        }
        self.write_raw(&out).await
    }

    /// `<a h/>` for the client's `<r/>`, once what it acknowledges is durable.
    async fn answer_ack_request(&mut self) -> Result<(), End> {
        if let Err(e) = self.server.store.archive_sync().await {
            tracing::warn!(error = %e, "archive write failed; not acknowledging");
            return Err(self
                .fail(StreamError::with_text(
                    Cond::InternalServerError,
                    "Storage failed: unacknowledged stanzas must be sent again",
                ))
                .await);
        }
        let h = self.sm.as_ref().map_or(0, |sm| sm.handled);
        let a = format!("<a xmlns='{}' h='{h}'/>", ns::SM);
        self.write_raw(a.as_bytes()).await
    }

    async fn on_ack(&mut self, el: &Element) -> Result<(), End> {
        let Some(h) = el.attr("h").and_then(|h| h.parse::<u32>().ok()) else {
            return Err(self
                .fail(StreamError::with_text(
                    Cond::InvalidXml,
                    "<a/> needs a numeric h",
                ))
                .await);
        };
        let Some(sm) = &mut self.sm else {
            return Ok(());
        };
        if let Err(too_high) = sm.ack(h) {
            return Err(self.fail(too_high.stream_error()).await);
        }
        Ok(())
    }

    /// `<failed/>` with a stanza error condition (XEP-0198 §3, §5).
    async fn sm_failed(&mut self, condition: &str, h: Option<u32>) -> Result<(), End> {
        let mut failed =
            Element::new("failed", ns::SM).with_child(Element::new(condition, ns::STANZA_ERRORS));
        if let Some(h) = h {
            failed.set_attr("h", h.to_string());
        }
        self.write_nonza(&failed).await
    }

    async fn write_nonza(&mut self, el: &Element) -> Result<(), End> {
        let bytes = el.to_bytes(ns::CLIENT);
        self.write_raw(&bytes).await
    }

    /// Whether the session waits for resumption now that its connection is gone.
    pub(super) fn resumable(&self, end: &End) -> bool {
        let dropped = matches!(
            end,
            End::Disconnected | End::Io(_) | End::StreamError(Cond::ConnectionTimeout)
        );
        dropped
            && matches!(self.phase, Phase::Bound { .. })
            && self.sm.as_ref().is_some_and(|sm| sm.slot.is_some())
    }

    /// Keeps a session whose connection dropped until it is resumed or its time is up,
    /// collecting what arrives for it meanwhile.
    pub(super) async fn detached(&mut self) -> Detached {
        let (Some(sm), Some(control)) = (&self.sm, self.control.clone()) else {
            return Detached::Ended(End::Disconnected);
        };
        let (Some(slot), timeout) = (sm.slot.clone(), sm.timeout) else {
            return Detached::Ended(End::Disconnected);
        };
        tracing::info!(
            timeout_secs = timeout.as_secs(),
            "connection lost; session kept for resumption"
        );
        // Nothing more is written to the old connection: give its memory back.
        let transport = std::mem::replace(&mut self.transport, super::Transport::Upgrading);
        drop(transport);
        self.parser.release_memory();
        self.out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        let max_bytes = self.server.config.stream_management.max_unacked_bytes;
        let mut shutdown = self.server.shutdown_signal();
        loop {
            tokio::select! {
                biased;
                _ = slot.wanted() => {
                    return match self.hand_over() {
                        Ok(()) => Detached::Resumed,
                        Err(()) => continue,
                    };
                }
                _ = shutdown.changed() => return Detached::Ended(End::StreamError(Cond::SystemShutdown)),
                err = control.closed() => return Detached::Ended(End::StreamError(err.condition)),
                stanza = control.next() => {
                    if matches!(stanza.class, StanzaClass::Message { body: true }) {
                        self.wake_device(&stanza.bytes).await;
                    }
                    let Some(sm) = &mut self.sm else { continue };
                    sm.record(stanza.bytes, Instant::now());
                    if sm.over(max_bytes) {
                        tracing::info!("too much waiting for a detached session; ending it");
                        return Detached::Ended(End::StreamError(Cond::PolicyViolation));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!("not resumed in time");
                    return Detached::Ended(End::Disconnected);
                }
            }
        }
    }

    /// A message waits for this detached session: modules may wake its device (XEP-0357).
    async fn wake_device(&self, stanza: &[u8]) {
        let Phase::Bound { jid, id } = &self.phase else {
            return;
        };
        let Some(msg) = std::str::from_utf8(stanza)
            .ok()
            .and_then(|text| corvid_xml::parse_element(text, ns::CLIENT).ok())
        else {
            return;
        };
        let ctx = crate::module::Ctx {
            server: self.server.clone(),
        };
        self.server
            .modules
            .on_message_waiting(&ctx, &jid.bare(), Some(*id), &msg)
            .await;
    }

    /// Gives the session to the connection that asked to resume it. `Err` if that
    /// connection gave up meanwhile (the session stays here).
    pub(super) fn hand_over(&mut self) -> Result<(), ()> {
        let slot = self.sm.as_ref().and_then(|sm| sm.slot.clone());
        let Some(tx) = slot.and_then(|slot| slot.take_request()) else {
            return Err(());
        };
        let (Phase::Bound { jid, id }, Some(control), Some(sm)) =
            (&self.phase, self.control.clone(), self.sm.take())
        else {
            return Err(());
        };
        let handover = Handover {
            jid: jid.clone(),
            id: *id,
            control,
            sm,
        };
        match tx.send(handover) {
            Ok(()) => {
                self.phase = Phase::PreAuth;
                self.control = None;
                tracing::info!("session handed over to a resuming connection");
                Ok(())
            }
            Err(handover) => {
                self.sm = Some(handover.sm);
                Err(())
            }
        }
    }

    /// The session ends for good: it can no longer be resumed, and what it never got
    /// acknowledged is returned (oldest first).
    pub(super) fn close_sm(&mut self) -> VecDeque<Bytes> {
        let Some(sm) = &mut self.sm else {
            return VecDeque::new();
        };
        if let Some(slot) = sm.slot.take() {
            self.server.resumption.close(&slot);
        }
        sm.take_unacked()
    }

    /// Resolves when a resuming connection asks for this session.
    pub(super) async fn takeover_wanted(sm: &Option<Box<Sm>>) {
        match sm.as_ref().and_then(|sm| sm.slot.as_ref()) {
            Some(slot) => slot.wanted().await,
            None => std::future::pending().await,
        }
    }
}

impl TooHigh {
    /// XEP-0198 §4: `undefined-condition` with `<handled-count-too-high/>`.
    fn stream_error(&self) -> StreamError {
        StreamError::with_text(
            Cond::UndefinedCondition,
            "You acknowledged more stanzas than were sent",
        )
        .with_app(
            Element::new("handled-count-too-high", ns::SM)
                .with_attr("h", self.h.to_string())
                .with_attr("send-count", self.sent.to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(n: u32) -> Bytes {
        Bytes::from(format!("<message id='{n}'/>"))
    }

    #[test]
    fn acks_count_modulo_two_to_the_thirty_two() {
        let now = Instant::now();
        let mut sm = Sm::new(u32::MAX - 2);
        for n in 0..6 {
            sm.record(stanza(n), now);
        }
        assert_eq!(sm.sent, 3, "wrapped past 2^32");
        // The client handled three: h = start + 3, which wrapped to 0.
        assert!(sm.ack(0).is_ok());
        assert_eq!(sm.unacked.front(), Some(&stanza(3)));
        assert!(sm.ack(2).is_ok());
        assert_eq!(sm.unacked.len(), 1);
        // Acking the same again changes nothing; acking more than sent is refused.
        assert!(sm.ack(2).is_ok());
        assert!(sm.ack(4).is_err());
        assert!(sm.ack(3).is_ok());
        assert!(sm.unacked.is_empty() && sm.unacked_bytes == 0);
    }

    #[test]
    fn handled_wraps_too() {
        let mut sm = Sm::new(u32::MAX);
        sm.handled();
        assert_eq!(sm.handled, 0);
    }

    #[test]
    fn an_ack_is_asked_for_after_enough_stanzas_or_long_enough() {
        let now = Instant::now();
        let mut sm = Sm::new(0);
        sm.record(stanza(1), now);
        assert!(!sm.ack_due(3, now));
        assert!(sm.ack_due(3, now + ACK_REQUEST_DELAY));
        sm.record(stanza(2), now);
        sm.record(stanza(3), now);
        assert!(sm.ack_due(3, now));
        sm.asked();
        assert!(!sm.ack_due(3, now), "one request at a time");
        assert!(sm.ack(3).is_ok());
        assert!(sm.ack_deadline().is_none());
    }

    #[tokio::test]
    async fn a_slot_hands_over_once_and_refuses_after_closing() {
        let registry = ResumeRegistry::default();
        let owner: BareJid = "a@x".parse().unwrap();
        let slot = registry.open(owner.clone());
        assert!(registry.find(&slot.id, &"b@x".parse().unwrap()).is_none());
        let found = registry.find(&slot.id, &owner).unwrap();
        let rx = found.request().unwrap();
        // The session's task sees the request and takes it.
        slot.wanted().await;
        let tx = slot.take_request().unwrap();
        drop((tx, rx));
        assert!(slot.take_request().is_none(), "taken once");
        registry.close(&slot);
        assert!(registry.find(&slot.id, &owner).is_none());
        assert!(slot.request().is_none());
        assert!(registry.is_empty());
    }
}
