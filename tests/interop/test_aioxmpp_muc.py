"""Multi-user chat (XEP-0045) with a second client library: aioxmpp binds the room's data
forms to typed form classes and refuses a form whose field types differ from the XEP-0045
§15.5 registries (issue 14: `muc#roomconfig_roomdesc` sent as text-multi kept every aioxmpp
user out). Here an aioxmpp client creates, configures and uses a room next to a slixmpp
client, against a real `corvid serve`."""

from __future__ import annotations

import asyncio
import contextlib

import aioxmpp
import aioxmpp.connector
import aioxmpp.disco
import aioxmpp.muc

from interop_support import HOST, TIMEOUT, is_message
from test_muc import join, muc_user, new_room


@contextlib.asynccontextmanager
async def aioxmpp_client(server, prefix: str):
    """An aioxmpp client logged in over STARTTLS to the test server (its certificate is
    self-signed, so it is not verified) and available."""
    jid, password = server.new_account(prefix)
    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(f"{jid}/aioxmpp"),
        aioxmpp.make_security_layer(password, no_verify=True),
        override_peer=[(HOST, server.port, aioxmpp.connector.STARTTLSConnector())],
    )
    async with client.connected() as stream:
        yield client, stream


def signal_future(signal, pick):
    """A future resolved with `pick(*args, **kwargs)` the first time `signal` fires and
    `pick` returns something other than None."""
    fut = asyncio.get_running_loop().create_future()

    def handler(*args, **kwargs):
        value = pick(*args, **kwargs)
        if value is not None and not fut.done():
            fut.set_result(value)
            return True  # disconnect
        return False

    signal.connect(handler)
    return fut


async def test_aioxmpp_creates_configures_and_chats_in_a_room_with_slixmpp(server, im):
    room_jid = aioxmpp.JID.fromstr(new_room("aio"))
    async with aioxmpp_client(server, "carol") as (carol, _stream):
        muc = carol.summon(aioxmpp.MUCClient)
        room, joined = muc.join(room_jid, "carol", autorejoin=False)
        await asyncio.wait_for(joined, TIMEOUT)

        # §10.1: the new room's configuration form, read through aioxmpp's typed form class
        # (from_xso raises ValueError on a field whose type is not the registered one).
        form = aioxmpp.muc.ConfigurationForm.from_xso(await muc.get_room_config(room_jid))
        assert form.roomdesc.value == ""
        form.roomname.value = "Aio Lounge"
        form.roomdesc.value = "Where aioxmpp meets slixmpp"
        form.changesubject.value = True
        await asyncio.wait_for(muc.set_room_config(room_jid, form.render_reply()), TIMEOUT)

        # The submitted values come back in the form.
        again = aioxmpp.muc.ConfigurationForm.from_xso(await muc.get_room_config(room_jid))
        assert again.roomname.value == "Aio Lounge"
        assert again.roomdesc.value == "Where aioxmpp meets slixmpp"
        assert again.changesubject.value is True

        # A slixmpp user joins; each sees the other's groupchat.
        bob = await muc_user(server, im, "bob")
        await join(bob, str(room_jid), "bob")
        heard = signal_future(
            room.on_message,
            lambda msg, member, source, **kw: msg if member is not None and member.nick == "bob" else None,
        )
        bob.message(str(room_jid), "hello from slixmpp", mtype="groupchat")
        msg = await asyncio.wait_for(heard, TIMEOUT)
        assert msg.body.any() == "hello from slixmpp"

        out = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT, to=room_jid)
        out.body[None] = "hello from aioxmpp"
        await room.send_message(out)
        got = await bob.inbox.expect(
            is_message(frm=f"{room_jid}/carol", body="hello from aioxmpp", mtype="groupchat"),
            "carol's groupchat")
        assert got["body"] == "hello from aioxmpp"

        # §8.1: the subject, as slixmpp sees it.
        await asyncio.wait_for(room.set_topic({None: "Interop"}), TIMEOUT)
        subject = await bob.inbox.expect(
            lambda s: s.name == "message" and s.xml.findtext("{jabber:client}subject") == "Interop",
            "the new subject")
        assert str(subject["from"]) == f"{room_jid}/carol"

        # §6.4: the room's disco#info, with its muc#roominfo form through aioxmpp's class.
        disco = carol.summon(aioxmpp.DiscoClient)
        info = await asyncio.wait_for(disco.query_info(room_jid, require_fresh=True), TIMEOUT)
        assert ("conference", "text") in {(i.category, i.type_) for i in info.identities}
        [ext] = [x for x in info.exts if x.get_form_type() == "http://jabber.org/protocol/muc#roominfo"]
        roominfo = aioxmpp.muc.InfoForm.from_xso(ext)
        assert roominfo.description.value == "Where aioxmpp meets slixmpp"
        assert roominfo.occupants.value == "2"
        assert roominfo.subject.value == "Interop"

        await asyncio.wait_for(room.leave(), TIMEOUT)


async def test_aioxmpp_moderator_approves_a_slixmpp_voice_request_through_its_form_class(server, im):
    """§8.6: the approval form a moderator gets parses into aioxmpp's VoiceRequestForm, and
    submitting it back gives the visitor voice."""
    room_jid = aioxmpp.JID.fromstr(new_room("aiovoice"))
    async with aioxmpp_client(server, "mod") as (mod, _stream):
        muc = mod.summon(aioxmpp.MUCClient)
        room, joined = muc.join(room_jid, "mod", autorejoin=False)
        await asyncio.wait_for(joined, TIMEOUT)
        form = aioxmpp.muc.ConfigurationForm.from_xso(await muc.get_room_config(room_jid))
        form.moderatedroom.value = True
        await asyncio.wait_for(muc.set_room_config(room_jid, form.render_reply()), TIMEOUT)

        visitor = await muc_user(server, im, "visitor")
        await join(visitor, str(room_jid), "visitor")
        requests = signal_future(room.on_muc_role_request, lambda form, answer: (form, answer))
        visitor.plugin["xep_0045"].request_voice(str(room_jid), "participant")
        request, answer = await asyncio.wait_for(requests, TIMEOUT)
        assert request.roomnick.value == "visitor"
        assert str(request.jid.value) == visitor.full
        request.request_allow.value = True
        answer.set_result(request.render_reply())

        granted = await visitor.inbox.expect(
            lambda s: s.name == "presence" and str(s["from"]) == f"{room_jid}/visitor"
            and s.xml.find("{http://jabber.org/protocol/muc#user}x/{http://jabber.org/protocol/muc#user}item")
            is not None
            and s.xml.find("{http://jabber.org/protocol/muc#user}x/{http://jabber.org/protocol/muc#user}item")
            .get("role") == "participant",
            "voice granted")
        assert granted is not None
