"""The blocking command with real clients (XEP-0191, urn:xmpp:blocking): block, unblock,
unblock all, the blocklist and its pushes; what a blocked contact can no longer do, and what
the user can no longer send it."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import pytest

from interop_support import (
    DOMAIN,
    NS_BLOCKING,
    NS_BLOCKING_ERRORS,
    TIMEOUT,
    IqError,
    befriend,
    error_of,
    iq_error_condition,
    is_message,
    is_presence,
)


def someone() -> str:
    return f"pest-{uuid.uuid4().hex[:8]}@{DOMAIN}"


async def blocklist(client) -> set[str]:
    result = await client.plugin["xep_0191"].get_blocked(timeout=TIMEOUT)
    blocklist = result.xml.find(f"{{{NS_BLOCKING}}}blocklist")
    # XEP-0191 §3.2: an empty <blocklist/> when nothing is blocked.
    assert blocklist is not None, str(result)
    return {item.get("jid") for item in blocklist.findall(f"{{{NS_BLOCKING}}}item")}


async def unblock_all(client):
    return await client.query("set", ET.Element(f"{{{NS_BLOCKING}}}unblock"))


def is_blocking_push(kind: str, jids: set[str]):
    """An IQ-set push (XEP-0191 §3.3/§3.4) of <block/> or <unblock/> with exactly `jids`."""
    def match(stanza) -> bool:
        if stanza.name != "iq" or stanza.xml.get("type") != "set":
            return False
        el = stanza.xml.find(f"{{{NS_BLOCKING}}}{kind}")
        return el is not None and {i.get("jid") for i in el.findall(f"{{{NS_BLOCKING}}}item")} == jids
    return match


async def test_server_advertises_blocking(server, im):
    alice = await im.user(server, "alice")
    info = await alice.plugin["xep_0030"].get_info(jid=DOMAIN, local=False, timeout=TIMEOUT)
    # XEP-0191 §3.1
    assert NS_BLOCKING in info["disco_info"]["features"]


async def test_block_unblock_and_unblock_all_change_the_blocklist(server, im):
    alice = await im.user(server, "alice")
    first, second, third = someone(), someone(), "spam.example"
    assert await blocklist(alice) == set()
    blocking = alice.plugin["xep_0191"]
    assert (await blocking.block([first, second], timeout=TIMEOUT))["type"] == "result"
    assert await blocklist(alice) == {first, second}
    assert (await blocking.unblock(first, timeout=TIMEOUT))["type"] == "result"
    assert await blocklist(alice) == {second}
    await blocking.block(third, timeout=TIMEOUT)
    assert await blocklist(alice) == {second, third}
    # XEP-0191 §3.5: an empty <unblock/> unblocks everyone.
    assert (await unblock_all(alice))["type"] == "result"
    assert await blocklist(alice) == set()


async def test_block_without_items_is_bad_request(server, im):
    alice = await im.user(server, "alice")
    with pytest.raises(IqError) as failed:
        await alice.query("set", ET.Element(f"{{{NS_BLOCKING}}}block"))
    # XEP-0191 §3.3
    assert iq_error_condition(failed.value) == "bad-request"


async def test_block_and_unblock_are_pushed_to_resources_that_requested_the_blocklist(server, im):
    jid, password = server.new_account("alice")
    one = await im.online(server, f"{jid}/one", password)
    two = await im.online(server, f"{jid}/two", password)
    for resource in (one, two):
        await blocklist(resource)
    pest = someone()

    await one.plugin["xep_0191"].block(pest, timeout=TIMEOUT)
    # XEP-0191 §3.3: to all of the user's resources that requested the blocklist.
    for resource in (one, two):
        await resource.inbox.expect(is_blocking_push("block", {pest}), "a <block/> push")
    await one.plugin["xep_0191"].unblock(pest, timeout=TIMEOUT)
    for resource in (one, two):
        await resource.inbox.expect(is_blocking_push("unblock", {pest}), "an <unblock/> push")
    await unblock_all(one)
    for resource in (one, two):
        await resource.inbox.expect(is_blocking_push("unblock", set()), "an empty <unblock/> push")


async def test_stanzas_from_a_blocked_contact_are_not_delivered(server, im):
    alice = await im.user(server, "alice")
    carol = await im.user(server, "carol")
    dave = await im.user(server, "dave")
    await alice.plugin["xep_0191"].block(carol.bare, timeout=TIMEOUT)

    blocked = carol.message(alice.full, "can you hear me?")
    carol.presence(to=alice.full, status="directed, blocked")
    with pytest.raises(IqError) as failed:
        await carol.plugin["xep_0199"].send_ping(alice.full, timeout=TIMEOUT)
    # XEP-0191 §3.3: an IQ get/set gets an error (SHOULD be service-unavailable).
    assert failed.value.iq["type"] == "error"
    # Carol's stanzas were all handled before her ping was answered.
    marker = dave.message(alice.full, "marker")
    await alice.inbox.expect(is_message(mid=marker), "the marker")
    assert alice.inbox.matching(is_message(mid=blocked)) == []
    assert alice.inbox.matching(is_presence(from_bare=carol.bare)) == []
    assert alice.inbox.matching(lambda s: s.name == "iq" and s.xml.get("from") == carol.full) == []


async def test_blocked_contact_sees_the_user_offline(server, im):
    alice = await im.user(server, "alice")
    carol = await im.user(server, "carol")
    dave = await im.user(server, "dave")
    await befriend(alice, carol)

    await alice.plugin["xep_0191"].block(carol.bare, timeout=TIMEOUT)
    # XEP-0191 §3.3: carol may see alice's presence, so she is sent unavailable.
    await carol.inbox.expect(is_presence("unavailable", frm=alice.full), "unavailable from alice")
    # Whatever presence of alice's came before the unavailable is history.
    carol.inbox.discard(is_presence(from_bare=alice.bare))

    alice.presence(show="chat", status="after the block")
    await alice.sync()
    later = await im.login(server, f"{carol.bare}/later", carol.account_password)
    await later.online()
    seen = {}
    for resource in (carol, later):
        marker = dave.message(resource.full, "marker")
        await resource.inbox.expect(is_message(mid=marker), "the marker")
        seen[resource.full] = [str(s) for s in resource.inbox.matching(is_presence("available", from_bare=alice.bare))]
    # Neither alice's broadcast (to /carol) nor the answer to /later's probe shows her available.
    assert seen == {carol.full: [], later.full: []}


async def test_a_contact_who_blocked_the_user_gets_none_of_its_broadcasts(server, im):
    alice = await im.user(server, "alice")
    carol = await im.user(server, "carol")
    dave = await im.user(server, "dave")
    await befriend(alice, carol)
    await befriend(alice, dave)

    await carol.plugin["xep_0191"].block(alice.bare, timeout=TIMEOUT)
    carol.inbox.discard(is_presence(from_bare=alice.bare))
    alice.presence(show="chat", status="to my contacts")
    await alice.sync()
    # XEP-0191 §3.4: nothing of alice's reaches carol, her presence broadcasts included;
    # dave, who blocked no one, gets it.
    await dave.inbox.expect(is_presence("available", frm=alice.full, status="to my contacts"), "alice's update")
    marker = dave.message(carol.full, "marker")
    await carol.inbox.expect(is_message(mid=marker), "the marker")
    assert carol.inbox.matching(is_presence(from_bare=alice.bare)) == []


async def test_sending_to_a_blocked_jid_is_refused_with_blocked_error(server, im):
    alice = await im.user(server, "alice")
    carol = await im.user(server, "carol")
    dave = await im.user(server, "dave")
    await alice.plugin["xep_0191"].block(carol.bare, timeout=TIMEOUT)

    mid = alice.message(carol.full, "I blocked you, but…")
    await alice.sync()
    marker = dave.message(carol.full, "marker")
    await carol.inbox.expect(is_message(mid=marker), "the marker")
    assert carol.inbox.matching(is_message(mid=mid)) == []
    bounce = await alice.inbox.expect(is_message(mid=mid, mtype="error"), "the error for the message to carol")
    # XEP-0191 §3.3 (Example 9)
    etype, condition, extra = error_of(bounce)
    assert (etype, condition) == ("cancel", "not-acceptable"), str(bounce)
    assert f"{{{NS_BLOCKING_ERRORS}}}blocked" in extra, str(bounce)


async def test_unblocking_restores_presence_and_messages(server, im):
    alice = await im.user(server, "alice", status="alice's status")
    carol = await im.user(server, "carol")
    await befriend(alice, carol)
    blocking = alice.plugin["xep_0191"]
    await blocking.block(carol.bare, timeout=TIMEOUT)
    await carol.inbox.expect(is_presence("unavailable", frm=alice.full), "unavailable from alice")
    carol.inbox.discard(is_presence(from_bare=alice.bare))

    await blocking.unblock(carol.bare, timeout=TIMEOUT)
    # XEP-0191 §3.4: carol is sent alice's current presence; messages flow again.
    await carol.inbox.expect(is_presence("available", frm=alice.full, status="alice's status"),
                             "alice's presence after the unblock")
    mid = carol.message(alice.full, "hello again")
    await alice.inbox.expect(is_message(mid=mid), "carol's message after the unblock")


async def test_a_message_from_a_blocked_contact_is_answered_service_unavailable(server, im):
    alice = await im.user(server, "alice")
    carol = await im.user(server, "carol")
    await alice.plugin["xep_0191"].block(carol.bare, timeout=TIMEOUT)

    blocked = carol.message(alice.full, "can you hear me?")
    # XEP-0191 §3.5: the sender learns nothing more than that no one is there.
    bounce = await carol.inbox.expect(is_message(mid=blocked, mtype="error"), "the error reply")
    assert error_of(bounce)[:2] == ("cancel", "service-unavailable"), str(bounce)
    assert alice.inbox.matching(is_message(mid=blocked)) == []
