//! XEP-0410 MUC self-ping: a client asks its own occupant JID for a ping to learn whether
//! the room still knows it (a restarted server or a broken s2s link forgets occupants
//! without telling them). §3.2 sorts the answers: a result, or an error that a client of
//! ours sent back (`service-unavailable`, `feature-not-implemented`), means joined; no
//! answer, or the room's server out of reach, means unknown; any other error means not
//! joined, and the room is joined again with the options it was last joined with.

use std::time::Duration;

use corvid_proto::ns;
use corvid_xml::Element;

use super::incoming::Core;
use super::model::RoomEvent;
use crate::client::Client;
use crate::error::RequestError;

/// What a self-ping's answer says (§3.2).
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Joined,
    Unreachable,
    NotJoined(String),
    /// No verdict: the stream is down, say.
    Unknown,
}

fn verdict(answer: Result<Element, RequestError>) -> Verdict {
    let condition = match answer {
        Ok(_) => return Verdict::Joined,
        Err(RequestError::Error { condition, .. }) => condition,
        Err(RequestError::Timeout) => return Verdict::Unreachable,
        Err(_) => return Verdict::Unknown,
    };
    match condition.as_str() {
        // The ping reached a client of ours that does not answer pings: we are in.
        "service-unavailable" | "feature-not-implemented" => Verdict::Joined,
        "remote-server-not-found" | "remote-server-timeout" => Verdict::Unreachable,
        _ => Verdict::NotJoined(condition),
    }
}

/// One self-ping, and what follows from its answer.
pub(super) async fn check(core: &Core, client: &Client, timeout: Duration) {
    let nick = {
        let state = core.state();
        // Not joined, or joining: nothing to check.
        if !state.joined || state.join.is_some() {
            return;
        }
        state.nick.clone()
    };
    if client.jid().is_none() {
        return;
    }
    let ping = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", format!("{}/{nick}", core.jid))
        .with_child(Element::new("ping", ns::PING));
    match verdict(client.request_with_timeout(ping, timeout).await) {
        Verdict::Joined | Verdict::Unknown => {}
        Verdict::Unreachable => core.emit(RoomEvent::Unreachable),
        Verdict::NotJoined(condition) => rejoin(core, client, Some(condition)).await,
    }
}

/// The room does not know us (a self-ping's `condition`, or a new session after a lost
/// connection): join again as we last did, asking only for the history since the last
/// message we saw.
pub(super) async fn rejoin(core: &Core, client: &Client, condition: Option<String>) {
    let options = {
        let mut state = core.state();
        state.joined = false;
        state.rejoining = true;
        let mut options = state.options.clone();
        if let Some(since) = state.last_message {
            options.history = Some(super::History {
                since: Some(since),
                ..super::History::default()
            });
        }
        options
    };
    if let Some(condition) = condition {
        core.emit(RoomEvent::NotJoined { condition });
    }
    let event = match super::enter(core, client, options).await {
        Ok(_) => RoomEvent::Rejoined,
        Err(e) => {
            core.state().rejoining = false;
            RoomEvent::RejoinFailed(e.to_string())
        }
    };
    core.emit(event);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(condition: &str) -> Result<Element, RequestError> {
        Err(RequestError::Error {
            condition: condition.into(),
            stanza: Element::new("iq", ns::CLIENT),
        })
    }

    #[test]
    fn answers_sorted_as_xep_0410_says() {
        assert_eq!(verdict(Ok(Element::new("iq", ns::CLIENT))), Verdict::Joined);
        assert_eq!(verdict(error("service-unavailable")), Verdict::Joined);
        assert_eq!(verdict(error("feature-not-implemented")), Verdict::Joined);
        assert_eq!(verdict(Err(RequestError::Timeout)), Verdict::Unreachable);
        assert_eq!(
            verdict(error("remote-server-not-found")),
            Verdict::Unreachable
        );
        assert_eq!(
            verdict(error("not-acceptable")),
            Verdict::NotJoined("not-acceptable".into())
        );
        assert_eq!(
            verdict(error("item-not-found")),
            Verdict::NotJoined("item-not-found".into())
        );
        assert_eq!(verdict(Err(RequestError::NotConnected)), Verdict::Unknown);
    }
}
