"""Push notifications (XEP-0357) with real slixmpp clients: a phone registers an app server
(played by another slixmpp client, as XEP-0357 §3 allows any JID), and a message that waits
for the phone — stored offline — is published to the app server as a summary, with the
phone's publish-options secret, from the phone's account; the account's disco#info says it
can push; a disabled registration, or one the app server refuses, publishes nothing more."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from interop_support import is_message

NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def _field(form: ET.Element, var: str, value: str) -> None:
    field = ET.SubElement(form, f"{{{NS_DATA}}}field", var=var)
    ET.SubElement(field, f"{{{NS_DATA}}}value").text = value


def enable(app: str, node: str, secret: str) -> ET.Element:
    el = ET.Element(f"{{{NS_PUSH}}}enable", jid=app, node=node)
    form = ET.SubElement(el, f"{{{NS_DATA}}}x", type="submit")
    _field(form, "FORM_TYPE", "http://jabber.org/protocol/pubsub#publish-options")
    _field(form, "secret", secret)
    return el


def is_push(node: str | None = None):
    def match(stanza) -> bool:
        if stanza.name != "iq" or stanza["type"] != "set":
            return False
        publish = stanza.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish")
        return publish is not None and (node is None or publish.get("node") == node)
    return match


def form_values(form: ET.Element | None) -> dict[str, str]:
    if form is None:
        return {}
    return {f.get("var"): (f.findtext(f"{{{NS_DATA}}}value") or "") for f in form.findall(f"{{{NS_DATA}}}field")}


def answer(app, iq, condition: str | None = None) -> None:
    reply = app.Iq()
    reply["to"] = iq["from"]
    reply["id"] = iq["id"]
    if condition is None:
        reply["type"] = "result"
    else:
        reply["type"] = "error"
        error = ET.SubElement(reply.xml, "{jabber:client}error", type="cancel")
        ET.SubElement(error, f"{{{NS_STANZAS}}}{condition}")
    reply.send()


async def test_a_message_stored_offline_wakes_the_phone_through_its_app_server(make_im_server, im):
    server = make_im_server("push")
    app = await im.user(server, "appserver")
    sender = await im.user(server, "sender")
    phone = await im.user(server, "phone")
    info = await phone.query("get", ET.Element(f"{{{NS_DISCO_INFO}}}query"), to=phone.bare)
    features = {f.get("var") for f in info.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
    assert NS_PUSH in features, features
    await phone.query("set", enable(app.full, "device-1", "s3cret"))
    phone_bare = phone.bare
    await phone.close()

    sender.message(phone_bare, "are you awake?")
    push = await app.inbox.expect(is_push("device-1"), "a push notification")
    answer(app, push)
    assert push["from"].bare == phone_bare
    pubsub = push.xml.find(f"{{{NS_PUBSUB}}}pubsub")
    summary = form_values(pubsub.find(f"{{{NS_PUBSUB}}}publish/{{{NS_PUBSUB}}}item/{{{NS_PUSH}}}notification/{{{NS_DATA}}}x"))
    assert summary["FORM_TYPE"] == "urn:xmpp:push:summary"
    assert summary["last-message-sender"] == sender.full
    assert "last-message-body" not in summary, "the body stays private by default"
    options = form_values(pubsub.find(f"{{{NS_PUBSUB}}}publish-options/{{{NS_DATA}}}x"))
    assert options["secret"] == "s3cret"

    # The phone comes back: the message waited offline for it.
    back = await im.login(server, f"{phone_bare}/phone", phone.account_password)
    await back.online()
    await back.inbox.expect(is_message(body="are you awake?"), "the offline message")
    # It disables pushes; the next message goes offline without one (the marker comes first).
    disable = ET.Element(f"{{{NS_PUSH}}}disable", jid=app.full)
    await back.query("set", disable)
    await back.close()
    sender.message(phone_bare, "still there?")
    sender.message(app.full, "marker")
    await app.inbox.expect(is_message(body="marker"), "the marker")
    assert not app.inbox.matching(is_push()), "a push after disable"


async def test_an_app_server_refusing_a_notification_loses_the_registration(make_im_server, im):
    server = make_im_server("push-refused")
    app = await im.user(server, "appserver")
    sender = await im.user(server, "sender")
    phone = await im.user(server, "phone")
    await phone.query("set", enable(app.full, "gone", "x"))
    phone_bare = phone.bare
    await phone.close()
    sender.message(phone_bare, "one")
    push = await app.inbox.expect(is_push("gone"), "a push notification")
    answer(app, push, "item-not-found")
    # The server forgets the registration once it has the refusal (in the background): a
    # later message publishes nothing. Each round ends with a marker from the sender.
    for attempt in range(10):
        sender.message(phone_bare, f"again {attempt}")
        sender.message(app.full, f"marker {attempt}")
        await app.inbox.expect(is_message(body=f"marker {attempt}"), "the marker")
        late = app.inbox.discard(is_push())
        if not late:
            break
        for iq in late:
            answer(app, iq, "item-not-found")
    else:
        raise AssertionError("the refused registration kept being notified")
