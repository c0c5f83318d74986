//! IQ requests the server itself sends (to clients), and the wait for their answers.
//!
//! An answer is matched on its id, which is random, and on its sender: RFC 6120 §8.2.3
//! has the responder answer from the address the request went to, and a session's `from`
//! is stamped by the server, so another client cannot answer in its place.

use std::time::Duration;

use corvid_proto::Jid;
use corvid_xml::Element;
use dashmap::DashMap;
use tokio::sync::oneshot;

#[derive(Default)]
pub struct IqTracker {
    pending: DashMap<String, Pending>,
    /// In a cluster, this node's name, in every id: an answer that reaches another node
    /// (its sender's) is routed back here by it ([`node_of`]).
    node: std::sync::OnceLock<String>,
}

/// What every id starts with.
const ID_PREFIX: &str = "corvid-iq:";

/// The node that sent a request, from the id of its answer: `corvid-iq:NODE:RANDOM`.
pub fn node_of(id: &str) -> Option<&str> {
    let rest = id.strip_prefix(ID_PREFIX)?;
    let (node, _) = rest.rsplit_once(':')?;
    (!node.is_empty()).then_some(node)
}

struct Pending {
    responder: Jid,
    answer: oneshot::Sender<Element>,
}

impl IqTracker {
    /// A fresh id for a request to `responder`, and the receiver its answer will arrive on.
    pub fn register(&self, responder: Jid) -> (String, oneshot::Receiver<Element>) {
        let id = match self.node.get() {
            Some(node) => format!("{ID_PREFIX}{node}:{}", crate::random_id()),
            None => format!("{ID_PREFIX}{}", crate::random_id()),
        };
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            responder,
            answer: tx,
        };
        self.pending.insert(id.clone(), pending);
        (id, rx)
    }

    /// Puts this node's name in the ids from now on (it joined a cluster).
    pub fn set_node(&self, node: &str) {
        let _ = self.node.set(node.to_owned());
    }

    /// Hands a result or error to whoever waits for it, if it comes from the entity asked;
    /// false if no one here does.
    pub fn resolve(&self, answer: &Element) -> bool {
        let (Some(id), Some(Ok(from))) = (answer.attr("id"), answer.attr("from").map(Jid::new))
        else {
            return false;
        };
        match self.pending.remove_if(id, |_, p| p.responder == from) {
            Some((_, pending)) => {
                let _ = pending.answer.send(answer.clone());
                true
            }
            None => false,
        }
    }

    /// Waits for an answer, forgetting the request after `timeout`.
    pub async fn wait(
        &self,
        id: &str,
        rx: oneshot::Receiver<Element>,
        timeout: Duration,
    ) -> Option<Element> {
        let answer = tokio::time::timeout(timeout, rx)
            .await
            .ok()
            .and_then(Result::ok);
        self.pending.remove(id);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, from: &str) -> Element {
        Element::new("iq", corvid_proto::ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("id", id)
            .with_attr("from", from)
    }

    #[tokio::test]
    async fn only_the_entity_asked_can_answer() {
        let tracker = IqTracker::default();
        let (id, rx) = tracker.register(Jid::new("alice@x/r").unwrap());
        let (other, _) = tracker.register(Jid::new("alice@x/r").unwrap());
        assert_ne!(id, other, "ids are unique");
        tracker.resolve(&result(&id, "mallory@x/r"));
        tracker.resolve(&result(&id, "alice@x/other"));
        tracker.resolve(&result(&id, "alice@x/r"));
        let answer = tracker.wait(&id, rx, Duration::from_secs(1)).await;
        assert_eq!(
            answer.and_then(|a| a.attr("from").map(str::to_string)),
            Some("alice@x/r".to_string())
        );
    }
}
