#!/usr/bin/env bash
# Corvid beside Prosody and ejabberd (both from Debian) on this machine, same scenarios,
# same accounts, same TLS certificate and SASL mechanism, loopback only.
#
# Each server is started in the foreground from a config written into a temp dir (its own
# ports, a self-signed certificate, in-band registration open, offline storage and roster
# on, c2s rate limits/shapers off so the benchmark measures the server, not its shaper),
# then corvid-bench runs, against each in turn:
#   register     create the accounts in-band (XEP-0077)
#   (restart the server, so idle memory is measured from a clean baseline)
#   idle         N idle authenticated TLS sessions: server memory per session
#   login-storm  logins/s with no arrival pacing (bounded by --max-pending)
#   chat         one-to-one chat at one fixed rate (--chat-rate, default 10,000 msgs/s)
#   chat-ramp    one-to-one chat at rising rates until p99 > 100 ms: the sustained rate
#   presence     K mutual contacts per user (made through subscribe/subscribed), presence
#                changes at a rate: deliveries/s to contacts
#   muc          one room of M occupants with a groupchat rate: fan-out deliveries/s
#   pep          P publishers, each with the same C listening contacts (caps with
#                tune+notify, XEP-0115) and S silent ones (caps without), all mutual;
#                user-tune items (XEP-0163/0118) at a rate: notifications/s, latency,
#                and that each listener gets each item once and silent contacts none
# and writes bench/results/<date>.md (and the raw reports as <date>.json).
#
# --profile also samples Corvid's CPU with perf during each scenario and writes a
# flamegraph per scenario (bench/results/<date>-corvid-<scenario>.svg); --heap-profile
# (with --scenarios idle) runs Corvid under heaptrack, kills it halfway through the idle
# hold and writes the flamegraph of what its heap held then (<date>-corvid-heap.svg): what
# the idle sessions cost, allocation site by allocation site.
# Profiling slows Corvid: take figures from a run without it.
#
# --archive turns the message archive (XEP-0313) on in all three servers, archiving every
# one-to-one message with a body for both parties: Corvid's mam module (`[mam] default =
# "always"`; without --archive it is disabled), Prosody's mod_mam (default_archive_policy =
# true) on mod_storage_sql with SQLite (lua-dbi-sqlite3), ejabberd's mod_mam (default:
# always, db_type: sql) on SQLite (erlang-p1-sqlite3). Every archive lives in a SQLite
# file; bench/README.md says what each server syncs to disk when. The chat scenarios then
# end by reading --verify-archive N accounts' archives (default 10): every message of the
# run delivered from or to them must be there, once. The results are <date>-mam.md/json.
#
# The bench shares the 2 cores with the server under test: every table states the
# client's CPU too. Defaults finish in about eleven minutes here; flags scale up.
#
# Usage: bench/compare.sh [--servers "corvid prosody ejabberd"] [--idle-users N]
#          [--chat-users N] [--chat-rate R] [--chat-secs S] [--archive] [--verify-archive N]
#          [--storm-users N] [--ramp "START GROWTH% MAX SECS"]
#          [--occupants M] [--muc-rate R] [--muc-secs S]
#          [--hold S] [--presence-users N] [--contacts K] [--presence-rate R]
#          [--pep "PUBLISHERS CONTACTS SILENT RATE SECS"]
#          [--scenarios "idle login-storm chat chat-ramp presence muc pep"]
#          [--mechanism scram-sha-1|scram-sha-256|plain] [--port-base P] [--keep] [--no-build]
#          [--corvid-bin PATH [--corvid-rev TEXT]]   (another Corvid build; implies --no-build)
#          [--profile] [--heap-profile]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SERVERS="corvid prosody ejabberd"
IDLE_USERS=10000
CHAT_USERS=2000
# chat (fixed rate): msgs/s and seconds; 10,000 msgs/s is the budget with the archive on.
CHAT_RATE=10000
CHAT_SECS=30
ARCHIVE=0
VERIFY_ARCHIVE=10
STORM_USERS=2000
# chat-ramp: start rate, growth per step (%), max rate, seconds per step.
RAMP=(500 25 100000 5)
OCCUPANTS=200
MUC_RATE=100
MUC_SECS=15
HOLD=10
PRESENCE_USERS=1000
CONTACTS=10
PRESENCE_RATE=200
PRESENCE_SECS=10
# pep: publishers, listening contacts (shared by all publishers), contacts without
# +notify, items/s (all publishers together), seconds.
PEP=(10 200 10 20 10)
SCENARIOS="idle login-storm chat-ramp presence muc pep"
# Prosody 0.12 offers SCRAM-SHA-1 only; all three get the same mechanism.
MECHANISM=scram-sha-1
KEEP=0
BUILD=1
PASSWORD=bench-password
PREFIX=bench
PORT_BASE=47222
PROFILE=0
HEAP_PROFILE=0
STAMP=$(date +%Y-%m-%d-%H%M)
# Results of a run with the archive on are told apart by name too.
RESULT=$STAMP
# The Corvid binary under test (--corvid-bin); the tables name its version with
# --corvid-rev (default: this checkout's `git describe`).
CORVID_BIN="$ROOT/target/release/corvid"
CORVID_REV=""

while [ $# -gt 0 ]; do
    case "$1" in
        --servers) SERVERS=$2; shift 2 ;;
        --idle-users) IDLE_USERS=$2; shift 2 ;;
        --chat-users) CHAT_USERS=$2; shift 2 ;;
        --chat-rate) CHAT_RATE=$2; shift 2 ;;
        --chat-secs) CHAT_SECS=$2; shift 2 ;;
        --archive) ARCHIVE=1; shift ;;
        --verify-archive) VERIFY_ARCHIVE=$2; shift 2 ;;
        --storm-users) STORM_USERS=$2; shift 2 ;;
        --ramp) read -r -a RAMP <<<"$2"; shift 2 ;;
        --occupants) OCCUPANTS=$2; shift 2 ;;
        --muc-rate) MUC_RATE=$2; shift 2 ;;
        --muc-secs) MUC_SECS=$2; shift 2 ;;
        --hold) HOLD=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --presence-users) PRESENCE_USERS=$2; shift 2 ;;
        --contacts) CONTACTS=$2; shift 2 ;;
        --presence-rate) PRESENCE_RATE=$2; shift 2 ;;
        --pep) read -r -a PEP <<<"$2"; shift 2 ;;
        --mechanism) MECHANISM=$2; shift 2 ;;
        --port-base) PORT_BASE=$2; shift 2 ;;
        --corvid-bin) CORVID_BIN=$(realpath "$2"); BUILD=0; shift 2 ;;
        --corvid-rev) CORVID_REV=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --profile) PROFILE=1; shift ;;
        --heap-profile) HEAP_PROFILE=1; shift ;;
        -h|--help) sed -n '2,53p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

wanted() { [[ " $SCENARIOS " == *" $1 "* ]]; }

PEP_USERS=$((PEP[0] + PEP[1] + PEP[2]))
# The presence scenario leaves ring subscriptions among its accounts: PEP's accounts
# come after them, so its rosters hold only what the pep scenario made.
PEP_FIRST=1
wanted presence && PEP_FIRST=$((PRESENCE_USERS + 1))
# Register the accounts the chosen scenarios use.
ACCOUNTS=1
wanted idle && [ "$IDLE_USERS" -gt "$ACCOUNTS" ] && ACCOUNTS=$IDLE_USERS
{ wanted chat || wanted chat-ramp; } && [ "$CHAT_USERS" -gt "$ACCOUNTS" ] && ACCOUNTS=$CHAT_USERS
wanted login-storm && [ "$STORM_USERS" -gt "$ACCOUNTS" ] && ACCOUNTS=$STORM_USERS
wanted muc && [ "$OCCUPANTS" -gt "$ACCOUNTS" ] && ACCOUNTS=$OCCUPANTS
wanted presence && [ "$PRESENCE_USERS" -gt "$ACCOUNTS" ] && ACCOUNTS=$PRESENCE_USERS
wanted pep && [ $((PEP_FIRST + PEP_USERS - 1)) -gt "$ACCOUNTS" ] && ACCOUNTS=$((PEP_FIRST + PEP_USERS - 1))

log() { echo "== $(date +%H:%M:%S) $*" >&2; }

# Each server listens on its own loopback ports: BASE+0/1 Corvid, +10/11 Prosody,
# +20/21 ejabberd (STARTTLS/direct TLS).
declare -A PORT=([corvid]=$PORT_BASE [prosody]=$((PORT_BASE + 10)) [ejabberd]=$((PORT_BASE + 20)))
declare -A TLS_PORT=([corvid]=$((PORT_BASE + 1)) [prosody]=$((PORT_BASE + 11)) [ejabberd]=$((PORT_BASE + 21)))

WORK=$(mktemp -d /tmp/corvid-compare.XXXXXX)
chmod 755 "$WORK"
MAIN_PID=""      # the process we started (and stop)
SERVER_PID=""    # the process that serves (sampled; for ejabberd the BEAM VM)
EPMD_BEFORE=$(pgrep -x epmd || true)

cleanup() {
    stop_server || true
    # ejabberd's Erlang runtime starts epmd as a daemon; stop it if it was ours.
    if [ -z "$EPMD_BEFORE" ]; then
        local epmd
        epmd=$(pgrep -x epmd || true)
        [ -n "$epmd" ] && kill "$epmd" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Sessions need a file descriptor each, on both sides.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((IDLE_USERS + 1000)) ]; then
    echo "open-file limit $(ulimit -n) is too low for $IDLE_USERS sessions; lower --idle-users" >&2
    exit 2
fi

installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

install_servers() {
    local missing=()
    command -v prosody >/dev/null || missing+=(prosody)
    command -v ejabberdctl >/dev/null || missing+=(ejabberd)
    # The archives' SQLite drivers: LuaDBI for Prosody's mod_storage_sql, p1_sqlite3 for
    # ejabberd's sql_type: sqlite.
    if [ "$ARCHIVE" = 1 ]; then
        installed lua-dbi-sqlite3 || missing+=(lua-dbi-sqlite3)
        installed erlang-p1-sqlite3 || missing+=(erlang-p1-sqlite3)
        command -v sqlite3 >/dev/null || missing+=(sqlite3)
    fi
    [ ${#missing[@]} -eq 0 ] && return
    log "installing ${missing[*]}"
    # Keep the packages from starting system services; we start our own instances.
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
}

# The profilers, when asked for: perf from Debian, inferno (flamegraphs) from crates.io.
install_profilers() {
    if [ "$PROFILE" = 1 ] && ! command -v perf >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
    fi
    if [ "$HEAP_PROFILE" = 1 ] && ! command -v heaptrack >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq heaptrack >/dev/null
    fi
    if [ "$PROFILE$HEAP_PROFILE" != 00 ] && ! command -v inferno-flamegraph >/dev/null; then
        cargo install -q --locked inferno
    fi
}

build() {
    [ "$BUILD" = 1 ] || return 0
    log "building corvid and corvid-bench (release)"
    (cd "$ROOT" && cargo build --release -q -p corvid -p corvid-bench)
}

make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,DNS:*.localhost" \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
    cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/combined.pem"
    # A throwaway key for loopback benchmarks, read by servers running as their own users.
    chmod 644 "$WORK/key.pem" "$WORK/cert.pem" "$WORK/combined.pem"
}

write_corvid_config() {
    mkdir -p "$WORK/corvid"
    cat >"$WORK/corvid/corvid.toml" <<EOF
domains = ["localhost"]
data_dir = "$WORK/corvid/data"

[c2s]
listen = ["127.0.0.1:${PORT[corvid]}"]
tls_listen = ["127.0.0.1:${TLS_PORT[corvid]}"]

[s2s]
enabled = false

[tls]
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"

[registration]
open = true

$(cat "$ROOT/bench/relaxed-limits.toml")

[log]
level = "warn"
EOF
    # XEP-0313: both parties' copy of every one-to-one message with a body, into the
    # SQLite archive (WAL, synchronous=FULL, group-committed); off unless --archive.
    if [ "$ARCHIVE" = 1 ]; then
        printf '\n[mam]\ndefault = "always"\n' >>"$WORK/corvid/corvid.toml"
    else
        printf '\n[modules]\ndisabled = ["mam"]\n' >>"$WORK/corvid/corvid.toml"
    fi
}

write_prosody_config() {
    mkdir -p "$WORK/prosody/data" "$WORK/prosody/certs"
    # PEP (and the caps handling it does itself) only for the pep scenario, so the other
    # scenarios' figures stay comparable with earlier runs.
    local pep=""
    wanted pep && pep=', "pep"'
    # XEP-0313 with --archive: mod_mam archiving every one-to-one message of every account
    # (default_archive_policy = true), never expiring, in SQLite through mod_storage_sql;
    # everything else stays in the internal (file) store as without it.
    local mam="" storage='storage = "internal"'
    if [ "$ARCHIVE" = 1 ]; then
        mam=', "mam"'
        storage="default_storage = \"internal\"
storage = { archive = \"sql\" }
sql = { driver = \"SQLite3\"; database = \"$WORK/prosody/data/prosody.sqlite\" }
default_archive_policy = true
archive_expires_after = \"never\""
    fi
    cat >"$WORK/prosody/prosody.cfg.lua" <<EOF
pidfile = "$WORK/prosody/prosody.pid"
data_path = "$WORK/prosody/data"
log = { { levels = { min = "warn" }, to = "file", filename = "$WORK/prosody/prosody.log" } }
interfaces = { "127.0.0.1" }
c2s_ports = { ${PORT[prosody]} }
c2s_direct_tls_ports = { ${TLS_PORT[prosody]} }
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "register", "offline", "posix"$pep$mam }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
$storage
allow_registration = true
c2s_require_encryption = true
-- A deeper accept queue than the default 128 (ejabberd's default is 5), and no Nagle
-- delay on small writes (Corvid and ejabberd set TCP_NODELAY; Prosody's default is Nagle).
network_settings = { tcp_backlog = 1024; nagle = false }
-- No shaping of client traffic (mod_limits is not loaded; this documents the intent).
limits = { c2s = { rate = "1000mb/s"; burst = "10s" } }
ssl = { certificate = "$WORK/cert.pem"; key = "$WORK/key.pem" }
VirtualHost "localhost"
Component "conference.localhost" "muc"
    max_occupants = 10000
EOF
    chown -R prosody:prosody "$WORK/prosody"
}

write_ejabberd_config() {
    mkdir -p "$WORK/ejabberd/spool" "$WORK/ejabberd/logs"
    # PEP needs mod_pubsub's pep plugin and mod_caps (the contacts' +notify features);
    # only for the pep scenario, as for Prosody.
    local pep=""
    if wanted pep; then
        pep="  mod_caps: {}
  mod_pubsub:
    plugins: [flat, pep]"
    fi
    # XEP-0313 with --archive: mod_mam archiving every message (default: always) in SQLite
    # (sql_type: sqlite; ejabberd creates the tables from its lite.sql on first start);
    # accounts, rosters and offline storage stay in mnesia as without it.
    local sql="" mam=""
    if [ "$ARCHIVE" = 1 ]; then
        sql="sql_type: sqlite
sql_database: \"$WORK/ejabberd/spool/archive.db\""
        mam="  mod_mam:
    db_type: sql
    default: always"
    fi
    cat >"$WORK/ejabberd/ejabberd.yml" <<EOF
hosts: [localhost]
$sql
loglevel: warning
certfiles: ["$WORK/combined.pem"]
listen:
  - port: ${PORT[ejabberd]}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    max_stanza_size: 262144
    shaper: none
    access: c2s
    backlog: 1024
  - port: ${TLS_PORT[ejabberd]}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    tls: true
    max_stanza_size: 262144
    shaper: none
    access: c2s
    backlog: 1024
auth_method: internal
auth_password_format: scram
# One registration per address per 600 s by default; the bench registers thousands.
registration_timeout: infinity
# Relaxed for the benchmark: no traffic shaping.
shaper:
  normal: 1000000000
  fast: 1000000000
shaper_rules:
  c2s_shaper: none
  max_user_sessions: 10
  max_user_offline_messages: 5000
acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
  register:
    allow: all
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster:
    versioning: true
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_register:
    access: register
    ip_access: all
  mod_muc:
    host: conference.localhost
    access: all
    access_create: all
    access_persistent: all
    max_users: 10000
    max_users_presence: 10000
$pep
$mam
EOF
    # Debian's /etc/ejabberd/ejabberdctl.cfg would point back at the system config.
    cat >"$WORK/ejabberd/ejabberdctl.cfg" <<EOF
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_CONFIG_PATH=$WORK/ejabberd/ejabberd.yml
# Erlang distribution and epmd on loopback too.
INET_DIST_INTERFACE=127.0.0.1
ERL_EPMD_ADDRESS=127.0.0.1
EOF
    chown -R ejabberd:ejabberd "$WORK/ejabberd"
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_port() {
    local port=$1 deadline=$((SECONDS + 90))
    while ! port_open "$port"; do
        if [ $SECONDS -ge $deadline ]; then echo "port $port never opened" >&2; return 1; fi
        sleep 0.5
    done
}

start_server() {
    local name=$1 port
    SERVER_PID=""
    for port in "${PORT[$name]}" "${TLS_PORT[$name]}"; do
        if port_open "$port"; then
            echo "port $port is already in use: pick other ports with --port-base" >&2
            return 1
        fi
    done
    case "$name" in
        corvid)
            local wrap=()
            [ "$HEAP_PROFILE" = 1 ] && wrap=(heaptrack -o "$WORK/corvid/heaptrack")
            "${wrap[@]}" "$CORVID_BIN" --config "$WORK/corvid/corvid.toml" serve \
                >>"$WORK/corvid/corvid.log" 2>&1 &
            MAIN_PID=$!; SERVER_PID=$MAIN_PID
            if [ "$HEAP_PROFILE" = 1 ]; then
                # heaptrack runs the server as its child: sample and stop that.
                local deadline=$((SECONDS + 30))
                SERVER_PID=""
                while [ -z "$SERVER_PID" ] && [ $SECONDS -lt $deadline ]; do
                    sleep 0.2
                    SERVER_PID=$(pgrep -f "^$CORVID_BIN --config $WORK/corvid/corvid.toml" | head -1 || true)
                done
                [ -n "$SERVER_PID" ] || { echo "corvid did not start under heaptrack" >&2; return 1; }
            fi ;;
        prosody)
            setpriv --reuid=prosody --regid=prosody --init-groups -- \
                prosody --config "$WORK/prosody/prosody.cfg.lua" -F \
                >>"$WORK/prosody/stdout.log" 2>&1 &
            MAIN_PID=$!; SERVER_PID=$MAIN_PID ;;
        ejabberd)
            setpriv --reuid=ejabberd --regid=ejabberd --init-groups -- \
                env HOME=/var/lib/ejabberd ejabberdctl --ctl-config "$WORK/ejabberd/ejabberdctl.cfg" \
                --config "$WORK/ejabberd/ejabberd.yml" \
                --spool "$WORK/ejabberd/spool" --logs "$WORK/ejabberd/logs" \
                --node corvidbench@localhost foreground \
                >>"$WORK/ejabberd/stdout.log" 2>&1 &
            MAIN_PID=$!
            # ejabberdctl runs erl, which runs the BEAM VM as a child: that is the
            # process to sample (and to stop).
            local deadline=$((SECONDS + 30))
            while [ -z "$SERVER_PID" ] && [ $SECONDS -lt $deadline ]; do
                sleep 0.2
                SERVER_PID=$(pgrep -f "beam.smp.*-sname corvidbench@localhost .*$WORK" | head -1 || true)
            done
            [ -n "$SERVER_PID" ] || { echo "ejabberd's VM did not start" >&2; return 1; } ;;
    esac
    # Functions called from `if` run without `set -e`: check each step.
    wait_port "${PORT[$name]}" || return 1
    log "$name serving on ${PORT[$name]} (pid $SERVER_PID)"
}

stop_server() {
    [ -n "$MAIN_PID" ] || return 0
    kill "$MAIN_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && [ "$SERVER_PID" != "$MAIN_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$MAIN_PID" 2>/dev/null || { [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; }; do
        if [ $SECONDS -ge $deadline ]; then
            kill -9 "$MAIN_PID" "$SERVER_PID" 2>/dev/null || true
            break
        fi
        sleep 0.3
    done
    wait "$MAIN_PID" 2>/dev/null || true
    MAIN_PID=""; SERVER_PID=""
}

# bench NAME SCENARIO USERS [bench options…] -- SCENARIO-ARGS…
bench() {
    local name=$1 scenario=$2 users=$3; shift 3
    local opts=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
    [ "${1:-}" = "--" ] && shift
    log "$name: $scenario ($users users)"
    profile_start "$name" "$scenario"
    heap_snapshot_later "$name" "$scenario" "$users"
    "$ROOT/target/release/corvid-bench" --server "127.0.0.1:${PORT[$name]}" --domain localhost \
        --users "$users" --prefix "$PREFIX" --password "$PASSWORD" --mechanism "$MECHANISM" \
        --server-pid "$SERVER_PID" --label "$name" --scram-cache "$WORK/scram-$name.cache" \
        --json "$WORK/$name-$scenario.json" --quiet --timeout 600 "${opts[@]}" "$scenario" "$@" \
        | tee -a "$WORK/$name.txt" >&2 || log "$name: $scenario failed (see the table above)"
    profile_stop "$name" "$scenario"
}

# perf samples the server process (call graphs unwound from DWARF, since release builds
# keep no frame pointers) for as long as one scenario runs.
PERF_PID=""
profile_start() {
    [ "$PROFILE" = 1 ] && [ "$1" = corvid ] && [ "$2" != register ] || return 0
    perf record -q -F 199 --call-graph dwarf,8192 -p "$SERVER_PID" -o "$WORK/perf-$2.data" \
        >"$WORK/perf-$2.log" 2>&1 &
    PERF_PID=$!
    # Attaching stalls the server briefly: not in the first measured step.
    sleep 3
}

profile_stop() {
    [ -n "$PERF_PID" ] || return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=""
    mkdir -p "$ROOT/bench/results"
    perf script -i "$WORK/perf-$2.data" --no-inline 2>/dev/null | inferno-collapse-perf >"$WORK/perf-$2.folded"
    inferno-flamegraph --title "Corvid CPU: $2 ($STAMP)" <"$WORK/perf-$2.folded" \
        >"$ROOT/bench/results/$STAMP-corvid-$2.svg"
    log "wrote bench/results/$STAMP-corvid-$2.svg"
}

# --heap-profile: halfway through the idle hold, every session is logged in and idle; the
# server is killed there (SIGKILL, so nothing is freed) and what heaptrack saw allocated and
# not freed is the heap of the idle sessions. The idle figures of such a run mean nothing.
heap_snapshot_later() {
    [ "$HEAP_PROFILE" = 1 ] && [ "$1" = corvid ] && [ "$2" = idle ] || return 0
    local pid=$SERVER_PID users=$3
    (
        # Every session has its socket open (one descriptor each): wait a little more, so
        # the sessions have gone idle, then take the snapshot.
        local deadline=$((SECONDS + 120))
        while [ "$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)" -lt "$users" ] && [ $SECONDS -lt $deadline ]; do
            sleep 0.5
        done
        sleep 4
        log "heap snapshot: killing corvid"
        kill -9 "$pid" 2>/dev/null
    ) &
}

# The heap as it was at the snapshot, as a flamegraph, and the largest sites as text.
heap_report() {
    [ "$HEAP_PROFILE" = 1 ] || return 0
    local data
    data=$(ls -t "$WORK"/corvid/heaptrack*.zst "$WORK"/corvid/heaptrack*.gz 2>/dev/null | head -1 || true)
    [ -n "$data" ] || { log "no heaptrack data"; return 0; }
    heaptrack_print "$data" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
        --print-leaks 0 --flamegraph-cost-type leaked -F "$WORK/heap.folded" >/dev/null 2>&1 || true
    heaptrack_print "$data" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
        --print-leaks 1 2>&1 | grep -v -e '/rustc/' -e '/.cargo/registry/' | head -n 1500 \
        >"$ROOT/bench/results/$STAMP-corvid-heap.txt" || true
    inferno-flamegraph --title "Corvid heap with $IDLE_USERS idle TLS sessions ($STAMP)" --colors mem --countname bytes \
        <"$WORK/heap.folded" >"$ROOT/bench/results/$STAMP-corvid-heap.svg"
    log "wrote bench/results/$STAMP-corvid-heap.svg"
}

run_server() {
    local name=$1
    if ! start_server "$name"; then
        log "$name did not start; skipping it"
        stop_server
        return 0
    fi
    bench "$name" register "$ACCOUNTS" --max-pending 64
    # A fresh process, so the idle baseline holds nothing left over from registration.
    stop_server
    if ! start_server "$name"; then
        log "$name did not restart; skipping it"
        stop_server
        return 0
    fi
    # ejabberd opens its ports before its SQL pool is up (archiving fails for the first
    # messages, "Hook user_send_packet crashed … ejabberd_sql_localhost_1"): with the
    # archive on, every server gets a few seconds to settle, after the disk has written
    # what the build or the server before left dirty (their writeback would land on this
    # server's fsyncs).
    [ "$ARCHIVE" = 1 ] && sync && sleep 5
    wanted idle && bench "$name" idle "$IDLE_USERS" --arrival-rate 1000 -- --hold "$HOLD"
    wanted login-storm && bench "$name" login-storm "$STORM_USERS"
    # With the archive on, the chat scenarios end by reading sampled accounts' archives.
    # The ramp first: a fixed rate a server cannot keep leaves a backlog behind it.
    local verify=()
    [ "$ARCHIVE" = 1 ] && verify=(--verify-archive "$VERIFY_ARCHIVE")
    wanted chat-ramp && bench "$name" chat-ramp "$CHAT_USERS" -- --start "${RAMP[0]}" \
        --growth "${RAMP[1]}" --max "${RAMP[2]}" --step-secs "${RAMP[3]}" "${verify[@]}"
    wanted chat && bench "$name" chat "$CHAT_USERS" -- --rate "$CHAT_RATE" \
        --duration "$CHAT_SECS" "${verify[@]}"
    wanted presence && bench "$name" presence "$PRESENCE_USERS" -- --contacts "$CONTACTS" \
        --rate "$PRESENCE_RATE" --duration "$PRESENCE_SECS"
    wanted muc && bench "$name" muc "$OCCUPANTS" -- --rooms 1 --occupants "$OCCUPANTS" \
        --rate "$MUC_RATE" --duration "$MUC_SECS"
    wanted pep && bench "$name" pep "$PEP_USERS" --first "$PEP_FIRST" -- --publishers "${PEP[0]}" \
        --contacts "${PEP[1]}" --silent "${PEP[2]}" --rate "${PEP[3]}" --duration "${PEP[4]}"
    stop_server
    count_archive_rows "$name"
}

# With the archive on, the rows in the server's archive table once it has stopped: every
# chat message of the run should be there twice (sender's and recipient's copy). A check
# of the whole archive beside --verify-archive's sampled accounts.
count_archive_rows() {
    [ "$ARCHIVE" = 1 ] || return 0
    local name=$1 db table rows
    case "$name" in
        corvid) db=$WORK/corvid/data/corvid.sqlite; table=archive_messages ;;
        prosody) db=$WORK/prosody/data/prosody.sqlite; table=prosodyarchive ;;
        ejabberd) db=$WORK/ejabberd/spool/archive.db; table=archive ;;
    esac
    if ! rows=$(sqlite3 "$db" "SELECT COUNT(*) FROM $table" 2>&1); then
        log "$name: cannot count archive rows: $rows"
        return 0
    fi
    log "$name: $rows rows in its archive"
    printf '{"rows": %s}\n' "$rows" >"$WORK/$name-archive-rows.json"
}

install_servers
install_profilers
build
make_cert
write_corvid_config
write_prosody_config
write_ejabberd_config
for name in $SERVERS; do
    run_server "$name"
done
heap_report

mkdir -p "$ROOT/bench/results"
# The settings of the scenarios that ran.
SETTINGS=()
wanted idle && SETTINGS+=(--setting "idle sessions=$IDLE_USERS")
wanted login-storm && SETTINGS+=(--setting "login-storm users=$STORM_USERS")
{ wanted chat || wanted chat-ramp; } && SETTINGS+=(--setting "chat users=$CHAT_USERS")
wanted chat && SETTINGS+=(--setting "chat: $CHAT_RATE msgs/s for ${CHAT_SECS}s, open loop, each from a random account to another's bare JID")
wanted chat-ramp && SETTINGS+=(--setting "chat ramp: from ${RAMP[0]} msgs/s, +${RAMP[1]}% per ${RAMP[3]}-s step, up to ${RAMP[2]} msgs/s; a step fails when p99 > 100 ms or > 1% is lost")
wanted presence && SETTINGS+=(--setting "presence: $PRESENCE_USERS users × $CONTACTS contacts, $PRESENCE_RATE changes/s for ${PRESENCE_SECS}s")
wanted muc && SETTINGS+=(--setting "muc=1 room × $OCCUPANTS occupants at $MUC_RATE msgs/s for ${MUC_SECS}s")
wanted pep && SETTINGS+=(--setting "pep: ${PEP[0]} publishers × ${PEP[1]} contacts with tune+notify (+ ${PEP[2]} without), all mutual, ${PEP[3]} items/s for ${PEP[4]}s (accounts from ${PREFIX}${PEP_FIRST}); Prosody with mod_pep, ejabberd with mod_pubsub (pep plugin) and mod_caps, loaded only when pep runs")
[ -n "$CORVID_REV" ] && SETTINGS+=(--corvid-rev "$CORVID_REV")
if [ "$ARCHIVE" = 1 ]; then
    RESULT=$STAMP-mam
    SETTINGS+=(--archive --setting "archive check: $VERIFY_ARCHIVE accounts spread over the fleet read their own archive (mam:2 query from just before the run, RSM pages) after the chat; each must hold every message of the run delivered from or to it, once")
else
    SETTINGS+=(--setting "message archive (XEP-0313) off on every server (Corvid \`[modules] disabled = [\"mam\"]\`, Prosody and ejabberd without mod_mam)")
fi
python3 "$ROOT/bench/results_table.py" --work "$WORK" --servers "$SERVERS" --scenarios "$SCENARIOS" \
    --json-out "$ROOT/bench/results/$RESULT.json" "${SETTINGS[@]}" \
    --setting "SASL=$MECHANISM over STARTTLS, same self-signed ECDSA P-256 certificate" \
    >"$ROOT/bench/results/$RESULT.md"
log "wrote bench/results/$RESULT.md"
cat "$ROOT/bench/results/$RESULT.md"
