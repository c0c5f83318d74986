"""Offline messages with real clients (XEP-0160, XEP-0203): kept while the recipient has no
available resource, delivered once with a <delay/> at the next available presence, a
per-user quota, and the message types that are not kept."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET

from interop_support import DOMAIN, NS_DELAY, error_of, is_message


def delay_of(stanza) -> ET.Element | None:
    return stanza.xml.find(f"{{{NS_DELAY}}}delay")


def parse_stamp(stamp: str) -> datetime.datetime:
    # XEP-0082 DateTime: UTC with Z (fractions of a second allowed).
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def test_messages_to_an_offline_user_are_delivered_at_login_with_delay(server, im):
    alice = await im.user(server, "alice")
    bob_jid, bob_password = server.new_account("bob")
    sent_at = datetime.datetime.now(datetime.timezone.utc)
    ids = [
        alice.message(bob_jid, "first, chat 你好", mtype="chat"),
        alice.message(bob_jid, "second, normal <&>", mtype="normal"),
        alice.message(f"{bob_jid}/gone", "third, chat to a full JID", mtype="chat"),
    ]
    await alice.sync()
    # XEP-0160 §2: stored, not bounced.
    assert alice.inbox.matching(is_message(mtype="error")) == []

    bob = await im.login(server, f"{bob_jid}/phone", bob_password)
    await bob.online()
    got = [await bob.inbox.expect(is_message(mid=mid), f"offline message {mid}") for mid in ids]
    # In the order sent, from alice's full JID, body and type unchanged.
    bodies = [m.xml.findtext("{jabber:client}body") for m in got]
    assert bodies == ["first, chat 你好", "second, normal <&>", "third, chat to a full JID"]
    assert [m.xml.get("type") or "normal" for m in got] == ["chat", "normal", "chat"]
    assert {m.xml.get("from") for m in got} == {alice.full}
    for message in got:
        delay = delay_of(message)
        # XEP-0160 §2 recommends, and the feature requires, an XEP-0203 <delay/>.
        assert delay is not None, str(message)
        stamp = parse_stamp(delay.get("stamp", ""))
        assert abs((stamp - sent_at).total_seconds()) < 30, f"{delay.get('stamp')} vs sent at {sent_at}"
        assert delay.get("from") in (None, DOMAIN, bob_jid), str(message)
    # Delivered in the order they were sent.
    assert [m.xml.get("id") for m in bob.inbox.history if m.xml.get("id") in ids] == ids


async def test_offline_messages_are_delivered_only_once(server, im):
    alice = await im.user(server, "alice")
    bob_jid, bob_password = server.new_account("bob")
    stored = alice.message(bob_jid, "only once")
    await alice.sync()

    first = await im.login(server, f"{bob_jid}/first", bob_password)
    await first.online()
    await first.inbox.expect(is_message(mid=stored), "the offline message")
    await first.close()

    second = await im.login(server, f"{bob_jid}/second", bob_password)
    await second.online()
    marker = alice.message(second.full, "marker")
    await second.inbox.expect(is_message(mid=marker), "the marker message")
    assert second.inbox.matching(is_message(mid=stored)) == []


async def test_login_with_negative_priority_does_not_take_offline_messages(server, im):
    alice = await im.user(server, "alice")
    bob_jid, bob_password = server.new_account("bob")
    stored = alice.message(bob_jid, "for a resource with non-negative priority")
    await alice.sync()

    negative = await im.login(server, f"{bob_jid}/negative", bob_password)
    await negative.online(priority=-5)
    marker = alice.message(negative.full, "marker")
    await negative.inbox.expect(is_message(mid=marker), "the marker message")
    # XEP-0160 §2: delivered when the recipient next sends non-negative presence.
    assert negative.inbox.matching(is_message(mid=stored)) == []
    await negative.close()

    positive = await im.login(server, f"{bob_jid}/positive", bob_password)
    await positive.online(priority=1)
    await positive.inbox.expect(is_message(mid=stored), "the offline message")


async def test_headline_and_error_messages_are_not_stored(server, im):
    alice = await im.user(server, "alice")
    bob_jid, bob_password = server.new_account("bob")
    headline = alice.message(bob_jid, "breaking news", mtype="headline")
    error = alice.message(bob_jid, "an error", mtype="error")
    stored = alice.message(bob_jid, "a chat message is stored", mtype="chat")
    await alice.sync()
    # RFC 6121 §8.5.2.2.1: a headline or error to a user without available resource is
    # dropped silently, not bounced.
    assert alice.inbox.matching(is_message(mtype="error")) == []

    bob = await im.login(server, f"{bob_jid}/phone", bob_password)
    await bob.online()
    await bob.inbox.expect(is_message(mid=stored), "the stored chat message")
    marker = alice.message(bob.full, "marker")
    await bob.inbox.expect(is_message(mid=marker), "the marker message")
    # XEP-0160 §3: headline and error messages are not stored offline.
    assert bob.inbox.matching(is_message(mid=headline)) == []
    assert bob.inbox.matching(is_message(mid=error)) == []


async def test_offline_quota_refuses_messages_beyond_it_with_resource_constraint(make_im_server, im):
    own = make_im_server("offline-quota", sections={"offline": {"quota": 3}})
    alice = await im.user(own, "alice")
    bob_jid, bob_password = own.new_account("bob")
    kept = [alice.message(bob_jid, f"kept {i}") for i in range(3)]
    refused = alice.message(bob_jid, "one too many")
    bounce = await alice.inbox.expect(is_message(mid=refused, mtype="error"), "an error for the 4th message")
    assert bounce.xml.get("from") in (bob_jid, None), str(bounce)
    # The issue: beyond `[offline] quota`, resource-constraint. (XEP-0160 §2 itself says
    # service-unavailable when the queue is full.)
    assert error_of(bounce)[1] == "resource-constraint", str(bounce)
    assert alice.inbox.matching(is_message(mtype="error")) == [], "the kept messages were refused too"

    bob = await im.login(own, f"{bob_jid}/phone", bob_password)
    await bob.online()
    for mid in kept:
        await bob.inbox.expect(is_message(mid=mid), f"kept message {mid}")
    marker = alice.message(bob.full, "marker")
    await bob.inbox.expect(is_message(mid=marker), "the marker message")
    assert bob.inbox.matching(is_message(mid=refused)) == []


async def test_default_offline_quota_is_1000(server, im):
    alice = await im.user(server, "alice")
    bob_jid, _ = server.new_account("bob")
    ids = [alice.message(bob_jid, f"n{i}") for i in range(1001)]
    bounce = await alice.inbox.expect(is_message(mtype="error"), "an error once the quota is reached", timeout=30)
    assert bounce.xml.get("id") == ids[1000], f"the first refused message is #{ids.index(bounce.xml.get('id'))}"
    assert error_of(bounce)[1] == "resource-constraint", str(bounce)
    await alice.sync()
    assert alice.inbox.matching(is_message(mtype="error")) == []


async def test_message_to_a_nonexistent_user_is_not_stored_but_bounced(server, im):
    alice = await im.user(server, "alice")
    nobody = f"nobody-{alice.bare.split('@')[0]}@{DOMAIN}"
    mid = alice.message(nobody, "anyone?")
    bounce = await alice.inbox.expect(is_message(mid=mid, mtype="error"), "the bounce")
    # RFC 6121 §8.5.1
    assert error_of(bounce)[:2] == ("cancel", "service-unavailable"), str(bounce)


async def test_a_backlog_larger_than_the_session_queue_arrives_whole(make_server, im):
    # 20 stored messages, 8 stanzas of outgoing queue: all 20 arrive in order, the session
    # is not closed as a slow consumer, and none is stored afterwards.
    own = make_server("small-queue", limits={"outgoing_queue": 8})
    alice = await im.user(own, "alice")
    bob_jid, bob_password = own.new_account("bob")
    ids = [alice.message(bob_jid, f"backlog {i}") for i in range(20)]
    await alice.sync()
    assert alice.inbox.matching(is_message(mtype="error")) == []

    bob = await im.login(own, f"{bob_jid}/phone", bob_password)
    await bob.online()
    for mid in ids:
        await bob.inbox.expect(is_message(mid=mid), f"offline message {mid}")
    assert [m.xml.get("id") for m in bob.inbox.history if m.xml.get("id") in ids] == ids
    await bob.sync()

    again = await im.login(own, f"{bob_jid}/laptop", bob_password)
    await again.online()
    marker = alice.message(again.full, "marker")
    await again.inbox.expect(is_message(mid=marker), "the marker")
    assert [m for m in again.inbox.history if m.xml.get("id") in ids] == []
