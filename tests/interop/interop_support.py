"""Shared pieces of the interop suite: a running `corvid serve` process, and slixmpp
clients that connect to it with a timeout on every step.

The fixtures in conftest.py hand these out; tests import the exception types and helpers
from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.util.sasl.mechanisms import SCRAM

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "localhost"
HOST = "127.0.0.1"

#: Seconds any single step (connect, login, an IQ round trip, a message) may take before
#: the test fails instead of hanging.
TIMEOUT = 10.0
#: Seconds the server gets to start listening.
START_TIMEOUT = 30.0
#: Seconds the server gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0


#: The bundled web client's files (`npm ci --prefix web` installs them).
WEB_CLIENT_DIR = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "converse.js" / "dist"


def corvid_bin() -> Path:
    return Path(os.environ.get("CORVID_BIN", REPO / "target" / "debug" / "corvid")).resolve()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


_names = itertools.count(1)


def unique_name(prefix: str) -> str:
    """A localpart no other test (or earlier run against the same data dir) uses."""
    return f"{prefix}-{next(_names)}-{uuid.uuid4().hex[:6]}"


class CorvidServer:
    """One `corvid serve` process on free loopback ports, with its own data directory.

    Its stderr goes to a log file that conftest.py attaches to failing tests' reports.
    """

    def __init__(self, name: str, *, registration_open: bool = True, limits: dict[str, int] | None = None,
                 components: dict[str, str] | None = None):
        self.name = name
        #: External components (XEP-0114) the server accepts: domain → secret.
        self.components = components or {}
        #: Where components connect (a free port, when there are components).
        self.component_port = 0
        self.registration_open = registration_open
        self.limits = {"idle_ping_secs": 300, **(limits or {})}
        self.dir = Path(tempfile.mkdtemp(prefix=f"corvid-interop-{name}-"))
        self.config_path = self.dir / "corvid.toml"
        self.log_path = self.dir / "corvid.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.tls_port = 0
        #: The HTTP listeners (WebSocket, BOSH, upload, admin API), plain and TLS.
        self.http_port = 0
        self.https_port = 0
        self.exit_code: int | None = None

    # -- process ---------------------------------------------------------------------

    def _write_config(self) -> None:
        limits = "\n".join(f"{key} = {value}" for key, value in self.limits.items())
        if self.components and not self.component_port:
            self.component_port = _free_port()
        components = "".join(
            f'\n[[components]]\ndomain = "{domain}"\nsecret = "{secret}"\n'
            for domain, secret in self.components.items()
        )
        self.config_path.write_text(
            f"""\
domains = ["{DOMAIN}"]
data_dir = "{self.dir / 'data'}"
component_listen = ["{HOST}:{self.component_port or _free_port()}"]
{components}
[c2s]
listen = ["{HOST}:{self.port}"]
tls_listen = ["{HOST}:{self.tls_port}"]

[s2s]
listen = ["{HOST}:{_free_port()}"]

[http]
listen = ["{HOST}:{self.http_port}"]
tls_listen = ["{HOST}:{self.https_port}"]
web_client_dir = "{WEB_CLIENT_DIR}"

[registration]
open = {"true" if self.registration_open else "false"}

[limits]
{limits}

[log]
level = "corvid_server=debug,info"
""",
            encoding="utf-8",
        )

    def start(self) -> None:
        binary = corvid_bin()
        if not binary.is_file():
            raise RuntimeError(f"corvid binary not found at {binary}; run `cargo build -p corvid` or set CORVID_BIN")
        last_error = ""
        # A port picked as free can be taken before corvid binds it; try fresh ports then.
        for _attempt in range(3):
            self.port, self.tls_port = _free_port(), _free_port()
            self.http_port, self.https_port = _free_port(), _free_port()
            if len({self.port, self.tls_port, self.http_port, self.https_port}) < 4:
                continue
            self._write_config()
            log = open(self.log_path, "ab")
            try:
                self.proc = subprocess.Popen(
                    [str(binary), "--config", str(self.config_path), "serve"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env={**os.environ, "NO_COLOR": "1"},
                )
            finally:
                log.close()
            if self._wait_listening():
                return
            last_error = self.log_text()[-4000:]
            self.stop()
            if "in use" not in last_error:
                break
        raise RuntimeError(f"corvid did not start listening on {HOST}:{self.port}/{self.tls_port}:\n{last_error}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        pending = {self.port, self.tls_port} | ({self.component_port} if self.components else set())
        while pending and time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            for port in list(pending):
                try:
                    socket.create_connection((HOST, port), timeout=0.5).close()
                    pending.discard(port)
                except OSError:
                    pass
            if pending:
                time.sleep(0.05)
        return not pending

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return self.exit_code
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
                with open(self.log_path, "ab") as log:
                    log.write(b"\n[interop] corvid did not exit within %ds of SIGTERM; killed\n" % STOP_TIMEOUT)
        self.exit_code = proc.returncode
        return self.exit_code

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- accounts --------------------------------------------------------------------

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(corvid_bin()), "--config", str(self.config_path), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def add_user(self, user: str, password: str) -> str:
        jid = f"{user}@{DOMAIN}"
        done = self.cli("user", "add", jid, "--password", password)
        if done.returncode != 0:
            raise RuntimeError(f"`corvid user add {jid}` failed ({done.returncode}): {done.stderr.strip()}")
        return jid

    def new_account(self, prefix: str = "user") -> tuple[str, str]:
        """Creates a fresh account through the CLI; returns (bare JID, password)."""
        user = unique_name(prefix)
        password = f"pw-{uuid.uuid4().hex}"
        return self.add_user(user, password), password


# -- clients ---------------------------------------------------------------------------


class LoginFailed(Exception):
    """The client did not get a session. `sasl_failures` holds the SASL failure conditions
    in the order received, `stream_errors` any stream error conditions."""

    def __init__(self, why: str, sasl_failures: list[str], stream_errors: list[str]):
        super().__init__(f"{why} (SASL failures: {sasl_failures}, stream errors: {stream_errors})")
        self.sasl_failures = sasl_failures
        self.stream_errors = stream_errors


PLUGINS = ("xep_0030", "xep_0077", "xep_0092", "xep_0199", "xep_0202")


class Client(slixmpp.ClientXMPP):
    """A slixmpp client for tests: no certificate verification (the server's certificate is
    self-signed), no DNS, every received message and stream error recorded."""

    def __init__(self, jid: str, password: str, *, mech: str | None = None, tls_max: ssl.TLSVersion | None = None,
                 alpn: list[str] | None = None):
        super().__init__(jid, password, sasl_mech=mech)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        if tls_max is not None:
            self.ssl_context.maximum_version = tls_max
        if alpn is not None:
            self.ssl_context.set_alpn_protocols(alpn)
        for plugin in PLUGINS:
            self.register_plugin(plugin)
        # No whitespace keepalives: the idle-ping tests need a client that stays silent.
        self.whitespace_keepalive = False

        self.messages: asyncio.Queue = asyncio.Queue()
        self.message_errors: asyncio.Queue = asyncio.Queue()
        self.sasl_failures: list[str] = []
        self.stream_errors: list[tuple[str, str]] = []
        self.tls_version: str | None = None
        self.session_started = False
        self._login: asyncio.Future | None = None
        self.ended: asyncio.Future = asyncio.get_running_loop().create_future()

        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))
        self.add_event_handler("message_error", lambda m: self.message_errors.put_nowait(m))
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", self._on_failed_all_auth)
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("tls_success", self._on_tls)

    # -- event handlers ----------------------------------------------------------------

    def _settle(self, result=None, error: BaseException | None = None) -> None:
        if self._login is not None and not self._login.done():
            if error is not None:
                self._login.set_exception(error)
            else:
                self._login.set_result(result)

    def _on_tls(self, _event) -> None:
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        self.tls_version = ssl_object.version() if ssl_object else None

    def _on_failed_auth(self, failure) -> None:
        self.sasl_failures.append(failure["condition"])

    def _on_failed_all_auth(self, _event) -> None:
        self._settle(error=LoginFailed("every SASL mechanism failed", self.sasl_failures, self.conditions()))

    def _on_stream_error(self, error) -> None:
        self.stream_errors.append((error["condition"], error["text"]))

    def _on_session_start(self, _event) -> None:
        self.session_started = True
        self._settle(result=True)

    def _on_disconnected(self, reason) -> None:
        self._settle(error=LoginFailed(f"disconnected before the session started: {reason}", self.sasl_failures,
                                       self.conditions()))
        if not self.ended.done():
            self.ended.set_result(reason)

    # -- API for tests -------------------------------------------------------------------

    def conditions(self) -> list[str]:
        """The stream error conditions received so far."""
        return [condition for condition, _text in self.stream_errors]

    @property
    def sasl_mechanism(self) -> str | None:
        """The SASL mechanism of the last attempt (the one that succeeded, after login)."""
        mech = self.plugin["feature_mechanisms"].mech
        return mech.name if mech else None

    async def start(self, server: CorvidServer, *, direct_tls: bool = False, timeout: float = TIMEOUT) -> "Client":
        """Connects (STARTTLS, or direct TLS) and waits for the session; raises LoginFailed
        if authentication or binding fails, TimeoutError if nothing happens in time."""
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self._login = asyncio.get_running_loop().create_future()
        self.connect(HOST, server.tls_port if direct_tls else server.port)
        try:
            await asyncio.wait_for(asyncio.shield(self._login), timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise TimeoutError(f"no session for {self.requested_jid} within {timeout}s "
                               f"(SASL failures: {self.sasl_failures}, stream errors: {self.stream_errors})") from None
        except LoginFailed:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Ends the stream politely if it is still open, then makes sure the socket is gone."""
        self.cancel_connection_attempt()
        if self.transport is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.disconnect(wait=1.0), 3)
        if self.transport is not None:
            self.abort()
        # Let slixmpp's connection_lost callbacks run before the loop goes away.
        await asyncio.sleep(0)

    async def wait_ended(self, timeout: float = TIMEOUT):
        """Waits for the server to close this client's connection; returns the reason."""
        return await asyncio.wait_for(asyncio.shield(self.ended), timeout)

    async def next_message(self, timeout: float = TIMEOUT):
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_message_error(self, timeout: float = TIMEOUT):
        return await asyncio.wait_for(self.message_errors.get(), timeout)

    async def sync(self) -> None:
        """A round trip to the server: everything this client sent before has been handled
        by the server once this returns (stanzas on one stream are handled in order)."""
        await self.plugin["xep_0199"].send_ping(DOMAIN, timeout=TIMEOUT)

    async def available(self, priority: int = 0) -> None:
        """Sends initial presence with a priority and waits until the server has handled it."""
        self.send_presence(ppriority=priority)
        await self.sync()


def iq_error_condition(exc: IqError) -> str:
    return exc.iq["error"]["condition"]


# -- SCRAM-PLUS with tls-server-end-point ------------------------------------------------

# slixmpp's SCRAM-*-PLUS binds with tls-unique (TLS 1.2) or tls-exporter (TLS 1.3, only
# where Python's ssl module has it, which no released Python does). Corvid offers
# tls-exporter and tls-server-end-point (RFC 5929 §4). This subclass keeps slixmpp's whole
# SCRAM exchange and only names tls-server-end-point in the GS2 header; the binding data
# comes from `end_point_binding` through the client's credentials callback.

_SIGNATURE_HASHES = {
    # RFC 5929 §4.1: the certificate's signature hash; MD5 and SHA-1 are replaced by SHA-256.
    "1.2.840.113549.1.1.4": "sha256",   # md5WithRSAEncryption
    "1.2.840.113549.1.1.5": "sha256",   # sha1WithRSAEncryption
    "1.2.840.113549.1.1.11": "sha256",  # sha256WithRSAEncryption
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
    "1.2.840.10045.4.1": "sha256",      # ecdsa-with-SHA1
    "1.2.840.10045.4.3.2": "sha256",    # ecdsa-with-SHA256
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
}


def _der_item(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER item at pos."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    return tag, pos, pos + length


def _oid(body: bytes) -> str:
    parts = [body[0] // 40, body[0] % 40]
    value = 0
    for byte in body[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def end_point_binding(der_cert: bytes) -> bytes:
    """RFC 5929 tls-server-end-point channel-binding data for a DER certificate."""
    _, cert_start, _ = _der_item(der_cert, 0)           # Certificate ::= SEQUENCE {
    _, _, tbs_end = _der_item(der_cert, cert_start)     #   tbsCertificate,
    _, alg_start, _ = _der_item(der_cert, tbs_end)      #   signatureAlgorithm SEQUENCE { OID, … }
    tag, oid_start, oid_end = _der_item(der_cert, alg_start)
    assert tag == 0x06, "signatureAlgorithm does not start with an OID"
    oid = _oid(der_cert[oid_start:oid_end])
    if oid not in _SIGNATURE_HASHES:
        raise ValueError(f"tls-server-end-point is undefined for signature algorithm {oid}")
    return hashlib.new(_SIGNATURE_HASHES[oid], der_cert).digest()


class ScramServerEndPoint(SCRAM):
    """slixmpp's SCRAM, binding to tls-server-end-point instead of tls-unique/tls-exporter."""

    def process_1(self, challenge: bytes) -> bytes:
        super().process_1(challenge)
        if not self.use_channel_binding:
            return self.client_first_message
        self.gs2_header = b"p=tls-server-end-point,,"
        self.client_first_message = self.gs2_header + self.client_first_message_bare
        return self.client_first_message


def use_server_end_point(client: Client) -> None:
    """Makes `client` supply tls-server-end-point binding data to its SASL mechanism."""
    mechanisms = client.plugin["feature_mechanisms"]
    default = mechanisms.sasl_callback

    def credentials(required, optional):
        values = default(required, optional)
        if "channel_binding" in set(required) | set(optional):
            ssl_object = client.transport.get_extra_info("ssl_object")
            values["channel_binding"] = end_point_binding(ssl_object.getpeercert(binary_form=True))
        return values

    mechanisms.sasl_callback = credentials


# -- instant messaging: clients that keep every stanza, servers that restart -------------
#
# The IM tests (test_roster.py, test_presence.py, test_offline.py, …) use `ImClient`: a
# Client that answers no subscription request by itself (slixmpp approves them by default),
# keeps every stanza it receives in `inbox` for the test to pick from, and keeps a
# transcript of what it sent and received that conftest.py adds to a failing test's report.

import base64 as _base64
import xml.etree.ElementTree as _ET

NS_ROSTER = "jabber:iq:roster"
NS_ROSTERVER = "urn:xmpp:features:rosterver"
NS_PREAPPROVAL = "urn:xmpp:features:pre-approval"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_DELAY = "urn:xmpp:delay"
NS_SID = "urn:xmpp:sid:0"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
NS_VCARD = "vcard-temp"
NS_VCARD_UPDATE = "vcard-temp:x:update"
NS_PRIVATE = "jabber:iq:private"
NS_LAST = "jabber:iq:last"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

IM_PLUGINS = ("xep_0054", "xep_0191", "xep_0280", "xep_0049", "xep_0085", "xep_0203", "xep_0297")

#: Characters of each client's transcript kept for a failure report (the end is kept).
TRANSCRIPT_LIMIT = 12_000


class Inbox:
    """Every stanza a client received and no test has taken yet, oldest first."""

    def __init__(self):
        self.items: list = []
        #: Every stanza received, taken or not, in the order received.
        self.history: list = []
        self._changed = asyncio.Event()

    def put(self, stanza) -> None:
        self.items.append(stanza)
        self.history.append(stanza)
        self._changed.set()

    async def expect(self, match, what: str, timeout: float = TIMEOUT):
        """Takes the oldest stanza `match` accepts; fails after `timeout` with what did come."""
        deadline = time.monotonic() + timeout
        while True:
            for i, stanza in enumerate(self.items):
                if match(stanza):
                    del self.items[i]
                    return stanza
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = "\n  ".join(str(s) for s in self.items[-15:]) or "(nothing)"
                raise AssertionError(f"expected {what} within {timeout}s; received instead:\n  {got}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def discard(self, match) -> list:
        """Drops (and returns) the received, not yet taken stanzas `match` accepts."""
        dropped = [s for s in self.items if match(s)]
        self.items = [s for s in self.items if not match(s)]
        return dropped

    def matching(self, match) -> list:
        """The received, not yet taken stanzas `match` accepts (they stay in the inbox)."""
        return [s for s in self.items if match(s)]


# Predicates over received stanzas; they read the XML itself, not slixmpp's interpretation.

def _attr(stanza, name: str) -> str | None:
    return stanza.xml.get(name)


def _bare(jid: str | None) -> str:
    return (jid or "").split("/", 1)[0]


def presence_type(stanza) -> str:
    """'available' for a presence without a type attribute, else the type."""
    return _attr(stanza, "type") or "available"


def is_presence(ptype: str | None = None, *, frm: str | None = None, from_bare: str | None = None,
                status: str | None = None):
    """A presence of type `ptype` (None: any), from exactly `frm` or any resource of `from_bare`."""
    def match(stanza) -> bool:
        if stanza.name != "presence":
            return False
        if ptype is not None and presence_type(stanza) != ptype:
            return False
        if frm is not None and _attr(stanza, "from") != str(frm):
            return False
        if from_bare is not None and _bare(_attr(stanza, "from")) != str(from_bare):
            return False
        if status is not None and stanza.xml.findtext("{jabber:client}status") != status:
            return False
        return True
    return match


def is_message(*, frm: str | None = None, from_bare: str | None = None, mid: str | None = None,
               body: str | None = None, mtype: str | None = None):
    def match(stanza) -> bool:
        if stanza.name != "message":
            return False
        if frm is not None and _attr(stanza, "from") != str(frm):
            return False
        if from_bare is not None and _bare(_attr(stanza, "from")) != str(from_bare):
            return False
        if mid is not None and _attr(stanza, "id") != mid:
            return False
        if body is not None and stanza.xml.findtext("{jabber:client}body") != body:
            return False
        if mtype is not None and (_attr(stanza, "type") or "normal") != mtype:
            return False
        return True
    return match


def is_roster_push(jid: str | None = None, **expected):
    """A roster push (RFC 6121 §2.1.6) whose single item is for `jid` and has the `expected`
    attributes (subscription='both', ask=None meaning absent, …)."""
    def match(stanza) -> bool:
        if stanza.name != "iq" or _attr(stanza, "type") != "set":
            return False
        items = roster_items(stanza)
        if items is None or len(items) != 1:
            return False
        (item_jid, item), = items.items()
        if jid is not None and item_jid != str(jid):
            return False
        return all(item.get(key) == value for key, value in expected.items())
    return match


def roster_items(stanza) -> dict[str, dict] | None:
    """{jid: {subscription, ask, approved, name, groups}} of a roster result or push; None if
    the stanza has no roster <query/>. An absent subscription reads as 'none'."""
    query = stanza.xml.find(f"{{{NS_ROSTER}}}query")
    if query is None:
        return None
    items = {}
    for item in query.findall(f"{{{NS_ROSTER}}}item"):
        items[item.get("jid")] = {
            "subscription": item.get("subscription", "none"),
            "ask": item.get("ask"),
            "approved": item.get("approved"),
            "name": item.get("name"),
            "groups": sorted(g.text or "" for g in item.findall(f"{{{NS_ROSTER}}}group")),
        }
    return items


def roster_ver(stanza) -> str | None:
    query = stanza.xml.find(f"{{{NS_ROSTER}}}query")
    return None if query is None else query.get("ver")


def error_of(stanza) -> tuple[str | None, str | None, list[str]]:
    """(type, defined condition, namespaces of application-specific conditions) of an error stanza."""
    error = stanza.xml.find("{jabber:client}error")
    if error is None:
        return None, None, []
    condition, extra = None, []
    for child in error:
        ns, _, local = child.tag[1:].partition("}")
        if ns == NS_STANZAS:
            if local != "text":
                condition = local
        else:
            extra.append(f"{{{ns}}}{local}")
    return error.get("type"), condition, extra


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def vcard_element(fields: dict[str, str] | None = None, *, photo: bytes | None = None,
                  photo_type: str = "image/png", padding: int = 0) -> _ET.Element:
    """A <vCard xmlns='vcard-temp'/> with simple text fields, optionally a PHOTO (base64 BINVAL)
    and a DESC of `padding` characters to make it big."""
    vcard = _ET.Element(f"{{{NS_VCARD}}}vCard")
    for name, value in (fields or {}).items():
        _ET.SubElement(vcard, f"{{{NS_VCARD}}}{name}").text = value
    if photo is not None:
        el = _ET.SubElement(vcard, f"{{{NS_VCARD}}}PHOTO")
        _ET.SubElement(el, f"{{{NS_VCARD}}}TYPE").text = photo_type
        _ET.SubElement(el, f"{{{NS_VCARD}}}BINVAL").text = _base64.b64encode(photo).decode()
    if padding:
        _ET.SubElement(vcard, f"{{{NS_VCARD}}}DESC").text = "x" * padding
    return vcard


class ImClient(Client):
    """A Client for IM tests: manual subscription handling, an inbox, a transcript."""

    #: The ImClients made during the current test (conftest.py reports their transcripts).
    made: list["ImClient"] = []

    def __init__(self, jid: str, password: str, **options):
        super().__init__(jid, password, **options)
        for plugin in IM_PLUGINS:
            self.register_plugin(plugin)
        # RFC 6121 §3: the tests answer subscription requests themselves.
        self.auto_authorize = None
        self.auto_subscribe = False
        self.inbox = Inbox()
        #: The <stream:features/> elements received, in order.
        self.stream_features: list[_ET.Element] = []
        self.transcript: list[str] = []
        self._t0 = time.monotonic()
        self.add_filter("in", self._record_in)
        self.add_filter("out_sync", self._record_out)
        ImClient.made.append(self)

    def _note(self, direction: str, stanza) -> None:
        self.transcript.append(f"[{time.monotonic() - self._t0:6.3f}] {direction} {stanza}")

    def _record_in(self, stanza):
        self._note("RECV", stanza)
        if stanza.name == "features":
            self.stream_features.append(stanza.xml)
        elif stanza.name in ("message", "presence", "iq"):
            # Results of this client's own requests are handled by the request's future.
            if not (stanza.name == "iq" and stanza["type"] in ("result", "error")):
                self.inbox.put(stanza)
        return stanza

    def _record_out(self, stanza):
        self._note("SEND", stanza)
        return stanza

    def transcript_text(self) -> str:
        text = "\n".join(self.transcript)
        if len(text) > TRANSCRIPT_LIMIT:
            text = "[… earlier stanzas cut …]\n" + text[-TRANSCRIPT_LIMIT:]
        return text

    @property
    def bare(self) -> str:
        return self.boundjid.bare

    @property
    def full(self) -> str:
        return self.boundjid.full

    def offered(self, tag: str) -> bool:
        """Whether the stream features after authentication contain the element `tag`
        ('{ns}local')."""
        after_auth = [f for f in self.stream_features if f.find("{urn:ietf:params:xml:ns:xmpp-bind}bind") is not None]
        return any(f.find(tag) is not None for f in after_auth)

    # -- requests ----------------------------------------------------------------------

    async def query(self, itype: str, payload: _ET.Element, to: str | None = None, timeout: float = TIMEOUT):
        """Sends an IQ with `payload`; returns the result stanza, raises IqError on an error."""
        iq = self.Iq()
        iq["type"] = itype
        if to is not None:
            iq["to"] = to
        iq.append(payload)
        return await iq.send(timeout=timeout)

    async def roster_get(self, ver: str | None = None):
        """RFC 6121 §2.2 roster get (with a 'ver' when given, §2.6); returns the result stanza."""
        query = _ET.Element(f"{{{NS_ROSTER}}}query")
        if ver is not None:
            query.set("ver", ver)
        return await self.query("get", query)

    async def roster_now(self) -> dict[str, dict]:
        """The roster as the server has it now: {jid: item} (see roster_items)."""
        return roster_items(await self.roster_get()) or {}

    async def roster_set(self, jid: str, *, name: str | None = None, groups: tuple[str, ...] = (),
                         subscription: str | None = None):
        query = _ET.Element(f"{{{NS_ROSTER}}}query")
        item = _ET.SubElement(query, f"{{{NS_ROSTER}}}item", {"jid": str(jid)})
        if name is not None:
            item.set("name", name)
        if subscription is not None:
            item.set("subscription", subscription)
        for group in groups:
            _ET.SubElement(item, f"{{{NS_ROSTER}}}group").text = group
        return await self.query("set", query)

    def presence(self, ptype: str | None = None, *, to: str | None = None, show: str | None = None,
                 status: str | None = None, priority: int | None = None, extra: list[_ET.Element] = ()):
        """Sends a presence exactly as given (no type: available)."""
        pres = self.Presence()
        if ptype is not None:
            pres["type"] = ptype
        if to is not None:
            pres["to"] = to
        if show is not None:
            pres["show"] = show
        if status is not None:
            pres["status"] = status
        if priority is not None:
            pres["priority"] = priority
        for el in extra:
            pres.append(el)
        pres.send()

    async def online(self, *, priority: int | None = None, show: str | None = None, status: str | None = None,
                     roster: bool = True) -> None:
        """What a typical client does after login: requests the roster (becoming an
        "interested resource", RFC 6121 §2.1.6), then sends initial presence."""
        if roster:
            await self.roster_get()
        self.presence(priority=priority, show=show, status=status)
        await self.sync()

    def message(self, to: str, body: str | None = None, *, mtype: str | None = "chat", mid: str | None = None,
                extra: list[_ET.Element] = ()) -> str:
        """Sends a message; returns its id."""
        msg = self.Message()
        msg["to"] = to
        if mtype is not None:
            msg["type"] = mtype
        if body is not None:
            msg["body"] = body
        msg["id"] = mid or f"m-{uuid.uuid4().hex[:10]}"
        for el in extra:
            msg.append(el)
        msg.send()
        return msg["id"]

    async def vcard_set(self, vcard: _ET.Element):
        return await self.query("set", vcard)

    async def vcard_get(self, jid: str | None = None):
        return await self.query("get", _ET.Element(f"{{{NS_VCARD}}}vCard"), to=jid)


async def befriend(a: ImClient, b: ImClient) -> None:
    """Mutual presence subscription between two online clients (RFC 6121 §3.1), done as
    clients do it; waits for both roster pushes with subscription='both'."""
    a.presence("subscribe", to=b.bare)
    await b.inbox.expect(is_presence("subscribe", frm=a.bare), f"subscribe from {a.bare}")
    b.presence("subscribed", to=a.bare)
    b.presence("subscribe", to=a.bare)
    await a.inbox.expect(is_presence("subscribe", frm=b.bare), f"subscribe from {b.bare}")
    a.presence("subscribed", to=b.bare)
    await a.inbox.expect(is_roster_push(b.bare, subscription="both"), f"roster push of {b.bare} with 'both'")
    await b.inbox.expect(is_roster_push(a.bare, subscription="both"), f"roster push of {a.bare} with 'both'")


class ImServer(CorvidServer):
    """A CorvidServer with extra config sections (`sections={'offline': {'quota': 3}}`) that
    can be restarted on the same data directory and ports."""

    def __init__(self, name: str, *, sections: dict[str, dict] | None = None, **options):
        super().__init__(name, **options)
        self.sections = sections or {}

    def _write_config(self) -> None:
        super()._write_config()
        lines = []
        for section, values in self.sections.items():
            lines.append(f"\n[{section}]")
            for key, value in values.items():
                if isinstance(value, bool):
                    value = "true" if value else "false"
                elif isinstance(value, str):
                    value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
                lines.append(f"{key} = {value}")
        with open(self.config_path, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def restart(self) -> None:
        """SIGTERM (which must end corvid with status 0), then the same binary, config,
        data directory and ports again."""
        code = self.stop()
        if code != 0:
            raise RuntimeError(f"corvid ({self.name}) exited with {code} after SIGTERM:\n{self.log_text()[-4000:]}")
        self.relaunch()

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut ends corvid: none of its shutdown code runs.
        `relaunch()` starts it again."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
        with open(self.log_path, "ab") as log:
            log.write(b"\n[interop] corvid killed with SIGKILL\n")

    def relaunch(self) -> None:
        """Starts corvid again after `stop()` or `kill()`: same binary, config, data directory
        and ports; returns once both ports listen."""
        with open(self.log_path, "ab") as log:
            log.write(b"\n[interop] restarting corvid\n")
            self.proc = subprocess.Popen(
                [str(corvid_bin()), "--config", str(self.config_path), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, "NO_COLOR": "1"},
            )
        if not self._wait_listening():
            raise RuntimeError(f"corvid ({self.name}) did not listen again on {HOST}:{self.port}/{self.tls_port}:\n"
                               f"{self.log_text()[-4000:]}")


def remove_user(server: CorvidServer, jid: str) -> None:
    """`corvid user remove JID` against a server's config (it may be running)."""
    done = server.cli("user", "remove", jid)
    if done.returncode != 0:
        raise RuntimeError(f"`corvid user remove {jid}` failed ({done.returncode}): {done.stderr.strip()}")


async def wait_session_gone(observer: Client, full_jid: str, timeout: float = TIMEOUT) -> None:
    """Waits until the server no longer has a session for `full_jid`: a ping to it from
    `observer` bounces (RFC 6121 §8.5.3.2.1). A client's close() returns before the server
    has necessarily finished ending its session."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await observer.plugin["xep_0199"].send_ping(full_jid, timeout=TIMEOUT)
        except IqError:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the server still routes to {full_jid} {timeout}s after it closed")
        await asyncio.sleep(0.05)
