//! What nodes say to each other over Redis, and the values of the registry: a tag byte,
//! then fields, each a fixed-width integer or a length-prefixed byte string. Every node of
//! a cluster runs the same build during normal operation; a rolling upgrade that changes
//! this format must add tags, not change existing ones.
//!
//! Nothing here trusts its input: a frame that does not decode is dropped with a warning
//! (only the cluster's own nodes can publish to its channels, but a Redis shared with
//! something else, or a bug, must not bring a node down).

use bytes::Bytes;

use crate::sessions::{SharedState, StanzaClass};

/// A frame for one node (its channel).
#[derive(Debug, PartialEq)]
pub enum ToNode {
    /// A stanza for a session bound on that node; `sent` numbers it for acknowledgement
    /// (`acks.rs`).
    Deliver {
        to: String,
        class: StanzaClass,
        stanza: Bytes,
        sent: Option<Sent>,
    },
    /// The node `from` is done with the stanzas up to `upto` this node's life
    /// `incarnation` sent it.
    Ack {
        from: String,
        incarnation: u64,
        upto: u64,
    },
    /// A client of `reply_to` resumes (XEP-0198) the session `id` of `owner`, which this
    /// node holds (or held: it says where it went).
    ResumeAsk {
        ticket: u64,
        reply_to: String,
        id: String,
        owner: String,
    },
    /// The answer to a `ResumeAsk`: the session, moved out of the node that answers.
    ResumeGive { ticket: u64, moved: Option<Moved> },
    /// Close one of its sessions; `conflict` means it was bound again elsewhere.
    Close {
        to: String,
        condition: String,
        text: String,
    },
    /// A stanza to route on that node: for something it runs (a room), or an answer to a
    /// request it sent (`iq_tracker`).
    Route { stanza: Bytes },
}

/// Who sent a stanza and its number: the sending node, its life, the stanza's number
/// among those it published to the receiving node.
#[derive(Debug, PartialEq)]
pub struct Sent {
    pub node: String,
    pub incarnation: u64,
    pub seq: u64,
}

/// A resumable session (XEP-0198) moving to the node its client resumes it on: its
/// stream management counters, what its client has not acknowledged, what was queued for
/// it, and its state as a resource.
#[derive(Debug, PartialEq)]
pub struct Moved {
    pub jid: String,
    pub handled: u32,
    pub sent: u32,
    pub timeout_secs: u64,
    pub state: SharedState,
    /// Where it sent directed presence (RFC 6121 §4.6).
    pub directed: Vec<String>,
    pub unacked: Vec<Bytes>,
    pub queued: Vec<(StanzaClass, Bytes)>,
}

/// A frame for every node (the cluster's broadcast channel).
#[derive(Debug, PartialEq)]
pub enum ToAll {
    /// A node's session was bound or changed (`Some`), or ended (`None`).
    Session {
        node: String,
        seq: u64,
        jid: String,
        state: Option<SharedState>,
    },
    /// A node left the cluster (it died, or stopped); its sessions are gone.
    NodeDown { node: String, incarnation: u64 },
    /// Data another node wrote that caches here must see.
    Changed {
        node: String,
        change: corvid_store::StoreChange,
    },
}

const DELIVER: u8 = b'D';
const DELIVER_NUMBERED: u8 = b'E';
const ACK: u8 = b'A';
const RESUME_ASK: u8 = b'Q';
const RESUME_GIVE: u8 = b'G';
const CLOSE: u8 = b'C';
const ROUTE: u8 = b'R';
const SESSION: u8 = b'S';
const NODE_DOWN: u8 = b'N';
const CHANGED: u8 = b'X';

impl ToNode {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            ToNode::Deliver {
                to,
                class,
                stanza,
                sent,
            } => {
                w.u8(if sent.is_some() {
                    DELIVER_NUMBERED
                } else {
                    DELIVER
                });
                w.str(to);
                w.u8(class_code(*class));
                w.bytes(stanza);
                if let Some(sent) = sent {
                    w.str(&sent.node);
                    w.u64(sent.incarnation);
                    w.u64(sent.seq);
                }
            }
            ToNode::Ack {
                from,
                incarnation,
                upto,
            } => {
                w.u8(ACK);
                w.str(from);
                w.u64(*incarnation);
                w.u64(*upto);
            }
            ToNode::ResumeAsk {
                ticket,
                reply_to,
                id,
                owner,
            } => {
                w.u8(RESUME_ASK);
                w.u64(*ticket);
                w.str(reply_to);
                w.str(id);
                w.str(owner);
            }
            ToNode::ResumeGive { ticket, moved } => {
                w.u8(RESUME_GIVE);
                w.u64(*ticket);
                match moved {
                    None => w.u8(0),
                    Some(moved) => {
                        w.u8(1);
                        write_moved(&mut w, moved);
                    }
                }
            }
            ToNode::Close {
                to,
                condition,
                text,
            } => {
                w.u8(CLOSE);
                w.str(to);
                w.str(condition);
                w.str(text);
            }
            ToNode::Route { stanza } => {
                w.u8(ROUTE);
                w.bytes(stanza);
            }
        }
        w.0
    }

    pub fn decode(frame: &[u8]) -> Option<ToNode> {
        let mut r = Reader(frame);
        let frame = match r.u8()? {
            tag @ (DELIVER | DELIVER_NUMBERED) => ToNode::Deliver {
                to: r.string()?,
                class: class_of(r.u8()?)?,
                stanza: Bytes::copy_from_slice(r.bytes()?),
                sent: if tag == DELIVER_NUMBERED {
                    Some(Sent {
                        node: r.string()?,
                        incarnation: r.u64()?,
                        seq: r.u64()?,
                    })
                } else {
                    None
                },
            },
            ACK => ToNode::Ack {
                from: r.string()?,
                incarnation: r.u64()?,
                upto: r.u64()?,
            },
            RESUME_ASK => ToNode::ResumeAsk {
                ticket: r.u64()?,
                reply_to: r.string()?,
                id: r.string()?,
                owner: r.string()?,
            },
            RESUME_GIVE => ToNode::ResumeGive {
                ticket: r.u64()?,
                moved: match r.u8()? {
                    0 => None,
                    1 => Some(read_moved(&mut r)?),
                    _ => return None,
                },
            },
            CLOSE => ToNode::Close {
                to: r.string()?,
                condition: r.string()?,
                text: r.string()?,
            },
            ROUTE => ToNode::Route {
                stanza: Bytes::copy_from_slice(r.bytes()?),
            },
            _ => return None,
        };
        r.end(frame)
    }
}

impl ToAll {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            ToAll::Session {
                node,
                seq,
                jid,
                state,
            } => {
                w.u8(SESSION);
                w.str(node);
                w.str(jid);
                w.0.extend_from_slice(&registry_value(*seq, state.as_ref()));
            }
            ToAll::NodeDown { node, incarnation } => {
                w.u8(NODE_DOWN);
                w.str(node);
                w.u64(*incarnation);
            }
            ToAll::Changed { node, change } => {
                w.u8(CHANGED);
                w.str(node);
                let (kind, username, domain) = match change {
                    corvid_store::StoreChange::Roster { username, domain } => (0, username, domain),
                    corvid_store::StoreChange::Offline { username, domain } => {
                        (1, username, domain)
                    }
                    corvid_store::StoreChange::Photo { username, domain } => (2, username, domain),
                    corvid_store::StoreChange::Blocklist { username, domain } => {
                        (3, username, domain)
                    }
                    corvid_store::StoreChange::PubSub { service } => (4, service, &String::new()),
                };
                w.u8(kind);
                w.str(username);
                w.str(domain);
            }
        }
        w.0
    }

    pub fn decode(frame: &[u8]) -> Option<ToAll> {
        let mut r = Reader(frame);
        match r.u8()? {
            SESSION => {
                let node = r.string()?;
                let jid = r.string()?;
                let (seq, state) = read_registry_value(&mut r)?;
                r.end(ToAll::Session {
                    node,
                    seq,
                    jid,
                    state,
                })
            }
            NODE_DOWN => {
                let frame = ToAll::NodeDown {
                    node: r.string()?,
                    incarnation: r.u64()?,
                };
                r.end(frame)
            }
            CHANGED => {
                let node = r.string()?;
                let kind = r.u8()?;
                let username = r.string()?;
                let domain = r.string()?;
                let change = match kind {
                    0 => corvid_store::StoreChange::Roster { username, domain },
                    1 => corvid_store::StoreChange::Offline { username, domain },
                    2 => corvid_store::StoreChange::Photo { username, domain },
                    3 => corvid_store::StoreChange::Blocklist { username, domain },
                    4 if domain.is_empty() => {
                        corvid_store::StoreChange::PubSub { service: username }
                    }
                    _ => return None,
                };
                r.end(ToAll::Changed { node, change })
            }
            _ => None,
        }
    }
}

/// A session's value in its node's registry hash: the announcement's number, then the
/// state (absent: ended, only ever in a broadcast).
pub fn registry_value(seq: u64, state: Option<&SharedState>) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(seq);
    match state {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            w.u64(s.id);
            w.u64(s.since_ms);
            let flags = u8::from(s.available)
                | u8::from(s.carbons) << 1
                | u8::from(s.interested) << 2
                | u8::from(s.blocklist) << 3
                | u8::from(s.presence.is_some()) << 4;
            w.u8(flags);
            w.u8(s.priority as u8);
            if let Some(presence) = &s.presence {
                w.bytes(presence);
            }
        }
    }
    w.0
}

fn write_moved(w: &mut Writer, moved: &Moved) {
    w.str(&moved.jid);
    w.u64(u64::from(moved.handled));
    w.u64(u64::from(moved.sent));
    w.u64(moved.timeout_secs);
    w.bytes(&registry_value(0, Some(&moved.state)));
    w.u64(moved.directed.len() as u64);
    for jid in &moved.directed {
        w.str(jid);
    }
    w.u64(moved.unacked.len() as u64);
    for stanza in &moved.unacked {
        w.bytes(stanza);
    }
    w.u64(moved.queued.len() as u64);
    for (class, stanza) in &moved.queued {
        w.u8(class_code(*class));
        w.bytes(stanza);
    }
}

fn read_moved(r: &mut Reader<'_>) -> Option<Moved> {
    let jid = r.string()?;
    let handled = u32::try_from(r.u64()?).ok()?;
    let sent = u32::try_from(r.u64()?).ok()?;
    let timeout_secs = r.u64()?;
    let (_, state) = decode_registry_value(r.bytes()?)?;
    let mut directed = Vec::new();
    for _ in 0..r.count()? {
        directed.push(r.string()?);
    }
    let mut unacked = Vec::new();
    for _ in 0..r.count()? {
        unacked.push(Bytes::copy_from_slice(r.bytes()?));
    }
    let mut queued = Vec::new();
    for _ in 0..r.count()? {
        let class = class_of(r.u8()?)?;
        queued.push((class, Bytes::copy_from_slice(r.bytes()?)));
    }
    Some(Moved {
        jid,
        handled,
        sent,
        timeout_secs,
        state: state?,
        directed,
        unacked,
        queued,
    })
}

/// Decodes what [`registry_value`] made.
pub fn decode_registry_value(value: &[u8]) -> Option<(u64, Option<SharedState>)> {
    let mut r = Reader(value);
    let decoded = read_registry_value(&mut r)?;
    r.end(decoded)
}

fn read_registry_value(r: &mut Reader<'_>) -> Option<(u64, Option<SharedState>)> {
    let seq = r.u64()?;
    if r.u8()? == 0 {
        return Some((seq, None));
    }
    let id = r.u64()?;
    let since_ms = r.u64()?;
    let flags = r.u8()?;
    let priority = r.u8()? as i8;
    let presence = if flags & 1 << 4 != 0 {
        Some(Bytes::copy_from_slice(r.bytes()?))
    } else {
        None
    };
    Some((
        seq,
        Some(SharedState {
            id,
            since_ms,
            available: flags & 1 != 0,
            carbons: flags & 1 << 1 != 0,
            interested: flags & 1 << 2 != 0,
            blocklist: flags & 1 << 3 != 0,
            priority,
            presence,
        }),
    ))
}

fn class_code(class: StanzaClass) -> u8 {
    match class {
        StanzaClass::Presence => 0,
        StanzaClass::Message { body: false } => 1,
        StanzaClass::Message { body: true } => 2,
        StanzaClass::Iq => 3,
        StanzaClass::ChatState => 4,
        StanzaClass::Other => 5,
    }
}

fn class_of(code: u8) -> Option<StanzaClass> {
    Some(match code {
        0 => StanzaClass::Presence,
        1 => StanzaClass::Message { body: false },
        2 => StanzaClass::Message { body: true },
        3 => StanzaClass::Iq,
        4 => StanzaClass::ChatState,
        5 => StanzaClass::Other,
        _ => return None,
    })
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn bytes(&mut self, v: &[u8]) {
        // Stanzas are bounded by the stream limits, far below 4 GiB.
        self.0.extend_from_slice(&(v.len() as u32).to_be_bytes());
        self.0.extend_from_slice(v);
    }

    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(len)
    }

    /// A number of items to read, each at least a byte: more than the bytes left is a
    /// damaged frame (and no allocation is made for it).
    fn count(&mut self) -> Option<u64> {
        let n = self.u64()?;
        (n <= self.0.len() as u64).then_some(n)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    /// The decoded value, if nothing is left over.
    fn end<T>(self, value: T) -> Option<T> {
        self.0.is_empty().then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SharedState {
        SharedState {
            id: 42,
            since_ms: 1_700_000_000_000,
            available: true,
            priority: -3,
            carbons: true,
            interested: false,
            blocklist: true,
            presence: Some(Bytes::from_static(
                b"<presence><show>away</show></presence>",
            )),
        }
    }

    #[test]
    fn frames_round_trip() {
        let frames = [
            ToNode::Deliver {
                to: "a@x/r".into(),
                class: StanzaClass::Message { body: true },
                stanza: Bytes::from_static(b"<message/>"),
                sent: None,
            },
            ToNode::Deliver {
                to: "a@x/r".into(),
                class: StanzaClass::ChatState,
                stanza: Bytes::from_static(b"<message/>"),
                sent: Some(Sent {
                    node: "n1".into(),
                    incarnation: 9,
                    seq: u64::MAX,
                }),
            },
            ToNode::Ack {
                from: "n2".into(),
                incarnation: 9,
                upto: 77,
            },
            ToNode::Close {
                to: "a@x/r".into(),
                condition: "conflict".into(),
                text: "Replaced".into(),
            },
            ToNode::ResumeAsk {
                ticket: 3,
                reply_to: "n2".into(),
                id: "n1:abc".into(),
                owner: "a@x".into(),
            },
            ToNode::ResumeGive {
                ticket: 3,
                moved: None,
            },
            ToNode::ResumeGive {
                ticket: 4,
                moved: Some(Moved {
                    jid: "a@x/r".into(),
                    handled: u32::MAX,
                    sent: 7,
                    timeout_secs: 300,
                    state: state(),
                    directed: vec!["b@y".into(), "room@muc.x/nick".into()],
                    unacked: vec![Bytes::from_static(b"<message/>")],
                    queued: vec![(StanzaClass::Presence, Bytes::from_static(b"<presence/>"))],
                }),
            },
            ToNode::Route {
                stanza: Bytes::from_static(b"<presence/>"),
            },
        ];
        for frame in frames {
            assert_eq!(ToNode::decode(&frame.encode()), Some(frame));
        }
        let frames = [
            ToAll::Session {
                node: "n1".into(),
                seq: 7,
                jid: "a@x/r".into(),
                state: Some(state()),
            },
            ToAll::Session {
                node: "n1".into(),
                seq: 8,
                jid: "a@x/r".into(),
                state: Some(SharedState::default()),
            },
            ToAll::Session {
                node: "n1".into(),
                seq: 9,
                jid: "a@x/r".into(),
                state: None,
            },
            ToAll::NodeDown {
                node: "n2".into(),
                incarnation: u64::MAX,
            },
            ToAll::Changed {
                node: "n2".into(),
                change: corvid_store::StoreChange::Offline {
                    username: "a".into(),
                    domain: "x".into(),
                },
            },
        ];
        for frame in frames {
            assert_eq!(ToAll::decode(&frame.encode()), Some(frame));
        }
    }

    #[test]
    fn damaged_frames_are_refused() {
        let good = ToAll::Session {
            node: "n1".into(),
            seq: 7,
            jid: "a@x/r".into(),
            state: Some(state()),
        }
        .encode();
        for len in 0..good.len() {
            assert_eq!(ToAll::decode(&good[..len]), None, "cut at {len}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(ToAll::decode(&longer), None);
        assert_eq!(ToNode::decode(b"Z"), None);
        assert_eq!(ToNode::decode(&[DELIVER, 0, 0, 0, 9]), None);
        let mut huge_len = vec![ROUTE];
        huge_len.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(ToNode::decode(&huge_len), None);
    }
}
