//! Stream management on the client's side (XEP-0198): counting what each side handled,
//! keeping what the server has not acknowledged, and what a resumption needs.
//!
//! The stream task owns one [`Sm`] per stream-management session: it survives a lost
//! connection so that a resumption can tell the server how many stanzas we had, and resend
//! exactly those the server did not have.

use std::collections::VecDeque;

use bytes::Bytes;

#[derive(Debug, Default)]
pub(crate) struct Sm {
    /// The id the server gave for resuming (`<enabled resume='true' id='…'/>`).
    pub id: Option<String>,
    /// `<enabled/>` has come: the server counts, so do we.
    pub enabled: bool,
    /// Stanzas handled from the server (our `h`).
    pub inbound: u32,
    /// Our stanzas the server acknowledged (its last `h`).
    acked: u32,
    /// Our stanzas sent since `<enable/>` and not yet acknowledged, oldest first.
    unacked: VecDeque<Bytes>,
    /// An `<r/>` is out and its `<a/>` has not come.
    pub asked: bool,
}

impl Sm {
    /// A stanza we sent (counted from `<enable/>` on, RFC XEP-0198 §4).
    pub fn sent(&mut self, stanza: Bytes) {
        self.unacked.push_back(stanza);
    }

    /// A stanza the server sent.
    pub fn received(&mut self) {
        if self.enabled {
            self.inbound = self.inbound.wrapping_add(1);
        }
    }

    /// The server had `h` of our stanzas: those are forgotten. An `h` that acknowledges
    /// more than was sent is an error (XEP-0198 §4: `undefined-condition`), reported as
    /// `Err` with the count we had.
    pub fn acknowledged(&mut self, h: u32) -> Result<(), usize> {
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return Err(self.unacked.len());
        }
        self.unacked.drain(..newly);
        self.acked = h;
        self.asked = false;
        Ok(())
    }

    /// Whether to ask for an acknowledgement now: something is unacknowledged and no
    /// request is out (so at most one `<r/>` per round trip).
    pub fn should_ask(&self) -> bool {
        !self.asked && !self.unacked.is_empty()
    }

    /// What the server has not acknowledged, oldest first.
    pub fn unacked(&self) -> impl Iterator<Item = &Bytes> {
        self.unacked.iter()
    }

    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// Ends the session: what was never acknowledged, for sending again on a new stream.
    pub fn into_unacked(self) -> Vec<Bytes> {
        self.unacked.into()
    }

    /// Whether the server let this session be resumed.
    pub fn resumable(&self) -> bool {
        self.enabled && self.id.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm_with(n: usize) -> Sm {
        let mut sm = Sm {
            enabled: true,
            ..Sm::default()
        };
        for i in 0..n {
            sm.sent(Bytes::from(format!("<message id='{i}'/>")));
        }
        sm
    }

    #[test]
    fn acknowledgements_forget_what_the_server_had() {
        let mut sm = sm_with(5);
        sm.acknowledged(2).unwrap();
        assert_eq!(sm.unacked_len(), 3);
        assert_eq!(sm.unacked().next().unwrap(), "<message id='2'/>");
        // The same h again changes nothing.
        sm.acknowledged(2).unwrap();
        assert_eq!(sm.unacked_len(), 3);
        sm.acknowledged(5).unwrap();
        assert_eq!(sm.unacked_len(), 0);
    }

    #[test]
    fn an_h_beyond_what_was_sent_is_refused() {
        let mut sm = sm_with(2);
        assert_eq!(sm.acknowledged(3), Err(2));
        assert_eq!(sm.unacked_len(), 2);
    }

    #[test]
    fn counts_wrap_around() {
        let mut sm = sm_with(0);
        sm.acked = u32::MAX - 1;
        for i in 0..4 {
            sm.sent(Bytes::from(format!("{i}")));
        }
        sm.acknowledged(1).unwrap(); // MAX-1 → 1 is three stanzas
        assert_eq!(sm.unacked_len(), 1);
        sm.inbound = u32::MAX;
        sm.received();
        assert_eq!(sm.inbound, 0);
    }

    #[test]
    fn inbound_counts_only_once_enabled() {
        let mut sm = Sm::default();
        sm.received();
        assert_eq!(sm.inbound, 0);
        sm.enabled = true;
        sm.received();
        assert_eq!(sm.inbound, 1);
    }
}
