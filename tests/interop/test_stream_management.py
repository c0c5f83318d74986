"""Stream management (XEP-0198) with real clients: slixmpp's xep_0198 plugin and aioxmpp's
built-in stream management lose their connection without closing the stream, and come
back by resuming; what they and their contacts observe is checked.

- Within the resumption timeout: the messages sent meanwhile arrive exactly once, the
  full JID is the same, and contacts see no unavailable/available flap (XEP-0198 §5).
- After the timeout: <failed><item-not-found/></failed>, and the messages that were
  waiting in the dead session arrive as offline messages with a XEP-0203 delay, once
  (XEP-0198 §5: unacknowledged stanzas are treated as if sent to an unavailable resource),
  and are in the archive when the server has one (XEP-0313).

The exact protocol (counters, errors, what is resent) is in test_sm_protocol.py.
"""

from __future__ import annotations

import asyncio
import collections
import datetime

import aioxmpp
import aioxmpp.connector
import aioxmpp.dispatcher
import pytest

from interop_support import HOST, NS_DELAY, TIMEOUT, befriend, is_message, is_presence
from sm_support import SmClient, advertises_mam, archived_messages, failed_condition

#: Seconds to wait for something the server does on a timer (a detached session expiring).
SLOW = 30.0


def sm_server(make_im_server, name: str, **options):
    return make_im_server(name, sections={"stream_management": options})


async def alice_and_phone(own, im, clients, proxy, **options) -> tuple:
    """alice (an ordinary client) and bob's phone (slixmpp with stream management, through
    the proxy), both online and subscribed to each other; alice has seen the phone's
    presence, and her inbox holds no presence of it any more."""
    alice = await im.user(own, "alice")
    bob_jid, bob_password = own.new_account("bob")
    phone = SmClient(f"{bob_jid}/phone", bob_password, **options)
    clients.made.append(phone)
    await phone.start(proxy)
    enabled = await phone.sm_ready()
    # XEP-0198 §3: resumption requested and granted, with an id to resume by.
    assert enabled.get("resume") in ("true", "1") and enabled.get("id"), str(enabled)
    await phone.online()
    await befriend(alice, phone)
    await alice.inbox.expect(is_presence("available", frm=phone.full), "the phone's presence")
    # A round trip through the phone: its presence broadcasts are all out.
    ping = phone.message(alice.full, "settled")
    await alice.inbox.expect(is_message(mid=ping), "the phone's settling message")
    alice.inbox.discard(is_presence(from_bare=phone.bare))
    return alice, phone


def count_ids(client, ids) -> dict[str, int]:
    counts = collections.Counter(s.xml.get("id") for s in client.inbox.history if s.name == "message")
    return {mid: counts[mid] for mid in ids}


@pytest.mark.parametrize("cut", ["silent", "reset"])
async def test_messages_sent_while_cut_arrive_once_after_resumption(make_im_server, im, clients, proxies, cut):
    # silent: the server's side of the old connection stays open (a phone out of
    # coverage); reset: the server sees the connection end at once.
    own = sm_server(make_im_server, f"sm-resume-{cut}")
    proxy = await proxies(own)
    alice, phone = await alice_and_phone(own, im, clients, proxy)
    full_before = phone.full

    before = [alice.message(phone.full, f"before the cut {i}") for i in range(2)]
    for mid in before:
        await phone.inbox.expect(is_message(mid=mid), f"message {mid} before the cut")
    await phone.sync()
    sent_before_cut = phone.sm.seq

    await phone.cut()
    if cut == "reset":
        proxy.release()
    during = [
        alice.message(full_before, "while cut 1 (full JID)"),
        alice.message(phone.bare, "while cut 2 (bare JID)"),
        alice.message(full_before, "while cut 3 (full JID)"),
    ]
    await alice.sync()

    assert await phone.reconnect(proxy.port) == "resumed", f"failed: {[str(f) for f in phone.failed]}"
    resumed = phone.resumed[-1]
    # XEP-0198 §5: <resumed previd h/>, h = the stanzas the server handled from the phone.
    assert resumed.get("previd") == phone.enabled[-1].get("id"), str(resumed)
    assert int(resumed.get("h")) == sent_before_cut, str(resumed)
    for mid in during:
        await phone.inbox.expect(is_message(mid=mid), f"message {mid} sent while cut")

    # The session kept its full JID: alice sees the phone's reply from it.
    reply = phone.message(alice.bare, "back again")
    got = await alice.inbox.expect(is_message(mid=reply), "the phone's reply after resuming")
    assert got.xml.get("from") == full_before
    marker = alice.message(full_before, "marker")
    await phone.inbox.expect(is_message(mid=marker), "the marker")
    assert count_ids(phone, before + during) == {mid: 1 for mid in before + during}
    # No presence flap: alice saw neither unavailable nor a new available from the phone.
    assert alice.inbox.matching(is_presence(from_bare=phone.bare)) == []

    # The subscriptions are the session's still: alice's presence reaches the phone.
    alice.presence(status="still here")
    await phone.inbox.expect(is_presence("available", frm=alice.full, status="still here"), "alice's presence")
    # And so is its presence: a new resource of alice's probes and finds the phone available.
    tablet = await im.online(own, f"{alice.bare}/tablet", alice.account_password)
    await tablet.inbox.expect(is_presence("available", frm=full_before), "the phone's presence, probed")


async def test_slixmpp_acks_and_resumes_across_the_32_bit_wrap(make_im_server, im, clients, proxies):
    # XEP-0198 §4: h wraps at 2^32. The server's counters start 3 below it (counter_start),
    # and slixmpp's are set to the same start: both wrap within the first few stanzas.
    start = 2 ** 32 - 3
    own = sm_server(make_im_server, "sm-wrap-slixmpp", counter_start=start)
    proxy = await proxies(own)
    alice, phone = await alice_and_phone(own, im, clients, proxy, counter_start=start)
    assert phone.sm.handled < start, "the phone's received count did not wrap"
    before = [alice.message(phone.full, f"before the cut {i}") for i in range(3)]
    for mid in before:
        await phone.inbox.expect(is_message(mid=mid), f"message {mid}")
    await phone.sync()
    # What slixmpp has sent in all, by its own books: acknowledged + still queued.
    sent = (phone.sm.last_ack + len(phone.sm.unacked_queue)) % 2 ** 32
    assert sent < start, "the phone's sent count did not wrap"

    await phone.cut()
    during = [alice.message(phone.full, f"while cut {i}") for i in range(3)]
    await alice.sync()
    assert await phone.reconnect(proxy.port) == "resumed", f"failed: {[str(f) for f in phone.failed]}"
    assert int(phone.resumed[-1].get("h")) == sent, str(phone.resumed[-1])
    for mid in during:
        await phone.inbox.expect(is_message(mid=mid), f"message {mid} sent while cut")
    marker = alice.message(phone.full, "marker")
    await phone.inbox.expect(is_message(mid=marker), "the marker")
    assert count_ids(phone, before + during) == {mid: 1 for mid in before + during}
    assert phone.stream_errors == []


async def expire_with_messages(own, im, clients, proxy) -> tuple:
    """The phone is cut silently, alice sends it three messages, then the server learns the
    connection is gone and keeps the session for `resume_timeout_secs`; returns once alice
    sees the phone go unavailable (the session ended) and the phone has come back with a
    new session after its resumption was refused."""
    alice, phone = await alice_and_phone(own, im, clients, proxy)
    full_before = phone.full
    await phone.cut()
    ids = [
        alice.message(full_before, "lost in the air 1"),
        alice.message(phone.bare, "lost in the air 2"),
        alice.message(full_before, "lost in the air 3"),
    ]
    await alice.sync()
    proxy.release()
    await alice.inbox.expect(is_presence("unavailable", frm=full_before), "the phone's session ending", SLOW)

    assert await phone.reconnect(proxy.port) == "new session"
    # XEP-0198 §5: an expired session cannot be resumed.
    assert [failed_condition(f) for f in phone.failed] == ["item-not-found"], [str(f) for f in phone.failed]
    return alice, phone, ids


async def test_resumption_after_the_timeout_fails_and_the_messages_arrive_offline(make_im_server, im, clients,
                                                                                  proxies):
    own = sm_server(make_im_server, "sm-expire", resume_timeout_secs=2)
    proxy = await proxies(own)
    sent_at = datetime.datetime.now(datetime.timezone.utc)
    alice, phone, ids = await expire_with_messages(own, im, clients, proxy)

    await phone.online()
    for mid in ids:
        got = await phone.inbox.expect(is_message(mid=mid), f"offline message {mid}")
        delay = got.xml.find(f"{{{NS_DELAY}}}delay")
        assert delay is not None, f"no XEP-0203 delay on {got}"
        stamp = datetime.datetime.fromisoformat(delay.get("stamp", "").replace("Z", "+00:00"))
        assert abs((stamp - sent_at).total_seconds()) < 120, delay.get("stamp")
    marker = alice.message(phone.full, "marker")
    await phone.inbox.expect(is_message(mid=marker), "the marker")
    assert count_ids(phone, ids) == {mid: 1 for mid in ids}


async def test_messages_of_an_expired_session_are_in_the_archive(make_im_server, im, clients, proxies):
    own = sm_server(make_im_server, "sm-expire-mam", resume_timeout_secs=2)
    proxy = await proxies(own)
    alice, phone, ids = await expire_with_messages(own, im, clients, proxy)
    assert await advertises_mam(phone), "the server does not advertise urn:xmpp:mam:2 (XEP-0313)"
    archived = await archived_messages(phone, alice.bare)
    bodies = collections.Counter(m.findtext("{jabber:client}body") for m in archived)
    for i in (1, 2, 3):
        assert bodies[f"lost in the air {i}"] == 1, f"archive of the phone with alice: {dict(bodies)}"


# -- aioxmpp ---------------------------------------------------------------------------


def chat(to: str, body: str) -> aioxmpp.Message:
    message = aioxmpp.Message(to=aioxmpp.JID.fromstr(to), type_=aioxmpp.MessageType.CHAT)
    message.body[None] = body
    return message


async def test_aioxmpp_resumes_after_a_cut_and_gets_the_messages_once(make_im_server, im, proxies):
    own = sm_server(make_im_server, "sm-aioxmpp")
    proxy = await proxies(own)
    alice = await im.user(own, "alice")
    jid, password = own.new_account("aio")
    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(f"{jid}/aioxmpp"),
        aioxmpp.make_security_layer(password, no_verify=True),
        override_peer=[(HOST, proxy.port, aioxmpp.connector.STARTTLSConnector())],
    )
    # aioxmpp asks for this as <enable max='120'/>; the server honours it (≤ 600).
    client.resumption_timeout = 120
    client.backoff_start = datetime.timedelta(seconds=0.2)
    received: list[aioxmpp.Message] = []
    arrived = asyncio.Event()

    def on_message(message):
        received.append(message)
        arrived.set()

    client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher).register_callback(
        aioxmpp.MessageType.CHAT, None, on_message)
    roster = client.summon(aioxmpp.RosterClient)
    roster.on_subscribe.connect(lambda stanza: roster.approve(stanza.from_))
    resumed, destroyed = asyncio.Event(), []
    client.on_stream_resumed.connect(lambda: resumed.set())
    client.on_stream_destroyed.connect(lambda *args: destroyed.append(args))

    async def wait_for_ids(ids):
        while not set(ids) <= {m.id_ for m in received}:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), SLOW)

    async with client.connected():
        assert client.stream.sm_enabled and client.stream.sm_resumable
        assert client.stream.sm_max == 120
        full = str(client.local_jid)
        alice.presence("subscribe", to=jid)
        await alice.inbox.expect(is_presence("available", frm=full), "aioxmpp's presence after approving")
        first = alice.message(full, "before the cut")
        await wait_for_ids([first])
        # A round trip from aioxmpp to alice: the subscription's presences are all out.
        await asyncio.wait_for(client.send(chat(alice.full, "settled")), TIMEOUT)
        await alice.inbox.expect(is_message(body="settled"), "aioxmpp's settling message")
        alice.inbox.discard(is_presence(from_bare=jid))

        proxy.cut()
        during = [alice.message(full, f"while cut {i}") for i in range(3)]
        await alice.sync()
        await asyncio.wait_for(resumed.wait(), SLOW)
        await wait_for_ids(during)
        assert destroyed == [], "aioxmpp had to start a new session"
        assert str(client.local_jid) == full

        await asyncio.wait_for(client.send(chat(alice.full, "aioxmpp is back")), TIMEOUT)
        got = await alice.inbox.expect(is_message(body="aioxmpp is back"), "aioxmpp's reply")
        assert got.xml.get("from") == full
        marker = alice.message(full, "marker")
        await wait_for_ids([marker])
        counts = collections.Counter(m.id_ for m in received)
        assert {mid: counts[mid] for mid in [first, *during]} == {mid: 1 for mid in [first, *during]}
        assert alice.inbox.matching(is_presence(from_bare=jid)) == [], "a presence flap"
