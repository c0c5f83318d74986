//! Node-to-node delivery acknowledgements: a stanza one node publishes for a session on
//! another stays in the sender's memory until the receiving node says it is done with it,
//! so that it is not lost if that node dies with it in flight (in Redis's buffer to it, in
//! its channel task, or in a session's queue).
//!
//! - **Sender** ([`Unacked`]): numbers what it publishes to each node, in publishing order,
//!   and keeps a copy; an [`Ack`](super::wire::ToNode::Ack) from that node drops the copies
//!   up to a number. When the node dies (or its channel has no subscriber any more), the
//!   copies left are handled here as undeliverable to their sessions: other resources, or
//!   offline storage.
//! - **Receiver** ([`Inbound`]): hands each stanza on with a [`Receipt`], which travels in
//!   its [`Queued`] and is dropped once the stanza is written to its session's socket, or
//!   stored offline, or otherwise settled. Stanzas are settled out of order (sessions write
//!   at their own pace); a node acknowledges the longest prefix settled, a few milliseconds
//!   after it grows.
//!
//! Delivery across a node's death is thereby at least once: what the dead node wrote in its
//! last moments, before its acknowledgement went out, is delivered again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corvid_proto::FullJid;
use tokio::sync::Notify;

use super::{Cluster, lock, wire};
use crate::sessions::{NodeName, Queued};

/// How long settled stanzas wait to be acknowledged together.
const ACK_DELAY: Duration = Duration::from_millis(5);

/// What this node published to other nodes and they have not acknowledged yet.
#[derive(Default)]
pub(super) struct Unacked {
    nodes: Mutex<HashMap<NodeName, Sent>>,
}

#[derive(Default)]
struct Sent {
    /// The number of the last stanza published to the node.
    last: u64,
    /// The highest number the node acknowledged (an ack can overtake the publisher).
    acked: u64,
    copies: VecDeque<(u64, FullJid, Queued)>,
}

impl Unacked {
    /// Numbers a stanza for `node` and keeps a copy until it is acknowledged; at most
    /// `limit` copies are kept per node (the oldest are given up beyond it).
    pub(super) fn record(
        &self,
        node: &NodeName,
        to: &FullJid,
        stanza: &Queued,
        limit: usize,
    ) -> u64 {
        let mut nodes = lock(&self.nodes);
        let sent = nodes.entry(node.clone()).or_default();
        sent.last += 1;
        let seq = sent.last;
        if seq > sent.acked {
            if sent.copies.len() >= limit {
                sent.copies.pop_front();
                tracing::warn!(%node, "cluster: too many unacknowledged stanzas; the oldest is no longer kept");
            }
            // With its receipt, if it came from a third node: settled there once this
            // node's copy is.
            sent.copies.push_back((seq, to.clone(), stanza.clone()));
        }
        seq
    }

    /// `node` is done with everything up to `upto`.
    pub(super) fn acknowledged(&self, node: &str, upto: u64) {
        let mut nodes = lock(&self.nodes);
        let Some(sent) = nodes.get_mut(node) else {
            return;
        };
        sent.acked = sent.acked.max(upto);
        while sent.copies.front().is_some_and(|(seq, _, _)| *seq <= upto) {
            sent.copies.pop_front();
        }
    }

    /// How many stanzas wait for an acknowledgement, all nodes together.
    pub(super) fn count(&self) -> usize {
        lock(&self.nodes)
            .values()
            .map(|sent| sent.copies.len())
            .sum()
    }

    /// What `node` never acknowledged, taken to be rerouted: it is gone.
    pub(super) fn take(&self, node: &str) -> Vec<(FullJid, Queued)> {
        let mut nodes = lock(&self.nodes);
        let Some(sent) = nodes.get_mut(node) else {
            return Vec::new();
        };
        sent.copies
            .drain(..)
            .map(|(_, to, stanza)| (to, stanza))
            .collect()
    }
}

/// Where stanzas from other nodes are tracked until settled, per sending node and life.
#[derive(Default)]
pub(super) struct Inbound {
    windows: Mutex<HashMap<(NodeName, u64), Arc<Window>>>,
    /// Woken when a window's settled prefix grows.
    grown: Arc<Notify>,
}

/// Stanzas from one life of one node.
struct Window {
    state: Mutex<WindowState>,
    grown: Arc<Notify>,
}

#[derive(Default)]
struct WindowState {
    /// Every stanza numbered up to this one is settled.
    settled: u64,
    /// Whether each stanza after `settled` is, in order (what never arrived counts as
    /// settled: a gap is a stanza its sender rerouted itself).
    after: VecDeque<bool>,
    /// The last number acknowledged to the sender.
    acked: u64,
}

/// A gap in the numbers longer than this (nothing legitimate makes one: a sender reroutes
/// at most `max_pending` itself) starts the window afresh instead of filling it.
const MAX_GAP: u64 = 1 << 20;

impl WindowState {
    fn received(&mut self, seq: u64) -> bool {
        let next = self
            .settled
            .saturating_add(self.after.len() as u64)
            .saturating_add(1);
        if seq < next {
            return false;
        }
        if seq - next > MAX_GAP {
            // What is outstanding is still settled by its receipts (`settle` ignores the
            // numbers it no longer holds); acknowledging jumps ahead with the new start.
            self.after.clear();
            self.settled = seq - 1;
        }
        for _ in next.max(self.settled.saturating_add(1))..seq {
            self.after.push_back(true);
        }
        self.after.push_back(false);
        self.advance();
        true
    }

    /// Marks `seq` settled; true if the settled prefix grew.
    fn settle(&mut self, seq: u64) -> bool {
        let Some(index) = seq.checked_sub(self.settled.saturating_add(1)) else {
            return false;
        };
        if let Some(slot) = self.after.get_mut(index as usize) {
            *slot = true;
        }
        self.advance()
    }

    fn advance(&mut self) -> bool {
        let before = self.settled;
        while self.after.front() == Some(&true) {
            self.after.pop_front();
            self.settled += 1;
        }
        self.settled > before
    }
}

/// Held by a stanza from another node until it is settled; dropping it settles it.
pub struct Receipt {
    window: Arc<Window>,
    seq: u64,
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt").field("seq", &self.seq).finish()
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if lock(&self.window.state).settle(self.seq) {
            self.window.grown.notify_one();
        }
    }
}

impl Inbound {
    /// A receipt for stanza `seq` from `node`'s life `incarnation`; `None` for a number
    /// seen already (nothing to acknowledge twice).
    pub(super) fn receive(&self, node: &str, incarnation: u64, seq: u64) -> Option<Arc<Receipt>> {
        let window = {
            let mut windows = lock(&self.windows);
            match windows.get(&(node.into(), incarnation)) {
                Some(window) => window.clone(),
                None => {
                    // A new life of that node: the old one will acknowledge nothing more.
                    windows.retain(|(name, _), _| **name != *node);
                    let window = Arc::new(Window {
                        state: Mutex::new(WindowState::default()),
                        grown: self.grown.clone(),
                    });
                    windows.insert((node.into(), incarnation), window.clone());
                    window
                }
            }
        };
        if !lock(&window.state).received(seq) {
            return None;
        }
        Some(Arc::new(Receipt { window, seq }))
    }

    /// Forgets a life of a node that left: nothing it sent needs acknowledging.
    pub(super) fn forget(&self, node: &str, incarnation: u64) {
        lock(&self.windows).remove(&(node.into(), incarnation));
    }

    /// What to acknowledge now: (node, its life, settled up to), for each window that grew.
    fn due(&self) -> Vec<(NodeName, u64, u64)> {
        let windows = lock(&self.windows);
        let mut due = Vec::new();
        for ((node, incarnation), window) in windows.iter() {
            let mut state = lock(&window.state);
            if state.settled > state.acked {
                state.acked = state.settled;
                due.push((node.clone(), *incarnation, state.settled));
            }
        }
        due
    }
}

/// Acknowledges settled stanzas to their senders, until the cluster is left.
pub(super) async fn run(cluster: Arc<Cluster>) {
    loop {
        cluster.inbound.grown.notified().await;
        tokio::time::sleep(ACK_DELAY).await;
        for (node, incarnation, upto) in cluster.inbound.due() {
            let frame = wire::ToNode::Ack {
                from: cluster.node.to_string(),
                incarnation,
                upto,
            };
            cluster.send_to(&node, frame.encode());
        }
    }
}

/// Reroutes what `node` never acknowledged: it died, or lost its subscription (and with it
/// whatever Redis still had to send it).
pub(super) fn reroute_unacked(cluster: &Cluster, node: &str) {
    let unacked = cluster.unacked.take(node);
    if unacked.is_empty() {
        return;
    }
    tracing::warn!(
        node,
        stanzas = unacked.len(),
        "cluster: stanzas a node never acknowledged are handled here"
    );
    if let Some(server) = cluster.server() {
        super::link::reroute(server, unacked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(inbound: &Inbound) -> Vec<u64> {
        inbound.due().into_iter().map(|(_, _, upto)| upto).collect()
    }

    #[test]
    fn the_settled_prefix_is_acknowledged_whatever_the_order_of_settling() {
        let inbound = Inbound::default();
        let one = inbound.receive("n1", 7, 1).unwrap();
        let two = inbound.receive("n1", 7, 2).unwrap();
        let three = inbound.receive("n1", 7, 3).unwrap();
        drop(two);
        assert_eq!(settled(&inbound), Vec::<u64>::new(), "1 is not settled yet");
        drop(one);
        assert_eq!(settled(&inbound), vec![2]);
        assert_eq!(settled(&inbound), Vec::<u64>::new(), "acknowledged once");
        // A gap (stanzas 4 and 5 the sender rerouted itself) does not hold the prefix back.
        let six = inbound.receive("n1", 7, 6).unwrap();
        drop(three);
        assert_eq!(settled(&inbound), vec![5]);
        assert!(
            inbound.receive("n1", 7, 6).is_none(),
            "a number seen already"
        );
        drop(six);
        assert_eq!(settled(&inbound), vec![6]);
    }

    #[test]
    fn a_huge_gap_starts_the_window_afresh() {
        let inbound = Inbound::default();
        let one = inbound.receive("n1", 7, 1).unwrap();
        let far = inbound.receive("n1", 7, u64::MAX).unwrap();
        drop(one);
        drop(far);
        assert_eq!(settled(&inbound), vec![u64::MAX]);
    }

    #[test]
    fn a_new_life_of_a_node_starts_afresh() {
        let inbound = Inbound::default();
        let old = inbound.receive("n1", 1, 1).unwrap();
        let new = inbound.receive("n1", 2, 1).unwrap();
        drop(old);
        drop(new);
        assert_eq!(inbound.due(), vec![("n1".into(), 2, 1)]);
    }

    fn stanza(n: u8) -> Queued {
        Queued::from(&bytes::Bytes::from(vec![b'0' + n]))
    }

    #[test]
    fn copies_are_kept_until_acknowledged_even_if_the_ack_came_first() {
        let unacked = Unacked::default();
        let node: NodeName = "n2".into();
        let to = FullJid::new("a@b/c").unwrap();
        assert_eq!(unacked.record(&node, &to, &stanza(1), 10), 1);
        assert_eq!(unacked.record(&node, &to, &stanza(2), 10), 2);
        unacked.acknowledged("n2", 1);
        // The ack for 3 overtakes its record: 3 is not kept.
        unacked.acknowledged("n2", 3);
        assert_eq!(unacked.record(&node, &to, &stanza(3), 10), 3);
        assert_eq!(unacked.record(&node, &to, &stanza(4), 10), 4);
        let left: Vec<_> = unacked
            .take("n2")
            .into_iter()
            .map(|(_, q)| q.bytes)
            .collect();
        assert_eq!(left, vec![bytes::Bytes::from_static(b"4")]);
        assert!(unacked.take("n2").is_empty());
    }

    #[test]
    fn at_most_the_limit_is_kept() {
        let unacked = Unacked::default();
        let node: NodeName = "n2".into();
        let to = FullJid::new("a@b/c").unwrap();
        for n in 1..=5 {
            unacked.record(&node, &to, &stanza(n), 3);
        }
        let left: Vec<_> = unacked
            .take("n2")
            .into_iter()
            .map(|(_, q)| q.bytes)
            .collect();
        assert_eq!(left, vec!["3", "4", "5"]);
    }
}
