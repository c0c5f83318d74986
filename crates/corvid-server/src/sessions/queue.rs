//! A session's outgoing queue and close slot ([`SessionControl`]), shared by the senders
//! (router, modules) that fill it and the session task that drains it into the socket.
//!
//! Senders never wait on it (a full queue is the session manager's slow-consumer case),
//! except a backlog's own task, which waits for room ([`SessionControl::offer_wait`]) and
//! learns what the session task took to write ([`SessionControl::wait_taken`]).

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use corvid_proto::StreamError;
use tokio::sync::Notify;

use super::queued::Queued;

/// A session's inbox and its close request, shared by the router (which fills it) and the
/// session task (which drains it). A plain queue rather than a channel: it allocates
/// nothing while empty, so an idle session costs a few hundred bytes here.
#[derive(Default)]
pub struct SessionControl {
    notify: Notify,
    reason: Mutex<Option<StreamError>>,
    queue: Mutex<Queue>,
    ready: Notify,
    /// Woken whenever the session task takes a stanza or the session is closed: what
    /// [`SessionControl::offer_wait`] and [`SessionControl::wait_taken`] wait for.
    taken: Notify,
}

#[derive(Default)]
struct Queue {
    stanzas: VecDeque<Queued>,
    /// Bytes in `stanzas`.
    bytes: usize,
    /// Stanzas ever queued, and ever taken by the session task to be written: the n-th
    /// queued stanza was taken once `taken >= n`.
    queued: u64,
    taken: u64,
}

impl Queue {
    fn has_room_for(&self, stanza: &Queued, limits: QueueLimits) -> bool {
        self.stanzas.len() < limits.stanzas
            && (self.stanzas.is_empty() || self.bytes + stanza.bytes.len() <= limits.bytes)
    }
}

/// How much may wait for one session: so many stanzas, so many bytes.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    pub stanzas: usize,
    pub bytes: usize,
}

impl SessionControl {
    pub fn close(&self, error: StreamError) {
        let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if reason.is_none() {
            *reason = Some(error);
        }
        drop(reason);
        self.notify.notify_one();
        self.taken.notify_waiters();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Waits until `close` was called, then returns its error.
    pub async fn closed(&self) -> StreamError {
        loop {
            if let Some(err) = self
                .reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return err;
            }
            self.notify.notified().await;
        }
    }

    /// Queues a stanza unless that would pass `limits` (one stanza always fits an empty queue).
    pub(super) fn offer(&self, stanza: Queued, limits: QueueLimits) -> bool {
        self.try_offer(stanza, limits).is_some()
    }

    /// Queues a stanza if it fits; returns its sequence number (see [`Self::wait_taken`]).
    fn try_offer(&self, stanza: Queued, limits: QueueLimits) -> Option<u64> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if !queue.has_room_for(&stanza, limits) {
            return None;
        }
        queue.bytes += stanza.bytes.len();
        queue.stanzas.push_back(stanza);
        queue.queued += 1;
        let seq = queue.queued;
        drop(queue);
        self.ready.notify_one();
        Some(seq)
    }

    /// Queues a stanza, waiting for room instead of applying the slow-consumer policy: for
    /// a backlog the session has to take at its own pace (offline messages). Returns the
    /// stanza's sequence number, or `None` once the session is closed.
    ///
    /// Never call it from the session's own task: that task is what makes room.
    pub async fn offer_wait(&self, stanza: Queued, limits: QueueLimits) -> Option<u64> {
        loop {
            let taken = self.taken.notified();
            tokio::pin!(taken);
            // Registered before the checks, so a `pop` in between cannot be missed.
            taken.as_mut().enable();
            if self.is_closed() {
                return None;
            }
            if let Some(seq) = self.try_offer(stanza.clone(), limits) {
                return Some(seq);
            }
            taken.await;
        }
    }

    /// Waits until the session task took the stanza numbered `seq` to write it, or the
    /// session closed; returns how many stanzas it has taken so far.
    pub async fn wait_taken(&self, seq: u64) -> u64 {
        loop {
            let taken = self.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            let so_far = self.queue.lock().unwrap_or_else(|e| e.into_inner()).taken;
            if so_far >= seq || self.is_closed() {
                return so_far;
            }
            taken.await;
        }
    }

    /// The next queued stanza, if any.
    pub fn pop(&self) -> Option<Bytes> {
        self.pop_queued().map(|q| q.bytes)
    }

    /// The next queued stanza with its class (for what counts or sorts what is written).
    pub fn pop_queued(&self) -> Option<Queued> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let next = queue.stanzas.pop_front();
        if let Some(stanza) = &next {
            queue.bytes -= stanza.bytes.len();
            queue.taken += 1;
        }
        if queue.stanzas.is_empty() && queue.stanzas.capacity() > 16 {
            // A burst is over: give its memory back.
            queue.stanzas = VecDeque::new();
        }
        drop(queue);
        if next.is_some() {
            self.taken.notify_waiters();
        }
        next
    }

    /// Waits for the next queued stanza.
    pub async fn next(&self) -> Outbound {
        loop {
            if let Some(stanza) = self.pop_queued() {
                return stanza;
            }
            // A stanza offered since `pop` left a permit, so this cannot miss it.
            self.ready.notified().await;
        }
    }
}

/// What the session task receives: the bytes to write, with their class.
pub type Outbound = Queued;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use corvid_proto::StreamErrorCondition;

    use super::*;

    #[tokio::test]
    async fn offer_wait_waits_for_room_and_gives_up_when_the_session_closes() {
        let limits = QueueLimits {
            stanzas: 1,
            bytes: 1 << 20,
        };
        let control = Arc::new(SessionControl::default());
        assert_eq!(
            control
                .offer_wait(Queued::from(&Bytes::from_static(b"1")), limits)
                .await,
            Some(1)
        );
        let waiting = tokio::spawn({
            let control = control.clone();
            async move {
                control
                    .offer_wait(Queued::from(&Bytes::from_static(b"2")), limits)
                    .await
            }
        });
        // The queue is full until the session takes the first stanza.
        assert_eq!(control.pop().as_deref(), Some(&b"1"[..]));
        assert_eq!(waiting.await.ok().flatten(), Some(2));
        assert_eq!(control.wait_taken(1).await, 1);
        let blocked = tokio::spawn({
            let control = control.clone();
            async move {
                control
                    .offer_wait(Queued::from(&Bytes::from_static(b"3")), limits)
                    .await
            }
        });
        control.close(StreamError::new(StreamErrorCondition::Reset));
        assert_eq!(blocked.await.ok().flatten(), None);
        assert_eq!(
            control.wait_taken(2).await,
            1,
            "closed: stanza 2 was never taken"
        );
    }
}
