"""Multi-user chat (XEP-0045) with real clients: slixmpp's xep_0045 plugin (and raw stanzas
where the plugin has no call) against the service on conference.localhost. Each test makes
rooms of its own."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError, PresenceError

from interop_support import DOMAIN, NS_DELAY, NS_SID, error_of, is_message, is_presence, unique_name

SERVICE = f"conference.{DOMAIN}"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


async def muc_user(server, im, prefix: str):
    """A new account, online, with slixmpp's MUC plugin."""
    jid, password = server.new_account(prefix)
    client = im.new(f"{jid}/{prefix}", password)
    client.register_plugin("xep_0045")
    await client.start(server)
    await client.online()
    client.account_password = password
    return client


async def muc_user_again(server, im, before):
    """The account of an earlier client, logged in again (e.g. after a restart)."""
    client = im.new(f"{before.bare}/again", before.account_password)
    client.register_plugin("xep_0045")
    await client.start(server)
    await client.online()
    client.account_password = before.account_password
    return client


def new_room(name: str = "room") -> str:
    return f"{unique_name(name)}@{SERVICE}"


def codes(stanza) -> set[int]:
    x = stanza.xml.find(f"{{{NS_MUC_USER}}}x")
    if x is None:
        return set()
    return {int(s.get("code")) for s in x.findall(f"{{{NS_MUC_USER}}}status")}


def others(occupants, me: str) -> list[str]:
    """The room JIDs in the occupant presences slixmpp collected while joining (it counts
    the joiner's own presence too), without `me`."""
    return [str(p["from"]) for p in occupants if str(p["from"]) != me]


def item_of(stanza) -> dict:
    item = stanza.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
    return dict(item.attrib) if item is not None else {}


async def join(client, room: str, nick: str, **options):
    return await client.plugin["xep_0045"].join_muc_wait(room, nick, timeout=10, **options)


async def instant_room(client, room: str) -> None:
    """§10.1.2: accepts the default configuration with an empty submitted form."""
    query = ET.Element(f"{{{NS_MUC_OWNER}}}query")
    ET.SubElement(query, f"{{{NS_DATA}}}x", {"type": "submit"})
    await client.query("set", query, to=room)


async def create_room(client, nick: str, name: str = "room") -> str:
    room = new_room(name)
    self_presence, *_ = await join(client, room, nick)
    assert {110, 201} <= codes(self_presence), str(self_presence)
    await instant_room(client, room)
    return room


async def configure(client, room: str, **fields) -> None:
    """Gets the room's config form and submits it with `fields` changed (§10.2)."""
    muc = client.plugin["xep_0045"]
    form = await muc.get_room_config(room)
    for var, value in fields.items():
        form.field[f"muc#roomconfig_{var}"]["value"] = value
    await muc.set_room_config(room, form)


async def presence_error(client, room: str, nick: str, **options) -> str:
    with pytest.raises(PresenceError) as failure:
        await join(client, room, nick, **options)
    return failure.value.condition


def disco_features(result) -> set[str]:
    return {f.get("var") for f in result.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}


async def disco(client, ns: str, to: str):
    return await client.query("get", ET.Element(f"{{{ns}}}query"), to=to)


# -- service discovery (§6) -------------------------------------------------------------


async def test_service_is_discovered_from_the_server_and_says_it_is_a_conference_service(server, im):
    alice = await muc_user(server, im, "alice")
    items = await disco(alice, NS_DISCO_ITEMS, DOMAIN)
    assert SERVICE in {i.get("jid") for i in items.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}, str(items)
    info = await disco(alice, NS_DISCO_INFO, SERVICE)
    identities = [(i.get("category"), i.get("type")) for i in info.xml.iter(f"{{{NS_DISCO_INFO}}}identity")]
    assert ("conference", "text") in identities, str(info)
    assert NS_MUC in disco_features(info)


async def test_public_rooms_are_listed_by_the_service_with_their_names(server, im):
    alice = await muc_user(server, im, "alice")
    public = await create_room(alice, "alice", "public")
    await configure(alice, public, roomname="The Public Room")
    hidden = await create_room(alice, "alice", "hidden")
    await configure(alice, hidden, publicroom=False)
    items = await disco(alice, NS_DISCO_ITEMS, SERVICE)
    listed = {i.get("jid"): i.get("name") for i in items.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
    assert listed.get(public) == "The Public Room", listed
    assert hidden not in listed


async def test_room_disco_features_reflect_its_configuration(server, im):
    alice = await muc_user(server, im, "alice")
    room = await create_room(alice, "alice")
    before = disco_features(await disco(alice, NS_DISCO_INFO, room))
    assert {NS_MUC, "muc_public", "muc_open", "muc_unmoderated", "muc_semianonymous", "muc_temporary",
            "muc_unsecured"} <= before, before
    await configure(alice, room, membersonly=True, moderatedroom=True, whois="anyone", publicroom=False,
                    passwordprotectedroom=True, roomsecret="sesame")
    after = disco_features(await disco(alice, NS_DISCO_INFO, room))
    assert {"muc_hidden", "muc_membersonly", "muc_moderated", "muc_nonanonymous", "muc_passwordprotected"} <= after
    assert not {"muc_public", "muc_open", "muc_unmoderated", "muc_semianonymous", "muc_unsecured"} & after


async def test_iqs_to_an_occupant_are_answered_by_its_client_through_the_room(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    # Entity capabilities and version queries go to room/nick; bob's client answers.
    version = await alice.plugin["xep_0092"].get_version(f"{room}/bob", timeout=10)
    assert str(version["from"]) == f"{room}/bob"
    assert version["software_version"]["name"], str(version)
    got = await bob.inbox.expect(lambda s: s.name == "iq" and s.xml.get("from") == f"{room}/alice", "the forwarded query")
    assert alice.bare not in str(got)
    await alice.plugin["xep_0199"].send_ping(f"{room}/bob", timeout=10)
    with pytest.raises(IqError) as failure:
        await alice.plugin["xep_0199"].send_ping(f"{room}/nobody", timeout=10)
    assert failure.value.condition == "item-not-found"


async def test_self_ping_is_answered_for_occupants_only(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    # XEP-0410: a client checks it is still in the room by pinging its own occupant JID.
    await alice.plugin["xep_0199"].send_ping(f"{room}/alice", timeout=10)
    with pytest.raises(IqError) as failure:
        await bob.plugin["xep_0199"].send_ping(f"{room}/bob", timeout=10)
    assert failure.value.condition == "not-acceptable"


# -- entering and leaving (§7.2, §7.14, §10.1) ------------------------------------------


async def test_first_occupant_creates_a_locked_room_that_opens_once_configured(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = new_room()
    self_presence, subject, occupants, history = await join(alice, room, "alice")
    assert {110, 201} <= codes(self_presence)
    assert item_of(self_presence)["affiliation"] == "owner"
    assert item_of(self_presence)["role"] == "moderator"
    # §10.1.2: locked until the owner configures it.
    assert await presence_error(bob, room, "bob") == "item-not-found"
    await instant_room(alice, room)
    self_presence, *_ = await join(bob, room, "bob")
    assert 110 in codes(self_presence) and 201 not in codes(self_presence)
    assert item_of(self_presence)["role"] == "participant"


async def test_occupants_see_each_others_presence(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    _, subject, occupants, _ = await join(bob, room, "bob")
    assert others(occupants, f"{room}/bob") == [f"{room}/alice"]
    alice_presence = next(p for p in occupants if str(p["from"]) == f"{room}/alice")
    # A moderator sees real JIDs in a semi-anonymous room; a participant does not.
    assert "jid" not in item_of(alice_presence)
    got = await alice.inbox.expect(is_presence("available", frm=f"{room}/bob"), "bob's presence in the room")
    assert item_of(got)["jid"] == bob.full
    # §7.2.16: the subject comes last, empty when none is set.
    assert subject.xml.find("{jabber:client}subject") is not None


async def test_nick_in_use_is_refused_with_conflict(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    assert await presence_error(bob, room, "alice") == "conflict"


async def test_another_user_gets_conflict_for_a_nick_in_use(server, im):
    alice = await muc_user(server, im, "alice")
    mallory = await muc_user(server, im, "mallory")
    room = await create_room(alice, "alice")
    # §7.2.9: a nick conflict is between different users.
    assert await presence_error(mallory, room, "alice") == "conflict"


async def test_devices_of_one_user_share_a_nick_and_others_see_one_occupant(server, im):
    """Multi-session nicks: a phone and a laptop of one account in a room under one nick."""
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    laptop = await muc_user_again(server, im, alice)
    self_presence, *_ = await join(laptop, room, "alice")
    assert 110 in codes(self_presence)
    assert item_of(self_presence)["affiliation"] == "owner"

    # Each device gets the room's messages, and bob's private message to the nick.
    mid = bob.message(room, "hello both", mtype="groupchat")
    pm = bob.message(f"{room}/alice", "just you", mtype="chat")
    for device in (alice, laptop):
        await device.inbox.expect(is_message(frm=f"{room}/bob", mid=mid, mtype="groupchat"), "the groupchat")
        await device.inbox.expect(is_message(frm=f"{room}/bob", mid=pm), "the private message")

    # The second device's leaving is its own business: bob sees nothing, alice stays.
    laptop.presence("unavailable", to=f"{room}/alice")
    gone = await laptop.inbox.expect(is_presence("unavailable", frm=f"{room}/alice"), "the laptop's exit")
    assert 110 in codes(gone)
    mid = alice.message(room, "still here", mtype="groupchat")
    await bob.inbox.expect(is_message(frm=f"{room}/alice", mid=mid), "alice's message after the laptop left")
    assert bob.inbox.matching(is_presence("unavailable", frm=f"{room}/alice")) == []

    # The last device leaving takes the occupant out.
    alice.presence("unavailable", to=f"{room}/alice")
    await bob.inbox.expect(is_presence("unavailable", frm=f"{room}/alice"), "alice leaving")


async def test_a_nick_change_from_one_device_moves_every_device(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    laptop = await muc_user_again(server, im, alice)
    await join(laptop, room, "alice")
    alice.presence(to=f"{room}/alicia")
    for device in (alice, laptop):
        changed = await device.inbox.expect(
            lambda s: is_presence("unavailable", frm=f"{room}/alice")(s) and 303 in codes(s), "the 303")
        assert item_of(changed).get("nick") == "alicia"
        await device.inbox.expect(is_presence(frm=f"{room}/alicia"), "the new self-presence")
    mid = bob.message(room, "hi alicia", mtype="groupchat")
    for device in (alice, laptop):
        await device.inbox.expect(is_message(mid=mid), "the room's message under the new nick")


async def test_affiliations_given_a_full_jid_apply_to_its_bare_jid(server, im):
    """§9.1: poezio's /ban and /affiliation send the occupant's full JID."""
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    muc = alice.plugin["xep_0045"]
    await muc.set_affiliation(room, "member", jid=bob.full)
    assert await muc.get_affiliation_list(room, "member") == [bob.boundjid.bare]
    await muc.set_affiliation(room, "outcast", jid=bob.full)
    got = await bob.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "the ban")
    assert 301 in codes(got)
    assert await muc.get_affiliation_list(room, "outcast") == [bob.boundjid.bare]


async def test_refusals_carry_a_text_the_client_can_show(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    query = ET.Element(f"{{{NS_MUC_OWNER}}}query")
    with pytest.raises(IqError) as refused:
        await bob.query("get", query, to=room)
    error = refused.value.iq.xml.find("{jabber:client}error")
    assert error is not None and error.findtext(
        "{urn:ietf:params:xml:ns:xmpp-stanzas}text"), str(refused.value.iq)
    assert refused.value.condition == "forbidden"


async def test_join_without_nick_is_jid_malformed(server, im):
    alice = await muc_user(server, im, "alice")
    room = await create_room(alice, "alice")
    alice.presence(to=room, extra=[ET.Element(f"{{{NS_MUC}}}x")])
    got = await alice.inbox.expect(is_presence("error", frm=room), "the error for a join without nick")
    assert error_of(got)[1] == "jid-malformed"


async def test_joining_again_replays_the_room_without_leaving_it(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    alice.message(room, "before", mtype="groupchat")
    await join(bob, room, "bob")
    self_presence, subject, occupants, history = await join(bob, room, "bob", maxstanzas=5)
    assert 110 in codes(self_presence)
    assert others(occupants, f"{room}/bob") == [f"{room}/alice"]
    assert [m["body"] for m in history] == ["before"]
    await alice.sync()
    assert not alice.inbox.matching(is_presence("unavailable", frm=f"{room}/bob"))


async def test_leaving_is_broadcast_and_the_leaver_gets_110(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    bob.plugin["xep_0045"].leave_muc(room, "bob", "see you")
    got = await alice.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "bob leaving")
    assert got.xml.findtext("{jabber:client}status") == "see you"
    own = await bob.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "bob's own leave")
    assert 110 in codes(own)


async def test_lost_connection_takes_the_occupant_out_of_the_room(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    bob.abort()
    await alice.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "bob gone after his connection was lost")
    await asyncio.sleep(0.3)
    # Once, not twice (the logout presence and the session close must not both announce it).
    assert not alice.inbox.matching(is_presence("unavailable", frm=f"{room}/bob"))
    carol = await muc_user(server, im, "carol")
    _, _, occupants, _ = await join(carol, room, "carol")
    assert others(occupants, f"{room}/carol") == [f"{room}/alice"]


async def test_last_occupant_leaving_destroys_a_temporary_room(server, im):
    alice = await muc_user(server, im, "alice")
    room = await create_room(alice, "alice")
    alice.plugin["xep_0045"].leave_muc(room, "alice")
    await alice.inbox.expect(is_presence("unavailable", frm=f"{room}/alice"), "the leave")
    with pytest.raises(IqError) as failure:
        await disco(alice, NS_DISCO_INFO, room)
    assert failure.value.condition == "item-not-found"


# -- presence in the room (§7.3, §7.6) --------------------------------------------------


async def test_presence_update_reaches_every_occupant(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    bob.presence(to=f"{room}/bob", show="away", status="lunch")
    got = await alice.inbox.expect(is_presence("available", frm=f"{room}/bob", status="lunch"), "bob's update")
    assert got.xml.findtext("{jabber:client}show") == "away"


async def test_nick_change_is_unavailable_with_303_then_the_new_nick(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    await bob.plugin["xep_0045"].set_self_nick(room, "robert")
    gone = await alice.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "bob's old nick leaving")
    assert 303 in codes(gone) and item_of(gone)["nick"] == "robert"
    await alice.inbox.expect(is_presence("available", frm=f"{room}/robert"), "bob's new nick")
    assert await presence_error(await muc_user(server, im, "carol"), room, "robert") == "conflict"


# -- messages (§7.4, §7.5, §8.1) --------------------------------------------------------


async def test_groupchat_is_reflected_to_all_occupants_with_a_stanza_id(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    mid = bob.message(room, "hello room", mtype="groupchat")
    ids = set()
    for client in (alice, bob):
        got = await client.inbox.expect(is_message(frm=f"{room}/bob", mid=mid, mtype="groupchat"), "the message")
        assert got["body"] == "hello room"
        sid = got.xml.find(f"{{{NS_SID}}}stanza-id")
        assert sid is not None and sid.get("by") == room, str(got)
        ids.add(sid.get("id"))
    assert len(ids) == 1


def occupant_id(stanza) -> str | None:
    el = stanza.xml.find("{urn:xmpp:occupant-id:0}occupant-id")
    return None if el is None else el.get("id")


async def test_occupant_ids_are_stable_per_user_and_cannot_be_forged(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    assert "urn:xmpp:occupant-id:0" in disco_features(await disco(alice, NS_DISCO_INFO, room))
    own, *_ = await join(bob, room, "bob")
    bob_id = occupant_id(own)
    seen = await alice.inbox.expect(is_presence("available", frm=f"{room}/bob"), "bob's presence")
    assert bob_id and occupant_id(seen) == bob_id
    forged = ET.Element("{urn:xmpp:occupant-id:0}occupant-id", {"id": "i-am-alice"})
    mid = bob.message(room, "hi", mtype="groupchat", extra=[forged])
    got = await alice.inbox.expect(is_message(mid=mid), "bob's message")
    assert [el.get("id") for el in got.xml.iter("{urn:xmpp:occupant-id:0}occupant-id")] == [bob_id]
    # The same user keeps the id under another nick, after leaving and coming back.
    bob.plugin["xep_0045"].leave_muc(room, "bob")
    await alice.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "bob leaving")
    own, *_ = await join(bob, room, "robert")
    assert occupant_id(own) == bob_id
    alice_own, *_ = await join(alice, room, "alice")
    assert occupant_id(alice_own) not in (None, bob_id)


async def test_groupchat_from_a_non_occupant_is_not_acceptable(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    mid = bob.message(room, "let me in", mtype="groupchat")
    got = await bob.inbox.expect(is_message(mid=mid, mtype="error"), "the error")
    assert error_of(got)[1] == "not-acceptable"


async def test_history_is_sent_on_joining_with_delay(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    for n in range(3):
        alice.message(room, f"message {n}", mtype="groupchat")
    for n in range(3):
        await alice.inbox.expect(is_message(body=f"message {n}"), f"message {n} reflected")
    _, _, _, history = await join(bob, room, "bob", maxstanzas=2)
    assert [m["body"] for m in history] == ["message 1", "message 2"]
    for m in history:
        assert str(m["from"]) == f"{room}/alice"
        delay = m.xml.find(f"{{{NS_DELAY}}}delay")
        assert delay is not None and delay.get("from") == room and delay.get("stamp"), str(m)


async def test_subject_is_set_by_a_moderator_and_shown_to_newcomers(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    # Participants may not change it by default (§8.1).
    bob.plugin["xep_0045"].set_subject(room, "bob's topic")
    got = await bob.inbox.expect(is_message(mtype="error"), "the refusal")
    assert error_of(got)[1] == "forbidden"
    alice.plugin["xep_0045"].set_subject(room, "Today: MUC")
    got = await bob.inbox.expect(is_message(frm=f"{room}/alice", mtype="groupchat"), "the subject change")
    assert got["subject"] == "Today: MUC"
    carol = await muc_user(server, im, "carol")
    _, subject, _, _ = await join(carol, room, "carol")
    assert subject["subject"] == "Today: MUC" and str(subject["from"]) == f"{room}/alice"


async def test_private_message_reaches_the_occupant_from_the_senders_room_jid(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    mid = alice.message(f"{room}/bob", "psst")
    got = await bob.inbox.expect(is_message(mid=mid), "the private message")
    assert str(got["from"]) == f"{room}/alice" and got["body"] == "psst"
    assert got.xml.find(f"{{{NS_MUC_USER}}}x") is not None
    mid = alice.message(f"{room}/nobody", "anyone?")
    got = await alice.inbox.expect(is_message(mid=mid, mtype="error"), "the error")
    assert error_of(got)[1] == "item-not-found"


async def test_mediated_invitation_reaches_the_invitee(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    alice.plugin["xep_0045"].invite(room, bob.bare, "join us")
    got = await bob.inbox.expect(is_message(frm=room), "the invitation")
    invite = got.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite")
    assert invite is not None and invite.get("from") == alice.full
    assert invite.findtext(f"{{{NS_MUC_USER}}}reason") == "join us"
    bob.plugin["xep_0045"].decline(room, alice.full, "busy")
    got = await alice.inbox.expect(lambda s: is_message(frm=room)(s) and s.xml.find(
        f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}decline") is not None, "the decline")
    decline = got.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}decline")
    assert decline.get("from") == bob.bare and decline.findtext(f"{{{NS_MUC_USER}}}reason") == "busy"


# -- configuration (§10.2, §10.9) --------------------------------------------------------


async def test_every_occupant_learns_of_a_configuration_change_with_104(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    await configure(alice, room, roomname="Renamed")
    for client in (alice, bob):
        await client.inbox.expect(lambda s: is_message(frm=room, mtype="groupchat")(s) and 104 in codes(s),
                                  "the config change notice (status 104)")


async def test_members_only_room_refuses_non_members_until_made_members(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await configure(alice, room, membersonly=True)
    # §10.2.1: occupants learn the configuration changed.
    await alice.inbox.expect(lambda s: is_message(frm=room, mtype="groupchat")(s) and 104 in codes(s),
                             "the config change notice (status 104)")
    assert await presence_error(bob, room, "bob") == "registration-required"
    await alice.plugin["xep_0045"].set_affiliation(room, "member", jid=bob.bare)
    assert await alice.plugin["xep_0045"].get_affiliation_list(room, "member") == [bob.boundjid.bare]
    self_presence, *_ = await join(bob, room, "bob")
    assert item_of(self_presence)["affiliation"] == "member"


async def test_making_a_room_members_only_removes_non_members_with_322(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    await configure(alice, room, membersonly=True)
    got = await bob.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "bob removed")
    assert {322, 110} <= codes(got)
    got = await alice.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "bob removed, seen by alice")
    assert 322 in codes(got)


async def test_config_form_is_for_owners_only(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    form = await alice.plugin["xep_0045"].get_room_config(room)
    assert "muc#roomconfig_membersonly" in form.field
    with pytest.raises(IqError) as failure:
        await bob.plugin["xep_0045"].get_room_config(room)
    assert failure.value.condition == "forbidden"


async def test_password_protected_room_wants_the_password(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await configure(alice, room, passwordprotectedroom=True, roomsecret="sesame")
    assert await presence_error(bob, room, "bob") == "not-authorized"
    await join(bob, room, "bob", password="sesame")


async def test_a_full_room_refuses_newcomers_but_not_its_owner(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await configure(alice, room, maxusers="1")
    assert await presence_error(bob, room, "bob") == "service-unavailable"
    second = await muc_user_again(server, im, alice)
    await join(second, room, "alice-2")


async def test_destroying_a_room_sends_everyone_unavailable_with_the_reason(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    await alice.plugin["xep_0045"].destroy(room, "moving", altroom=f"elsewhere@{SERVICE}")
    got = await bob.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "the destroy notice")
    destroy = got.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}destroy")
    assert destroy is not None and destroy.get("jid") == f"elsewhere@{SERVICE}"
    assert destroy.findtext(f"{{{NS_MUC_USER}}}reason") == "moving"


# -- roles and affiliations (§8, §9) ------------------------------------------------------


async def test_kicked_occupant_leaves_with_307(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    await alice.plugin["xep_0045"].set_role(room, "bob", "none", reason="behave")
    got = await bob.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "the kick")
    assert {307, 110} <= codes(got)
    assert got.xml.findtext(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item/{{{NS_MUC_USER}}}reason") == "behave"
    got = await alice.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "the kick, seen by alice")
    assert 307 in codes(got)


async def test_banned_user_leaves_with_301_and_cannot_come_back(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    await alice.plugin["xep_0045"].set_affiliation(room, "outcast", jid=bob.bare)
    got = await bob.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "the ban")
    assert 301 in codes(got)
    assert await presence_error(bob, room, "bob") == "forbidden"
    assert await alice.plugin["xep_0045"].get_affiliation_list(room, "outcast") == [bob.boundjid.bare]


async def test_an_owner_outside_the_room_may_ban_and_an_emptied_temporary_room_is_gone(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    alice.plugin["xep_0045"].leave_muc(room, "alice")
    await bob.inbox.expect(is_presence("unavailable", frm=f"{room}/alice"), "alice leaving")
    await alice.plugin["xep_0045"].set_affiliation(room, "outcast", jid=bob.bare, reason="spam")
    got = await bob.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "the ban")
    assert 301 in codes(got)
    with pytest.raises(IqError) as failure:
        await disco(alice, NS_DISCO_INFO, room)
    assert failure.value.condition == "item-not-found"


async def test_participants_may_not_kick_and_owners_cannot_be_kicked(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    with pytest.raises(IqError) as failure:
        await bob.plugin["xep_0045"].set_role(room, "alice", "none")
    assert failure.value.condition == "forbidden"
    await alice.plugin["xep_0045"].set_affiliation(room, "admin", jid=bob.bare)
    with pytest.raises(IqError) as failure:
        await bob.plugin["xep_0045"].set_role(room, "alice", "none")
    assert failure.value.condition == "not-allowed"
    # The last owner cannot give up ownership (§10.7).
    with pytest.raises(IqError) as failure:
        await alice.plugin["xep_0045"].set_affiliation(room, "member", jid=alice.bare)
    assert failure.value.condition == "conflict"


async def test_visitors_in_a_moderated_room_need_voice(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await configure(alice, room, moderatedroom=True)
    self_presence, *_ = await join(bob, room, "bob")
    assert item_of(self_presence)["role"] == "visitor"
    mid = bob.message(room, "can I talk?", mtype="groupchat")
    got = await bob.inbox.expect(is_message(mid=mid, mtype="error"), "the refusal")
    assert error_of(got)[1] == "forbidden"
    await alice.plugin["xep_0045"].set_role(room, "bob", "participant")
    assert await alice.plugin["xep_0045"].get_roles_list(room, "participant") == ["bob"]
    mid = bob.message(room, "now I can", mtype="groupchat")
    await alice.inbox.expect(is_message(mid=mid, frm=f"{room}/bob"), "bob's message with voice")


# -- persistence ----------------------------------------------------------------------------


async def test_persistent_room_keeps_its_config_and_affiliations_across_a_restart(make_im_server, im):
    own = make_im_server("muc-restart")
    alice = await muc_user(own, im, "alice")
    bob = await muc_user(own, im, "bob")
    room = await create_room(alice, "alice", "kept")
    temporary = await create_room(alice, "alice", "temporary")
    await configure(alice, room, persistentroom=True, roomname="Kept Room", membersonly=True)
    await alice.plugin["xep_0045"].set_affiliation(room, "member", jid=bob.bare)
    alice.plugin["xep_0045"].set_subject(room, "still here")
    await alice.inbox.expect(lambda s: is_message(frm=f"{room}/alice")(s) and s["subject"] == "still here",
                             "the subject change")
    before, *_ = await join(alice, room, "alice")
    alice_id = occupant_id(before)
    await alice.close()
    await bob.close()

    own.restart()
    carol = await muc_user(own, im, "carol")
    info = await disco(carol, NS_DISCO_INFO, room)
    names = [i.get("name") for i in info.xml.iter(f"{{{NS_DISCO_INFO}}}identity")]
    assert names == ["Kept Room"], str(info)
    assert {"muc_persistent", "muc_membersonly"} <= disco_features(info)
    assert await presence_error(carol, room, "carol") == "registration-required"
    # The temporary room is gone.
    with pytest.raises(IqError) as failure:
        await disco(carol, NS_DISCO_INFO, temporary)
    assert failure.value.condition == "item-not-found"

    bob = await muc_user_again(own, im, bob)
    self_presence, subject, _, _ = await join(bob, room, "bob")
    assert item_of(self_presence)["affiliation"] == "member"
    assert 201 not in codes(self_presence)
    assert subject["subject"] == "still here"
    alice = await muc_user_again(own, im, alice)
    self_presence, *_ = await join(alice, room, "alice")
    assert item_of(self_presence)["affiliation"] == "owner"
    # XEP-0421: the occupant id survives the restart too.
    assert occupant_id(self_presence) == alice_id


async def test_removing_a_member_from_a_members_only_room_removes_them_with_321(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await configure(alice, room, membersonly=True)
    await alice.plugin["xep_0045"].set_affiliation(room, "member", jid=bob.bare)
    await join(bob, room, "bob")
    await alice.plugin["xep_0045"].set_affiliation(room, "none", jid=bob.bare)
    got = await bob.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "bob removed")
    assert {321, 110} <= codes(got)
    assert await presence_error(bob, room, "bob") == "registration-required"


async def test_a_moderator_made_by_the_owner_may_kick_participants(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    carol = await muc_user(server, im, "carol")
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    await join(carol, room, "carol")
    await alice.plugin["xep_0045"].set_role(room, "bob", "moderator")
    got = await bob.inbox.expect(lambda s: is_presence("available", frm=f"{room}/bob")(s)
                                 and item_of(s).get("role") == "moderator", "bob's new role")
    assert 110 in codes(got)
    assert sorted(await bob.plugin["xep_0045"].get_roles_list(room, "moderator")) == ["alice", "bob"]
    await bob.plugin["xep_0045"].set_role(room, "carol", "none")
    got = await carol.inbox.expect(is_presence("unavailable", frm=f"{room}/carol"), "carol kicked")
    assert 307 in codes(got)
    # Only admins and owners take moderation away; bob may not kick the owner either.
    with pytest.raises(IqError) as failure:
        await bob.plugin["xep_0045"].set_role(room, "alice", "participant")
    assert failure.value.condition == "not-allowed"


async def test_voice_request_goes_to_moderators_and_their_approval_gives_voice(server, im):
    alice = await muc_user(server, im, "alice")
    bob = await muc_user(server, im, "bob")
    room = await create_room(alice, "alice")
    await configure(alice, room, moderatedroom=True)
    await join(bob, room, "bob")
    bob.plugin["xep_0045"].request_voice(room, "participant")

    def voice_request(stanza) -> bool:
        return is_message(frm=room)(stanza) and stanza.xml.find(f"{{{NS_DATA}}}x") is not None

    got = await alice.inbox.expect(voice_request, "the voice request (§8.6)")
    form = got["form"]
    assert form.get_values()["muc#roomnick"] == "bob"
    assert form.get_values()["muc#jid"] == bob.full
    # The moderator approves by sending the form back with muc#request_allow set.
    answer = alice.Message()
    answer["to"] = room
    reply = answer["form"]
    reply["type"] = "submit"
    for var, value in (("FORM_TYPE", "http://jabber.org/protocol/muc#request"), ("muc#role", "participant"),
                       ("muc#roomnick", "bob"), ("muc#request_allow", "true")):
        reply.add_field(var=var, value=value)
    answer.send()
    got = await bob.inbox.expect(lambda s: is_presence("available", frm=f"{room}/bob")(s)
                                 and item_of(s).get("role") == "participant", "voice granted")
    assert 110 in codes(got)
