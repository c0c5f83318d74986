"""Subscriptions on pubsub.localhost (XEP-0060 1.25 §6, §8.8, §8.9), with real slixmpp
clients: notifications reaching subscribers and nobody else, the subid rules, access models
refusing whom they must (with the XEP's application-specific conditions), the last item on
subscribe, a user's own subscriptions and affiliations, owners managing both (outcasts
included), and an aioxmpp subscriber beside slixmpp. Each test makes nodes of its own."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import aioxmpp
import aioxmpp.pubsub
import aioxmpp.pubsub.xso
import aioxmpp.xso

from interop_support import DOMAIN, TIMEOUT, befriend, is_message
from pubsub_support import (
    node_with_subscriber,
    NS_DATA,
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_OWNER,
    NS_PUBSUB,
    NS_SUBSCRIBE_OPTIONS,
    NS_TEST,
    SERVICE,
    again,
    any_event,
    configuration,
    configure,
    create,
    delay_of,
    disco,
    entry,
    error,
    form_el,
    form_values,
    event_items,
    is_event,
    item_list,
    items,
    node_name,
    nothing_before,
    owner,
    owner_entry,
    publish,
    pubsub_error,
    pubsub_user,
    subscribe,
    unsubscribe,
)
from test_aioxmpp_muc import aioxmpp_client, signal_future


@aioxmpp.pubsub.xso.as_payload_class
class AioEntry(aioxmpp.xso.XSO):
    """The tests' payload, <entry xmlns='urn:corvid:interop:entry'>text</entry>, for aioxmpp."""

    TAG = (NS_TEST, "entry")
    text = aioxmpp.xso.Text(default=None)

    def __init__(self, text: str | None = None):
        super().__init__()
        self.text = text


def owner_list(result, verb: str) -> dict[str, str]:
    """{jid: affiliation or subscription} of an owner affiliations/subscriptions result."""
    return {el.get("jid"): el.get(verb)
            for el in result.xml.iterfind(f"{{{NS_OWNER}}}pubsub/{{{NS_OWNER}}}{verb}s/{{{NS_OWNER}}}{verb}")}


def own_list(result, verb: str) -> dict[str, dict]:
    """{node: attributes} of a user's own <subscriptions/> or <affiliations/> (§5.6, §5.7)."""
    return {el.get("node"): dict(el.attrib)
            for el in result.xml.iterfind(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}{verb}s/{{{NS_PUBSUB}}}{verb}")}


# -- notifications and subscriptions (§6.1, §7.1.2.1) ---------------------------------------


async def test_notifications_with_the_payload_reach_subscribers_and_nobody_else(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    carol = await pubsub_user(server, im, "carol")
    dave = await pubsub_user(server, im, "dave")
    await subscribe(carol, node)

    await publish(alice, node, entry("hello subscribers"), "hello")
    for subscriber in (bob, carol):
        got = await subscriber.inbox.expect(is_event(node, frm=SERVICE), f"the notification for {node}")
        # §7.1.2.1: deliver_payloads is true, so the payload comes with it.
        assert event_items(got) == [("hello", "hello subscribers")], str(got)
    # dave never subscribed: alice messages him after bob and carol have the event.
    alice.message(dave.full, "marker")
    await nothing_before(dave, is_message(body="marker"), "alice's marker", any_event)
    # The publisher is not a subscriber either.
    assert alice.inbox.matching(is_event(node)) == []


async def test_subscribing_returns_a_subscription_with_a_subid_and_twice_the_same_one(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node)
    first = await subscribe(bob, node)
    # §6.1.2: subscribed, for the bare JID asked for, with a subid (Corvid always gives one).
    assert (first.get("node"), first.get("jid"), first.get("subscription")) == (node, bob.bare, "subscribed")
    assert first.get("subid")
    second = await subscribe(bob, node)
    assert (second.get("subscription"), second.get("subid")) == ("subscribed", first.get("subid"))
    # One subscription, not two: one notification per item.
    await publish(alice, node, entry("once"), "once")
    await bob.inbox.expect(is_event(node), "the notification")
    await publish(alice, node, entry("marker"), "marker")
    got = await bob.inbox.expect(is_event(node), "the marker's notification")
    assert event_items(got) == [("marker", "marker")], "a second notification of the first item came"


async def test_a_full_jid_subscription_reaches_that_resource_alone(server, im):
    alice = await pubsub_user(server, im, "alice")
    phone = await pubsub_user(server, im, "bob", resource="phone")
    desk = await again(server, im, phone, "desk")
    node = node_name()
    await create(alice, node)
    # §6.1.1: the subscribing JID may be a full JID; notifications go to it.
    sub = await subscribe(phone, node, jid=phone.full)
    assert (sub.get("jid"), sub.get("subscription")) == (phone.full, "subscribed")
    await publish(alice, node, entry("for the phone"), "p")
    got = await phone.inbox.expect(is_event(node), "the phone's notification")
    assert got.xml.get("to") == phone.full
    alice.message(desk.full, "marker")
    await nothing_before(desk, is_message(body="marker"), "the marker", is_event(node))


async def test_after_unsubscribing_no_notifications_come(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    carol = await pubsub_user(server, im, "carol")
    await subscribe(carol, node)
    await unsubscribe(bob, node)
    await publish(alice, node, entry("after bob left"), "after")
    await carol.inbox.expect(is_event(node), "carol's notification")
    alice.message(bob.full, "marker")
    await nothing_before(bob, is_message(body="marker"), "alice's marker", is_event(node))


async def test_unsubscribing_without_a_subscription_is_not_subscribed(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node)
    # §6.2.3.2: unexpected-request + not-subscribed.
    etype, condition, extra, _ = await error(unsubscribe(bob, node))
    assert (etype, condition, extra) == ("cancel", "unexpected-request", [pubsub_error("not-subscribed")])


async def test_unsubscribing_someone_else_is_forbidden(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    carol = await pubsub_user(server, im, "carol")
    # §6.2.3.3: only the subscriber (same bare JID) or an admin may unsubscribe a JID.
    assert (await error(unsubscribe(carol, node, jid=bob.bare)))[:2] == ("auth", "forbidden")
    assert owner_list(await owner(alice, "subscriptions", node, itype="get"), "subscription") == \
        {bob.bare: "subscribed"}


async def test_unsubscribing_with_a_wrong_subid_is_invalid_subid(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    # §6.2.3.5: not-acceptable + invalid-subid; the subscription stays.
    etype, condition, extra, _ = await error(unsubscribe(bob, node, subid="not-the-subid"))
    assert (etype, condition, extra) == ("modify", "not-acceptable", [pubsub_error("invalid-subid")])
    subs = owner_list(await owner(alice, "subscriptions", node, itype="get"), "subscription")
    assert subs == {bob.bare: "subscribed"}
    # With the right subid it ends.
    subid = (await subscribe(bob, node)).get("subid")
    await unsubscribe(bob, node, subid=subid)
    assert owner_list(await owner(alice, "subscriptions", node, itype="get"), "subscription") == {}


async def test_subscribing_someone_else_is_invalid_jid(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node)
    # §6.1.3.1: the JID to subscribe must be the requester's bare or full JID.
    etype, condition, extra, _ = await error(subscribe(bob, node, jid=f"someone-else@{DOMAIN}"))
    assert (etype, condition, extra) == ("modify", "bad-request", [pubsub_error("invalid-jid")])


async def test_subscribing_to_a_missing_node_is_item_not_found(server, im):
    bob = await pubsub_user(server, im, "bob")
    assert (await error(subscribe(bob, node_name("missing"))))[:2] == ("cancel", "item-not-found")


async def test_whitelist_node_refuses_subscribers_and_readers_not_on_the_list(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node, access_model="whitelist")
    await publish(alice, node, entry("members only"), "secret")
    # §6.1.3.4 and §6.5.9: not-allowed + closed-node.
    etype, condition, extra, _ = await error(subscribe(bob, node))
    assert (etype, condition, extra) == ("cancel", "not-allowed", [pubsub_error("closed-node")])
    _, condition, extra, _ = await error(items(bob, node))
    assert (condition, extra) == ("not-allowed", [pubsub_error("closed-node")])
    # A member affiliation puts bob on the whitelist (§4.1).
    await owner(alice, "affiliations", node, children=[owner_entry("affiliation", bob.bare, "member")])
    assert item_list(await items(bob, node)) == [("secret", "members only")]
    assert (await subscribe(bob, node)).get("subscription") == "subscribed"


async def test_presence_access_node_needs_a_presence_subscription(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node, access_model="presence")
    # §6.1.3.2 and §6.5.9: not-authorized + presence-subscription-required.
    etype, condition, extra, _ = await error(subscribe(bob, node))
    assert (etype, condition, extra) == ("auth", "not-authorized", [pubsub_error("presence-subscription-required")])
    _, condition, extra, _ = await error(items(bob, node))
    assert (condition, extra) == ("not-authorized", [pubsub_error("presence-subscription-required")])
    # With a presence subscription to the owner (RFC 6121), bob is in.
    await befriend(alice, bob)
    assert (await subscribe(bob, node)).get("subscription") == "subscribed"
    assert item_list(await items(bob, node)) == []


async def test_roster_access_node_needs_a_roster_group(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node, access_model="roster", roster_groups_allowed=["Friends"])
    # §6.1.3.3: not-authorized + not-in-roster-group.
    etype, condition, extra, _ = await error(subscribe(bob, node))
    assert (etype, condition, extra) == ("auth", "not-authorized", [pubsub_error("not-in-roster-group")])
    # In the owner's roster under Friends, bob is in (no presence subscription needed).
    await alice.roster_set(bob.bare, groups=("Friends",))
    assert (await subscribe(bob, node)).get("subscription") == "subscribed"


# -- the last item on subscribe (§6.1.7) ---------------------------------------------------


async def test_the_last_item_comes_with_a_delay_on_subscribe_when_configured(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node, send_last_published_item="on_sub")
    await publish(alice, node, entry("older"), "older")
    await publish(alice, node, entry("the latest"), "latest")
    await subscribe(bob, node)
    got = await bob.inbox.expect(is_event(node, frm=SERVICE), "the last published item")
    assert event_items(got) == [("latest", "the latest")]
    # §6.1.7: with XEP-0203 delayed delivery.
    delay = delay_of(got)
    assert delay is not None and delay.get("stamp"), str(got)


async def test_no_last_item_on_subscribe_by_default(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node)
    await publish(alice, node, entry("before bob"), "before")
    await subscribe(bob, node)
    await publish(alice, node, entry("after bob"), "after")
    # send_last_published_item is `never` by default: the first thing bob gets is the new item.
    got = await bob.inbox.expect(is_event(node), "the new item")
    assert event_items(got) == [("after", "after bob")]


# -- subscriptions and affiliations (§5.6, §5.7, §8.8, §8.9) ---------------------------------


async def test_a_user_lists_own_subscriptions_and_affiliations(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    first, second = node_name(), node_name()
    await create(alice, first)
    await create(alice, second)
    sub = await subscribe(bob, first)

    subs = own_list(await bob.query("get", _own("subscriptions"), to=SERVICE), "subscription")
    assert set(subs) == {first}
    assert (subs[first]["jid"], subs[first]["subscription"], subs[first].get("subid")) == \
        (bob.bare, "subscribed", sub.get("subid"))
    affs = own_list(await alice.query("get", _own("affiliations"), to=SERVICE), "affiliation")
    assert {n: a["affiliation"] for n, a in affs.items() if n in (first, second)} == {first: "owner", second: "owner"}
    # Filtered by node (§5.6).
    subs_of_second = own_list(await bob.query("get", _own("subscriptions", second), to=SERVICE), "subscription")
    assert subs_of_second == {}


def _own(verb: str, node: str | None = None) -> ET.Element:
    ps = ET.Element(f"{{{NS_PUBSUB}}}pubsub")
    ET.SubElement(ps, f"{{{NS_PUBSUB}}}{verb}", {} if node is None else {"node": node})
    return ps


async def test_the_owner_lists_and_removes_subscriptions(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    carol = await pubsub_user(server, im, "carol")
    await subscribe(carol, node)
    # §8.8.1.
    subs = owner_list(await owner(alice, "subscriptions", node, itype="get"), "subscription")
    assert subs == {bob.bare: "subscribed", carol.bare: "subscribed"}
    # §8.8.2: subscription='none' ends bob's subscription.
    await owner(alice, "subscriptions", node, children=[owner_entry("subscription", bob.bare, "none")])
    assert owner_list(await owner(alice, "subscriptions", node, itype="get"), "subscription") == \
        {carol.bare: "subscribed"}
    await publish(alice, node, entry("for carol only"), "c")
    await carol.inbox.expect(is_event(node), "carol's notification")
    alice.message(bob.full, "marker")
    await nothing_before(bob, is_message(body="marker"), "the marker", is_event(node))


async def test_only_the_owner_manages_subscriptions_and_affiliations(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    # §8.8.1.3.2, §8.9.1.3.2, §8.9.2.3.3: forbidden.
    assert (await error(owner(bob, "subscriptions", node, itype="get")))[:2] == ("auth", "forbidden")
    assert (await error(owner(bob, "affiliations", node, itype="get")))[:2] == ("auth", "forbidden")
    grant = owner_entry("affiliation", bob.bare, "owner")
    assert (await error(owner(bob, "affiliations", node, children=[grant])))[:2] == ("auth", "forbidden")
    assert owner_list(await owner(alice, "affiliations", node, itype="get"), "affiliation") == {alice.bare: "owner"}


async def test_an_outcast_is_refused_and_loses_the_subscription(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    await owner(alice, "affiliations", node, children=[owner_entry("affiliation", bob.bare, "outcast")])
    # §8.9.1, §8.9.2: the affiliation is listed; an outcast's subscription goes (§4.1).
    assert owner_list(await owner(alice, "affiliations", node, itype="get"), "affiliation") == \
        {alice.bare: "owner", bob.bare: "outcast"}
    assert bob.bare not in owner_list(await owner(alice, "subscriptions", node, itype="get"), "subscription")
    # §6.1.3.8: an outcast cannot subscribe.
    assert (await error(subscribe(bob, node)))[:2] == ("auth", "forbidden")
    # ...nor read the node (§4.1, §6.5.9: blocked).
    assert (await error(items(bob, node)))[:2] == ("auth", "forbidden")


async def test_the_owner_can_add_another_owner(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    await owner(alice, "affiliations", node, children=[owner_entry("affiliation", bob.bare, "owner")])
    # bob may configure and delete now.
    await configure(bob, node, title="co-owned")
    assert (await configuration(alice, node))["pubsub#title"] == ["co-owned"]


async def test_concurrent_subscribers_each_get_one_notification(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    readers = await asyncio.gather(*(pubsub_user(server, im, f"r{n}") for n in range(5)))
    await asyncio.gather(*(subscribe(r, node) for r in readers))
    await publish(alice, node, entry("to everyone"), "all")
    await publish(alice, node, entry("marker"), "marker")
    for reader in readers:
        first = await reader.inbox.expect(is_event(node), "the first notification")
        second = await reader.inbox.expect(is_event(node), "the second notification")
        assert [event_items(first), event_items(second)] == [[("all", "to everyone")], [("marker", "marker")]]


# -- a second client library -------------------------------------------------------------------


async def test_aioxmpp_subscribes_and_hears_what_slixmpp_publishes(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    async with aioxmpp_client(server, "carol") as (carol, _stream):
        pubsub = carol.summon(aioxmpp.PubSubClient)
        service = aioxmpp.JID.fromstr(SERVICE)
        await asyncio.wait_for(pubsub.subscribe(service, node), TIMEOUT)
        heard = signal_future(pubsub.on_item_published,
                              lambda jid, n, item, **kw: item if n == node else None)
        await publish(alice, node, entry("for aioxmpp"), "aio")
        item = await asyncio.wait_for(heard, TIMEOUT)
        assert item.id_ == "aio"
        assert isinstance(item.registered_payload, AioEntry) and item.registered_payload.text == "for aioxmpp"
        # aioxmpp publishes too once alice makes it a publisher; alice reads it back.
        await owner(alice, "affiliations", node, children=[owner_entry("affiliation", str(carol.local_jid.bare()),
                                                                       "publisher")])
        await asyncio.wait_for(pubsub.publish(service, node, AioEntry("from aioxmpp"), id_="back"), TIMEOUT)
        assert item_list(await items(alice, node, max_items=1)) == [("back", "from aioxmpp")]


async def test_subscription_options_deliver_false_silences_a_subscription(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    carol = await pubsub_user(server, im, "carol")
    await subscribe(carol, node)
    # §6.3.2: the options form of bob's subscription.
    ps = ET.Element(f"{{{NS_PUBSUB}}}pubsub")
    ET.SubElement(ps, f"{{{NS_PUBSUB}}}options", {"node": node, "jid": bob.bare})
    result = await bob.query("get", ps, to=SERVICE)
    form = result.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}options/{{{NS_DATA}}}x")
    assert form is not None, str(result)
    assert "pubsub#deliver" in form_values(form), str(result)
    # §6.3.5: submitting deliver=false.
    ps = ET.Element(f"{{{NS_PUBSUB}}}pubsub")
    options = ET.SubElement(ps, f"{{{NS_PUBSUB}}}options", {"node": node, "jid": bob.bare})
    options.append(form_el(NS_SUBSCRIBE_OPTIONS, {"pubsub#deliver": False}))
    await bob.query("set", ps, to=SERVICE)

    await publish(alice, node, entry("not for bob"), "quiet")
    await carol.inbox.expect(is_event(node), "carol's notification")
    alice.message(bob.full, "marker")
    await nothing_before(bob, is_message(body="marker"), "the marker", is_event(node))
    # Still subscribed, only silent.
    assert owner_list(await owner(alice, "subscriptions", node, itype="get"), "subscription")[bob.bare] == \
        "subscribed"


# -- collection nodes (XEP-0248) ----------------------------------------------------------------


NS_SHIM = "http://jabber.org/protocol/shim"


async def collection_with_leaf(client):
    """A new collection node and a leaf in it (XEP-0248 §7.1: node_type collection; a leaf
    joins with pubsub#collection)."""
    collection, leaf = node_name("collection"), node_name("leaf")
    await create(client, collection, node_type="collection")
    await create(client, leaf, collection=collection)
    return collection, leaf


async def test_a_collection_lists_its_leaves_and_the_service_its_root_nodes(server, im):
    alice = await pubsub_user(server, im, "alice")
    info = await disco(alice, NS_DISCO_INFO, SERVICE)
    assert f"{NS_PUBSUB}#collections" in {f.get("var") for f in info.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
    collection, leaf = await collection_with_leaf(alice)
    # XEP-0248 §5.2: the collection's disco#items are its children.
    children = await disco(alice, NS_DISCO_ITEMS, SERVICE, collection)
    assert {i.get("node") for i in children.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")} == {leaf}
    roots = {i.get("node") for i in (await disco(alice, NS_DISCO_ITEMS, SERVICE)).xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
    assert collection in roots and leaf not in roots


async def test_items_through_a_collection_name_the_leaf_and_the_collection(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    collection, leaf = await collection_with_leaf(alice)
    # Corvid delivers items to a plain subscription to a collection.
    await subscribe(bob, collection)
    await publish(alice, leaf, entry("in a leaf"), "leafy")
    # XEP-0248 §5.3.1: the event names the leaf, and a SHIM (XEP-0131) header MUST name
    # the collection.
    got = await bob.inbox.expect(is_event(leaf, frm=SERVICE), "the leaf's item through the collection")
    assert event_items(got) == [("leafy", "in a leaf")]
    headers = {h.get("name"): h.text for h in got.xml.iterfind(f"{{{NS_SHIM}}}headers/{{{NS_SHIM}}}header")}
    assert headers.get("Collection") == collection, str(got)


async def test_a_collection_subscription_takes_the_collection_options(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    collection, leaf = await collection_with_leaf(alice)
    # XEP-0248 §6.1: subscription_type and subscription_depth are the subscription options
    # of a collection; XEP-0060 §6.3.7: subscribe and configure in one request.
    ps = ET.Element(f"{{{NS_PUBSUB}}}pubsub")
    ET.SubElement(ps, f"{{{NS_PUBSUB}}}subscribe", {"node": collection, "jid": bob.bare})
    ET.SubElement(ps, f"{{{NS_PUBSUB}}}options").append(
        form_el(NS_SUBSCRIBE_OPTIONS, {"pubsub#subscription_type": "items", "pubsub#subscription_depth": "1"}))
    await bob.query("set", ps, to=SERVICE)
    await publish(alice, leaf, entry("in a leaf"), "leafy")
    got = await bob.inbox.expect(is_event(leaf, frm=SERVICE), "the leaf's item through the collection")
    assert event_items(got) == [("leafy", "in a leaf")]


async def test_a_collection_holds_no_items_of_its_own(server, im):
    alice = await pubsub_user(server, im, "alice")
    collection, _leaf = await collection_with_leaf(alice)
    # XEP-0060 §7.1.3.2 (item publication not supported) and XEP-0248 §6.2.3.
    _, condition, extra, attrs = await error(publish(alice, collection, entry("where?"), "x"))
    assert (condition, extra, attrs.get("feature")) == ("feature-not-implemented", [pubsub_error("unsupported")],
                                                        "publish")
    _, condition, _, attrs = await error(items(alice, collection))
    assert condition == "feature-not-implemented" and attrs.get("feature") in (None, "retrieve-items")


async def test_deleting_a_collection_leaves_its_leaves_at_the_root(server, im):
    alice = await pubsub_user(server, im, "alice")
    collection, leaf = await collection_with_leaf(alice)
    await publish(alice, leaf, entry("still here"), "kept")
    await owner(alice, "delete", collection)
    # The leaf and its items outlive the collection, listed among the service's root nodes.
    roots = {i.get("node") for i in (await disco(alice, NS_DISCO_ITEMS, SERVICE)).xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
    assert leaf in roots and collection not in roots
    assert item_list(await items(alice, leaf)) == [("kept", "still here")]
