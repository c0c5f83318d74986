"""corvid-chat, the terminal client (crates/corvid-chat), against a real corvid process with
slixmpp peers: its scriptable subcommands run as processes, and its TUI driven through tmux
(keys in with send-keys, the screen read back with capture-pane).

corvid-chat is found next to the corvid binary ($CORVID_BIN, same target dir); it checks
the server's certificate by pinning the self-signed one the server generated in its data
directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET

import pytest

from interop_support import (
    DOMAIN,
    HOST,
    TIMEOUT,
    corvid_bin,
    befriend,
    is_message,
    is_presence,
    unique_name,
    vcard_element,
)

NS_MUC = "http://jabber.org/protocol/muc"
NS_DIRECT_INVITE = "jabber:x:conference"
NS_RECEIPTS = "urn:xmpp:receipts"
ROOMS = f"conference.{DOMAIN}"


def chat_bin():
    return corvid_bin().parent / "corvid-chat"


@pytest.fixture(autouse=True)
def _need_corvid_chat():
    if not chat_bin().is_file():
        raise RuntimeError(f"corvid-chat not found at {chat_bin()}; run `cargo build -p corvid-chat`")


def chat_env(server, jid: str, password: str, home) -> dict[str, str]:
    """The environment that logs corvid-chat in to `jid` on `server`: account and password
    from CORVID_CHAT_* variables, the server's own certificate pinned, and a HOME of its own
    (no config file of the user's is read)."""
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "CORVID_CHAT_JID": jid,
        "CORVID_CHAT_PASSWORD": password,
        "CORVID_CHAT_SERVER": f"{HOST}:{server.port}",
        "CORVID_CHAT_PIN_CERT": str(server.dir / "data" / "cert.pem"),
        "NO_COLOR": "1",
    }


async def start_chat(env, *args: str, stdin=asyncio.subprocess.DEVNULL) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(chat_bin()), *args, env=env, stdin=stdin,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def run_chat(env, *args: str) -> tuple[int, str, str]:
    """Runs a subcommand to its end: (exit code, stdout, stderr)."""
    proc = await start_chat(env, *args)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 2)
    return proc.returncode, out.decode(), err.decode()


async def line_where(stream, match, what: str, timeout: float = TIMEOUT) -> str:
    """Reads lines from `stream` until one `match` accepts; fails with the lines seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"expected {what} within {timeout}s; got lines: {seen}")
        try:
            raw = await asyncio.wait_for(stream.readline(), remaining)
        except asyncio.TimeoutError:
            continue
        if not raw:
            raise AssertionError(f"expected {what}; the stream ended after: {seen}")
        line = raw.decode().rstrip("\n")
        seen.append(line)
        if match(line):
            return line


def json_line(**expected):
    """A JSON line with these fields."""
    def match(line: str) -> bool:
        try:
            obj = json.loads(line)
        except ValueError:
            return False
        return all(obj.get(k) == v for k, v in expected.items())
    return match


async def lines_until(stream, done, what: str, timeout: float = TIMEOUT) -> list[str]:
    """Reads lines from `stream` until `done(lines so far)`; fails with the lines seen."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not done(lines):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"expected {what} within {timeout}s; got lines: {lines}")
        try:
            raw = await asyncio.wait_for(stream.readline(), remaining)
        except asyncio.TimeoutError:
            continue
        if not raw:
            raise AssertionError(f"expected {what}; the stream ended after: {lines}")
        lines.append(raw.decode().rstrip("\n"))
    return lines


async def lines_within(stream, seconds: float) -> list[str]:
    """The lines `stream` gives within `seconds`."""
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            raw = await asyncio.wait_for(stream.readline(), remaining)
        except asyncio.TimeoutError:
            break
        if not raw:
            break
        lines.append(raw.decode().rstrip("\n"))
    return lines


def through(proxy, env: dict[str, str]) -> dict[str, str]:
    """`env` with corvid-chat connecting through `proxy` (a CutProxy) instead."""
    return {**env, "CORVID_CHAT_SERVER": f"{HOST}:{proxy.port}"}


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), TIMEOUT)


# -- scripted subcommands ------------------------------------------------------------------


async def test_send_delivers_a_message_to_a_slixmpp_peer(server, im, tmp_path):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("chat")
    env = chat_env(server, jid, password, tmp_path)
    # The server's self-signed certificate as the one trusted root, from a flag this time.
    cert = env.pop("CORVID_CHAT_PIN_CERT")
    code, _, err = await run_chat(env, "--ca", cert, "send", peer.bare, "hello from corvid-chat")
    assert code == 0, err
    got = await peer.inbox.expect(is_message(from_bare=jid, body="hello from corvid-chat", mtype="chat"),
                                  "corvid-chat's message")
    assert got.xml.get("id")


async def test_send_with_receipt_waits_for_the_peers_receipt(server, im, tmp_path):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("chat")
    env = chat_env(server, jid, password, tmp_path)
    proc = await start_chat(env, "send", "--receipt", "--receipt-timeout", "10", peer.bare, "did you get this?")
    got = await peer.inbox.expect(is_message(from_bare=jid, body="did you get this?"), "the message")
    assert got.xml.find(f"{{{NS_RECEIPTS}}}request") is not None
    # Still waiting for the receipt.
    await asyncio.sleep(0.3)
    assert proc.returncode is None
    peer.message(str(got["from"]), None, mtype=None,
                 extra=[ET.Element(f"{{{NS_RECEIPTS}}}received", {"id": got.xml.get("id")})])
    await asyncio.wait_for(proc.wait(), TIMEOUT)
    assert proc.returncode == 0, (await proc.stderr.read()).decode()


async def test_listen_prints_a_peers_message_as_a_json_line(server, im, tmp_path):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("chat")
    proc = await start_chat(chat_env(server, jid, password, tmp_path), "listen")
    try:
        await line_where(proc.stderr, lambda l: l.startswith("listening as"), "the listening line")
        mid = peer.message(jid, "hi listener")
        line = await line_where(proc.stdout, json_line(body="hi listener"), "the message's JSON line")
        obj = json.loads(line)
        assert obj["from"] == peer.full
        assert obj["type"] == "chat"
        assert obj["id"] == mid
        assert obj["stamp"].endswith("Z")
    finally:
        await stop(proc)


async def listen_through_a_cut(peer, proxy, env, while_away=None) -> str:
    """Runs `listen` through `proxy`, cuts it off for a while (the server does not know and
    writes into the void; then `while_away()` runs), and checks that what the peer sent
    before, during and after the cut is printed, each message once. Returns the line
    saying how listen came back."""
    proc = await start_chat(through(proxy, env), "listen")
    jid = env["CORVID_CHAT_JID"]
    try:
        await line_where(proc.stderr, lambda l: l.startswith("listening as"), "the listening line")
        peer.message(jid, "before the cut")
        printed = await lines_until(proc.stdout, lambda ls: any("before the cut" in l for l in ls),
                                    "the first message")
        await proxy.stop_accepting()
        proxy.cut()
        await line_where(proc.stderr, lambda l: l.startswith("reconnecting (attempt 1)"), "the reconnecting line")
        during = [f"during the cut {i}" for i in range(3)]
        for body in during:
            peer.message(jid, body)
        await line_where(proc.stderr, lambda l: l.startswith("reconnection attempt 1 failed"),
                         "a failed attempt while the proxy refuses")
        if while_away is not None:
            await while_away()
        await proxy.accept_again()
        back = await line_where(proc.stderr, lambda l: l.startswith("back"), "the back line", timeout=TIMEOUT * 2)
        after = [f"after the cut {i}" for i in range(3)]
        for body in after:
            peer.message(jid, body)
        wanted = ["before the cut", *during, *after]

        def bodies(lines):
            return [json.loads(l)["body"] for l in lines]

        printed += await lines_until(proc.stdout, lambda ls: set(wanted) <= set(bodies(printed + ls)),
                                     "every message")
        # Anything printed twice would come now.
        printed += await lines_within(proc.stdout, 1.0)
        assert sorted(bodies(printed)) == sorted(wanted), printed
        assert all(json.loads(l)["from"] == peer.full for l in printed), printed
        assert proc.returncode is None
        return back
    finally:
        await stop(proc)


async def test_listen_resumes_after_a_cut_and_prints_every_message_once(server, im, proxies, tmp_path):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("chat")
    back = await listen_through_a_cut(peer, await proxies(server), chat_env(server, jid, password, tmp_path))
    assert "resumed" in back, back


async def test_listen_catches_up_from_the_archive_when_the_session_is_gone(make_im_server, im, proxies,
                                                                           tmp_path):
    own = make_im_server("chat-expire", sections={"stream_management": {"resume_timeout_secs": 1}})
    peer = await im.user(own, "peer")
    jid, password = own.new_account("chat")
    proxy = await proxies(own)

    async def until_the_session_expires():
        proxy.release()
        await asyncio.sleep(3)

    back = await listen_through_a_cut(peer, proxy, chat_env(own, jid, password, tmp_path),
                                      until_the_session_expires)
    assert "from the archive" in back, back


async def test_roster_lists_a_contact_added_beforehand(server, im, tmp_path):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("chat")
    # The account befriends the peer from another client first.
    other = await im.online(server, f"{jid}/setup", password)
    await other.roster_set(peer.bare, name="Peer Pal")
    await befriend(other, peer)
    await other.close()
    code, out, err = await run_chat(chat_env(server, jid, password, tmp_path), "roster")
    assert code == 0, err
    assert f"{peer.bare}\tPeer Pal\tboth\tonline" in out.splitlines(), out
    code, out, err = await run_chat(chat_env(server, jid, password, tmp_path), "roster", "--json")
    assert code == 0, err
    (contact,) = [json.loads(l) for l in out.splitlines()]
    assert contact == {"jid": peer.bare, "name": "Peer Pal", "subscription": "both", "ask": False,
                       "groups": [], "presence": "online"}


async def test_vcard_prints_the_vcard_a_peer_set(server, im, tmp_path):
    peer = await im.user(server, "peer")
    await peer.vcard_set(vcard_element({"FN": "Peer Person", "NICKNAME": "pp"}))
    jid, password = server.new_account("chat")
    # The account from the default config file this time, the password from a file it names.
    env = chat_env(server, jid, password, tmp_path)
    for name in ("CORVID_CHAT_JID", "CORVID_CHAT_PASSWORD", "CORVID_CHAT_SERVER", "CORVID_CHAT_PIN_CERT"):
        env.pop(name)
    (tmp_path / "password").write_text(password + "\n")
    config = tmp_path / ".config" / "corvid-chat" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f"""\
jid = "{jid}"
server = "{HOST}:{server.port}"
pin_cert = "{server.dir / 'data' / 'cert.pem'}"
password_file = "{tmp_path / 'password'}"
""")
    code, out, err = await run_chat(env, "vcard", peer.bare)
    assert code == 0, err
    lines = out.splitlines()
    assert "FN: Peer Person" in lines and "NICKNAME: pp" in lines, out


async def test_join_talks_with_a_slixmpp_occupant(server, im, tmp_path):
    room = f"{unique_name('room')}@{ROOMS}"
    jid, password = server.new_account("chat")
    proc = await start_chat(chat_env(server, jid, password, tmp_path), "join", room, "chatter",
                            stdin=asyncio.subprocess.PIPE)
    try:
        # corvid-chat creates the room and unlocks it (an instant room) before saying so.
        await line_where(proc.stderr, lambda l: l.startswith(f"joined {room}"), "the joined line")
        occupant = await im.user(server, "occupant")
        occupant.presence(to=f"{room}/occ", extra=[ET.Element(f"{{{NS_MUC}}}x")])
        await occupant.inbox.expect(is_presence(None, frm=f"{room}/occ"), "the occupant's self-presence")
        proc.stdin.write(b"hello room\n")
        await proc.stdin.drain()
        await occupant.inbox.expect(is_message(frm=f"{room}/chatter", body="hello room", mtype="groupchat"),
                                    "corvid-chat's room message")
        occupant.message(room, "hello chatter", mtype="groupchat")
        await line_where(proc.stdout, json_line(**{"from": f"{room}/occ", "type": "groupchat",
                                                   "body": "hello chatter"}),
                         "the occupant's message as a JSON line")
        # The end of stdin: corvid-chat leaves the room and exits.
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), TIMEOUT)
        assert proc.returncode == 0, (await proc.stderr.read()).decode()
        await occupant.inbox.expect(is_presence("unavailable", frm=f"{room}/chatter"), "corvid-chat leaving")
    finally:
        await stop(proc)


async def test_join_enters_again_after_a_new_session_and_prints_nothing_twice(make_im_server, im, proxies,
                                                                              tmp_path):
    own = make_im_server("chat-rejoin", sections={"stream_management": {"resume_timeout_secs": 1}})
    proxy = await proxies(own)
    room = f"{unique_name('room')}@{ROOMS}"
    jid, password = own.new_account("chat")
    proc = await start_chat(through(proxy, chat_env(own, jid, password, tmp_path)), "join", room, "chatter",
                            stdin=asyncio.subprocess.PIPE)
    try:
        await line_where(proc.stderr, lambda l: l.startswith(f"joined {room}"), "the joined line")
        occupant = await im.user(own, "occupant")
        occupant.presence(to=f"{room}/occ", extra=[ET.Element(f"{{{NS_MUC}}}x")])
        await occupant.inbox.expect(is_presence(None, frm=f"{room}/occ"), "the occupant's self-presence")
        occupant.message(room, "before the cut", mtype="groupchat")
        await line_where(proc.stdout, json_line(body="before the cut"), "the message before the cut")

        # Cut off for longer than the server keeps the session: the room sees chatter go.
        await proxy.stop_accepting()
        proxy.cut()
        proxy.release()
        await occupant.inbox.expect(is_presence("unavailable", frm=f"{room}/chatter"), "chatter's session ending")
        await proxy.accept_again()
        await occupant.inbox.expect(is_presence(None, frm=f"{room}/chatter"), "chatter back in the room",
                                    timeout=TIMEOUT * 2)

        # The history the room sends again is not printed again; what comes next is.
        occupant.message(room, "after the cut", mtype="groupchat")
        lines = await lines_until(proc.stdout, lambda ls: any("after the cut" in l for l in ls), "the message after")
        lines += await lines_within(proc.stdout, 1.0)
        assert [json.loads(l)["body"] for l in lines] == ["after the cut"], lines
        proc.stdin.write(b"still here\n")
        await proc.stdin.drain()
        await occupant.inbox.expect(is_message(frm=f"{room}/chatter", body="still here", mtype="groupchat"),
                                    "chatter's message after coming back")
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), TIMEOUT)
        assert proc.returncode == 0, (await proc.stderr.read()).decode()
    finally:
        await stop(proc)


async def test_a_wrong_password_fails_with_a_message(server, tmp_path):
    jid, _ = server.new_account("chat")
    code, out, err = await run_chat(chat_env(server, jid, "wrong", tmp_path), "roster")
    assert code != 0 and out == ""
    assert "cannot log in" in err, err


# -- the TUI, in tmux ----------------------------------------------------------------------


class Tmux:
    """A tmux server of the test's own (its own socket) running one session."""

    def __init__(self, env: dict[str, str]):
        self.socket = f"corvid-chat-{uuid.uuid4().hex[:8]}"
        self.env = env

    def run(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], env=self.env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"tmux {args} failed: {done.stderr}")
        return done.stdout

    def start(self, command: str) -> None:
        self.run("new-session", "-d", "-x", "160", "-y", "48", "-s", "chat", command)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "chat", *keys)

    def type(self, text: str) -> None:
        """Types `text` and presses Enter."""
        self.run("send-keys", "-t", "chat", "-l", text)
        self.keys("Enter")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "chat")

    async def wait_for(self, match, what: str, timeout: float = TIMEOUT) -> str:
        """Polls the screen until `match(screen)`; fails with the last screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if match(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {what} on the screen within {timeout}s; it shows:\n{screen}")
            await asyncio.sleep(0.1)

    async def wait_text(self, text: str, timeout: float = TIMEOUT) -> str:
        return await self.wait_for(lambda s: text in s, repr(text), timeout)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True,
                       timeout=TIMEOUT)


@pytest.fixture
def tmux():
    if shutil.which("tmux") is None:
        raise RuntimeError("tmux is not installed (scripts/test.sh installs it)")
    made: list[Tmux] = []

    def make(env):
        made.append(Tmux(env))
        return made[-1]

    yield make
    for t in made:
        t.kill()


def row_of(screen: str, text: str) -> str:
    return next((l for l in screen.splitlines() if text in l), "")


async def test_tui_befriends_and_chats_with_a_slixmpp_peer(server, im, tmux, tmp_path):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("tui")
    # An earlier session of the account talked with the peer: the archive keeps it.
    earlier = await im.online(server, f"{jid}/earlier", password)
    earlier.message(peer.bare, "from an earlier session")
    await peer.inbox.expect(is_message(from_bare=jid, body="from an earlier session"), "the earlier message")
    peer.message(jid, "an old reply")
    await earlier.inbox.expect(is_message(from_bare=peer.bare, body="an old reply"), "the old reply")
    await earlier.close()

    env = {**chat_env(server, jid, password, tmp_path), "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    t = tmux(env)
    log = tmp_path / "corvid-chat.stderr"
    t.start(f"{shlex.quote(str(chat_bin()))} 2>{shlex.quote(str(log))}; echo corvid-chat exited $?; sleep 600")
    await t.wait_text(f"connected as {jid}")

    # A friend request shows; accepting it asks for the peer's presence too.
    peer.presence("subscribe", to=jid)
    await t.wait_text(f"? {peer.bare} (request)")
    t.type(f"/accept {peer.bare}")
    await peer.inbox.expect(is_presence("subscribed", from_bare=jid), "the TUI's approval")
    await peer.inbox.expect(is_presence("subscribe", from_bare=jid), "the TUI's own request")
    peer.presence("subscribed", to=jid)
    await t.wait_text(f"+ {peer.bare}")

    # A message while no conversation is open counts as unread.
    peer.message(jid, "first from peer")
    await t.wait_text(f"+ {peer.bare} (1)")

    # Opening the conversation shows it, with the archive's history before it, once each.
    t.keys("Down")
    screen = await t.wait_text("an old reply")
    assert "from an earlier session" in screen
    assert screen.count("first from peer") == 1, screen
    assert "(1)" not in row_of(screen, f"+ {peer.bare}"), screen
    assert screen.index("from an earlier session") < screen.index("first from peer")

    t.type("hello from the tui")
    await peer.inbox.expect(is_message(from_bare=jid, body="hello from the tui", mtype="chat"), "the TUI's message")
    peer.message(jid, "reply to the tui")
    screen = await t.wait_text("reply to the tui")
    assert screen.index("hello from the tui") < screen.index("reply to the tui")

    t.type("/status away out for lunch")
    await peer.inbox.expect(is_presence(None, from_bare=jid, status="out for lunch"), "the TUI's new status")
    await t.wait_text("[away \"out for lunch\"]")

    t.type("/quit")
    await t.wait_text("corvid-chat exited 0")


async def test_tui_joins_a_room_and_talks_with_a_slixmpp_occupant(server, im, tmux, tmp_path):
    room = f"{unique_name('room')}@{ROOMS}"
    jid, password = server.new_account("tui")
    env = {**chat_env(server, jid, password, tmp_path), "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    t = tmux(env)
    t.start(f"{shlex.quote(str(chat_bin()))}; echo corvid-chat exited $?; sleep 600")
    await t.wait_text(f"connected as {jid}")

    # The TUI creates the room (unlocking it as an instant room), lists it and opens it.
    t.type(f"/join {room} tuinick")
    await t.wait_text(f"joined {room} as tuinick")
    assert f"# {room}" in t.screen()
    occupant = await im.user(server, "occupant")
    occupant.presence(to=f"{room}/occ", extra=[ET.Element(f"{{{NS_MUC}}}x")])
    await occupant.inbox.expect(is_presence(None, frm=f"{room}/occ"), "the occupant's self-presence")

    # The newcomer is announced and listed beside the conversation, with us.
    screen = await t.wait_text("-- occ joined")
    assert "Occupants (2)" in screen, screen
    assert "tuinick (you)" in screen, screen

    t.type("hello everyone")
    await occupant.inbox.expect(is_message(frm=f"{room}/tuinick", body="hello everyone", mtype="groupchat"),
                                "the TUI's room message")
    occupant.message(room, "welcome tuinick", mtype="groupchat")
    screen = await t.wait_text("<occ> welcome tuinick")
    assert "<tuinick> hello everyone" in screen

    # We created the room, so we may set its subject; it shows in the conversation's title.
    t.type("/subject Tonight at the ball")
    got = await occupant.inbox.expect(lambda st: st.name == "message" and st["subject"] == "Tonight at the ball",
                                      "the new subject")
    assert got["from"] == f"{room}/tuinick"
    screen = await t.wait_text("-- tuinick set the subject: Tonight at the ball")
    assert f"{room} - Tonight at the ball" in screen, screen

    # An invitation (XEP-0249) is listed, and `/join` with it selected enters the room.
    other_room = f"{unique_name('ball')}@{ROOMS}"
    occupant.message(jid, None, mtype=None,
                     extra=[ET.Element(f"{{{NS_DIRECT_INVITE}}}x", {"jid": other_room, "reason": "dance"})])
    await t.wait_text(f"! {other_room}")
    assert "invites you to" in t.screen()
    t.keys("Up")
    t.type("/join")
    nick = jid.split("@")[0]
    await t.wait_text(f"joined {other_room} as {nick}")
    assert f"! {other_room}" not in t.screen()
    assert f"# {other_room}" in t.screen()
    t.type(f"/leave {other_room}")
    await t.wait_for(lambda s: f"# {other_room}" not in s, "the other room gone from the list")

    # Someone comes and goes: announced in the room.
    t.keys("Down")
    passer = await im.user(server, "passer")
    passer.presence(to=f"{room}/passer", extra=[ET.Element(f"{{{NS_MUC}}}x")])
    screen = await t.wait_text("-- passer joined")
    assert "Occupants (3)" in screen, screen
    passer.presence("unavailable", to=f"{room}/passer")
    screen = await t.wait_text("-- passer left")
    assert "Occupants (2)" in screen, screen

    t.type("/leave")
    await occupant.inbox.expect(is_presence("unavailable", frm=f"{room}/tuinick"), "the TUI leaving")
    await t.wait_for(lambda s: f"# {room}" not in s, "the room gone from the list")
    t.keys("C-c")
    await t.wait_text("corvid-chat exited 0")


async def test_tui_shows_a_lost_connection_and_comes_back_by_itself(server, im, proxies, tmux, tmp_path):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("tui")
    proxy = await proxies(server)
    env = {**through(proxy, chat_env(server, jid, password, tmp_path)), "TERM": "xterm-256color",
           "LANG": "C.UTF-8"}
    t = tmux(env)
    t.start(f"{shlex.quote(str(chat_bin()))}; echo corvid-chat exited $?; sleep 600")
    await t.wait_text(f"connected as {jid}")
    t.type(f"/chat {peer.bare}")

    await proxy.stop_accepting()
    proxy.cut()
    screen = await t.wait_text("reconnecting (attempt")
    assert "[reconnecting]" in screen, screen
    peer.message(jid, "said while you were away")
    # The proxy refuses for a while: further attempts.
    await t.wait_text("reconnecting (attempt 2)…", timeout=TIMEOUT * 2)
    await proxy.accept_again()
    screen = await t.wait_for(lambda s: "| back" in s, "back in the status line", timeout=TIMEOUT * 2)
    assert "[online]" in screen, screen
    screen = await t.wait_text("said while you were away")
    assert screen.count("said while you were away") == 1, screen

    # Still working both ways.
    t.type("and now?")
    await peer.inbox.expect(is_message(from_bare=jid, body="and now?", mtype="chat"), "the TUI's message after")
    t.keys("C-c")
    await t.wait_text("corvid-chat exited 0")


async def test_tui_pages_back_through_the_archive(server, im, tmux, tmp_path):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("tui")
    # An earlier session got sixty messages: more than the TUI loads at first (fifty).
    earlier = await im.online(server, f"{jid}/earlier", password)
    for i in range(60):
        peer.message(jid, f"old message {i:02}")
    await earlier.inbox.expect(is_message(body="old message 59"), "the last old message")
    await earlier.close()

    env = {**chat_env(server, jid, password, tmp_path), "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    t = tmux(env)
    t.start(f"{shlex.quote(str(chat_bin()))}; echo corvid-chat exited $?; sleep 600")
    await t.wait_text(f"connected as {jid}")
    t.type(f"/chat {peer.bare}")
    screen = await t.wait_text("old message 59")
    assert "old message 10" not in screen, "more than a screen is shown"

    # PageUp scrolls to the oldest loaded line; once more, and the page before it is loaded.
    t.keys("PageUp")
    screen = await t.wait_text("old message 10")
    assert "old message 09" not in screen and "old message 59" not in screen, screen
    t.keys("PageUp")
    screen = await t.wait_text("old message 00")
    assert "10 older messages" in screen, screen
    t.keys("PageUp")
    await t.wait_text("the beginning of the conversation")

    # PageDown back to the newest, each line once.
    for _ in range(4):
        t.keys("PageDown")
    screen = await t.wait_text("old message 59")
    assert screen.count("old message 59") == 1, screen
    t.keys("C-c")
    await t.wait_text("corvid-chat exited 0")
