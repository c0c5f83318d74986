"""Stream management (XEP-0198) to the letter, on raw streams (raw_stream.py): the stream
feature, enabling and its errors, which `<a h>` answers which `<r/>`, when the server asks
for acks, what a resumption resends, the `<a h>` sent before closing, counters across
2^32, and the bound on unacknowledged data. test_stream_management.py does the same
journeys with slixmpp and aioxmpp.

Config under test (`[stream_management]`): resume_timeout_secs, max_resume_timeout_secs,
max_unacked_bytes, ack_request_stanzas, counter_start.
"""

from __future__ import annotations

import collections

import pytest

from interop_support import NS_DELAY, is_message
from raw_stream import (
    NS_SM,
    SEQ_MOD,
    RawStream,
    StreamClosed,
    condition_of,
    describe,
    is_stanza,
    sm,
)

#: Seconds to wait for something the server does on a timer.
SLOW = 30.0
#: XEP-0198 §3 and the counter_start option: a start 3 below 2^32.
NEAR_WRAP = SEQ_MOD - 3


def sm_server(make_im_server, name: str, **options):
    return make_im_server(name, sections={"stream_management": options})


@pytest.fixture
def raw():
    """Opens RawStreams (`await raw(port, jid, password, resource)`); aborts them after
    the test."""
    opened: list[RawStream] = []

    async def login(port, jid, password, resource=None, *, bind=True) -> RawStream:
        if bind:
            stream = await RawStream.login(port, jid, password, resource)
        else:
            stream = await RawStream.authenticated(port, jid, password)
        opened.append(stream)
        return stream

    yield login
    for stream in opened:
        stream.abort()


def assert_failed(answer, condition: str) -> None:
    assert answer.tag == sm("failed"), describe(answer)
    assert condition_of(answer) == condition, describe(answer)


def message_ids(stanzas) -> list[str | None]:
    return [el.get("id") for el in stanzas if el.tag == "{jabber:client}message"]


# -- the feature and enabling ----------------------------------------------------------


async def test_sm_is_offered_after_authentication_and_enabled_after_bind(make_im_server, raw):
    own = sm_server(make_im_server, "sm-enable")
    jid, password = own.new_account("raw")
    stream = await raw(own.port, jid, password, bind=False)
    assert stream.offers(f"{{{NS_SM}}}sm"), describe(stream.features)
    # §3: enabling needs a bound resource.
    assert_failed(await stream.enable(), "unexpected-request")
    await stream.bind("desk")
    enabled = await stream.enable()
    assert enabled.tag == sm("enabled"), describe(enabled)
    # Without resume='true' the server offers no resumption.
    assert enabled.get("resume") not in ("true", "1") and enabled.get("id") is None, describe(enabled)
    # §3: a second <enable/> on the same stream.
    assert_failed(await stream.enable(), "unexpected-request")
    # The stream is still fine afterwards.
    pong = await stream.iq("get", "<ping xmlns='urn:xmpp:ping'/>")
    assert pong.get("type") == "result", describe(pong)


@pytest.mark.parametrize(("asked", "granted"), [(None, 300), (60, 60), (100_000, 600)],
                         ids=["default", "shorter", "beyond-the-limit"])
async def test_enabled_grants_resumption_with_max_capped(make_im_server, raw, asked, granted):
    own = sm_server(make_im_server, "sm-max")
    jid, password = own.new_account("raw")
    stream = await raw(own.port, jid, password, "desk")
    enabled = await stream.enable(resume=True, max_secs=asked)
    assert enabled.tag == sm("enabled"), describe(enabled)
    assert enabled.get("resume") in ("true", "1") and enabled.get("id"), describe(enabled)
    assert int(enabled.get("max", "-1")) == granted, describe(enabled)


async def test_resume_with_an_unknown_id_fails_and_binding_still_works(make_im_server, raw):
    own = sm_server(make_im_server, "sm-unknown")
    jid, password = own.new_account("raw")
    stream = await raw(own.port, jid, password, bind=False)
    assert_failed(await stream.resume("no-such-session", 0), "item-not-found")
    # §5: the client may go on with a new session on the same stream.
    assert (await stream.bind("again")).endswith("/again")
    assert (await stream.enable(resume=True)).tag == sm("enabled")


async def test_another_accounts_session_cannot_be_resumed(make_im_server, raw):
    own = sm_server(make_im_server, "sm-theft")
    bob_jid, bob_password = own.new_account("bob")
    eve_jid, eve_password = own.new_account("eve")
    bob = await raw(own.port, bob_jid, bob_password, "phone")
    enabled = await bob.enable(resume=True)
    previd = enabled.get("id")
    bob.abort()

    eve = await raw(own.port, eve_jid, eve_password, bind=False)
    assert_failed(await eve.resume(previd, 0), "item-not-found")
    # Eve's attempt did not destroy it: bob resumes it.
    again = await raw(own.port, bob_jid, bob_password, bind=False)
    resumed = await again.resume(previd, 0)
    assert resumed.tag == sm("resumed") and resumed.get("previd") == previd, describe(resumed)


# -- acks ------------------------------------------------------------------------------


async def test_acks_count_only_stanzas(make_im_server, raw):
    own = sm_server(make_im_server, "sm-count")
    jid, password = own.new_account("raw")
    stream = await raw(own.port, jid, password, "desk")
    assert (await stream.enable()).tag == sm("enabled")

    async def ask() -> int:
        stream.request_ack()
        answer = await stream.read_until(lambda el: el.tag == sm("a"), "an <a/>")
        return int(answer.get("h"))

    assert await ask() == 0
    stream.ping()
    stream.send_stanza("<presence/>")
    assert await ask() == 2
    # Nonzas (<r/>, <a/>) are not counted; a message is.
    stream.ack()
    stream.message(stream.jid, "to myself")
    stream.request_ack()
    stream.request_ack()
    answers = [await stream.read_until(lambda el: el.tag == sm("a"), "an <a/>") for _ in range(2)]
    assert [int(a.get("h")) for a in answers] == [3, 3]
    assert await ask() == 3


async def test_server_requests_an_ack_after_ack_request_stanzas(make_im_server, im, raw):
    own = sm_server(make_im_server, "sm-request", ack_request_stanzas=3)
    alice = await im.user(own, "alice")
    jid, password = own.new_account("raw")
    stream = await raw(own.port, jid, password, "desk")
    assert (await stream.enable()).tag == sm("enabled")
    start = len(stream.received)

    first = [alice.message(stream.jid, f"m{i}") for i in range(3)]
    await stream.read_until(lambda el: el.tag == sm("r"), "the server's <r/> after 3 stanzas")
    got = stream.received[start:]
    # The request comes once 3 stanzas are unacknowledged, not before.
    assert [el.get("id") if is_stanza(el) else el.tag for el in got] == [*first, sm("r")], \
        [describe(el) for el in got]

    # With that request outstanding, no second one however many stanzas follow.
    more = [alice.message(stream.jid, f"m{i}") for i in range(3, 7)]
    await stream.read_until(lambda el: el.get("id") == more[-1], "the 7th message")
    assert [el.tag for el in stream.received[start:]].count(sm("r")) == 1
    # Answered, the next 3 stanzas bring a new request.
    stream.ack()
    mark = len(stream.received)
    last = [alice.message(stream.jid, f"m{i}") for i in range(7, 10)]
    await stream.read_until(lambda el: el.tag == sm("r"), "a new <r/> after 3 more stanzas")
    assert message_ids(stream.received[mark:]) == last


async def test_server_requests_an_ack_for_a_single_stanza_in_time(make_im_server, im, raw):
    own = sm_server(make_im_server, "sm-request-timer", ack_request_stanzas=5)
    alice = await im.user(own, "alice")
    jid, password = own.new_account("raw")
    stream = await raw(own.port, jid, password, "desk")
    assert (await stream.enable()).tag == sm("enabled")
    mid = alice.message(stream.jid, "just one")
    await stream.read_until(lambda el: el.get("id") == mid, "the message")
    # Fewer than ack_request_stanzas: the request comes after a while (~10 s) anyway.
    request = await stream.read_until(lambda el: is_stanza(el) or el.tag == sm("r"), "an <r/>", SLOW)
    assert request.tag == sm("r"), describe(request)


async def test_ack_sent_before_closing_is_honoured(make_im_server, im, raw):
    own = sm_server(make_im_server, "sm-close-ack")
    alice = await im.user(own, "alice")
    jid, password = own.new_account("bob")
    stream = await raw(own.port, jid, password, "desk")
    assert (await stream.enable(resume=True)).tag == sm("enabled")
    ids = [alice.message(stream.jid, f"n{i}") for i in range(5)]
    received = {}
    for mid in ids:
        received[mid] = await stream.read_until(lambda el, mid=mid: el.get("id") == mid, f"message {mid}")
    # XEP-0198 §4: the client acks the first three, then closes the stream.
    stream.ack(stream.h_through(received[ids[2]]))
    await stream.close()

    # The two it did not ack are treated as undelivered (§5): they wait offline.
    bob = await im.online(own, f"{jid}/again", password)
    for mid in ids[3:]:
        got = await bob.inbox.expect(is_message(mid=mid), f"unacked message {mid} again")
        assert got.xml.find(f"{{{NS_DELAY}}}delay") is not None, str(got)
    marker = alice.message(bob.full, "marker")
    await bob.inbox.expect(is_message(mid=marker), "the marker")
    counts = collections.Counter(s.xml.get("id") for s in bob.inbox.history)
    assert {mid: counts[mid] for mid in ids} == {ids[0]: 0, ids[1]: 0, ids[2]: 0, ids[3]: 1, ids[4]: 1}


async def test_acking_more_than_was_sent_is_a_stream_error(make_im_server, im, raw):
    own = sm_server(make_im_server, "sm-too-high")
    alice = await im.user(own, "alice")
    jid, password = own.new_account("bob")
    stream = await raw(own.port, jid, password, "desk")
    assert (await stream.enable()).tag == sm("enabled")
    mid = alice.message(stream.jid, "one")
    await stream.read_until(lambda el: el.get("id") == mid, "the message")
    stream.ack(5)
    # XEP-0198 §4: undefined-condition with <handled-count-too-high h send-count/>.
    error = await stream.read_until(lambda el: el.tag == "{http://etherx.jabber.org/streams}error",
                                    "a stream error")
    too_high = error.find(sm("handled-count-too-high"))
    assert error.find("{urn:ietf:params:xml:ns:xmpp-streams}undefined-condition") is not None, describe(error)
    assert too_high is not None, describe(error)
    assert (too_high.get("h"), too_high.get("send-count")) == ("5", "1"), describe(error)


# -- resumption ------------------------------------------------------------------------


async def test_resumption_resends_exactly_what_h_did_not_cover(make_im_server, im, raw):
    own = sm_server(make_im_server, "sm-partial")
    alice = await im.user(own, "alice")
    jid, password = own.new_account("bob")
    stream = await raw(own.port, jid, password, "phone")
    enabled = await stream.enable(resume=True)
    pongs = [stream.ping() for _ in range(2)]
    await stream.read_until(lambda el: el.get("id") == pongs[-1], "the 2nd pong")
    ids = [alice.message(stream.jid, f"n{i}") for i in range(5)]
    got = {mid: await stream.read_until(lambda el, mid=mid: el.get("id") == mid, mid) for mid in ids}
    h = stream.h_through(got[ids[1]])
    stream.abort()

    again = await raw(own.port, jid, password, bind=False)
    resumed = await again.resume(enabled.get("id"), h)
    assert resumed.tag == sm("resumed"), describe(resumed)
    # h: the two pings the server handled from the old stream.
    assert (resumed.get("previd"), resumed.get("h")) == (enabled.get("id"), "2"), describe(resumed)
    marker = alice.message(stream.jid, "after resuming")
    await again.read_until(lambda el: el.get("id") == marker, "the marker")
    # Exactly the three unacknowledged messages, in order, then the marker; nothing else.
    resent = [el for el in again.received if is_stanza(el)]
    assert [el.get("id") for el in resent] == [*ids[2:], marker], [describe(el) for el in resent]
    # The session is the old one: same full JID as the sender sees it.
    assert {el.get("to") for el in resent} == {stream.jid}


async def test_counters_wrap_around_at_two_to_the_32(make_im_server, im, raw):
    own = sm_server(make_im_server, "sm-wrap", counter_start=NEAR_WRAP)
    alice = await im.user(own, "alice")
    jid, password = own.new_account("bob")
    stream = await raw(own.port, jid, password, "phone")
    stream.counter_start = NEAR_WRAP
    enabled = await stream.enable(resume=True)
    assert enabled.tag == sm("enabled"), describe(enabled)

    async def server_h() -> int:
        stream.request_ack()
        return int((await stream.read_until(lambda el: el.tag == sm("a"), "an <a/>")).get("h"))

    # The server's count of this client's stanzas, before and across the wrap.
    assert await server_h() == NEAR_WRAP
    pongs = [stream.ping() for _ in range(2)]
    await stream.read_until(lambda el: el.get("id") == pongs[-1], "the 2nd pong")
    assert await server_h() == SEQ_MOD - 1
    stream.ack()  # h = 2^32 - 1: both pongs
    pongs = [stream.ping() for _ in range(2)]
    await stream.read_until(lambda el: el.get("id") == pongs[-1], "the 4th pong")
    assert await server_h() == 1
    stream.ack()  # h = 1, across the wrap
    assert stream.h == 1

    ids = [alice.message(stream.jid, f"w{i}") for i in range(4)]
    got = {mid: await stream.read_until(lambda el, mid=mid: el.get("id") == mid, mid) for mid in ids}
    stream.ack(stream.h_through(got[ids[0]]))
    h = stream.h_through(got[ids[1]])
    assert h == 3
    stream.abort()

    again = await raw(own.port, jid, password, bind=False)
    resumed = await again.resume(enabled.get("id"), h)
    assert resumed.tag == sm("resumed"), describe(resumed)
    assert resumed.get("h") == "1", describe(resumed)
    marker = alice.message(stream.jid, "after resuming")
    await again.read_until(lambda el: el.get("id") == marker, "the marker")
    assert message_ids(again.received) == [*ids[2:], marker]
    # The server's count goes on from the resumed value.
    again.ping()
    again.request_ack()
    assert int((await again.read_until(lambda el: el.tag == sm("a"), "an <a/>")).get("h")) == 2


# -- the bound on unacknowledged data ---------------------------------------------------


async def test_a_session_that_never_acks_is_closed_and_loses_nothing(make_im_server, im, raw):
    own = sm_server(make_im_server, "sm-overflow", max_unacked_bytes=4096)
    alice = await im.user(own, "alice")
    jid, password = own.new_account("bob")
    stream = await raw(own.port, jid, password, "greedy")
    assert (await stream.enable()).tag == sm("enabled")
    ids = [alice.message(stream.jid, f"{i:03d} " + "x" * 400) for i in range(30)]
    await alice.sync()
    # ~12 KB unacknowledged against 4 KB allowed: the server ends the session.
    with pytest.raises(StreamClosed):
        while True:
            el = await stream.read(SLOW)
            if el.tag == sm("r"):
                continue  # never answered
    # Nothing is lost: every message it did not ack is waiting offline, once.
    bob = await im.online(own, f"{jid}/again", password)
    for mid in ids:
        await bob.inbox.expect(is_message(mid=mid), f"message {mid}")
    marker = alice.message(bob.full, "marker")
    await bob.inbox.expect(is_message(mid=marker), "the marker")
    counts = collections.Counter(s.xml.get("id") for s in bob.inbox.history)
    assert {mid: counts[mid] for mid in ids} == {mid: 1 for mid in ids}
