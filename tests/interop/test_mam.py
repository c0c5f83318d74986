"""Message archives (XEP-0313) with slixmpp's xep_0313 and xep_0441 plugins: both parties
archive a conversation, the recipient under the XEP-0359 stanza-id it saw; RSM paging
forward and backward over 5,000 messages; time windows; `with` by bare and full JID; chat
states alone are not archived; preferences round trip; a room's archive."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from interop_support import DOMAIN, NS_DELAY, NS_FORWARD, NS_SID, is_message, remove_user, unique_name

NS_MAM = "urn:xmpp:mam:2"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
SERVICE = f"conference.{DOMAIN}"
TOTAL = 5000


async def mam_user(server, im, prefix: str, resource: str | None = None):
    """A new account, online, with the MAM plugins (and MUC, for the room tests)."""
    jid, password = server.new_account(prefix)
    client = await mam_login(server, im, jid, password, resource or prefix)
    client.account_password = password
    return client


async def mam_login(server, im, jid: str, password: str, resource: str, *, online: bool = True):
    client = im.new(f"{jid}/{resource}", password)
    for plugin in ("xep_0313", "xep_0441", "xep_0045", "xep_0359"):
        client.register_plugin(plugin)
    await client.start(server)
    if online:
        await client.online()
    return client


class Archived:
    """One result: its archive id, the forwarded message's body and sender, the stamp."""

    def __init__(self, result_message):
        result = result_message.xml.find(f"{{{NS_MAM}}}result")
        assert result is not None, str(result_message)
        forwarded = result.find(f"{{{NS_FORWARD}}}forwarded")
        inner = forwarded.find("{jabber:client}message")
        self.id = result.get("id")
        self.body = inner.findtext("{jabber:client}body")
        self.sender = inner.get("from")
        self.stamp = forwarded.find(f"{{{NS_DELAY}}}delay").get("stamp")
        self.xml = inner

    def __repr__(self):
        return f"Archived({self.id!r}, {self.body!r})"


async def archive(client, **query) -> list[Archived]:
    """One page (up to 250) of the client's own archive, or `jid=`'s."""
    rsm = query.pop("rsm", {"max": 250})
    result = await client.plugin["xep_0313"].retrieve(rsm=rsm, timeout=30, **query)
    return [Archived(m) for m in result["mam"]["results"]]


def parse_stamp(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def test_both_parties_archive_and_the_recipient_id_is_the_stanza_id_it_saw(server, im):
    alice = await mam_user(server, im, "alice")
    bob = await mam_user(server, im, "bob")
    alice.message(bob.bare, "hello bob")
    got = await bob.inbox.expect(is_message(body="hello bob"), "alice's message")
    stanza_id = got.xml.find(f"{{{NS_SID}}}stanza-id[@by='{bob.bare}']")
    assert stanza_id is not None, str(got)

    [bobs] = await archive(bob)
    assert (bobs.id, bobs.body, bobs.sender) == (stanza_id.get("id"), "hello bob", alice.full)
    [alices] = await archive(alice)
    assert alices.body == "hello bob" and alices.xml.get("to") == bob.bare
    # The account and the server say they archive (XEP-0313 §7 / disco).
    info = await alice.plugin["xep_0030"].get_info(jid=alice.bare, timeout=10)
    assert {NS_MAM, f"{NS_MAM}#extended"} <= set(info["disco_info"]["features"])


async def test_paging_forward_and_backward_over_5000_messages(make_im_server, im):
    # Room in the recipient's queue for all of them at once.
    server = make_im_server("mam-paging", limits={"outgoing_queue": 3 * TOTAL,
                                                  "outgoing_queue_bytes": 64 * 1024 * 1024})
    alice = await mam_user(server, im, "alice")
    bob = await mam_user(server, im, "bob")
    bodies = [f"n-{n:04d}" for n in range(TOTAL)]
    for body in bodies:
        alice.message(bob.bare, body)
    await bob.inbox.expect(is_message(body=bodies[-1]), "the last message", timeout=120)

    mam = bob.plugin["xep_0313"]
    forward = [Archived(m) async for m in mam.iterate(rsm={"max": 250})]
    assert [a.body for a in forward] == bodies
    assert len({a.id for a in forward}) == TOTAL

    backward = [Archived(m) async for m in mam.iterate(rsm={"max": 250}, reverse=True)]
    assert [a.body for a in backward] == bodies[::-1]
    assert [a.id for a in backward] == [a.id for a in forward][::-1]

    # The sender's archive holds the same conversation.
    sent = [Archived(m) async for m in alice.plugin["xep_0313"].iterate(rsm={"max": 250})]
    assert [a.body for a in sent] == bodies


async def test_time_windows_select_by_the_stamp_the_server_gave(server, im):
    alice = await mam_user(server, im, "alice")
    bob = await mam_user(server, im, "bob")
    for body in ("one", "two", "three"):
        alice.message(bob.bare, body)
        await bob.inbox.expect(is_message(body=body), body)
        # Distinct stamps (milliseconds) for each message.
        await alice.sync()
    everything = await archive(bob)
    assert [a.body for a in everything] == ["one", "two", "three"]
    stamps = [parse_stamp(a.stamp) for a in everything]
    assert stamps[0] < stamps[1] < stamps[2]
    assert [a.body for a in await archive(bob, start=stamps[1])] == ["two", "three"]
    assert [a.body for a in await archive(bob, end=stamps[1])] == ["one", "two"]
    assert [a.body for a in await archive(bob, start=stamps[1], end=stamps[1])] == ["two"]
    later = stamps[2] + datetime.timedelta(seconds=1)
    assert await archive(bob, start=later) == []


async def test_with_filters_by_bare_or_full_jid(server, im):
    alice_phone = await mam_user(server, im, "alice", "phone")
    alice_laptop = await mam_login(server, im, alice_phone.bare, alice_phone.account_password, "laptop")
    carol = await mam_user(server, im, "carol")
    bob = await mam_user(server, im, "bob")
    for sender, body in ((alice_phone, "from the phone"), (alice_laptop, "from the laptop"),
                         (carol, "from carol")):
        sender.message(bob.bare, body)
        await bob.inbox.expect(is_message(body=body), body)
    by_bare = await archive(bob, with_jid=alice_phone.bare)
    assert [a.body for a in by_bare] == ["from the phone", "from the laptop"]
    by_full = await archive(bob, with_jid=alice_laptop.full)
    assert [a.body for a in by_full] == ["from the laptop"]
    assert [a.body for a in await archive(bob, with_jid=carol.bare)] == ["from carol"]


async def test_chat_states_alone_are_not_archived(server, im):
    alice = await mam_user(server, im, "alice")
    bob = await mam_user(server, im, "bob")
    composing = ET.Element(f"{{{NS_CHATSTATES}}}composing")
    alice.message(bob.bare, None, extra=[composing])
    active = ET.Element(f"{{{NS_CHATSTATES}}}active")
    alice.message(bob.bare, "words", extra=[active])
    await bob.inbox.expect(is_message(body="words"), "the message with a body")
    assert [a.body for a in await archive(bob)] == ["words"]
    assert [a.body for a in await archive(alice)] == ["words"]


async def test_preferences_round_trip_and_apply(server, im):
    alice = await mam_user(server, im, "alice")
    bob = await mam_user(server, im, "bob")
    carol = await mam_user(server, im, "carol")
    prefs = bob.plugin["xep_0441"]
    default, always, never = await prefs.get_preferences(timeout=10)
    assert (default, set(always), set(never)) == ("always", set(), set())
    await prefs.set_preferences(default="always", always=[], never=[carol.bare], timeout=10)
    default, always, never = await prefs.get_preferences(timeout=10)
    assert default == "always" and {str(j) for j in never} == {carol.bare} and not always

    carol.message(bob.bare, "not for the record")
    alice.message(bob.bare, "for the record")
    await bob.inbox.expect(is_message(body="for the record"), "alice's message")
    await bob.inbox.expect(is_message(body="not for the record"), "carol's message")
    assert [a.body for a in await archive(bob)] == ["for the record"]


async def test_someone_elses_archive_is_forbidden(server, im):
    alice = await mam_user(server, im, "alice")
    bob = await mam_user(server, im, "bob")
    with pytest.raises(IqError) as refused:
        await archive(alice, jid=bob.bare)
    assert refused.value.iq["error"]["condition"] == "forbidden"


async def test_a_room_archive_is_queried_at_the_room(server, im):
    owner = await mam_user(server, im, "owner")
    guest = await mam_user(server, im, "guest")
    room = f"{unique_name('archived')}@{SERVICE}"
    muc = owner.plugin["xep_0045"]
    await muc.join_muc_wait(room, "owner", timeout=10)
    instant = ET.Element("{http://jabber.org/protocol/muc#owner}query")
    ET.SubElement(instant, "{jabber:x:data}x", {"type": "submit"})
    await owner.query("set", instant, to=room)
    await guest.plugin["xep_0045"].join_muc_wait(room, "guest", timeout=10)

    info = await guest.plugin["xep_0030"].get_info(jid=room, timeout=10)
    assert NS_MAM in info["disco_info"]["features"]
    seen = []
    for sender, body in ((owner, "first words"), (guest, "a reply")):
        sender.message(room, body, mtype="groupchat")
        got = await guest.inbox.expect(is_message(body=body, mtype="groupchat"), body)
        seen.append(got.xml.find(f"{{{NS_SID}}}stanza-id[@by='{room}']").get("id"))
    results = await archive(guest, jid=room)
    assert [(a.id, a.body, a.sender) for a in results] == [
        (seen[0], "first words", f"{room}/owner"),
        (seen[1], "a reply", f"{room}/guest"),
    ]


async def test_a_persistent_room_serves_its_history_from_the_archive_after_a_restart(make_im_server, im):
    own = make_im_server("mam-room-restart")
    owner = await mam_user(own, im, "owner")
    room = f"{unique_name('kept')}@{SERVICE}"
    muc = owner.plugin["xep_0045"]
    await muc.join_muc_wait(room, "owner", timeout=10)
    form = await muc.get_room_config(room)
    form.field["muc#roomconfig_persistentroom"]["value"] = True
    assert form.field["muc#roomconfig_enablearchiving"]["value"] is True
    await muc.set_room_config(room, form)
    for body in ("before", "the", "restart"):
        owner.message(room, body, mtype="groupchat")
        await owner.inbox.expect(is_message(body=body, mtype="groupchat"), body)
    archived_ids = [a.id for a in await archive(owner, jid=room)]
    await owner.close()

    own.restart()
    guest = await mam_user(own, im, "guest")
    _, _, _, history = await guest.plugin["xep_0045"].join_muc_wait(room, "guest", timeout=10)
    assert [m["body"] for m in history] == ["before", "the", "restart"]
    assert [m.xml.find(f"{{{NS_SID}}}stanza-id[@by='{room}']").get("id") for m in history] == archived_ids
    assert all(m.xml.find(f"{{{NS_DELAY}}}delay") is not None for m in history)


async def test_clear_archive_empties_one_account_and_user_remove_takes_the_archive(server, im):
    alice = await mam_user(server, im, "alice")
    bob = await mam_user(server, im, "bob")
    alice.message(bob.bare, "to be forgotten")
    await bob.inbox.expect(is_message(body="to be forgotten"), "alice's message")

    kept = server.cli("user", "clear-archive", bob.bare, "--older-than-days", "1")
    assert kept.returncode == 0, kept.stderr
    assert "removed 0 " in kept.stdout
    assert [a.body for a in await archive(bob)] == ["to be forgotten"]
    cleared = server.cli("user", "clear-archive", bob.bare)
    assert cleared.returncode == 0, cleared.stderr
    assert "removed 1 " in cleared.stdout
    assert await archive(bob) == []
    # Only bob's archive: alice keeps her copy.
    assert [a.body for a in await archive(alice)] == ["to be forgotten"]
    missing = server.cli("user", "clear-archive", f"nobody-{unique_name('x')}@{DOMAIN}")
    assert missing.returncode != 0 and "does not exist" in missing.stderr

    # Deleting an account deletes its archive: an account made again under the name
    # starts with an empty one.
    await alice.close()
    remove_user(server, alice.bare)
    server.add_user(alice.bare.split("@")[0], alice.account_password)
    again = await mam_login(server, im, alice.bare, alice.account_password, "again")
    assert await archive(again) == []


async def test_a_client_that_syncs_from_the_archive_first_gets_no_offline_duplicates(server, im):
    alice = await mam_user(server, im, "alice")
    bob_jid, bob_password = server.new_account("bob")
    for body in ("while", "you", "slept"):
        alice.message(bob_jid, body)
    await alice.sync()
    # Like Conversations: log in, catch up from the archive, then send initial presence.
    bob = await mam_login(server, im, bob_jid, bob_password, "phone", online=False)
    assert [a.body for a in await archive(bob)] == ["while", "you", "slept"]
    await bob.online()
    # A live message after the presence: the offline backlog would have been queued first.
    alice.message(bob_jid, "later")
    await bob.inbox.expect(is_message(body="later"), "a live message")
    await bob.sync()
    from_offline = [s for s in bob.inbox.history
                    if s.name == "message" and s.xml.find(f"{{{NS_DELAY}}}delay") is not None]
    assert from_offline == []


async def test_a_client_without_the_archive_still_gets_its_offline_messages(server, im):
    alice = await mam_user(server, im, "alice")
    bob_jid, bob_password = server.new_account("bob")
    alice.message(bob_jid, "kept for you")
    await alice.sync()
    bob = await mam_login(server, im, bob_jid, bob_password, "phone")
    got = await bob.inbox.expect(is_message(body="kept for you"), "the offline message")
    assert got.xml.find(f"{{{NS_DELAY}}}delay") is not None
    # It is in the archive too, under the stanza-id it came with.
    [archived] = await archive(bob)
    assert archived.id == got.xml.find(f"{{{NS_SID}}}stanza-id[@by='{bob_jid}']").get("id")
