#!/usr/bin/env bash
# Real-client interop tests: slixmpp against a real `corvid serve` process.
#
#   scripts/interop.sh [PYTEST ARGS…]     e.g. scripts/interop.sh -k register -x
#
# Makes the venv .venv (python3 -m venv) and installs tests/interop/requirements.txt into it
# when missing or changed, builds target/debug/corvid (and corvid-chat and the SDK's
# examples, and corvid-gateway-irc, whose tests find them next to corvid) only when missing, then runs
# `pytest tests/interop -q`. Exits non-zero when a test fails.
# CORVID_BIN overrides the server binary (default target/debug/corvid).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
REQUIREMENTS=tests/interop/requirements.txt
STAMP="$VENV/.interop-requirements"

if [ ! -x "$VENV/bin/python" ]; then
    echo "== interop: creating $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
if ! cmp -s "$REQUIREMENTS" "$STAMP"; then
    echo "== interop: installing $REQUIREMENTS"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$STAMP"
fi

# A second venv for an older client library (slixmpp 1.8.3, as Debian 12 ships it), which
# cannot share a venv with the current slixmpp.
LEGACY_VENV=.venv-legacy
LEGACY_REQUIREMENTS=tests/interop/requirements-legacy.txt
if [ ! -x "$LEGACY_VENV/bin/python" ]; then
    rm -rf "$LEGACY_VENV"
    python3 -m venv "$LEGACY_VENV"
fi
if ! cmp -s "$LEGACY_REQUIREMENTS" "$LEGACY_VENV/.requirements"; then
    "$LEGACY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$LEGACY_REQUIREMENTS"
    cp "$LEGACY_REQUIREMENTS" "$LEGACY_VENV/.requirements"
fi
export CORVID_LEGACY_PYTHON="$PWD/$LEGACY_VENV/bin/python"

CORVID_BIN="${CORVID_BIN:-target/debug/corvid}"
if [ ! -x "$CORVID_BIN" ]; then
    echo "== interop: $CORVID_BIN is missing; cargo build -p corvid"
    cargo build -p corvid
fi
if [ ! -x "$CORVID_BIN" ]; then
    echo "interop: no corvid binary at $CORVID_BIN" >&2
    exit 1
fi
if [ ! -x "$(dirname "$CORVID_BIN")/corvid-chat" ]; then
    echo "== interop: corvid-chat is missing beside $CORVID_BIN; cargo build -p corvid-chat"
    cargo build -p corvid-chat
fi
if [ ! -x "$(dirname "$CORVID_BIN")/corvid-gateway-irc" ]; then
    echo "== interop: corvid-gateway-irc is missing beside $CORVID_BIN; cargo build -p corvid-gateway-irc"
    cargo build -p corvid-gateway-irc
fi
if [ ! -x "$(dirname "$CORVID_BIN")/examples/connect" ]; then
    echo "== interop: the SDK's examples are missing beside $CORVID_BIN; cargo build -p corvid-client --examples"
    cargo build -p corvid-client --examples
fi
CORVID_BIN="$(cd "$(dirname "$CORVID_BIN")" && pwd)/$(basename "$CORVID_BIN")"
export CORVID_BIN

exec "$VENV/bin/python" -m pytest tests/interop -q "$@"
