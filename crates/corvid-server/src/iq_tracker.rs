//! IQ requests the server itself sends (to clients), and the wait for their answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corvid_xml::Element;
use dashmap::DashMap;
use tokio::sync::oneshot;

#[derive(Default)]
pub struct IqTracker {
    pending: DashMap<String, oneshot::Sender<Element>>,
    next: AtomicU64,
}

impl IqTracker {
    /// A fresh id, and the receiver its answer will arrive on.
    pub fn register(&self) -> (String, oneshot::Receiver<Element>) {
        let id = format!("corvid-iq-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id.clone(), tx);
        (id, rx)
    }

    /// Hands a result or error to whoever waits for it.
    pub fn resolve(&self, answer: &Element) {
        if let Some((_, tx)) = answer.attr("id").and_then(|id| self.pending.remove(id)) {
            let _ = tx.send(answer.clone());
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
