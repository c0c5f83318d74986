"""Run with the legacy venv's Python (slixmpp 1.8.3): logs in once and prints, as JSON, how
it went: whether a session started, with which mechanism, and every SASL failure and stream
error seen on the way. Usage: legacy_login.py HOST PORT JID PASSWORD"""

import asyncio
import json
import ssl
import sys

import slixmpp


class Login(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str):
        super().__init__(jid, password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.report = {"version": slixmpp.__version__, "session": False, "mechanism": None,
                       "sasl_failures": [], "stream_errors": [], "connections": 0}
        self.add_event_handler("connected", self._connected)
        self.add_event_handler("failed_auth", lambda f: self.report["sasl_failures"].append(f["condition"]))
        self.add_event_handler("stream_error", lambda e: self.report["stream_errors"].append(e["condition"]))
        self.add_event_handler("session_start", self._started)

    def _connected(self, _event):
        self.report["connections"] += 1

    async def _started(self, _event):
        self.report["session"] = True
        self.report["mechanism"] = self.plugin["feature_mechanisms"].mech.name
        self.disconnect()


async def main() -> None:
    host, port, jid, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    client = Login(jid, password)
    client.connect((host, port))
    try:
        await asyncio.wait_for(client.disconnected, 20)
    except asyncio.TimeoutError:
        client.abort()
    print(json.dumps(client.report))


asyncio.run(main())
