"""Presence with real clients (RFC 6121 §4): initial presence, probes and broadcast to
subscribers, updates, unavailable on logout and on a lost connection, directed presence,
and priority (a negative one gets no messages sent to the bare JID)."""

from __future__ import annotations

import pytest

from interop_support import befriend, is_message, is_presence

SHOWS = ["away", "xa", "dnd", "chat"]


async def friends(server, im, **bob_presence):
    """alice and bob, online and subscribed to each other."""
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob", **bob_presence)
    await befriend(alice, bob)
    return alice, bob


def show_status_priority(stanza) -> tuple[str | None, str | None, str | None]:
    x = stanza.xml
    return x.findtext("{jabber:client}show"), x.findtext("{jabber:client}status"), x.findtext("{jabber:client}priority")


@pytest.mark.parametrize("show", SHOWS)
async def test_initial_presence_is_broadcast_to_subscribers_unchanged(server, im, show):
    alice, bob = await friends(server, im)
    second = await im.login(server, f"{bob.bare}/second", bob.account_password)
    status = f"{show}: 在开会 <&> \"quoted\""
    second.presence(show=show, status=status, priority=7)
    # RFC 6121 §4.2.2: to every contact with a subscription to the user; show, status and
    # priority as the client sent them.
    got = await alice.inbox.expect(is_presence("available", frm=second.full), f"presence of {second.full}")
    assert show_status_priority(got) == (show, status, "7")
    assert got.xml.get("to") in (alice.bare, alice.full), str(got)


async def test_initial_presence_probes_deliver_the_contacts_current_presence(server, im):
    alice, bob = await friends(server, im, show="dnd", status="in a meeting")
    later = await im.login(server, f"{alice.bare}/later", alice.account_password)
    await later.online()
    # RFC 6121 §4.2.2 / §4.3.2: alice's server probes bob; bob's server answers with the
    # presence of each of his available resources.
    got = await later.inbox.expect(is_presence("available", frm=bob.full), "bob's presence after the probe")
    assert show_status_priority(got)[:2] == ("dnd", "in a meeting")


async def test_presence_update_is_broadcast_to_subscribers(server, im):
    alice, bob = await friends(server, im)
    changes = []
    alice.add_event_handler("changed_status", changes.append)
    bob.send_presence(pshow="xa", pstatus="gone for lunch")
    # RFC 6121 §4.4.2
    got = await alice.inbox.expect(is_presence("available", frm=bob.full, status="gone for lunch"), "bob's update")
    assert show_status_priority(got)[0] == "xa"
    await alice.sync()
    # slixmpp's view: bob's resource changed status, and its roster shows it.
    assert any(str(c["from"]) == bob.full and c["status"] == "gone for lunch" for c in changes), changes
    assert alice.client_roster.presence(bob.bare)[bob.boundjid.resource]["show"] == "xa"


async def test_own_presence_reaches_the_users_available_resources(server, im):
    alice = await im.user(server, "alice")
    second = await im.login(server, f"{alice.bare}/second", alice.account_password)
    second.presence(status="second is up")
    await second.sync()
    # RFC 6121 §4.2.2: initial presence goes to all of the user's available resources,
    # the one that sent it included.
    await alice.inbox.expect(is_presence("available", frm=second.full, status="second is up"), "presence of /second")
    await second.inbox.expect(is_presence("available", frm=second.full, status="second is up"), "its own presence")


async def test_unavailable_presence_is_broadcast_with_its_status(server, im):
    alice, bob = await friends(server, im)
    bob.presence("unavailable", status="good night")
    # RFC 6121 §4.5.2
    await alice.inbox.expect(is_presence("unavailable", frm=bob.full, status="good night"), "bob's unavailable")


async def test_closing_the_stream_broadcasts_unavailable(server, im):
    alice, bob = await friends(server, im)
    bob_full = bob.full
    await bob.close()
    # RFC 6121 §4.6: the server sends unavailable on the user's behalf.
    await alice.inbox.expect(is_presence("unavailable", frm=bob_full), "unavailable after bob closed his stream")


async def test_lost_connection_broadcasts_unavailable(server, im):
    alice, bob = await friends(server, im)
    bob_full = bob.full
    bob.abort()  # the TCP connection goes away without </stream:stream>
    await alice.inbox.expect(is_presence("unavailable", frm=bob_full), "unavailable after bob's connection was lost")


async def test_directed_presence_and_its_unavailable_at_logout(server, im):
    alice = await im.user(server, "alice")
    carol = await im.user(server, "carol")  # no subscription either way
    carol.presence(to=alice.bare, show="chat", status="hello there")
    got = await alice.inbox.expect(is_presence("available", frm=carol.full), "carol's directed presence")
    assert show_status_priority(got)[:2] == ("chat", "hello there")
    carol_full = carol.full
    await carol.close()
    # RFC 6121 §4.6.2: those who got directed presence get unavailable when the user leaves.
    await alice.inbox.expect(is_presence("unavailable", frm=carol_full), "unavailable from carol")


async def test_broadcast_presence_does_not_reach_non_subscribers(server, im):
    alice = await im.user(server, "alice")
    carol = await im.user(server, "carol")
    carol.presence(show="away", status="not for alice")
    # Carol's stanzas are handled in order: had the broadcast reached alice, it would
    # be there before this message.
    marker = carol.message(alice.full, "marker")
    await alice.inbox.expect(is_message(mid=marker), "the marker message")
    assert alice.inbox.matching(is_presence(from_bare=carol.bare)) == []


async def test_negative_priority_resource_gets_no_bare_jid_messages(server, im):
    alice = await im.user(server, "alice")
    bob_jid, bob_password = server.new_account("bob")
    bob = await im.login(server, f"{bob_jid}/negative", bob_password)
    await bob.online(priority=-1)

    to_bare = alice.message(bob_jid, "to bob's bare JID")
    marker = alice.message(bob.full, "marker to the full JID")
    # RFC 6121 §8.5.2.1.1: a resource with negative priority never gets messages sent to
    # the bare JID; with no other resource, the message is handled as offline (XEP-0160).
    first = await bob.inbox.expect(is_message(from_bare=alice.bare), "a message from alice")
    assert first.xml.get("id") == marker, f"the negative-priority resource got {first}"
    await bob.close()

    back = await im.login(server, f"{bob_jid}/back", bob_password)
    await back.online(priority=0)
    got = await back.inbox.expect(is_message(mid=to_bare), "the bare-JID message, kept offline")
    assert got.xml.findtext("{jabber:client}body") == "to bob's bare JID"
    assert alice.inbox.matching(is_message(mtype="error")) == []
