"""The rest of instant messaging with real clients: message types and the extensions that pass
through (XEP-0184 receipts, XEP-0085 chat states), stanza ids the server adds (XEP-0359),
private XML storage (XEP-0049), last activity (XEP-0012), the server's entity capabilities
(XEP-0115), and what deleting an account (XEP-0077, `corvid user remove`) leaves behind."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
import xml.etree.ElementTree as ET

import pytest

from interop_support import (
    DOMAIN,
    NS_CAPS,
    NS_CARBONS,
    NS_BLOCKING,
    NS_CHATSTATES,
    NS_LAST,
    NS_PRIVATE,
    NS_RECEIPTS,
    NS_SID,
    NS_VCARD,
    TIMEOUT,
    IqError,
    befriend,
    iq_error_condition,
    is_message,
    is_presence,
    is_roster_push,
    remove_user,
    vcard_element,
    wait_session_gone,
)

DISCO_INFO = "http://jabber.org/protocol/disco#info"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


# -- messages ----------------------------------------------------------------------------


@pytest.mark.parametrize("mtype", ["chat", "normal", "headline"])
async def test_message_types_arrive_with_type_id_and_body(server, im, mtype):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    mid = alice.message(bob.full, f"a {mtype} message", mtype=mtype)
    got = await bob.inbox.expect(is_message(mid=mid), f"the {mtype} message")
    assert (got.xml.get("type"), got.xml.findtext("{jabber:client}body")) == (mtype, f"a {mtype} message")
    assert got.xml.get("from") == alice.full


async def test_receipt_request_and_receipt_pass_through(server, im):
    alice = await im.user(server, "alice")
    bob_jid, password = server.new_account("bob")
    bob = im.new(f"{bob_jid}/phone", password)
    bob.register_plugin("xep_0184")  # answers receipt requests by itself, as clients do
    await bob.start(server)
    await bob.online()

    mid = alice.message(bob.full, "please confirm", extra=[ET.Element(f"{{{NS_RECEIPTS}}}request")])
    got = await bob.inbox.expect(is_message(mid=mid), "the message with a receipt request")
    assert got.xml.find(f"{{{NS_RECEIPTS}}}request") is not None, str(got)

    def receipt(stanza) -> bool:
        received = stanza.xml.find(f"{{{NS_RECEIPTS}}}received")
        return stanza.name == "message" and received is not None and received.get("id") == mid

    # XEP-0184 §4: the receipt names the message's id; the server passes it through.
    answer = await alice.inbox.expect(receipt, "bob's receipt")
    assert answer.xml.get("from") == bob.full


async def test_chat_states_pass_through(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    composing = alice.message(bob.full, None, extra=[ET.Element(f"{{{NS_CHATSTATES}}}composing")])
    active = alice.message(bob.full, "done typing", extra=[ET.Element(f"{{{NS_CHATSTATES}}}active")])
    got = await bob.inbox.expect(is_message(mid=composing), "the standalone chat state")
    assert got["chat_state"] == "composing", str(got)
    got = await bob.inbox.expect(is_message(mid=active), "the message with a chat state")
    assert (got["chat_state"], got["body"]) == ("active", "done typing")


def stanza_ids(stanza) -> list[ET.Element]:
    return stanza.xml.findall(f"{{{NS_SID}}}stanza-id")


async def test_server_adds_a_unique_stanza_id_for_the_recipient(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    origin = f"origin-{uuid.uuid4().hex}"
    first = alice.message(bob.full, "one", extra=[ET.Element(f"{{{NS_SID}}}origin-id", {"id": origin})])
    second = alice.message(bob.bare, "two")
    ids = []
    for mid in (first, second):
        got = await bob.inbox.expect(is_message(mid=mid), f"message {mid}")
        # XEP-0359 §3: by = the account that assigned it, the recipient's bare JID here.
        mine = [el for el in stanza_ids(got) if el.get("by") == bob.bare]
        assert len(mine) == 1 and mine[0].get("id"), str(got)
        ids.append(mine[0].get("id"))
        if mid == first:
            # §2.2: the origin-id is kept as the sender wrote it.
            assert got.xml.find(f"{{{NS_SID}}}origin-id").get("id") == origin, str(got)
    assert ids[0] != ids[1]


async def test_stanza_id_forged_by_the_sender_is_replaced(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    forged = ET.Element(f"{{{NS_SID}}}stanza-id", {"by": bob.bare, "id": "forged-by-alice"})
    mid = alice.message(bob.full, "trust me", extra=[forged])
    got = await bob.inbox.expect(is_message(mid=mid), "the message")
    # XEP-0359 §3: a stanza-id with the server's own 'by' is removed; at most one per 'by'.
    mine = [el.get("id") for el in stanza_ids(got) if el.get("by") == bob.bare]
    assert len(mine) == 1 and mine[0] != "forged-by-alice", str(got)


# -- disco and caps ------------------------------------------------------------------------


async def test_disco_info_lists_the_im_features(server, im):
    alice = await im.user(server, "alice")
    info = await alice.plugin["xep_0030"].get_info(jid=DOMAIN, local=False, timeout=TIMEOUT)
    features = set(info["disco_info"]["features"])
    # Each of these XEPs says its feature MUST be advertised.
    expected = {NS_VCARD, NS_CARBONS, NS_BLOCKING, NS_LAST}
    assert expected <= features, f"missing: {expected - features}"


def caps_ver(query: ET.Element, algo: str) -> str:
    """XEP-0115 §5.1 verification string of a disco#info <query/>, hashed with `algo`
    (a name from the IANA registry, e.g. 'sha-1')."""
    s = ""
    identities = sorted(
        (i.get("category", ""), i.get("type", ""), i.get(XML_LANG, ""), i.get("name", ""))
        for i in query.findall(f"{{{DISCO_INFO}}}identity")
    )
    s += "".join("/".join(i) + "<" for i in identities)
    s += "".join(f + "<" for f in sorted(f.get("var") for f in query.findall(f"{{{DISCO_INFO}}}feature")))
    forms = []
    for form in query.findall("{jabber:x:data}x"):
        fields = {}
        for field in form.findall("{jabber:x:data}field"):
            fields[field.get("var")] = sorted(v.text or "" for v in field.findall("{jabber:x:data}value"))
        form_type = fields.pop("FORM_TYPE", [""])[0]
        text = form_type + "<"
        for var in sorted(fields):
            text += var + "<" + "".join(v + "<" for v in fields[var])
        forms.append((form_type, text))
    s += "".join(text for _, text in sorted(forms))
    return base64.b64encode(hashlib.new(algo.replace("-", ""), s.encode("utf-8")).digest()).decode()


async def test_stream_features_carry_the_servers_caps(server, im):
    alice = await im.user(server, "alice")
    caps = [c for f in alice.stream_features for c in f.findall(f"{{{NS_CAPS}}}c")]
    assert caps, [ET.tostring(f).decode() for f in alice.stream_features]
    c = caps[-1]
    # XEP-0115 §4: node, hash and ver are required; ver is the hash of the disco#info.
    assert c.get("node") and c.get("hash") in ("sha-1", "sha-256", "sha-512"), ET.tostring(c).decode()
    info = await alice.plugin["xep_0030"].get_info(jid=DOMAIN, local=False, timeout=TIMEOUT)
    assert c.get("ver") == caps_ver(info.xml.find(f"{{{DISCO_INFO}}}query"), c.get("hash")), str(info)


# -- private XML storage (XEP-0049) --------------------------------------------------------


def private_query(*children: ET.Element) -> ET.Element:
    query = ET.Element(f"{{{NS_PRIVATE}}}query")
    query.extend(children)
    return query


def canonical(el: ET.Element | None) -> str | None:
    return None if el is None else ET.canonicalize(ET.tostring(el).decode(), strip_text=True)


async def test_private_storage_keeps_each_namespace(server, im):
    alice = await im.user(server, "alice")
    prefs = ET.fromstring("<prefs xmlns='urn:example:corvid:prefs' theme='dark'><nick>Alice 爱丽丝</nick>"
                          "<note>&lt;&amp;&gt;</note></prefs>")
    notes = ET.fromstring("<notes xmlns='urn:example:corvid:notes'><n>one</n></notes>")
    for element in (prefs, notes):
        assert (await alice.query("set", private_query(element)))["type"] == "result"

    for element in (prefs, notes):
        asked = ET.Element(element.tag)
        result = await alice.query("get", private_query(asked))
        got = result.xml.find(f"{{{NS_PRIVATE}}}query/{element.tag}")
        assert canonical(got) == canonical(element), str(result)

    # Storing again replaces what was there.
    newer = ET.fromstring("<notes xmlns='urn:example:corvid:notes'><n>two</n></notes>")
    await alice.query("set", private_query(newer))
    result = await alice.query("get", private_query(ET.Element(newer.tag)))
    assert canonical(result.xml.find(f"{{{NS_PRIVATE}}}query/{newer.tag}")) == canonical(newer)


async def test_private_storage_of_a_namespace_never_stored_is_empty(server, im):
    alice = await im.user(server, "alice")
    asked = ET.Element("{urn:example:corvid:nothing}data")
    result = await alice.query("get", private_query(asked))
    assert result["type"] == "result"
    got = result.xml.find(f"{{{NS_PRIVATE}}}query/{asked.tag}")
    assert got is None or (len(got) == 0 and not (got.text or "").strip()), str(result)


async def test_private_storage_of_another_user_is_refused(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    secret = ET.fromstring("<secret xmlns='urn:example:corvid:secret'>bob's</secret>")
    await bob.query("set", private_query(secret))
    for kind, payload in (("get", ET.Element(secret.tag)), ("set", ET.fromstring(
            "<secret xmlns='urn:example:corvid:secret'>alice's</secret>"))):
        with pytest.raises(IqError) as failed:
            await alice.query(kind, private_query(payload), to=bob.bare)
        # XEP-0049 §2: forbidden (preferred) or service-unavailable.
        assert iq_error_condition(failed.value) in ("forbidden", "service-unavailable"), kind
    result = await bob.query("get", private_query(ET.Element(secret.tag)))
    assert result.xml.findtext(f"{{{NS_PRIVATE}}}query/{secret.tag}") == "bob's"


# -- last activity (XEP-0012) --------------------------------------------------------------


def last_query() -> ET.Element:
    return ET.Element(f"{{{NS_LAST}}}query")


def seconds_and_status(result) -> tuple[int, str | None]:
    query = result.xml.find(f"{{{NS_LAST}}}query")
    assert query is not None and query.get("seconds") is not None, str(result)
    return int(query.get("seconds")), (query.text or None)


async def test_last_activity_of_the_server_is_its_uptime(make_im_server, im):
    own = make_im_server("uptime")
    alice = await im.user(own, "alice")
    first, _ = seconds_and_status(await alice.query("get", last_query(), to=DOMAIN))
    assert 0 <= first < 60
    await asyncio.sleep(1.2)
    later, _ = seconds_and_status(await alice.query("get", last_query(), to=DOMAIN))
    # XEP-0012 §5: seconds since the server started.
    assert later >= first + 1, (first, later)


async def test_last_activity_of_an_offline_contact_is_its_logout(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await befriend(alice, bob)
    bob_full = bob.full
    bob.presence("unavailable", status="gone fishing")
    await bob.close()
    await alice.inbox.expect(is_presence("unavailable", frm=bob_full), "bob's unavailable")
    await wait_session_gone(alice, bob_full)

    seconds, status = seconds_and_status(await alice.query("get", last_query(), to=bob.bare))
    # XEP-0012 §3: seconds since the last logout; the issue also wants the status of that
    # unavailable presence (which XEP-0012 makes optional).
    assert 0 <= seconds < 30
    assert status == "gone fishing"


async def test_last_activity_of_an_online_contact_is_zero(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await befriend(alice, bob)
    seconds, _ = seconds_and_status(await alice.query("get", last_query(), to=bob.bare))
    # XEP-0012 §4: a user with an available resource has been active 0 seconds ago.
    assert seconds == 0


async def test_last_activity_is_forbidden_to_non_subscribers(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await bob.close()
    with pytest.raises(IqError) as failed:
        await alice.query("get", last_query(), to=bob.bare)
    # XEP-0012 §3: no presence subscription, no last activity.
    assert iq_error_condition(failed.value) == "forbidden"


# -- account deletion ---------------------------------------------------------------------


async def test_cancelled_account_is_unsubscribed_from_its_contacts(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await befriend(alice, bob)
    alice_full = alice.full

    reply = await alice.plugin["xep_0077"].cancel_registration(timeout=TIMEOUT)
    assert reply["type"] == "result"
    # Contacts see the subscriptions end both ways, as if alice had removed them
    # (RFC 6121 §2.5.2), and her session go.
    await bob.inbox.expect(is_presence("unsubscribe", frm=alice.bare), "unsubscribe from alice")
    await bob.inbox.expect(is_presence("unsubscribed", frm=alice.bare), "unsubscribed from alice")
    await bob.inbox.expect(is_presence("unavailable", frm=alice_full), "unavailable from alice")
    await bob.inbox.expect(is_roster_push(alice.bare, subscription="none"), "push of alice with 'none'")
    item = (await bob.roster_now())[alice.bare]
    assert (item["subscription"], item["ask"]) == ("none", None)


async def test_account_removed_with_the_cli_is_unsubscribed_from_its_contacts(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await befriend(alice, bob)
    await alice.close()
    await bob.close()

    remove_user(server, alice.bare)
    again = await im.login(server, f"{bob.bare}/again", bob.account_password)
    await again.online()
    item = (await again.roster_now())[alice.bare]
    assert (item["subscription"], item["ask"]) == ("none", None)


@pytest.mark.parametrize("how", ["xep-0077", "cli"])
async def test_deleted_account_leaves_no_roster_vcard_or_offline_messages(server, im, how):
    jid, password = server.new_account("alice")
    carol = await im.user(server, "carol")
    alice = await im.online(server, f"{jid}/one", password)
    await alice.roster_set(f"friend-{uuid.uuid4().hex[:6]}@{DOMAIN}", name="Friend")
    await alice.vcard_set(vcard_element({"FN": "Alice before"}))
    await alice.close()
    stored = carol.message(jid, "for the old alice")
    await carol.sync()

    if how == "xep-0077":
        # Logged in without presence, so the offline message stays stored.
        last = await im.login(server, f"{jid}/last", password)
        await last.plugin["xep_0077"].cancel_registration(timeout=TIMEOUT)
        await last.wait_ended()
    else:
        remove_user(server, jid)
    server.add_user(jid.split("@")[0], password)

    fresh = await im.login(server, f"{jid}/fresh", password)
    assert await fresh.roster_now() == {}
    await fresh.online()
    marker = carol.message(fresh.full, "marker")
    await fresh.inbox.expect(is_message(mid=marker), "the marker")
    assert fresh.inbox.matching(is_message(mid=stored)) == []
    # No vCard any more: an error or an empty <vCard/> (which of the two is
    # test_vcard.py's business), not the old one.
    try:
        result = await carol.vcard_get(jid)
    except IqError:
        pass
    else:
        vcard = result.xml.find(f"{{{NS_VCARD}}}vCard")
        assert vcard is None or len(vcard) == 0, str(result)
