//! Multi-user chat rooms (XEP-0045; XMPPFramework's `XMPPMUC` and `XMPPRoom`).
//!
//! [`Muc::attach`] hooks into a [`Client`] (XMPPMUC): it routes the stanzas of every open
//! room to it by the bare room JID, and reports invitations (mediated, §7.8.2, and direct,
//! XEP-0249) as [`MucEvent`]s. [`Muc::room`] opens a [`Room`] (XMPPRoom) with its own
//! [`RoomEvents`]: joining with a nick, password and history; creating instant or reserved
//! rooms; the configuration form ([`DataForm`]); the affiliation and role lists, kick, ban
//! and voice; invitations, subject, nick changes, leaving and destroying; and the occupant
//! map, kept from the presences the room sends.
//!
//! A room can also check now and then that it is still joined (XEP-0410 self-ping,
//! [`Room::start_self_ping`]) and join again when it is not: servers forget occupants on a
//! restart or a lost s2s link, and nothing tells the client otherwise.

mod incoming;
mod model;
mod self_ping;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corvid_proto::{BareJid, Jid, ns};
use corvid_xml::Element;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use model::{
    Affiliation, History, Invitation, JoinOptions, LeaveReason, ListItem, MucEvent, Occupant, Role,
    RoomError, RoomEvent, RoomMessage,
};

use crate::client::Client;
use crate::forms::DataForm;
use incoming::{Core, Hook, State};

/// How long joining, leaving or changing nick waits for the room unless told otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The MUC module's end of its events.
#[derive(Debug)]
pub struct MucEvents {
    receiver: mpsc::UnboundedReceiver<MucEvent>,
}

impl MucEvents {
    /// The next event; `None` once the module is gone.
    pub async fn next(&mut self) -> Option<MucEvent> {
        self.receiver.recv().await
    }
}

/// A room's end of its events.
#[derive(Debug)]
pub struct RoomEvents {
    receiver: mpsc::UnboundedReceiver<RoomEvent>,
}

impl RoomEvents {
    /// The next event; `None` once the room is gone.
    pub async fn next(&mut self) -> Option<RoomEvent> {
        self.receiver.recv().await
    }
}

/// Multi-user chat for one client (XMPPMUC): the rooms it has open, and invitations.
#[derive(Debug)]
pub struct Muc {
    client: Client,
    hook: Arc<Hook>,
}

impl Muc {
    /// MUC for `client` (XMPPMUC's `activate:`); attach before connecting so no invitation
    /// is missed.
    pub fn attach(client: &Client) -> (Arc<Muc>, MucEvents) {
        let (events, receiver) = mpsc::unbounded_channel();
        let (restarts, mut restarted) = mpsc::unbounded_channel();
        let hook = Arc::new(Hook {
            rooms: Mutex::new(HashMap::new()),
            events,
            restarts,
        });
        client.add_handler(hook.clone());
        let muc = Arc::new(Muc {
            client: client.clone(),
            hook,
        });
        let weak = Arc::downgrade(&muc);
        tokio::spawn(async move {
            while restarted.recv().await.is_some() {
                let Some(muc) = weak.upgrade() else {
                    break;
                };
                for core in muc.hook.open_rooms() {
                    let joined = {
                        let state = core.state();
                        state.joined
                    };
                    if joined {
                        let client = muc.client.clone();
                        tokio::spawn(async move {
                            self_ping::rejoin(&core, &client, None).await;
                        });
                    }
                }
            }
        });
        (muc, MucEvents { receiver })
    }

    /// The room `jid`, to be joined as `nick` (XMPPRoom's `initWithRoomStorage:jid:`
    /// then `activate:`). The room's stanzas go to it while it lives; opening the same
    /// room again hands them to the new one.
    pub fn room(&self, jid: BareJid, nick: &str) -> (Arc<Room>, RoomEvents) {
        let (events, receiver) = mpsc::unbounded_channel();
        let core = Arc::new(Core {
            jid: jid.clone(),
            state: Mutex::new(State {
                nick: nick.to_owned(),
                ..State::default()
            }),
            events,
        });
        self.hook
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(jid, Arc::downgrade(&core));
        let room = Arc::new(Room {
            client: self.client.clone(),
            core,
            self_ping: Mutex::new(None),
        });
        (room, RoomEvents { receiver })
    }
}

/// Joined, as the room's self-presence said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// Our nick (the room may have changed the one asked for, §7.2.12).
    pub nick: String,
    /// Our presence created the room (201): it waits for its configuration (§10.1).
    pub created: bool,
}

/// One room (XMPPRoom). Dropping it stops its self-ping and its stanzas' routing; it does
/// not leave the room.
#[derive(Debug)]
pub struct Room {
    client: Client,
    core: Arc<Core>,
    self_ping: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.stop_self_ping();
    }
}

impl Room {
    /// The room's bare JID (`roomJID`).
    pub fn jid(&self) -> &BareJid {
        &self.core.jid
    }

    /// Our nick in the room (`myRoomJID`'s resource).
    pub fn nick(&self) -> String {
        self.core.state().nick.clone()
    }

    /// Whether we are in (`isJoined`).
    pub fn is_joined(&self) -> bool {
        self.core.state().joined
    }

    /// The current subject (`roomSubject`).
    pub fn subject(&self) -> Option<String> {
        self.core.state().subject.clone()
    }

    /// Everyone in the room, ourselves included, by nick (XMPPRoomMemoryStorage's
    /// occupants).
    pub fn occupants(&self) -> Vec<Occupant> {
        self.core.state().occupants.values().cloned().collect()
    }

    /// The occupant with this nick (XMPPRoomMemoryStorage's `occupantForJID:`).
    pub fn occupant(&self, nick: &str) -> Option<Occupant> {
        self.core.state().occupants.get(nick).cloned()
    }

    /// Enters the room (`joinRoomUsingNickname:history:password:`); done when the room's
    /// self-presence (110) arrives, refused with the room's condition as a [`RoomError`].
    pub async fn join(&self, options: JoinOptions) -> Result<Joined, RoomError> {
        enter(&self.core, &self.client, options).await
    }

    /// Creates an instant room (§10.1.2): joins, expects the room to be new (201), and
    /// accepts the default configuration. `AlreadyExists` (still joined) when it was not
    /// new.
    pub async fn create_instant(&self, options: JoinOptions) -> Result<(), RoomError> {
        self.join_new(options).await?;
        self.configure(&DataForm::empty_submit()).await
    }

    /// Creates a reserved room (§10.1.3): joins, expects the room to be new, fetches the
    /// configuration form, lets `fill` change it, and submits it. The submitted form.
    pub async fn create_reserved(
        &self,
        options: JoinOptions,
        fill: impl FnOnce(&mut DataForm),
    ) -> Result<DataForm, RoomError> {
        self.join_new(options).await?;
        let mut form = self.configuration().await?;
        fill(&mut form);
        let submitted = form.to_submit();
        self.configure(&submitted).await?;
        Ok(submitted)
    }

    async fn join_new(&self, options: JoinOptions) -> Result<(), RoomError> {
        match self.join(options).await? {
            Joined { created: true, .. } => Ok(()),
            Joined { created: false, .. } => Err(RoomError::AlreadyExists),
        }
    }

    /// The room's configuration form (`fetchConfigurationForm`, §10.2).
    pub async fn configuration(&self) -> Result<DataForm, RoomError> {
        let answer = self
            .client
            .request(self.iq("get", Element::new("query", ns::MUC_OWNER)))
            .await?;
        answer
            .get_child("query", ns::MUC_OWNER)
            .and_then(|q| q.get_child("x", ns::DATA_FORMS))
            .and_then(DataForm::parse)
            .ok_or(RoomError::NoForm)
    }

    /// Submits a configuration (`configureRoomUsingOptions:`): a form of type `submit`
    /// as is ([`DataForm::empty_submit`] for the defaults), any other as filled in.
    pub async fn configure(&self, form: &DataForm) -> Result<(), RoomError> {
        let form = if form.kind == "submit" {
            form.to_element()
        } else {
            form.to_submit().to_element()
        };
        let query = Element::new("query", ns::MUC_OWNER).with_child(form);
        self.client.request(self.iq("set", query)).await?;
        Ok(())
    }

    /// Leaves (`leaveRoom`, §7.14) with an optional status text; done when the room's
    /// unavailable self-presence arrives.
    pub async fn leave(&self, status: Option<&str>) -> Result<(), RoomError> {
        let (done, left) = oneshot::channel();
        let nick = {
            let mut state = self.core.state();
            if !state.joined {
                return Err(RoomError::NotJoined);
            }
            state.leave = Some(done);
            state.nick.clone()
        };
        let mut presence = self.presence_to(&nick).with_attr("type", "unavailable");
        if let Some(status) = status {
            presence.append_child(Element::new("status", ns::CLIENT).with_text(status));
        }
        self.client.send(&presence).await?;
        wait(left, DEFAULT_TIMEOUT).await
    }

    /// Destroys the room (`destroyRoom`, §10.9), telling the occupants why and where to
    /// go instead.
    pub async fn destroy(
        &self,
        reason: Option<&str>,
        alternate: Option<&BareJid>,
    ) -> Result<(), RoomError> {
        let mut destroy = Element::new("destroy", ns::MUC_OWNER);
        if let Some(alternate) = alternate {
            destroy.set_attr("jid", alternate.as_str());
        }
        if let Some(reason) = reason {
            destroy.append_child(Element::new("reason", ns::MUC_OWNER).with_text(reason));
        }
        let query = Element::new("query", ns::MUC_OWNER).with_child(destroy);
        self.client.request(self.iq("set", query)).await?;
        Ok(())
    }

    /// Takes a new nick (`changeNickname:`, §7.6); done when the room confirms it,
    /// `NickInUse` when someone has it.
    pub async fn change_nick(&self, nick: &str) -> Result<(), RoomError> {
        let (done, changed) = oneshot::channel();
        {
            let mut state = self.core.state();
            if !state.joined {
                return Err(RoomError::NotJoined);
            }
            state.renaming = Some((nick.to_owned(), done));
        }
        self.client.send(&self.presence_to(nick)).await?;
        wait(changed, DEFAULT_TIMEOUT).await?
    }

    /// Changes the subject (`changeRoomSubject:`, §8.1); the room's answer comes as a
    /// [`RoomEvent::Subject`], or a refusal as a [`RoomEvent::MessageError`].
    pub async fn set_subject(&self, subject: &str) -> Result<(), RoomError> {
        let message = self
            .groupchat()
            .with_child(Element::new("subject", ns::CLIENT).with_text(subject));
        Ok(self.client.send(&message).await?)
    }

    /// Says `body` to the room (`sendMessageWithBody:`); the id of the message, which the
    /// room keeps on its copy and on an error.
    pub async fn send_message(&self, body: &str) -> Result<String, RoomError> {
        let id = self.client.new_id();
        let message = self
            .groupchat()
            .with_attr("id", id.clone())
            .with_child(Element::new("body", ns::CLIENT).with_text(body));
        self.client.send(&message).await?;
        Ok(id)
    }

    /// A private message to the occupant `nick` (§7.5).
    pub async fn send_private(&self, nick: &str, body: &str) -> Result<(), RoomError> {
        let message = Element::new("message", ns::CLIENT)
            .with_attr("to", self.occupant_jid(nick))
            .with_attr("type", "chat")
            .with_child(Element::new("body", ns::CLIENT).with_text(body))
            .with_child(Element::new("x", ns::MUC_USER));
        Ok(self.client.send(&message).await?)
    }

    /// Invites `jid` through the room (`inviteUser:withMessage:`, §7.8.2).
    pub async fn invite(&self, jid: &BareJid, reason: Option<&str>) -> Result<(), RoomError> {
        let mut invite = Element::new("invite", ns::MUC_USER).with_attr("to", jid.as_str());
        if let Some(reason) = reason {
            invite.append_child(Element::new("reason", ns::MUC_USER).with_text(reason));
        }
        let message = Element::new("message", ns::CLIENT)
            .with_attr("to", self.jid().as_str())
            .with_child(Element::new("x", ns::MUC_USER).with_child(invite));
        Ok(self.client.send(&message).await?)
    }

    /// Invites `jid` directly (XEP-0249), with the password we joined with, if any.
    pub async fn invite_direct(&self, jid: &Jid, reason: Option<&str>) -> Result<(), RoomError> {
        let mut x = Element::new("x", ns::MUC_DIRECT_INVITE).with_attr("jid", self.jid().as_str());
        if let Some(reason) = reason {
            x.set_attr("reason", reason);
        }
        if let Some(password) = self.core.state().options.password.clone() {
            x.set_attr("password", password);
        }
        let message = Element::new("message", ns::CLIENT)
            .with_attr("to", jid.as_str())
            .with_child(x);
        Ok(self.client.send(&message).await?)
    }

    /// The users with an affiliation (§9.5 members, §9.8 outcasts, §10.5 owners, §10.8
    /// admins; XMPPRoom's `fetchMembersList`, `fetchBanList`).
    pub async fn affiliations(&self, affiliation: Affiliation) -> Result<Vec<ListItem>, RoomError> {
        self.list("affiliation", affiliation.as_str()).await
    }

    /// The occupants with a role (§8.5 participants with voice, §9.8 moderators;
    /// XMPPRoom's `fetchModeratorsList`).
    pub async fn roles(&self, role: Role) -> Result<Vec<ListItem>, RoomError> {
        self.list("role", role.as_str()).await
    }

    async fn list(&self, attr: &str, value: &str) -> Result<Vec<ListItem>, RoomError> {
        let query = Element::new("query", ns::MUC_ADMIN)
            .with_child(Element::new("item", ns::MUC_ADMIN).with_attr(attr, value));
        let answer = self.client.request(self.iq("get", query)).await?;
        let items = answer
            .get_child("query", ns::MUC_ADMIN)
            .map(|q| {
                q.children()
                    .filter(|c| c.is("item", ns::MUC_ADMIN))
                    .map(list_item)
                    .collect()
            })
            .unwrap_or_default();
        Ok(items)
    }

    /// Changes affiliations and roles in one request (`editRoomPrivileges:`, §9, §10):
    /// all are applied or none. Prosody 0.12 applies only the first item of a request;
    /// one item per call works everywhere.
    pub async fn edit(&self, items: &[ListItem]) -> Result<(), RoomError> {
        let mut query = Element::new("query", ns::MUC_ADMIN);
        for item in items {
            let mut el = Element::new("item", ns::MUC_ADMIN);
            if let Some(jid) = &item.jid {
                el.set_attr("jid", jid.as_str());
            }
            if let Some(nick) = &item.nick {
                el.set_attr("nick", nick.clone());
            }
            if let Some(affiliation) = item.affiliation {
                el.set_attr("affiliation", affiliation.as_str());
            }
            if let Some(role) = item.role {
                el.set_attr("role", role.as_str());
            }
            if let Some(reason) = &item.reason {
                el.append_child(Element::new("reason", ns::MUC_ADMIN).with_text(reason.clone()));
            }
            query.append_child(el);
        }
        self.client.request(self.iq("set", query)).await?;
        Ok(())
    }

    /// Gives `jid` an affiliation (member, admin, owner, outcast, or none).
    pub async fn set_affiliation(
        &self,
        jid: &BareJid,
        affiliation: Affiliation,
        reason: Option<&str>,
    ) -> Result<(), RoomError> {
        let mut item = ListItem::affiliation(jid.clone(), affiliation);
        item.reason = reason.map(str::to_owned);
        self.edit(&[item]).await
    }

    /// Gives the occupant `nick` a role.
    pub async fn set_role(
        &self,
        nick: &str,
        role: Role,
        reason: Option<&str>,
    ) -> Result<(), RoomError> {
        let mut item = ListItem::role(nick, role);
        item.reason = reason.map(str::to_owned);
        self.edit(&[item]).await
    }

    /// Kicks an occupant (§8.2: role none).
    pub async fn kick(&self, nick: &str, reason: Option<&str>) -> Result<(), RoomError> {
        self.set_role(nick, Role::None, reason).await
    }

    /// Bans a user (§9.1: affiliation outcast).
    pub async fn ban(&self, jid: &BareJid, reason: Option<&str>) -> Result<(), RoomError> {
        self.set_affiliation(jid, Affiliation::Outcast, reason)
            .await
    }

    /// Gives an occupant voice (§8.3: role participant).
    pub async fn grant_voice(&self, nick: &str) -> Result<(), RoomError> {
        self.set_role(nick, Role::Participant, None).await
    }

    /// Takes an occupant's voice (§8.4: role visitor).
    pub async fn revoke_voice(&self, nick: &str) -> Result<(), RoomError> {
        self.set_role(nick, Role::Visitor, None).await
    }

    /// Pings our own occupant JID every `interval` (XEP-0410), waiting `timeout` for each
    /// answer. A result, `service-unavailable` or `feature-not-implemented` mean we are in;
    /// no answer, `remote-server-not-found` or `remote-server-timeout` mean the room is out of
    /// reach ([`RoomEvent::Unreachable`]; pinging goes on); any other error means we are not
    /// in: [`RoomEvent::NotJoined`], then a rejoin with the options of the last join and
    /// [`RoomEvent::Rejoined`] (or [`RoomEvent::RejoinFailed`]). Replaces any running
    /// self-ping; stops with [`Room::stop_self_ping`] or when the room is dropped.
    pub fn start_self_ping(&self, interval: Duration, timeout: Duration) {
        let core = Arc::downgrade(&self.core);
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate
            loop {
                ticks.tick().await;
                let Some(core) = core.upgrade() else { break };
                self_ping::check(&core, &client, timeout).await;
            }
        });
        if let Some(old) = self.lock_self_ping().replace(task) {
            old.abort();
        }
    }

    /// Stops the self-ping.
    pub fn stop_self_ping(&self) {
        if let Some(task) = self.lock_self_ping().take() {
            task.abort();
        }
    }

    fn lock_self_ping(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.self_ping.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{nick}", self.core.jid)
    }

    fn presence_to(&self, nick: &str) -> Element {
        Element::new("presence", ns::CLIENT).with_attr("to", self.occupant_jid(nick))
    }

    fn groupchat(&self) -> Element {
        Element::new("message", ns::CLIENT)
            .with_attr("to", self.jid().as_str())
            .with_attr("type", "groupchat")
    }

    fn iq(&self, kind: &str, payload: Element) -> Element {
        Element::new("iq", ns::CLIENT)
            .with_attr("type", kind)
            .with_attr("to", self.jid().as_str())
            .with_child(payload)
    }
}

/// Sends the join presence (§7.2.1, with §7.2.5 password and §7.2.15 history) and waits
/// for the self-presence or the refusal.
async fn enter(core: &Core, client: &Client, options: JoinOptions) -> Result<Joined, RoomError> {
    let (done, joined) = oneshot::channel();
    let timeout = options.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut x = Element::new("x", ns::MUC);
    if let Some(password) = &options.password {
        x.append_child(Element::new("password", ns::MUC).with_text(password.clone()));
    }
    if let Some(history) = &options.history {
        x.append_child(history_element(history));
    }
    let nick = {
        let mut state = core.state();
        state.options = options;
        state.join = Some(done);
        state.seen.clear();
        state.nick.clone()
    };
    let presence = Element::new("presence", ns::CLIENT)
        .with_attr("to", format!("{}/{nick}", core.jid))
        .with_child(x);
    if let Err(e) = client.send(&presence).await {
        core.state().join = None;
        return Err(e.into());
    }
    let result = wait(joined, timeout).await;
    if result.is_err() {
        core.state().join = None;
    }
    let (nick, created) = result??;
    Ok(Joined { nick, created })
}

fn history_element(history: &History) -> Element {
    let mut el = Element::new("history", ns::MUC);
    let numbers = [
        ("maxstanzas", history.max_stanzas),
        ("maxchars", history.max_chars),
        ("seconds", history.seconds),
    ];
    for (attr, value) in numbers {
        if let Some(value) = value {
            el.set_attr(attr, value.to_string());
        }
    }
    if let Some(since) = history.since {
        el.set_attr("since", corvid_proto::time::format_datetime(since));
    }
    el
}

/// Waits for a oneshot answer, up to `timeout`.
async fn wait<T>(answer: oneshot::Receiver<T>, timeout: Duration) -> Result<T, RoomError> {
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(RoomError::NotJoined),
        Err(_) => Err(RoomError::Timeout),
    }
}

fn list_item(item: &Element) -> ListItem {
    ListItem {
        jid: item.attr("jid").and_then(|j| Jid::new(j).ok()),
        nick: item.attr("nick").map(str::to_owned),
        affiliation: item
            .attr("affiliation")
            .map(|a| Affiliation::parse(Some(a))),
        role: item.attr("role").map(|r| Role::parse(Some(r))),
        reason: item.get_child("reason", ns::MUC_ADMIN).map(Element::text),
    }
}
