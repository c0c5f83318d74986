"""Rosters and presence subscriptions with real clients (RFC 6121 §2, §3): roster get, set,
remove and the pushes that follow, roster versioning, the subscription state machine in
both directions, pre-approval, the server's automatic replies, and requests kept for users
who are offline."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import pytest

from interop_support import (
    DOMAIN,
    NS_PREAPPROVAL,
    NS_ROSTER,
    NS_ROSTERVER,
    IqError,
    befriend,
    iq_error_condition,
    is_message,
    is_presence,
    is_roster_push,
    roster_items,
    roster_ver,
)


def someone() -> str:
    """A JID for roster items; no account needs to exist for a roster set."""
    return f"contact-{uuid.uuid4().hex[:8]}@{DOMAIN}"


def plain_item(name=None, groups=()):
    return {"subscription": "none", "ask": None, "approved": None, "name": name, "groups": sorted(groups)}


# -- roster management (§2) ------------------------------------------------------------


async def test_stream_features_offer_roster_versioning(server, im):
    alice = await im.user(server, "alice")
    # RFC 6121 §2.6.1
    assert alice.offered(f"{{{NS_ROSTERVER}}}ver"), [ET.tostring(f).decode() for f in alice.stream_features]


async def test_stream_features_offer_subscription_pre_approval(server, im):
    alice = await im.user(server, "alice")
    # RFC 6121 §3.4
    assert alice.offered(f"{{{NS_PREAPPROVAL}}}sub"), [ET.tostring(f).decode() for f in alice.stream_features]


async def test_new_account_has_an_empty_roster(server, im):
    alice = await im.user(server, "alice")
    result = await alice.roster_get()
    assert result["type"] == "result"
    assert roster_items(result) == {}, str(result)


async def test_roster_set_adds_item_and_pushes_it_to_every_interested_resource(server, im):
    jid, password = server.new_account("alice")
    one = await im.online(server, f"{jid}/one", password)
    two = await im.online(server, f"{jid}/two", password)
    contact = someone()

    result = await one.roster_set(contact, name="Carl 卡尔 <&>", groups=("Friends", "Work"))
    assert result["type"] == "result"
    # RFC 6121 §2.3.2: a push to all interested resources, the one that set it included.
    for resource in (one, two):
        push = await resource.inbox.expect(is_roster_push(contact), f"roster push of {contact}")
        # §2.1.6: a push comes from the user's bare JID or has no 'from'.
        assert push.xml.get("from") in (None, jid), str(push)
        assert roster_items(push)[contact] == plain_item("Carl 卡尔 <&>", ("Friends", "Work"))
    assert (await two.roster_now())[contact] == plain_item("Carl 卡尔 <&>", ("Friends", "Work"))


async def test_roster_push_skips_resources_that_never_requested_the_roster(server, im):
    jid, password = server.new_account("alice")
    interested = await im.online(server, f"{jid}/interested", password)
    quiet = await im.login(server, f"{jid}/quiet", password)
    contact = someone()
    await interested.roster_set(contact, name="C")
    await interested.inbox.expect(is_roster_push(contact), "roster push")
    # A push to 'quiet' would have been queued before this message (RFC 6121 §2.1.6:
    # pushes go to interested resources only).
    marker = interested.message(quiet.full, "marker")
    await quiet.inbox.expect(is_message(mid=marker), "the marker message")
    assert quiet.inbox.matching(is_roster_push()) == []


async def test_roster_update_replaces_name_and_groups(server, im):
    alice = await im.user(server, "alice")
    contact = someone()
    await alice.roster_set(contact, name="Old", groups=("A", "B"))
    await alice.inbox.expect(is_roster_push(contact, name="Old"), "push of the new item")
    await alice.roster_set(contact, name="New", groups=("C",))
    # RFC 6121 §2.4: the item is replaced, groups included.
    push = await alice.inbox.expect(is_roster_push(contact, name="New"), "push of the updated item")
    assert roster_items(push)[contact] == plain_item("New", ("C",))
    assert (await alice.roster_now()) == {contact: plain_item("New", ("C",))}


async def test_roster_remove_deletes_item_and_pushes_remove(server, im):
    jid, password = server.new_account("alice")
    one = await im.online(server, f"{jid}/one", password)
    two = await im.online(server, f"{jid}/two", password)
    keep, drop = someone(), someone()
    await one.roster_set(keep)
    await one.roster_set(drop, groups=("G",))
    await two.inbox.expect(is_roster_push(drop), "push of the added item")

    result = await one.roster_set(drop, subscription="remove")
    assert result["type"] == "result"
    # RFC 6121 §2.5.2: a push with subscription='remove' to every interested resource.
    for resource in (one, two):
        await resource.inbox.expect(is_roster_push(drop, subscription="remove"), f"remove push of {drop}")
    assert set(await one.roster_now()) == {keep}


async def test_removing_an_item_not_in_the_roster_is_item_not_found(server, im):
    alice = await im.user(server, "alice")
    with pytest.raises(IqError) as failed:
        await alice.roster_set(someone(), subscription="remove")
    # RFC 6121 §2.5.3
    assert iq_error_condition(failed.value) == "item-not-found"


async def test_roster_set_with_two_items_is_bad_request(server, im):
    alice = await im.user(server, "alice")
    query = ET.Element(f"{{{NS_ROSTER}}}query")
    ET.SubElement(query, f"{{{NS_ROSTER}}}item", {"jid": someone()})
    ET.SubElement(query, f"{{{NS_ROSTER}}}item", {"jid": someone()})
    with pytest.raises(IqError) as failed:
        await alice.query("set", query)
    # RFC 6121 §2.3.3
    assert iq_error_condition(failed.value) == "bad-request"
    assert await alice.roster_now() == {}


async def test_roster_set_ignores_a_subscription_other_than_remove(server, im):
    alice = await im.user(server, "alice")
    contact = someone()
    # RFC 6121 §2.1.2.5: in a roster set the server MUST ignore subscription values other
    # than "remove"; a client cannot grant itself a subscription.
    await alice.roster_set(contact, name="Sneaky", subscription="both")
    push = await alice.inbox.expect(is_roster_push(contact), "roster push")
    assert roster_items(push)[contact]["subscription"] == "none", str(push)
    assert (await alice.roster_now())[contact]["subscription"] == "none"


# -- roster versioning (§2.6) ------------------------------------------------------------


async def test_roster_version_up_to_date_gets_empty_result_then_pushes(server, im):
    jid, password = server.new_account("alice")
    alice = await im.online(server, f"{jid}/first", password)
    first = await alice.roster_get(ver="")
    # RFC 6121 §2.6.3: a client that asked with 'ver' gets the roster with its version.
    assert roster_ver(first) is not None, str(first)

    contact = someone()
    await alice.roster_set(contact, name="One")
    push = await alice.inbox.expect(is_roster_push(contact), "roster push")
    current = roster_ver(push)
    # §2.1.6, §2.6: pushes carry the new version, which differs from the one before.
    assert current and current != roster_ver(first), str(push)

    again = await im.login(server, f"{jid}/again", password)
    result = await again.roster_get(ver=current)
    # §2.6.3: nothing changed since `current`: an empty IQ-result, no <query/>.
    assert result["type"] == "result"
    assert result.xml.find(f"{{{NS_ROSTER}}}query") is None, str(result)
    # … and later changes arrive as pushes.
    later = someone()
    await alice.roster_set(later)
    push = await again.inbox.expect(is_roster_push(later), "roster push after the empty result")
    assert roster_ver(push) not in (None, current), str(push)


async def test_roster_version_out_of_date_gets_the_changes(server, im):
    jid, password = server.new_account("alice")
    alice = await im.online(server, f"{jid}/first", password)
    old = roster_ver(await alice.roster_get(ver=""))
    assert old is not None
    first, second = someone(), someone()
    await alice.roster_set(first, name="First")
    await alice.roster_set(second, name="Second")
    await alice.inbox.expect(is_roster_push(second), "roster push")

    stale = await im.login(server, f"{jid}/stale", password)
    result = await stale.roster_get(ver=old)
    items = roster_items(result)
    # RFC 6121 §2.6.3: either the whole roster (with the current version), or an empty
    # result followed by one push per change since `old`.
    if items is not None:
        assert set(items) == {first, second}, str(result)
        assert roster_ver(result) not in (None, old), str(result)
    else:
        await stale.inbox.expect(is_roster_push(first, name="First"), f"push of {first}")
        await stale.inbox.expect(is_roster_push(second, name="Second"), f"push of {second}")


# -- subscriptions (§3) ------------------------------------------------------------------


async def test_subscription_request_and_approval(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob", show="away", status="bob is here")

    alice.send_presence(pto=bob.bare, ptype="subscribe")  # slixmpp's own call
    # §3.1.2: the user's server pushes the item with ask='subscribe' ("None + Pending Out").
    await alice.inbox.expect(is_roster_push(bob.bare, subscription="none", ask="subscribe"),
                             "push of bob with ask='subscribe'")
    # §3.1.3: delivered to the contact, stamped with the user's bare JID.
    request = await bob.inbox.expect(is_presence("subscribe", from_bare=alice.bare), "subscription request")
    assert request.xml.get("from") == alice.bare, str(request)

    bob.presence("subscribed", to=alice.bare)
    # §3.1.5: the contact's roster now has 'from'.
    await bob.inbox.expect(is_roster_push(alice.bare, subscription="from", ask=None), "push of alice with 'from'")
    # §3.1.6: the user gets 'subscribed' from the contact's bare JID, a push with 'to'
    # (no longer pending), and the contact's current presence.
    await alice.inbox.expect(is_presence("subscribed", frm=bob.bare), "subscribed from bob's bare JID")
    await alice.inbox.expect(is_roster_push(bob.bare, subscription="to", ask=None), "push of bob with 'to'")
    got = await alice.inbox.expect(is_presence("available", frm=bob.full), "bob's current presence")
    assert got.xml.findtext("{jabber:client}show") == "away"
    assert got.xml.findtext("{jabber:client}status") == "bob is here"
    assert (await alice.roster_now())[bob.bare]["subscription"] == "to"
    assert (await bob.roster_now())[alice.bare]["subscription"] == "from"
    # slixmpp's roster, kept from the pushes, agrees.
    assert alice.client_roster[bob.bare]["subscription"] == "to"
    assert bob.client_roster[alice.bare]["subscription"] == "from"


async def test_mutual_subscription_is_both_on_both_rosters(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await befriend(alice, bob)
    assert (await alice.roster_now())[bob.bare] == plain_item() | {"subscription": "both"}
    assert (await bob.roster_now())[alice.bare] == plain_item() | {"subscription": "both"}


async def test_denied_request_leaves_the_user_without_subscription(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    alice.presence("subscribe", to=bob.bare)
    await bob.inbox.expect(is_presence("subscribe", frm=alice.bare), "subscription request")
    bob.presence("unsubscribed", to=alice.bare)
    # §3.2.3 (a denial is processed like a cancellation): 'unsubscribed' reaches the user
    # and the pending-out state is gone.
    await alice.inbox.expect(is_presence("unsubscribed", frm=bob.bare), "unsubscribed from bob")
    await alice.inbox.expect(is_roster_push(bob.bare, subscription="none", ask=None), "push without ask")
    item = (await alice.roster_now())[bob.bare]
    assert (item["subscription"], item["ask"]) == ("none", None)


async def test_unsubscribe_cancels_the_users_subscription(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await befriend(alice, bob)

    alice.presence("unsubscribe", to=bob.bare)
    # §3.3.2: alice's item for bob goes from both to from.
    await alice.inbox.expect(is_roster_push(bob.bare, subscription="from"), "push of bob with 'from'")
    # §3.3.3: bob gets the unsubscribe, his item goes to 'to', and his server sends
    # unavailable presence from his available resources to alice.
    await bob.inbox.expect(is_presence("unsubscribe", frm=alice.bare), "unsubscribe from alice")
    await bob.inbox.expect(is_roster_push(alice.bare, subscription="to"), "push of alice with 'to'")
    await alice.inbox.expect(is_presence("unavailable", frm=bob.full), "unavailable from bob's resource")


async def test_unsubscribed_revokes_the_contacts_subscription(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await befriend(alice, bob)

    bob.presence("unsubscribed", to=alice.bare)
    # §3.2.2: bob's item for alice goes to 'to', and alice is sent unavailable from bob's
    # available resources. §3.2.3: alice gets 'unsubscribed' and her item goes to 'from'.
    await bob.inbox.expect(is_roster_push(alice.bare, subscription="to"), "push of alice with 'to'")
    await alice.inbox.expect(is_presence("unsubscribed", frm=bob.bare), "unsubscribed from bob")
    await alice.inbox.expect(is_roster_push(bob.bare, subscription="from"), "push of bob with 'from'")
    await alice.inbox.expect(is_presence("unavailable", frm=bob.full), "unavailable from bob's resource")


async def test_repeated_subscribe_is_answered_by_the_contacts_server(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await befriend(alice, bob)

    alice.presence("subscribe", to=bob.bare)
    # §3.1.3: alice already has a subscription, so bob's server replies 'subscribed' on his
    # behalf and does not deliver the request to him.
    await alice.inbox.expect(is_presence("subscribed", frm=bob.bare), "automatic 'subscribed' from bob")
    marker = alice.message(bob.full, "marker")
    await bob.inbox.expect(is_message(mid=marker), "the marker message")
    assert bob.inbox.matching(is_presence("subscribe")) == []


async def test_pre_approved_request_is_approved_without_asking(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")

    # §3.4.1: bob approves before alice asks; his item for alice is marked approved.
    bob.presence("subscribed", to=alice.bare)
    await bob.inbox.expect(is_roster_push(alice.bare, subscription="none", approved="true"),
                           "push of alice with approved='true'")
    # The pre-approval is noted, not routed to alice (a 'subscribed' would arrive before this).
    marker = bob.message(alice.full, "marker")
    await alice.inbox.expect(is_message(mid=marker), "the marker message")
    assert alice.inbox.matching(is_presence("subscribed")) == []

    alice.presence("subscribe", to=bob.bare)
    # §3.4.2: bob's server approves on his behalf and does not deliver the request.
    await alice.inbox.expect(is_presence("subscribed", frm=bob.bare), "automatic 'subscribed' from bob")
    await alice.inbox.expect(is_roster_push(bob.bare, subscription="to", ask=None), "push of bob with 'to'")
    await bob.inbox.expect(is_roster_push(alice.bare, subscription="from"), "push of alice with 'from'")
    assert bob.inbox.matching(is_presence("subscribe")) == []


async def test_request_to_an_offline_user_is_delivered_at_next_login(server, im):
    alice = await im.user(server, "alice")
    bob_jid, bob_password = server.new_account("bob")

    alice.presence("subscribe", to=bob_jid, status="Hi, it's Alice")
    await alice.inbox.expect(is_roster_push(bob_jid, ask="subscribe"), "push with ask='subscribe'")
    await alice.sync()

    # §3.1.3: kept while bob has no available resource, delivered when he has one.
    bob = im.new(f"{bob_jid}/phone", bob_password)
    requests = []
    bob.add_event_handler("roster_subscription_request", requests.append)  # slixmpp's "friend request"
    await bob.start(server)
    await bob.online()
    request = await bob.inbox.expect(is_presence("subscribe", from_bare=alice.bare), "the stored request")
    assert [str(r["from"]) for r in requests] == [alice.bare]
    assert request.xml.get("from") == alice.bare
    assert request.xml.findtext("{jabber:client}status") == "Hi, it's Alice"

    bob.presence("subscribed", to=alice.bare)
    await alice.inbox.expect(is_presence("subscribed", frm=bob_jid), "subscribed from bob")
    await alice.inbox.expect(is_roster_push(bob_jid, subscription="to", ask=None), "push with 'to'")


async def test_unanswered_request_is_delivered_again_at_each_login(server, im):
    alice = await im.user(server, "alice")
    bob_jid, bob_password = server.new_account("bob")
    alice.presence("subscribe", to=bob_jid)
    await alice.inbox.expect(is_roster_push(bob_jid, ask="subscribe"), "push with ask='subscribe'")

    first = await im.online(server, f"{bob_jid}/first", bob_password)
    await first.inbox.expect(is_presence("subscribe", frm=alice.bare), "the request at the first login")
    await first.close()
    # §3.1.3: "until the contact either approves or denies the request".
    second = await im.online(server, f"{bob_jid}/second", bob_password)
    await second.inbox.expect(is_presence("subscribe", frm=alice.bare), "the request again at the next login")


async def test_request_cancelled_while_the_contact_was_offline_is_not_delivered(server, im):
    alice = await im.user(server, "alice")
    bob_jid, bob_password = server.new_account("bob")
    alice.presence("subscribe", to=bob_jid)
    await alice.inbox.expect(is_roster_push(bob_jid, ask="subscribe"), "push with ask='subscribe'")
    alice.presence("unsubscribe", to=bob_jid)
    # §3.3.2: "None + Pending Out" becomes "None".
    await alice.inbox.expect(is_roster_push(bob_jid, subscription="none", ask=None), "push without ask")

    bob = await im.online(server, f"{bob_jid}/phone", bob_password)
    marker = alice.message(bob.full, "marker")
    await bob.inbox.expect(is_message(mid=marker), "the marker message")
    # §3.3.3: the contact's server forgot the pending request.
    assert bob.inbox.matching(is_presence("subscribe")) == []


async def test_removing_a_contact_cancels_both_directions(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await befriend(alice, bob)

    await alice.roster_set(bob.bare, subscription="remove")
    await alice.inbox.expect(is_roster_push(bob.bare, subscription="remove"), "remove push")
    # RFC 6121 §2.5.2: alice's server sends bob unsubscribe and unsubscribed; each side then
    # sees the other go unavailable (§3.2.2, §3.3.3).
    await bob.inbox.expect(is_presence("unsubscribe", frm=alice.bare), "unsubscribe from alice")
    await bob.inbox.expect(is_presence("unsubscribed", frm=alice.bare), "unsubscribed from alice")
    await bob.inbox.expect(is_presence("unavailable", frm=alice.full), "unavailable from alice")
    await alice.inbox.expect(is_presence("unavailable", frm=bob.full), "unavailable from bob")
    await bob.inbox.expect(is_roster_push(alice.bare, subscription="none"), "push of alice with 'none'")
    assert bob.bare not in await alice.roster_now()
    item = (await bob.roster_now())[alice.bare]
    assert (item["subscription"], item["ask"]) == ("none", None)
