//! Incremental framing of an XMPP stream (RFC 6120 §4) into events: the
//! stream header, one complete [`Element`] per stanza, the stream close.
//!
//! Bytes go to rxml as they arrive; nothing is ever buffered beyond the
//! stanza being built. Limits are enforced while parsing: rxml is handed at
//! most one byte more than the current stanza may still grow, so an oversized
//! stanza is rejected at the first byte past the limit, long before its end
//! tag (which may never come) arrives.

use rxml::error::EndOrError;
use rxml::parser::CommentMode;
use rxml::{AttrMap, Event, Parse, Parser, WithOptions};

use crate::attr_name;
use crate::element::Element;
use crate::error::XmlError;
use crate::utf8::Utf8Validator;

/// Resource limits for one incoming stream.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest stanza, counted in raw bytes from its `<` to the end of its
    /// end tag. The stream header is held to the same limit.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting; the stanza element itself is level 1.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 262_144,
            max_depth: 48,
        }
    }
}

/// What the parser found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The start tag of the stream root (RFC 6120 §4.7).
    Open(StreamHeader),
    /// One complete child of the stream root.
    Stanza(Element),
    /// The end tag of the stream root (RFC 6120 §4.4).
    Close,
}

/// The stream root's start tag. The caller checks that it is `stream` in
/// `http://etherx.jabber.org/streams`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// Local name of the root element.
    pub name: String,
    /// Namespace of the root element.
    pub ns: String,
    /// Attributes, named as on [`Element`] (`to`, `xml:lang`, `{uri}name`).
    /// Namespace declarations are not attributes.
    pub attrs: Vec<(String, String)>,
    /// The default namespace the header declares (`xmlns='…'`), i.e. the namespace of an
    /// unprefixed stanza; empty when it declares none.
    pub default_ns: String,
}

impl StreamHeader {
    /// The value of attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    BeforeRoot,
    InRoot,
    Closed,
}

/// Turns the bytes of one XML stream into [`StreamEvent`]s.
///
/// Between stanzas an idle stream can give up its parser entirely
/// ([`release_memory`](Self::release_memory)): what it needs to go on is the
/// stream header, whose namespace declarations and root name the next
/// stanzas and the closing tag depend on. The header's raw bytes are kept,
/// and fed to a fresh parser when data arrives again. An idle connection
/// then holds about 100 bytes here instead of over a kilobyte.
#[derive(Debug)]
pub struct StreamParser {
    limits: Limits,
    /// The stream header as received, once complete.
    header: Option<Box<[u8]>>,
    /// The parser, unless it was released while idle.
    active: Option<Box<Active>>,
    /// The first error; every later call returns it again.
    error: Option<XmlError>,
}

impl StreamParser {
    /// Creates a parser for a new stream.
    pub fn new(limits: Limits) -> Self {
        StreamParser {
            limits,
            header: None,
            active: None,
            error: None,
        }
    }

    /// Parses from `buf`, consuming bytes, until one event is complete
    /// (`Ok(Some)`) or all of `buf` is consumed and more data is needed
    /// (`Ok(None)`).
    ///
    /// It stops right after an event completes, so after an event that
    /// restarts the stream the caller can [`reset`](Self::reset) and go on
    /// with the bytes still in `buf`. After an error the stream is unusable
    /// and every call returns the same error.
    pub fn next_event(&mut self, buf: &mut &[u8]) -> Result<Option<StreamEvent>, XmlError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let mut result = self
            .active()
            .and_then(|active| active.parse_until_event(buf));
        match &mut result {
            Err(error) => self.error = Some(error.clone()),
            Ok(Some(StreamEvent::Open(header))) => {
                let raw = self
                    .active
                    .as_mut()
                    .map(|a| std::mem::take(&mut a.header_bytes).into_boxed_slice());
                header.default_ns = raw
                    .as_deref()
                    .map(|raw| default_namespace(&self.limits, raw))
                    .unwrap_or_default();
                self.header = raw;
            }
            Ok(_) => {}
        }
        result
    }

    /// Call when the transport reached its end: `Ok(())` if the stream was
    /// closed cleanly with nothing but whitespace after it, else an error.
    pub fn finish(&mut self) -> Result<(), XmlError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let result = self.active().and_then(|active| active.check_clean_end());
        if let Err(error) = &result {
            self.error = Some(error.clone());
        }
        result
    }

    /// Starts over for a stream restart (RFC 6120 §4.3.3): the next bytes
    /// are a new stream header, optionally preceded by an XML declaration.
    pub fn reset(&mut self) {
        *self = StreamParser::new(self.limits.clone());
    }

    /// Frees what an idle stream does not need: the whole parser between
    /// stanzas, or at least its temporary buffers.
    pub fn release_memory(&mut self) {
        let Some(active) = &mut self.active else {
            return;
        };
        if self.header.is_some() && active.can_resume_from_header() {
            self.active = None;
            return;
        }
        active.parser.release_temporaries();
        if active.open.is_empty() {
            active.open.shrink_to_fit();
        }
    }

    /// Whether no partial stanza is buffered: nothing begun since the last
    /// event but whitespace.
    pub fn is_idle(&self) -> bool {
        self.active
            .as_ref()
            .is_none_or(|a| a.open.is_empty() && !a.pending_markup)
    }

    /// The parser, rebuilt from the stream header if it was released.
    fn active(&mut self) -> Result<&mut Active, XmlError> {
        let active = match self.active.take() {
            Some(active) => active,
            None => {
                let mut active = Box::new(Active::new(&self.limits));
                if let Some(header) = &self.header {
                    active.resume(header)?;
                }
                active
            }
        };
        Ok(self.active.insert(active))
    }
}

/// The namespace an unprefixed element gets inside the stream header `raw`: rxml does not
/// report namespace declarations, so a fresh parser is shown the header and an empty
/// element, and says which namespace that element is in.
fn default_namespace(limits: &Limits, raw: &[u8]) -> String {
    let mut probe = Active::new(limits);
    if probe.resume(raw).is_err() {
        return String::new();
    }
    match probe.parse_until_event(&mut &b"<a/>"[..]) {
        Ok(Some(StreamEvent::Stanza(element))) => element.ns().to_string(),
        _ => String::new(),
    }
}

/// The parsing state of a stream that is not idle.
#[derive(Debug)]
struct Active {
    limits: Limits,
    parser: Parser,
    phase: Phase,
    /// The open elements of the stanza being built; `open[0]` is the stanza.
    open: Vec<Element>,
    /// Bytes rxml has consumed since the last reset.
    consumed: usize,
    /// Bytes covered by the events rxml has emitted. Events are contiguous,
    /// so `consumed - accounted` is what rxml holds for the next event.
    accounted: usize,
    /// Stream offset of the current stanza's `<` (while `open` is non-empty).
    stanza_start: usize,
    /// Whether the bytes rxml holds for the next event include markup, i.e.
    /// a stanza has begun but its start tag is not complete yet.
    pending_markup: bool,
    /// rxml validates UTF-8 only when a token ends; this rejects an invalid
    /// byte as soon as it arrives.
    utf8: Utf8Validator,
    /// Before the root: every byte so far. Once the root's start tag is
    /// complete: exactly its bytes, until [`StreamParser`] takes them.
    header_bytes: Vec<u8>,
}

impl Active {
    fn new(limits: &Limits) -> Self {
        Active {
            parser: new_rxml_parser(limits),
            limits: limits.clone(),
            phase: Phase::BeforeRoot,
            open: Vec::new(),
            consumed: 0,
            accounted: 0,
            stanza_start: 0,
            pending_markup: false,
            utf8: Utf8Validator::default(),
            header_bytes: Vec::new(),
        }
    }

    /// Whether this state is nothing but "inside the root, between stanzas":
    /// no stanza begun, no partial character, nothing but whitespace held.
    fn can_resume_from_header(&self) -> bool {
        self.phase == Phase::InRoot
            && self.open.is_empty()
            && !self.pending_markup
            && self.utf8.is_clean()
    }

    /// Puts a fresh parser where a released one was: right after the stream
    /// header, by parsing the header again.
    fn resume(&mut self, header: &[u8]) -> Result<(), XmlError> {
        let mut buf = header;
        match self.parse_until_event(&mut buf)? {
            Some(StreamEvent::Open(_)) if buf.is_empty() => {
                self.header_bytes = Vec::new();
                Ok(())
            }
            _ => Err(XmlError::NotWellFormed(
                "the stream header could not be parsed again".into(),
            )),
        }
    }

    fn parse_until_event(&mut self, buf: &mut &[u8]) -> Result<Option<StreamEvent>, XmlError> {
        loop {
            let window_len = buf.len().min(self.remaining_budget().saturating_add(1));
            let mut window = &buf[..window_len];
            let result = self.parser.parse(&mut window, false);
            let (taken, rest) = buf.split_at(window_len - window.len());
            *buf = rest;
            self.consumed += taken.len();
            if self.phase == Phase::BeforeRoot {
                self.header_bytes.extend_from_slice(taken);
            }
            let event = match result {
                Ok(event) => event,
                Err(EndOrError::NeedMoreData) => None,
                Err(EndOrError::Error(error)) => {
                    return Err(XmlError::from_rxml(error, self.limits.max_stanza_bytes));
                }
            };
            if let Err(byte) = self.utf8.check(taken) {
                return Err(XmlError::NotWellFormed(format!(
                    "invalid UTF-8 byte 0x{byte:02x}"
                )));
            }
            let Some(event) = event else {
                self.note_pending_bytes(taken);
                self.check_size(self.size_start())?;
                if buf.is_empty() {
                    return Ok(None);
                }
                if taken.is_empty() {
                    // rxml wants more data yet took none of what it was
                    // given; never seen, but it must not spin forever.
                    return Err(XmlError::NotWellFormed(
                        "the parser made no progress".into(),
                    ));
                }
                continue;
            };
            let start = self.accounted;
            self.accounted += event.metrics().len();
            // Measured before `handle`, which pops a finished stanza: inside
            // a stanza its bytes run from `stanza_start`, at the top level a
            // start tag begins a new stanza (or the header) at `start`, and
            // anything else leaves only what rxml holds beyond the event.
            let size_from = if !self.open.is_empty() {
                self.stanza_start
            } else if matches!(event, Event::StartElement(..)) {
                start
            } else {
                self.accounted
            };
            self.check_size(size_from)?;
            let found = self.handle(event, start)?;
            self.note_pending_bytes(taken);
            if found.is_some() {
                return Ok(found);
            }
            // rxml may hold further events (the end of `<x/>`) even when
            // `buf` is empty, so ask again until it needs more data.
        }
    }

    /// Applies one rxml event; returns the stream event it completes.
    fn handle(&mut self, event: Event, start: usize) -> Result<Option<StreamEvent>, XmlError> {
        match event {
            Event::XmlDeclaration(..) => Ok(None),
            Event::StartElement(_, (ns, name), attrs) => {
                if self.phase == Phase::BeforeRoot {
                    self.phase = Phase::InRoot;
                    // Keep exactly the start tag: `header_bytes` holds the stream from
                    // offset 0, and the tag is this event's bytes.
                    let end = self.accounted.min(self.header_bytes.len());
                    self.header_bytes.truncate(end);
                    // The event may begin with the whitespace after an XML declaration,
                    // which must not begin a document.
                    let tag = self.header_bytes[start.min(end)..]
                        .iter()
                        .position(|&b| b == b'<')
                        .map_or(end, |i| start.min(end) + i);
                    self.header_bytes.drain(..tag);
                    return Ok(Some(StreamEvent::Open(StreamHeader {
                        name: name.into(),
                        ns: ns.into(),
                        attrs: convert_attrs(attrs).collect(),
                        default_ns: String::new(),
                    })));
                }
                if self.open.len() >= self.limits.max_depth {
                    return Err(XmlError::TooDeep {
                        limit: self.limits.max_depth,
                    });
                }
                if self.open.is_empty() {
                    self.stanza_start = start;
                }
                let mut element = Element::new(name, ns);
                for (name, value) in convert_attrs(attrs) {
                    element.push_attr_unchecked(name, value);
                }
                self.open.push(element);
                Ok(None)
            }
            Event::EndElement(_) => match self.open.pop() {
                None => {
                    self.phase = Phase::Closed;
                    Ok(Some(StreamEvent::Close))
                }
                Some(element) => match self.open.last_mut() {
                    Some(parent) => {
                        parent.append_child(element);
                        Ok(None)
                    }
                    None => Ok(Some(StreamEvent::Stanza(element))),
                },
            },
            Event::Text(_, text) => match self.open.last_mut() {
                Some(element) => {
                    element.append_text(text);
                    Ok(None)
                }
                // RFC 6120 §4.6.1: whitespace between stanzas is a keepalive.
                None if text.bytes().all(is_xml_whitespace) => Ok(None),
                None => Err(XmlError::TextOutsideStanza),
            },
        }
    }

    /// Where the bytes being parsed began: the open stanza's `<`, or the
    /// end of the last event (rxml may hold whitespace or a start tag).
    fn size_start(&self) -> usize {
        if self.open.is_empty() {
            self.accounted
        } else {
            self.stanza_start
        }
    }

    fn remaining_budget(&self) -> usize {
        let size = self.consumed.saturating_sub(self.size_start());
        self.limits.max_stanza_bytes.saturating_sub(size)
    }

    fn check_size(&self, from: usize) -> Result<(), XmlError> {
        if self.consumed.saturating_sub(from) > self.limits.max_stanza_bytes {
            return Err(XmlError::StanzaTooBig {
                limit: self.limits.max_stanza_bytes,
            });
        }
        Ok(())
    }

    /// Tracks whether the bytes rxml holds for its next event (the last
    /// `consumed - accounted` bytes of the stream) contain markup.
    fn note_pending_bytes(&mut self, taken: &[u8]) {
        if !self.open.is_empty() {
            return;
        }
        let pending = self.consumed.saturating_sub(self.accounted);
        self.pending_markup = match taken.len().checked_sub(pending) {
            Some(from) => has_markup(&taken[from..]),
            None => self.pending_markup || has_markup(taken),
        };
    }

    fn check_clean_end(&mut self) -> Result<(), XmlError> {
        if self.phase != Phase::Closed {
            return Err(XmlError::NotWellFormed(
                "the stream ended before it was closed".into(),
            ));
        }
        // Anything rxml still holds after the root's end tag must be
        // whitespace; at EOF it says so.
        match self.parser.parse(&mut &[][..], true) {
            Ok(None) => Ok(()),
            Ok(Some(_)) | Err(EndOrError::NeedMoreData) => Err(XmlError::NotWellFormed(
                "data after the end of the stream".into(),
            )),
            Err(EndOrError::Error(error)) => {
                Err(XmlError::from_rxml(error, self.limits.max_stanza_bytes))
            }
        }
    }
}

/// rxml reserves a buffer of the token limit per parser, so it is kept well below the
/// stanza limit: longer text arrives as several text events (joined again in the tree), and
/// only a single name or attribute value longer than this is refused.
const MAX_TOKEN_BYTES: usize = 32 * 1024;

fn new_rxml_parser(limits: &Limits) -> Parser {
    // The token limit keeps rxml from buffering one name or attribute value
    // larger than a stanza may be. Four bytes is the floor so a single UTF-8
    // character always fits; no stanza fits such a limit anyway.
    Parser::with_options(rxml::Options {
        max_token_length: limits.max_stanza_bytes.clamp(4, MAX_TOKEN_BYTES),
        // RFC 6120 §11.1: comments are restricted XML.
        comments: CommentMode::Reject,
        ..rxml::Options::default()
    })
}

/// Converts rxml's attributes to [`Element`]'s naming.
fn convert_attrs(attrs: AttrMap) -> impl Iterator<Item = (String, String)> {
    attrs
        .into_iter()
        .map(|((ns, local), value)| (attr_name::join(&ns, local.into()), value))
}

/// XML 1.0 §2.3 `S`.
fn is_xml_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn has_markup(bytes: &[u8]) -> bool {
    !bytes.iter().all(|&b| is_xml_whitespace(b))
}

#[cfg(test)]
mod tests;
