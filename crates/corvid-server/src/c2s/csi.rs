//! Client state indication (XEP-0352, `urn:xmpp:csi:0`): a client that says it is
//! `<inactive/>` (a phone in a pocket) is spared what it does not need at once, so its
//! radio can sleep.
//!
//! While inactive, the session's writer holds back presence (only the latest of each
//! contact's full JID is kept: earlier ones are superseded) and chat-state notifications
//! (the latest per sender). Everything else — messages with a body, receipts and other
//! message payloads, IQs (calls are set up with those) — is written at once, after what
//! was held, so the order the client sees is the order things happened in. `<active/>`
//! writes everything held. The hold is bounded: past [`MAX_HELD_BYTES`] it is written out.
//!
//! The hold lives in the session task, which alone decides what reaches its socket; with
//! stream management (XEP-0198) a held stanza is counted when it is written, and moves to
//! the unacknowledged ones if the connection drops.

use bytes::Bytes;
use corvid_proto::{StreamError, StreamErrorCondition as Cond};
use corvid_xml::Element;

use super::session::{End, Session};
use crate::sessions::{Queued, StanzaClass};

/// Bytes held for an inactive client at most; more and everything held is written.
const MAX_HELD_BYTES: usize = 256 * 1024;

/// What is held for an inactive client, oldest first.
#[derive(Default)]
pub(super) struct Held {
    items: Vec<(Key, Bytes)>,
    bytes: usize,
}

/// What makes a held stanza superseded by a newer one.
#[derive(PartialEq, Eq)]
enum Key {
    Presence(Box<[u8]>),
    ChatState(Box<[u8]>),
}

impl Held {
    /// Holds `stanza` if an inactive client can do without it for now; `false` if it must
    /// be written at once.
    fn hold(&mut self, stanza: &Queued) -> bool {
        let from = || Box::<[u8]>::from(attr(&stanza.bytes, b"from").unwrap_or_default());
        let key = match stanza.class {
            StanzaClass::Presence => Key::Presence(from()),
            StanzaClass::ChatState => Key::ChatState(from()),
            _ => return false,
        };
        if let Some(i) = self.items.iter().position(|(k, _)| *k == key) {
            let (_, old) = self.items.remove(i);
            self.bytes -= old.len();
        }
        self.bytes += stanza.bytes.len();
        self.items.push((key, stanza.bytes.clone()));
        true
    }

    fn take(&mut self) -> Vec<Bytes> {
        self.bytes = 0;
        std::mem::take(&mut self.items)
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }
}

impl Session {
    /// `<active/>` or `<inactive/>` from the client.
    pub(super) async fn on_csi(&mut self, el: &Element) -> Result<(), End> {
        match el.name() {
            "inactive" => {
                self.csi.get_or_insert_default();
                Ok(())
            }
            "active" => match self.csi.take() {
                Some(mut held) => self.write_stanzas(held.take()).await,
                None => Ok(()),
            },
            _ => Err(self
                .fail(StreamError::with_text(
                    Cond::UnsupportedStanzaType,
                    "Unknown client state",
                ))
                .await),
        }
    }

    /// Whether the writer holds `stanza` back (the client is inactive and can wait for it).
    pub(super) fn csi_holds(&mut self, stanza: &Queued) -> bool {
        self.csi.as_mut().is_some_and(|held| held.hold(stanza))
    }

    /// Everything held, oldest first: all of it before what must go now, or when the hold
    /// grew too large (`all == false`).
    pub(super) fn take_held(&mut self, all: bool) -> Vec<Bytes> {
        match &mut self.csi {
            Some(held) if all || held.bytes > MAX_HELD_BYTES => held.take(),
            _ => Vec::new(),
        }
    }
}

/// The value of attribute `name` in the start tag of a stanza we serialized (our
/// serializer always quotes with `'` and escapes it inside values).
fn attr<'a>(stanza: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let end = stanza.iter().position(|&b| b == b'>')?;
    let tag = &stanza[..end];
    let mut pattern = Vec::with_capacity(name.len() + 3);
    pattern.push(b' ');
    pattern.extend_from_slice(name);
    pattern.extend_from_slice(b"='");
    let start = tag.windows(pattern.len()).position(|w| w == pattern)? + pattern.len();
    let len = tag[start..].iter().position(|&b| b == b'\'')?;
    Some(&tag[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use corvid_proto::ns;

    fn queued(el: &Element) -> Queued {
        Queued::of(el)
    }

    fn presence(from: &str, status: &str) -> Queued {
        queued(
            &Element::new("presence", ns::CLIENT)
                .with_attr("from", from)
                .with_child(Element::new("status", ns::CLIENT).with_text(status)),
        )
    }

    #[test]
    fn presence_and_chat_states_are_held_and_superseded_per_sender() {
        let mut held = Held::default();
        assert!(held.hold(&presence("a@x/1", "one")));
        assert!(held.hold(&presence("b@x/1", "b")));
        assert!(held.hold(&presence("a@x/1", "two")));
        let typing = Element::new("message", ns::CLIENT)
            .with_attr("from", "a@x/1")
            .with_child(Element::new("composing", ns::CHATSTATES));
        assert!(held.hold(&queued(&typing)));
        let chat = Element::new("message", ns::CLIENT)
            .with_attr("from", "a@x/1")
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
        assert!(!held.hold(&queued(&chat)), "a body goes at once");
        let iq = Element::new("iq", ns::CLIENT).with_attr("type", "set");
        assert!(!held.hold(&queued(&iq)));
        let out: Vec<String> = held
            .take()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert_eq!(out.len(), 3);
        assert!(out[0].contains("from='b@x/1'"));
        assert!(out[1].contains("two"), "only the latest of a@x/1: {out:?}");
        assert!(out[2].contains("composing"));
        assert_eq!(held.bytes, 0);
    }

    #[test]
    fn attributes_are_read_from_the_start_tag_only() {
        let bytes = b"<presence to='me@x' from='a@x/r&apos;s'><x from='no'/></presence>";
        assert_eq!(attr(bytes, b"from"), Some(&b"a@x/r&apos;s"[..]));
        assert_eq!(attr(b"<presence><x from='no'/></presence>", b"from"), None);
    }
}
