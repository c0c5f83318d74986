"""A raw client-to-server XMPP stream for checking stream management (XEP-0198) to the
byte: asyncio + ssl, STARTTLS, SASL PLAIN, resource binding, and nothing else.

slixmpp and aioxmpp hide the stream management elements and count `h` themselves; the
exact protocol (which `<a h>` answers which `<r/>`, what is resent after `<resumed/>`,
counters across 2^32) is checked with this instead. It keeps every top-level element it
received, in order, and counts the stanzas (RFC 6120 §8: message, presence, iq) received
since stream management was enabled or resumed, the way XEP-0198 §4 defines `h`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from interop_support import DOMAIN, HOST, TIMEOUT

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SM = "urn:xmpp:sm:3"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_PING = "urn:xmpp:ping"

#: XEP-0198 §4: `h` is an unsigned 32-bit integer that wraps to 0.
SEQ_MOD = 2 ** 32

STANZA_TAGS = {f"{{{NS_CLIENT}}}{name}" for name in ("message", "presence", "iq")}


class StreamClosed(Exception):
    """The server closed the stream (`</stream:stream>` or the TCP connection)."""


def is_stanza(el: ET.Element) -> bool:
    return el.tag in STANZA_TAGS


def sm(local: str) -> str:
    """The '{urn:xmpp:sm:3}local' tag of a stream management element."""
    return f"{{{NS_SM}}}{local}"


def condition_of(el: ET.Element) -> str | None:
    """The RFC 6120 stanza error condition inside a XEP-0198 <failed/> (or None)."""
    for child in el:
        if child.tag.startswith(f"{{{NS_STANZAS}}}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return None


def body_of(el: ET.Element) -> str | None:
    return el.findtext(f"{{{NS_CLIENT}}}body")


def describe(el: ET.Element) -> str:
    return ET.tostring(el, encoding="unicode")


class RawStream:
    """One c2s stream. `await RawStream.login(port, jid, password)` gives an authenticated,
    bound stream; `RawStream.authenticated(...)` one that is not bound yet (for resumption
    and the enable-before-bind error)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.parser: ET.XMLPullParser | None = None
        self.root: ET.Element | None = None
        self.depth = 0
        self.pending: list[ET.Element] = []
        self.closed = False
        #: Every top-level element received on this connection, in order.
        self.received: list[ET.Element] = []
        #: The <stream:features/> of the latest stream (re)start.
        self.features: ET.Element | None = None
        self.jid: str | None = None
        #: Where both stream management counters start (XEP-0198 says 0; the server's
        #: `counter_start` option moves it for the wrap-around test).
        self.counter_start = 0
        #: Stanzas received since <enabled/> or <resumed/>; None while SM is off.
        self.inbound: list[ET.Element] | None = None
        #: The value this side's `h` had when `inbound` began (the counter start after
        #: <enable/>, the `h` sent in <resume/> after a resumption).
        self.inbound_base = 0
        #: Stanzas sent since <enable/> (or <resume/>), counted as the server must count them.
        self.outbound = 0
        self._ids = (f"raw-{uuid.uuid4().hex[:6]}-{n}" for n in range(1 << 30))

    # -- connection and negotiation ----------------------------------------------------

    @classmethod
    async def connect(cls, port: int, *, timeout: float = TIMEOUT) -> "RawStream":
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        stream = cls(reader, writer)
        await stream._open(timeout)
        return stream

    @classmethod
    async def authenticated(cls, port: int, jid: str, password: str, *, timeout: float = TIMEOUT) -> "RawStream":
        """Connected, STARTTLS done, SASL PLAIN succeeded, stream restarted: the features
        offered now are the post-authentication ones (bind, sm, csi …)."""
        stream = await cls.connect(port, timeout=timeout)
        await stream.starttls(timeout)
        await stream.auth_plain(jid, password, timeout)
        return stream

    @classmethod
    async def login(cls, port: int, jid: str, password: str, resource: str | None = None, *,
                    timeout: float = TIMEOUT) -> "RawStream":
        stream = await cls.authenticated(port, jid, password, timeout=timeout)
        await stream.bind(resource, timeout)
        return stream

    async def _open(self, timeout: float) -> None:
        """Sends a stream header (RFC 6120 §4.2) and reads up to the features."""
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.root, self.depth = None, 0
        self.write(
            "<?xml version='1.0'?>"
            f"<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}' to='{DOMAIN}' version='1.0'>"
        )
        features = await self.read(timeout)
        if features.tag != f"{{{NS_STREAMS}}}features":
            raise AssertionError(f"expected <stream:features/>, got {describe(features)}")
        self.features = features

    def offers(self, tag: str) -> bool:
        return self.features is not None and self.features.find(tag) is not None

    async def starttls(self, timeout: float = TIMEOUT) -> None:
        self.write(f"<starttls xmlns='{NS_TLS}'/>")
        answer = await self.read(timeout)
        if answer.tag != f"{{{NS_TLS}}}proceed":
            raise AssertionError(f"STARTTLS refused: {describe(answer)}")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the test server's certificate is self-signed
        await asyncio.wait_for(self.writer.start_tls(context, server_hostname=DOMAIN), timeout)
        await self._open(timeout)

    async def auth_plain(self, jid: str, password: str, timeout: float = TIMEOUT) -> None:
        """RFC 4616 PLAIN over TLS, then the stream restart of RFC 6120 §6.4.6."""
        user = jid.split("@", 1)[0]
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.write(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
        answer = await self.read(timeout)
        if answer.tag != f"{{{NS_SASL}}}success":
            raise AssertionError(f"SASL PLAIN failed for {jid}: {describe(answer)}")
        await self._open(timeout)

    async def bind(self, resource: str | None = None, timeout: float = TIMEOUT) -> str:
        """RFC 6120 §7; returns the full JID the server bound."""
        inner = f"<resource>{escape(resource)}</resource>" if resource else ""
        result = await self.iq("set", f"<bind xmlns='{NS_BIND}'>{inner}</bind>", timeout=timeout)
        jid = result.findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")
        if result.get("type") != "result" or not jid:
            raise AssertionError(f"bind failed: {describe(result)}")
        self.jid = jid
        return jid

    # -- stream management ---------------------------------------------------------------

    def seq(self, count: int) -> int:
        """A counter value `count` stanzas after the start, mod 2^32 (XEP-0198 §4)."""
        return (self.counter_start + count) % SEQ_MOD

    @property
    def h(self) -> int:
        """What this client acknowledges: the stanzas it has received since SM began."""
        return (self.inbound_base + len(self.inbound or [])) % SEQ_MOD

    def h_through(self, stanza: ET.Element) -> int:
        """The `h` that acknowledges everything received up to and including `stanza`."""
        assert self.inbound is not None, "stream management is not on"
        for i, el in enumerate(self.inbound):
            if el is stanza:
                return (self.inbound_base + i + 1) % SEQ_MOD
        raise AssertionError(f"not received since SM began: {describe(stanza)}")

    async def enable(self, *, resume: bool = False, max_secs: int | None = None,
                     timeout: float = TIMEOUT) -> ET.Element:
        """Sends <enable/>; returns the <enabled/> or <failed/> answer. Counting starts
        when the server sees the <enable/> (XEP-0198 §4), which is before anything it
        sends after it."""
        attrs = " resume='true'" if resume else ""
        if max_secs is not None:
            attrs += f" max='{max_secs}'"
        self.write(f"<enable xmlns='{NS_SM}'{attrs}/>")
        self.outbound = 0
        self.inbound, self.inbound_base = [], self.counter_start
        answer = await self.read_nonza(timeout)
        if answer.tag != sm("enabled"):
            self.inbound = None
        return answer

    async def resume(self, previd: str, h: int, timeout: float = TIMEOUT) -> ET.Element:
        """Sends <resume/>; returns <resumed/> or <failed/>. The stanzas resent after
        <resumed/> count on from `h` (XEP-0198 §5)."""
        self.write(f"<resume xmlns='{NS_SM}' previd={quoteattr(previd)} h='{h}'/>")
        self.inbound, self.inbound_base = [], h
        answer = await self.read_nonza(timeout)
        if answer.tag != sm("resumed"):
            self.inbound = None
        return answer

    def request_ack(self) -> None:
        self.write(f"<r xmlns='{NS_SM}'/>")

    def ack(self, h: int | None = None) -> None:
        self.write(f"<a xmlns='{NS_SM}' h='{self.h if h is None else h}'/>")

    # -- sending -------------------------------------------------------------------------

    def write(self, data: str) -> None:
        self.writer.write(data.encode())

    def send_stanza(self, xml: str) -> None:
        """Sends one stanza (it counts toward the server's `h`)."""
        self.write(xml)
        self.outbound += 1

    def next_id(self) -> str:
        return next(self._ids)

    def message(self, to: str, body: str | None = None, *, mid: str | None = None, mtype: str = "chat",
                extra: str = "") -> str:
        mid = mid or self.next_id()
        inner = (f"<body>{escape(body)}</body>" if body is not None else "") + extra
        self.send_stanza(f"<message to={quoteattr(to)} id={quoteattr(mid)} type='{mtype}'>{inner}</message>")
        return mid

    def ping(self) -> str:
        """An XEP-0199 ping to the server; returns the IQ id (the result is a stanza, too)."""
        iq_id = self.next_id()
        self.send_stanza(f"<iq type='get' id='{iq_id}' to='{DOMAIN}'><ping xmlns='{NS_PING}'/></iq>")
        return iq_id

    async def iq(self, itype: str, payload: str, *, to: str | None = None, timeout: float = TIMEOUT) -> ET.Element:
        """Sends an IQ and returns its answer (other elements read meanwhile stay in
        `received` and count as usual)."""
        iq_id = self.next_id()
        target = f" to={quoteattr(to)}" if to else ""
        self.send_stanza(f"<iq type='{itype}' id='{iq_id}'{target}>{payload}</iq>")
        return await self.read_until(lambda el: el.tag == f"{{{NS_CLIENT}}}iq" and el.get("id") == iq_id,
                                     f"the answer to IQ {iq_id}", timeout)

    async def close(self, timeout: float = TIMEOUT) -> None:
        """Closes the stream (RFC 6120 §4.4) and waits for the server to close its side."""
        if self.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.write("</stream:stream>")
        deadline = time.monotonic() + timeout
        with contextlib.suppress(StreamClosed, asyncio.TimeoutError, ConnectionError, ssl.SSLError):
            while time.monotonic() < deadline:
                await self.read(max(0.0, deadline - time.monotonic()))
        self.abort()

    def abort(self) -> None:
        """Drops the TCP connection without closing the stream, as a phone losing its
        network would (the server sees the socket end, no </stream:stream>)."""
        self.closed = True
        transport = self.writer.transport
        with contextlib.suppress(Exception):
            transport.abort()

    # -- receiving -----------------------------------------------------------------------

    async def read(self, timeout: float = TIMEOUT) -> ET.Element:
        """The next top-level element; StreamClosed when the stream or connection ends."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.closed:
                raise StreamClosed("the stream is closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"nothing received within {timeout}s")
            try:
                data = await asyncio.wait_for(self.reader.read(65536), remaining)
            except (ConnectionError, ssl.SSLError) as error:
                self.closed = True
                raise StreamClosed(f"connection lost: {error!r}") from None
            if not data:
                self.closed = True
                raise StreamClosed("the server closed the connection")
            self._feed(data)
        el = self.pending.pop(0)
        self.received.append(el)
        if self.inbound is not None and is_stanza(el):
            self.inbound.append(el)
        return el

    def _feed(self, data: bytes) -> None:
        assert self.parser is not None
        self.parser.feed(data)
        for event, el in self.parser.read_events():
            if event == "start":
                self.depth += 1
                if self.depth == 1:
                    self.root = el
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.pending.append(el)
                    if self.root is not None:
                        self.root.remove(el)
                elif self.depth == 0:
                    # </stream:stream>: RFC 6120 §4.4, the server ends the stream.
                    self.closed = True

    async def read_nonza(self, timeout: float = TIMEOUT) -> ET.Element:
        """The next stream management element other than a server's <r/> (answered), with
        any stanza read meanwhile kept (and counted)."""
        while True:
            el = await self.read(timeout)
            if el.tag == sm("r"):
                self.ack()
                continue
            if el.tag.startswith(f"{{{NS_SM}}}") or el.tag == f"{{{NS_STREAMS}}}error":
                return el

    async def read_until(self, match, what: str, timeout: float = TIMEOUT) -> ET.Element:
        """Reads until an element `match` accepts; everything before it stays in `received`."""
        deadline = time.monotonic() + timeout
        start = len(self.received)
        while True:
            remaining = deadline - time.monotonic()
            try:
                el = await self.read(max(remaining, 0.0))
            except (asyncio.TimeoutError, StreamClosed) as error:
                got = "\n  ".join(describe(e) for e in self.received[start:][-15:]) or "(nothing)"
                raise AssertionError(f"expected {what} within {timeout}s ({error}); received instead:\n  {got}") \
                    from None
            if match(el):
                return el

    def stanzas_since(self, index: int) -> list[ET.Element]:
        return [el for el in self.received[index:] if is_stanza(el)]
