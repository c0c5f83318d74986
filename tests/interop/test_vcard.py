"""vCards with real clients (XEP-0054 vcard-temp, XEP-0153 vCard-based avatars): setting and
getting one's own vCard and reading others', the size limit, and the avatar hash the server
adds to a user's presence."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from interop_support import (
    NS_VCARD,
    NS_VCARD_UPDATE,
    IqError,
    befriend,
    iq_error_condition,
    is_presence,
    sha1_hex,
    vcard_element,
)

# A few bytes are enough: the server hashes the decoded BINVAL, it does not read images.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
OTHER_PNG = b"\x89PNG\r\n\x1a\n" + b"another picture" * 40

FIELDS = {"FN": "Alice Liddell 爱丽丝", "NICKNAME": "alice <&>", "URL": "https://example.org/alice"}


def vcard_of(result) -> ET.Element | None:
    return result.xml.find(f"{{{NS_VCARD}}}vCard")


def fields_of(result) -> dict[str, str]:
    vcard = vcard_of(result)
    assert vcard is not None, f"no <vCard/> in {result}"
    return {child.tag.split("}", 1)[1]: child.text for child in vcard if len(child) == 0}


def photo_hash(stanza) -> str | None:
    """The <photo/> of the vcard-temp:x:update element, '' if empty, None if absent."""
    x = stanza.xml.find(f"{{{NS_VCARD_UPDATE}}}x")
    if x is None:
        return None
    photo = x.find(f"{{{NS_VCARD_UPDATE}}}photo")
    return None if photo is None else (photo.text or "")


async def test_set_own_vcard_then_get_it_back(server, im):
    alice = await im.user(server, "alice")
    result = await alice.vcard_set(vcard_element(FIELDS))
    assert result["type"] == "result"
    # XEP-0054 §3.1: no 'to' (or the bare JID) reads one's own vCard.
    assert fields_of(await alice.vcard_get()) == FIELDS
    assert fields_of(await alice.vcard_get(alice.bare)) == FIELDS


async def test_other_users_read_a_vcard_by_bare_jid(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await alice.vcard_set(vcard_element(FIELDS, photo=PNG))
    # XEP-0054 §3.3: the server answers for the user (no subscription needed).
    result = await bob.vcard_get(alice.bare)
    assert result.xml.get("from") == alice.bare, str(result)
    assert fields_of(result) == FIELDS
    binval = vcard_of(result).findtext(f"{{{NS_VCARD}}}PHOTO/{{{NS_VCARD}}}BINVAL")
    assert binval == vcard_element(photo=PNG).findtext(f"{{{NS_VCARD}}}PHOTO/{{{NS_VCARD}}}BINVAL")


async def test_a_new_vcard_replaces_the_old_one(server, im):
    alice = await im.user(server, "alice")
    await alice.vcard_set(vcard_element({"FN": "Old", "NICKNAME": "gone soon"}))
    await alice.vcard_set(vcard_element({"FN": "New"}))
    # XEP-0054 §3.2: the whole vCard is replaced.
    assert fields_of(await alice.vcard_get()) == {"FN": "New"}


async def test_own_vcard_before_any_was_set(server, im):
    alice = await im.user(server, "alice")
    # XEP-0054 §3.1: an error (SHOULD be item-not-found) or an empty <vCard/>.
    try:
        result = await alice.vcard_get()
    except IqError as e:
        assert iq_error_condition(e) in ("item-not-found", "service-unavailable")
    else:
        vcard = vcard_of(result)
        assert vcard is not None and len(vcard) == 0, str(result)


async def test_vcard_of_a_user_without_one_is_service_unavailable(server, im):
    alice = await im.user(server, "alice")
    bob_jid, _ = server.new_account("bob")
    with pytest.raises(IqError) as failed:
        await alice.vcard_get(bob_jid)
    # XEP-0054 §3.3 (v1.3): no vCard and no such user give the same error, service-unavailable.
    assert iq_error_condition(failed.value) == "service-unavailable"


async def test_setting_another_users_vcard_is_refused(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await bob.vcard_set(vcard_element({"FN": "Bob"}))
    with pytest.raises(IqError) as failed:
        await alice.query("set", vcard_element({"FN": "Bob was here"}), to=bob.bare)
    # XEP-0054 §3.2: forbidden or not-allowed.
    assert iq_error_condition(failed.value) in ("forbidden", "not-allowed")
    assert fields_of(await bob.vcard_get()) == {"FN": "Bob"}


async def test_vcard_over_the_default_limit_is_not_acceptable(server, im):
    alice = await im.user(server, "alice")
    await alice.vcard_set(vcard_element({"FN": "Small"}))
    with pytest.raises(IqError) as failed:
        # Default `[vcard] max_bytes` is 65536.
        await alice.vcard_set(vcard_element({"FN": "Big"}, padding=70_000))
    assert iq_error_condition(failed.value) == "not-acceptable"
    assert fields_of(await alice.vcard_get()) == {"FN": "Small"}


async def test_vcard_size_limit_follows_the_config(make_im_server, im):
    own = make_im_server("vcard-limit", sections={"vcard": {"max_bytes": 2048}})
    alice = await im.user(own, "alice")
    result = await alice.vcard_set(vcard_element({"FN": "Fits"}, padding=1000))
    assert result["type"] == "result"
    with pytest.raises(IqError) as failed:
        await alice.vcard_set(vcard_element({"FN": "Too big"}, padding=3000))
    assert iq_error_condition(failed.value) == "not-acceptable"
    assert fields_of(await alice.vcard_get())["FN"] == "Fits"


async def test_presence_carries_the_photo_hash_of_the_vcard(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await befriend(alice, bob)
    await alice.vcard_set(vcard_element(FIELDS, photo=PNG))
    await alice.sync()

    # alice's client knows nothing of XEP-0153: the server adds the hash.
    alice.presence(status="with a photo")
    got = await bob.inbox.expect(is_presence("available", frm=alice.full, status="with a photo"), "alice's presence")
    assert photo_hash(got) == sha1_hex(PNG), str(got)


async def test_new_photo_sends_contacts_presence_with_the_new_hash(server, im):
    alice = await im.user(server, "alice")
    bob = await im.user(server, "bob")
    await befriend(alice, bob)
    await alice.vcard_set(vcard_element(FIELDS, photo=PNG))

    # Without alice sending presence, bob learns the new hash (XEP-0153 §3.1, done by the
    # server on the user's behalf).
    def with_hash(expected):
        return lambda s: is_presence("available", frm=alice.full)(s) and photo_hash(s) == expected

    await bob.inbox.expect(with_hash(sha1_hex(PNG)), "alice's presence with the hash of the first photo")
    await alice.vcard_set(vcard_element(FIELDS, photo=OTHER_PNG))
    await bob.inbox.expect(with_hash(sha1_hex(OTHER_PNG)), "alice's presence with the hash of the new photo")
    # Presences from before the vCards (perhaps with an empty <photo/>) are history now.
    bob.inbox.discard(is_presence(from_bare=alice.bare))
    # XEP-0153 §4.1: no photo any more is an empty <photo/>.
    await alice.vcard_set(vcard_element(FIELDS))
    await bob.inbox.expect(with_hash(""), "alice's presence with an empty <photo/>")
