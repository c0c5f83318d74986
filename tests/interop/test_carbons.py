"""Message Carbons with real clients (XEP-0280, urn:xmpp:carbons:2): enabling and disabling,
copies of received and sent messages for the user's other carbons-enabled resources, and
<private/> messages that are not copied."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from interop_support import (
    DOMAIN,
    NS_CARBONS,
    NS_FORWARD,
    TIMEOUT,
    is_message,
)

NO_COPY = "{urn:xmpp:hints}no-copy"


def private() -> list[ET.Element]:
    # XEP-0280 §9: <private/>, with the XEP-0334 no-copy hint a sending client adds.
    return [ET.Element(f"{{{NS_CARBONS}}}private"), ET.Element(NO_COPY)]


def is_carbon(kind: str, mid: str | None = None):
    """A carbon copy (kind 'received' or 'sent') whose forwarded message has id `mid`."""
    def match(stanza) -> bool:
        if stanza.name != "message":
            return False
        inner = stanza.xml.find(f"{{{NS_CARBONS}}}{kind}/{{{NS_FORWARD}}}forwarded/{{jabber:client}}message")
        return inner is not None and (mid is None or inner.get("id") == mid)
    return match


def forwarded(carbon, kind: str) -> ET.Element:
    return carbon.xml.find(f"{{{NS_CARBONS}}}{kind}/{{{NS_FORWARD}}}forwarded/{{jabber:client}}message")


async def two_resources(server, im, *, enable=(True, True)):
    """bob on /one and /two (carbons enabled as given), and alice."""
    bob_jid, password = server.new_account("bob")
    one = await im.online(server, f"{bob_jid}/one", password, priority=5)
    two = await im.online(server, f"{bob_jid}/two", password, priority=1)
    for resource, on in zip((one, two), enable):
        if on:
            result = await resource.plugin["xep_0280"].enable(timeout=TIMEOUT)
            assert result["type"] == "result"
    alice = await im.user(server, "alice")
    return alice, one, two


async def test_server_advertises_carbons(server, im):
    alice = await im.user(server, "alice")
    info = await alice.plugin["xep_0030"].get_info(jid=DOMAIN, local=False, timeout=TIMEOUT)
    # XEP-0280 §3
    assert NS_CARBONS in info["disco_info"]["features"]


async def test_enable_and_disable_answer_result(server, im):
    alice = await im.user(server, "alice")
    carbons = alice.plugin["xep_0280"]
    # XEP-0280 §10.1: enabling or disabling twice is no error.
    for call in (carbons.enable, carbons.enable, carbons.disable, carbons.disable):
        result = await call(timeout=TIMEOUT)
        assert result["type"] == "result"


async def test_received_message_is_copied_to_other_enabled_resources(server, im):
    alice, one, two = await two_resources(server, im)
    mid = alice.message(one.full, "to /one 你好", mtype="chat")
    original = await one.inbox.expect(is_message(mid=mid), "the message itself")
    assert original.xml.find(f"{{{NS_CARBONS}}}received") is None

    carbon = await two.inbox.expect(is_carbon("received", mid), "a 'received' carbon")
    # XEP-0280 §7: from the user's bare JID, to the receiving resource's full JID.
    assert (carbon.xml.get("from"), carbon.xml.get("to")) == (one.bare, two.full), str(carbon)
    inner = forwarded(carbon, "received")
    assert (inner.get("from"), inner.get("to"), inner.get("type")) == (alice.full, one.full, "chat")
    assert inner.findtext("{jabber:client}body") == "to /one 你好"
    # /one, which got the message, gets no copy of it (§7).
    marker = alice.message(one.full, "marker")
    await one.inbox.expect(is_message(mid=marker), "the marker")
    assert one.inbox.matching(is_carbon("received")) == []


async def test_message_to_the_bare_jid_is_copied_to_the_resources_that_did_not_get_it(server, im):
    alice, one, two = await two_resources(server, im)
    mid = alice.message(one.bare, "to the bare JID", mtype="chat")
    # /one has the higher priority and gets the message (RFC 6121 §8.5.2.1.1, or every
    # non-negative resource gets it, then there is nothing to copy) …
    await one.inbox.expect(is_message(mid=mid), "the message on /one")
    # … otherwise /two gets a 'received' carbon (XEP-0280 §7).
    got = await two.inbox.expect(lambda s: is_message(mid=mid)(s) or is_carbon("received", mid)(s),
                                 "the message or a 'received' carbon on /two")
    if is_carbon("received", mid)(got):
        assert (got.xml.get("from"), got.xml.get("to")) == (one.bare, two.full), str(got)


async def test_sent_message_is_copied_to_other_enabled_resources(server, im):
    alice, one, two = await two_resources(server, im)
    mid = one.message(alice.full, "from /one", mtype="chat")
    await alice.inbox.expect(is_message(mid=mid), "the message itself")
    carbon = await two.inbox.expect(is_carbon("sent", mid), "a 'sent' carbon")
    # XEP-0280 §8
    assert (carbon.xml.get("from"), carbon.xml.get("to")) == (one.bare, two.full), str(carbon)
    inner = forwarded(carbon, "sent")
    assert (inner.get("to"), inner.get("type")) == (alice.full, "chat")
    assert inner.get("from") in (one.full, None), str(carbon)
    assert inner.findtext("{jabber:client}body") == "from /one"
    # The sender gets no copy of its own message.
    marker = alice.message(one.full, "marker")
    await one.inbox.expect(is_message(mid=marker), "the marker")
    assert one.inbox.matching(is_carbon("sent")) == []


async def test_sent_copies_do_not_need_carbons_on_the_sending_resource(server, im):
    alice, one, two = await two_resources(server, im, enable=(False, True))
    mid = one.message(alice.full, "from /one without carbons")
    # XEP-0280 §8: "irrespective of whether the sending client has carbons enabled".
    await two.inbox.expect(is_carbon("sent", mid), "a 'sent' carbon")


async def test_resource_without_carbons_gets_no_copies(server, im):
    alice, one, two = await two_resources(server, im, enable=(True, False))
    received = alice.message(one.full, "received by /one")
    await one.inbox.expect(is_message(mid=received), "the message")
    sent = one.message(alice.full, "sent by /one")
    await alice.inbox.expect(is_message(mid=sent), "the message")
    marker = alice.message(two.full, "marker")
    await two.inbox.expect(is_message(mid=marker), "the marker")
    assert two.inbox.matching(lambda s: is_carbon("received")(s) or is_carbon("sent")(s)) == []


async def test_disable_stops_copies(server, im):
    alice, one, two = await two_resources(server, im)
    result = await two.plugin["xep_0280"].disable(timeout=TIMEOUT)
    assert result["type"] == "result"
    mid = alice.message(one.full, "after /two disabled carbons")
    await one.inbox.expect(is_message(mid=mid), "the message")
    marker = alice.message(two.full, "marker")
    await two.inbox.expect(is_message(mid=marker), "the marker")
    assert two.inbox.matching(is_carbon("received")) == []


async def test_private_messages_are_not_copied(server, im):
    alice, one, two = await two_resources(server, im)
    received = alice.message(one.full, "private, to /one", extra=private())
    got = await one.inbox.expect(is_message(mid=received), "the private message")
    sent = one.message(alice.full, "private, from /one", extra=private())
    await alice.inbox.expect(is_message(mid=sent), "the private message")
    # XEP-0280 §9: neither direction is copied.
    marker = alice.message(two.full, "marker")
    await two.inbox.expect(is_message(mid=marker), "the marker")
    assert two.inbox.matching(lambda s: is_carbon("received")(s) or is_carbon("sent")(s)) == []
    assert got.xml.findtext("{jabber:client}body") == "private, to /one"
