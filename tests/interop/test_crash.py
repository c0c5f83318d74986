"""Durability under SIGKILL (issue 16): a sender streams numbered messages to a receiver
with stream management (XEP-0198) acks while the server is killed with SIGKILL and
started again on the same data directory, several times at random instants.

The sender counts a number as acknowledged only when an `<a h/>` covering it arrived.
Both clients reconnect after each kill (the old session cannot be resumed across a
restart, so they bind a new one) and the sender goes on with new numbers. Afterwards:
every acknowledged number reached the receiver (live, or as an offline message at a later
login) or is in the receiver's archive (XEP-0313, when the server has one), and no number
reached the receiver twice.

The archive part runs as soon as the server advertises urn:xmpp:mam:2; before that, only
live and offline deliveries count.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import time

import pytest

from interop_support import NS_DELAY, TIMEOUT, is_message
from raw_stream import SEQ_MOD, RawStream, StreamClosed, body_of, sm
from sm_support import advertises_mam, archived_messages

KILLS = 5
#: Seconds between two kills (uniformly random in this range): ~20 s of kills in all.
KILL_GAP = (2.0, 4.5)
#: Messages per `<r/>`.
BATCH = 5
#: Seconds the sender pauses after each acknowledged batch: a steady stream of at most
#: ~150 messages/s, so the kills hit traffic in flight while the archive stays small
#: enough to read back quickly.
PACE = 0.03
#: Most seconds the receiver stays away after losing its connection.
RECEIVER_AWAY = 1.5
#: Errors a client expects while the server is down or restarting.
DOWN = (OSError, StreamClosed, asyncio.TimeoutError, AssertionError)


class Sender:
    """Streams messages whose body is a number, `BATCH` at a time, each batch followed by
    `<r/>`; a number is acknowledged once the server's `<a h/>` counts its message."""

    def __init__(self, server, jid: str, password: str, to: str):
        self.server, self.jid, self.password, self.to = server, jid, password, to
        self.next_number = 0
        self.acked: list[int] = []
        self.sessions = 0
        self.bounced: list[str] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            stream = None
            try:
                stream = await RawStream.login(self.server.port, self.jid, self.password, "sender", timeout=5)
                enabled = await stream.enable(timeout=5)
                if enabled.tag != sm("enabled"):
                    raise AssertionError(f"enable refused: {enabled}")
                self.sessions += 1
                await self._stream(stream, stop)
                await stream.close(timeout=5)
            except DOWN:
                await asyncio.sleep(0.05)  # the server is down or restarting: try again
            finally:
                if stream is not None:
                    stream.abort()

    async def _stream(self, stream: RawStream, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = []
            for _ in range(BATCH):
                number = self.next_number
                self.next_number += 1
                stream.message(self.to, str(number), mid=f"n{number}")
                batch.append(number)
            stream.request_ack()
            # XEP-0198 §4: h counts the stanzas the server handled since <enable/>.
            want = stream.seq(stream.outbound)
            while True:
                el = await stream.read(5)
                if el.tag == sm("r"):
                    stream.ack()
                elif el.tag == "{jabber:client}message" and el.get("type") == "error":
                    self.bounced.append(el.get("id") or "?")
                elif el.tag == sm("a") and int(el.get("h", "-1")) % SEQ_MOD == want:
                    self.acked.extend(batch)
                    break
            await asyncio.sleep(PACE)


class Receiver:
    """Receives the numbers, acknowledging each message as soon as it is read (XEP-0198 §4
    allows an unrequested `<a/>`), and reconnects after each kill: first trying to resume,
    then with a new session and initial presence (which brings the offline messages). Like
    a phone, it comes back a random while after the server does, so messages pile up
    offline meanwhile and later kills can hit their delivery."""

    def __init__(self, server, jid: str, password: str, sender: str, rng: random.Random):
        self.server, self.jid, self.password, self.sender = server, jid, password, sender
        self.rng = rng
        #: (number, 'live' or 'offline') in the order received.
        self.got: list[tuple[int, str]] = []
        self.resume_answers: list[str] = []
        self.sessions = 0
        #: Set whenever a number arrives.
        self.arrived = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        previd, h = None, 0
        while not stop.is_set():
            stream = None
            try:
                stream = await RawStream.authenticated(self.server.port, self.jid, self.password, timeout=5)
                if previd is not None:
                    answer = await stream.resume(previd, h, timeout=5)
                    self.resume_answers.append(answer.tag.split("}", 1)[1])
                    previd = None
                    resumed = answer.tag == sm("resumed")
                else:
                    resumed = False
                if not resumed:
                    await stream.bind("receiver", timeout=5)
                    enabled = await stream.enable(resume=True, timeout=5)
                    previd = enabled.get("id")
                    self.sessions += 1
                    stream.send_stanza("<presence/>")
                else:
                    previd = answer.get("previd")
                await self._receive(stream, stop)
                await stream.close(timeout=5)
                previd = None
            except DOWN:
                # Away a while (not a synchronisation: the phone is out of coverage).
                await asyncio.sleep(self.rng.uniform(0.05, RECEIVER_AWAY))
            finally:
                if stream is not None:
                    h = stream.h
                    stream.abort()

    async def _receive(self, stream: RawStream, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                el = await stream.read(0.5)
            except asyncio.TimeoutError:
                continue
            if el.tag == sm("r"):
                stream.ack()
            elif el.tag == "{jabber:client}message" and (el.get("from") or "").startswith(self.sender + "/"):
                body = body_of(el)
                if body is not None and body.isdigit():
                    how = "offline" if el.find(f"{{{NS_DELAY}}}delay") is not None else "live"
                    self.got.append((int(body), how))
                    self.arrived.set()
                stream.ack()


@pytest.mark.timeout(180)
async def test_no_acknowledged_message_is_lost_when_the_server_is_killed(make_im_server, im):
    own = make_im_server("crash", sections={"stream_management": {}})
    sender_jid, sender_password = own.new_account("sender")
    receiver_jid, receiver_password = own.new_account("receiver")
    seed = int(os.environ.get("CORVID_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)

    sender = Sender(own, sender_jid, sender_password, receiver_jid)
    receiver = Receiver(own, receiver_jid, receiver_password, sender_jid, rng)
    stop_sending, stop_receiving = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.ensure_future(receiver.run(stop_receiving)), asyncio.ensure_future(sender.run(stop_sending))]
    started = time.monotonic()
    try:
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(*KILL_GAP))  # a random instant, not a synchronisation
            await asyncio.to_thread(own.kill)
            await asyncio.to_thread(own.relaunch)
        # One more stretch without a kill, so the last sessions settle and stream a while.
        await asyncio.sleep(rng.uniform(*KILL_GAP))
        stop_sending.set()
        await asyncio.wait_for(tasks[1], 2 * TIMEOUT)
        # The receiver reads what is still on its way (a bounded wait), then stops.
        deadline = time.monotonic() + TIMEOUT
        while not set(sender.acked) <= {n for n, _ in receiver.got} and time.monotonic() < deadline:
            receiver.arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(receiver.arrived.wait(), max(0.0, deadline - time.monotonic()))
        stop_receiving.set()
        await asyncio.wait_for(tasks[0], 2 * TIMEOUT)
    finally:
        stop_sending.set()
        stop_receiving.set()
        for task in tasks:
            task.cancel()
    elapsed = time.monotonic() - started
    print(f"[crash] kills done in {elapsed:.1f}s")

    # A last login collects what waited offline; anything acknowledged and still missing
    # gets a grace period to arrive, and a duplicate arriving meanwhile is caught too.
    final = await im.online(own, f"{receiver_jid}/final", receiver_password)
    got = list(receiver.got)
    acked = set(sender.acked)
    deadline = time.monotonic() + TIMEOUT

    def take_new() -> None:
        for stanza in final.inbox.discard(lambda s: s.name == "message"):
            body = stanza.xml.findtext("{jabber:client}body") or ""
            if (stanza.xml.get("from") or "").startswith(sender_jid) and body.isdigit():
                got.append((int(body), "final"))

    take_new()
    while acked - {n for n, _ in got} and time.monotonic() < deadline:
        missing = min(acked - {n for n, _ in got})
        try:
            await final.inbox.expect(lambda s, m=missing: s.name == "message" and
                                     s.xml.findtext("{jabber:client}body") == str(m), f"number {missing}",
                                     max(0.1, deadline - time.monotonic()))
        except AssertionError:
            break
        got.append((missing, "final"))
        take_new()
    take_new()

    print(f"[crash] final collection done at {time.monotonic() - started:.1f}s")
    delivered = collections.Counter(n for n, _ in got)
    archived: set[int] = set()
    mam = await advertises_mam(final)
    if mam:
        for message in await archived_messages(final, sender_jid, page=250, timeout=30):
            body = message.findtext("{jabber:client}body") or ""
            if body.isdigit():
                archived.add(int(body))

    print(f"[crash] archive read at {time.monotonic() - started:.1f}s")
    how = collections.Counter(kind for _, kind in got)
    figures = (f"seed {seed}: {KILLS} kills in {elapsed:.1f}s; sender sessions {sender.sessions}, "
               f"numbers sent {sender.next_number}, acknowledged {len(acked)}, bounced {len(sender.bounced)}; "
               f"receiver sessions {receiver.sessions}, resume answers {collections.Counter(receiver.resume_answers)}, "
               f"delivered {dict(how)}, archive {'on: ' + str(len(archived)) if mam else 'not offered'}")
    print(figures)
    assert len(acked) >= 50, f"too little traffic to mean anything; {figures}"
    lost = sorted(acked - set(delivered) - archived)
    assert lost == [], f"acknowledged but neither delivered nor archived: {lost[:50]}; {figures}"
    twice = sorted(n for n, count in delivered.items() if count > 1)
    assert twice == [], f"delivered more than once: {twice[:50]}; {figures}"
    assert final.inbox.matching(is_message(mtype="error")) == []
