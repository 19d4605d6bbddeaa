"""Scenario `ws`: 2,500 WebSocket subscribers of ``/api/v1/ws/sessions`` on one facade process,
in both message formats, then 10,000 idle delta subscribers.

* delivery latency: a Session's ``spec.tags`` merge-patched straight through the Kubernetes API
  (as ``kubectl patch`` would) with a unique marker, until each client holds a message
  (``sessions_update`` or ``sessions_delta``) carrying it; 20 rounds, each waiting until every
  client has the marker (or a deadline past the 3 s periodic snapshot) and then for quiet;
  p50/p95/p99/max over every delivery, and how many of the expected deliveries arrived,
* memory per client: facade VmRSS with all clients connected minus VmRSS before the first one,
  divided by the number connected,
* message sizes, connect times, facade CPU while idle-subscribed and during the rounds, the
  facade's own WebSocket metrics (clients, drops by reason, messages by type), and how late the
  client loops ran (their lag is part of every measured latency).

Three passes of 2,500 clients over the same facade: full ``sessions_update`` clients that offer
no compression, the same offering permessage-deflate as browsers do, and ``?format=delta``
clients (a snapshot, then ``sessions_delta`` messages; each client checks that the sequence
numbers it receives are contiguous, by a substring scan). Then 10,000 idle delta subscribers
(the facade's RSS with all of them connected; target under 1 GiB) and a few change rounds to
all of them. The facade gets ``WS_MAX_STREAMS=20000`` (its default is 10,000 in all), and the
benchmark and its children raise their soft RLIMIT_NOFILE to the hard limit.

About the deflate pass: the facade declines the extension (decision 36: accepted, it cost ~150
KiB per client and a compression per client per message), so the first two passes should
match; the second one shows that browsers' offer costs nothing.

Most clients have role ``operator`` and see all 20 sessions; every tenth has role ``user`` and
sees only its own session, which is the one changed each round, so every client must receive
every change. The clients live in a few worker processes (each an asyncio loop with its share
of ``ws_connect``\\s), so the client side does not starve one core; they connect in batches,
read continuously and take ``time.time()`` as a frame arrives, before looking at it for the
marker (a substring test, no JSON parsing on that path). The writer takes ``time.time()`` just
before the patch: both are CLOCK_REALTIME on the same machine. The facade inherits this
process's RLIMIT_NOFILE, raised to its hard limit first.

The operator runs only until the sessions have settled (phase and status as in production,
so messages have their real size), then stops: its status write after each change would be a
second broadcast overlapping the measured one.

The client side (worker processes and their controller) is in ``bench.ws_clients``.
"""

from __future__ import annotations

import os
import secrets
import time
import urllib.request
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from kubernetes import client

from bench import profile
from bench.common import (
    GROUP,
    RESULTS,
    SESSIONS,
    VERSION,
    FacadeProcess,
    Rest,
    api_client,
    control_plane,
    database,
    facade,
    machine_ticks,
    namespace_with_firefox,
    operator,
    print_table,
    summary,
    write_results,
)
from bench.ws_clients import WORKERS, Workers, raise_nofile
from streamspace.auth.tokens import mint_hs256
from streamspace_dev import process

NAMESPACE = "bench-ws"
JWT_SECRET = secrets.token_urlsafe(32)
CLIENTS = 2500
USER_EVERY = 10  # every tenth client has role user and owns the changed session
OWNER = "ws-owner"
TARGET = "ws-target"
SESSION_COUNT = 20
ROUNDS = 20
ROUND_DEADLINE = 8.0  # past two 3 s periodic snapshots: a missed update still arrives by then
PASSES = (("full", 0), ("full", 15), ("delta", 0))  # format, permessage-deflate window bits
IDLE_CLIENTS = 10_000
IDLE_ROUNDS = 5
IDLE_DEADLINE = 30.0
TARGET_P99_MS = 500
TARGET_RSS_MIB = 1024
QUIET = 1.0  # between rounds
IDLE_WINDOW = 6.0  # two periodic snapshots with everybody subscribed


def _create_sessions(custom: client.CustomObjectsApi) -> None:
    for i in range(SESSION_COUNT):
        name, user = (TARGET, OWNER) if i == 0 else (f"ws-{i}", f"user{i % 5}")
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            "sessions",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Session",
                "metadata": {"name": name},
                "spec": {
                    "user": user,
                    "template": "firefox",
                    "state": "hibernated",
                    "persistentHome": False,
                    "tags": ["bench", f"group{i % 3}"],
                },
            },
        )


def _settle(kubeconfig: Path, database_url: str, rest: Rest) -> dict[str, int]:
    """Run the operator until no session is Pending; the phases the clients will see."""
    with operator(kubeconfig, NAMESPACE, DATABASE_URL=database_url):

        def phases() -> Counter[str]:
            return Counter(s["phase"] for s in rest.call("GET", SESSIONS)["sessions"])

        process.wait_until(lambda: "Pending" not in phases(), 120, interval=0.5)
    return dict(phases())


def _metrics(url: str) -> dict[str, Any]:
    """The facade's ``streamspace_websocket_*`` series."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError as exc:
        return {"error": str(exc)}
    series: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith("streamspace_websocket_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    return series


def _open_files_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return " / ".join(line.split()[3:5])
    return "?"


def _rounds(
    workers: Workers, custom: client.CustomObjectsApi, count: int, deadline: float
) -> list[dict[str, Any]]:
    """Change the target session ``count`` times; when each change was written and who saw it."""
    nonce = secrets.token_hex(4)
    rounds = []
    for k in range(count):
        marker = f"ws-{nonce}-{k}"
        armed = workers.ask("arm", k, marker, expect="armed", timeout=60)
        assert all(a is not None for a in armed), f"a worker did not arm round {k}"
        t0 = time.time()
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "sessions", TARGET, {"spec": {"tags": ["bench", marker]}}
        )
        written = time.time()
        hits = workers.wait_done(k, deadline)
        rounds.append({"t0": t0, "write_s": written - t0, "complete": None not in hits})
        time.sleep(QUIET)
    return rounds


def _subscribe(
    front: FacadeProcess,
    custom: client.CustomObjectsApi,
    form: str,
    compress: int,
    *,
    clients_wanted: int = CLIENTS,
    rounds_wanted: int = ROUNDS,
    deadline: float = ROUND_DEADLINE,
) -> dict[str, Any]:
    """One pass: connect every client, watch them idle, run the rounds, close."""
    roles = ["user" if i % USER_EVERY == 0 else "operator" for i in range(clients_wanted)]
    tokens = {
        role: mint_hs256(JWT_SECRET, user, role, timedelta(hours=1))
        for role, user in (("operator", "ws-watcher"), ("user", OWNER))
    }
    query = "" if form == "full" else f"?format={form}"
    workers = Workers(front.url, roles, compress, tokens, query)
    try:
        time.sleep(1)  # let the facade's heap settle after the setup traffic
        rss_before = process.rss_bytes(front.record.pid)
        connected = workers.ask("connect", expect="connected", timeout=600)
        assert all(c is not None for c in connected), "a worker did not finish connecting"
        count = sum(c["connected"] for c in connected)
        subscribed = time.monotonic()
        time.sleep(2)
        rss_connected = process.rss_bytes(front.record.pid)
        cpu = front.cpu_seconds()
        time.sleep(IDLE_WINDOW)
        idle_cpu = (front.cpu_seconds() - cpu) / IDLE_WINDOW
        metrics_connected = _metrics(front.url)
        sampler = None
        if os.environ.get("WS_PROFILE") == "cpu":
            label = f"{form}-{clients_wanted}{'-deflate' if compress else ''}"
            sampler = profile.CpuProfile(front.record.pid, RESULTS / f"profile-ws-{label}.txt")
            sampler.start()
        cpu, started, machine = front.cpu_seconds(), time.monotonic(), machine_ticks()
        each = profile.cpu_by_process()
        rounds = _rounds(workers, custom, rounds_wanted, deadline)
        rounds_s = time.monotonic() - started
        rounds_cpu = (front.cpu_seconds() - cpu) / rounds_s
        by_process = profile.cpu_shares(each, profile.cpu_by_process(), rounds_s)
        facade_profile = sampler.stop() if sampler is not None else None
        busy, total = (now - then for now, then in zip(machine_ticks(), machine, strict=True))
        rss_rounds = process.rss_bytes(front.record.pid)
        reports = [r for r in workers.ask("report", expect="report", timeout=60) if r]
        elapsed = time.monotonic() - subscribed
        metrics_end = _metrics(front.url)
        workers.ask("close", expect="closed", timeout=60)
    finally:
        workers.stop()
    time.sleep(2)
    rss_closed = process.rss_bytes(front.record.pid)
    metrics_closed = _metrics(front.url)
    clients = [c for report in reports for c in report["clients"]]
    client_cpu = [
        round(100 * (report["cpu"] - start["cpu"]) / elapsed, 1)
        for report, start in zip(reports, connected, strict=True)
    ]
    return {
        "format": form,
        "permessage_deflate": bool(compress),
        "rounds": rounds_wanted,
        "connect": {
            "clients": clients_wanted,
            "connected": count,
            "seconds": round(max(c["seconds"] for c in connected), 2),
            "handshake": summary([c["connect_s"] for c in clients if c["connect_s"] is not None]),
            "errors": dict(Counter(c["error"] for c in clients if c["error"]).most_common(5)),
        },
        "deliveries": _deliveries(clients, rounds),
        "messages": _messages(clients),
        "rss_mib": {
            "before_clients": round(rss_before / 2**20, 1),
            "all_connected": round(rss_connected / 2**20, 1),
            "after_rounds": round(rss_rounds / 2**20, 1),
            "after_close": round(rss_closed / 2**20, 1),
        },
        "kib_per_client": round((rss_connected - rss_before) / max(count, 1) / 1024, 1),
        "mib_per_client": round((rss_connected - rss_before) / max(count, 1) / 2**20, 4),
        "facade_cpu_percent": {
            "subscribed_idle": round(100 * idle_cpu, 1),
            "during_rounds": round(100 * rounds_cpu, 1),
        },
        "cpu_by_process_during_rounds": by_process,
        **({"facade_profile": facade_profile} if facade_profile else {}),
        "client_worker_cpu_percent": client_cpu,  # from all connected to the report
        "client_loop_lag": [summary(report["lag"]) for report in reports],
        # all processes, this benchmark's and any other work on the machine
        "machine_busy_percent_during_rounds": round(100 * busy / total, 1),
        "facade_metrics": {
            "connected": metrics_connected,
            "end": metrics_end,
            "closed": metrics_closed,
        },
        "dropped_by_server": dict(
            Counter(c["closed"] for c in clients if c["closed"]).most_common(5)
        ),
    }


def _deliveries(clients: list[dict[str, Any]], rounds: list[dict[str, Any]]) -> dict[str, Any]:
    latencies: list[float] = []
    per_round = []
    subscribed = [c for c in clients if c["connect_s"] is not None]
    for k, info in enumerate(rounds):
        times = [c["seen"][k] - info["t0"] for c in subscribed if k in c["seen"]]
        latencies += times
        per_round.append(
            {
                "received": len(times),
                "complete": info["complete"],
                "write_ms": round(info["write_s"] * 1000, 1),
                "first_ms": round(min(times) * 1000, 1) if times else None,
                **summary(times),
            }
        )
    return {
        "expected": len(subscribed) * len(rounds),
        "received": len(latencies),
        **summary(latencies),
        "over_1s": sum(1 for t in latencies if t > 1.0),
        "by_role": {
            role: summary(
                [
                    t - rounds[k]["t0"]
                    for c in subscribed
                    if c["role"] == role
                    for k, t in c["seen"].items()
                ]
            )
            for role in ("operator", "user")
        },
        # the message that first carried the change: its publish ``reason``
        "via": dict(Counter(via for c in subscribed for via in c["via"].values())),
        "per_round": per_round,
    }


def _messages(clients: list[dict[str, Any]]) -> dict[str, Any]:
    firsts: dict[str, dict[str, Any]] = {}
    for c in clients:
        if c["first"] is not None:
            firsts.setdefault(c["role"], c["first"])
    total = sum(c["messages"] for c in clients)
    other: Counter[str] = Counter()
    for c in clients:
        other.update(c["other"])
    return {
        "first_message": firsts,  # one sample per role: type, session count, bytes
        "total": total,
        "deltas": sum(c["deltas"] for c in clients),
        # deltas whose sequence number did not follow the last one (must be 0)
        "sequence_gaps": sum(c["gaps"] for c in clients),
        "mean_bytes": round(sum(c["chars"] for c in clients) / max(total, 1)),
        "other_types": dict(other),
        "first_types": dict(Counter(str(c["first"]["type"]) for c in clients if c["first"])),
    }


def run() -> dict[str, Any]:
    nofile = raise_nofile()
    os.environ["WS_MAX_STREAMS"] = str(2 * IDLE_CLIENTS)  # the facade inherits the environment
    results: dict[str, Any] = {
        "scenario": "ws",
        "cpu_count": os.cpu_count(),
        "clock": f"time.time() ({time.get_clock_info('time').implementation}), one machine",
        "nofile_soft_limit": nofile,
        "workers": WORKERS,
    }
    token = mint_hs256(JWT_SECRET, "ws-admin", "admin", timedelta(hours=1))
    with control_plane() as kubeconfig, database() as database_url:
        custom = client.CustomObjectsApi(api_client(kubeconfig))
        namespace_with_firefox(kubeconfig, NAMESPACE)
        _create_sessions(custom)
        with facade(kubeconfig, database_url, NAMESPACE, JWT_SECRET) as front:
            results["facade_open_files"] = _open_files_limit(front.record.pid)
            results["session_phases"] = _settle(kubeconfig, database_url, Rest(front.url, token))
            results["passes"] = []
            for form, compress in PASSES:
                results["passes"].append(_subscribe(front, custom, form, compress))
                write_results("ws", results)  # what was measured so far, should a later pass fail
            results["idle"] = _subscribe(
                front,
                custom,
                "delta",
                0,
                clients_wanted=IDLE_CLIENTS,
                rounds_wanted=IDLE_ROUNDS,
                deadline=IDLE_DEADLINE,
            )
    return results


def _table(results: dict[str, Any], one: dict[str, Any]) -> None:
    connect, deliveries, messages = one["connect"], one["deliveries"], one["messages"]
    rss, cpu = one["rss_mib"], one["facade_cpu_percent"]
    sizes = ", ".join(
        f"{role} {first['bytes']} B ({first['sessions']} sessions)"
        for role, first in messages["first_message"].items()
    )
    clients = (
        "browser-like clients (offering permessage-deflate, declined)"
        if one["permessage_deflate"]
        else ("clients without compression")
    )
    form = "sessions_delta" if one["format"] == "delta" else "sessions_update"
    print_table(
        f"ws: {connect['connected']} {form} subscribers on one facade, {clients}; "
        f"{results['workers']} client processes, {results['cpu_count']} cores",
        [
            (
                "clients connected",
                f"{connect['connected']} / {connect['clients']} in {connect['seconds']} s   "
                f"handshake p50 {connect['handshake']['p50_ms']} ms p99 "
                f"{connect['handshake']['p99_ms']} ms",
            ),
            (
                f"change → every client ({one['rounds']} rounds)",
                f"p50 {deliveries['p50_ms']} ms   p95 {deliveries['p95_ms']} ms   "
                f"p99 {deliveries['p99_ms']} ms (target ≤ {TARGET_P99_MS})   "
                f"max {deliveries['max_ms']} ms",
            ),
            (
                "deliveries received",
                f"{deliveries['received']} / {deliveries['expected']}   "
                f"(over 1 s: {deliveries['over_1s']}; first carried by {deliveries['via']})",
            ),
            ("first message", sizes),
            (
                "messages received",
                f"{messages['total']} ({messages['deltas']} deltas, sequence gaps "
                f"{messages['sequence_gaps']}), mean {messages['mean_bytes']} B"
                + (f", other types {messages['other_types']}" if messages["other_types"] else ""),
            ),
            (
                "facade RSS before / connected / after rounds / closed",
                f"{rss['before_clients']} / {rss['all_connected']} / {rss['after_rounds']} / "
                f"{rss['after_close']} MiB",
            ),
            (
                "memory per client (RSS connected minus before) / clients",
                f"{one['kib_per_client']} KiB ({one['mib_per_client']} MiB)",
            ),
            (
                "CPU: facade subscribed idle / facade, machine during rounds",
                f"{cpu['subscribed_idle']} % / {cpu['during_rounds']} %, "
                f"{one['machine_busy_percent_during_rounds']} %",
            ),
            (
                "client worker processes CPU; loop lag p99, max",
                " / ".join(
                    f"{cpu} %; {lag['p99_ms']}, {lag['max_ms']} ms"
                    for cpu, lag in zip(
                        one["client_worker_cpu_percent"], one["client_loop_lag"], strict=True
                    )
                ),
            ),
            ("dropped by the server", str(one["dropped_by_server"] or "none")),
            ("connect errors", str(connect["errors"] or "none")),
            (
                "CPU by process during rounds (% of a core)",
                profile.shares_text(one["cpu_by_process_during_rounds"]),
            ),
            *profile.cpu_rows("facade during rounds", one.get("facade_profile") or {}),
        ],
    )


def _targets(results: dict[str, Any]) -> None:
    rows = [
        (
            f"change → every client p99, {one['connect']['connected']} "
            f"{one['format']} clients{', deflate offered' if one['permessage_deflate'] else ''}",
            f"{one['deliveries']['p99_ms']} ms   target ≤ {TARGET_P99_MS} ms   "
            f"({one['deliveries']['received']} / {one['deliveries']['expected']} deliveries)",
        )
        for one in [*results["passes"], results["idle"]]
    ]
    idle = results["idle"]
    rows.append(
        (
            f"facade RSS, {idle['connect']['connected']} idle delta subscribers",
            f"{idle['rss_mib']['all_connected']} MiB   target < {TARGET_RSS_MIB} MiB   "
            f"({idle['kib_per_client']} KiB per client; "
            f"{idle['facade_cpu_percent']['subscribed_idle']} % CPU idle)",
        )
    )
    print_table("ws: targets (issue 17)", rows)


def main() -> None:
    results = run()
    for one in [*results["passes"], results["idle"]]:
        _table(results, one)
    _targets(results)
    print(f"\nwritten to {write_results('ws', results)}")
