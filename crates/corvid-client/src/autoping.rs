//! Keeping the connection checked (XEP-0199; XMPPFramework's `XMPPAutoPing`).
//!
//! Every `interval`, the client pings its server and waits `timeout` for the answer:
//! [`PingEvent`]s say when a ping went, when its pong came (with the round trip), and when
//! none came in time, which means the connection is dead though TCP has not noticed; the
//! stream is then dropped (its [`crate::Event::Disconnected`] follows), for the application
//! or a reconnect module to act on. Pings the server sends are answered by the stream itself.

use std::time::{Duration, Instant};

use corvid_proto::ns;
use corvid_xml::Element;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::RequestError;

/// What the pinger reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PingEvent {
    /// A ping went out (`xmppAutoPingDidSendPing:`).
    Sent,
    /// Its answer came after `rtt` (`xmppAutoPingDidReceivePong:`).
    Pong {
        /// The round trip.
        rtt: Duration,
    },
    /// No answer within the timeout (`xmppAutoPingDidTimeout:`).
    Timeout,
}

/// A running pinger; stops when dropped.
#[derive(Debug)]
pub struct AutoPing {
    task: JoinHandle<()>,
}

impl Drop for AutoPing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AutoPing {
    /// Pings `client`'s server every `interval` while it is connected, waiting `timeout`
    /// for each answer.
    pub fn start(
        client: &Client,
        interval: Duration,
        timeout: Duration,
    ) -> (AutoPing, mpsc::UnboundedReceiver<PingEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let client = client.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate
            loop {
                ticks.tick().await;
                if client.jid().is_none() {
                    continue;
                }
                let ping = Element::new("iq", ns::CLIENT)
                    .with_attr("type", "get")
                    .with_attr("to", client.account().domain().as_str())
                    .with_child(Element::new("ping", ns::PING));
                let _ = events.send(PingEvent::Sent);
                let sent = Instant::now();
                let event = match client.request_with_timeout(ping, timeout).await {
                    // An error answer is an answer: the server is there.
                    Ok(_) | Err(RequestError::Error { .. }) => PingEvent::Pong {
                        rtt: sent.elapsed(),
                    },
                    Err(RequestError::Timeout) => PingEvent::Timeout,
                    Err(_) => continue,
                };
                let timed_out = event == PingEvent::Timeout;
                if events.send(event).is_err() {
                    break;
                }
                if timed_out {
                    client.drop_stream("no answer to a ping");
                }
            }
        });
        (AutoPing { task }, receiver)
    }
}
