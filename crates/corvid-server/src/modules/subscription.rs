//! The presence subscription state machine of RFC 6121 Appendix A, as pure functions.
//!
//! For one (user, contact) pair, [`outbound`] says what the user's server does when the
//! user sends a subscription stanza to the contact (Appendix A.2, Tables 2–5, with the
//! pre-approval rules of §3.4), and [`inbound`] what it does when the user receives one
//! from the contact (Appendix A.3, Tables 6–9). Both return the new state plus what to
//! route, deliver, push and answer; the caller does the storage and the sending, so every
//! rule of the appendix is testable here without a server.
//!
//! A roster push is asked for only when something a roster item shows changes: the
//! `subscription`, `ask` and `approved` attributes (RFC 6121 §2.1.2). "Pending In" has no
//! attribute, so a change to it alone pushes nothing; this also keeps a contact known only
//! from an inbound request out of the user's roster (§3.1.3).

use corvid_store::{RosterItem, Subscription};

/// The subscription state of one (user, contact) pair as RFC 6121 Appendix A names them.
///
/// The nine states of Appendix A.1 are `subscription` plus the two pending flags; `approved`
/// is the pre-approval of §3.4, which only exists without "From" and without "Pending In".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SubState {
    pub subscription: Subscription,
    /// "Pending Out" (`ask='subscribe'`): the user asked and the contact has not answered.
    pub pending_out: bool,
    /// "Pending In": the contact asked and the user has not answered.
    pub pending_in: bool,
    /// The user pre-approved a subscription request from the contact (RFC 6121 §3.4).
    pub approved: bool,
}

impl SubState {
    /// The state of a stored item; no item is "None" (RFC 6121 Appendix A.1, Implementation
    /// Note). Flags that cannot hold alongside the subscription are dropped, so the
    /// transitions only ever see one of the states Appendix A defines.
    pub fn of(item: Option<&RosterItem>) -> SubState {
        let Some(item) = item else {
            return SubState::default();
        };
        let subscription = item.subscription;
        SubState {
            subscription,
            pending_out: item.pending_out && !subscription.has_to(),
            pending_in: item.pending_in && !subscription.has_from(),
            approved: item.approved && !item.pending_in && !subscription.has_from(),
        }
    }

    /// Write the state into `item`. A state the user's roster must show (RFC 6121 Appendix
    /// A.1: anything but a bare "None" or "None + Pending In") puts the item in the roster;
    /// once nothing is pending in, the stored request is dropped (§3.1.3 step 4: it is kept
    /// only until the user approves or denies it).
    pub fn apply_to(self, item: &mut RosterItem) {
        item.subscription = self.subscription;
        item.pending_out = self.pending_out;
        item.pending_in = self.pending_in;
        item.approved = self.approved;
        if self.subscription != Subscription::None || self.pending_out || self.approved {
            item.in_roster = true;
        }
        if !self.pending_in {
            item.pending_in_stanza = None;
        }
    }

    /// What a roster push shows: `subscription`, `ask` and `approved`.
    fn visible(self) -> (Subscription, bool, bool) {
        (self.subscription, self.pending_out, self.approved)
    }

    fn with_to(mut self, to: bool) -> SubState {
        self.subscription = subscription(to, self.subscription.has_from());
        self
    }

    fn with_from(mut self, from: bool) -> SubState {
        self.subscription = subscription(self.subscription.has_to(), from);
        self
    }
}

fn subscription(to: bool, from: bool) -> Subscription {
    match (to, from) {
        (false, false) => Subscription::None,
        (true, false) => Subscription::To,
        (false, true) => Subscription::From,
        (true, true) => Subscription::Both,
    }
}

/// The four subscription-related presence types (RFC 6121 §4.7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubKind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl SubKind {
    pub fn parse(presence_type: &str) -> Option<Self> {
        match presence_type {
            "subscribe" => Some(SubKind::Subscribe),
            "subscribed" => Some(SubKind::Subscribed),
            "unsubscribe" => Some(SubKind::Unsubscribe),
            "unsubscribed" => Some(SubKind::Unsubscribed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubKind::Subscribe => "subscribe",
            SubKind::Subscribed => "subscribed",
            SubKind::Unsubscribe => "unsubscribe",
            SubKind::Unsubscribed => "unsubscribed",
        }
    }
}

/// Presence the server sends to the contact on the user's behalf, from each of the user's
/// available resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceAction {
    /// The current presence of each available resource (RFC 6121 §3.1.5).
    Available,
    /// `type='unavailable'` from each available resource (RFC 6121 §3.2.2, §3.3.3 step 3).
    Unavailable,
}

/// What the server does when the USER sends a subscription stanza to the contact
/// (RFC 6121 §3.1.2, §3.1.5, §3.2.2, §3.3.2, §3.4.2, Appendix A.2).
///
/// Order: unavailable presence before the stanza (§3.2.2), available presence after it
/// (§3.1.5), the roster push last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outbound {
    pub new: SubState,
    /// Route the stanza to the contact.
    pub route: bool,
    /// Send a roster push to the user's interested resources.
    pub push: bool,
    /// Additionally send the contact this presence of the user's.
    pub send_presence: Option<PresenceAction>,
}

/// What the server does when the USER receives a subscription stanza from the contact
/// (RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3, §3.4.2, Appendix A.3).
///
/// Order: deliver before pushing (step 1 of §3.1.6, §3.2.3 and §3.3.3), then the reply
/// and presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub new: SubState,
    /// Deliver the stanza to the user's resources (a `subscribe` is stored when none is
    /// available, §3.1.3 step 4).
    pub deliver: bool,
    /// Send a roster push to the user's interested resources.
    pub push: bool,
    /// The server answers the contact itself on the user's behalf.
    pub auto_reply: Option<SubKind>,
    /// Additionally send the contact this presence of the user's.
    pub send_presence: Option<PresenceAction>,
}

/// Process a subscription stanza the user sends to the contact.
#[must_use]
pub fn outbound(state: SubState, kind: SubKind) -> Outbound {
    let (new, route, send_presence) = match kind {
        // A.2.1 (Table 2): always routed; "Pending Out" unless the user already has "To".
        SubKind::Subscribe => {
            let mut new = state;
            new.pending_out = !state.subscription.has_to();
            (new, true, None)
        }
        // A.2.2 (Table 3): always routed; drops "To" and "Pending Out".
        SubKind::Unsubscribe => {
            let mut new = state.with_to(false);
            new.pending_out = false;
            (new, true, None)
        }
        SubKind::Subscribed => outbound_subscribed(state),
        SubKind::Unsubscribed => outbound_unsubscribed(state),
    };
    Outbound {
        new,
        route,
        push: new.visible() != state.visible(),
        send_presence,
    }
}

/// A.2.3 (Table 4) and §3.4.2: approve a pending request, or pre-approve one.
fn outbound_subscribed(state: SubState) -> (SubState, bool, Option<PresenceAction>) {
    if state.subscription.has_from() {
        // §3.4.2 step 1: "From", "From + Pending Out", "Both" — silently ignored.
        (state, false, None)
    } else if state.pending_in {
        // §3.4.2 step 2, §3.1.5: a normal approval, routed, then the user's presence follows.
        let mut new = state.with_from(true);
        new.pending_in = false;
        new.approved = false;
        (new, true, Some(PresenceAction::Available))
    } else {
        // §3.4.2 steps 3–4: "None", "None + Pending Out", "To" — note the pre-approval,
        // push it, but MUST NOT route the stanza.
        let mut new = state;
        new.approved = true;
        (new, false, None)
    }
}

/// A.2.4 (Table 5) and §3.2.2: cancel "From", deny "Pending In", or cancel a pre-approval.
fn outbound_unsubscribed(state: SubState) -> (SubState, bool, Option<PresenceAction>) {
    let mut new = state.with_from(false);
    new.pending_in = false;
    new.approved = false;
    if state.subscription.has_from() {
        // §3.2.2 step 3: unavailable from each resource first, then the stanza, then a push.
        (new, true, Some(PresenceAction::Unavailable))
    } else if state.pending_in {
        // Denying a request: routed, but the contact never had the user's presence, so no
        // unavailable presence is owed (it would only reveal the user's resources).
        (new, true, None)
    } else {
        // §3.2.2 steps 1–2: "None", "None + Pending Out", "To" — SHOULD NOT route (MUST NOT
        // with a pre-approval, which is removed).
        (new, false, None)
    }
}

/// Process a subscription stanza the user receives from the contact.
#[must_use]
pub fn inbound(state: SubState, kind: SubKind) -> Inbound {
    let (new, auto_reply, send_presence) = match kind {
        SubKind::Subscribe => inbound_subscribe(state),
        // A.3.2 (Table 7) and §3.3.3: drops "From" and "Pending In"; when that changes the
        // state the server SHOULD confirm with "unsubscribed", and MUST send unavailable
        // presence if the contact had the user's presence.
        SubKind::Unsubscribe => {
            let mut new = state.with_from(false);
            new.pending_in = false;
            let reply = (new != state).then_some(SubKind::Unsubscribed);
            let unavailable = state
                .subscription
                .has_from()
                .then_some(PresenceAction::Unavailable);
            (new, reply, unavailable)
        }
        // A.3.3 (Table 8) and §3.1.6: only an answer to "Pending Out" counts; any other
        // "subscribed" is silently ignored.
        SubKind::Subscribed if state.pending_out => {
            let mut new = state.with_to(true);
            new.pending_out = false;
            (new, None, None)
        }
        SubKind::Subscribed => (state, None, None),
        // A.3.4 (Table 9) and §3.2.3: drops "To" and "Pending Out".
        SubKind::Unsubscribed => {
            let mut new = state.with_to(false);
            new.pending_out = false;
            (new, None, None)
        }
    };
    // A.3: "if the stanza results in a subscription state change ... MUST deliver";
    // otherwise the server "SHOULD NOT deliver". A pre-approved request is the exception:
    // it changes the state yet MUST NOT be delivered (§3.4.2).
    let deliver = new != state && auto_reply != Some(SubKind::Subscribed);
    Inbound {
        new,
        deliver,
        push: new.visible() != state.visible(),
        auto_reply,
        send_presence,
    }
}

/// A.3.1 (Table 6), §3.1.3 and §3.4.2.
fn inbound_subscribe(state: SubState) -> (SubState, Option<SubKind>, Option<PresenceAction>) {
    if state.subscription.has_from() {
        // §3.1.3 step 2: the contact already has the user's presence; answer for the user.
        // The answer is an approval, so the user's presence follows as in §3.1.5.
        (
            state,
            Some(SubKind::Subscribed),
            Some(PresenceAction::Available),
        )
    } else if state.approved {
        // §3.4.2 and Table 6 note [1]: pre-approved — answer "subscribed", go to "From"
        // (keeping "Pending Out"), and do not bother the user. The pre-approval is used up.
        let mut new = state.with_from(true);
        new.approved = false;
        (
            new,
            Some(SubKind::Subscribed),
            Some(PresenceAction::Available),
        )
    } else {
        // "Pending In"; a repeated request changes nothing and is not delivered again.
        let mut new = state;
        new.pending_in = true;
        (new, None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PresenceAction::{Available, Unavailable};
    use SubKind::{Subscribe, Subscribed, Unsubscribe, Unsubscribed};

    const fn st(subscription: Subscription, pending_out: bool, pending_in: bool) -> SubState {
        SubState {
            subscription,
            pending_out,
            pending_in,
            approved: false,
        }
    }

    const fn approved(mut s: SubState) -> SubState {
        s.approved = true;
        s
    }

    // The nine states of RFC 6121 Appendix A.1, in the order of its tables.
    const NONE: SubState = st(Subscription::None, false, false);
    const NONE_PO: SubState = st(Subscription::None, true, false);
    const NONE_PI: SubState = st(Subscription::None, false, true);
    const NONE_POPI: SubState = st(Subscription::None, true, true);
    const TO: SubState = st(Subscription::To, false, false);
    const TO_PI: SubState = st(Subscription::To, false, true);
    const FROM: SubState = st(Subscription::From, false, false);
    const FROM_PO: SubState = st(Subscription::From, true, false);
    const BOTH: SubState = st(Subscription::Both, false, false);
    const ALL: [SubState; 9] = [
        NONE, NONE_PO, NONE_PI, NONE_POPI, TO, TO_PI, FROM, FROM_PO, BOTH,
    ];

    fn name(s: SubState) -> String {
        let base = match s.subscription {
            Subscription::None => "None",
            Subscription::To => "To",
            Subscription::From => "From",
            Subscription::Both => "Both",
        };
        let pending = match (s.pending_out, s.pending_in) {
            (false, false) => "",
            (true, false) => " + Pending Out",
            (false, true) => " + Pending In",
            (true, true) => " + Pending Out+In",
        };
        format!(
            "{base}{pending}{}",
            if s.approved { " (approved)" } else { "" }
        )
    }

    /// One row of an Appendix A.2 table: (existing, new state, route, push, presence sent).
    type OutRow = (SubState, SubState, bool, bool, Option<PresenceAction>);

    fn check_outbound(kind: SubKind, rows: [OutRow; 9]) {
        for (state, new, route, push, send_presence) in rows {
            let got = outbound(state, kind);
            let want = Outbound {
                new,
                route,
                push,
                send_presence,
            };
            assert_eq!(
                got,
                want,
                "outbound {} in \"{}\"",
                kind.as_str(),
                name(state)
            );
        }
    }

    /// One row of an Appendix A.3 table: (existing, new, deliver, push, auto-reply, presence).
    type InRow = (
        SubState,
        SubState,
        bool,
        bool,
        Option<SubKind>,
        Option<PresenceAction>,
    );

    fn check_inbound(kind: SubKind, rows: [InRow; 9]) {
        for (state, new, deliver, push, auto_reply, send_presence) in rows {
            let got = inbound(state, kind);
            let want = Inbound {
                new,
                deliver,
                push,
                auto_reply,
                send_presence,
            };
            assert_eq!(
                got,
                want,
                "inbound {} in \"{}\"",
                kind.as_str(),
                name(state)
            );
        }
    }

    #[test]
    fn outbound_subscribe_follows_table_2() {
        // RFC 6121 A.2.1 Table 2: ROUTE? MUST in every row; [1] = sets ask='subscribe'.
        check_outbound(
            Subscribe,
            [
                (NONE, NONE_PO, true, true, None), // "None": MUST [1] -> "None + Pending Out"
                (NONE_PO, NONE_PO, true, false, None), // "None + Pending Out": MUST, no state change
                (NONE_PI, NONE_POPI, true, true, None), // "None + Pending In": MUST [1] -> "None + Pending Out+In"
                (NONE_POPI, NONE_POPI, true, false, None), // "None + Pending Out+In": MUST, no state change
                (TO, TO, true, false, None),               // "To": MUST, no state change
                (TO_PI, TO_PI, true, false, None), // "To + Pending In": MUST, no state change
                (FROM, FROM_PO, true, true, None), // "From": MUST [1] -> "From + Pending Out"
                (FROM_PO, FROM_PO, true, false, None), // "From + Pending Out": MUST, no state change
                (BOTH, BOTH, true, false, None),       // "Both": MUST, no state change
            ],
        );
    }

    #[test]
    fn outbound_unsubscribe_follows_table_3() {
        // RFC 6121 A.2.2 Table 3: ROUTE? MUST in every row; push per §3.3.2.
        check_outbound(
            Unsubscribe,
            [
                (NONE, NONE, true, false, None),        // "None": no state change
                (NONE_PO, NONE, true, true, None),      // "None + Pending Out" -> "None"
                (NONE_PI, NONE_PI, true, false, None),  // "None + Pending In": no state change
                (NONE_POPI, NONE_PI, true, true, None), // "None + Pending Out+In" -> "None + Pending In"
                (TO, NONE, true, true, None),           // "To" -> "None"
                (TO_PI, NONE_PI, true, true, None),     // "To + Pending In" -> "None + Pending In"
                (FROM, FROM, true, false, None),        // "From": no state change
                (FROM_PO, FROM, true, true, None),      // "From + Pending Out" -> "From"
                (BOTH, FROM, true, true, None),         // "Both" -> "From"
            ],
        );
    }

    #[test]
    fn outbound_subscribed_follows_table_4() {
        // RFC 6121 A.2.3 Table 4 (M.N. = MUST NOT route), with §3.1.5 and §3.4.2.
        check_outbound(
            Subscribed,
            [
                (NONE, approved(NONE), false, true, None), // "None": M.N., pre-approval [1]
                (NONE_PO, approved(NONE_PO), false, true, None), // "None + Pending Out": M.N., pre-approval [1]
                (NONE_PI, FROM, true, true, Some(Available)), // "None + Pending In": MUST -> "From"
                (NONE_POPI, FROM_PO, true, true, Some(Available)), // "None + Pending Out+In": MUST -> "From + Pending Out"
                (TO, approved(TO), false, true, None),             // "To": M.N., pre-approval [1]
                (TO_PI, BOTH, true, true, Some(Available)), // "To + Pending In": MUST -> "Both"
                (FROM, FROM, false, false, None),           // "From": M.N., no state change
                (FROM_PO, FROM_PO, false, false, None), // "From + Pending Out": M.N., no state change
                (BOTH, BOTH, false, false, None),       // "Both": M.N., no state change
            ],
        );
    }

    #[test]
    fn outbound_unsubscribed_follows_table_5() {
        // RFC 6121 A.2.4 Table 5 (S.N. = SHOULD NOT route), with §3.2.2. Denying a pending
        // request changes no roster attribute, so it pushes nothing.
        check_outbound(
            Unsubscribed,
            [
                (NONE, NONE, false, false, None), // "None": S.N., no state change [1]
                (NONE_PO, NONE_PO, false, false, None), // "None + Pending Out": S.N., no state change [1]
                (NONE_PI, NONE, true, false, None),     // "None + Pending In": MUST -> "None"
                (NONE_POPI, NONE_PO, true, false, None), // "None + Pending Out+In": MUST -> "None + Pending Out"
                (TO, TO, false, false, None),            // "To": S.N., no state change [1]
                (TO_PI, TO, true, false, None),          // "To + Pending In": MUST -> "To"
                (FROM, NONE, true, true, Some(Unavailable)), // "From": MUST -> "None"
                (FROM_PO, NONE_PO, true, true, Some(Unavailable)), // "From + Pending Out": MUST -> "None + Pending Out"
                (BOTH, TO, true, true, Some(Unavailable)),         // "Both": MUST -> "To"
            ],
        );
    }

    #[test]
    fn inbound_subscribe_follows_table_6() {
        // RFC 6121 A.3.1 Table 6 (S.N. = SHOULD NOT deliver); [2] = auto-reply "subscribed".
        let yes = Some(Subscribed);
        check_inbound(
            Subscribe,
            [
                (NONE, NONE_PI, true, false, None, None), // "None": MUST [1] -> "None + Pending In"
                (NONE_PO, NONE_POPI, true, false, None, None), // "None + Pending Out": MUST -> "None + Pending Out+In"
                (NONE_PI, NONE_PI, false, false, None, None), // "None + Pending In": S.N., no state change
                (NONE_POPI, NONE_POPI, false, false, None, None), // "None + Pending Out+In": S.N., no state change
                (TO, TO_PI, true, false, None, None),             // "To": MUST -> "To + Pending In"
                (TO_PI, TO_PI, false, false, None, None), // "To + Pending In": S.N., no state change
                (FROM, FROM, false, false, yes, Some(Available)), // "From": S.N. [2], no state change
                (FROM_PO, FROM_PO, false, false, yes, Some(Available)), // "From + Pending Out": S.N. [2], no state change
                (BOTH, BOTH, false, false, yes, Some(Available)), // "Both": S.N. [2], no state change
            ],
        );
    }

    #[test]
    fn inbound_unsubscribe_follows_table_7() {
        // RFC 6121 A.3.2 Table 7; [1] = auto-reply "unsubscribed"; §3.3.3 step 3 unavailable.
        let no = Some(Unsubscribed);
        check_inbound(
            Unsubscribe,
            [
                (NONE, NONE, false, false, None, None), // "None": S.N., no state change
                (NONE_PO, NONE_PO, false, false, None, None), // "None + Pending Out": S.N., no state change
                (NONE_PI, NONE, true, false, no, None), // "None + Pending In": MUST [1] -> "None"
                (NONE_POPI, NONE_PO, true, false, no, None), // "None + Pending Out+In": MUST [1] -> "None + Pending Out"
                (TO, TO, false, false, None, None),          // "To": S.N., no state change
                (TO_PI, TO, true, false, no, None),          // "To + Pending In": MUST [1] -> "To"
                (FROM, NONE, true, true, no, Some(Unavailable)), // "From": MUST [1] -> "None"
                (FROM_PO, NONE_PO, true, true, no, Some(Unavailable)), // "From + Pending Out": MUST [1] -> "None + Pending Out"
                (BOTH, TO, true, true, no, Some(Unavailable)),         // "Both": MUST [1] -> "To"
            ],
        );
    }

    #[test]
    fn inbound_subscribed_follows_table_8() {
        // RFC 6121 A.3.3 Table 8; §3.1.6: without "Pending Out" it is silently ignored.
        check_inbound(
            Subscribed,
            [
                (NONE, NONE, false, false, None, None), // "None": S.N., no state change
                (NONE_PO, TO, true, true, None, None),  // "None + Pending Out": MUST -> "To"
                (NONE_PI, NONE_PI, false, false, None, None), // "None + Pending In": S.N., no state change
                (NONE_POPI, TO_PI, true, true, None, None), // "None + Pending Out+In": MUST -> "To + Pending In"
                (TO, TO, false, false, None, None),         // "To": S.N., no state change
                (TO_PI, TO_PI, false, false, None, None), // "To + Pending In": S.N., no state change
                (FROM, FROM, false, false, None, None),   // "From": S.N., no state change
                (FROM_PO, BOTH, true, true, None, None),  // "From + Pending Out": MUST -> "Both"
                (BOTH, BOTH, false, false, None, None),   // "Both": S.N., no state change
            ],
        );
    }

    #[test]
    fn inbound_unsubscribed_follows_table_9() {
        // RFC 6121 A.3.4 Table 9, §3.2.3.
        check_inbound(
            Unsubscribed,
            [
                (NONE, NONE, false, false, None, None), // "None": S.N., no state change
                (NONE_PO, NONE, true, true, None, None), // "None + Pending Out": MUST -> "None"
                (NONE_PI, NONE_PI, false, false, None, None), // "None + Pending In": S.N., no state change
                (NONE_POPI, NONE_PI, true, true, None, None), // "None + Pending Out+In": MUST -> "None + Pending In"
                (TO, NONE, true, true, None, None),           // "To": MUST -> "None"
                (TO_PI, NONE_PI, true, true, None, None), // "To + Pending In": MUST -> "None + Pending In"
                (FROM, FROM, false, false, None, None),   // "From": S.N., no state change
                (FROM_PO, FROM, true, true, None, None),  // "From + Pending Out": MUST -> "From"
                (BOTH, FROM, true, true, None, None),     // "Both": MUST -> "From"
            ],
        );
    }

    #[test]
    fn pre_approved_request_is_answered_by_the_server_not_delivered() {
        // §3.4.2: MUST NOT deliver, MUST answer "subscribed"; Table 6 note [1]: -> "From".
        for (state, new) in [(NONE, FROM), (NONE_PO, FROM_PO), (TO, BOTH)] {
            let got = inbound(approved(state), Subscribe);
            let want = Inbound {
                new,
                deliver: false,
                push: true,
                auto_reply: Some(Subscribed),
                send_presence: Some(Available),
            };
            assert_eq!(got, want, "pre-approved {}", name(state));
        }
    }

    #[test]
    fn repeated_pre_approval_changes_nothing() {
        for state in [NONE, NONE_PO, TO] {
            let got = outbound(approved(state), Subscribed);
            assert_eq!(
                got,
                Outbound {
                    new: approved(state),
                    route: false,
                    push: false,
                    send_presence: None
                }
            );
        }
    }

    #[test]
    fn unsubscribed_cancels_a_pre_approval_without_routing() {
        // §3.2.2 step 2: remove the pre-approval, MUST NOT route; §3.4 note: push it.
        for state in [NONE, NONE_PO, TO] {
            let got = outbound(approved(state), Unsubscribed);
            assert_eq!(
                got,
                Outbound {
                    new: state,
                    route: false,
                    push: true,
                    send_presence: None
                }
            );
        }
    }

    #[test]
    fn pre_approval_survives_the_users_own_subscription_changes() {
        assert_eq!(outbound(approved(NONE), Subscribe).new, approved(NONE_PO));
        assert_eq!(outbound(approved(TO), Unsubscribe).new, approved(NONE));
        assert_eq!(inbound(approved(NONE_PO), Subscribed).new, approved(TO));
        assert_eq!(inbound(approved(TO), Unsubscribed).new, approved(NONE));
    }

    /// Every state reachable from "None" by any sequence of stanzas in either direction.
    fn reachable() -> Vec<SubState> {
        let mut seen = vec![NONE];
        let mut i = 0;
        while i < seen.len() {
            for kind in [Subscribe, Subscribed, Unsubscribe, Unsubscribed] {
                for next in [outbound(seen[i], kind).new, inbound(seen[i], kind).new] {
                    if !seen.contains(&next) {
                        seen.push(next);
                    }
                }
            }
            i += 1;
        }
        seen
    }

    #[test]
    fn only_appendix_a_states_are_reachable() {
        let states = reachable();
        for s in &states {
            let base = SubState {
                approved: false,
                ..*s
            };
            assert!(
                ALL.contains(&base),
                "{} is not an Appendix A.1 state",
                name(*s)
            );
            assert!(
                !s.approved || (!s.pending_in && !s.subscription.has_from()),
                "{}",
                name(*s)
            );
        }
        // The nine states plus pre-approval on "None", "None + Pending Out" and "To".
        assert_eq!(states.len(), 12);
    }

    #[test]
    fn unchanged_state_never_pushes() {
        for s in reachable() {
            for kind in [Subscribe, Subscribed, Unsubscribe, Unsubscribed] {
                let (o, i) = (outbound(s, kind), inbound(s, kind));
                assert!(
                    o.new != s || !o.push,
                    "outbound {} in {}",
                    kind.as_str(),
                    name(s)
                );
                assert!(
                    i.new != s || !(i.push || i.deliver),
                    "inbound {} in {}",
                    kind.as_str(),
                    name(s)
                );
            }
        }
    }

    /// Two servers' views of one pair: `a` is A's state toward B, `b` is B's toward A.
    /// A sends `kind`; B's server answers as `inbound` says, and A processes the answer.
    fn exchange(a: &mut SubState, b: &mut SubState, kind: SubKind) {
        let out = outbound(*a, kind);
        *a = out.new;
        if out.route {
            let inb = inbound(*b, kind);
            *b = inb.new;
            if let Some(reply) = inb.auto_reply {
                *a = inbound(*a, reply).new;
            }
        }
    }

    #[test]
    fn mutual_subscription_then_cancellation_keeps_both_sides_in_step() {
        let (mut a, mut b) = (NONE, NONE);
        exchange(&mut a, &mut b, Subscribe);
        assert_eq!((a, b), (NONE_PO, NONE_PI));
        exchange(&mut b, &mut a, Subscribed);
        assert_eq!((a, b), (TO, FROM));
        exchange(&mut b, &mut a, Subscribe);
        assert_eq!((a, b), (TO_PI, FROM_PO));
        exchange(&mut a, &mut b, Subscribed);
        assert_eq!((a, b), (BOTH, BOTH));
        exchange(&mut a, &mut b, Unsubscribe);
        assert_eq!((a, b), (FROM, TO));
        exchange(&mut a, &mut b, Unsubscribed);
        assert_eq!((a, b), (NONE, NONE));
    }

    #[test]
    fn pre_approval_completes_a_later_request_without_the_user() {
        let (mut a, mut b) = (NONE, NONE);
        exchange(&mut b, &mut a, Subscribed); // B pre-approves A; nothing reaches A.
        assert_eq!((a, b), (NONE, approved(NONE)));
        exchange(&mut a, &mut b, Subscribe);
        assert_eq!((a, b), (TO, FROM));
    }

    #[test]
    fn denied_request_leaves_both_sides_at_none() {
        let (mut a, mut b) = (NONE, NONE);
        exchange(&mut a, &mut b, Subscribe);
        exchange(&mut b, &mut a, Unsubscribed);
        assert_eq!((a, b), (NONE, NONE));
    }

    #[test]
    fn sub_kind_parses_the_four_presence_types_only() {
        for kind in [Subscribe, Subscribed, Unsubscribe, Unsubscribed] {
            assert_eq!(SubKind::parse(kind.as_str()), Some(kind));
        }
        for other in ["", "probe", "unavailable", "error", "Subscribe"] {
            assert_eq!(SubKind::parse(other), None);
        }
    }

    #[test]
    fn state_round_trips_through_a_roster_item() {
        assert_eq!(SubState::of(None), NONE);
        for s in reachable() {
            let mut item = RosterItem::default();
            s.apply_to(&mut item);
            assert_eq!(SubState::of(Some(&item)), s, "{}", name(s));
        }
    }

    #[test]
    fn apply_to_adds_to_the_roster_only_what_the_roster_shows() {
        // §3.1.3: a contact known only from its request stays out of the roster.
        let mut item = RosterItem {
            pending_in_stanza: Some("<presence/>".into()),
            ..Default::default()
        };
        NONE_PI.apply_to(&mut item);
        assert!(!item.in_roster);
        assert!(item.pending_in_stanza.is_some());
        // Approving it adds the contact and drops the stored request.
        FROM.apply_to(&mut item);
        assert!(item.in_roster);
        assert_eq!(item.pending_in_stanza, None);
        // Falling back to "None" keeps a roster item the user has.
        NONE.apply_to(&mut item);
        assert!(item.in_roster);
    }

    #[test]
    fn of_drops_flags_no_appendix_a_state_has() {
        let item = RosterItem {
            subscription: Subscription::Both,
            pending_out: true,
            pending_in: true,
            approved: true,
            ..Default::default()
        };
        assert_eq!(SubState::of(Some(&item)), BOTH);
    }
}
