"""External components (XEP-0114) against a real corvid: slixmpp's ComponentXMPP connects
with the shared secret, serves its domain, and talks with slixmpp users; a wrong secret is
refused; a component that goes away has its stanzas bounced."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp import ComponentXMPP

from interop_support import DOMAIN, HOST, TIMEOUT, is_message

GATEWAY = "gw.localhost"
SECRET = "component secret"


class Echo(ComponentXMPP):
    """A component that answers every chat message with its body reversed."""

    def __init__(self, secret: str = SECRET):
        super().__init__(GATEWAY, secret, HOST, 0)
        self.register_plugin("xep_0030")
        self.ready = asyncio.get_event_loop().create_future()
        self.ended = asyncio.get_event_loop().create_future()
        self.received: list = []
        self.add_event_handler("session_start", lambda _: self.ready.done() or self.ready.set_result(True))
        self.add_event_handler("disconnected", lambda _: self.ended.done() or self.ended.set_result(True))
        self.add_event_handler("message", self._echo)

    def _echo(self, msg) -> None:
        self.received.append(msg)
        if msg["type"] in ("chat", "normal") and msg["body"]:
            msg.reply(msg["body"][::-1]).send()


@pytest.fixture
def gateway_server(make_server):
    return make_server("components", components={GATEWAY: SECRET})


async def start(component: Echo, server) -> Echo:
    component.connect(host=HOST, port=server.component_port)
    return component


async def test_a_component_serves_its_domain_for_users(gateway_server, im):
    echo = await start(Echo(), gateway_server)
    try:
        await asyncio.wait_for(echo.ready, TIMEOUT)
        user = await im.user(gateway_server, "user")
        user.message(f"bot@{GATEWAY}", "hello component")
        reply = await user.inbox.expect(is_message(frm=f"bot@{GATEWAY}", body="tnenopmoc olleh"),
                                        "the component's answer")
        assert reply["type"] == "chat"
        (got,) = echo.received
        assert str(got["from"]) == user.full
        # The server lists the component among its items.
        items = await user.plugin["xep_0030"].get_items(jid=DOMAIN, timeout=TIMEOUT)
        assert GATEWAY in [item[0] for item in items["disco_items"]["items"]]
    finally:
        echo.disconnect()


async def test_a_wrong_secret_is_refused(gateway_server):
    echo = await start(Echo(secret="not the secret"), gateway_server)
    try:
        await asyncio.wait_for(echo.ended, TIMEOUT)
        assert not echo.ready.done()
    finally:
        echo.abort()


async def test_a_gone_component_has_its_stanzas_bounced(gateway_server, im):
    echo = await start(Echo(), gateway_server)
    await asyncio.wait_for(echo.ready, TIMEOUT)
    echo.disconnect()
    await asyncio.wait_for(echo.ended, TIMEOUT)
    user = await im.user(gateway_server, "user")
    # The server may take a moment to see the stream end; a bounce comes either way.
    user.message(f"bot@{GATEWAY}", "anyone there?")
    bounce = await user.inbox.expect(lambda s: s.name == "message" and s["type"] == "error",
                                     "the bounce")
    assert bounce["error"]["condition"] == "service-unavailable"
