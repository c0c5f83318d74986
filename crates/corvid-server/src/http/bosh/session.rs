//! One BOSH session's carrier: a task that owns the session's [`Carrier`] and answers the
//! client's HTTP requests (XEP-0124 §§7–14). Requests come in through a channel from the
//! HTTP handlers, each with the sender its answer goes back on; their stanzas go to the
//! c2s session in `rid` order ([`Window`]); up to `hold` of them are held until the
//! session has something to say (everything queued goes in one answer) or `wait` passes.
//!
//! Idle, a session holds its settings, the window's last two answers and the requests it
//! is holding; what the session sends waits here only until the next request takes it, and
//! only up to a bound (then the session itself waits, and its slow-consumer policy applies).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Sessions;
use super::body::{self, Body};
use super::window::{Arrival, Window};
use crate::c2s::bridge::{self, CLOSE, Carrier, Frame};

/// A request handed to the session's task; the answer goes back on `reply`.
pub struct Request {
    pub body: Body,
    pub reply: oneshot::Sender<Bytes>,
}

/// The session's negotiated settings (XEP-0124 §7.1).
#[derive(Clone, Debug)]
pub struct Settings {
    pub sid: String,
    pub wait: Duration,
    pub hold: usize,
    pub requests: u64,
    pub inactivity: Duration,
    pub max_pause: Duration,
    pub polling: Duration,
    pub secure: bool,
    /// Bytes of the session's output kept waiting for a request before the session waits.
    pub max_queued: usize,
}

/// What woke the session's task.
enum Event {
    Request(Option<Request>),
    Frame(Option<Frame>),
    Sent,
    Timer,
}

struct Held {
    rid: u64,
    reply: oneshot::Sender<Bytes>,
    until: Instant,
}

/// How the session ended, for the last answers.
enum Ending {
    /// The client said `terminate`, or the stream closed normally.
    Closed,
    /// The stream ended with this `<stream:error/>` (XEP-0206 §9: `remote-stream-error`).
    StreamError(Bytes),
    /// A request outside the window, or a request after the end.
    ItemNotFound,
}

pub struct Session {
    settings: Settings,
    carrier: Carrier,
    window: Window<Request>,
    held: VecDeque<Held>,
    /// Elements from the session not yet answered with.
    queue: Vec<Bytes>,
    queued_bytes: usize,
    /// Stream bytes for the session, in order, waiting for room in its channel.
    outbound: VecDeque<Bytes>,
    /// The creation request's answer carries the session's attributes; these come from
    /// the session's stream header.
    creation: Option<u64>,
    opened: Option<(String, String)>,
    /// The creation request's `to` and `xml:lang`, for the headers of restarts.
    to: Option<String>,
    lang: Option<String>,
    ending: Option<Ending>,
    /// Whether the client has been told the session ended.
    final_delivered: bool,
    /// The client's announced pause (XEP-0124 §10), for the next idle period.
    pause: Option<Duration>,
    /// When the session ends for want of requests (none is held).
    idle_until: Instant,
}

impl Session {
    /// A session whose creation request `first` is already held; `header` opens its
    /// stream.
    pub fn new(settings: Settings, carrier: Carrier, first: Request, header: Bytes) -> Self {
        let now = Instant::now();
        let rid = first.body.rid;
        let (to, lang) = (first.body.to, first.body.lang);
        Session {
            to,
            lang,
            final_delivered: false,
            pause: None,
            window: Window::new(rid, settings.requests),
            held: VecDeque::from([Held {
                rid,
                reply: first.reply,
                until: now + settings.wait,
            }]),
            idle_until: now + settings.inactivity,
            settings,
            carrier,
            queue: Vec::new(),
            queued_bytes: 0,
            outbound: VecDeque::from([header]),
            creation: Some(rid),
            opened: None,
            ending: None,
        }
    }

    /// Runs until the session ends and its last answer is given (or nobody comes for it).
    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>, sessions: Arc<Sessions>) {
        loop {
            let next_deadline = self.next_deadline();
            let reading = self.ending.is_none() && self.queued_bytes < self.settings.max_queued;
            let event = tokio::select! {
                request = requests.recv() => Event::Request(request),
                frame = self.carrier.from_session.recv(), if reading => Event::Frame(frame),
                permit = self.carrier.to_session.reserve(), if !self.outbound.is_empty() => {
                    match permit {
                        Ok(permit) => permit.send(self.outbound.pop_front().expect("not empty")),
                        // The session is gone; it says so on from_session.
                        Err(_) => self.outbound.clear(),
                    }
                    Event::Sent
                }
                _ = tokio::time::sleep_until(next_deadline) => Event::Timer,
            };
            match event {
                Event::Request(Some(request)) => self.arrive(request),
                Event::Request(None) => break,
                Event::Frame(frame) => {
                    self.take(frame);
                    // Batch what the session wrote at once into one answer.
                    while self.ending.is_none() && self.queued_bytes < self.settings.max_queued {
                        match self.carrier.from_session.try_recv() {
                            Ok(frame) => self.take(Some(frame)),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => self.take(None),
                        }
                    }
                }
                Event::Sent | Event::Timer => {}
            }
            self.answer_due(Instant::now());
            if self.finished(Instant::now()) {
                break;
            }
        }
        sessions.remove(&self.settings.sid);
        // Requests that raced with the end get the end too.
        requests.close();
        while let Ok(request) = requests.try_recv() {
            let answer = self.final_answer();
            let _ = request.reply.send(answer);
        }
        tracing::debug!(sid = %self.settings.sid, "BOSH session ended");
    }

    fn next_deadline(&self) -> Instant {
        match self.held.iter().map(|h| h.until).min() {
            Some(until) => until,
            None => self.idle_until,
        }
    }

    /// Done: the session ended and its answers went out (the stream's end is on its way to
    /// the session), or the client stopped coming.
    fn finished(&self, now: Instant) -> bool {
        if self.held.is_empty() && now >= self.idle_until {
            if self.ending.is_none() {
                tracing::debug!(sid = %self.settings.sid, "BOSH session inactive");
            }
            return true;
        }
        self.ending.is_some()
            && self.final_delivered
            && self.held.is_empty()
            && self.outbound.is_empty()
    }

    fn arrive(&mut self, request: Request) {
        if self.ending.is_some() {
            let answer = self.final_answer();
            let _ = request.reply.send(answer);
            return;
        }
        match self.window.arrive(request.body.rid, request) {
            Arrival::Due(due) => {
                for (rid, request) in due {
                    self.process(rid, request);
                }
            }
            Arrival::Early => {}
            Arrival::Resend(answer, request) => {
                let _ = request.reply.send(answer);
            }
            Arrival::Repeat(rid, request) => match self.held.iter_mut().find(|h| h.rid == rid) {
                Some(held) => held.reply = request.reply,
                None => self.end_with(Ending::ItemNotFound, request.reply),
            },
            Arrival::Refused(request) => {
                tracing::debug!(sid = %self.settings.sid, rid = request.body.rid, "BOSH rid outside the window");
                self.end_with(Ending::ItemNotFound, request.reply);
            }
        }
    }

    /// A request whose turn it is: its stanzas go to the session, then it is held.
    fn process(&mut self, rid: u64, request: Request) {
        let Request { body, reply } = request;
        self.outbound.extend(body.payload);
        if body.restart {
            // XEP-0206 §5: a restart stands for a new stream header.
            let header = bridge::open_header(self.to.as_deref(), self.lang.as_deref());
            self.outbound.push_back(header);
        }
        if body.terminate {
            self.outbound.push_back(Bytes::from_static(CLOSE));
            self.ending = Some(Ending::Closed);
            let answer = body::terminate(None, &[]);
            self.window.answered(rid, answer.clone());
            let _ = reply.send(answer);
            self.final_delivered = true;
            return;
        }
        let now = Instant::now();
        self.held.push_back(Held {
            rid,
            reply,
            until: now + self.settings.wait,
        });
        if let Some(pause) = body.pause {
            // XEP-0124 §10: answer everything now; the session waits `pause` instead of
            // `inactivity` for the next request.
            self.pause = Some(Duration::from_secs(pause).min(self.settings.max_pause));
            while !self.held.is_empty() {
                self.answer_oldest(now);
            }
        }
    }

    /// Gives the answers that are due: all of them once the session ended; the oldest
    /// held requests beyond `hold`; the oldest as soon as there is something to say; any
    /// whose `wait` passed.
    fn answer_due(&mut self, now: Instant) {
        if self.ending.is_some() {
            let early = self.window.take_early();
            let replies = self
                .held
                .drain(..)
                .map(|h| h.reply)
                .chain(early.into_iter().map(|(_, r)| r.reply))
                .collect::<Vec<_>>();
            for reply in replies {
                let answer = self.final_answer();
                let _ = reply.send(answer);
            }
            return;
        }
        while self.held.len() > self.settings.hold {
            self.answer_oldest(now);
        }
        if !self.queue.is_empty() && !self.held.is_empty() {
            self.answer_oldest(now);
        }
        while self.held.front().is_some_and(|h| h.until <= now) {
            self.answer_oldest(now);
        }
    }

    fn answer_oldest(&mut self, now: Instant) {
        let Some(held) = self.held.pop_front() else {
            return;
        };
        let elements = std::mem::take(&mut self.queue);
        self.queued_bytes = 0;
        let answer = if self.creation == Some(held.rid) {
            self.creation = None;
            body::response(&self.creation_attributes(), &elements)
        } else {
            body::response(&[], &elements)
        };
        self.window.answered(held.rid, answer.clone());
        // A client gone meanwhile may ask again with the same rid.
        let _ = held.reply.send(answer);
        if self.held.is_empty() {
            let idle = self.pause.take().unwrap_or(self.settings.inactivity);
            self.idle_until = now + idle;
        }
    }

    /// The session creation response's attributes (XEP-0124 §7.1, XEP-0206 §§3, 5).
    fn creation_attributes(&self) -> Vec<(&'static str, String)> {
        let settings = &self.settings;
        let (from, authid) = self.opened.clone().unwrap_or_default();
        vec![
            ("sid", settings.sid.clone()),
            ("wait", settings.wait.as_secs().to_string()),
            ("requests", settings.requests.to_string()),
            ("hold", settings.hold.to_string()),
            ("inactivity", settings.inactivity.as_secs().to_string()),
            ("polling", settings.polling.as_secs().to_string()),
            ("maxpause", settings.max_pause.as_secs().to_string()),
            ("ver", "1.11".to_owned()),
            ("from", from),
            ("authid", authid),
            ("secure", settings.secure.to_string()),
            ("xmlns:xmpp", body::XBOSH.to_owned()),
            ("xmpp:version", "1.0".to_owned()),
            ("xmpp:restartlogic", "true".to_owned()),
            ("xmlns:stream", corvid_proto::ns::STREAM.to_owned()),
        ]
    }

    /// What the session sent, into the queue for the next answer.
    fn take(&mut self, frame: Option<Frame>) {
        match frame {
            Some(Frame::Open(opened)) => {
                if self.opened.is_none() {
                    self.opened = Some((opened.from, opened.id));
                }
            }
            Some(Frame::Element(element)) if element.starts_with(b"<stream:error") => {
                self.ending = Some(Ending::StreamError(element));
            }
            Some(Frame::Element(element)) => {
                self.queued_bytes += element.len();
                self.queue.push(element);
            }
            Some(Frame::Close) | None => {
                if self.ending.is_none() {
                    self.ending = Some(Ending::Closed);
                }
            }
        }
    }

    /// Ends the session in error, answering `reply` (and every other request) with it.
    fn end_with(&mut self, ending: Ending, reply: oneshot::Sender<Bytes>) {
        self.ending = Some(ending);
        self.outbound.clear();
        let answer = self.final_answer();
        let _ = reply.send(answer);
    }

    /// The terminate answer, with what the session said last.
    fn final_answer(&mut self) -> Bytes {
        self.final_delivered = true;
        let elements = std::mem::take(&mut self.queue);
        self.queued_bytes = 0;
        match &self.ending {
            Some(Ending::StreamError(error)) => {
                let mut elements = elements;
                elements.push(error.clone());
                body::terminate(Some("remote-stream-error"), &elements)
            }
            Some(Ending::ItemNotFound) => body::terminate(Some("item-not-found"), &[]),
            Some(Ending::Closed) | None => body::terminate(None, &elements),
        }
    }
}
