"""Clustering (`[cluster]`) with real processes: three `corvid serve` nodes serving
`localhost` together, sharing one database and one Redis (Debian's `redis-server`).

Users on different nodes subscribe to each other, chat and share a room as if on one
server; `corvid cluster status` shows every node and its sessions; a node killed with
SIGKILL leaves the registry within a few heartbeats, its users' contacts see them go
offline, its users log in again elsewhere at once, and every message the sending node
acknowledged (XEP-0198) reaches the receiver or waits in offline storage, even those the
killed node had taken from Redis and never written (nodes acknowledge deliveries to each
other).

The database is one SQLite file all nodes open; with CORVID_TEST_POSTGRES_URL set (an
admin URL, e.g. postgres://postgres@127.0.0.1:5432/postgres) a fresh PostgreSQL database
is made for each cluster instead. The tests that kill a node start a cluster of their own
(on the same Redis, under another key prefix).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import conftest
from interop_support import (HOST, NS_DELAY, STOP_TIMEOUT, TIMEOUT, ImServer, _free_port, befriend, is_message,
                             is_presence, presence_type, unique_name)
from raw_stream import RawStream, StreamClosed, body_of
from sm_support import SmClient, advertises_mam, archived_messages
from test_crash import Sender
from test_muc import codes, configure, create_room, item_of, join, muc_user, muc_user_again, others

#: How often a node says it is alive, and after how long without it a node is dead: short,
#: so that a killed node is noticed quickly (its Redis subscription vanishing is what
#: notices it first, at the second heartbeat without one).
HEARTBEAT_MS = 200
DEAD_AFTER_MS = 1500
#: Seconds within which the others must notice a killed node (a generous bound over the
#: ~2 heartbeats it takes).
NOTICE_WITHIN = 5.0

STATUS_HEADER = ["NODE", "STATE", "SESSIONS", "PID", "UP_SECS"]


# -- the cluster's pieces --------------------------------------------------------------


class RedisProcess:
    """One `redis-server` on a free loopback port, without persistence, its files in a
    temporary directory; SIGKILLed by stop()."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="corvid-interop-redis-"))
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/"

    def start(self) -> "RedisProcess":
        for _attempt in range(3):
            self.port = _free_port()
            self.proc = subprocess.Popen(
                ["redis-server", "--bind", HOST, "--port", str(self.port), "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--loglevel", "warning", "--dir", str(self.dir)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self._pong():
                    return self
                time.sleep(0.02)
            self.stop()  # the port was taken meanwhile, or it did not start: a fresh port
        raise RuntimeError(f"redis-server did not answer PING on {HOST}:{self.port}")

    def _pong(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Database:
    """The database of one cluster: an SQLite file, or a fresh PostgreSQL database when
    CORVID_TEST_POSTGRES_URL names a server to make it on."""

    def __init__(self, name: str, directory: Path):
        self.admin_url = os.environ.get("CORVID_TEST_POSTGRES_URL")
        if self.admin_url:
            self.name = f"corvid_{name}_{uuid.uuid4().hex[:8]}".replace("-", "_").lower()
            self._psql(f'CREATE DATABASE "{self.name}"')
            parts = urllib.parse.urlsplit(self.admin_url)
            self.url = urllib.parse.urlunsplit(parts._replace(path=f"/{self.name}"))
        else:
            self.name = None
            self.url = f"sqlite:{directory / 'cluster.sqlite'}"

    def _psql(self, sql: str) -> None:
        done = subprocess.run(["psql", self.admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed ({done.returncode}): {done.stderr.strip()}")

    def drop(self) -> None:
        if self.name is not None:
            self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclasses.dataclass
class NodeRow:
    """One line of `corvid cluster status`."""
    state: str
    sessions: int
    pid: int
    up_secs: int


class Cluster:
    """`size` nodes, n1…nN, of one cluster: one database, the given Redis, a key prefix of
    their own (so that several clusters share the Redis)."""

    def __init__(self, redis: RedisProcess, name: str, size: int = 3):
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"corvid-interop-cluster-{name}-"))
        self.database = Database(name, self.dir)
        self.prefix = unique_name(name)
        self.nodes = [
            ImServer(f"{name}-n{i}", sections={
                "storage": {"url": self.database.url},
                "cluster": {"redis": redis.url, "node": f"n{i}", "prefix": self.prefix,
                            "heartbeat_ms": HEARTBEAT_MS, "dead_after_ms": DEAD_AFTER_MS},
            })
            for i in range(1, size + 1)
        ]
        self.killed: list[ImServer] = []

    def start(self) -> "Cluster":
        for node in self.nodes:
            node.start()
            # conftest.py adds the logs of the servers in this list to failing tests' reports.
            conftest._running.append(node)
        return self

    @staticmethod
    def node_name(node: ImServer) -> str:
        return node.sections["cluster"]["node"]

    def kill(self, node: ImServer) -> None:
        """SIGKILL: none of the node's shutdown code runs, Redis sees its connection close."""
        node.kill()
        self.killed.append(node)

    def status(self, via: ImServer) -> dict[str, NodeRow]:
        """`corvid cluster status` run with `via`'s config: node name → its row."""
        done = via.cli("cluster", "status")
        assert done.returncode == 0, f"`corvid cluster status` failed ({done.returncode}): {done.stderr}"
        lines = done.stdout.strip().splitlines()
        assert lines and lines[0].split("\t") == STATUS_HEADER, done.stdout
        rows = {}
        for line in lines[1:]:
            name, state, sessions, pid, up = line.split("\t")
            rows[name] = NodeRow(state, int(sessions), int(pid), int(up))
        return rows

    async def wait_status(self, via: ImServer, good, what: str, timeout: float = TIMEOUT) -> dict[str, NodeRow]:
        """Polls `cluster status` (off the event loop) until `good(rows)`; fails after
        `timeout` with the last listing."""
        deadline = time.monotonic() + timeout
        while True:
            rows = await asyncio.to_thread(self.status, via)
            if good(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"`cluster status` did not show {what} within {timeout}s; last: {rows}")
            await asyncio.sleep(0.1)

    def stop(self) -> list[str]:
        """SIGTERM to every node still running; returns what went wrong (a node not exiting
        with status 0)."""
        problems = []
        for node in self.nodes:
            with contextlib.suppress(ValueError):
                conftest._running.remove(node)
            code = node.stop()  # None for a node killed, or never started
            if code is not None and code != 0:
                problems.append(f"node {node.name} exited with {code} after SIGTERM; log:\n{node.log_text()[-4000:]}")
        self.database.drop()
        if not os.environ.get("CORVID_INTEROP_KEEP"):
            for node in self.nodes:
                shutil.rmtree(node.dir, ignore_errors=True)
            shutil.rmtree(self.dir, ignore_errors=True)
        return problems


@pytest.fixture(scope="module")
def redis():
    process = RedisProcess().start()
    yield process
    process.remove()


@pytest.fixture(scope="module")
def cluster(redis):
    """Three nodes for the tests that leave them running."""
    nodes = Cluster(redis, "shared")
    try:
        nodes.start()
        yield nodes
    finally:
        problems = nodes.stop()
    assert problems == [], "\n".join(problems)


@pytest.fixture
def own_cluster(redis):
    """`own_cluster(name)` starts three nodes for a test that kills one of them."""
    made: list[Cluster] = []

    def make(name: str) -> Cluster:
        nodes = Cluster(redis, name)
        made.append(nodes)
        return nodes.start()

    yield make
    problems = [problem for nodes in made for problem in nodes.stop()]
    assert problems == [], "\n".join(problems)


async def collect(client, match, count: int, what: str, timeout: float = TIMEOUT) -> list:
    """The next `count` stanzas `match` accepts, in the order received."""
    deadline = time.monotonic() + timeout
    got = []
    while len(got) < count:
        got.append(await client.inbox.expect(match, f"{what} ({len(got)} of {count} so far)",
                                             max(0.1, deadline - time.monotonic())))
    return got


# -- users on three nodes ------------------------------------------------------------------

BURST = 100


async def test_users_on_three_nodes_subscribe_chat_in_order_and_share_a_room(cluster, im):
    n1, n2, n3 = cluster.nodes
    alice = await muc_user(n1, im, "alice")
    bob = await muc_user(n2, im, "bob")
    carol = await muc_user(n3, im, "carol")

    # RFC 6121 §3.1: subscription both ways through the protocol; each then has the other's
    # presence (§3.1.5: the approving contact's available resources are sent to the user).
    await befriend(alice, bob)
    await alice.inbox.expect(is_presence("available", frm=bob.full), "bob's presence on n2")
    await bob.inbox.expect(is_presence("available", frm=alice.full), "alice's presence on n1")
    bob.presence(status="on n2")
    await alice.inbox.expect(is_presence("available", frm=bob.full, status="on n2"), "bob's presence update")
    assert not carol.inbox.matching(is_presence(from_bare=bob.bare)), "carol is no contact of bob's"

    # Chat both ways, to the bare and to the full JID.
    mid = alice.message(bob.bare, "hello bob")
    got = await bob.inbox.expect(is_message(mid=mid), "alice's message to bob's bare JID")
    assert (got.xml.get("from"), got.xml.findtext("{jabber:client}body")) == (alice.full, "hello bob")
    mid = bob.message(alice.full, "hello alice")
    got = await alice.inbox.expect(is_message(mid=mid), "bob's message to alice's full JID")
    assert (got.xml.get("from"), got.xml.findtext("{jabber:client}body")) == (bob.full, "hello alice")

    # A burst from one node arrives on the other whole and in order.
    sent = [alice.message(bob.full if n % 2 else bob.bare, f"burst {n}", mid=f"burst-{n}") for n in range(BURST)]
    got = await collect(bob, lambda s: is_message(from_bare=alice.bare)(s) and (s.xml.get("id") or "").startswith(
        "burst-"), BURST, "the burst")
    assert [s.xml.get("id") for s in got] == sent
    assert [s.xml.findtext("{jabber:client}body") for s in got] == [f"burst {n}" for n in range(BURST)]

    # A room with an occupant on each node (its owner on n1, whichever node runs it).
    room = await create_room(alice, "alice")
    await join(bob, room, "bob")
    await alice.inbox.expect(is_presence("available", frm=f"{room}/bob"), "bob entering")
    _, _, occupants, _ = await join(carol, room, "carol")
    assert sorted(others(occupants, f"{room}/carol")) == [f"{room}/alice", f"{room}/bob"]
    for client in (alice, bob):
        await client.inbox.expect(is_presence("available", frm=f"{room}/carol"), "carol entering")

    people = {"alice": alice, "bob": bob, "carol": carol}
    for nick, sender in people.items():
        mid = sender.message(room, f"hello from {nick}", mtype="groupchat")
        for client in people.values():
            got = await client.inbox.expect(is_message(frm=f"{room}/{nick}", mid=mid, mtype="groupchat"),
                                            f"{nick}'s groupchat at {client.bare}")
            assert got.xml.findtext("{jabber:client}body") == f"hello from {nick}"

    carol.plugin["xep_0045"].leave_muc(room, "carol", "bye from n3")
    own = await carol.inbox.expect(is_presence("unavailable", frm=f"{room}/carol"), "carol's own leave")
    assert 110 in codes(own)
    for client in (alice, bob):
        got = await client.inbox.expect(is_presence("unavailable", frm=f"{room}/carol"), "carol leaving")
        assert got.xml.findtext("{jabber:client}status") == "bye from n3"
    mid = bob.message(room, "carol is gone", mtype="groupchat")
    await alice.inbox.expect(is_message(frm=f"{room}/bob", mid=mid), "a groupchat after carol left")
    await carol.sync()
    assert not carol.inbox.matching(is_message(mid=mid)), "carol got a groupchat after leaving"


# -- cluster status ------------------------------------------------------------------------


async def test_cluster_status_lists_every_node_alive_with_its_sessions(cluster, im):
    n1, n2, n3 = cluster.nodes
    online = {"n1": 1, "n2": 2, "n3": 3}
    clients = []
    for node, count in zip(cluster.nodes, online.values()):
        for _ in range(count):
            clients.append(await im.user(node, "status"))

    def as_expected(counts):
        return lambda rows: {name: (row.state, row.sessions) for name, row in rows.items()} == {
            name: ("alive", n) for name, n in counts.items()}

    # Any node's config reads the same registry.
    for via in (n1, n3):
        rows = await cluster.wait_status(via, as_expected(online), f"the sessions {online}")
    for node in cluster.nodes:
        row = rows[Cluster.node_name(node)]
        assert row.pid == node.proc.pid, rows
        assert row.up_secs >= 0, rows
    # `corvid status` asks the running node: its own sessions, then the cluster's.
    deadline = time.monotonic() + TIMEOUT
    while True:
        done = await asyncio.to_thread(n2.cli, "status")
        assert done.returncode == 0, done.stderr
        if done.stdout == "sessions\t2\ncluster_sessions\t6\n":
            break
        assert time.monotonic() < deadline, f"`corvid status` on n2 says {done.stdout!r}"
        await asyncio.sleep(0.1)

    for client in clients[1:3]:  # n2's two sessions end
        await client.close()
    await cluster.wait_status(n2, as_expected({"n1": 1, "n2": 0, "n3": 3}), "n2's sessions gone")


# -- a node killed with SIGKILL --------------------------------------------------------------

# The sender (test_crash.Sender) streams numbers with XEP-0198 acks from a node that stays up.
#: The receiver's resource, on the killed node and again on another one.
RESOURCE = "phone"


class Receiver:
    """A plain client (no stream management): logs in with one resource on each node in
    turn, sends initial presence, and reads numbers until its connection ends (its node
    was killed), then logs in on the next node at once."""

    def __init__(self, jid: str, password: str, sender: str):
        self.jid, self.password, self.sender = jid, password, sender
        #: (number, node, 'live' or 'offline') in the order received.
        self.got: list[tuple[int, str, str]] = []
        #: Node → when (time.monotonic()) the session there began (initial presence sent),
        #: and when its connection was cut.
        self.logged_in: dict[str, float] = {}
        self.cut_off: dict[str, float] = {}
        #: Set whenever a number arrives or a session begins.
        self.changed = asyncio.Event()

    async def run(self, nodes: list[tuple[str, ImServer]], stop: asyncio.Event) -> None:
        for name, node in nodes:
            stream = await RawStream.login(node.port, self.jid, self.password, RESOURCE, timeout=5)
            try:
                stream.send_stanza("<presence/>")
                self.logged_in[name] = time.monotonic()
                self.changed.set()
                while not stop.is_set():
                    try:
                        el = await stream.read(0.2)
                    except asyncio.TimeoutError:
                        continue
                    self._note(el, name)
                await stream.close(timeout=2)
                return
            except StreamClosed:
                self.cut_off[name] = time.monotonic()
            finally:
                stream.abort()

    def _note(self, el, node: str) -> None:
        if el.tag != "{jabber:client}message" or not (el.get("from") or "").startswith(self.sender + "/"):
            return
        body = body_of(el)
        if body is not None and body.isdigit():
            how = "offline" if el.find(f"{{{NS_DELAY}}}delay") is not None else "live"
            self.got.append((int(body), node, how))
            self.changed.set()

    def numbers(self) -> set[int]:
        return {n for n, _, _ in self.got}

    async def wait_for(self, done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return True


async def collect_later(node: ImServer, im, jid: str, password: str, sender: str) -> tuple[set[int], set[int] | None]:
    """What a later login finds: the numbers still in offline storage (delivered at its
    initial presence; a bounded wait, ended once nothing more comes), and those in the
    account's archive (XEP-0313; None if the server offers none)."""
    final = await im.online(node, f"{jid}/final", password)
    stored = set()
    while True:
        try:
            got = await final.inbox.expect(is_message(from_bare=sender), "an offline message", 1.0)
        except AssertionError:
            break
        body = got.xml.findtext("{jabber:client}body") or ""
        if body.isdigit():
            stored.add(int(body))
    if not await advertises_mam(final):
        return stored, None
    archived = set()
    for message in await archived_messages(final, sender, page=250, timeout=30):
        body = message.findtext("{jabber:client}body") or ""
        if body.isdigit():
            archived.add(int(body))
    return stored, archived


@pytest.mark.timeout(90)
async def test_no_acknowledged_message_is_lost_when_the_receivers_node_is_killed(own_cluster, im):
    nodes = own_cluster("kill")
    a, b, c = nodes.nodes
    sender_jid, sender_password = a.new_account("sender")
    receiver_jid, receiver_password = a.new_account("receiver")
    seed = int(os.environ.get("CORVID_CLUSTER_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)

    sender = Sender(a, sender_jid, sender_password, receiver_jid)
    receiver = Receiver(receiver_jid, receiver_password, sender_jid)
    stop_sending, stop_receiving = asyncio.Event(), asyncio.Event()
    receiving = asyncio.ensure_future(receiver.run([("n2", b), ("n3", c)], stop_receiving))
    sending = None
    try:
        # The sender starts once the receiver is on n2, and n2 is killed while numbers flow
        # to it (some received live there first).
        assert await receiver.wait_for(lambda: "n2" in receiver.logged_in, TIMEOUT), "the receiver never got on n2"
        sending = asyncio.ensure_future(sender.run(stop_sending))
        assert await receiver.wait_for(lambda: len(receiver.got) >= 30, TIMEOUT), \
            f"the receiver got only {len(receiver.got)} numbers live on n2"
        await asyncio.sleep(rng.uniform(0.1, 0.6))  # a random instant, not a synchronisation
        acked_before_kill = len(sender.acked)
        await asyncio.to_thread(nodes.kill, b)
        killed_at = time.monotonic()

        # The others notice: n2 leaves the registry (its entry removed, not merely 'dead').
        rows = await nodes.wait_status(a, lambda rows: "n2" not in rows, "n2 removed", NOTICE_WITHIN)
        noticed_after = time.monotonic() - killed_at
        assert {name: row.state for name, row in rows.items()} == {"n1": "alive", "n3": "alive"}, rows

        # The receiver is back, on n3 under the same resource; the sender goes on a while.
        assert await receiver.wait_for(lambda: "n3" in receiver.logged_in, TIMEOUT), \
            f"the receiver did not log in on n3 (cut off from n2: {'n2' in receiver.cut_off})"
        back_after = receiver.logged_in["n3"] - killed_at
        await asyncio.sleep(rng.uniform(1.5, 2.5))
        stop_sending.set()
        await asyncio.wait_for(sending, TIMEOUT)
        acked = set(sender.acked)
        await receiver.wait_for(lambda: acked <= receiver.numbers(), TIMEOUT)
        stop_receiving.set()
        await asyncio.wait_for(receiving, TIMEOUT)
    finally:
        stop_sending.set()
        stop_receiving.set()
        for task in (sending, receiving):
            if task is not None:
                task.cancel()

    # Numbers acknowledged but not received: still in offline storage (a later login gets
    # them), only in the receiver's archive, or lost. n1 keeps what it publishes to n2 until
    # n2 says it wrote it (or stored it), and reroutes the rest when n2 dies, so nothing is
    # lost nor only in the archive. Delivery across the death is at least once: what n2
    # wrote in its last milliseconds, before saying so, comes again on n3.
    missing = acked - receiver.numbers()
    stored, archived = await collect_later(c, im, receiver_jid, receiver_password, sender_jid)
    stranded = sorted(missing & stored)
    only_archived = sorted((missing - stored) & (archived or set()))
    lost = sorted(missing - stored - (archived or set()))
    how = collections.Counter((node, kind) for _, node, kind in receiver.got)
    counts = collections.Counter(n for n, _, _ in receiver.got)
    twice = sorted({n for n, count in counts.items() if count > 1} | (stored & set(counts)))
    live_on_n2 = {n for n, node, kind in receiver.got if node == "n2"}
    last_on_n2 = max(live_on_n2, default=0)
    archive = ("not offered" if archived is None else
               f"{len(archived)} numbers, {len(set(lost) & archived)} of the lost")
    figures = (f"seed {seed}: sent {sender.next_number}, acked {len(acked)} ({acked_before_kill} before the kill), "
               f"bounced {len(sender.bounced)}; received live on n2 {how['n2', 'live']}, live on n3 "
               f"{how['n3', 'live']}, offline at the login on n3 {how['n3', 'offline']}; stranded in offline "
               f"storage while the receiver was online on n3 {len(stranded)}; only in the archive "
               f"{len(only_archived)}; lost {len(lost)}; twice {len(twice)}; "
               f"archive: {archive}; n2 left the registry {noticed_after:.2f}s after the kill, the receiver was "
               f"back on n3 after {back_after:.2f}s")
    print(f"[cluster] {figures}")
    assert len(acked) >= 100, f"too little traffic to mean anything; {figures}"
    assert lost == [], (f"acknowledged by n1, never received, not in offline storage nor in the archive: "
                        f"{lost[:50]}; {figures}")
    assert only_archived == [], (f"acknowledged by n1, never received nor stored offline, only in the archive: "
                                 f"{only_archived[:50]}; {figures}")
    assert stranded == [], (f"acknowledged, and stored offline while the receiver was online on n3 (it gets "
                            f"them only at a later login): {stranded[:50]}; {figures}")
    # Received twice: only the last ones n2 wrote before it died (not acknowledged yet).
    early_twice = [n for n in twice if n not in live_on_n2 or last_on_n2 - n >= 200]
    assert early_twice == [], (f"received twice, and not among the last ones n2 wrote: {early_twice[:50]}; "
                               f"{figures}")
    assert sender.bounced == [], f"bounced: {sender.bounced[:20]}; {figures}"


FROZEN_BURST = 20


@pytest.mark.timeout(60)
async def test_what_a_frozen_node_never_wrote_is_stored_offline_when_it_is_killed(own_cluster, im):
    """n2 is stopped (SIGSTOP) while its user is online there: what n1 publishes for that
    user meanwhile is in Redis's buffer to n2 and n2's socket, never written to the user.
    n2 is then killed. n1 kept every stanza n2 did not acknowledge, and stores them
    offline once n2 is gone: the user finds them all when logging in on n3."""
    nodes = own_cluster("frozen")
    a, b, c = nodes.nodes
    sender = await im.user(a, "sender")
    receiver = await im.user(b, "receiver")
    # n1 routes to the receiver's session on n2.
    mid = sender.message(receiver.full, "before")
    await receiver.inbox.expect(is_message(mid=mid), "a message before n2 is stopped")
    # n2 says it wrote it a few milliseconds later; stopped before that, n1 would count it
    # among those to store (delivery across a node's death is at least once).
    await asyncio.sleep(0.3)

    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        sent = [sender.message(receiver.full, f"frozen {n}", mid=f"frozen-{n}") for n in range(FROZEN_BURST)]
        await sender.sync()  # n1 handled them all: they went to n2's channel
        await asyncio.sleep(0.2)
    finally:
        await asyncio.to_thread(nodes.kill, b)
    rows = await nodes.wait_status(a, lambda rows: "n2" not in rows, "n2 removed", NOTICE_WITHIN)
    assert set(rows) == {"n1", "n3"}, rows
    await receiver.close()

    again = await im.online(c, f"{receiver.bare}/again", receiver.account_password)
    got = await collect(again, lambda s: (s.xml.get("id") or "").startswith("frozen-"), FROZEN_BURST,
                        "the messages n2 never wrote")
    assert sorted(s.xml.get("id") for s in got) == sorted(sent)
    await asyncio.sleep(0.5)
    await again.sync()
    extra = [s.xml.get("id") for s in again.inbox.matching(is_message(from_bare=sender.bare))]
    assert extra == [], f"received more than once: {extra}"


async def test_contacts_see_a_killed_nodes_user_go_unavailable_and_come_back_elsewhere(own_cluster, im):
    nodes = own_cluster("gone")
    a, b, c = nodes.nodes
    alice = await im.user(a, "alice")
    bob = await im.user(b, "bob")
    await befriend(alice, bob)
    await alice.inbox.expect(is_presence("available", frm=bob.full), "bob's presence on n2")

    await asyncio.to_thread(nodes.kill, b)
    killed_at = time.monotonic()
    await alice.inbox.expect(is_presence("unavailable", frm=bob.full), "bob unavailable after n2 was killed",
                             NOTICE_WITHIN)
    print(f"[cluster] alice saw bob unavailable {time.monotonic() - killed_at:.2f}s after n2 was killed")
    await bob.close()

    # bob logs in again on n3 with the same full JID; alice sees him back, and only once.
    again = await im.online(c, bob.full, bob.account_password)
    assert again.full == bob.full
    await alice.inbox.expect(is_presence("available", frm=bob.full), "bob's presence on n3")
    mid = alice.message(bob.full, "welcome back")
    await again.inbox.expect(is_message(mid=mid), "alice's message to bob on n3")
    await asyncio.sleep(3 * HEARTBEAT_MS / 1000)
    await alice.sync()
    assert not alice.inbox.matching(is_presence("unavailable", frm=bob.full)), "bob said gone again"


async def test_a_user_back_on_another_node_at_once_stays_available_to_contacts(own_cluster, im):
    nodes = own_cluster("back")
    a, b, c = nodes.nodes
    alice = await im.user(a, "alice")
    bob = await im.user(b, "bob")
    await befriend(alice, bob)
    await alice.inbox.expect(is_presence("available", frm=bob.full), "bob's presence on n2")

    # bob's client reconnects at once, as a phone does, on n3 with the same full JID:
    # usually before the others have noticed n2's death (~2 heartbeats) and ended its
    # sessions there.
    await asyncio.to_thread(nodes.kill, b)
    await bob.close()
    again = await im.online(c, bob.full, bob.account_password)
    rows = await nodes.wait_status(a, lambda rows: "n2" not in rows, "n2 removed", NOTICE_WITHIN)
    assert rows["n3"].sessions == 1, rows
    await asyncio.sleep(3 * HEARTBEAT_MS / 1000)
    await alice.sync()

    mid = alice.message(bob.full, "still there?")
    got = await again.inbox.expect(is_message(mid=mid), "alice's message to bob on n3")
    assert got.xml.find(f"{{{NS_DELAY}}}delay") is None, "delivered from offline storage, not live"
    # Whatever alice was told meanwhile, the last word on bob's resource is that it is here;
    # and bob's new session is not told that it left.
    said = [presence_type(p) for p in alice.inbox.matching(is_presence(frm=bob.full))]
    assert said and said[-1] == "available", f"alice was told of {bob.full}, in order: {said}"
    told_self = [presence_type(p) for p in again.inbox.matching(is_presence(frm=bob.full))]
    assert told_self[-1:] == ["available"], f"bob's session on n3 was told of itself, in order: {told_self}"


@pytest.mark.timeout(90)
async def test_a_room_whose_node_is_killed_is_taken_over_and_its_occupants_told(own_cluster, im):
    nodes = own_cluster("room")
    a, b, c = nodes.nodes
    alice = await muc_user(b, im, "alice")  # the room's creator is on n2, which runs it
    bob = await muc_user(a, im, "bob")
    room = await create_room(alice, "alice")
    await configure(alice, room, persistentroom=True)
    await join(bob, room, "bob")
    mid = alice.message(room, "before", mtype="groupchat")
    await bob.inbox.expect(is_message(frm=f"{room}/alice", mid=mid), "alice's groupchat")

    await asyncio.to_thread(nodes.kill, b)
    # bob's node tells him he is out of the room, as a MUC service shutting down does
    # (XEP-0045 status 332), so that his client enters again.
    out = await bob.inbox.expect(is_presence("unavailable", frm=f"{room}/bob"), "bob out of the room",
                                 NOTICE_WITHIN)
    assert {110, 332} <= codes(out), out
    await alice.close()

    # bob enters again: a live node takes the room over from storage (not created anew),
    # alice (back, on n3) is still its owner, and they talk in it.
    self_presence, *_ = await join(bob, room, "bob")
    assert 201 not in codes(self_presence), f"the room was created anew: {self_presence}"
    again = await muc_user_again(c, im, alice)
    self_presence, *_ = await join(again, room, "alice")
    assert item_of(self_presence).get("affiliation") == "owner", self_presence
    await bob.inbox.expect(is_presence("available", frm=f"{room}/alice"), "alice entering again")
    mid = bob.message(room, "after", mtype="groupchat")
    got = await again.inbox.expect(is_message(frm=f"{room}/bob", mid=mid), "bob's groupchat after the takeover")
    assert got.xml.findtext("{jabber:client}body") == "after"
    assert len(bob.inbox.matching(is_presence("unavailable", frm=f"{room}/bob"))) == 0, \
        "bob was told more than once that he is out"


@pytest.mark.timeout(120)
async def test_a_rolling_restart_drops_only_the_restarting_nodes_sessions(own_cluster, im):
    """Each node in turn is stopped with SIGTERM and started again, as an upgrade does: the
    users of the other nodes keep their connections and go on chatting meanwhile; the
    restarting node's user is disconnected, logs in there again, and is reachable."""
    nodes = own_cluster("rolling")
    users = [await im.user(node, f"u{i}") for i, node in enumerate(nodes.nodes, 1)]
    for step, node in enumerate(nodes.nodes):
        leaving = users[step]
        staying = [u for u in users if u is not leaving]
        await asyncio.to_thread(node.restart)
        await asyncio.wait_for(asyncio.shield(leaving.ended), TIMEOUT)
        assert [u.full for u in staying if u.ended.done()] == [], f"step {step}: other nodes' users disconnected"
        first, second = staying
        for frm, to in ((first, second), (second, first)):
            mid = frm.message(to.full, f"during restart {step}")
            await to.inbox.expect(is_message(mid=mid), f"a message between staying users at step {step}")
        back = await im.online(node, leaving.full, leaving.account_password)
        back.account_password = leaving.account_password
        users[step] = back
        for other in staying:
            mid = other.message(back.full, f"welcome back {step}")
            await back.inbox.expect(is_message(mid=mid), f"a message to the user back on n{step + 1}")
    rows = await nodes.wait_status(nodes.nodes[0], lambda rows: len(rows) == 3 and all(
        row.state == "alive" and row.sessions == 1 for row in rows.values()), "three nodes, one session each")
    assert sorted(rows) == ["n1", "n2", "n3"], rows
    assert [u.full for u in users if u.ended.done()] == [], "a user disconnected after the restarts"


async def test_a_session_resumes_on_another_node(cluster, im, clients, proxies):
    """XEP-0198 across nodes: a phone on n1 loses its network (its connection to n1 stays
    open, silent) and resumes on n2, as behind a load balancer. n2 gets the session from
    n1: same full JID, what was sent meanwhile arrives once, contacts see no presence
    change, and it is routed to on n2 from then on."""
    n1, n2, n3 = cluster.nodes
    alice = await im.user(n3, "alice")
    bob_jid, bob_password = n1.new_account("bob")
    proxy = await proxies(n1)
    phone = SmClient(f"{bob_jid}/phone", bob_password)
    clients.made.append(phone)
    await phone.start(proxy)
    enabled = await phone.sm_ready()
    assert enabled.get("resume") in ("true", "1") and enabled.get("id", "").startswith("n1:"), str(enabled)
    await phone.online()
    await befriend(alice, phone)
    await alice.inbox.expect(is_presence("available", frm=phone.full), "the phone's presence")
    mid = phone.message(alice.full, "settled")
    await alice.inbox.expect(is_message(mid=mid), "the phone's settling message")
    alice.inbox.discard(is_presence(from_bare=phone.bare))
    full_before = phone.full
    before = await asyncio.to_thread(cluster.status, n3)

    await phone.cut()
    during = [alice.message(full_before, "while cut 1"), alice.message(phone.bare, "while cut 2")]
    await alice.sync()
    assert await phone.reconnect(n2.port) == "resumed", f"failed: {[ET.tostring(f) for f in phone.failed]}"
    assert phone.resumed[-1].get("previd") == enabled.get("id")
    for mid in during:
        await phone.inbox.expect(is_message(mid=mid), f"message {mid} sent while cut")

    # Routed to n2 now: the registry has the phone there, and messages reach it.
    await cluster.wait_status(n3, lambda rows: (rows["n1"].sessions, rows["n2"].sessions) == (
        before["n1"].sessions - 1, before["n2"].sessions + 1), "the phone's session moved from n1 to n2")
    after = alice.message(full_before, "after the move")
    await phone.inbox.expect(is_message(mid=after), "a message after the move")
    reply = phone.message(alice.bare, "from n2")
    got = await alice.inbox.expect(is_message(mid=reply), "the phone's reply from n2")
    assert got.xml.get("from") == full_before
    counts = collections.Counter(s.xml.get("id") for s in phone.inbox.history if s.name == "message")
    assert {mid: counts[mid] for mid in during + [after]} == {mid: 1 for mid in during + [after]}
    assert alice.inbox.matching(is_presence(from_bare=phone.bare)) == [], "alice saw the phone's presence change"
    # Its presence went along: a new resource of alice's probes and finds the phone available.
    tablet = await im.online(n3, f"{alice.bare}/tablet", alice.account_password)
    await tablet.inbox.expect(is_presence("available", frm=full_before), "the phone's presence, probed")
