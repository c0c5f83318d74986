#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests, from the installed packages (Debian's postgresql;
# scripts/test.sh installs it).
#
#   scripts/postgres.sh start DIR   # makes a cluster in DIR (created; must be absent or empty),
#                                   # starts it, prints the admin URL
#   scripts/postgres.sh stop DIR    # stops it and removes DIR
#
# The server listens on 127.0.0.1 only, on a free port, with its Unix socket in DIR; the
# superuser `postgres` logs in without a password (trust, loopback only), so the URL is
# postgres://postgres@127.0.0.1:PORT/postgres. Tests create a database of their own each
# (tests/shared/postgres.rs). Databases sort text by ICU's en-US collation by default, as
# many real servers do, so a column that needs bytewise order and lacks COLLATE "C" shows. Nothing is synced to disk (fsync=off): the cluster is thrown
# away, and PostgreSQL's own durability is not what the tests test.
#
# initdb and postgres refuse to run as root: as root, they run as the `postgres` system user
# (which the package creates), and DIR is handed to it.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
command=$1
dir=$2

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "$0: no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)" >&2
    exit 1
fi

as_owner=()
if [ "$(id -u)" -eq 0 ]; then
    as_owner=(runuser -u postgres --)
fi

case "$command" in
start)
    mkdir -p "$dir"
    if [ -n "$(ls -A "$dir")" ]; then
        echo "$0: $dir is not empty" >&2
        exit 1
    fi
    dir=$(cd "$dir" && pwd)
    if [ ${#as_owner[@]} -gt 0 ]; then
        chown postgres: "$dir"
        if ! "${as_owner[@]}" test -w "$dir"; then
            echo "$0: the postgres user cannot reach $dir (a parent directory is closed to it)" >&2
            exit 1
        fi
    fi
    chmod 700 "$dir"
    "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 --locale-provider=icu --icu-locale=en-US >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    # A random port; if another process has it, postgres fails to start and the next is tried.
    for _ in $(seq 20); do
        port=$((30000 + RANDOM % 30000))
        options="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir"
        options+=" -c max_connections=300 -c fsync=off -c full_page_writes=off"
        if "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "$options" start >>"$dir/pg_ctl.log" 2>&1; then
            echo "postgres://postgres@127.0.0.1:$port/postgres"
            exit 0
        fi
    done
    echo "$0: the server did not start; its log:" >&2
    cat "$dir/server.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
        "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    rm -rf "$dir"
    ;;
*)
    usage
    ;;
esac
