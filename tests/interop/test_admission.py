"""Connection admission with real clients: an address holding a thousand idle,
unauthenticated sockets (one attacker, or a NAT full of half-open connections) still lets
slixmpp clients from that same address log in, over STARTTLS and direct TLS, under the
default limits. The idle sockets are shed to make room, and the server says so in its log."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from interop_support import HOST


def _idle_sockets(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection((HOST, port), timeout=5) for _ in range(n)]


async def test_real_clients_log_in_from_an_address_holding_a_thousand_idle_sockets(make_server, clients):
    server = make_server("flooded", limits={})
    alice, alice_password = server.new_account("alice")
    bob, bob_password = server.new_account("bob")
    flood = _idle_sockets(server.port, 500) + _idle_sockets(server.tls_port, 500)
    try:
        # The kernel completed the flood's handshakes; give the server a moment to take
        # them from its accept queues, so the clients below arrive after the flood, not
        # in the middle of it (a connection silent while 128 newer silent ones arrive is
        # shed whoever it belongs to).
        await asyncio.sleep(0.5)
        sender = await clients.login(server, alice, alice_password)
        receiver = await clients.login(server, bob, bob_password, direct_tls=True)
        sender.send_message(mto=receiver.boundjid.full, mbody="through the flood", mtype="chat")
        message = await receiver.next_message()
        assert message["body"] == "through the flood"
    finally:
        for s in flood:
            with contextlib.suppress(OSError):
                s.close()
    log = server.log_text()
    assert "idle unauthenticated connection shed" in log, log[-3000:]


async def test_a_shed_connection_is_told_why_before_it_is_closed(make_server):
    server = make_server("tight", limits={"max_unauthenticated_per_ip": 1})
    first = socket.create_connection((HOST, server.port), timeout=5)
    header = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
    first.sendall(header.encode())
    second = socket.create_connection((HOST, server.port), timeout=5)
    received = b""
    try:
        while b"</stream:stream>" not in received:
            chunk = first.recv(4096)
            if not chunk:
                break
            received += chunk
    finally:
        first.close()
        second.close()
    text = received.decode()
    assert "<connection-timeout" in text and "make room" in text, text
