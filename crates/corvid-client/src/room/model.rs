//! What a room is made of, as the SDK shows it: roles, affiliations, occupants, why they
//! leave, the events a room reports, and what can go wrong (XEP-0045 §5, §7.2, §9, §10).

use std::time::{Duration, SystemTime};

use corvid_proto::{BareJid, FullJid, Jid};
use corvid_xml::Element;

use crate::error::RequestError;

/// An occupant's role in the room (XEP-0045 §5.1; XMPPRoomOccupant's `role`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Not in the room.
    #[default]
    None,
    /// In, without voice in a moderated room.
    Visitor,
    /// In, with voice.
    Participant,
    /// May kick and grant or revoke voice.
    Moderator,
}

impl Role {
    /// The role an attribute names; anything else is `none`.
    pub fn parse(value: Option<&str>) -> Role {
        match value {
            Some("visitor") => Role::Visitor,
            Some("participant") => Role::Participant,
            Some("moderator") => Role::Moderator,
            _ => Role::None,
        }
    }

    /// The attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }
}

/// A user's long-lived affiliation with the room (XEP-0045 §5.2; XMPPRoomOccupant's
/// `affiliation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Affiliation {
    /// Banned.
    Outcast,
    /// No affiliation.
    #[default]
    None,
    /// A member (may enter a members-only room).
    Member,
    /// An admin (edits the member and outcast lists, moderates).
    Admin,
    /// An owner (configures and destroys the room, edits every list).
    Owner,
}

impl Affiliation {
    /// The affiliation an attribute names; anything else is `none`.
    pub fn parse(value: Option<&str>) -> Affiliation {
        match value {
            Some("outcast") => Affiliation::Outcast,
            Some("member") => Affiliation::Member,
            Some("admin") => Affiliation::Admin,
            Some("owner") => Affiliation::Owner,
            _ => Affiliation::None,
        }
    }

    /// The attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }
}

/// Someone in the room, as its last presence showed them (XMPPRoomOccupant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occupant {
    /// Its nick: the room JID's resource.
    pub nick: String,
    /// Its role.
    pub role: Role,
    /// Its affiliation.
    pub affiliation: Affiliation,
    /// The real JID, when the room shows it to us (non-anonymous rooms, or we moderate).
    pub jid: Option<FullJid>,
    /// `away`, `chat`, `dnd`, `xa`, or `None` for plain available.
    pub show: Option<String>,
    /// Its status text.
    pub status: Option<String>,
}

/// Why an occupant (or we) left the room (XEP-0045 §7.14, §9, §10.9 status codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    /// Left by itself, with its parting status text.
    Left {
        /// The parting status text.
        status: Option<String>,
    },
    /// Kicked by a moderator (307).
    Kicked {
        /// The moderator's nick, if the room says.
        actor: Option<String>,
        /// The reason given.
        reason: Option<String>,
    },
    /// Banned (301).
    Banned {
        /// The moderator's nick, if the room says.
        actor: Option<String>,
        /// The reason given.
        reason: Option<String>,
    },
    /// Removed because its affiliation changed (321).
    AffiliationChanged,
    /// Removed because the room became members-only (322).
    MembersOnly,
    /// The service is shutting down (332).
    Shutdown,
    /// Removed after an error of its client, or as the service saw fit (333).
    Error,
    /// The room was destroyed (§10.9), perhaps pointing to where it went.
    Destroyed {
        /// The reason given.
        reason: Option<String>,
        /// The room that replaces it.
        alternate: Option<BareJid>,
    },
}

/// A groupchat message (`xmppRoom:didReceiveMessage:fromOccupant:`).
#[derive(Clone, Debug)]
pub struct RoomMessage {
    /// The sender's nick; `None` for the room itself speaking.
    pub nick: Option<String>,
    /// The sender's real JID, when the room shows it to us.
    pub jid: Option<FullJid>,
    /// Its body.
    pub body: Option<String>,
    /// When it was first sent, for history replayed on joining (XEP-0203 delay).
    pub delayed: Option<SystemTime>,
    /// The id the room gave it (XEP-0359 stanza-id by the room), for archive paging.
    pub stanza_id: Option<String>,
    /// The whole stanza.
    pub stanza: Element,
}

/// Everything one room reports (XMPPRoomDelegate), in the order the room sent it.
#[derive(Clone, Debug)]
pub enum RoomEvent {
    /// We are in (`xmppRoomDidJoin:`); `created` when our join created it
    /// (`xmppRoomDidCreate:`, status 201: the room waits for its configuration).
    Joined {
        /// Our nick (the room may have changed it, status 210).
        nick: String,
        /// Our join created the room.
        created: bool,
    },
    /// We are out (`xmppRoomDidLeave:`, or `xmppRoomDidDestroy:` with
    /// [`LeaveReason::Destroyed`]).
    Left(LeaveReason),
    /// Someone came in (`xmppRoom:occupantDidJoin:withPresence:`).
    OccupantJoined(Occupant),
    /// Someone went (`xmppRoom:occupantDidLeave:withPresence:`).
    OccupantLeft {
        /// Who, as last seen.
        occupant: Occupant,
        /// Why.
        reason: LeaveReason,
    },
    /// Someone's role, affiliation or presence changed (`occupantDidUpdate:withPresence:`);
    /// ours too.
    OccupantChanged {
        /// As it was.
        before: Occupant,
        /// As it is.
        now: Occupant,
    },
    /// Someone (or we) took a new nick (XEP-0045 §7.6): one change, not a leave and a join.
    NickChanged {
        /// The nick it had.
        old: String,
        /// The occupant, with its new nick.
        occupant: Occupant,
    },
    /// A groupchat message, live or from the history sent on joining.
    Message(RoomMessage),
    /// The subject, on joining and whenever it changes (§8.1); `nick` is who set it.
    Subject {
        /// The subject (empty: none).
        subject: String,
        /// Who set it.
        nick: Option<String>,
    },
    /// A private message from an occupant (§7.5).
    PrivateMessage {
        /// The sender's nick.
        nick: String,
        /// Its body.
        body: Option<String>,
        /// The whole stanza.
        stanza: Element,
    },
    /// The room's configuration changed (status 104) or another status without occupant.
    Status {
        /// The status codes (§15.6).
        codes: Vec<u16>,
    },
    /// A message of ours was refused (no voice, not in the room …): its id and condition.
    MessageError {
        /// Our message's id.
        id: Option<String>,
        /// The error's condition.
        condition: String,
    },
    /// The self-ping (XEP-0410) found us no longer in the room; a rejoin follows.
    NotJoined {
        /// The ping's error condition.
        condition: String,
    },
    /// We are back in after the self-ping found us out, or after a new session (the
    /// stream came back after a loss and could not be resumed).
    Rejoined,
    /// Rejoining after a self-ping failed.
    RejoinFailed(String),
    /// The self-ping got no answer, or the room's server is unreachable (XEP-0410 §3.2):
    /// joined or not is unknown; pinging goes on.
    Unreachable,
}

/// An invitation to a room (XMPPMUC's `xmppMUC:roomJID:didReceiveInvitation:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    /// The room.
    pub room: BareJid,
    /// Who invites.
    pub from: Option<Jid>,
    /// Why, in the inviter's words.
    pub reason: Option<String>,
    /// The room's password, if it needs one.
    pub password: Option<String>,
    /// A XEP-0249 direct invitation from the inviter, rather than one mediated by the room.
    pub direct: bool,
}

/// What the MUC module reports outside any open room (XMPPMUCDelegate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MucEvent {
    /// `xmppMUC:roomJID:didReceiveInvitation:`
    Invitation(Invitation),
    /// Someone declined our invitation (`xmppMUC:roomJID:didReceiveInvitationDecline:`).
    Declined {
        /// The room.
        room: BareJid,
        /// Who declined.
        from: Option<Jid>,
        /// Why, in their words.
        reason: Option<String>,
    },
}

/// How much history to get on joining (XEP-0045 §7.2.15; XMPPRoom's `history` element).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// At most this many messages.
    pub max_stanzas: Option<u32>,
    /// At most this many characters of XML (0: none).
    pub max_chars: Option<u32>,
    /// Only messages of the last this many seconds.
    pub seconds: Option<u32>,
    /// Only messages since then.
    pub since: Option<SystemTime>,
}

impl History {
    /// No history at all.
    pub fn none() -> History {
        History {
            max_chars: Some(0),
            ..History::default()
        }
    }
}

/// How to join (`joinRoomUsingNickname:history:password:`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinOptions {
    /// The room's password.
    pub password: Option<String>,
    /// `None`: what the room gives by default.
    pub history: Option<History>,
    /// How long to wait for the room's answer (30 s when `None`).
    pub timeout: Option<Duration>,
}

/// An item of an affiliation or role list (`fetchBanList`, `fetchMembersList`,
/// `fetchModeratorsList`), and of an edit (`editRoomPrivileges:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListItem {
    /// The user's bare JID (affiliations), or the occupant's real JID when shown (roles).
    pub jid: Option<Jid>,
    /// The occupant's nick, when it has one.
    pub nick: Option<String>,
    /// The affiliation (affiliation lists and edits).
    pub affiliation: Option<Affiliation>,
    /// The role (role lists and edits).
    pub role: Option<Role>,
    /// Why, for an edit.
    pub reason: Option<String>,
}

impl ListItem {
    /// Gives `jid` this affiliation (XMPPRoom's `itemWithAffiliation:jid:`).
    pub fn affiliation(jid: BareJid, affiliation: Affiliation) -> ListItem {
        ListItem {
            jid: Some(Jid::from(jid)),
            nick: None,
            affiliation: Some(affiliation),
            role: None,
            reason: None,
        }
    }

    /// Gives the occupant `nick` this role (XMPPRoom's `itemWithRole:jid:`, by nick).
    pub fn role(nick: &str, role: Role) -> ListItem {
        ListItem {
            jid: None,
            nick: Some(nick.to_owned()),
            affiliation: None,
            role: Some(role),
            reason: None,
        }
    }

    /// The same change, with a reason.
    pub fn with_reason(mut self, reason: &str) -> ListItem {
        self.reason = Some(reason.to_owned());
        self
    }
}

/// Why a room operation failed. Entering's refusals are typed by their XEP-0045 §7.2
/// condition.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// `conflict` (§7.2.9): someone else has that nick.
    #[error("that nick is in use")]
    NickInUse,
    /// `not-authorized` (§7.2.5): a password is needed, or it was wrong.
    #[error("a password is required")]
    PasswordRequired,
    /// `registration-required` (§7.2.6): the room is members-only.
    #[error("the room is members-only")]
    MembersOnly,
    /// `forbidden` (§7.2.7): we are banned; or, for other requests, not allowed.
    #[error("forbidden (banned, or not allowed)")]
    Forbidden,
    /// `item-not-found` (§7.2.8): the room is locked, or does not exist.
    #[error("no such room, or it is locked")]
    NotFound,
    /// `not-allowed` (§7.2.8): we may not create rooms.
    #[error("room creation is not allowed")]
    CreationNotAllowed,
    /// `not-acceptable` (§7.2.9): the nick is not one we may use.
    #[error("that nick is not acceptable")]
    NickNotAcceptable,
    /// `service-unavailable` (§7.2.10): the room is full.
    #[error("the room is full")]
    Full,
    /// Another condition.
    #[error("refused: {0}")]
    Refused(String),
    /// A room we meant to create already existed (no status 201).
    #[error("the room already exists")]
    AlreadyExists,
    /// The owner's configuration answer held no form.
    #[error("no configuration form")]
    NoForm,
    /// We are not in the room.
    #[error("not in the room")]
    NotJoined,
    /// The room did not answer in time.
    #[error("no answer from the room in time")]
    Timeout,
    /// An IQ to the room failed.
    #[error(transparent)]
    Request(#[from] RequestError),
}

impl RoomError {
    /// The error for an entering refusal's condition (§7.2).
    pub fn from_condition(condition: &str) -> RoomError {
        match condition {
            "conflict" => RoomError::NickInUse,
            "not-authorized" => RoomError::PasswordRequired,
            "registration-required" => RoomError::MembersOnly,
            "forbidden" => RoomError::Forbidden,
            "item-not-found" => RoomError::NotFound,
            "not-allowed" => RoomError::CreationNotAllowed,
            "not-acceptable" => RoomError::NickNotAcceptable,
            "service-unavailable" => RoomError::Full,
            other => RoomError::Refused(other.to_owned()),
        }
    }
}
