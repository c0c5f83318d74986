"""Personal eventing (XEP-0163) on every account's bare JID, with real slixmpp clients: nodes
created by the first publish, notifications to the owner's resources and to contacts whose
XEP-0115 caps carry `<node>+notify` (and to nobody else), the last item when a contact comes
online, user avatars (XEP-0084), bookmarks (XEP-0402, with the XEP-0048 private-storage view
kept in step, XEP-0223 privacy) and OMEMO-style device lists and bundles with
publish-options. aioxmpp takes part as a second client library: its XEP-0048 bookmarks and
its own caps hash. Nodes, items, subscriptions and bookmarks survive a restart."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET

import aioxmpp
import aioxmpp.bookmarks
import aioxmpp.connector
import pytest

from interop_support import (
    HOST,
    NS_VCARD,
    TIMEOUT,
    befriend,
    is_message,
    is_presence,
    is_roster_push,
    remove_user,
    vcard_element,
)
from pubsub_support import (
    NS_AVATAR_DATA,
    NS_AVATAR_METADATA,
    NS_BOOKMARKS,
    NS_BOOKMARKS_LEGACY,
    NS_DISCO_INFO,
    NS_OMEMO,
    NS_OMEMO_DEVICELIST,
    NS_PRIVATE,
    SERVICE,
    again,
    any_event,
    configuration,
    create,
    delay_of,
    disco,
    entry,
    error,
    event_item_payload,
    event_items,
    event_retracts,
    is_event,
    item_ids,
    item_list,
    item_payload,
    items,
    node_name,
    nothing_before,
    publish,
    publish_options,
    pubsub_error,
    pubsub_user,
    retract,
    subscribe,
)
from test_aioxmpp_muc import signal_future

NS_MOOD = "urn:corvid:interop:mood"
NS_VCARD_UPDATE = "vcard-temp:x:update"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
OTHER_PNG = b"\x89PNG\r\n\x1a\n" + b"another picture" * 30

#: XEP-0402 §3.2: the publish-options every bookmarks client sends.
BOOKMARK_OPTIONS = dict(persist_items=True, max_items="max", send_last_published_item="never",
                        access_model="whitelist")


def conference(name: str, nick: str, autojoin: bool = True) -> ET.Element:
    el = ET.Element(f"{{{NS_BOOKMARKS}}}conference", {"name": name, "autojoin": "true" if autojoin else "false"})
    ET.SubElement(el, f"{{{NS_BOOKMARKS}}}nick").text = nick
    return el


async def publish_bookmark(client, room: str, name: str, nick: str):
    # XEP-0402 §3.2: the item id is the room's JID.
    return await publish(client, NS_BOOKMARKS, conference(name, nick), room, to=None,
                         options=publish_options(**BOOKMARK_OPTIONS))


async def private_bookmarks(client) -> dict[str, dict]:
    """XEP-0048 bookmarks in XEP-0049 private storage: {room JID: {name, autojoin, nick}}."""
    query = ET.Element(f"{{{NS_PRIVATE}}}query")
    ET.SubElement(query, f"{{{NS_BOOKMARKS_LEGACY}}}storage")
    result = await client.query("get", query)
    found = {}
    for conf in result.xml.iterfind(f"{{{NS_PRIVATE}}}query/{{{NS_BOOKMARKS_LEGACY}}}storage/"
                                    f"{{{NS_BOOKMARKS_LEGACY}}}conference"):
        found[conf.get("jid")] = {
            "name": conf.get("name"),
            "autojoin": conf.get("autojoin") in ("true", "1"),
            "nick": conf.findtext(f"{{{NS_BOOKMARKS_LEGACY}}}nick"),
        }
    return found


def pep_bookmarks(result) -> dict[str, dict]:
    """{room JID: {name, autojoin, nick}} of the items of urn:xmpp:bookmarks:1."""
    found = {}
    for item in result.xml.iterfind("{http://jabber.org/protocol/pubsub}pubsub/"
                                    "{http://jabber.org/protocol/pubsub}items/{http://jabber.org/protocol/pubsub}item"):
        conf = item.find(f"{{{NS_BOOKMARKS}}}conference")
        assert conf is not None, f"item {item.get('id')} has no <conference/>"
        found[item.get("id")] = {
            "name": conf.get("name"),
            "autojoin": conf.get("autojoin") in ("true", "1"),
            "nick": conf.findtext(f"{{{NS_BOOKMARKS}}}nick"),
        }
    return found


async def friends(server, im, *, alice_options: dict, bob_options: dict):
    alice = await pubsub_user(server, im, "alice", **alice_options)
    bob = await pubsub_user(server, im, "bob", **bob_options)
    await befriend(alice, bob)
    return alice, bob


# -- PEP nodes ------------------------------------------------------------------------------


async def test_the_account_says_it_offers_pep_with_what_clients_check_for(server, im):
    alice = await pubsub_user(server, im, "alice")
    info = await disco(alice, NS_DISCO_INFO, alice.bare)
    identities = {(i.get("category"), i.get("type")) for i in info.xml.iter(f"{{{NS_DISCO_INFO}}}identity")}
    features = {f.get("var") for f in info.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
    # XEP-0163 §6.1: the account is a pubsub/pep identity. Bookmark clients (XEP-0402 §6)
    # also check publish-options and config-node-max; #compat says XEP-0048 is kept in step.
    assert ("pubsub", "pep") in identities, str(info)
    for feature in ("http://jabber.org/protocol/pubsub#publish-options",
                    "http://jabber.org/protocol/pubsub#config-node-max",
                    "http://jabber.org/protocol/pubsub#auto-create",
                    "urn:xmpp:bookmarks:1#compat"):
        assert feature in features, f"{feature} missing from {sorted(features)}"


async def test_the_first_publish_creates_the_node_with_the_pep_defaults(server, im):
    alice = await pubsub_user(server, im, "alice")
    # XEP-0163 §3: publishing to one's own bare JID (no 'to') auto-creates the node.
    await publish(alice, NS_MOOD, entry("happy"), "current", to=None)
    assert item_list(await items(alice, NS_MOOD, to=None)) == [("current", "happy")]
    config = await configuration(alice, NS_MOOD, to=alice.bare)
    # XEP-0163 §5 (recommended defaults): access model presence, the last item sent on
    # subscription and presence; one item kept.
    assert config["pubsub#access_model"] == ["presence"]
    assert config["pubsub#send_last_published_item"] == ["on_sub_and_presence"]
    assert config["pubsub#max_items"] == ["1"]


async def test_publish_options_become_the_configuration_of_an_auto_created_node(server, im):
    alice = await pubsub_user(server, im, "alice")
    await publish(alice, NS_MOOD, entry("first"), "a", to=None,
                  options=publish_options(access_model="open", max_items=2))
    config = await configuration(alice, NS_MOOD, to=alice.bare)
    assert (config["pubsub#access_model"], config["pubsub#max_items"]) == (["open"], ["2"])
    for item_id in ("b", "c"):
        await publish(alice, NS_MOOD, entry(item_id), item_id, to=None)
    assert item_ids(await items(alice, NS_MOOD, to=None)) == ["c", "b"]


async def test_publish_options_that_differ_from_an_existing_pep_node_are_precondition_not_met(server, im):
    alice = await pubsub_user(server, im, "alice")
    await publish(alice, NS_MOOD, entry("private"), "current", to=None,
                  options=publish_options(access_model="whitelist"))
    # XEP-0060 §7.1.5: conflict + precondition-not-met.
    etype, condition, extra, _ = await error(
        publish(alice, NS_MOOD, entry("open?"), "current", to=None, options=publish_options(access_model="open")))
    assert (etype, condition, extra) == ("cancel", "conflict", [pubsub_error("precondition-not-met")])
    assert item_list(await items(alice, NS_MOOD, to=None)) == [("current", "private")]


async def test_nobody_else_publishes_to_a_users_pep_node(server, im):
    alice, bob = await friends(server, im, alice_options={}, bob_options={})
    await publish(alice, NS_MOOD, entry("alice's mood"), "current", to=None)
    # XEP-0163 §2.2: one publisher per node, the account owner.
    assert (await error(publish(bob, NS_MOOD, entry("bob's idea"), "current", to=alice.bare)))[:2] == \
        ("auth", "forbidden")
    assert item_list(await items(bob, NS_MOOD, to=alice.bare)) == [("current", "alice's mood")]


# -- notifications: contacts with +notify, and nobody else (XEP-0163 §4.2) -------------------


async def test_avatar_reaches_contacts_with_notify_and_the_owners_resources_not_strangers(server, im):
    alice, bob = await friends(server, im, alice_options={"avatar": True}, bob_options={"avatar": True})
    alice_phone = await again(server, im, alice, "phone", avatar=True)
    carol = await pubsub_user(server, im, "carol", avatar=True)

    avatar = alice.plugin["xep_0084"]
    await avatar.publish_avatar(PNG, timeout=TIMEOUT)
    avatar_id = hashlib.sha1(PNG).hexdigest()
    await avatar.publish_avatar_metadata({"id": avatar_id, "type": "image/png", "bytes": len(PNG)},
                                         timeout=TIMEOUT)

    # XEP-0084 §3.3: the metadata notification, from alice's bare JID.
    for who in (bob, alice_phone):
        got = await who.inbox.expect(is_event(NS_AVATAR_METADATA, frm=alice.bare), "alice's avatar metadata")
        assert [i for i, _ in event_items(got)] == [avatar_id]
        info = event_item_payload(got, f"{{{NS_AVATAR_METADATA}}}metadata/{{{NS_AVATAR_METADATA}}}info")
        assert info is not None and (info.get("id"), info.get("bytes")) == (avatar_id, str(len(PNG))), str(got)
    # XEP-0084 §3.4: the contact fetches the data by id.
    data = item_payload(await items(bob, NS_AVATAR_DATA, to=alice.bare, ids=(avatar_id,)), f"{{{NS_AVATAR_DATA}}}data")
    assert data is not None and base64.b64decode(data.text) == PNG

    # carol has no presence subscription: no notification, and no reading either.
    alice.message(carol.full, "marker")
    await nothing_before(carol, is_message(body="marker"), "alice's marker", any_event)
    _, condition, extra, _ = await error(items(carol, NS_AVATAR_DATA, to=alice.bare))
    assert (condition, extra) == ("not-authorized", [pubsub_error("presence-subscription-required")])


async def test_a_contact_without_notify_in_its_caps_gets_no_notification(server, im):
    # dave is alice's contact, but his caps only ask for the mood node, not for avatars.
    alice, dave = await friends(server, im, alice_options={"avatar": True}, bob_options={"notify": (NS_MOOD,)})
    await alice.plugin["xep_0084"].publish_avatar(PNG, timeout=TIMEOUT)
    avatar_id = hashlib.sha1(PNG).hexdigest()
    await alice.plugin["xep_0084"].publish_avatar_metadata({"id": avatar_id, "type": "image/png", "bytes": len(PNG)},
                                                           timeout=TIMEOUT)
    await publish(alice, NS_MOOD, entry("after the avatar"), "current", to=None)
    # The mood notification proves dave's caps were read; the avatar came before it, if at all.
    await nothing_before(dave, is_event(NS_MOOD, frm=alice.bare), "alice's mood",
                         lambda s: is_event(NS_AVATAR_METADATA)(s) or is_event(NS_AVATAR_DATA)(s))


async def test_only_contacts_subscribed_to_the_owners_presence_hear_of_it(server, im):
    alice = await pubsub_user(server, im, "alice")
    follower = await pubsub_user(server, im, "bob", notify=(NS_MOOD,))
    followed = await pubsub_user(server, im, "carol", notify=(NS_MOOD,))
    # bob may see alice's presence (alice's roster: 'from'); alice sees carol's, not the
    # other way round (alice's roster: 'to').
    follower.presence("subscribe", to=alice.bare)
    await alice.inbox.expect(is_presence("subscribe", frm=follower.bare), "bob's request")
    alice.presence("subscribed", to=follower.bare)
    await alice.inbox.expect(is_roster_push(follower.bare, subscription="from"), "bob with 'from'")
    alice.presence("subscribe", to=followed.bare)
    await followed.inbox.expect(is_presence("subscribe", frm=alice.bare), "alice's request")
    followed.presence("subscribed", to=alice.bare)
    await alice.inbox.expect(is_roster_push(followed.bare, subscription="to"), "carol with 'to'")

    await publish(alice, NS_MOOD, entry("for my followers"), "current", to=None)
    # XEP-0163 §4.1: contacts with a subscription to the owner's presence ('from', 'both').
    got = await follower.inbox.expect(is_event(NS_MOOD, frm=alice.bare), "alice's mood")
    assert event_items(got) == [("current", "for my followers")]
    alice.message(followed.full, "marker")
    await nothing_before(followed, is_message(body="marker"), "alice's marker", is_event(NS_MOOD))


@pytest.mark.parametrize("blocker", ["owner", "contact"])
async def test_a_block_either_way_withholds_notifications(server, im, blocker):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob", notify=(NS_MOOD,))
    await befriend(alice, bob)
    # XEP-0191 §3.3: nothing passes between a user and a JID the user blocked, either way.
    blocking, blocked = (alice, bob) if blocker == "owner" else (bob, alice)
    await blocking.plugin["xep_0191"].block(blocked.bare, timeout=TIMEOUT)
    await publish(alice, NS_MOOD, entry("while blocked"), "current", to=None)
    await blocking.plugin["xep_0191"].unblock(blocked.bare, timeout=TIMEOUT)
    await publish(alice, NS_MOOD, entry("after the block"), "current", to=None)
    # What was published during the block never came live (a later resend of the last item
    # would carry a XEP-0203 <delay/>).
    await nothing_before(
        bob, lambda s: is_event(NS_MOOD)(s) and event_items(s) == [("current", "after the block")],
        "the mood published after the block",
        lambda s: is_event(NS_MOOD)(s) and event_items(s) == [("current", "while blocked")] and delay_of(s) is None)


async def test_a_contact_coming_online_gets_the_last_item(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob", notify=(NS_MOOD,))
    await befriend(alice, bob)
    await bob.close()
    await publish(alice, NS_MOOD, entry("while bob was away"), "current", to=None)

    # XEP-0163 §4.3.4 (send_last_published_item on_sub_and_presence): on bob's available
    # presence, the last item of each node he asks for.
    bob = await again(server, im, bob, "back", notify=(NS_MOOD,))
    got = await bob.inbox.expect(is_event(NS_MOOD, frm=alice.bare), "alice's last mood")
    assert event_items(got) == [("current", "while bob was away")]


async def test_a_contact_whose_caps_come_to_ask_for_a_node_gets_its_last_item(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    await befriend(alice, bob)
    await publish(alice, NS_MOOD, entry("before bob asked"), "current", to=None)
    # bob's client starts to ask for the mood (new XEP-0115 caps in a new presence):
    # XEP-0163 §4.3.4: the last item comes then.
    bob.plugin["xep_0030"].add_feature(f"{NS_MOOD}+notify")
    await bob.plugin["xep_0115"].update_caps(broadcast=False)
    bob.presence(status="now with mood")
    got = await bob.inbox.expect(is_event(NS_MOOD, frm=alice.bare), "alice's mood")
    assert event_items(got) == [("current", "before bob asked")]


async def test_pep_nodes_go_with_the_account(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    await publish(alice, NS_MOOD, entry("soon gone"), "current", to=None,
                  options=publish_options(access_model="open"))
    assert item_list(await items(bob, NS_MOOD, to=alice.bare)) == [("current", "soon gone")]
    await alice.close()
    remove_user(server, alice.bare)
    # RFC 6121 §8.5.1: an IQ to an account that does not exist is service-unavailable.
    assert (await error(items(bob, NS_MOOD, to=alice.bare)))[1] == "service-unavailable"
    # The PEP service is the account's: one made anew under the same name has no nodes.
    server.add_user(alice.bare.split("@", 1)[0], "another-password")
    _, condition, _, _ = await error(items(bob, NS_MOOD, to=alice.bare))
    assert condition == "item-not-found"


async def test_a_contact_gets_the_vcard_avatar_hash_of_the_pep_avatar(server, im):
    alice, bob = await friends(server, im, alice_options={"avatar": True}, bob_options={})
    await alice.plugin["xep_0084"].publish_avatar(PNG, timeout=TIMEOUT)
    avatar_id = hashlib.sha1(PNG).hexdigest()
    await alice.plugin["xep_0084"].publish_avatar_metadata({"id": avatar_id, "type": "image/png", "bytes": len(PNG)},
                                                           timeout=TIMEOUT)

    # As Prosody and ejabberd do, the XEP-0153 hash follows the PEP avatar (XEP-0398).
    def with_hash(stanza) -> bool:
        photo = stanza.xml.find(f"{{{NS_VCARD_UPDATE}}}x/{{{NS_VCARD_UPDATE}}}photo")
        return is_presence("available", from_bare=alice.bare)(stanza) and photo is not None and \
            photo.text == avatar_id

    alice.presence(status="with an avatar")
    await bob.inbox.expect(with_hash, "alice's presence with the avatar's hash")


async def test_the_vcard_photo_and_the_pep_avatar_stay_in_step(server, im):
    alice, bob = await friends(server, im, alice_options={"avatar": True}, bob_options={"avatar": True})
    # A PEP avatar shows in the vCard (XEP-0398)...
    await alice.plugin["xep_0084"].publish_avatar(PNG, timeout=TIMEOUT)
    avatar_id = hashlib.sha1(PNG).hexdigest()
    await alice.plugin["xep_0084"].publish_avatar_metadata({"id": avatar_id, "type": "image/png", "bytes": len(PNG)},
                                                           timeout=TIMEOUT)
    vcard = (await bob.vcard_get(alice.bare)).xml.find(f"{{{NS_VCARD}}}vCard")
    assert vcard is not None
    assert base64.b64decode(vcard.findtext(f"{{{NS_VCARD}}}PHOTO/{{{NS_VCARD}}}BINVAL") or "") == PNG
    # ...and a photo set by an old client's vCard becomes the PEP avatar.
    bob.inbox.discard(is_event(NS_AVATAR_METADATA))
    await alice.vcard_set(vcard_element({"FN": "Alice"}, photo=OTHER_PNG))
    other_id = hashlib.sha1(OTHER_PNG).hexdigest()
    got = await bob.inbox.expect(
        lambda s: is_event(NS_AVATAR_METADATA, frm=alice.bare)(s) and [i for i, _ in event_items(s)] == [other_id],
        "the metadata of the vCard's photo")
    data = item_payload(await items(bob, NS_AVATAR_DATA, to=alice.bare, ids=(other_id,)), f"{{{NS_AVATAR_DATA}}}data")
    assert data is not None and base64.b64decode(data.text) == OTHER_PNG, str(got)


# -- bookmarks (XEP-0402, XEP-0048, XEP-0223) -------------------------------------------------


async def test_bookmarks_round_trip(server, im):
    alice = await pubsub_user(server, im, "alice", notify=(NS_BOOKMARKS,))
    alice_phone = await again(server, im, alice, "phone", notify=(NS_BOOKMARKS,))
    await publish_bookmark(alice, "tea@conference.localhost", "Tea room", "ali")
    await publish_bookmark(alice, "work@conference.localhost", "Work", "alice")
    # XEP-0402 §4: the user's other resources hear of a new bookmark.
    got = await alice_phone.inbox.expect(is_event(NS_BOOKMARKS, frm=alice.bare), "the bookmark notification")
    assert [i for i, _ in event_items(got)] == ["tea@conference.localhost"]

    assert pep_bookmarks(await items(alice_phone, NS_BOOKMARKS, to=None)) == {
        "tea@conference.localhost": {"name": "Tea room", "autojoin": True, "nick": "ali"},
        "work@conference.localhost": {"name": "Work", "autojoin": True, "nick": "alice"},
    }
    # One item per room: saving a room again replaces its bookmark.
    await publish_bookmark(alice, "work@conference.localhost", "Work (renamed)", "alice")
    assert pep_bookmarks(await items(alice, NS_BOOKMARKS, to=None))["work@conference.localhost"]["name"] == \
        "Work (renamed)"
    # The node is configured as the publish-options asked (XEP-0223 §3: private).
    config = await configuration(alice, NS_BOOKMARKS, to=alice.bare)
    assert config["pubsub#access_model"] == ["whitelist"]
    assert config["pubsub#max_items"][0] == "max" or int(config["pubsub#max_items"][0]) >= 10000
    # XEP-0402 §3.3: removing one is a retract, told to the other resources.
    await retract(alice, NS_BOOKMARKS, "tea@conference.localhost", to=None, notify=True)
    got = await alice_phone.inbox.expect(lambda s: is_event(NS_BOOKMARKS)(s) and event_retracts(s), "the retraction")
    assert event_retracts(got) == ["tea@conference.localhost"]
    assert set(pep_bookmarks(await items(alice, NS_BOOKMARKS, to=None))) == {"work@conference.localhost"}


async def test_nobody_else_reads_or_hears_of_a_users_bookmarks(server, im):
    alice, bob = await friends(server, im, alice_options={},
                               bob_options={"notify": (NS_BOOKMARKS, NS_MOOD)})
    await publish_bookmark(alice, "secret@conference.localhost", "Secret", "ali")
    await publish(alice, NS_MOOD, entry("marker"), "current", to=None)
    # Even a contact asking for +notify hears nothing of a whitelist node (XEP-0223 §3).
    await nothing_before(bob, is_event(NS_MOOD, frm=alice.bare), "alice's mood",
                         is_event(NS_BOOKMARKS))
    # XEP-0060 §6.5.9.8: not-allowed + closed-node.
    _, condition, extra, _ = await error(items(bob, NS_BOOKMARKS, to=alice.bare))
    assert (condition, extra) == ("not-allowed", [pubsub_error("closed-node")])


async def test_bookmarks_show_in_private_storage_and_back(server, im):
    alice = await pubsub_user(server, im, "alice")
    await publish_bookmark(alice, "tea@conference.localhost", "Tea room", "ali")
    # XEP-0402 §5.3 (compatibility): the XEP-0048 view in private XML storage follows.
    assert await private_bookmarks(alice) == {
        "tea@conference.localhost": {"name": "Tea room", "autojoin": True, "nick": "ali"}}

    # ...and an old client's private-storage bookmarks appear as XEP-0402 items.
    query = ET.Element(f"{{{NS_PRIVATE}}}query")
    storage = ET.SubElement(query, f"{{{NS_BOOKMARKS_LEGACY}}}storage")
    for jid, name, nick in (("tea@conference.localhost", "Tea room", "ali"),
                            ("old@conference.localhost", "From an old client", "al")):
        conf = ET.SubElement(storage, f"{{{NS_BOOKMARKS_LEGACY}}}conference",
                             {"jid": jid, "name": name, "autojoin": "true"})
        ET.SubElement(conf, f"{{{NS_BOOKMARKS_LEGACY}}}nick").text = nick
    await alice.query("set", query)
    assert pep_bookmarks(await items(alice, NS_BOOKMARKS, to=None)) == {
        "tea@conference.localhost": {"name": "Tea room", "autojoin": True, "nick": "ali"},
        "old@conference.localhost": {"name": "From an old client", "autojoin": True, "nick": "al"},
    }


# -- OMEMO (XEP-0384 as the clients publish it) ------------------------------------------------


def device_list(*device_ids: int) -> ET.Element:
    el = ET.Element(f"{{{NS_OMEMO}}}list")
    for device_id in device_ids:
        ET.SubElement(el, f"{{{NS_OMEMO}}}device", {"id": str(device_id)})
    return el


def bundle(key: str) -> ET.Element:
    el = ET.Element(f"{{{NS_OMEMO}}}bundle")
    ET.SubElement(el, f"{{{NS_OMEMO}}}signedPreKeyPublic", {"signedPreKeyId": "1"}).text = key
    ET.SubElement(el, f"{{{NS_OMEMO}}}identityKey").text = key[::-1]
    prekeys = ET.SubElement(el, f"{{{NS_OMEMO}}}prekeys")
    for n in range(1, 4):
        ET.SubElement(prekeys, f"{{{NS_OMEMO}}}preKeyPublic", {"preKeyId": str(n)}).text = f"{key}{n}"
    return el


async def test_omemo_device_list_and_bundle_published_open_are_read_by_a_stranger(server, im):
    alice = await pubsub_user(server, im, "alice")
    contact = await pubsub_user(server, im, "bob", notify=(NS_OMEMO_DEVICELIST,))
    await befriend(alice, contact)
    stranger = await pubsub_user(server, im, "carol")
    open_access = publish_options(access_model="open")
    await publish(alice, NS_OMEMO_DEVICELIST, device_list(1234), "current", to=None, options=open_access)
    await publish(alice, f"{NS_OMEMO}.bundles:1234", bundle("BASE64KEY"), "current", to=None,
                  options=publish_options(access_model="open"))

    # A stranger starting an encrypted chat reads both (XEP-0384).
    listed = item_payload(await items(stranger, NS_OMEMO_DEVICELIST, to=alice.bare), f"{{{NS_OMEMO}}}list")
    assert listed is not None and [d.get("id") for d in listed] == ["1234"]
    got = item_payload(await items(stranger, f"{NS_OMEMO}.bundles:1234", to=alice.bare), f"{{{NS_OMEMO}}}bundle")
    assert got is not None and got.findtext(f"{{{NS_OMEMO}}}signedPreKeyPublic") == "BASE64KEY"

    # A second device: the list is replaced (max_items 1), and the contact is told.
    await publish(alice, NS_OMEMO_DEVICELIST, device_list(1234, 5678), "current", to=None, options=open_access)
    got = await contact.inbox.expect(
        lambda s: is_event(NS_OMEMO_DEVICELIST, frm=alice.bare)(s) and
        len(event_item_payload(s, f"{{{NS_OMEMO}}}list") or []) == 2, "the device list with two devices")
    listed = item_payload(await items(stranger, NS_OMEMO_DEVICELIST, to=alice.bare), f"{{{NS_OMEMO}}}list")
    assert [d.get("id") for d in listed] == ["1234", "5678"]
    assert item_ids(await items(stranger, NS_OMEMO_DEVICELIST, to=alice.bare)) == ["current"]


# -- restart ----------------------------------------------------------------------------------


async def test_nodes_items_subscriptions_and_bookmarks_survive_a_restart(make_im_server, im):
    own = make_im_server("restart-pubsub")
    alice = await pubsub_user(own, im, "alice")
    bob = await pubsub_user(own, im, "bob", notify=(NS_MOOD,))
    await befriend(alice, bob)
    node = node_name()
    await create(alice, node, max_items=5, title="Kept")
    for n in range(3):
        await publish(alice, node, entry(f"n{n}"), f"i{n}")
    await subscribe(bob, node)
    await publish(alice, NS_MOOD, entry("calm"), "current", to=None)
    await publish_bookmark(alice, "tea@conference.localhost", "Tea room", "ali")
    await alice.close()
    await bob.close()

    own.restart()
    alice = await again(own, im, alice)
    bob = await again(own, im, bob, notify=(NS_MOOD,))
    # The service's node: configuration, items in order, the subscription.
    config = await configuration(alice, node)
    assert (config["pubsub#max_items"], config["pubsub#title"]) == (["5"], ["Kept"])
    assert item_list(await items(bob, node)) == [("i2", "n2"), ("i1", "n1"), ("i0", "n0")]
    await publish(alice, node, entry("after the restart"), "after")
    got = await bob.inbox.expect(is_event(node, frm=SERVICE), "a notification after the restart")
    assert event_items(got) == [("after", "after the restart")]
    # PEP: the item, its access model (bob still reads it as a contact), the bookmarks.
    assert item_list(await items(bob, NS_MOOD, to=alice.bare)) == [("current", "calm")]
    assert (await configuration(alice, NS_MOOD, to=alice.bare))["pubsub#access_model"] == ["presence"]
    assert pep_bookmarks(await items(alice, NS_BOOKMARKS, to=None)) == {
        "tea@conference.localhost": {"name": "Tea room", "autojoin": True, "nick": "ali"}}
    _, condition, _, _ = await error(items(bob, NS_BOOKMARKS, to=alice.bare))
    assert condition == "not-allowed"


async def test_bookmarks_saved_by_aioxmpp_in_private_storage_reach_a_xep_0402_client(server, im):
    jid, password = server.new_account("alice")
    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(f"{jid}/aioxmpp"),
        aioxmpp.make_security_layer(password, no_verify=True),
        override_peer=[(HOST, server.port, aioxmpp.connector.STARTTLSConnector())],
    )
    async with client.connected():
        # aioxmpp keeps bookmarks the XEP-0048 way, in private XML storage.
        bookmarks = client.summon(aioxmpp.BookmarkClient)
        room = aioxmpp.JID.fromstr("tea@conference.localhost")
        await asyncio.wait_for(
            bookmarks.add_bookmark(aioxmpp.bookmarks.Conference("Tea room", room, autojoin=True, nick="ali")),
            TIMEOUT)

        modern = await pubsub_user(server, im, jid=jid, password=password, resource="modern")
        assert pep_bookmarks(await items(modern, NS_BOOKMARKS, to=None)) == {
            "tea@conference.localhost": {"name": "Tea room", "autojoin": True, "nick": "ali"}}
        # ...and what the XEP-0402 client adds, aioxmpp reads.
        await publish_bookmark(modern, "work@conference.localhost", "Work", "alice")
        got = await asyncio.wait_for(bookmarks.get_bookmarks(), TIMEOUT)
        assert {(str(b.jid), b.name, b.autojoin, b.nick) for b in got} == {
            ("tea@conference.localhost", "Tea room", True, "ali"),
            ("work@conference.localhost", "Work", True, "alice")}


async def test_an_aioxmpp_contact_claiming_the_avatar_node_hears_a_slixmpp_avatar(server, im):
    alice = await pubsub_user(server, im, "alice", avatar=True)
    jid, password = server.new_account("carol")
    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(f"{jid}/aioxmpp"),
        aioxmpp.make_security_layer(password, no_verify=True),
        override_peer=[(HOST, server.port, aioxmpp.connector.STARTTLSConnector())],
    )
    # aioxmpp computes its own XEP-0115 hash over the +notify feature the claim adds.
    client.summon(aioxmpp.EntityCapsService)
    claim = client.summon(aioxmpp.PEPClient).claim_pep_node(NS_AVATAR_METADATA, notify=True)
    heard = signal_future(claim.on_item_publish,
                          lambda sender, node, item, **kw: item if str(sender) == alice.bare else None)
    roster = client.summon(aioxmpp.RosterClient)
    async with client.connected():
        # A mutual presence subscription, carol pre-approving alice (RFC 6121 §3.4).
        roster.approve(aioxmpp.JID.fromstr(alice.bare))
        roster.subscribe(aioxmpp.JID.fromstr(alice.bare))
        await alice.inbox.expect(is_presence("subscribe", frm=jid), "carol's subscription request")
        alice.presence("subscribed", to=jid)
        alice.presence("subscribe", to=jid)
        await alice.inbox.expect(is_roster_push(jid, subscription="both"), "carol in alice's roster with 'both'")

        await alice.plugin["xep_0084"].publish_avatar(PNG, timeout=TIMEOUT)
        avatar_id = hashlib.sha1(PNG).hexdigest()
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            {"id": avatar_id, "type": "image/png", "bytes": len(PNG)}, timeout=TIMEOUT)
        item = await asyncio.wait_for(heard, TIMEOUT)
        assert item.id_ == avatar_id
