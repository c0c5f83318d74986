"""Client state indication (XEP-0352) with slixmpp's xep_0352 plugin: while a client says
it is <inactive/>, the server holds what is not urgent and coalesces presence, and lets
what matters through at once.

What Corvid does (issue 16): presence is held and only the latest per contact full JID
delivered; chat states (messages without a body, XEP-0085) are held (a superseded one
may be dropped); a message with a body and any IQ go through at once, after everything
held before them, in order; <active/> delivers everything held, in order.

What the client observes is the only evidence: held stanzas show as coalesced presence,
and as stanzas that arrive only after the flush while another resource of the same
account, which is active, already has what was sent after them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from interop_support import NS_CHATSTATES, TIMEOUT, befriend, is_message, is_presence
from sm_support import NS_CSI, CsiClient, SmClient


def chat_state(state: str) -> list[ET.Element]:
    return [ET.Element(f"{{{NS_CHATSTATES}}}{state}")]


def is_chat_state(state: str, *, frm: str):
    def match(stanza) -> bool:
        return (stanza.name == "message" and stanza.xml.get("from") == frm
                and stanza.xml.find(f"{{{NS_CHATSTATES}}}{state}") is not None)
    return match


def seen(client, since: int, senders: set[str]) -> list[str]:
    """What `client` received from `senders` (bare JIDs) since inbox.history[since], as
    short labels: 'presence <from> <status>', 'state <from> <name>', 'body <from> <text>',
    'iq <from>'."""
    labels = []
    for stanza in client.inbox.history[since:]:
        frm = stanza.xml.get("from") or ""
        who = frm.split("@", 1)[0].split("-", 1)[0]
        if frm.split("/", 1)[0] not in senders:
            continue
        if stanza.name == "presence":
            labels.append(f"presence {who} {stanza.xml.findtext('{jabber:client}status')}")
        elif stanza.name == "iq":
            labels.append(f"iq {who}")
        elif stanza.xml.findtext("{jabber:client}body") is not None:
            labels.append(f"body {who} {stanza.xml.findtext('{jabber:client}body')}")
        else:
            states = [child.tag.split("}", 1)[1] for child in stanza.xml if child.tag.startswith(f"{{{NS_CHATSTATES}}}")]
            labels.append(f"state {who} {','.join(states)}")
    return labels


@pytest.fixture
async def people(server, im, clients):
    """bob's phone (slixmpp with CSI) and laptop, both online; alice and carol, each
    subscribed both ways with bob, online; every presence so far delivered."""
    bob_jid, bob_password = server.new_account("bob")
    phone = CsiClient(f"{bob_jid}/phone", bob_password)
    clients.made.append(phone)
    await phone.start(server)
    await phone.online()
    assert phone.offered(f"{{{NS_CSI}}}csi"), "no <csi xmlns='urn:xmpp:csi:0'/> stream feature"
    assert phone.plugin["xep_0352"].enabled
    laptop = await im.online(server, f"{bob_jid}/laptop", bob_password)
    alice = await im.user(server, "alice")
    carol = await im.user(server, "carol")
    for contact in (alice, carol):
        await befriend(phone, contact)
        await phone.inbox.expect(is_presence("available", frm=contact.full), f"{contact.bare}'s presence")
        await laptop.inbox.expect(is_presence("available", frm=contact.full), f"{contact.bare}'s presence")
    return phone, laptop, alice, carol


async def settle(laptop, sender, label: str) -> None:
    """A message with a body from `sender` to the active laptop: once it arrives, the server
    has routed everything `sender` sent before it, to the phone as well."""
    mid = sender.message(laptop.full, label)
    await laptop.inbox.expect(is_message(mid=mid), f"{label} at the laptop")
    await laptop.sync()


async def test_presence_is_held_and_coalesced_until_a_message_with_a_body(people):
    phone, laptop, alice, carol = people
    await phone.inactive()
    since = len(phone.inbox.history)
    for status in ("one", "two", "three"):
        alice.presence(status=status)
    await settle(laptop, alice, "alice settled")
    carol.presence(status="c1")
    await settle(laptop, carol, "carol settled")
    assert seen(phone, since, {alice.bare, carol.bare}) == [], "delivered to an inactive client at once"

    urgent = alice.message(phone.full, "wake up")
    await phone.inbox.expect(is_message(mid=urgent), "the message with a body", TIMEOUT)
    # Only the latest presence of each contact, held ones first, in order.
    assert seen(phone, since, {alice.bare, carol.bare}) == \
        ["presence alice three", "presence carol c1", "body alice wake up"]


async def test_chat_states_are_held_and_a_message_with_a_body_follows_them(people):
    phone, laptop, alice, carol = people
    await phone.inactive()
    since = len(phone.inbox.history)
    alice.message(phone.full, extra=chat_state("composing"))
    alice.message(phone.full, extra=chat_state("paused"))
    await settle(laptop, alice, "alice settled")
    assert seen(phone, since, {alice.bare}) == [], "chat states delivered to an inactive client"

    urgent = alice.message(phone.full, "here it is")
    await phone.inbox.expect(is_message(mid=urgent), "the message with a body")
    # The held chat states come first, in order; a server may drop the superseded
    # 'composing' (XEP-0352 §1 leaves what to hold or drop to it), never the latest one.
    assert seen(phone, since, {alice.bare}) in (
        ["state alice composing", "state alice paused", "body alice here it is"],
        ["state alice paused", "body alice here it is"],
    ), seen(phone, since, {alice.bare})


async def test_an_iq_goes_through_at_once_after_what_was_held(people):
    phone, laptop, alice, carol = people
    await phone.inactive()
    since = len(phone.inbox.history)
    alice.presence(status="held")
    await settle(laptop, alice, "alice settled")
    # The phone (slixmpp answers XEP-0199 pings) answers while inactive.
    await alice.plugin["xep_0199"].send_ping(phone.full, timeout=TIMEOUT)
    assert seen(phone, since, {alice.bare}) == ["presence alice held", "iq alice"]


async def test_active_delivers_everything_held_in_order(people):
    phone, laptop, alice, carol = people
    await phone.inactive()
    since = len(phone.inbox.history)
    alice.presence(status="a1")
    alice.presence(status="a2")
    await settle(laptop, alice, "alice settled")
    carol.presence(status="c1")
    await settle(laptop, carol, "carol settled")
    alice.message(phone.full, extra=chat_state("composing"))
    await settle(laptop, alice, "alice settled again")
    carol.message(phone.full, extra=chat_state("composing"))
    await settle(laptop, carol, "carol settled again")
    assert seen(phone, since, {alice.bare, carol.bare}) == [], "delivered to an inactive client at once"

    phone.active()
    await phone.inbox.expect(is_chat_state("composing", frm=carol.full), "carol's chat state after <active/>")
    assert seen(phone, since, {alice.bare, carol.bare}) == \
        ["presence alice a2", "presence carol c1", "state alice composing", "state carol composing"]
    # Active again: a presence arrives by itself, nothing needs to push it out.
    alice.presence(status="a3")
    await phone.inbox.expect(is_presence("available", frm=alice.full, status="a3"), "a presence after <active/>")


async def test_what_was_held_survives_a_cut_and_arrives_after_resumption(make_im_server, im, clients, proxies):
    # A phone is typically inactive when its connection dies: what the server held for it
    # must not be lost with the connection, nor delivered twice (XEP-0198 §5 resends what
    # was not acknowledged; held stanzas were never even sent).
    own = make_im_server("csi-sm", sections={"stream_management": {}})
    proxy = await proxies(own)
    alice = await im.user(own, "alice")
    bob_jid, bob_password = own.new_account("bob")
    phone = SmClient(f"{bob_jid}/phone", bob_password)
    clients.made.append(phone)
    await phone.start(proxy)
    await phone.sm_ready()
    await phone.online()
    await befriend(phone, alice)
    await phone.inbox.expect(is_presence("available", frm=alice.full), "alice's presence")
    laptop = await im.online(own, f"{bob_jid}/laptop", bob_password)

    phone.plugin["xep_0352"].send_inactive()
    await phone.sync()
    since = len(phone.inbox.history)
    alice.presence(status="away for lunch")
    alice.message(phone.full, extra=chat_state("composing"))
    await settle(laptop, alice, "alice settled")
    assert seen(phone, since, {alice.bare}) == [], "delivered to an inactive client at once"

    await phone.cut()
    urgent = alice.message(phone.full, "are you there?")
    await alice.sync()
    assert await phone.reconnect(proxy.port) == "resumed", [str(f) for f in phone.failed]
    await phone.inbox.expect(is_message(mid=urgent), "the message sent while cut")
    marker = alice.message(phone.full, "marker")
    await phone.inbox.expect(is_message(mid=marker), "the marker")
    assert seen(phone, since, {alice.bare}) == [
        "presence alice away for lunch", "state alice composing", "body alice are you there?", "body alice marker"]
