//! The TUI's rooms through the SDK's Room module: entering, speaking, leaving, entering
//! again after a new session; each room's events, and the invitations the MUC module
//! reports, turned into [`Input`]s for the state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use corvid_client::{Client, JoinOptions, Muc, MucEvent, Room, RoomEvent, RoomEvents};
use corvid_proto::BareJid;
use tokio::sync::mpsc;

use super::state::{Input, Invitation, RoomInput};
use crate::muc;
use crate::session;

/// The rooms open, by JID, with how they were entered.
pub struct Rooms {
    muc: Arc<Muc>,
    client: Client,
    open: Mutex<HashMap<String, (Arc<Room>, JoinOptions)>>,
    feedback: mpsc::UnboundedSender<Input>,
}

impl Rooms {
    pub fn new(
        muc: Arc<Muc>,
        client: Client,
        feedback: mpsc::UnboundedSender<Input>,
    ) -> Arc<Rooms> {
        Arc::new(Rooms {
            muc,
            client,
            open: Mutex::new(HashMap::new()),
            feedback,
        })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<Room>, JoinOptions)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens `jid` and enters it as `nick`; what the room says comes back as inputs.
    pub fn join(self: &Arc<Self>, jid: String, nick: String, password: Option<String>) {
        let Ok(bare) = jid.parse::<BareJid>() else {
            self.tell(
                &jid,
                RoomInput::Left {
                    why: "that is not a room's JID".into(),
                },
            );
            return;
        };
        let (room, events) = self.muc.room(bare, &nick);
        tokio::spawn(forward(jid.clone(), events, self.feedback.clone()));
        let options = JoinOptions {
            password,
            ..JoinOptions::default()
        };
        self.open()
            .insert(jid.clone(), (room.clone(), options.clone()));
        tokio::spawn(self.clone().enter(jid, room, options));
    }

    /// Enters every open room again: after a new session the rooms forgot us. The history
    /// they send again shows nothing twice (the state knows the lines by archive id).
    pub fn rejoin_all(self: &Arc<Self>) {
        let open: Vec<_> = self
            .open()
            .iter()
            .map(|(jid, (room, options))| (jid.clone(), room.clone(), options.clone()))
            .collect();
        for (jid, room, options) in open {
            tokio::spawn(self.clone().enter(jid, room, options));
        }
    }

    async fn enter(self: Arc<Self>, jid: String, room: Arc<Room>, options: JoinOptions) {
        match muc::enter(&room, options).await {
            Ok(_) => {
                if session::keeps_archive(&self.client, &jid).await {
                    self.tell(&jid, RoomInput::Archived);
                }
            }
            Err(e) => {
                self.open().remove(&jid);
                self.tell(
                    &jid,
                    RoomInput::Left {
                        why: format!("cannot enter: {e}"),
                    },
                );
            }
        }
    }

    fn room(&self, jid: &str) -> Result<Arc<Room>, String> {
        let room = self.open().get(jid).map(|(room, _)| room.clone());
        room.ok_or_else(|| format!("not in {jid}"))
    }

    /// Says `body` in `jid`.
    pub async fn send(&self, jid: &str, body: &str) -> Result<(), String> {
        self.room(jid)?
            .send_message(body)
            .await
            .map(drop)
            .map_err(|e| format!("sending to {jid} failed: {e}"))
    }

    /// Asks `jid` to take `subject`; a refusal comes back as a message error.
    pub async fn set_subject(&self, jid: &str, subject: &str) -> Result<(), String> {
        self.room(jid)?
            .set_subject(subject)
            .await
            .map_err(|e| format!("changing the subject of {jid} failed: {e}"))
    }

    /// Leaves `jid` (the room is dropped once it said goodbye, or gave up waiting).
    pub fn leave(&self, jid: &str) {
        let Some((room, _)) = self.open().remove(jid) else {
            return;
        };
        let feedback = self.feedback.clone();
        tokio::spawn(async move {
            if let Err(e) = room.leave(None).await {
                let _ = feedback.send(Input::Notice(format!("leaving {}: {e}", room.jid())));
            }
        });
    }

    fn tell(&self, jid: &str, input: RoomInput) {
        let _ = self.feedback.send(Input::Room {
            room: jid.to_owned(),
            input,
        });
    }
}

/// A room's events, as inputs, until the room is gone.
async fn forward(jid: String, mut events: RoomEvents, feedback: mpsc::UnboundedSender<Input>) {
    while let Some(event) = events.next().await {
        if let Some(input) = input_of(&jid, event)
            && feedback.send(input).is_err()
        {
            break;
        }
    }
}

/// What the state takes in from a room event.
pub fn input_of(jid: &str, event: RoomEvent) -> Option<Input> {
    if let Some(message) = muc::message_of(&event) {
        return Some(Input::Message(message));
    }
    let input = match event {
        RoomEvent::Joined { nick, .. } => RoomInput::Joined { nick },
        RoomEvent::Left(reason) => RoomInput::Left {
            why: muc::describe(&reason),
        },
        RoomEvent::OccupantJoined(occupant) => RoomInput::OccupantJoined {
            nick: occupant.nick,
        },
        RoomEvent::OccupantLeft { occupant, reason } => RoomInput::OccupantLeft {
            nick: occupant.nick,
            why: muc::describe(&reason),
        },
        RoomEvent::NickChanged { old, occupant } => RoomInput::NickChanged {
            old,
            new: occupant.nick,
        },
        RoomEvent::Subject { subject, nick } => RoomInput::Subject { subject, by: nick },
        RoomEvent::MessageError { condition, .. } => {
            return Some(Input::Notice(format!(
                "{jid} refused a message: {condition}"
            )));
        }
        _ => return None,
    };
    Some(Input::Room {
        room: jid.to_owned(),
        input,
    })
}

/// What the state takes in from the MUC module: invitations, and declines of ours.
pub fn input_of_muc(event: MucEvent) -> Input {
    match event {
        MucEvent::Invitation(invitation) => Input::Invited {
            room: invitation.room.to_string(),
            invitation: Invitation {
                from: invitation.from.map(|j| j.to_string()),
                reason: invitation.reason,
                password: invitation.password,
            },
        },
        MucEvent::Declined { room, from, reason } => {
            let from = from.map_or_else(|| "someone".to_owned(), |j| j.to_string());
            let reason = reason.map_or_else(String::new, |r| format!(" ({r})"));
            Input::Notice(format!("{from} declined to join {room}{reason}"))
        }
    }
}
