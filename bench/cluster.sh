#!/usr/bin/env bash
# Corvid alone and as a cluster of N nodes on this machine (`[cluster]`, one Redis, one
# database shared by the nodes), measured with the same corvid-bench runs: one-to-one chat
# at fixed rates (accounts spread over the nodes, so most messages cross from one node to
# another through Redis) and a login storm. Writes bench/results/<date>-cluster.md (a table
# with ratios against the single node) and .json (every raw report).
#
# Everything runs on loopback, bounded in time. The nodes, Redis, the database and the
# load generator share this machine's cores: a cluster on one machine measures what the
# node-to-node hop costs, not what more machines add.
#
# Usage: bench/cluster.sh [--nodes N] [--users N] [--rates "5000 10000"] [--duration S]
#                         [--storage sqlite|postgres]
#   --storage postgres starts a throwaway PostgreSQL (scripts/postgres.sh) for both runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NODES=3
USERS=2000
RATES="5000 10000 20000"
DURATION=20
STORAGE=sqlite
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) NODES=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --rates) RATES=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --storage) STORAGE=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

WORK=$(mktemp -d /tmp/corvid-cluster-bench.XXXXXX)
STAMP=$(date -u +%Y-%m-%d-%H%M)
OUT="$ROOT/bench/results/$STAMP-cluster"
PIDS=()
REDIS_PID=""
PG_DIR=""
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    [ -n "$PG_DIR" ] && "$ROOT/scripts/postgres.sh" stop "$PG_DIR" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    local deadline=$((SECONDS + 60))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "port $1 never opened" >&2; return 1; }
        sleep 0.2
    done
}

(cd "$ROOT" && cargo build --release -q -p corvid -p corvid-bench)
CORVID="$ROOT/target/release/corvid"
BENCH="$ROOT/target/release/corvid-bench"

REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$WORK" --loglevel warning >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
wait_port "$REDIS_PORT"

# One PostgreSQL server for both runs (its directory must be reachable by the postgres user:
# not under $WORK, which is private).
case "$STORAGE" in
    sqlite) ;;
    postgres)
        PG_DIR=$(mktemp -d /tmp/corvid-cluster-bench-pg.XXXXXX)
        PG_ADMIN=$("$ROOT/scripts/postgres.sh" start "$PG_DIR") ;;
    *) echo "--storage sqlite|postgres" >&2; exit 2 ;;
esac

# storage_url RUN: a fresh database for each run.
storage_url() {
    case "$STORAGE" in
        sqlite) echo "sqlite:$WORK/$1.sqlite" ;;
        postgres)
            psql -q "$PG_ADMIN" -c "CREATE DATABASE bench_$1" >/dev/null
            echo "${PG_ADMIN%/*}/bench_$1" ;;
    esac
}

# start_nodes RUN COUNT: COUNT nodes (one without [cluster] when COUNT is 1); sets PORTS
# and PIDS.
start_nodes() {
    local run=$1 count=$2 url i port
    url=$(storage_url "$run")
    PORTS=(); PIDS=()
    for i in $(seq 1 "$count"); do
        port=$(free_port)
        mkdir -p "$WORK/$run/n$i"
        cat >"$WORK/$run/n$i/corvid.toml" <<EOF
domains = ["localhost"]
data_dir = "$WORK/$run/n$i"
[storage]
url = "$url"
[c2s]
listen = ["127.0.0.1:$port"]
tls_listen = []
[s2s]
enabled = false
[http]
enabled = false
[admin]
enabled = false
[registration]
open = true
[modules]
disabled = ["mam"]
$(cat "$ROOT/bench/relaxed-limits.toml")
[log]
level = "warn"
EOF
        if [ "$count" -gt 1 ]; then
            printf '[cluster]\nredis = "redis://127.0.0.1:%s/"\nnode = "n%s"\nprefix = "%s"\n' \
                "$REDIS_PORT" "$i" "$run" >>"$WORK/$run/n$i/corvid.toml"
        fi
        "$CORVID" --config "$WORK/$run/n$i/corvid.toml" serve >>"$WORK/$run/n$i.log" 2>&1 &
        PIDS+=($!)
        PORTS+=("127.0.0.1:$port")
        wait_port "$port"
    done
}

stop_nodes() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

# measure RUN COUNT: the scenarios against COUNT nodes.
measure() {
    local run=$1 count=$2 servers pids rate
    start_nodes "$run" "$count"
    servers=$(IFS=,; echo "${PORTS[*]}")
    pids=$(IFS=,; echo "${PIDS[*]}")
    local common=(--server "$servers" --server-pid "$pids" --domain localhost --users "$USERS"
        --password bench-password --label "$run" --scram-cache "$WORK/scram.cache" --quiet --timeout 600)
    log "$run: register $USERS accounts"
    "$BENCH" "${common[@]}" --json "$WORK/$run-register.json" register >&2
    log "$run: login storm"
    "$BENCH" "${common[@]}" --json "$WORK/$run-login-storm.json" login-storm >&2
    for rate in $RATES; do
        log "$run: chat at $rate msgs/s"
        "$BENCH" "${common[@]}" --json "$WORK/$run-chat-$rate.json" chat --rate "$rate" \
            --duration "$DURATION" >&2 || log "$run: chat at $rate failed"
    done
    stop_nodes
}

measure single 1
measure cluster "$NODES"

python3 - "$WORK" "$OUT" "$NODES" "$STORAGE" "$RATES" <<'EOF'
import json, pathlib, sys
work, out, nodes, storage, rates = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split()
reports = {}
for path in sorted(work.glob("*.json")):
    reports[path.stem] = json.loads(path.read_text())
def get(run, scenario, *keys):
    r = reports.get(f"{run}-{scenario}")
    for key in keys:
        if not isinstance(r, dict):
            return None
        r = r.get(key)
    return r
rows = []
def row(name, single, cluster, fmt="{:,.0f}"):
    ratio = f"{cluster / single:.2f}" if single and cluster is not None else "–"
    show = lambda v: fmt.format(v) if isinstance(v, (int, float)) else "–"
    rows.append(f"| {name} | {show(single)} | {show(cluster)} | {ratio} |")
row("logins/s (login storm)", get("single", "login-storm", "logins", "per_sec"), get("cluster", "login-storm", "logins", "per_sec"))
for rate in rates:
    def cpu_per_msg(run):
        cpu, per_sec = get(run, f"chat-{rate}", "server", "cpu_percent_measured"), get(run, f"chat-{rate}", "messages", "delivered_per_sec")
        return cpu / 100 * 1e6 / per_sec if cpu and per_sec else None
    for label, keys in [("delivered msgs/s", ("messages", "delivered_per_sec")), ("p99 latency ms", ("messages", "latency", "p99_ms")),
                        ("lost", ("messages", "lost"))]:
        fmt = "{:,.1f}" if "latency" in label else "{:,.0f}"
        row(f"chat {rate}/s: {label}", get("single", f"chat-{rate}", *keys), get("cluster", f"chat-{rate}", *keys), fmt)
    row(f"chat {rate}/s: server CPU µs/msg", cpu_per_msg("single"), cpu_per_msg("cluster"), "{:,.1f}")
text = [f"# Corvid: one node and a {nodes}-node cluster on one machine ({storage})", "",
        "Same machine (2 cores) for the nodes, Redis, the database and corvid-bench. Accounts are spread",
        f"over the nodes in turn, so {int(nodes) - 1} of {nodes} messages cross between nodes through Redis.",
        "Server figures sum the nodes' processes (not Redis).", "",
        f"| | 1 node | {nodes} nodes | ratio |", "|---|---|---|---|", *rows, ""]
pathlib.Path(out + ".md").write_text("\n".join(text))
pathlib.Path(out + ".json").write_text(json.dumps(reports, indent=1))
print("\n".join(text))
EOF
log "wrote $OUT.md and $OUT.json"
