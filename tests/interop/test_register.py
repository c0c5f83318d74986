"""XEP-0077 In-Band Registration with a real client (slixmpp's xep_0077): creating an
account before authentication, changing the password and cancelling the account after it,
and a server whose config closes registration."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import pytest
from slixmpp.stanza import StreamFeatures

from interop_support import DOMAIN, TIMEOUT, IqError, LoginFailed, iq_error_condition, unique_name


@dataclass
class Registration:
    """What one client saw while trying to register."""

    #: Names of the stream features offered, one set per stream (before and after TLS).
    offered: list[set[str]] = field(default_factory=list)
    form: object = None
    form_error: str | None = None
    result: object = None
    error: str | None = None


def form_submission(username: str, password: str) -> ET.Element:
    """A `jabber:iq:register` query carrying the filled-in data form (XEP-0077 §6), as
    Dino sends it, without the legacy fields."""
    query = ET.Element("{jabber:iq:register}query")
    x = ET.SubElement(query, "{jabber:x:data}x", {"type": "submit"})
    for var, value in (("FORM_TYPE", "jabber:iq:register"), ("username", username), ("password", password)):
        field_el = ET.SubElement(x, "{jabber:x:data}field", {"var": var})
        ET.SubElement(field_el, "{jabber:x:data}value").text = value
    return query


def registering_client(clients, username: str, password: str, *, force: bool = False,
                       with_form: bool = False):
    """A client that registers `username` in-band when the stream offers registration,
    then logs in with the same credentials (slixmpp's usual xep_0077 flow). With force, it
    asks for the form and submits it even though the server did not offer the feature."""
    client = clients.new(f"{username}@{DOMAIN}", password)
    outcome = Registration()

    def record_features(stanza):
        if isinstance(stanza, StreamFeatures):
            names = set(stanza["features"])
            outcome.offered.append(names)
            if force and "mechanisms" in names and "starttls" not in names:
                stanza.enable("register")
        return stanza

    client.add_filter("in", record_features)

    async def submit(form):
        outcome.form = form
        iq = client.Iq()
        iq["type"] = "set"
        if with_form:
            # Through slixmpp's own query element, so the IQ is sent like any other.
            for child in form_submission(username, password):
                iq["register"].xml.append(child)
        else:
            iq["register"]["username"] = username
            iq["register"]["password"] = password
        try:
            outcome.result = await iq.send(timeout=TIMEOUT)
        except IqError as e:
            outcome.error = iq_error_condition(e)

    if not force:
        # slixmpp's xep_0077 fetches the form and hands it to the 'register' handler.
        client.add_event_handler("register", submit)
    else:
        # slixmpp's own handler cannot survive an error reply to its form request.
        plugin = client.plugin["xep_0077"]

        async def forced(_features):
            try:
                await plugin.get_registration(timeout=TIMEOUT)
            except IqError as e:
                outcome.form_error = iq_error_condition(e)
            await submit(None)
            return False

        client.unregister_feature("register", plugin.order)
        client.register_feature("register", forced, restart=False, order=plugin.order)
    return client, outcome


async def test_register_new_account_in_band_then_log_in(server, clients):
    username, password = unique_name("reg"), f"pw-{uuid.uuid4().hex}"
    client, outcome = registering_client(clients, username, password)
    await client.start(server)

    after_tls = [names for names in outcome.offered if "mechanisms" in names]
    assert after_tls and "register" in after_tls[0], f"stream features: {outcome.offered}"
    form = outcome.form["register"]
    assert {"username", "password"} <= form["fields"], form
    assert outcome.error is None
    assert outcome.result["type"] == "result"
    # The same connection went on to log in with the new account …
    assert client.boundjid.bare == f"{username}@{DOMAIN}"
    await client.close()
    # … and so does a fresh one.
    fresh = await clients.login(server, f"{username}@{DOMAIN}", password)
    assert fresh.boundjid.bare == f"{username}@{DOMAIN}"


async def test_register_by_submitting_the_data_form_then_log_in(server, clients):
    """real-clients.md defect 3: Dino renders and submits only the XEP-0004 form."""
    username, password = unique_name("form"), f"pw-{uuid.uuid4().hex}"
    client, outcome = registering_client(clients, username, password, with_form=True)
    await client.start(server)
    x = outcome.form.xml.find("{jabber:iq:register}query/{jabber:x:data}x")
    assert x is not None, str(outcome.form)
    fields = {f.get("var"): f.get("type") for f in x.findall("{jabber:x:data}field")}
    # XEP-0077 §14.5 registry types.
    assert fields == {"FORM_TYPE": "hidden", "username": "text-single", "password": "text-private"}, fields
    assert outcome.error is None
    assert client.boundjid.bare == f"{username}@{DOMAIN}"
    await client.close()
    fresh = await clients.login(server, f"{username}@{DOMAIN}", password)
    assert fresh.boundjid.bare == f"{username}@{DOMAIN}"


async def test_registering_an_existing_name_is_refused_with_conflict(server, clients):
    jid, password = server.new_account("taken")
    username = jid.split("@")[0]
    client, outcome = registering_client(clients, username, "a-different-password")
    with pytest.raises(LoginFailed):
        # The registration fails, so logging in with the new password must fail too.
        await client.start(server)
    assert outcome.error == "conflict"
    # The existing account is untouched.
    owner = await clients.login(server, jid, password)
    assert owner.boundjid.bare == jid


async def test_change_password_then_log_in_with_the_new_one(server, clients):
    jid, old = server.new_account("chpw")
    new = f"new-{uuid.uuid4().hex}"
    client = await clients.login(server, jid, old)
    # Addressed to the server, as in XEP-0077 §3.3 (Example 18).
    reply = await client.plugin["xep_0077"].change_password(new, jid=DOMAIN, timeout=TIMEOUT)
    assert reply["type"] == "result"
    await client.close()

    again = await clients.login(server, jid, new)
    assert again.boundjid.bare == jid
    with pytest.raises(LoginFailed) as failed:
        await clients.login(server, jid, old, mech="SCRAM-SHA-256")
    assert failed.value.sasl_failures == ["not-authorized"]


async def test_cancel_account_ends_the_session_and_login_fails(server, clients):
    jid, password = server.new_account("cancel")
    client = await clients.login(server, jid, password)
    reply = await client.plugin["xep_0077"].cancel_registration(jid=DOMAIN, timeout=TIMEOUT)
    assert reply["type"] == "result"
    # XEP-0077 §3.2: the server then ends the account's sessions with <not-authorized/>.
    await client.wait_ended()
    assert client.conditions() == ["not-authorized"]

    with pytest.raises(LoginFailed) as failed:
        await clients.login(server, jid, password, mech="SCRAM-SHA-256")
    assert failed.value.sasl_failures == ["not-authorized"]


async def test_change_password_without_to_address(server, clients):
    # slixmpp's change_password() sends no 'to' unless given one.
    jid, old = server.new_account("chpw-noto")
    new = f"new-{uuid.uuid4().hex}"
    client = await clients.login(server, jid, old)
    reply = await client.plugin["xep_0077"].change_password(new, timeout=TIMEOUT)
    assert reply["type"] == "result"
    await client.close()
    again = await clients.login(server, jid, new)
    assert again.boundjid.bare == jid


async def test_cancel_account_without_to_address(server, clients):
    # slixmpp's cancel_registration() sends no 'to' unless given one, like XEP-0077 §3.2.
    jid, password = server.new_account("cancel-noto")
    client = await clients.login(server, jid, password)
    reply = await client.plugin["xep_0077"].cancel_registration(timeout=TIMEOUT)
    assert reply["type"] == "result"
    await client.wait_ended()
    assert client.conditions() == ["not-authorized"]


async def test_closed_registration_is_refused_with_not_allowed(closed_server, clients):
    username, password = unique_name("closed"), f"pw-{uuid.uuid4().hex}"
    client, outcome = registering_client(clients, username, password, force=True)
    with pytest.raises(LoginFailed) as failed:
        # No account was created, so the login after the refused registration fails.
        await client.start(closed_server)
    assert failed.value.sasl_failures and set(failed.value.sasl_failures) == {"not-authorized"}
    assert all("register" not in names for names in outcome.offered), outcome.offered
    assert outcome.form_error == "not-allowed"
    assert outcome.error == "not-allowed"
