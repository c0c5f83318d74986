"""Pieces of the IRC gateway's interop tests (test_irc_gateway.py): an XMPP server that
accepts the gateway as an XEP-0114 component, a real IRC server (ngircd), the gateway
process, and a bare IRC client speaking the protocol over a socket.

The XMPP server is pluggable: anything with the attributes of `ComponentHost` will do (c2s
`port`, `component_port`, `secret`, `component_domain`, `new_account()`), so the suite
can move from Prosody to Corvid once Corvid accepts components.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from interop_support import (
    DOMAIN, HOST, REPO, START_TIMEOUT, STOP_TIMEOUT, TIMEOUT, CorvidServer, _free_port, unique_name,
)

COMPONENT_DOMAIN = "irc.localhost"


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    text = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not open port {port}:\n{text}")


def _stop(proc: subprocess.Popen | None) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    return proc.returncode


class ComponentHost:
    """The interface the tests need from the XMPP server under the gateway."""

    port: int  # c2s (STARTTLS)
    tls_port: int  # direct TLS (unused here, kept for interop_support.Client)
    component_port: int
    secret: str
    component_domain: str = COMPONENT_DOMAIN

    def new_account(self, prefix: str = "user") -> tuple[str, str]:
        raise NotImplementedError

    def log_text(self) -> str:
        return ""


class CorvidHost(CorvidServer):
    """A corvid process that accepts the gateway as an external component (XEP-0114)."""

    component_domain = COMPONENT_DOMAIN

    def __init__(self):
        self.secret = f"secret-{uuid.uuid4().hex[:12]}"
        super().__init__("irc-host", components={COMPONENT_DOMAIN: self.secret})

    def start(self) -> "CorvidHost":
        super().start()
        return self

    def stop(self) -> int | None:
        code = super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        return code


class ProsodyHost(ComponentHost):
    """Prosody (the Debian package) on loopback with its own config, certificate and data,
    with `Component "irc.localhost"` for the gateway."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="corvid-irc-prosody-"))
        self.config = self.dir / "prosody.cfg.lua"
        self.log = self.dir / "prosody.log"
        self.secret = f"secret-{uuid.uuid4().hex[:12]}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ProsodyHost":
        if shutil.which("prosody") is None:
            raise RuntimeError("prosody is not installed (scripts/test.sh installs it)")
        (self.dir / "data").mkdir()
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-keyout", str(self.dir / "key.pem"), "-out", str(self.dir / "cert.pem")],
            check=True, capture_output=True, timeout=60,
        )
        self.port, self.tls_port, self.component_port = _free_port(), _free_port(), _free_port()
        root = self.dir
        self.config.write_text(f"""\
run_as_root = true
pidfile = "{root}/prosody.pid"
data_path = "{root}/data"
certificates = "{root}"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{self.log}" }} }}
interfaces = {{ "{HOST}" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{ {self.tls_port} }}
component_ports = {{ {self.component_port} }}
component_interfaces = {{ "{HOST}" }}
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
ssl = {{ certificate = "{root}/cert.pem"; key = "{root}/key.pem" }}
VirtualHost "{DOMAIN}"
Component "{COMPONENT_DOMAIN}"
    component_secret = "{self.secret}"
""", encoding="utf-8")
        log = open(self.dir / "prosody.stderr", "ab")
        try:
            self.proc = subprocess.Popen(["prosody", "--config", str(self.config), "-F"], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        finally:
            log.close()
        _wait_port(self.port, self.proc, "prosody", self.log)
        _wait_port(self.component_port, self.proc, "prosody", self.log)
        return self

    def new_account(self, prefix: str = "user") -> tuple[str, str]:
        user = unique_name(prefix)
        password = f"pw-{uuid.uuid4().hex}"
        subprocess.run(["prosodyctl", "--config", str(self.config), "register", user, DOMAIN, password],
                       check=True, capture_output=True, timeout=30)
        return f"{user}@{DOMAIN}", password

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
        if not os.environ.get("CORVID_INTEROP_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


class Ngircd:
    """ngircd on a free loopback port, in the foreground, with its own config."""

    NAME = "irc.test"

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="corvid-irc-ngircd-"))
        self.config = self.dir / "ngircd.conf"
        self.log = self.dir / "ngircd.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Ngircd":
        binary = shutil.which("ngircd") or "/usr/sbin/ngircd"
        if not Path(binary).exists():
            raise RuntimeError("ngircd is not installed (scripts/test.sh installs it)")
        self.port = _free_port()
        motd = self.dir / "motd"
        motd.write_text("test server\n")
        self.config.write_text(f"""\
[Global]
Name = {self.NAME}
Info = Corvid gateway tests
Listen = {HOST}
Ports = {self.port}
MotdFile = {motd}
PidFile = {self.dir}/ngircd.pid

[Limits]
MaxNickLength = 30
MaxJoins = 50
PingTimeout = 120
PongTimeout = 60

[Options]
DNS = no
Ident = no
PAM = no
MaxPenaltyTime = 0
""", encoding="utf-8")
        log = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen([binary, "-n", "-f", str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        finally:
            log.close()
        _wait_port(self.port, self.proc, "ngircd", self.log)
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
        if not os.environ.get("CORVID_INTEROP_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def gateway_bin() -> Path:
    """target/debug/corvid-gateway-irc, or the one beside $CORVID_BIN."""
    corvid = os.environ.get("CORVID_BIN")
    if corvid:
        return Path(corvid).resolve().parent / "corvid-gateway-irc"
    return REPO / "target" / "debug" / "corvid-gateway-irc"


class Gateway:
    """A corvid-gateway-irc process connected to `host` and reaching IRC on `irc_port`."""

    def __init__(self, host: ComponentHost, irc_port: int, *, secret: str | None = None):
        self.host = host
        self.irc_port = irc_port
        self.secret = host.secret if secret is None else secret
        self.dir = Path(tempfile.mkdtemp(prefix="corvid-irc-gateway-"))
        self.config = self.dir / "gateway.toml"
        self.log = self.dir / "gateway.log"
        self.proc: subprocess.Popen | None = None

    def start(self, *, wait_established: bool = True) -> "Gateway":
        binary = gateway_bin()
        if not binary.is_file():
            raise RuntimeError(f"no gateway binary at {binary}; cargo build -p corvid-gateway-irc")
        self.config.write_text(f"""\
data_dir = "{self.dir / 'data'}"

[component]
domain = "{self.host.component_domain}"
server = "{HOST}:{self.host.component_port}"
secret = "{self.secret}"
max_backoff_secs = 2

[irc]
port = {self.irc_port}
connect_timeout_secs = 5
""", encoding="utf-8")
        log = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(
                [str(binary), "--config", str(self.config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, "NO_COLOR": "1", "RUST_LOG": "corvid_gateway_irc=debug,info"},
            )
        finally:
            log.close()
        if wait_established:
            self.wait_log("component stream established")
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, text: str, count: int = 1, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_text().count(text) >= count:
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"gateway log has not {count}× {text!r}:\n{self.log_text()[-4000:]}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        code = _stop(self.proc)
        self.proc = None
        if not os.environ.get("CORVID_INTEROP_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return code


class IrcClient:
    """A bare IRC client: raw lines over a socket, every received line kept, PINGs answered."""

    def __init__(self, nick: str):
        self.nick = nick
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None

    async def connect(self, port: int) -> "IrcClient":
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), TIMEOUT)
        self._task = asyncio.create_task(self._read())
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick} 0 * :Test user")
        await self.expect(lambda p: p[1] == "001", "the welcome")
        return self

    async def _read(self) -> None:
        assert self.reader is not None
        while True:
            raw = await self.reader.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("PING"):
                self.send("PONG" + line[4:])
            self.lines.append(line)
            self._changed.set()

    def send(self, line: str) -> None:
        assert self.writer is not None
        self.writer.write(line.encode() + b"\r\n")

    def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    async def expect(self, match, what: str, timeout: float = TIMEOUT) -> tuple[str, str, list[str]]:
        """Takes the oldest line whose parse (source nick, command, params) `match` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            for i, line in enumerate(self.lines):
                parsed = parse(line)
                if match(parsed):
                    del self.lines[i]
                    return parsed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"IRC {self.nick}: expected {what} within {timeout}s; got:\n  "
                                     + "\n  ".join(self.lines[-20:]))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def join(self, channel: str) -> None:
        self.send(f"JOIN {channel}")
        await self.expect(lambda p: p[1] == "366" and p[2][1].lower() == channel.lower(), f"joined {channel}")

    async def close(self) -> None:
        if self.writer is not None:
            try:
                self.send("QUIT :bye")
                await self.writer.drain()
            except (ConnectionError, RuntimeError):
                pass
            self.writer.close()
        if self._task is not None:
            self._task.cancel()


def parse(line: str) -> tuple[str, str, list[str]]:
    """(source nick, command, params) of a line; the source is '' without a prefix."""
    source = ""
    if line.startswith(":"):
        prefix, _, line = line[1:].partition(" ")
        source = prefix.split("!", 1)[0]
    head, sep, trailing = line.partition(" :")
    parts = head.split()
    params = parts[1:] + ([trailing] if sep else [])
    return source, (parts[0].upper() if parts else ""), params
