#!/usr/bin/env python3
"""Turns the JSON reports of bench/compare.sh into a Markdown comparison table.

Reads WORK/<server>-<scenario>.json (written by corvid-bench --json) and prints the
table with ratios against Corvid; --json-out also keeps all raw reports in one file.
"""

import argparse
import json
import os
import platform
import subprocess
from datetime import datetime, timezone


def load(work, server, scenario):
    path = os.path.join(work, f"{server}-{scenario}.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def dig(report, *path):
    value = report
    for key in path:
        if value is None:
            return None
        value = value.get(key) if isinstance(value, dict) else None
    return value


def sustained_p99(report):
    rate = dig(report, "sustained_rate")
    for step in dig(report, "steps") or []:
        if step.get("rate") == rate:
            return step["latency"]["p99_ms"]
    return None


def sustained_cpu(report, who):
    rate = dig(report, "sustained_rate")
    for step in dig(report, "steps") or []:
        if step.get("rate") == rate:
            return step.get(f"{who}_cpu_percent")
    return None


def per_message_us(cpu_percent, rate):
    """Server CPU time per message, in µs: (share of a core) / (messages per second)."""
    if cpu_percent is None or not rate:
        return None
    return cpu_percent / 100.0 / rate * 1e6


def archive_found(report):
    """'found / delivered' in the sampled archives, as text (no ratio)."""
    a = dig(report, "archive")
    if not a:
        return None
    return f"{a['archived']:,} / {a['delivered']:,} ({len(a['accounts'])} accounts)"


def rows_per_message(report):
    rows, sent = dig(report, "rows"), dig(report, "chat_sent")
    if rows is None or not sent:
        return None
    return rows / sent


def chat_sent(reports):
    """Chat messages the generator sent in the chat and chat-ramp scenarios of a server."""
    total = 0
    total += dig(reports.get("chat"), "messages", "sent") or 0
    for step in dig(reports.get("chat-ramp"), "steps") or []:
        total += step.get("sent") or 0
    return total


def mutual_contacts(report):
    total, rosters = dig(report, "extra", "roster_both_total"), dig(report, "extra", "rosters_fetched")
    if total is not None and rosters:
        return total / rosters
    return dig(report, "extra", "roster_both_per_user")


def kib(value):
    return None if value is None else value / 1024.0


def mib_from_kb(value):
    return None if value is None else value / 1024.0


ARCHIVE_SETTING = (
    "- **message archive (XEP-0313) on**: every one-to-one message with a body archived for both parties, "
    "each server's archive in a SQLite file on this ext4 disk. Corvid `mam` (`[mam] default = \"always\"`): "
    "WAL with synchronous=FULL, appends group-committed by one writer task after the message is routed "
    "(a commit, and its fsync, covers every message queued meanwhile). Prosody 0.12 `mod_mam` "
    "(`default_archive_policy = true`, `archive_expires_after = \"never\"`) on `mod_storage_sql` with "
    "SQLite3 through LuaDBI: one transaction per message, rollback journal, SQLite's default "
    "synchronous=FULL (Prosody sets neither). ejabberd 23.01 `mod_mam` (`default: always`, `db_type: sql`, "
    "`sql_type: sqlite`): one autocommit INSERT per message, rollback journal, synchronous=FULL (SQLite's "
    "defaults). Accounts, rosters and offline messages stay where they are without the archive (Corvid's "
    "SQLite, Prosody's files, ejabberd's mnesia). See bench/README.md, \"Durability of the archives\"."
)

# (label, scenario, extractor, better): better is "higher" or "lower".
ROWS = [
    ("chat: sustained msgs/s with p99 < 100 ms", "chat-ramp", lambda r: dig(r, "sustained_rate"), "higher"),
    ("chat: p99 at that rate (ms)", "chat-ramp", sustained_p99, "lower"),
    ("chat: server CPU at that rate (% of a core)", "chat-ramp", lambda r: sustained_cpu(r, "server"), "lower"),
    ("chat: server CPU per message at that rate (µs)", "chat-ramp",
     lambda r: per_message_us(sustained_cpu(r, "server"), dig(r, "sustained_rate")), "lower"),
    ("chat: bench CPU at that rate (% of a core)", "chat-ramp", lambda r: sustained_cpu(r, "client"), None),
    ("chat-ramp: archived / delivered in sampled archives", "chat-ramp", archive_found, None),
    ("chat-ramp: archived twice", "chat-ramp", lambda r: dig(r, "archive", "duplicates"), "lower"),
    ("chat at a fixed rate: msgs/s offered", "chat", lambda r: dig(r, "params", "rate"), None),
    ("chat at a fixed rate: msgs/s delivered", "chat", lambda r: dig(r, "messages", "delivered_per_sec"), "higher"),
    ("chat at a fixed rate: latency p50 (ms)", "chat", lambda r: dig(r, "messages", "latency", "p50_ms"), "lower"),
    ("chat at a fixed rate: latency p99 (ms)", "chat", lambda r: dig(r, "messages", "latency", "p99_ms"), "lower"),
    ("chat at a fixed rate: messages lost", "chat", lambda r: dig(r, "messages", "lost"), "lower"),
    ("chat at a fixed rate: server CPU (% of a core)", "chat", lambda r: dig(r, "server", "cpu_percent_measured"), "lower"),
    ("chat at a fixed rate: server CPU per message (µs)", "chat",
     lambda r: per_message_us(dig(r, "server", "cpu_percent_measured"), dig(r, "messages", "delivered_per_sec")), "lower"),
    ("chat at a fixed rate: archived / delivered in sampled archives", "chat", archive_found, None),
    ("chat at a fixed rate: archived twice", "chat", lambda r: dig(r, "archive", "duplicates"), "lower"),
    ("archive: rows in the server's archive table after all chat", "archive-rows", lambda r: dig(r, "rows"), None),
    ("archive: rows per chat message sent (2 = both parties' copies)", "archive-rows", rows_per_message, None),
    ("idle: server memory per TLS session (KiB)", "idle", lambda r: kib(dig(r, "server", "bytes_per_session")), "lower"),
    ("idle: server RSS with all sessions (MiB)", "idle", lambda r: mib_from_kb(dig(r, "server", "rss_loaded_kb")), "lower"),
    ("idle: sessions held", "idle", lambda r: dig(r, "extra", "sessions_held"), "higher"),
    ("login storm: logins/s", "login-storm", lambda r: dig(r, "logins", "per_sec"), "higher"),
    ("login storm: login time p99 (ms)", "login-storm", lambda r: dig(r, "logins", "latency", "p99_ms"), "lower"),
    ("register (XEP-0077): accounts/s", "register", lambda r: dig(r, "logins", "per_sec"), "higher"),
    ("presence: deliveries/s to contacts", "presence", lambda r: dig(r, "messages", "delivered_per_sec"), "higher"),
    ("presence: server CPU while delivering (% of a core)", "presence", lambda r: dig(r, "server", "cpu_percent_measured"), "lower"),
    ("presence: delivery p99 (ms)", "presence", lambda r: dig(r, "messages", "latency", "p99_ms"), "lower"),
    ("presence: expected deliveries lost", "presence", lambda r: dig(r, "messages", "lost"), "lower"),
    ("presence: mutual contacts per user after setup", "presence", mutual_contacts, None),
    ("muc: fan-out deliveries/s", "muc", lambda r: dig(r, "messages", "delivered_per_sec"), "higher"),
    ("muc: delivery p99 (ms)", "muc", lambda r: dig(r, "messages", "latency", "p99_ms"), "lower"),
    ("muc: server CPU while delivering (% of a core)", "muc", lambda r: dig(r, "server", "cpu_percent_measured"), "lower"),
    ("muc: occupants joined", "muc", lambda r: dig(r, "extra", "occupants_joined"), None),
    ("pep: notifications delivered/s", "pep", lambda r: dig(r, "messages", "delivered_per_sec"), "higher"),
    ("pep: publish→notification p50 (ms)", "pep", lambda r: dig(r, "messages", "latency", "p50_ms"), "lower"),
    ("pep: publish→notification p99 (ms)", "pep", lambda r: dig(r, "messages", "latency", "p99_ms"), "lower"),
    ("pep: server CPU while delivering (% of a core)", "pep", lambda r: dig(r, "server", "cpu_percent_measured"), "lower"),
    ("pep: items published (acknowledged)", "pep", lambda r: dig(r, "extra", "publish_acks"), None),
    ("pep: expected notifications lost", "pep", lambda r: dig(r, "messages", "lost"), "lower"),
    ("pep: duplicate notifications", "pep", lambda r: dig(r, "extra", "duplicates"), "lower"),
    ("pep: notifications to contacts without +notify (must be 0)", "pep", lambda r: dig(r, "extra", "to_silent_contacts"), "lower"),
    ("pep: notifications to the publishers themselves", "pep", lambda r: dig(r, "extra", "to_publishers"), None),
    ("pep: caps disco#info queries answered", "pep", lambda r: dig(r, "extra", "caps_queries_answered"), None),
    ("pep: mutual subscriptions in rosters after setup", "pep", lambda r: dig(r, "extra", "roster_both_total"), None),
]

SCENARIOS = ["register", "idle", "login-storm", "chat", "chat-ramp", "presence", "muc", "pep"]


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{value:,}"


def ratio(value, base):
    if isinstance(value, str) or isinstance(base, str) or value is None or base in (None, 0):
        return "–"
    return f"{value / base:.2f}×"


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--servers", required=True)
    parser.add_argument("--json-out")
    parser.add_argument("--setting", action="append", default=[])
    parser.add_argument("--scenarios", default=" ".join(SCENARIOS))
    parser.add_argument("--corvid-rev", help="the version of the Corvid binary, when not this checkout's")
    parser.add_argument("--archive", action="store_true", help="the servers ran with the message archive on")
    args = parser.parse_args()
    servers = args.servers.split()
    others = [s for s in servers if s != "corvid"]
    base = "corvid" if "corvid" in servers else None

    reports = {s: {sc: load(args.work, s, sc) for sc in SCENARIOS + ["archive-rows"]} for s in servers}
    for s in servers:
        if reports[s]["archive-rows"] is not None:
            reports[s]["archive-rows"]["chat_sent"] = chat_sent(reports[s])
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(reports, f, indent=2)

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    corvid_rev = args.corvid_rev or version(["git", "-C", root, "describe", "--always", "--dirty"])
    out = []
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = " with the message archive on" if args.archive else ""
    out.append(f"# Corvid beside Prosody and ejabberd{title} — {now}\n")
    out.append(
        f"Machine: {os.cpu_count()} cores ({cpu_model()}), {platform.system()} {platform.release()}. "
        "Server and load generator share these cores, on loopback.\n"
    )
    out.append(
        f"Versions: Corvid {corvid_rev}; Prosody {version(['dpkg-query', '-W', '-f', '${Version}', 'prosody'])}; "
        f"ejabberd {version(['dpkg-query', '-W', '-f', '${Version}', 'ejabberd'])} (Debian packages).\n"
    )
    out.append("Settings:\n")
    if args.archive:
        out.append(ARCHIVE_SETTING)
    for s in args.setting:
        out.append(f"- {s}")
    out.append(
        "- every server: STARTTLS required, in-band registration open, roster and offline storage on, "
        "**client rate limits and traffic shapers relaxed** (Corvid `[limits]` raised; ejabberd `shaper: none`, "
        "`registration_timeout: infinity`; Prosody without mod_limits) so the figures measure the server, not its shaper; "
        "accept backlog 1024 for Prosody and ejabberd (Corvid's is fixed); Prosody with `nagle = false` "
        "(Corvid and ejabberd set TCP_NODELAY by default).\n"
        "- latency is measured open loop: each message carries its intended send time, so a generator or "
        "server falling behind shows up as latency, never as a lower rate.\n"
    )
    header = ["metric"] + servers + [f"{o} ÷ corvid" for o in others if base]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    for label, scenario, extract, better in ROWS:
        values = {s: extract(reports[s][scenario]) if reports[s][scenario] else None for s in servers}
        if all(v is None for v in values.values()):
            continue
        hint = {"higher": " ↑", "lower": " ↓"}.get(better, "")
        row = [label + hint] + [fmt(values[s]) for s in servers]
        if base:
            row += [ratio(values[o], values[base]) for o in others]
        out.append("| " + " | ".join(row) + " |")
    out.append("\n↑ higher is better, ↓ lower is better. Ratios are the other server's figure divided by Corvid's.\n")

    out.append("## Errors and disconnects\n")
    any_errors = False
    for s in servers:
        for sc in SCENARIOS:
            r = reports[s][sc]
            if r is None:
                if sc in args.scenarios.split() + ["register"]:
                    out.append(f"- {s} {sc}: no report (the run failed to start or was skipped)")
                continue
            errors = r.get("errors") or {}
            disconnects = r.get("disconnects") or 0
            if errors or disconnects:
                any_errors = True
                listed = "; ".join(f"{v} × {k}" for k, v in sorted(errors.items()))
                out.append(f"- {s} {sc}: {disconnects} disconnects; {listed or 'no errors'}")
    if not any_errors:
        out.append("None in any scenario.")
    out.append("")
    if any(reports[s]["chat-ramp"] for s in servers):
        out.append("## Chat ramp steps\n")
    for s in servers:
        r = reports[s]["chat-ramp"]
        if not r:
            continue
        steps = ", ".join(
            f"{st['rate']:.0f}/s → p99 {st['latency']['p99_ms']:.1f} ms"
            + ("" if st["passed"] else " (over)")
            for st in r.get("steps", [])
        )
        out.append(f"- {s}: {steps}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
