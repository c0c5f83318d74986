"""Helpers for the stream management (XEP-0198), client state indication (XEP-0352) and
crash tests: a proxy that cuts a client off without the server noticing, a slixmpp client
with stream management that can drop and resume its stream, and a reader for the
XEP-0313 archive.

Why a proxy: a phone that loses its network does not close its TCP connection; the server
keeps writing into a socket nobody reads until it times out or the client comes back on a
new connection. `CutProxy` reproduces that on loopback: when the client's side of a
connection ends, the proxy keeps the server's side open and swallows what the server
sends, so the server learns of the loss only from the client's resumption (or from
`release()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import xml.etree.ElementTree as ET

from interop_support import DOMAIN, HOST, TIMEOUT, ImClient

NS_SM = "urn:xmpp:sm:3"
NS_CSI = "urn:xmpp:csi:0"
NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_DATA = "jabber:x:data"
NS_FORWARD = "urn:xmpp:forward:0"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class _Link:
    """One proxied connection: the client's socket and the server's."""

    def __init__(self, client_writer: asyncio.StreamWriter, server_writer: asyncio.StreamWriter):
        self.client_writer = client_writer
        self.server_writer = server_writer
        self.client_gone = False
        #: Bytes the server sent after the client was gone (written into the void).
        self.swallowed = 0
        self.server_closed = asyncio.Event()
        self.tasks: list[asyncio.Task] = []


class CutProxy:
    """A loopback TCP proxy in front of a server's STARTTLS port (`port` stands in for the
    server's in `Client.start(proxy)` and `connect(HOST, proxy.port)`)."""

    def __init__(self, server):
        self.target_port = server.port
        self.port = 0
        self.tls_port = server.tls_port
        self.links: list[_Link] = []
        self._listener: asyncio.base_events.Server | None = None

    async def start(self) -> "CutProxy":
        self._listener = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._listener.sockets[0].getsockname()[1]
        return self

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_writer.close()
            return
        link = _Link(client_writer, server_writer)
        self.links.append(link)
        link.tasks = [
            asyncio.ensure_future(self._client_to_server(link, client_reader)),
            asyncio.ensure_future(self._server_to_client(link, server_reader)),
        ]

    async def _client_to_server(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                link.server_writer.write(data)
                await link.server_writer.drain()
        # The client is gone; the server is not told (no FIN, no RST on its side).
        link.client_gone = True
        with contextlib.suppress(Exception):
            link.client_writer.transport.abort()

    async def _server_to_client(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if link.client_gone:
                    link.swallowed += len(data)
                    continue
                try:
                    link.client_writer.write(data)
                    await link.client_writer.drain()
                except (ConnectionError, OSError):
                    link.client_gone = True
                    link.swallowed += len(data)
        link.server_closed.set()
        with contextlib.suppress(Exception):
            link.client_writer.close()
        with contextlib.suppress(Exception):
            link.server_writer.close()

    def cut(self) -> None:
        """Drops the client side of every live connection (the clients see their
        connection end) while the server sides stay open and silent."""
        for link in self.links:
            if not link.client_gone:
                link.client_gone = True
                with contextlib.suppress(Exception):
                    link.client_writer.transport.abort()

    async def stop_accepting(self) -> None:
        """Refuses new connections (the port is closed) until `accept_again()`: a client
        that was cut off cannot come back yet."""
        if self._listener is not None:
            # Not wait_closed(): on newer Pythons it waits for the proxied connections too.
            self._listener.close()
            self._listener = None

    async def accept_again(self) -> None:
        """Accepts connections again, on the same port."""
        if self._listener is None:
            self._listener = await asyncio.start_server(self._accept, HOST, self.port)

    def release(self) -> None:
        """Closes the server side of every connection whose client is gone: now the
        server sees those connections end."""
        for link in self.links:
            if link.client_gone:
                with contextlib.suppress(Exception):
                    link.server_writer.transport.abort()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for link in self.links:
            for writer in (link.client_writer, link.server_writer):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
            for task in link.tasks:
                task.cancel()
        for link in self.links:
            for task in link.tasks:
                with contextlib.suppress(BaseException):
                    await task


class SmClient(ImClient):
    """An ImClient with slixmpp's XEP-0198 plugin (resumption requested) and XEP-0352.
    `cut()` drops the TCP connection without closing the stream; `reconnect(port)`
    connects again and reports whether slixmpp resumed the old session or got a new one."""

    def __init__(self, jid: str, password: str, *, resume: bool = True, counter_start: int = 0, **options):
        super().__init__(jid, password, **options)
        self.register_plugin("xep_0198")
        self.register_plugin("xep_0352")
        self.plugin["xep_0198"].allow_resume = resume
        #: Where the server's counters start (its `counter_start` option): slixmpp's start
        #: at 0 (XEP-0198 §4), so they are moved there when SM is enabled.
        self.counter_start = counter_start
        #: The <enabled/> answers received (one per session).
        self.enabled: list[ET.Element] = []
        #: The <failed/> answers received.
        self.failed: list[ET.Element] = []
        #: The <resumed/> answers received.
        self.resumed: list[ET.Element] = []
        self._gone = asyncio.Event()
        self._sm_enabled = asyncio.Event()
        self.add_event_handler("sm_enabled", self._on_enabled)
        self.add_event_handler("sm_failed", lambda stanza: self.failed.append(stanza.xml))
        self.add_event_handler("session_resumed", lambda stanza: self.resumed.append(stanza.xml))
        self.add_event_handler("disconnected", lambda _reason: self._gone.set())

    def _on_enabled(self, stanza) -> None:
        # slixmpp fires sm_enabled from its <enabled/> handler, before it counts anything
        # received after it; nothing it sent since <enable/> has been acknowledged yet.
        self.plugin["xep_0198"].handled = self.counter_start
        self.plugin["xep_0198"].last_ack = self.counter_start
        self.enabled.append(stanza.xml)
        self._sm_enabled.set()

    async def sm_ready(self, timeout: float = TIMEOUT) -> ET.Element:
        """Waits for <enabled/> (slixmpp enables SM after binding, which may come after
        session_start) and returns it."""
        await asyncio.wait_for(self._sm_enabled.wait(), timeout)
        return self.enabled[-1]

    @property
    def sm(self):
        return self.plugin["xep_0198"]

    async def cut(self, timeout: float = TIMEOUT) -> None:
        """Aborts the TCP connection: no </stream:stream>, no <a/>, and no TLS close_notify
        either (slixmpp's own abort() closes TLS first, which a server sees as a closure)."""
        self._gone.clear()
        self.cancel_connection_attempt()
        if self.transport is not None:
            self.transport.abort()
        await asyncio.wait_for(self._gone.wait(), timeout)

    async def reconnect(self, port: int, timeout: float = TIMEOUT) -> str:
        """Connects again; slixmpp resumes when it has a stream id, else binds anew.
        Returns 'resumed' or 'new session'."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future = loop.create_future()

        def settle(value):
            if not outcome.done():
                outcome.set_result(value)

        handlers = [("session_resumed", lambda _e: settle("resumed")),
                    ("session_start", lambda _e: settle("new session")),
                    ("disconnected", lambda _e: settle("disconnected"))]
        for event, handler in handlers:
            self.add_event_handler(event, handler)
        try:
            self.connect(HOST, port)
            result = await asyncio.wait_for(outcome, timeout)
        finally:
            for event, handler in handlers:
                self.del_event_handler(event, handler)
        if result == "disconnected":
            raise AssertionError(f"{self.requested_jid} was disconnected while reconnecting: {self.stream_errors}")
        return result


def failed_condition(failed: ET.Element) -> str | None:
    """The stanza error condition inside a XEP-0198 <failed/>."""
    for child in failed:
        if child.tag.startswith(f"{{{NS_STANZAS}}}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return None


# -- the archive (XEP-0313) ------------------------------------------------------------


async def advertises_mam(client: ImClient) -> bool:
    """Whether the server offers XEP-0313 (urn:xmpp:mam:2) on the user's account
    (XEP-0313 §6.1: disco#info to the bare JID) or on the server."""
    for target in (client.bare, DOMAIN):
        info = await client.plugin["xep_0030"].get_info(jid=target, timeout=TIMEOUT)
        if NS_MAM in info["disco_info"]["features"]:
            return True
    return False


async def archived_messages(client: ImClient, with_jid: str, *, page: int = 100,
                            timeout: float = TIMEOUT) -> list[ET.Element]:
    """Every message in the user's archive exchanged with `with_jid`, oldest first, paged
    forward with RSM (XEP-0313 §4.1, XEP-0059) until <fin complete='true'/>."""
    found: list[ET.Element] = []
    after: str | None = None
    for _ in range(10_000):
        query_id = f"q-{uuid.uuid4().hex[:8]}"
        query = ET.Element(f"{{{NS_MAM}}}query", {"queryid": query_id})
        form = ET.SubElement(query, f"{{{NS_DATA}}}x", {"type": "submit"})
        field = ET.SubElement(form, f"{{{NS_DATA}}}field", {"var": "FORM_TYPE", "type": "hidden"})
        ET.SubElement(field, f"{{{NS_DATA}}}value").text = NS_MAM
        field = ET.SubElement(form, f"{{{NS_DATA}}}field", {"var": "with"})
        ET.SubElement(field, f"{{{NS_DATA}}}value").text = with_jid
        rsm = ET.SubElement(query, f"{{{NS_RSM}}}set")
        ET.SubElement(rsm, f"{{{NS_RSM}}}max").text = str(page)
        if after is not None:
            ET.SubElement(rsm, f"{{{NS_RSM}}}after").text = after
        result = await client.query("set", query, timeout=timeout)
        # XEP-0313 §4.2: the results come as messages before the IQ result.
        results = client.inbox.discard(lambda s: s.name == "message" and _result_of(s, query_id) is not None)
        for stanza in results:
            forwarded = _result_of(stanza, query_id).find(f"{{{NS_FORWARD}}}forwarded")
            inner = None if forwarded is None else forwarded.find("{jabber:client}message")
            if inner is not None:
                found.append(inner)
        fin = result.xml.find(f"{{{NS_MAM}}}fin")
        assert fin is not None, f"no <fin/> in the MAM answer: {result}"
        if fin.get("complete") in ("true", "1") or not results:
            return found
        after = fin.findtext(f"{{{NS_RSM}}}set/{{{NS_RSM}}}last")
        assert after, f"an incomplete MAM page without <last/>: {result}"
    raise AssertionError("the archive did not end within 10,000 pages")


def _result_of(stanza, query_id: str) -> ET.Element | None:
    result = stanza.xml.find(f"{{{NS_MAM}}}result")
    if result is None or result.get("queryid") != query_id:
        return None
    return result


class CsiClient(ImClient):
    """An ImClient with slixmpp's XEP-0352 plugin: `inactive()` and `active()` send the
    client state and wait for a round trip, so the server has applied it."""

    def __init__(self, jid: str, password: str, **options):
        super().__init__(jid, password, **options)
        self.register_plugin("xep_0352")

    async def inactive(self) -> None:
        self.plugin["xep_0352"].send_inactive()
        await self.sync()

    def active(self) -> None:
        self.plugin["xep_0352"].send_active()
