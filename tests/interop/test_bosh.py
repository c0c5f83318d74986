"""XMPP over BOSH (XEP-0124, XEP-0206) with a real client: Strophe.js (the library
Converse.js is built on), run by Node from node/bosh_client.mjs, logs in at /http-bind,
chats with a slixmpp client on TCP, and disconnects.

The Node packages are pinned in node/package-lock.json; `npm ci --prefix
tests/interop/node` is run here when they are missing. Without node and npm the test is
skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from interop_support import DOMAIN, HOST, TIMEOUT

NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module")
def strophe():
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are needed for the BOSH interop test")
    if not (NODE_DIR / "node_modules" / "strophe.js").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--ignore-scripts"],
                       check=True, capture_output=True)


async def test_strophe_over_bosh_logs_in_and_chats_with_a_tcp_client(server, clients, strophe):
    web, web_password = server.new_account("web")
    tcp, tcp_password = server.new_account("tcp")
    peer = await clients.login(server, f"{tcp}/desk", tcp_password)
    node = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "bosh_client.mjs"),
        cwd=NODE_DIR,
        env={**os.environ, "BOSH_URL": f"http://{HOST}:{server.http_port}/http-bind",
             "JID": f"{web}/strophe", "PASSWORD": web_password, "PEER": peer.boundjid.full,
             "TIMEOUT_MS": str(int(TIMEOUT * 2000))},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        hello = await peer.next_message(timeout=TIMEOUT * 2)
        assert hello["body"] == "hello over BOSH"
        assert hello["from"].full == f"{web}/strophe"
        peer.send_message(mto=hello["from"], mbody="hello over TCP", mtype="chat")
        out, err = await asyncio.wait_for(node.communicate(), TIMEOUT * 3)
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    transcript = f"stdout:\n{out.decode()}\nstderr:\n{err.decode()}"
    assert node.returncode == 0, transcript
    bound = next(e for e in events if e["event"] == "bound")
    assert bound["jid"] == f"{web}/strophe", transcript
    message = next(e for e in events if e["event"] == "message")
    assert message == {"event": "message", "from": f"{tcp}/desk", "body": "hello over TCP"}, transcript
    statuses = [e["status"] for e in events if e["event"] == "status"]
    assert statuses[-1] == "DISCONNECTED", transcript
    assert DOMAIN in bound["jid"]
