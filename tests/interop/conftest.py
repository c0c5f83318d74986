"""Fixtures for the interop suite: real `corvid serve` processes and slixmpp clients.

- `server`: one server for the whole session (open registration); tests make their own
  uniquely named accounts with `server.new_account()`.
- `closed_server`: a second server whose config has `[registration] open = false`.
- `make_server`: servers of a test's own, e.g. with other `[limits]`.
- `clients`: a factory that logs slixmpp clients in and disconnects them after the test.
- `proxies`: proxies that cut a client off without the server noticing (sm_support.py).

When a test fails, the part of each server's stderr log written during that test is added
to its report. Each server's directory (config, data, log) is removed when it stops,
unless CORVID_INTEROP_KEEP is set.
"""

from __future__ import annotations

import os
import shutil

import pytest

from interop_support import Client, CorvidServer

_running: list[CorvidServer] = []


def _start(name: str, **kwargs) -> CorvidServer:
    server = CorvidServer(name, **kwargs)
    server.start()
    _running.append(server)
    return server


def _stop(server: CorvidServer) -> None:
    _running.remove(server)
    code = server.stop()
    log_tail = server.log_text()[-4000:]
    if not os.environ.get("CORVID_INTEROP_KEEP"):
        shutil.rmtree(server.dir, ignore_errors=True)
    # SIGTERM is the documented way to stop corvid, and it shuts down gracefully.
    assert code == 0, f"corvid ({server.name}) exited with {code} after SIGTERM; log:\n{log_tail}"


@pytest.fixture(scope="session")
def server():
    server = _start("main")
    yield server
    _stop(server)


@pytest.fixture(scope="session")
def closed_server():
    server = _start("closed", registration_open=False)
    yield server
    _stop(server)


@pytest.fixture
def make_server():
    """Starts servers of the test's own (for tests that stop them or need other limits);
    `make_server(limits={...})`. They are stopped, and their exit status checked, after
    the test."""
    started: list[CorvidServer] = []

    def make(name: str = "own", **options) -> CorvidServer:
        server = _start(name, **options)
        started.append(server)
        return server

    yield make
    for server in started:
        _stop(server)


class Clients:
    """Makes logged-in clients; everything it made is disconnected at teardown."""

    def __init__(self):
        self.made: list[Client] = []

    def new(self, jid: str, password: str, **options) -> Client:
        """A client that has not connected yet (for tests that hook events first)."""
        client = Client(jid, password, **options)
        self.made.append(client)
        return client

    async def login(self, server: CorvidServer, jid: str, password: str, *, direct_tls: bool = False,
                    **options) -> Client:
        return await self.new(jid, password, **options).start(server, direct_tls=direct_tls)

    async def close_all(self) -> None:
        for client in self.made:
            await client.close()


@pytest.fixture
async def clients():
    made = Clients()
    yield made
    await made.close_all()


# -- server logs in failure reports ------------------------------------------------------

_LOG_LIMIT = 30_000


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.corvid_log_marks = {id(s): s.log_size() for s in _running}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    marks = getattr(item, "corvid_log_marks", {})
    for server in list(_running):
        text = server.log_text(marks.get(id(server), 0))
        if len(text) > _LOG_LIMIT:
            text = "[… earlier lines cut …]\n" + text[-_LOG_LIMIT:]
        report.sections.append((f"corvid ({server.name}) stderr during this test", text or "(nothing)"))


# -- instant messaging -------------------------------------------------------------------

from interop_support import ImClient, ImServer  # noqa: E402


@pytest.fixture
def make_im_server():
    """Like make_server, but the servers take extra config sections
    (`make_im_server(sections={"offline": {"quota": 3}})`) and can `restart()` on the same
    data directory and ports."""
    started: list[ImServer] = []

    def make(name: str = "im", **options) -> ImServer:
        server = ImServer(name, **options)
        server.start()
        _running.append(server)
        started.append(server)
        return server

    yield make
    for server in started:
        _stop(server)


class ImClients:
    """Makes ImClients; they are disconnected at teardown with the `clients` fixture's."""

    def __init__(self, clients: Clients):
        self.clients = clients

    def new(self, jid: str, password: str, **options) -> ImClient:
        client = ImClient(jid, password, **options)
        self.clients.made.append(client)
        return client

    async def login(self, server, jid: str, password: str, **options) -> ImClient:
        return await self.new(jid, password, **options).start(server)

    async def online(self, server, jid: str, password: str, *, priority: int | None = None,
                     show: str | None = None, status: str | None = None) -> ImClient:
        """Logs in, requests the roster and sends initial presence."""
        client = await self.login(server, jid, password)
        await client.online(priority=priority, show=show, status=status)
        return client

    async def user(self, server, prefix: str = "user", **presence) -> ImClient:
        """A new account, online (roster requested, initial presence sent)."""
        jid, password = server.new_account(prefix)
        client = await self.online(server, f"{jid}/{prefix}", password, **presence)
        client.account_password = password
        return client


@pytest.fixture
def im(clients):
    return ImClients(clients)


class _TranscriptReport:
    """Adds each ImClient's stanza transcript to the report of a test that failed."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        ImClient.made.clear()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.failed and report.when in ("call", "teardown"):
            for client in ImClient.made:
                name = str(client.boundjid) if client.boundjid.bare else str(client.requested_jid)
                report.sections.append((f"stanzas of {name}", client.transcript_text() or "(nothing)"))


def pytest_configure(config):
    config.pluginmanager.register(_TranscriptReport(), "corvid-im-transcripts")


# -- stream management ---------------------------------------------------------------------

from sm_support import CutProxy  # noqa: E402


@pytest.fixture
async def proxies():
    """`await proxies(server)` starts a CutProxy in front of `server`'s STARTTLS port; all
    are closed after the test."""
    made: list[CutProxy] = []

    async def make(server) -> CutProxy:
        proxy = await CutProxy(server).start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        await proxy.close()
