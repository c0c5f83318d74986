"""What survives a restart: each test stops corvid with SIGTERM in the middle and starts it
again on the same data directory and ports, then checks with real clients that rosters,
pending subscription requests, offline messages, vCards and blocklists are still there."""

from __future__ import annotations

import uuid

from interop_support import (
    DOMAIN,
    NS_DELAY,
    NS_VCARD,
    TIMEOUT,
    befriend,
    is_message,
    is_presence,
    is_roster_push,
    vcard_element,
)


async def test_rosters_survive_a_restart(make_im_server, im):
    own = make_im_server("restart-roster")
    alice = await im.user(own, "alice")
    bob = await im.user(own, "bob")
    await befriend(alice, bob)
    carl = f"carl-{uuid.uuid4().hex[:6]}@{DOMAIN}"
    await alice.roster_set(carl, name="Carl", groups=("Work", "友達"))
    before = await alice.roster_now()
    await alice.close()
    await bob.close()

    own.restart()
    alice = await im.online(own, f"{alice.bare}/again", alice.account_password)
    assert await alice.roster_now() == before
    assert before[bob.bare]["subscription"] == "both"
    assert before[carl] == {"subscription": "none", "ask": None, "approved": None, "name": "Carl",
                            "groups": sorted(["Work", "友達"])}
    bob = await im.online(own, f"{bob.bare}/again", bob.account_password)
    assert (await bob.roster_now())[alice.bare]["subscription"] == "both"
    # The subscriptions work, too: bob's initial presence reaches alice.
    await alice.inbox.expect(is_presence("available", frm=bob.full), "bob's presence after the restart")


async def test_pending_subscription_request_survives_a_restart(make_im_server, im):
    own = make_im_server("restart-pending")
    alice = await im.user(own, "alice")
    bob_jid, bob_password = own.new_account("bob")
    alice.presence("subscribe", to=bob_jid)
    await alice.inbox.expect(is_roster_push(bob_jid, ask="subscribe"), "the roster push for bob")
    await alice.close()

    own.restart()
    alice = await im.online(own, f"{alice.bare}/again", alice.account_password)
    item = (await alice.roster_now())[bob_jid]
    assert (item["subscription"], item["ask"]) == ("none", "subscribe")
    bob = await im.online(own, f"{bob_jid}/phone", bob_password)
    await bob.inbox.expect(is_presence("subscribe", frm=alice.bare), "the request kept across the restart")


async def test_offline_messages_survive_a_restart(make_im_server, im):
    own = make_im_server("restart-offline")
    alice = await im.user(own, "alice")
    bob_jid, bob_password = own.new_account("bob")
    ids = [alice.message(bob_jid, "before the restart 1"), alice.message(bob_jid, "before the restart 2")]
    await alice.sync()
    await alice.close()

    own.restart()
    bob = await im.online(own, f"{bob_jid}/phone", bob_password)
    for mid in ids:
        got = await bob.inbox.expect(is_message(mid=mid), f"offline message {mid}")
        assert got.xml.find(f"{{{NS_DELAY}}}delay") is not None, str(got)
    assert [m.xml.get("id") for m in bob.inbox.history if m.xml.get("id") in ids] == ids


async def test_vcards_survive_a_restart(make_im_server, im):
    own = make_im_server("restart-vcard")
    alice = await im.user(own, "alice")
    await alice.vcard_set(vcard_element({"FN": "Alice Persisted", "NICKNAME": "ally"}, photo=b"photo bytes"))
    await alice.close()

    own.restart()
    bob = await im.user(own, "bob")
    result = await bob.vcard_get(alice.bare)
    vcard = result.xml.find(f"{{{NS_VCARD}}}vCard")
    assert vcard is not None, str(result)
    assert vcard.findtext(f"{{{NS_VCARD}}}FN") == "Alice Persisted"
    assert vcard.findtext(f"{{{NS_VCARD}}}NICKNAME") == "ally"
    assert vcard.findtext(f"{{{NS_VCARD}}}PHOTO/{{{NS_VCARD}}}BINVAL") == \
        vcard_element(photo=b"photo bytes").findtext(f"{{{NS_VCARD}}}PHOTO/{{{NS_VCARD}}}BINVAL")


async def test_blocklists_survive_a_restart(make_im_server, im):
    own = make_im_server("restart-blocklist")
    alice = await im.user(own, "alice")
    carol = await im.user(own, "carol")
    await alice.plugin["xep_0191"].block(carol.bare, timeout=TIMEOUT)
    await alice.close()
    await carol.close()

    own.restart()
    alice = await im.online(own, f"{alice.bare}/again", alice.account_password)
    blocked_jids = await alice.plugin["xep_0191"].get_blocked_jids(timeout=TIMEOUT)
    assert {str(jid) for jid in blocked_jids} == {carol.bare}
    carol = await im.online(own, f"{carol.bare}/again", carol.account_password)
    dave = await im.user(own, "dave")
    blocked = carol.message(alice.full, "still blocked?")
    await carol.sync()
    marker = dave.message(alice.full, "marker")
    await alice.inbox.expect(is_message(mid=marker), "the marker")
    assert alice.inbox.matching(is_message(mid=blocked)) == []
