//! Rooms (XEP-0045) as corvid-chat uses the SDK's Room module: entering (and unlocking a
//! room we just created as an instant room, §10.1.2), entering again after a new session,
//! and what a room's events become on the screen or in `join`'s JSON lines.

use std::collections::{HashSet, VecDeque};

use corvid_client::{DataForm, JoinOptions, Joined, LeaveReason, Room, RoomError, RoomEvent};

use crate::message::ChatMessage;

/// Enters `room` with `options`; a room our presence created is unlocked at once with the
/// default configuration (§10.1.2: an instant room), so others can come in.
pub async fn enter(room: &Room, options: JoinOptions) -> Result<Joined, RoomError> {
    let joined = room.join(options).await?;
    if joined.created {
        room.configure(&DataForm::empty_submit()).await?;
    }
    Ok(joined)
}

/// The message a room event carries for people to read: a groupchat message with a body,
/// or an occupant's private message (§7.5). Subjects and statuses are not messages.
pub fn message_of(event: &RoomEvent) -> Option<ChatMessage> {
    match event {
        RoomEvent::Message(message) => {
            let parsed = ChatMessage::parse(&message.stanza, None)?;
            Some(match &message.stanza_id {
                Some(id) => parsed.archived_as(id),
                None => parsed,
            })
        }
        RoomEvent::PrivateMessage { stanza, .. } => ChatMessage::parse(stanza, None),
        _ => None,
    }
}

/// Why someone left, in a few words (§7.14, §9, §10.9).
pub fn describe(reason: &LeaveReason) -> String {
    let because = |reason: &Option<String>| {
        reason
            .as_deref()
            .map_or_else(String::new, |r| format!(": {r}"))
    };
    let by = |actor: &Option<String>| {
        actor
            .as_deref()
            .map_or_else(String::new, |a| format!(" by {a}"))
    };
    match reason {
        LeaveReason::Left { status } => format!("left{}", because(status)),
        LeaveReason::Kicked { actor, reason } => format!("kicked{}{}", by(actor), because(reason)),
        LeaveReason::Banned { actor, reason } => format!("banned{}{}", by(actor), because(reason)),
        LeaveReason::AffiliationChanged => "removed (affiliation changed)".into(),
        LeaveReason::MembersOnly => "removed (the room is now members-only)".into(),
        LeaveReason::Shutdown => "removed (the service is shutting down)".into(),
        LeaveReason::Error => "removed by the room".into(),
        LeaveReason::Destroyed { reason, alternate } => {
            let alternate = alternate
                .as_ref()
                .map_or_else(String::new, |a| format!(" (moved to {a})"));
            format!("the room was destroyed{}{alternate}", because(reason))
        }
    }
}

/// Room messages already shown, so the history a room sends again when we enter it again
/// (after a new session) shows nothing twice. A message is known by the room's
/// stanza-id (XEP-0359), else by its sender and id. The newest few thousand are kept.
#[derive(Debug, Default)]
pub struct Shown {
    order: VecDeque<String>,
    keys: HashSet<String>,
}

/// How many messages [`Shown`] remembers: more than a room's history on entering.
const REMEMBERED: usize = 2048;

impl Shown {
    /// Records `message`; false if it was shown already.
    pub fn first_time(&mut self, message: &ChatMessage) -> bool {
        let key = match (&message.archive_id, &message.id) {
            (Some(archive_id), _) => format!("archive {archive_id}"),
            (None, Some(id)) => format!("{} {id}", message.from),
            // Nothing to know it by: shown every time.
            (None, None) => return true,
        };
        if !self.keys.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.keys.remove(&oldest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: &str, id: Option<&str>, archive_id: Option<&str>) -> ChatMessage {
        ChatMessage {
            from: from.into(),
            to: None,
            kind: "groupchat".into(),
            body: "hi".into(),
            id: id.map(str::to_owned),
            stamp: "2024-01-02T03:04:05Z".into(),
            archive_id: archive_id.map(str::to_owned),
        }
    }

    #[test]
    fn a_message_is_shown_once_by_its_stanza_id_or_its_sender_and_id() {
        let mut shown = Shown::default();
        assert!(shown.first_time(&message("r@c/a", Some("1"), Some("s1"))));
        assert!(!shown.first_time(&message("r@c/a", Some("1"), Some("s1"))));
        assert!(shown.first_time(&message("r@c/a", Some("2"), None)));
        assert!(!shown.first_time(&message("r@c/a", Some("2"), None)));
        // The same id from someone else is another message.
        assert!(shown.first_time(&message("r@c/b", Some("2"), None)));
        // Without any id, nothing can be told apart.
        assert!(shown.first_time(&message("r@c/a", None, None)));
        assert!(shown.first_time(&message("r@c/a", None, None)));
    }

    #[test]
    fn leave_reasons_read_as_words() {
        assert_eq!(describe(&LeaveReason::Left { status: None }), "left");
        assert_eq!(
            describe(&LeaveReason::Kicked {
                actor: Some("mod".into()),
                reason: Some("spam".into())
            }),
            "kicked by mod: spam"
        );
        assert_eq!(
            describe(&LeaveReason::Destroyed {
                reason: None,
                alternate: Some("new@conf.x".parse().unwrap())
            }),
            "the room was destroyed (moved to new@conf.x)"
        );
    }
}
