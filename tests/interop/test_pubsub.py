"""Publish-subscribe (XEP-0060 1.25) on the service pubsub.localhost, with real slixmpp
clients: discovery, and the node lifecycle (create instant or with a form, configure,
publish, replace, retract, purge, delete with redirect) with the errors the XEP names for
each step. Each test makes nodes of its own. Subscriptions and affiliations are in
test_pubsub_subscriptions.py, paging over large nodes in test_pubsub_paging.py, PEP in
test_pep.py."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from interop_support import DOMAIN
from pubsub_support import (
    node_with_subscriber,
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_EVENT,
    NS_OWNER,
    NS_PUBSUB,
    SERVICE,
    configuration,
    configure,
    create,
    disco,
    entry,
    error,
    event_items,
    event_retracts,
    is_event,
    item_ids,
    item_list,
    items,
    node_name,
    owner,
    owner_entry,
    publish,
    publish_options,
    published_id,
    pubsub_error,
    pubsub_user,
    retract,
)


# -- discovery (§5) ---------------------------------------------------------------------


async def test_the_service_is_listed_by_the_server_and_says_it_is_a_pubsub_service(server, im):
    alice = await pubsub_user(server, im, "alice")
    listed = await disco(alice, NS_DISCO_ITEMS, DOMAIN)
    assert SERVICE in {i.get("jid") for i in listed.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}, str(listed)
    info = await disco(alice, NS_DISCO_INFO, SERVICE)
    identities = {(i.get("category"), i.get("type")) for i in info.xml.iter(f"{{{NS_DISCO_INFO}}}identity")}
    # §5.1: identity pubsub/service; features name what the service supports.
    assert ("pubsub", "service") in identities, str(info)
    features = {f.get("var") for f in info.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
    for feature in ("create-nodes", "publish", "subscribe", "retrieve-items", "retract-items", "purge-nodes",
                    "delete-nodes", "config-node", "instant-nodes", "publish-options", "manage-subscriptions",
                    "modify-affiliations", "outcast-affiliation", "retrieve-subscriptions",
                    "retrieve-affiliations", "persistent-items", "item-ids"):
        assert f"{NS_PUBSUB}#{feature}" in features, f"{feature} missing from {sorted(features)}"


async def test_disco_lists_the_nodes_of_the_service_and_the_items_of_a_node(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node, title="Alice's news")
    await publish(alice, node, entry("one"), "first")
    await publish(alice, node, entry("two"), "second")

    # §5.2: the service's items are its nodes.
    nodes = await disco(alice, NS_DISCO_ITEMS, SERVICE)
    assert (SERVICE, node) in {(i.get("jid"), i.get("node")) for i in nodes.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
    # §5.3: a node's info: identity pubsub/leaf.
    info = await disco(alice, NS_DISCO_INFO, SERVICE, node)
    assert info.xml.find(f"{{{NS_DISCO_INFO}}}query").get("node") == node
    identities = {(i.get("category"), i.get("type")) for i in info.xml.iter(f"{{{NS_DISCO_INFO}}}identity")}
    assert ("pubsub", "leaf") in identities, str(info)
    # §5.5: a node's items are its items, the id in 'name'.
    listed = await disco(alice, NS_DISCO_ITEMS, SERVICE, node)
    assert {(i.get("jid"), i.get("name")) for i in listed.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")} == \
        {(SERVICE, "first"), (SERVICE, "second")}


async def test_disco_info_of_a_missing_node_is_item_not_found(server, im):
    alice = await pubsub_user(server, im, "alice")
    _, condition, _, _ = await error(disco(alice, NS_DISCO_INFO, SERVICE, node_name("missing")))
    assert condition == "item-not-found"


# -- creating and configuring nodes (§8.1–§8.3) --------------------------------------------


async def test_default_configuration_is_what_the_service_documents(server, im):
    alice = await pubsub_user(server, im, "alice")
    # §8.3: the default node configuration.
    default = await configuration(alice, None)
    expected = {
        "pubsub#access_model": ["open"],
        "pubsub#publish_model": ["publishers"],
        "pubsub#max_items": ["256"],
        "pubsub#send_last_published_item": ["never"],
        "pubsub#deliver_payloads": ["1"],
        "pubsub#notify_retract": ["1"],
        "pubsub#notify_delete": ["1"],
        "pubsub#notify_config": ["0"],
        "pubsub#persist_items": ["1"],
    }
    got = {var: [{"true": "1", "false": "0"}.get(v, v) for v in default.get(var, [])] for var in expected}
    assert got == expected


async def test_an_instant_node_gets_a_name_from_the_service(server, im):
    alice = await pubsub_user(server, im, "alice")
    # §8.1.2: <create/> without a node; the service names it in the result.
    result = await create(alice, None)
    created = result.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}create")
    assert created is not None and created.get("node"), str(result)
    name = created.get("node")
    await publish(alice, name, entry("in an instant node"), "x")
    assert item_list(await items(alice, name)) == [("x", "in an instant node")]


async def test_a_node_created_with_a_form_has_that_configuration(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node, max_items=7, title="Seven", notify_retract=False)
    config = await configuration(alice, node)
    assert config["pubsub#max_items"] == ["7"]
    assert config["pubsub#title"] == ["Seven"]
    assert config["pubsub#notify_retract"] in (["0"], ["false"])


async def test_configuration_submitted_by_the_owner_is_kept(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    await configure(alice, node, max_items=3, title="Renamed", send_last_published_item="on_sub")
    config = await configuration(alice, node)
    assert (config["pubsub#max_items"], config["pubsub#title"], config["pubsub#send_last_published_item"]) == \
        (["3"], ["Renamed"], ["on_sub"])


async def test_max_items_keeps_only_the_most_recent_items(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node, max_items=3)
    for n in range(1, 6):
        await publish(alice, node, entry(f"number {n}"), f"i{n}")
    # Items come newest first; the two oldest were dropped.
    assert item_list(await items(alice, node)) == [("i5", "number 5"), ("i4", "number 4"), ("i3", "number 3")]
    # Lowering max_items drops the oldest beyond it at once.
    await configure(alice, node, max_items=2)
    assert item_ids(await items(alice, node)) == ["i5", "i4"]


async def test_max_items_max_is_accepted(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node, max_items="max")
    config = await configuration(alice, node)
    # The service caps `max` at its own limit, which is at least 10000.
    value = config["pubsub#max_items"][0]
    assert value == "max" or int(value) >= 10000, config["pubsub#max_items"]


async def test_creating_an_existing_node_is_a_conflict(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node)
    # §8.1.1: the NodeID exists already: conflict.
    assert (await error(create(bob, node)))[:2] == ("cancel", "conflict")
    assert (await error(create(alice, node)))[:2] == ("cancel", "conflict")


async def test_configuring_someone_elses_node_is_forbidden(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node, title="Alice's")
    # §8.2.3.2, §8.2.5: only owners get or submit the form.
    assert (await error(owner(bob, "configure", node, itype="get")))[:2] == ("auth", "forbidden")
    assert (await error(configure(bob, node, title="Bob's now")))[:2] == ("auth", "forbidden")
    assert (await configuration(alice, node))["pubsub#title"] == ["Alice's"]


async def test_configuring_a_missing_node_is_item_not_found(server, im):
    alice = await pubsub_user(server, im, "alice")
    # §8.2.3.5: the node does not exist.
    assert (await error(owner(alice, "configure", node_name("missing"), itype="get")))[:2] == \
        ("cancel", "item-not-found")


# -- publishing (§7.1) ---------------------------------------------------------------------


async def test_publish_without_an_id_gets_one_from_the_service(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    result = await publish(alice, node, entry("no id given"))
    # §7.1.2: the service generates an id and says it in the result.
    item_id = published_id(result)
    assert item_id, str(result)
    assert item_list(await items(alice, node)) == [(item_id, "no id given")]
    other = published_id(await publish(alice, node, entry("another")))
    assert other and other != item_id


async def test_publishing_an_existing_id_replaces_the_item_and_makes_it_the_newest(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    for item_id in ("a", "b", "c"):
        await publish(alice, node, entry(f"{item_id} v1"), item_id)
    await publish(alice, node, entry("a v2"), "a")
    assert item_list(await items(alice, node)) == [("a", "a v2"), ("c", "c v1"), ("b", "b v1")]
    assert item_list(await items(alice, node, max_items=1)) == [("a", "a v2")]


async def test_items_by_id_and_max_items(server, im):
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node)
    for n in range(1, 5):
        await publish(alice, node, entry(f"n{n}"), f"i{n}")
    # §6.5.8: by id; §6.5.7: the N most recent; any user reads an open node (§4.5).
    assert item_list(await items(bob, node, ids=("i2",))) == [("i2", "n2")]
    assert item_ids(await items(bob, node, max_items=2)) == ["i4", "i3"]
    assert item_ids(await items(bob, node)) == ["i4", "i3", "i2", "i1"]


async def test_asking_for_an_item_that_is_not_there_gives_an_empty_result(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    await publish(alice, node, entry("here"), "here")
    # §6.5.9.12: an empty <items/>, not an error.
    result = await items(alice, node, ids=("not-here",))
    assert result.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items") is not None, str(result)
    assert item_list(result) == []


async def test_publish_to_a_missing_node_is_item_not_found(server, im):
    alice = await pubsub_user(server, im, "alice")
    # On the service a node must be created first (§7.1.3.3).
    assert (await error(publish(alice, node_name("missing"), entry("lost"), "x")))[:2] == \
        ("cancel", "item-not-found")


async def test_publish_by_someone_who_is_not_a_publisher_is_forbidden(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    # §7.1.3.1: publish_model publishers; bob is only a subscriber.
    assert (await error(publish(bob, node, entry("from bob"), "b")))[:2] == ("auth", "forbidden")
    assert item_list(await items(alice, node)) == []


async def test_a_publisher_affiliation_lets_another_user_publish(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    await owner(alice, "affiliations", node, children=[owner_entry("affiliation", bob.bare, "publisher")])
    await publish(bob, node, entry("from bob"), "b")
    assert item_list(await items(alice, node)) == [("b", "from bob")]


async def test_publish_without_an_item_to_a_persistent_node_is_item_required(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    # §7.1.3.6: persist_items is true, so <publish/> needs an <item/>.
    _, condition, extra, _ = await error(publish(alice, node, with_item=False))
    assert (condition, extra) == ("bad-request", [pubsub_error("item-required")])


async def test_publish_of_an_empty_item_to_a_payload_node_is_payload_required(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    # §7.1.3.6: the node delivers payloads, so an item needs one.
    _, condition, extra, _ = await error(publish(alice, node, None, "empty"))
    assert (condition, extra) == ("bad-request", [pubsub_error("payload-required")])
    assert item_list(await items(alice, node)) == []


async def test_publish_of_an_item_to_a_transient_notification_node_is_item_forbidden(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node, persist_items=False, deliver_payloads=False)
    # §7.1.3.6: notification + transient: a publish carries no item.
    _, condition, extra, _ = await error(publish(alice, node, entry("not wanted"), "x"))
    assert (condition, extra) == ("bad-request", [pubsub_error("item-forbidden")])


async def test_publish_with_two_payloads_is_invalid_payload(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    ps = ET.Element(f"{{{NS_PUBSUB}}}pubsub")
    item = ET.SubElement(ET.SubElement(ps, f"{{{NS_PUBSUB}}}publish", {"node": node}), f"{{{NS_PUBSUB}}}item",
                         {"id": "two"})
    item.append(entry("one payload"))
    item.append(entry("and another"))
    # §7.1.3.5: an item holds exactly one payload element.
    _, condition, extra, _ = await error(alice.query("set", ps, to=SERVICE))
    assert (condition, extra) == ("bad-request", [pubsub_error("invalid-payload")])


async def test_retract_without_a_node_is_nodeid_required(server, im):
    alice = await pubsub_user(server, im, "alice")
    ps = ET.Element(f"{{{NS_PUBSUB}}}pubsub")
    ET.SubElement(ET.SubElement(ps, f"{{{NS_PUBSUB}}}retract"), f"{{{NS_PUBSUB}}}item", {"id": "which?"})
    # §7.2.3.3: bad-request + nodeid-required.
    _, condition, extra, _ = await error(alice.query("set", ps, to=SERVICE))
    assert (condition, extra) == ("bad-request", [pubsub_error("nodeid-required")])


async def test_items_without_a_node_is_nodeid_required(server, im):
    alice = await pubsub_user(server, im, "alice")
    # A request about a node must name it: bad-request + nodeid-required (as §7.2.3.3, §8.2.3.3).
    _, condition, extra, _ = await error(items(alice, None))
    assert (condition, extra) == ("bad-request", [pubsub_error("nodeid-required")])


async def test_an_item_over_the_size_limit_is_payload_too_big(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    # §7.1.3.4: not-acceptable + payload-too-big. 200 kB is over the server's default item
    # limit and under its stanza limit (256 KiB), so the stream stays up to hear the error.
    big = entry("x" * 200_000)
    _, condition, extra, _ = await error(publish(alice, node, big, "big"))
    assert (condition, extra) == ("not-acceptable", [pubsub_error("payload-too-big")])
    assert item_list(await items(alice, node)) == []


async def test_publish_options_that_differ_from_the_node_are_precondition_not_met(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node, access_model="open")
    # §7.1.5: preconditions that match: published.
    await publish(alice, node, entry("fits"), "ok", options=publish_options(access_model="open"))
    # ...and that do not: conflict + precondition-not-met, nothing published.
    etype, condition, extra, _ = await error(
        publish(alice, node, entry("does not fit"), "no", options=publish_options(access_model="whitelist")))
    assert (etype, condition, extra) == ("cancel", "conflict", [pubsub_error("precondition-not-met")])
    # A field the service does not know is refused too (§7.1.5: MUST reject).
    await error(publish(alice, node, entry("unknown option"), "odd", options=publish_options(no_such_option="1")))
    assert item_ids(await items(alice, node)) == ["ok"]


# -- retract, purge, delete (§7.2, §8.4, §8.5) ------------------------------------------------


async def test_retract_with_notify_tells_subscribers(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    await publish(alice, node, entry("short-lived"), "gone")
    await publish(alice, node, entry("stays"), "stays")
    await bob.inbox.expect(lambda s: is_event(node)(s) and event_items(s) == [("stays", "stays")], "publish")
    await retract(alice, node, "gone", notify=True)
    # §7.2.2.1: <retract id='…'/> in the items notification.
    got = await bob.inbox.expect(lambda s: is_event(node)(s) and event_retracts(s), "the retraction")
    assert event_retracts(got) == ["gone"]
    assert item_ids(await items(alice, node)) == ["stays"]


async def test_retract_of_a_missing_item_is_item_not_found(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    # §7.2.3: the item does not exist.
    assert (await error(retract(alice, node, "never-there")))[:2] == ("cancel", "item-not-found")


async def test_retract_without_an_item_id_is_item_required(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node)
    # §7.2.3.4: item-required.
    _, condition, extra, _ = await error(retract(alice, node, None))
    assert (condition, extra) == ("bad-request", [pubsub_error("item-required")])


async def test_retract_by_someone_else_is_forbidden(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    await publish(alice, node, entry("alice's"), "mine")
    # §7.2.3.1: insufficient privileges.
    assert (await error(retract(bob, node, "mine")))[:2] == ("auth", "forbidden")
    assert item_ids(await items(alice, node)) == ["mine"]


async def test_purge_removes_every_item_and_tells_subscribers(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    for n in range(3):
        await publish(alice, node, entry(f"n{n}"), f"i{n}")
    await owner(alice, "purge", node)
    # §8.5.2: <purge node='…'/>.
    await bob.inbox.expect(is_event(node, "purge", frm=SERVICE), "the purge notification")
    assert item_list(await items(alice, node)) == []
    # The node is still there and still delivers.
    await publish(alice, node, entry("after the purge"), "after")
    await bob.inbox.expect(lambda s: is_event(node)(s) and event_items(s) == [("after", "after the purge")],
                           "the notification of an item published after the purge")


async def test_purge_by_someone_else_is_forbidden(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    await publish(alice, node, entry("kept"), "kept")
    # §8.5.3.2: insufficient privileges.
    assert (await error(owner(bob, "purge", node)))[:2] == ("auth", "forbidden")
    assert item_ids(await items(alice, node)) == ["kept"]


async def test_purge_of_a_node_that_keeps_no_items_is_unsupported_persistent_items(server, im):
    alice = await pubsub_user(server, im, "alice")
    node = node_name()
    await create(alice, node, persist_items=False)
    # §8.5.3.3 (as §7.2.3.5): feature-not-implemented + unsupported feature='persistent-items'.
    _, condition, extra, attrs = await error(owner(alice, "purge", node))
    assert (condition, extra, attrs.get("feature")) == \
        ("feature-not-implemented", [pubsub_error("unsupported")], "persistent-items")


async def test_delete_with_redirect_tells_subscribers_and_removes_the_node(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    await publish(alice, node, entry("last words"), "last")
    await bob.inbox.expect(is_event(node), "the publish notification")
    successor = node_name("successor")
    await create(alice, successor)
    redirect = ET.Element(f"{{{NS_OWNER}}}redirect", {"uri": f"xmpp:{SERVICE}?;node={successor}"})
    await owner(alice, "delete", node, children=[redirect])
    # §8.4.2: <delete node='…'><redirect uri='…'/></delete>.
    got = await bob.inbox.expect(is_event(node, "delete", frm=SERVICE), "the delete notification")
    uri = got.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}delete/{{{NS_EVENT}}}redirect")
    assert uri is not None and uri.get("uri") == f"xmpp:{SERVICE}?;node={successor}", str(got)
    assert (await error(items(alice, node)))[1] == "item-not-found"
    nodes = await disco(alice, NS_DISCO_ITEMS, SERVICE)
    assert node not in {i.get("node") for i in nodes.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
    # The name is free again.
    await create(alice, node)


async def test_delete_by_someone_else_is_forbidden_and_a_missing_node_item_not_found(server, im):
    alice, bob, node = await node_with_subscriber(server, im)
    # §8.4.3.1, §8.4.3.2.
    assert (await error(owner(bob, "delete", node)))[:2] == ("auth", "forbidden")
    assert (await error(owner(alice, "delete", node_name("missing"))))[:2] == ("cancel", "item-not-found")
    assert item_ids(await items(alice, node)) == []


# -- what the configuration changes in notifications (§7.1.2.2, §8.2.5.3) ------------------------


async def test_without_deliver_payloads_notifications_carry_only_the_item_id(server, im):
    alice, bob, node = await node_with_subscriber(server, im, deliver_payloads=False)
    await publish(alice, node, entry("fetch me"), "light")
    got = await bob.inbox.expect(is_event(node, frm=SERVICE), "the notification")
    # §7.1.2.2: the item's id, no payload; the subscriber fetches it.
    assert event_items(got) == [("light", None)]
    assert item_list(await items(bob, node, ids=("light",))) == [("light", "fetch me")]


async def test_notify_config_tells_subscribers_of_a_new_configuration(server, im):
    alice, bob, node = await node_with_subscriber(server, im, notify_config=True)
    await configure(alice, node, title="New title", notify_config=True)
    # §8.2.5.3: <configuration node='…'/> when notify_config is true.
    await bob.inbox.expect(is_event(node, "configuration", frm=SERVICE), "the configuration notification")


# -- the service's configuration (`[pubsub]`) ---------------------------------------------------


async def test_with_create_admins_a_user_may_not_create_nodes(make_im_server, im):
    own = make_im_server("pubsub-admins", sections={"pubsub": {"create": "admins"}})
    alice = await pubsub_user(own, im, "alice")
    # §8.1.1: a requester without the privilege to create nodes gets forbidden.
    assert (await error(create(alice, node_name())))[:2] == ("auth", "forbidden")


async def test_the_service_domain_follows_the_config(make_im_server, im):
    own = make_im_server("pubsub-domain", sections={"pubsub": {"domain": f"news.{DOMAIN}"}})
    alice = await pubsub_user(own, im, "alice")
    listed = await disco(alice, NS_DISCO_ITEMS, DOMAIN)
    jids = {i.get("jid") for i in listed.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
    assert f"news.{DOMAIN}" in jids and SERVICE not in jids, str(listed)
    node = node_name()
    await create(alice, node, to=f"news.{DOMAIN}")
    await publish(alice, node, entry("on the news service"), "n", to=f"news.{DOMAIN}")
    assert item_list(await items(alice, node, to=f"news.{DOMAIN}")) == [("n", "on the news service")]
