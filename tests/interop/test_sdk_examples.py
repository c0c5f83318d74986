"""The client SDK's examples (crates/corvid-client/examples: XMPPFramework's steps one by
one), run as the programs they are against a real corvid process, with slixmpp peers on
the other side. They are built by `cargo build --workspace --all-targets` next to the
corvid binary ($CORVID_BIN's directory, `examples/`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import xml.etree.ElementTree as ET

import pytest

from interop_support import (
    DOMAIN,
    HOST,
    TIMEOUT,
    befriend,
    corvid_bin,
    is_message,
    is_presence,
    unique_name,
)

NS_MUC = "http://jabber.org/protocol/muc"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_VCARD = "vcard-temp"
ROOMS = f"conference.{DOMAIN}"

# A 1×1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def example(name: str):
    return corvid_bin().parent / "examples" / name


@pytest.fixture(autouse=True)
def _need_examples():
    if not example("connect").is_file():
        raise RuntimeError(f"the SDK's examples are not built at {example('connect').parent}; "
                           "run `cargo build -p corvid-client --examples`")


def env_for(server, jid: str, password: str, peer: str | None = None, port: int | None = None,
            **extra) -> dict[str, str]:
    env = {
        **os.environ,
        "CORVID_JID": jid,
        "CORVID_PASSWORD": password,
        "CORVID_SERVER": f"{HOST}:{port or server.port}",
        "CORVID_CERT": str(server.dir / "data" / "cert.pem"),
        **extra,
    }
    if peer is not None:
        env["CORVID_PEER"] = peer
    return env


async def start(name: str, env, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(example(name)), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float = TIMEOUT * 2) -> str:
    """Waits for the example to end; its output. It must succeed."""
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out.decode()}\nstderr:\n{err.decode()}"
    return out.decode()


async def run(name: str, env, *args: str) -> str:
    return await finish(await start(name, env, *args))


async def line_where(proc, match, what: str, timeout: float = TIMEOUT) -> str:
    seen = []

    async def read():
        while raw := await proc.stdout.readline():
            line = raw.decode().rstrip("\n")
            seen.append(line)
            if match(line):
                return line
        raise AssertionError(f"expected {what}; the example ended after: {seen}")

    try:
        return await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"expected {what} within {timeout}s; got: {seen}") from None


async def test_connect_logs_in_and_goes_online(server):
    jid, password = server.new_account("ex")
    out = await run("connect", env_for(server, jid, password))
    lines = out.splitlines()
    assert lines[0] == f"connecting to {HOST}:{server.port}"
    assert any(l.startswith(f"authenticated as {jid}/") for l in lines), out
    assert lines[-2:] == ["online", "offline"], out


async def test_chat_sends_and_receives(server, im):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("ex")
    proc = await start("chat", env_for(server, jid, password, peer.bare))
    got = await peer.inbox.expect(is_message(from_bare=jid, body="hello", mtype="chat"), "the example's hello")
    peer.message(str(got["from"]), "hello yourself")
    out = await finish(proc)
    assert f"received from {peer.full}: hello yourself" in out.splitlines(), out


async def test_roster_lists_contacts_with_presence(server, im):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("ex")
    setup = await im.online(server, f"{jid}/setup", password)
    await setup.roster_set(peer.bare, name="Peer Pal")
    await befriend(setup, peer)
    await setup.close()
    out = await run("roster", env_for(server, jid, password))
    assert f"{peer.bare} name=Peer Pal subscription=both resources online=1" in out.splitlines(), out


async def test_friends_are_added_accepted_and_removed(server, im):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("ex")
    env = env_for(server, jid, password)
    await run("friends", env, "add", peer.bare, "Pal")
    await peer.inbox.expect(is_presence("subscribe", from_bare=jid), "the example's friend request")
    # Now the other way: the example waits for the peer's request and accepts it.
    proc = await start("friends", env, "accept")
    await line_where(proc, lambda l: l == "waiting for a friend request", "the waiting line")
    peer.presence("subscribe", to=jid)
    await peer.inbox.expect(is_presence("subscribed", from_bare=jid), "the example's acceptance")
    assert f"accepted {peer.bare}" in (await finish(proc)).splitlines()
    await run("friends", env, "remove", peer.bare)
    roster = await (await im.online(server, f"{jid}/check", password)).roster_now()
    assert peer.bare not in roster, roster


async def test_vcard_is_published_and_fetched(server, im):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("ex")
    out = await run("vcard", env_for(server, jid, password), "Juliet Capulet")
    assert out.splitlines() == ["published our vCard", f"{jid}: FN=Juliet Capulet"], out
    vcard = await peer.vcard_get(jid)
    assert vcard.xml.findtext(f".//{{{NS_VCARD}}}FN") == "Juliet Capulet"


async def test_receipts_wait_for_the_receipt_of_the_message(server, im):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("ex")
    proc = await start("receipts", env_for(server, jid, password, peer.bare))
    got = await peer.inbox.expect(is_message(from_bare=jid, body="did you get this?"), "the message")
    assert got.xml.find(f"{{{NS_RECEIPTS}}}request") is not None
    peer.message(str(got["from"]), None, mtype=None,
                 extra=[ET.Element(f"{{{NS_RECEIPTS}}}received", {"id": got.xml.get("id")})])
    out = await finish(proc)
    assert f"{peer.full} got {got.xml.get('id')}" in out.splitlines(), out


async def test_autoping_gets_three_pongs(server):
    jid, password = server.new_account("ex")
    out = await run("autoping", env_for(server, jid, password))
    assert sum(l.startswith("pong after") for l in out.splitlines()) == 3, out


async def test_avatar_is_published_both_ways(server, im, tmp_path):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("ex")
    path = tmp_path / "face.png"
    path.write_bytes(PNG)
    out = await run("avatar", env_for(server, jid, password), "publish", str(path), "1", "1")
    digest = hashlib.sha1(PNG).hexdigest()
    assert out.splitlines() == [f"published {len(PNG)} bytes as {digest}"], out
    vcard = await peer.vcard_get(jid)
    binval = vcard.xml.findtext(f".//{{{NS_VCARD}}}BINVAL")
    assert base64.b64decode(binval) == PNG


async def test_room_is_joined_with_its_lists_and_talks(server, im):
    room = f"{unique_name('exroom')}@{ROOMS}"
    jid, password = server.new_account("ex")
    proc = await start("room", env_for(server, jid, password), room, "juliet")
    await line_where(proc, lambda l: l == f"joined {room} as juliet", "the joined line")
    occupant = await im.user(server, "occupant")
    occupant.presence(to=f"{room}/romeo", extra=[ET.Element(f"{{{NS_MUC}}}x")])
    await occupant.inbox.expect(is_presence(None, frm=f"{room}/romeo"), "the occupant's self-presence")
    occupant.message(room, "hello juliet", mtype="groupchat")
    out = await finish(proc)
    lines = out.splitlines()
    assert "occupant juliet role=moderator affiliation=owner" in lines, out
    assert f"owner list: {jid}" in lines, out
    assert "romeo: hello juliet" in lines, out
    assert lines[-1] == "left"
    # The example's hello came before the occupant joined: it is in the room's history.
    assert any(s.name == "message" and s.xml.findtext("{jabber:client}body") == "hello"
               for s in occupant.inbox.history), "the example's hello in the history"


async def test_reconnect_resumes_after_a_cut(server, im, proxies):
    peer = await im.user(server, "peer")
    jid, password = server.new_account("ex")
    proxy = await proxies(server)
    proc = await start("reconnect", env_for(server, jid, password, port=proxy.port, CORVID_SECONDS="20"))
    try:
        # Online (the example prints its events; the last of the login is Authenticated).
        await line_where(proc, lambda l: l.startswith("Authenticated"), "the login")
        peer.message(jid, "before the cut")
        await line_where(proc, lambda l: l.endswith(": before the cut"), "the first message")
        # The connection dies without the server knowing; what it writes meanwhile is lost
        # on the wire, and comes again with the resumption.
        proxy.cut()
        peer.message(jid, "during the cut")
        await line_where(proc, lambda l: l.startswith("Resumed"), "the resumption")
        await line_where(proc, lambda l: l.endswith(": during the cut"), "the message sent during the cut")
    finally:
        proc.terminate()
        await proc.wait()
