"""HTTP file upload (XEP-0363) and external service discovery (XEP-0215) with a real client:
slixmpp's upload plugin finds the service, asks for a slot and PUTs the file over HTTP
(aiohttp), and another user downloads it byte for byte; the STUN and TURN servers of
`[[external_services]]`, with time-limited TURN credentials, asked for with raw IQs.

The server's `[http] public_url` is its plain-HTTP loopback port, so that the client can
upload without trusting the self-signed certificate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import xml.etree.ElementTree as ET

import aiohttp
import pytest
from slixmpp.exceptions import IqError

from interop_support import DOMAIN, HOST, TIMEOUT, ImServer, iq_error_condition

NS_UPLOAD = "urn:xmpp:http:upload:0"
NS_EXTDISCO = "urn:xmpp:extdisco:2"
TURN_SECRET = "north-wind"

EXTERNAL_SERVICES = f"""
[[external_services]]
type = "stun"
host = "stun.example.org"

[[external_services]]
type = "turn"
host = "turn.example.org"
port = 3479
secret = "{TURN_SECRET}"
credentials_ttl_secs = 3600
"""


class UploadServer(ImServer):
    """A server whose upload URLs point at its plain-HTTP port, with STUN and TURN services."""

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text(encoding="utf-8")
        text = text.replace("[http]\n", f'[http]\npublic_url = "http://{HOST}:{self.http_port}"\n', 1)
        self.config_path.write_text(text + EXTERNAL_SERVICES, encoding="utf-8")


@pytest.fixture(scope="module")
def upload_server():
    server = UploadServer("upload")
    server.start()
    yield server
    code = server.stop()
    log_tail = server.log_text()[-4000:]
    if not os.environ.get("CORVID_INTEROP_KEEP"):
        shutil.rmtree(server.dir, ignore_errors=True)
    assert code == 0, f"corvid (upload) exited with {code} after SIGTERM; log:\n{log_tail}"


async def uploader(server, clients, prefix: str):
    jid, password = server.new_account(prefix)
    client = clients.new(f"{jid}/{prefix}", password)
    client.register_plugin("xep_0363")
    return await client.start(server)


async def test_a_file_uploaded_with_slixmpp_downloads_byte_for_byte(upload_server, clients, tmp_path):
    alice = await uploader(upload_server, clients, "alice")
    content = os.urandom(300_000)
    photo = tmp_path / "balcony photo.png"
    photo.write_bytes(content)

    url = await alice.plugin["xep_0363"].upload_file(photo, timeout=TIMEOUT)
    assert url.startswith(f"http://{HOST}:{upload_server.http_port}/upload/"), url
    assert url.endswith("/balcony%20photo.png"), url
    assert str(alice.plugin["xep_0363"].upload_service) == f"upload.{DOMAIN}"

    # Anyone with the URL may download it: here with no XMPP session at all.
    async with aiohttp.ClientSession() as http:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "image/png"
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert await response.read() == content


async def test_the_upload_service_refuses_a_file_too_large(upload_server, clients):
    alice = await uploader(upload_server, clients, "alice")
    request = ET.fromstring(
        f"<request xmlns='{NS_UPLOAD}' filename='huge.bin' size='{200 * 1024 * 1024}' content-type='application/octet-stream'/>"
    )
    iq = alice.make_iq_get(ito=f"upload.{DOMAIN}")
    iq.append(request)
    with pytest.raises(IqError) as refused:
        await iq.send(timeout=TIMEOUT)
    assert iq_error_condition(refused.value) == "not-acceptable"
    max_size = refused.value.iq.xml.find(f".//{{{NS_UPLOAD}}}file-too-large/{{{NS_UPLOAD}}}max-file-size")
    assert max_size is not None and max_size.text == str(100 * 1024 * 1024)


async def test_stun_and_turn_servers_are_discovered_with_turn_credentials(upload_server, clients):
    alice = await uploader(upload_server, clients, "alice")
    info = await alice.plugin["xep_0030"].get_info(jid=DOMAIN, timeout=TIMEOUT)
    assert NS_EXTDISCO in info["disco_info"]["features"]

    iq = alice.make_iq_get(ito=DOMAIN)
    iq.append(ET.fromstring(f"<services xmlns='{NS_EXTDISCO}'/>"))
    reply = await iq.send(timeout=TIMEOUT)
    services = reply.xml.findall(f"{{{NS_EXTDISCO}}}services/{{{NS_EXTDISCO}}}service")
    assert [(s.get("type"), s.get("host"), s.get("port")) for s in services] == [
        ("stun", "stun.example.org", "3478"),
        ("turn", "turn.example.org", "3479"),
    ]

    iq = alice.make_iq_get(ito=DOMAIN)
    iq.append(ET.fromstring(
        f"<credentials xmlns='{NS_EXTDISCO}'><service type='turn' host='turn.example.org'/></credentials>"
    ))
    reply = await iq.send(timeout=TIMEOUT)
    turn = reply.xml.find(f"{{{NS_EXTDISCO}}}credentials/{{{NS_EXTDISCO}}}service")
    username, password = turn.get("username"), turn.get("password")
    expiry, user = username.split(":", 1)
    assert user == alice.boundjid.bare and int(expiry) > 0
    # The TURN REST API: what the TURN server computes from the shared secret.
    expected = base64.b64encode(hmac.new(TURN_SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()
    assert password == expected
