#!/usr/bin/env bash
# Runs every test Corvid has, on a fresh machine: Rust unit, property and integration tests
# (cargo-nextest when installed, else cargo test), doc tests, then the real-client interop
# suite (which makes its own Python venv). One build of the workspace serves all of it;
# rustfmt and clippy (a check, not a second build) run first.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# The TLS interop tests (crates/corvid-server/tests/tls_peers.rs) run openssl and gnutls-cli;
# the SDK's tests run Prosody and ejabberd from Debian (crates/corvid-client/tests/prosody.rs
# and ejabberd.rs, each test its own server on free loopback ports), and so do the federation
# tests (crates/corvid-server/tests/s2s_prosody.rs and s2s_ejabberd.rs; ejabberd's process
# handling is tests/shared/ejabberd_process.rs, which both crates' tests include); the
# interop tests of corvid-chat's TUI (tests/interop/test_corvid_chat.py) drive it in tmux;
# the IRC gateway's (tests/interop/test_irc_gateway.py) run ngircd as the IRC server; the
# bundled web client's (tests/interop/test_web_client.py) run Converse.js in Debian's chromium;
# the cluster's (crates/corvid-server/tests/cluster.rs, tests/interop/test_cluster.py) run a
# Redis of their own (tests/shared/redis_process.rs);
# the store's tests run a second time on a throwaway PostgreSQL server (scripts/postgres.sh).
# Installing a package must not start its system service (no policy-rc.d change is left
# behind).
need=()
command -v gnutls-cli >/dev/null || need+=(gnutls-bin)
command -v openssl >/dev/null || need+=(openssl)
command -v prosody >/dev/null || need+=(prosody)
command -v ejabberdctl >/dev/null || need+=(ejabberd)
command -v tmux >/dev/null || need+=(tmux)
command -v ngircd >/dev/null || [ -x /usr/sbin/ngircd ] || need+=(ngircd)
command -v chromium >/dev/null || need+=(chromium)
command -v redis-server >/dev/null || need+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    policy=/usr/sbin/policy-rc.d
    if [ -e "$policy" ]; then
        apt-get install -y -qq "${need[@]}"
    else
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
        apt-get install -y -qq "${need[@]}"
        rm -f "$policy"
        trap - EXIT
    fi
fi
# The tests' ejabberd nodes have names of their own and reach ejabberdctl on ports of their
# own, without epmd, so a system ejabberd would not collide with them; still, one that an
# install above started despite the policy is not left running.
# (Its node is ejabberd@localhost; asking with ejabberdctl would start an epmd.)
if [[ " ${need[*]} " == *" ejabberd "* ]] && pgrep -f -- "-sname ejabberd@localhost " >/dev/null; then
    echo "== stopping the ejabberd system service the install started"
    ejabberdctl stop >/dev/null
fi

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build (workspace, all targets)"
cargo build --workspace --all-targets --locked

echo "== Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
cargo test --workspace --locked --doc

# The same store tests (unit and integration) on PostgreSQL: each test makes a database of
# its own on a server started for the run (tests/shared/postgres.rs), stopped however the
# tests end. The workspace's build serves (the filter picks the store's tests; building only
# corvid-store would resolve its dependencies' features anew and rebuild them). The store's
# doc test opens no store.
# `corvid migrate` copies an installation into PostgreSQL and back (crates/corvid/tests/migrate.rs).
# The cluster's tests (crates/corvid-server/tests/cluster.rs) run again on it too: three
# nodes sharing one PostgreSQL database and one Redis. The server stays up for the interop
# tests, whose cluster (tests/interop/test_cluster.py) shares a PostgreSQL database as well.
echo "== store and cluster tests on PostgreSQL"
pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/corvid-postgres.XXXXXX")
pg_url=$(scripts/postgres.sh start "$pg_dir")
trap 'scripts/postgres.sh stop "$pg_dir"' EXIT
if cargo nextest --version >/dev/null 2>&1; then
    CORVID_TEST_POSTGRES_URL="$pg_url" cargo nextest run --workspace --locked --no-fail-fast \
        -E 'package(corvid-store) | (package(corvid-server) & binary(cluster)) | (package(corvid) & binary(migrate))'
else
    CORVID_TEST_POSTGRES_URL="$pg_url" cargo test -p corvid-store --locked --no-fail-fast
    CORVID_TEST_POSTGRES_URL="$pg_url" cargo test -p corvid-server --test cluster --locked --no-fail-fast
    CORVID_TEST_POSTGRES_URL="$pg_url" cargo test -p corvid --test migrate --locked --no-fail-fast
fi

echo "== web client (Converse.js) and the Node clients of the interop tests, pinned"
npm ci --prefix web --no-audit --no-fund --ignore-scripts --loglevel=error
npm ci --prefix tests/interop/node --no-audit --no-fund --ignore-scripts --loglevel=error

echo "== interop tests (real clients against a real corvid process)"
CORVID_TEST_POSTGRES_URL="$pg_url" CORVID_BIN="$PWD/target/debug/corvid" scripts/interop.sh
scripts/postgres.sh stop "$pg_dir"
trap - EXIT
