"""An older client library against Corvid: slixmpp 1.8.3, as Debian 12 ships it under poezio.
It steps down through the SASL mechanisms offered on one stream (-PLUS with tls-unique, which
TLS 1.3 does not define, then SCRAM with the `y` flag, which a server that offered -PLUS must
refuse, then PLAIN); the server must let it, instead of ending the stream after three
failures and making every login a reconnection. Runs in its own venv (.venv-legacy, made by
scripts/interop.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from interop_support import HOST

LEGACY_PYTHON = os.environ.get("CORVID_LEGACY_PYTHON", "")
SCRIPT = Path(__file__).with_name("legacy_login.py")


def legacy_login(server, jid: str, password: str) -> dict:
    assert LEGACY_PYTHON, "CORVID_LEGACY_PYTHON is not set: run the suite with scripts/interop.sh"
    done = subprocess.run([LEGACY_PYTHON, str(SCRIPT), HOST, str(server.port), jid, password],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_slixmpp_1_8_logs_in_on_its_first_connection(server):
    jid, password = server.new_account("legacy")
    report = legacy_login(server, f"{jid}/poezio", password)
    assert report["version"] == "1.8.3"
    assert report["session"], report
    assert report["connections"] == 1, report
    assert report["stream_errors"] == [], report


def test_slixmpp_1_8_with_a_wrong_password_fails_without_a_session(server):
    jid, _password = server.new_account("legacy")
    report = legacy_login(server, f"{jid}/poezio", "wrong")
    assert not report["session"], report
    assert "not-authorized" in report["sasl_failures"], report
