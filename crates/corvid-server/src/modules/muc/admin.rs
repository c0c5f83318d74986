//! Roles and affiliations (XEP-0045 §8 moderator use cases, §9 admin use cases, §10
//! owner lists): the `muc#admin` queries, and the permission tables that decide who may
//! change whom (§5.1.2, §5.2.1).

use corvid_proto::Bare;
use corvid_proto::{BareJid, FullJid, Iq, IqType, StanzaError, ns};
use corvid_xml::Element;

use super::room::{Affiliation, Note, Out, Role, Room};

/// Most affiliations (owners, admins, members, outcasts together) one room keeps.
pub const MAX_AFFILIATIONS: usize = 10_000;

/// §8, §5.1.2: whether an actor (affiliation, role) may give `target` (its affiliation
/// and current role) the role `new`.
pub fn may_set_role(
    actor: (Affiliation, Role),
    target: (Affiliation, Role),
    new: Role,
) -> Result<(), StanzaError> {
    let (actor_aff, actor_role) = actor;
    let (target_aff, target_role) = target;
    if actor_role != Role::Moderator {
        return Err(StanzaError::forbidden().with_text("only moderators may change roles"));
    }
    match new {
        // §8.2 kick, §8.4 revoke voice: never an admin or owner, nor anyone of an
        // affiliation above the actor's.
        Role::None | Role::Visitor => {
            if target_aff >= Affiliation::Admin || target_aff > actor_aff {
                return Err(StanzaError::not_allowed()
                    .with_text("you may not change the role of that occupant"));
            }
            // Only admins and owners may take moderation away (§8.7 via §9.7).
            if target_role == Role::Moderator && actor_aff < Affiliation::Admin {
                return Err(StanzaError::not_allowed()
                    .with_text("only admins and owners may revoke moderation"));
            }
        }
        Role::Participant => {
            // §9.7 revoking moderation: admins and owners only, never from an admin/owner.
            if target_role == Role::Moderator
                && (actor_aff < Affiliation::Admin || target_aff >= Affiliation::Admin)
            {
                return Err(StanzaError::not_allowed().with_text(
                    "only admins and owners may revoke moderation, never from an admin or owner",
                ));
            }
        }
        // §9.6 granting moderation: admins and owners only.
        Role::Moderator => {
            if actor_aff < Affiliation::Admin {
                return Err(StanzaError::forbidden()
                    .with_text("only admins and owners may grant moderation"));
            }
        }
    }
    Ok(())
}

/// §9, §10: whether an actor of `actor` affiliation may change `target` to `new`.
/// Admins manage members and outcasts; owners manage everyone.
pub fn may_set_affiliation(
    actor: Affiliation,
    target: Affiliation,
    new: Affiliation,
) -> Result<(), StanzaError> {
    match actor {
        Affiliation::Owner => Ok(()),
        Affiliation::Admin => {
            if target >= Affiliation::Admin || new >= Affiliation::Admin {
                Err(StanzaError::not_allowed().with_text("admins may not change admins or owners"))
            } else {
                Ok(())
            }
        }
        _ => {
            Err(StanzaError::forbidden()
                .with_text("only admins and owners may change affiliations"))
        }
    }
}

/// Answers a `muc#admin` IQ (get: a list; set: changes) from `from`.
pub fn handle(room: &mut Room, iq: &Iq, out: &mut Out) -> Result<Option<Element>, StanzaError> {
    let from = iq
        .from
        .clone()
        .try_into_full()
        .map_err(|_| StanzaError::bad_request())?;
    let items: Vec<&Element> = iq
        .payload
        .children()
        .filter(|c| c.is("item", ns::MUC_ADMIN))
        .collect();
    match iq.kind {
        IqType::Get => {
            let [item] = items.as_slice() else {
                return Err(StanzaError::bad_request().with_text("ask for one list at a time"));
            };
            list(room, &from, item).map(Some)
        }
        _ => {
            if items.is_empty() || items.len() > 100 {
                return Err(
                    StanzaError::bad_request().with_text("between 1 and 100 items per request")
                );
            }
            // All or nothing: check every item before changing anything (§9.5, §10.5 lists).
            let mut changes = Vec::new();
            for item in &items {
                changes.push(check(room, &from, item)?);
            }
            for change in changes {
                apply(room, &from, change, out);
            }
            Ok(None)
        }
    }
}

/// Gives the occupant `nick` the role `role` on behalf of `from` (a voice request
/// approved, §8.6), with the same checks as a `muc#admin` item.
pub fn set_role(
    room: &mut Room,
    from: &FullJid,
    nick: &str,
    role: Role,
    out: &mut Out,
) -> Result<(), StanzaError> {
    let item = Element::new("item", ns::MUC_ADMIN)
        .with_attr("nick", nick)
        .with_attr("role", role.name());
    let change = check(room, from, &item)?;
    apply(room, from, change, out);
    Ok(())
}

/// §9.1.2 (outcasts), §9.5 (members), §10.5 (owners), §10.8 (admins); §8.5 (visitors?),
/// §9.8 (moderators): the items of one affiliation or role.
fn list(room: &Room, from: &FullJid, item: &Element) -> Result<Element, StanzaError> {
    let actor_aff = room.affiliation(&from.bare());
    let actor_role = room.occupant_by_jid(from).map_or(Role::None, |o| o.role);
    let mut query = Element::new("query", ns::MUC_ADMIN);
    if let Some(affiliation) = item.attr("affiliation") {
        let affiliation = Affiliation::parse(affiliation).ok_or_else(StanzaError::bad_request)?;
        if affiliation == Affiliation::None || actor_aff < Affiliation::Admin {
            return Err(StanzaError::forbidden()
                .with_text("only admins and owners may see affiliation lists"));
        }
        let mut jids: Vec<&BareJid> = room
            .affiliations
            .iter()
            .filter(|(_, a)| **a == affiliation)
            .map(|(j, _)| j)
            .collect();
        jids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        for jid in jids {
            query.append_child(
                Element::new("item", ns::MUC_ADMIN)
                    .with_attr("affiliation", affiliation.name())
                    .with_attr("jid", jid.as_str()),
            );
        }
        return Ok(query);
    }
    let role = item
        .attr("role")
        .and_then(Role::parse)
        .ok_or_else(StanzaError::bad_request)?;
    if actor_role != Role::Moderator || role == Role::None {
        return Err(StanzaError::forbidden().with_text("only moderators may see role lists"));
    }
    for occupant in room.occupants().filter(|o| o.role == role) {
        query.append_child(
            Element::new("item", ns::MUC_ADMIN)
                .with_attr("nick", occupant.nick.as_str())
                .with_attr("role", role.name())
                .with_attr("affiliation", room.affiliation(&occupant.jid.bare()).name())
                .with_attr("jid", occupant.jid.as_str()),
        );
    }
    Ok(query)
}

/// One checked change.
enum Change {
    Role {
        nick: String,
        role: Role,
        reason: Option<String>,
    },
    Affiliation {
        user: BareJid,
        affiliation: Affiliation,
        reason: Option<String>,
    },
}

fn check(room: &Room, from: &FullJid, item: &Element) -> Result<Change, StanzaError> {
    let actor_aff = room.affiliation(&from.bare());
    let actor_role = room.occupant_by_jid(from).map_or(Role::None, |o| o.role);
    let reason = item.get_child("reason", ns::MUC_ADMIN).map(Element::text);
    // §9 / §8: an item changes the affiliation or the role, never both.
    if item.attr("role").is_some() && item.attr("affiliation").is_some() {
        return Err(StanzaError::bad_request()
            .with_text("an item changes the affiliation or the role, not both"));
    }
    if let Some(role) = item.attr("role") {
        let role = Role::parse(role).ok_or_else(StanzaError::bad_request)?;
        let nick = item.attr("nick").ok_or_else(StanzaError::bad_request)?;
        let target = room
            .occupant(nick)
            .ok_or_else(StanzaError::item_not_found)?;
        let target_aff = room.affiliation(&target.jid.bare());
        may_set_role((actor_aff, actor_role), (target_aff, target.role), role)?;
        return Ok(Change::Role {
            nick: nick.to_string(),
            role,
            reason,
        });
    }
    let affiliation = item
        .attr("affiliation")
        .and_then(Affiliation::parse)
        .ok_or_else(StanzaError::bad_request)?;
    // §9.1: by JID, or by the nick of an occupant.
    let user = match (item.attr("jid"), item.attr("nick")) {
        // §9.1: affiliations belong to bare JIDs; a full JID (what poezio sends for
        // `/ban nick`) stands for its bare JID.
        (Some(jid), _) => corvid_proto::Jid::new(jid)
            .map(|jid| jid.bare())
            .map_err(|_| StanzaError::jid_malformed().with_text("not a valid JID"))?,
        (None, Some(nick)) => room
            .occupant(nick)
            .ok_or_else(|| StanzaError::item_not_found().with_text("no occupant has that nick"))?
            .jid
            .bare(),
        (None, None) => {
            return Err(StanzaError::bad_request().with_text("an item needs a jid or a nick"));
        }
    };
    let target = room.affiliation(&user);
    may_set_affiliation(actor_aff, target, affiliation)?;
    if target == Affiliation::None
        && affiliation != Affiliation::None
        && room.affiliations.len() >= MAX_AFFILIATIONS
    {
        return Err(
            StanzaError::resource_constraint().with_text("the room's affiliation lists are full")
        );
    }
    // §10.6 / §10.7: a room always keeps an owner.
    if target == Affiliation::Owner && affiliation != Affiliation::Owner && room.owners() <= 1 {
        return Err(StanzaError::conflict().with_text("the room must keep an owner"));
    }
    Ok(Change::Affiliation {
        user,
        affiliation,
        reason,
    })
}

fn apply(room: &mut Room, from: &FullJid, change: Change, out: &mut Out) {
    let actor = room.occupant_by_jid(from).map(|o| o.nick.clone());
    match change {
        Change::Role { nick, role, reason } => {
            if role == Role::None {
                // §8.2: kicked, status 307.
                let note = Note {
                    actor,
                    reason,
                    ..Note::unavailable(&[307])
                };
                room.remove_with_notice(&nick, &note, out);
                return;
            }
            let Some(occupant) = room.occupant_mut(&nick) else {
                return;
            };
            occupant.role = role;
            let occupant = occupant.clone();
            let note = Note {
                actor,
                reason,
                ..Note::default()
            };
            room.broadcast_presence(&occupant, &note, out);
            room.send_self_presence(&occupant, &note, &[], out);
        }
        Change::Affiliation {
            user,
            affiliation,
            reason,
        } => {
            room.set_affiliation_of(user.clone(), affiliation);
            for nick in room.nicks_of(&user) {
                let removal = match affiliation {
                    // §9.1: banned, status 301.
                    Affiliation::Outcast => Some(301),
                    // §9.4: no longer a member of a members-only room, status 321.
                    Affiliation::None if room.config.members_only => Some(321),
                    _ => None,
                };
                if let Some(code) = removal {
                    let note = Note {
                        actor: actor.clone(),
                        reason: reason.clone(),
                        ..Note::unavailable(&[code])
                    };
                    room.remove_with_notice(&nick, &note, out);
                    continue;
                }
                let moderated = room.config.moderated;
                let Some(occupant) = room.occupant_mut(&nick) else {
                    continue;
                };
                occupant.role = Role::default_for(affiliation, moderated);
                let occupant = occupant.clone();
                let note = Note {
                    actor: actor.clone(),
                    reason: reason.clone(),
                    ..Note::default()
                };
                room.broadcast_presence(&occupant, &note, out);
                room.send_self_presence(&occupant, &note, &[], out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Affiliation as A;
    use Role as R;

    fn ok(r: Result<(), StanzaError>) -> bool {
        r.is_ok()
    }

    #[test]
    fn moderators_kick_and_silence_only_below_admin() {
        assert!(ok(may_set_role(
            (A::None, R::Moderator),
            (A::None, R::Participant),
            R::None
        )));
        assert!(ok(may_set_role(
            (A::Member, R::Moderator),
            (A::None, R::Participant),
            R::Visitor
        )));
        assert_eq!(
            may_set_role((A::Owner, R::Moderator), (A::Admin, R::Moderator), R::None)
                .unwrap_err()
                .condition,
            "not-allowed"
        );
        assert_eq!(
            may_set_role(
                (A::None, R::Moderator),
                (A::Member, R::Participant),
                R::None
            )
            .unwrap_err()
            .condition,
            "not-allowed"
        );
        assert_eq!(
            may_set_role(
                (A::Member, R::Participant),
                (A::None, R::Participant),
                R::None
            )
            .unwrap_err()
            .condition,
            "forbidden"
        );
    }

    #[test]
    fn only_admins_and_owners_grant_or_revoke_moderation() {
        assert!(ok(may_set_role(
            (A::Admin, R::Moderator),
            (A::Member, R::Participant),
            R::Moderator
        )));
        assert_eq!(
            may_set_role(
                (A::None, R::Moderator),
                (A::Member, R::Participant),
                R::Moderator
            )
            .unwrap_err()
            .condition,
            "forbidden"
        );
        assert!(ok(may_set_role(
            (A::Owner, R::Moderator),
            (A::Member, R::Moderator),
            R::Participant
        )));
        assert_eq!(
            may_set_role(
                (A::Owner, R::Moderator),
                (A::Admin, R::Moderator),
                R::Participant
            )
            .unwrap_err()
            .condition,
            "not-allowed"
        );
    }

    #[test]
    fn admins_manage_members_and_outcasts_owners_everyone() {
        assert!(ok(may_set_affiliation(A::Admin, A::None, A::Outcast)));
        assert!(ok(may_set_affiliation(A::Admin, A::Member, A::None)));
        assert_eq!(
            may_set_affiliation(A::Admin, A::Admin, A::Outcast)
                .unwrap_err()
                .condition,
            "not-allowed"
        );
        assert_eq!(
            may_set_affiliation(A::Admin, A::None, A::Owner)
                .unwrap_err()
                .condition,
            "not-allowed"
        );
        assert!(ok(may_set_affiliation(A::Owner, A::Admin, A::Outcast)));
        assert_eq!(
            may_set_affiliation(A::Member, A::None, A::Outcast)
                .unwrap_err()
                .condition,
            "forbidden"
        );
    }
}
