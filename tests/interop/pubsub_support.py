"""Helpers for the publish-subscribe interop tests (test_pubsub.py, test_pep.py,
test_pubsub_paging.py): slixmpp clients with the pubsub plugins, the XEP-0060 namespaces,
data forms for node configuration and publish-options, and readers for what a client
receives (items, notifications, errors).

The readers work on the XML itself, not on slixmpp's interpretation, so a test asserts on
exactly what the server sent.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

from slixmpp.exceptions import IqError

from interop_support import DOMAIN, NS_DELAY, TIMEOUT, ImClient, error_of

SERVICE = f"pubsub.{DOMAIN}"

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_OWNER = "http://jabber.org/protocol/pubsub#owner"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"
NS_PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
NS_SUBSCRIBE_OPTIONS = "http://jabber.org/protocol/pubsub#subscribe_options"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
#: The payload namespace of the tests' own items.
NS_TEST = "urn:corvid:interop:entry"

NS_AVATAR_DATA = "urn:xmpp:avatar:data"
NS_AVATAR_METADATA = "urn:xmpp:avatar:metadata"
NS_BOOKMARKS = "urn:xmpp:bookmarks:1"
NS_BOOKMARKS_LEGACY = "storage:bookmarks"
NS_PRIVATE = "jabber:iq:private"
NS_OMEMO = "eu.siacs.conversations.axolotl"
NS_OMEMO_DEVICELIST = "eu.siacs.conversations.axolotl.devicelist"

#: Plugins every pubsub test client has. xep_0084 is left out on purpose: registering it
#: advertises `urn:xmpp:avatar:metadata+notify`, which some tests must not do.
PUBSUB_PLUGINS = ("xep_0004", "xep_0030", "xep_0059", "xep_0060", "xep_0115", "xep_0163", "xep_0402")


async def pubsub_user(server, im, prefix: str = "user", *, notify: tuple[str, ...] = (), avatar: bool = False,
                      jid: str | None = None, password: str | None = None, resource: str | None = None,
                      online: bool = True) -> ImClient:
    """A new account (or the given one) logged in with the pubsub plugins. Its XEP-0115
    caps advertise `<ns>+notify` for each namespace in `notify` (XEP-0163 §4.2), and for
    the avatar metadata when `avatar` (slixmpp's xep_0084 does that itself). When `online`,
    it requests its roster and sends initial presence with those caps."""
    if jid is None:
        jid, password = server.new_account(prefix)
    client = im.new(f"{jid}/{resource or prefix}", password)
    for plugin in PUBSUB_PLUGINS:
        client.register_plugin(plugin)
    if avatar:
        client.register_plugin("xep_0084")
    await client.start(server)
    client.account_password = password
    disco = client.plugin["xep_0030"]
    for ns in notify:
        disco.add_feature(f"{ns}+notify")
    # The caps hash must cover the features before the presence that carries it goes out.
    await client.plugin["xep_0115"].update_caps(broadcast=False)
    if online:
        await client.online()
    return client


async def again(server, im, before: ImClient, resource: str = "again", **options) -> ImClient:
    """The account of an earlier client logged in once more (a second resource, or after a
    restart), with the same kind of options as pubsub_user."""
    return await pubsub_user(server, im, jid=before.bare, password=before.account_password, resource=resource,
                             **options)


def node_name(prefix: str = "node") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def entry(text: str) -> ET.Element:
    """A small payload: <entry xmlns='urn:corvid:interop:entry'>text</entry>."""
    el = ET.Element(f"{{{NS_TEST}}}entry")
    el.text = text
    return el


# -- requests ---------------------------------------------------------------------------


def pubsub_el(ns: str = NS_PUBSUB) -> ET.Element:
    return ET.Element(f"{{{ns}}}pubsub")


def form_el(form_type: str, fields: dict, ftype: str = "submit") -> ET.Element:
    """A XEP-0004 form with a hidden FORM_TYPE; list values become several <value/>s."""
    x = ET.Element(f"{{{NS_DATA}}}x", {"type": ftype})
    hidden = ET.SubElement(x, f"{{{NS_DATA}}}field", {"var": "FORM_TYPE", "type": "hidden"})
    ET.SubElement(hidden, f"{{{NS_DATA}}}value").text = form_type
    for var, value in fields.items():
        field = ET.SubElement(x, f"{{{NS_DATA}}}field", {"var": var})
        for v in value if isinstance(value, (list, tuple)) else [value]:
            ET.SubElement(field, f"{{{NS_DATA}}}value").text = _form_value(v)
    return x


def _form_value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def config_form(**fields) -> ET.Element:
    """A pubsub#node_config form; `max_items=5` stands for `pubsub#max_items`."""
    return form_el(NS_NODE_CONFIG, {f"pubsub#{k}": v for k, v in fields.items()})


def publish_options(**fields) -> ET.Element:
    """A pubsub#publish-options form (XEP-0060 §7.1.5)."""
    return form_el(NS_PUBLISH_OPTIONS, {f"pubsub#{k}": v for k, v in fields.items()})


async def create(client, node: str | None, to: str | None = SERVICE, **config):
    """§8.1: creates `node` (None: an instant node, §8.1.2), with a configuration form
    when `config` is given (§8.1.3). Returns the result stanza."""
    ps = pubsub_el()
    attrs = {} if node is None else {"node": node}
    ET.SubElement(ps, f"{{{NS_PUBSUB}}}create", attrs)
    if config:
        ET.SubElement(ps, f"{{{NS_PUBSUB}}}configure").append(config_form(**config))
    return await client.query("set", ps, to=to)


async def publish(client, node: str, payload: ET.Element | None = None, item_id: str | None = None,
                  to: str | None = SERVICE, options: ET.Element | None = None, with_item: bool = True):
    """§7.1: publishes one item; returns the result stanza."""
    ps = pubsub_el()
    pub = ET.SubElement(ps, f"{{{NS_PUBSUB}}}publish", {"node": node})
    if with_item:
        item = ET.SubElement(pub, f"{{{NS_PUBSUB}}}item", {} if item_id is None else {"id": item_id})
        if payload is not None:
            item.append(payload)
    if options is not None:
        ET.SubElement(ps, f"{{{NS_PUBSUB}}}publish-options").append(options)
    return await client.query("set", ps, to=to)


def published_id(result) -> str | None:
    """The item id in a publish result (§7.1.2: the service says which id it gave)."""
    item = result.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish/{{{NS_PUBSUB}}}item")
    return None if item is None else item.get("id")


async def items(client, node: str | None, to: str | None = SERVICE, *, ids: tuple[str, ...] = (),
                max_items: int | None = None, rsm: dict | None = None):
    """§6.5: retrieves items (all, by id, or the `max_items` most recent); `rsm` adds a
    XEP-0059 <set/> ({'max': 10, 'after': 'id'}). Returns the result stanza."""
    ps = pubsub_el()
    attrs = {} if node is None else {"node": node}
    if max_items is not None:
        attrs["max_items"] = str(max_items)
    el = ET.SubElement(ps, f"{{{NS_PUBSUB}}}items", attrs)
    for item_id in ids:
        ET.SubElement(el, f"{{{NS_PUBSUB}}}item", {"id": item_id})
    if rsm is not None:
        s = ET.SubElement(ps, f"{{{NS_RSM}}}set")
        for key, value in rsm.items():
            ET.SubElement(s, f"{{{NS_RSM}}}{key}").text = None if value is None else str(value)
    return await client.query("get", ps, to=to)


def item_list(result) -> list[tuple[str, str | None]]:
    """[(item id, text of the test payload or None)] of an items result, in the order sent."""
    found = []
    for item in result.xml.iterfind(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items/{{{NS_PUBSUB}}}item"):
        payload = item.find(f"{{{NS_TEST}}}entry")
        found.append((item.get("id"), None if payload is None else payload.text))
    return found


def item_ids(result) -> list[str]:
    return [item_id for item_id, _ in item_list(result)]


def item_payload(result, tag: str) -> ET.Element | None:
    """The payload element `tag` ('{ns}local') of the first item of an items result."""
    return result.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items/{{{NS_PUBSUB}}}item/{tag}")


def rsm_of(result) -> dict[str, str | None]:
    """The XEP-0059 <set/> of an items result: {'first', 'last', 'count', 'first_index'}."""
    s = result.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_RSM}}}set")
    if s is None:
        return {}
    first = s.find(f"{{{NS_RSM}}}first")
    return {
        "first": None if first is None else first.text,
        "first_index": None if first is None else first.get("index"),
        "last": s.findtext(f"{{{NS_RSM}}}last"),
        "count": s.findtext(f"{{{NS_RSM}}}count"),
    }


async def subscribe(client, node: str, to: str = SERVICE, jid: str | None = None):
    """§6.1: subscribes the client's bare JID (or `jid`); returns the <subscription/> element."""
    ps = pubsub_el()
    ET.SubElement(ps, f"{{{NS_PUBSUB}}}subscribe", {"node": node, "jid": jid or client.bare})
    result = await client.query("set", ps, to=to)
    sub = result.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}subscription")
    assert sub is not None, f"no <subscription/> in {result}"
    return sub


async def node_with_subscriber(server, im, **config):
    """alice owns a new node (with `config`), bob subscribes to it."""
    alice = await pubsub_user(server, im, "alice")
    bob = await pubsub_user(server, im, "bob")
    node = node_name()
    await create(alice, node, **config)
    await subscribe(bob, node)
    return alice, bob, node


async def unsubscribe(client, node: str, to: str = SERVICE, jid: str | None = None, subid: str | None = None):
    ps = pubsub_el()
    attrs = {"node": node, "jid": jid or client.bare}
    if subid is not None:
        attrs["subid"] = subid
    ET.SubElement(ps, f"{{{NS_PUBSUB}}}unsubscribe", attrs)
    return await client.query("set", ps, to=to)


async def retract(client, node: str, item_id: str | None, to: str = SERVICE, notify: bool | None = None):
    ps = pubsub_el()
    attrs = {"node": node}
    if notify is not None:
        attrs["notify"] = "true" if notify else "false"
    el = ET.SubElement(ps, f"{{{NS_PUBSUB}}}retract", attrs)
    if item_id is not None:
        ET.SubElement(el, f"{{{NS_PUBSUB}}}item", {"id": item_id})
    return await client.query("set", ps, to=to)


async def owner(client, verb: str, node: str | None, to: str = SERVICE, children: list[ET.Element] = (),
                itype: str = "set", **attrs):
    """A request in the #owner namespace: <pubsub xmlns='…#owner'><verb node='…'>children…"""
    ps = pubsub_el(NS_OWNER)
    if node is not None:
        attrs["node"] = node
    el = ET.SubElement(ps, f"{{{NS_OWNER}}}{verb}", attrs)
    for child in children:
        el.append(child)
    return await client.query(itype, ps, to=to)


def owner_entry(verb: str, jid: str, value: str) -> ET.Element:
    """An owner <affiliation jid affiliation/> or <subscription jid subscription/>."""
    return ET.Element(f"{{{NS_OWNER}}}{verb}", {"jid": jid, verb: value})


async def configuration(client, node: str | None, to: str = SERVICE) -> dict[str, list[str]]:
    """§8.2: the node's configuration form as {var: [values]} (None: the default, §8.3)."""
    if node is None:
        result = await owner(client, "default", None, to=to, itype="get")
    else:
        result = await owner(client, "configure", node, to=to, itype="get")
    x = result.xml.find(f".//{{{NS_DATA}}}x")
    assert x is not None, f"no form in {result}"
    return form_values(x)


def form_values(x: ET.Element) -> dict[str, list[str]]:
    return {f.get("var"): [v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")]
            for f in x.findall(f"{{{NS_DATA}}}field") if f.get("var")}


async def configure(client, node: str, to: str = SERVICE, **fields):
    form = config_form(**fields)
    return await owner(client, "configure", node, to=to, children=[form])


async def disco(client, ns: str, to: str, node: str | None = None):
    attrs = {} if node is None else {"node": node}
    return await client.query("get", ET.Element(f"{{{ns}}}query", attrs), to=to)


# -- errors -----------------------------------------------------------------------------


async def error(request) -> tuple[str | None, str | None, list[str], dict[str, str]]:
    """Awaits a request that must fail; returns (error type, defined condition,
    application-specific conditions as '{ns}local', attributes of the first of those)."""
    try:
        result = await request
    except IqError as e:
        etype, condition, extra = error_of(e.iq)
        el = e.iq.xml.find("{jabber:client}error")
        attrs = {}
        for child in el if el is not None else []:
            if child.tag.startswith(f"{{{NS_ERRORS}}}"):
                attrs = dict(child.attrib)
        return etype, condition, extra, attrs
    raise AssertionError(f"expected an error, got {result}")


def pubsub_error(name: str) -> str:
    return f"{{{NS_ERRORS}}}{name}"


# -- notifications (§7.1.2.1, §7.2.2.1, §8.4.2, §8.5.2) -----------------------------------


def event_of(stanza) -> ET.Element | None:
    if stanza.name != "message":
        return None
    return stanza.xml.find(f"{{{NS_EVENT}}}event")


def is_event(node: str, kind: str = "items", *, frm: str | None = None):
    """A message with a pubsub#event whose child is <kind node='node'/> (items, purge,
    delete, configuration), from `frm` when given."""
    def match(stanza) -> bool:
        event = event_of(stanza)
        if event is None:
            return False
        if frm is not None and stanza.xml.get("from") != frm:
            return False
        return any(child.tag == f"{{{NS_EVENT}}}{kind}" and child.get("node") == node for child in event)
    return match


def any_event(stanza) -> bool:
    return event_of(stanza) is not None


def event_items(stanza) -> list[tuple[str, str | None]]:
    """[(item id, test payload text)] of an items notification."""
    found = []
    for item in stanza.xml.iterfind(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items/{{{NS_EVENT}}}item"):
        payload = item.find(f"{{{NS_TEST}}}entry")
        found.append((item.get("id"), None if payload is None else payload.text))
    return found


def event_retracts(stanza) -> list[str]:
    return [r.get("id") for r in stanza.xml.iterfind(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items/{{{NS_EVENT}}}retract")]


def event_item_payload(stanza, tag: str) -> ET.Element | None:
    return stanza.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items/{{{NS_EVENT}}}item/{tag}")


def delay_of(stanza) -> ET.Element | None:
    return stanza.xml.find(f"{{{NS_DELAY}}}delay")


async def nothing_before(client: ImClient, marker, what: str, unwanted) -> None:
    """Waits for the stanza `marker` accepts, then fails if any stanza `unwanted` accepts
    arrived before it (the server routes a sender's stanzas to one client in order)."""
    await client.inbox.expect(marker, what, timeout=TIMEOUT)
    got = client.inbox.matching(unwanted)
    assert got == [], f"{client.bare} received what it must not: {[str(s) for s in got]}"
