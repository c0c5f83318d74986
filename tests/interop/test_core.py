"""Core XMPP with a real client (slixmpp): TLS, SASL, binding, routing between local
sessions (RFC 6120, RFC 6121 §8) and the server's own IQ services."""

from __future__ import annotations

import asyncio
import datetime
import re
import ssl
import uuid
import xml.etree.ElementTree as ET

import pytest
from slixmpp import JID
from slixmpp.util.sasl import client as sasl_registry

from interop_support import (
    DOMAIN,
    TIMEOUT,
    IqError,
    LoginFailed,
    ScramServerEndPoint,
    iq_error_condition,
    use_server_end_point,
)

CHINESE = "你好，世界"
XML_SPECIALS = "<b>&amp; \"quotes\" 'apos'</b>"


# -- TLS and SASL ----------------------------------------------------------------------


async def test_starttls_login_picks_scram_sha_256(server, clients):
    jid, password = server.new_account()
    client = await clients.login(server, jid, password)
    # slixmpp ranks SCRAM-SHA-256 highest among what it can do here: its -PLUS variants
    # need tls-unique (TLS 1.2) or tls-exporter (not in Python's ssl), and TLS is 1.3.
    assert client.tls_version == "TLSv1.3"
    assert client.sasl_mechanism == "SCRAM-SHA-256"
    assert client.boundjid.bare == jid


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"])
async def test_login_with_each_offered_mechanism(server, clients, mechanism):
    jid, password = server.new_account()
    client = await clients.login(server, jid, password, mech=mechanism)
    assert client.sasl_mechanism == mechanism
    assert client.boundjid.bare == jid


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"])
async def test_password_is_compared_after_saslprep(server, clients, mechanism):
    # RFC 5802 §2.2 / RFC 4013: a soft hyphen maps to nothing and NFKC applies, so an account
    # whose password was set as "pa\u00adss\u00aaword" logs in with "passaword".
    user = f"prep-{mechanism.lower()}"
    jid = server.add_user(user, "pa\u00adss\u00aaword")
    client = await clients.login(server, jid, "passaword", mech=mechanism)
    assert client.boundjid.bare == jid


@pytest.mark.parametrize(
    ("mechanism", "tls_max", "tls_version"),
    [
        ("SCRAM-SHA-256-PLUS", None, "TLSv1.3"),
        ("SCRAM-SHA-1-PLUS", None, "TLSv1.3"),
        ("SCRAM-SHA-256-PLUS", ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
    ],
    ids=["SCRAM-SHA-256-PLUS-tls1.3", "SCRAM-SHA-1-PLUS-tls1.3", "SCRAM-SHA-256-PLUS-tls1.2"],
)
async def test_login_with_scram_plus_bound_to_tls_server_end_point(server, clients, monkeypatch, mechanism,
                                                                   tls_max, tls_version):
    # slixmpp's SCRAM exchange, with the GS2 header naming tls-server-end-point (RFC 5929)
    # and the hash of the server's certificate as binding data.
    monkeypatch.setitem(sasl_registry.MECHANISMS, mechanism, ScramServerEndPoint)
    jid, password = server.new_account()
    client = clients.new(jid, password, mech=mechanism, tls_max=tls_max)
    use_server_end_point(client)
    await client.start(server)
    assert client.sasl_mechanism == mechanism
    assert client.tls_version == tls_version
    assert client.boundjid.bare == jid


async def test_scram_plus_with_wrong_channel_binding_data_fails(server, clients, monkeypatch):
    # Binding to a different certificate than the one on this connection is what a
    # man in the middle would produce: the server must refuse it.
    monkeypatch.setitem(sasl_registry.MECHANISMS, "SCRAM-SHA-256-PLUS", ScramServerEndPoint)
    jid, password = server.new_account()
    client = clients.new(jid, password, mech="SCRAM-SHA-256-PLUS")
    mechanisms = client.plugin["feature_mechanisms"]
    default = mechanisms.sasl_callback

    def forged(required, optional):
        values = default(required, optional)
        values["channel_binding"] = b"\x00" * 32
        return values

    mechanisms.sasl_callback = forged
    with pytest.raises(LoginFailed) as failed:
        await client.start(server)
    assert failed.value.sasl_failures == ["not-authorized"]
    assert not client.session_started


async def test_scram_plus_with_tls_unique_is_refused(server, clients):
    # slixmpp's own -PLUS binds with tls-unique on TLS 1.2; Corvid offers only
    # tls-exporter and tls-server-end-point (XEP-0440), so it cannot verify the binding
    # and must not accept it.
    jid, password = server.new_account()
    client = clients.new(jid, password, mech="SCRAM-SHA-256-PLUS", tls_max=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(LoginFailed) as failed:
        await client.start(server)
    assert client.tls_version == "TLSv1.2"
    assert failed.value.sasl_failures == ["not-authorized"]
    assert not client.session_started


@pytest.mark.parametrize("alpn", [None, ["xmpp-client"]], ids=["no-alpn", "alpn-xmpp-client"])
async def test_login_over_direct_tls(server, clients, alpn):
    jid, password = server.new_account()
    client = await clients.login(server, jid, password, direct_tls=True, alpn=alpn)
    assert client.tls_version == "TLSv1.3"
    assert client.sasl_mechanism == "SCRAM-SHA-256"
    assert client.boundjid.bare == jid
    await client.sync()


async def test_wrong_password_fails_with_not_authorized(server, clients):
    jid, _password = server.new_account()
    with pytest.raises(LoginFailed) as failed:
        await clients.login(server, jid, "not-the-password")
    # slixmpp tries each mechanism it can use in turn; every one must say not-authorized.
    assert failed.value.sasl_failures, "no SASL <failure/> received"
    assert set(failed.value.sasl_failures) == {"not-authorized"}


async def test_unknown_user_fails_with_not_authorized(server, clients):
    # Same answer as a wrong password, so logins do not reveal which accounts exist.
    with pytest.raises(LoginFailed) as failed:
        await clients.login(server, f"nobody-{uuid.uuid4().hex[:8]}@{DOMAIN}", "whatever", mech="SCRAM-SHA-256")
    assert failed.value.sasl_failures == ["not-authorized"]


# -- resource binding ------------------------------------------------------------------


async def test_bind_uses_the_requested_resource(server, clients):
    jid, password = server.new_account()
    client = await clients.login(server, f"{jid}/balcony", password)
    assert client.boundjid.full == f"{jid}/balcony"


async def test_bind_without_resource_gets_a_server_generated_one(server, clients):
    jid, password = server.new_account()
    first = await clients.login(server, jid, password)
    second = await clients.login(server, jid, password)
    assert first.boundjid.bare == jid and first.boundjid.resource
    assert second.boundjid.bare == jid and second.boundjid.resource
    assert first.boundjid.resource != second.boundjid.resource
    # Both sessions are live and addressable by the generated full JIDs.
    first.send_message(mto=second.boundjid, mbody="to the generated resource", mtype="chat")
    got = await second.next_message()
    assert got["body"] == "to the generated resource"
    assert got["from"] == first.boundjid


async def test_same_resource_again_closes_the_first_session_with_conflict(server, clients):
    jid, password = server.new_account()
    first = await clients.login(server, f"{jid}/desk", password)
    second = await clients.login(server, f"{jid}/desk", password)
    await first.wait_ended()
    assert "conflict" in first.conditions(), first.stream_errors
    # The newer session owns the resource.
    assert second.boundjid.full == f"{jid}/desk"
    await second.sync()
    assert second.stream_errors == []


# -- messages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [CHINESE, XML_SPECIALS, f"{CHINESE} {XML_SPECIALS}", "  line one\n\tline two  ", "emoji 😀🐦‍⬛"],
    ids=["chinese", "xml-specials", "both", "whitespace", "emoji"],
)
async def test_message_body_and_id_arrive_intact_in_both_directions(server, clients, body):
    a_jid, a_pw = server.new_account("alice")
    b_jid, b_pw = server.new_account("bob")
    alice = await clients.login(server, f"{a_jid}/phone", a_pw)
    bob = await clients.login(server, f"{b_jid}/laptop", b_pw)

    for sender, receiver in [(alice, bob), (bob, alice)]:
        msg = sender.make_message(mto=receiver.boundjid, mbody=body, mtype="chat")
        # The id carries the characters that need escaping in an attribute, too.
        msg["id"] = f"id-{uuid.uuid4().hex}-<&>'\"-{CHINESE}"
        # An extension element the server knows nothing about must pass through.
        msg.append(ET.Element("{urn:xmpp:receipts}request"))
        msg.send()
        got = await receiver.next_message()
        assert got["body"] == body
        assert got["id"] == msg["id"]
        assert got["type"] == "chat"
        assert got["from"] == sender.boundjid
        assert got["to"] == receiver.boundjid
        assert got.xml.find("{urn:xmpp:receipts}request") is not None, str(got)


async def test_message_to_bare_jid_reaches_the_highest_priority_resource(server, clients):
    a_jid, a_pw = server.new_account("alice")
    b_jid, b_pw = server.new_account("bob")
    alice = await clients.login(server, a_jid, a_pw)
    high = await clients.login(server, f"{b_jid}/high", b_pw)
    low = await clients.login(server, f"{b_jid}/low", b_pw)
    away = await clients.login(server, f"{b_jid}/negative", b_pw)
    await high.available(priority=10)
    await low.available(priority=1)
    await away.available(priority=-1)

    msg = alice.make_message(mto=b_jid, mbody="to whoever is best", mtype="chat")
    msg["id"] = "to-bare"
    msg.send()
    got = await high.next_message()
    assert (got["id"], got["body"], got["to"].bare) == ("to-bare", "to whoever is best", b_jid)

    # Alice's stanzas are routed in order, so if the bare-JID message had gone to the other
    # resources too, it would reach them before these.
    for other in (low, away):
        marker = alice.make_message(mto=other.boundjid, mbody="marker", mtype="chat")
        marker["id"] = f"marker-{other.boundjid.resource}"
        marker.send()
        first = await other.next_message()
        assert first["id"] == marker["id"], f"{other.boundjid} also got {first['id']!r}"


async def test_message_to_nonexistent_user_bounces_service_unavailable(server, clients):
    # Messages for existing accounts without sessions are stored (test_offline.py);
    # for an account that does not exist, RFC 6121 §8.5.1 says service-unavailable.
    a_jid, a_pw = server.new_account("alice")
    to = f"nobody-{uuid.uuid4().hex[:8]}@{DOMAIN}"
    alice = await clients.login(server, a_jid, a_pw)
    msg = alice.make_message(mto=to, mbody="anyone there?", mtype="chat")
    msg["id"] = "lost-1"
    msg.send()
    error = await alice.next_message_error()
    assert error["type"] == "error"
    assert error["id"] == "lost-1"
    assert error["from"] == JID(to)
    assert error["error"]["condition"] == "service-unavailable"
    assert error["error"]["type"] == "cancel"


async def test_iq_between_clients_is_routed_and_answered(server, clients):
    a_jid, a_pw = server.new_account("alice")
    b_jid, b_pw = server.new_account("bob")
    alice = await clients.login(server, a_jid, a_pw)
    bob = await clients.login(server, b_jid, b_pw)
    # Bob's slixmpp answers XEP-0092 itself; the server only routes both ways.
    reply = await alice.plugin["xep_0092"].get_version(bob.boundjid, timeout=TIMEOUT)
    assert reply["type"] == "result"
    assert reply["from"] == bob.boundjid
    assert reply["software_version"]["name"] == "Slixmpp"


async def test_iq_to_a_resource_that_is_not_connected_gets_service_unavailable(server, clients):
    a_jid, a_pw = server.new_account("alice")
    b_jid, _ = server.new_account("bob")
    alice = await clients.login(server, a_jid, a_pw)
    with pytest.raises(IqError) as failed:
        await alice.plugin["xep_0199"].send_ping(JID(f"{b_jid}/gone"), timeout=TIMEOUT)
    # RFC 6121 §8.5.3.2.1 (IQ to a full JID with no such resource).
    assert iq_error_condition(failed.value) == "service-unavailable"
    assert failed.value.iq["from"] == JID(f"{b_jid}/gone")


async def test_directed_presence_reaches_the_full_jid(server, clients):
    a_jid, a_pw = server.new_account("alice")
    b_jid, b_pw = server.new_account("bob")
    alice = await clients.login(server, a_jid, a_pw)
    bob = await clients.login(server, b_jid, b_pw)
    received: asyncio.Queue = asyncio.Queue()
    alice.add_event_handler("presence_dnd", received.put_nowait)
    alice.add_event_handler("presence_unavailable", received.put_nowait)

    bob.send_presence(pto=alice.boundjid, pstatus="在线 & <here>", pshow="dnd")
    got = await asyncio.wait_for(received.get(), TIMEOUT)
    assert (got["from"], got["type"], got["status"]) == (bob.boundjid, "dnd", "在线 & <here>")

    bob.send_presence(pto=alice.boundjid, ptype="unavailable")
    got = await asyncio.wait_for(received.get(), TIMEOUT)
    assert (got["from"], got["type"]) == (bob.boundjid, "unavailable")


# -- the server's IQ services ----------------------------------------------------------


async def test_server_answers_ping(server, clients):
    jid, password = server.new_account()
    client = await clients.login(server, jid, password)
    reply = await client.plugin["xep_0199"].send_ping(DOMAIN, timeout=TIMEOUT)
    assert reply["type"] == "result"
    assert reply["from"] == JID(DOMAIN)


async def test_disco_info_lists_server_identity_and_features(server, clients):
    jid, password = server.new_account()
    client = await clients.login(server, jid, password)
    reply = await client.plugin["xep_0030"].get_info(jid=DOMAIN, local=False, timeout=TIMEOUT)
    assert reply["type"] == "result"
    info = reply["disco_info"]
    assert ("server", "im") in {(category, kind) for category, kind, _lang, _name in info["identities"]}
    features = set(info["features"])
    expected = {
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "urn:xmpp:ping",
        "jabber:iq:version",
        "urn:xmpp:time",
        "jabber:iq:register",
    }
    assert expected <= features, f"missing: {expected - features}"


async def test_disco_items_answers(server, clients):
    jid, password = server.new_account()
    client = await clients.login(server, jid, password)
    reply = await client.plugin["xep_0030"].get_items(jid=DOMAIN, local=False, timeout=TIMEOUT)
    assert reply["type"] == "result"
    assert reply["from"] == JID(DOMAIN)
    # The hosted services, each on its own domain: multi-user chat (XEP-0045),
    # publish-subscribe (XEP-0060) and HTTP file upload (XEP-0363).
    assert sorted(str(item[0]) for item in reply["disco_items"]["items"]) == [
        f"conference.{DOMAIN}",
        f"pubsub.{DOMAIN}",
        f"upload.{DOMAIN}",
    ]


async def test_software_version_names_corvid(server, clients):
    jid, password = server.new_account()
    client = await clients.login(server, jid, password)
    reply = await client.plugin["xep_0092"].get_version(JID(DOMAIN), timeout=TIMEOUT)
    version = reply["software_version"]
    assert version["name"] == "Corvid"
    assert version["version"]


async def test_entity_time_answers_with_current_utc(server, clients):
    jid, password = server.new_account()
    client = await clients.login(server, jid, password)
    reply = await client.plugin["xep_0202"].get_entity_time(JID(DOMAIN), timeout=TIMEOUT)
    assert reply["type"] == "result"
    # Read the text itself: slixmpp 1.17's EntityTime.get_utc() appends a second "Z" to
    # a correct XEP-0082 value, and get_tzo() cannot parse "+00:00" (client bugs).
    time = reply.xml.find("{urn:xmpp:time}time")
    assert time is not None, "no <time xmlns='urn:xmpp:time'/> in the result"
    utc_text = time.findtext("{urn:xmpp:time}utc")
    tzo_text = time.findtext("{urn:xmpp:time}tzo")
    # XEP-0202 §3: <utc/> in UTC, XEP-0082 DateTime profile; <tzo/> is ±hh:mm or Z.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", utc_text or ""), utc_text
    assert re.fullmatch(r"[+-]\d\d:\d\d|Z", tzo_text or ""), tzo_text
    utc = datetime.datetime.fromisoformat(utc_text.replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((utc - now).total_seconds()) < 60, f"server time {utc} vs local {now}"


@pytest.mark.parametrize("target", ["server", "account"])
async def test_iq_with_unknown_namespace_gets_service_unavailable(server, clients, target):
    jid, password = server.new_account()
    other, _ = server.new_account("other")
    client = await clients.login(server, jid, password)
    iq = client.Iq()
    iq["type"] = "get"
    iq["to"] = DOMAIN if target == "server" else other
    iq.set_payload(ET.Element("{urn:example:corvid:no-such-protocol}query"))
    with pytest.raises(IqError) as failed:
        await iq.send(timeout=TIMEOUT)
    assert iq_error_condition(failed.value) == "service-unavailable"
    assert failed.value.iq["error"]["type"] == "cancel"


# -- shutdown --------------------------------------------------------------------------


async def test_sigterm_closes_sessions_with_system_shutdown(make_server, clients):
    own = make_server("shutdown")
    jid, password = own.new_account()
    client = await clients.login(own, jid, password)
    own.proc.terminate()
    await client.wait_ended()
    assert client.conditions() == ["system-shutdown"]
    # make_server then checks that corvid exited with status 0.


# -- idle clients (XEP-0199 from the server's side) ------------------------------------


def _count_pings(client, *, swallow: bool):
    """Counts pings the server sends this client; with swallow, slixmpp never sees them
    (so it does not answer, as a dead client would not)."""
    pings: asyncio.Queue = asyncio.Queue()

    def incoming(stanza):
        if stanza.name == "iq" and stanza["type"] == "get" and stanza.xml.find("{urn:xmpp:ping}ping") is not None:
            pings.put_nowait(stanza)
            if swallow:
                return None
        return stanza

    client.add_filter("in", incoming)
    return pings


IDLE = {"idle_ping_secs": 1, "ping_timeout_secs": 1}


async def test_idle_client_that_answers_pings_stays_connected(make_server, clients):
    own = make_server("idle", limits=IDLE)
    jid, password = own.new_account()
    client = clients.new(jid, password)
    pings = _count_pings(client, swallow=False)
    await client.start(own)
    # slixmpp answers each ping; a second ping comes only if the first answer was taken
    # (an unanswered one closes the stream instead).
    for _ in range(2):
        ping = await asyncio.wait_for(pings.get(), TIMEOUT)
        assert ping["from"] == JID(DOMAIN)
        assert ping["to"] == client.boundjid
    await client.sync()
    assert client.stream_errors == []


async def test_idle_client_that_does_not_answer_is_disconnected(make_server, clients):
    own = make_server("dead", limits=IDLE)
    jid, password = own.new_account()
    client = clients.new(jid, password)
    pings = _count_pings(client, swallow=True)
    await client.start(own)
    await asyncio.wait_for(pings.get(), TIMEOUT)
    await client.wait_ended()
    assert client.conditions() == ["connection-timeout"]
