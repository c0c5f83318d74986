"""A Node XMPP client, @xmpp/client (pinned in tests/interop/node/package.json), against a
real corvid over WebSocket (RFC 7395): it logs in, and chats with a slixmpp peer both ways.

Needs Node and npm; `npm ci --prefix tests/interop/node` is run here when the packages are
missing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from interop_support import DOMAIN, TIMEOUT, is_message

NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module")
def node_packages():
    if not (NODE_DIR / "node_modules" / "@xmpp" / "client").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--ignore-scripts"],
                       check=True, capture_output=True)


async def run_node(script: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / script), env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def next_event(proc: asyncio.subprocess.Process, wanted: str) -> dict:
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        if not line:
            err = (await proc.stderr.read()).decode(errors="replace")
            raise AssertionError(f"node ended before {wanted!r}: {err}")
        event = json.loads(line)
        assert event["event"] != "error", event
        if event["event"] == wanted:
            return event


async def test_xmpp_js_over_websocket_chats_with_slixmpp(server, im, node_packages):
    romeo = await im.user(server, "romeo")
    juliet_jid, password = server.new_account("juliet")
    proc = await run_node("ws_client.mjs", {
        "SERVICE": f"ws://127.0.0.1:{server.http_port}/xmpp-websocket",
        "DOMAIN": DOMAIN,
        "USERNAME": juliet_jid.split("@")[0],
        "PASSWORD": password,
        "PEER": romeo.full,
    })
    try:
        online = await next_event(proc, "online")
        assert online["jid"] == f"{juliet_jid}/node"
        got = await romeo.inbox.expect(is_message(frm=online["jid"], body="hello from node over websocket"),
                                       "the Node client's message")
        romeo.message(str(got["from"]), "hello from slixmpp over TCP")
        reply = await next_event(proc, "message")
        assert (reply["from"], reply["body"]) == (romeo.full, "hello from slixmpp over TCP")
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
