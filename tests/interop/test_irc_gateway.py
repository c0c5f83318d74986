"""corvid-gateway-irc between real peers: slixmpp users on an XMPP server that accepts the
gateway as an XEP-0114 component (Corvid, and Prosody; see `component_host`), and plain IRC
clients on ngircd. IRC channels are rooms at `#chan%127.0.0.1@irc.localhost`.
"""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from interop_support import HOST, is_message, is_presence
from irc_support import COMPONENT_DOMAIN, CorvidHost, Gateway, IrcClient, Ngircd, ProsodyHost

MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
COMMANDS = "http://jabber.org/protocol/commands"
DATA = "jabber:x:data"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@pytest.fixture(scope="module", params=["corvid", "prosody"])
def component_host(request):
    """The XMPP server the gateway connects to as a component: Corvid, and Prosody to show
    the gateway is not tied to our server."""
    host = (CorvidHost() if request.param == "corvid" else ProsodyHost()).start()
    yield host
    code = host.stop()
    if request.param == "corvid":
        assert code == 0, f"corvid exited with {code}"


@pytest.fixture(scope="module")
def ircd():
    server = Ngircd().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(component_host, ircd):
    gw = Gateway(component_host, ircd.port).start()
    yield gw
    assert gw.running, f"the gateway died:\n{gw.log_text()[-4000:]}"
    code = gw.stop()
    assert code == 0, f"the gateway exited with {code}"


@pytest.fixture
async def irc_clients():
    made: list[IrcClient] = []

    async def make(ircd, prefix: str = "irc") -> IrcClient:
        client = await IrcClient(f"{prefix}{uuid.uuid4().hex[:6]}").connect(ircd.port)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


def room_of(channel: str) -> str:
    return f"{channel}%{HOST}@{COMPONENT_DOMAIN}"


def new_channel() -> str:
    return f"#t{uuid.uuid4().hex[:8]}"


def codes(stanza) -> set[str]:
    return {s.get("code") for s in stanza.xml.iter(f"{{{MUC_USER}}}status")}


def item_of(stanza) -> ET.Element:
    item = stanza.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}item")
    assert item is not None, stanza
    return item


def body_of(stanza) -> str | None:
    return stanza.xml.findtext("{jabber:client}body")


async def join(user, channel: str, nick: str):
    """Sends the MUC join and returns the self-presence (status 110)."""
    room = room_of(channel)
    user.presence(to=f"{room}/{nick}", extra=[ET.Element(f"{{{MUC}}}x")])
    return await user.inbox.expect(
        lambda s: is_presence("available", from_bare=room)(s) and "110" in codes(s), f"self-presence in {room}"
    )


async def test_gateway_and_rooms_answer_disco(gateway, component_host, im):
    user = await im.user(component_host, "disco")
    info = await user.plugin["xep_0030"].get_info(jid=COMPONENT_DOMAIN, local=False)
    identities = {(c, t) for c, t, _lang, _name in info["disco_info"]["identities"]}
    assert ("conference", "irc") in identities and ("gateway", "irc") in identities
    assert MUC in info["disco_info"]["features"]
    room = await user.plugin["xep_0030"].get_info(jid=room_of("#anything"), local=False)
    assert {c for c, *_ in room["disco_info"]["identities"]} == {"conference"}
    assert MUC in room["disco_info"]["features"]


async def test_joining_shows_irc_occupants_and_the_topic(gateway, component_host, ircd, im, irc_clients):
    channel = new_channel()
    bob = await irc_clients(ircd, "bob")
    await bob.join(channel)
    bob.send(f"TOPIC {channel} :Welcome to the test")
    await bob.expect(lambda p: p[1] == "TOPIC", "the topic echo")
    user = await im.user(component_host, "joiner")
    room = room_of(channel)
    # Occupants first, then the self-presence, then the subject (XEP-0045 §7.2.3).
    user.presence(to=f"{room}/alice", extra=[ET.Element(f"{{{MUC}}}x")])
    other = await user.inbox.expect(is_presence("available", frm=f"{room}/{bob.nick}"), "bob's presence")
    assert item_of(other).get("role") == "moderator", "bob is op (first in the channel)"
    own = await user.inbox.expect(is_presence("available", frm=f"{room}/alice"), "self-presence")
    assert "110" in codes(own)
    subject = await user.inbox.expect(lambda s: s.name == "message" and s.xml.find("{jabber:client}subject") is not None,
                                      "the subject")
    assert subject.xml.findtext("{jabber:client}subject") == "Welcome to the test"
    await bob.expect(lambda p: p[1] == "JOIN" and p[0] == "alice", "alice joining on IRC")


async def test_messages_go_both_ways(gateway, component_host, ircd, im, irc_clients):
    channel = new_channel()
    bob = await irc_clients(ircd, "bob")
    await bob.join(channel)
    user = await im.user(component_host, "talker")
    await join(user, channel, "talker")
    await bob.expect(lambda p: p[1] == "JOIN" and p[0] == "talker", "talker joining")
    room = room_of(channel)

    mid = user.message(room, "héllo ☃ from XMPP", mtype="groupchat")
    got = await bob.expect(lambda p: p[1] == "PRIVMSG" and p[2][0] == channel, "the XMPP message")
    assert got[0] == "talker" and got[2][1] == "héllo ☃ from XMPP"
    echo = await user.inbox.expect(is_message(frm=f"{room}/talker", mtype="groupchat"), "the reflection")
    assert echo["id"] == mid and body_of(echo) == "héllo ☃ from XMPP"

    bob.send(f"PRIVMSG {channel} :\x02bold\x02 and \x0304,01red\x03 ünïcode \x1ditalic\x1d\x0f")
    msg = await user.inbox.expect(is_message(frm=f"{room}/{bob.nick}", mtype="groupchat"), "bob's message")
    assert body_of(msg) == "bold and red ünïcode italic"
    bob.send_raw(f"PRIVMSG {channel} :caf".encode() + b"\xe9 latin-1\r\n")
    latin = await user.inbox.expect(is_message(frm=f"{room}/{bob.nick}", mtype="groupchat"), "the Latin-1 line")
    assert body_of(latin) == "café latin-1"

    long_line = "€" * 400  # 1200 bytes: more than one IRC line can carry
    user.message(room, f"first line\nsecond line\n{long_line}", mtype="groupchat")
    texts = []
    while "".join(texts[2:]) != long_line:
        got = await bob.expect(lambda p: p[1] == "PRIVMSG" and p[2][0] == channel, "a line of the long message")
        texts.append(got[2][1])
        assert len(texts) < 10, texts
    assert texts[:2] == ["first line", "second line"]
    assert len(texts) > 3, "the long line was split"


async def test_irc_nick_changes_parts_and_kicks(gateway, component_host, ircd, im, irc_clients):
    channel = new_channel()
    bob = await irc_clients(ircd, "bob")
    await bob.join(channel)
    carol = await irc_clients(ircd, "carol")
    await carol.join(channel)
    user = await im.user(component_host, "watcher")
    await join(user, channel, "watcher")
    room = room_of(channel)

    carol.send("NICK carla" + carol.nick[5:])
    new_nick = "carla" + carol.nick[5:]
    gone = await user.inbox.expect(is_presence("unavailable", frm=f"{room}/{carol.nick}"), "carol's old nick leaving")
    assert "303" in codes(gone) and item_of(gone).get("nick") == new_nick
    await user.inbox.expect(is_presence("available", frm=f"{room}/{new_nick}"), "carol's new nick")
    carol.nick = new_nick

    carol.send(f"PART {channel} :see you")
    parted = await user.inbox.expect(is_presence("unavailable", frm=f"{room}/{carol.nick}"), "carol parting")
    assert parted.xml.findtext("{jabber:client}status") == "see you"

    bob.send(f"KICK {channel} watcher :behave")
    kicked = await user.inbox.expect(is_presence("unavailable", frm=f"{room}/watcher"), "the kick")
    assert {"307", "110"} <= codes(kicked)
    assert item_of(kicked).findtext(f"{{{MUC_USER}}}reason") == "behave"


async def test_topic_changes_go_both_ways(gateway, component_host, ircd, im, irc_clients):
    channel = new_channel()
    user = await im.user(component_host, "topical")
    await join(user, channel, "topical")  # first in the channel: op on IRC
    room = room_of(channel)
    await user.inbox.expect(lambda s: s.name == "message" and s.xml.find("{jabber:client}subject") is not None,
                            "the empty subject on join")
    bob = await irc_clients(ircd, "bob")
    await bob.join(channel)
    subject = ET.Element("{jabber:client}subject")
    subject.text = "set from XMPP"
    user.message(room, None, mtype="groupchat", extra=[subject])
    got = await bob.expect(lambda p: p[1] == "TOPIC", "the topic from XMPP")
    assert got[2] == [channel, "set from XMPP"]
    shown = await user.inbox.expect(lambda s: s.name == "message" and s.xml.find("{jabber:client}subject") is not None,
                                    "the subject change")
    assert shown.xml.findtext("{jabber:client}subject") == "set from XMPP"
    assert shown["from"] == f"{room}/topical"


async def test_private_messages_go_both_ways(gateway, component_host, ircd, im, irc_clients):
    channel = new_channel()
    user = await im.user(component_host, "whisper")
    await join(user, channel, "whisper")
    bob = await irc_clients(ircd, "bob")
    bob.send("PRIVMSG whisper :psst, ça va ?")
    msg = await user.inbox.expect(is_message(frm=f"{bob.nick}%{HOST}@{COMPONENT_DOMAIN}"), "bob's private message")
    assert msg["type"] == "chat" and body_of(msg) == "psst, ça va ?"
    user.message(f"{bob.nick}%{HOST}@{COMPONENT_DOMAIN}", "oui, merci")
    got = await bob.expect(lambda p: p[1] == "PRIVMSG" and p[2][0] == bob.nick, "the answer")
    assert got[0] == "whisper" and got[2][1] == "oui, merci"


async def test_leaving_parts_and_quits(gateway, component_host, ircd, im, irc_clients):
    channel = new_channel()
    bob = await irc_clients(ircd, "bob")
    await bob.join(channel)
    user = await im.user(component_host, "leaver")
    await join(user, channel, "leaver")
    room = room_of(channel)
    user.presence("unavailable", to=f"{room}/leaver")
    own = await user.inbox.expect(is_presence("unavailable", frm=f"{room}/leaver"), "own unavailable presence")
    assert "110" in codes(own)
    await bob.expect(lambda p: p[1] == "PART" and p[0] == "leaver", "the PART")
    # The last channel left: the gateway QUITs (bob, sharing no channel, sees no QUIT;
    # ISON tells whether the nick is still on the server).
    for _attempt in range(50):
        bob.send("ISON leaver")
        online = await bob.expect(lambda p: p[1] == "303", "the ISON reply")
        if online[2][-1].strip() == "":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the gateway's IRC connection stayed after the last channel was left")


async def test_configured_nick_is_used(gateway, component_host, ircd, im, irc_clients):
    user = await im.user(component_host, "settings")
    command = ET.Element(f"{{{COMMANDS}}}command", {"node": "configure", "action": "execute"})
    first = await user.query("set", command, to=f"{HOST}@{COMPONENT_DOMAIN}")
    form = first.xml.find(f"{{{COMMANDS}}}command/{{{DATA}}}x")
    assert form is not None and form.get("type") == "form"
    assert {f.get("var") for f in form} >= {"nick", "nickserv_password"}
    nick = f"cfg{uuid.uuid4().hex[:6]}"
    submit = ET.Element(f"{{{COMMANDS}}}command", {"node": "configure", "action": "complete",
                                                     "sessionid": first.xml.find(f"{{{COMMANDS}}}command").get("sessionid")})
    x = ET.SubElement(submit, f"{{{DATA}}}x", {"type": "submit"})
    field = ET.SubElement(x, f"{{{DATA}}}field", {"var": "nick"})
    ET.SubElement(field, f"{{{DATA}}}value").text = nick
    done = await user.query("set", submit, to=f"{HOST}@{COMPONENT_DOMAIN}")
    assert done.xml.find(f"{{{COMMANDS}}}command").get("status") == "completed"

    channel = new_channel()
    bob = await irc_clients(ircd, "bob")
    await bob.join(channel)
    own = await join(user, channel, "not-this-nick")
    assert own["from"] == f"{room_of(channel)}/{nick}"
    assert {"110", "210"} <= codes(own), "the service assigned the nick"
    await bob.expect(lambda p: p[1] == "JOIN" and p[0] == nick, "the configured nick on IRC")


async def test_registration_form_stores_the_default_nick(gateway, component_host, im):
    user = await im.user(component_host, "register")
    query = ET.Element("{jabber:iq:register}query")
    got = await user.query("get", query, to=COMPONENT_DOMAIN)
    assert got.xml.find("{jabber:iq:register}query/{jabber:x:data}x") is not None
    submit = ET.Element("{jabber:iq:register}query")
    x = ET.SubElement(submit, f"{{{DATA}}}x", {"type": "submit"})
    field = ET.SubElement(x, f"{{{DATA}}}field", {"var": "nick"})
    ET.SubElement(field, f"{{{DATA}}}value").text = "registered"
    await user.query("set", submit, to=COMPONENT_DOMAIN)
    again = await user.query("get", ET.Element("{jabber:iq:register}query"), to=COMPONENT_DOMAIN)
    assert again.xml.find("{jabber:iq:register}query/{jabber:iq:register}registered") is not None
    values = [f.findtext(f"{{{DATA}}}value") for f in again.xml.iter(f"{{{DATA}}}field") if f.get("var") == "nick"]
    assert values == ["registered"]


async def test_unreachable_irc_server_is_a_join_error(gateway, component_host, im):
    user = await im.user(component_host, "lost")
    room = f"#x%127.0.0.2@{COMPONENT_DOMAIN}"  # nothing listens there
    user.presence(to=f"{room}/lost", extra=[ET.Element(f"{{{MUC}}}x")])
    error = await user.inbox.expect(is_presence("error", from_bare=room), "the join error")
    condition = error.xml.find("{jabber:client}error")
    assert condition is not None and condition.find(f"{{{STANZAS}}}remote-server-not-found") is not None


async def test_unknown_commands_are_refused(gateway, component_host, im):
    user = await im.user(component_host, "cmd")
    command = ET.Element(f"{{{COMMANDS}}}command", {"node": "nonsense", "action": "execute"})
    with pytest.raises(IqError) as refused:
        await user.query("set", command, to=COMPONENT_DOMAIN)
    assert refused.value.iq["error"]["condition"] == "item-not-found"


def test_a_wrong_secret_is_refused_and_retried(component_host, ircd):
    gw = Gateway(component_host, ircd.port, secret="not-the-secret").start(wait_established=False)
    try:
        gw.wait_log("refused the component", count=2)
        assert gw.running, "the gateway keeps retrying"
        assert "component stream established" not in gw.log_text()
    finally:
        gw.stop()
