"""Scenario `api`: the facade as REST clients meet it.

* connect → Running: a hibernated session woken by ``GET /api/v1/sessions/{id}/connect``, until
  ``GET /api/v1/sessions/{id}`` shows phase ``Running`` (polled every 50 ms),
* list: ``GET /api/v1/sessions`` with 1,000 sessions in the namespace, 32 concurrent clients
  (p50/p99, requests/s) and a single client (p50),
* create: ``POST /api/v1/sessions``, 200 at concurrency 16 (creates/s, p50/p99),
* facade RSS and CPU along the way, and the machine's core count.

The facade and the operator each run as a process of their own (``streamspace facade``,
``streamspace operator``) with a throw-away PostgreSQL; the load comes from this process. The
control plane is started once, with the full profile, because a session only becomes Running
when a pod does. Connect → Running is measured first, on a quiet cluster. The 1,000 listed
sessions are created hibernated, straight through the Kubernetes API: the two fake nodes fit 128
firefox pods, and 1,000 running sessions would keep the scheduler busy while the list is timed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import aiohttp
from kubernetes import client

from bench.common import (
    GROUP,
    SESSIONS,
    VERSION,
    FacadeProcess,
    OperatorProcess,
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
from streamspace.auth.tokens import mint_hs256
from streamspace_dev import process

NAMESPACE = "bench-api"
JWT_SECRET = secrets.token_urlsafe(32)  # given to the facade; tokens are minted with it here
USER = "bench"
WAKES = 20
POLL = 0.05
LISTED = 1000
LIST_CLIENTS = 32
LIST_REQUESTS = 2000
SINGLE_REQUESTS = 200
CREATES = 200
CREATE_CLIENTS = 16


@dataclass
class Load:
    answers: list[tuple[int, float]]  # (HTTP status, 0 when there was none; seconds)
    seconds: float

    def figures(self) -> dict[str, Any]:
        ok = [t for status, t in self.answers if 200 <= status < 300]
        return {
            **summary([t for _, t in self.answers]),
            "per_second": round(len(self.answers) / self.seconds, 1),
            "ok_per_second": round(len(ok) / self.seconds, 1),
            "ok": summary(ok),
            "seconds": round(self.seconds, 2),
            "statuses": dict(sorted(Counter(str(status) for status, _ in self.answers).items())),
        }


async def _load(
    rest: Rest, method: str, path: str, *, total: int, clients: int, body: Any = None
) -> Load:
    """``total`` requests shared by ``clients`` concurrent callers."""
    answers: list[tuple[int, float]] = []
    tickets = iter(range(total))

    async def caller(session: aiohttp.ClientSession) -> None:
        for _ in tickets:
            started = time.perf_counter()
            try:
                async with session.request(method, rest.url + path, json=body) as resp:
                    await resp.read()  # not parsed: the client must not be the bottleneck
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            answers.append((status, time.perf_counter() - started))

    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {rest.token}"},
        connector=aiohttp.TCPConnector(limit=clients),
        timeout=aiohttp.ClientTimeout(total=60),
    ) as session:
        started = time.perf_counter()
        await asyncio.gather(*(caller(session) for _ in range(clients)))
        seconds = time.perf_counter() - started
    return Load(answers, seconds)


def _connect_to_running(rest: Rest) -> dict[str, Any]:
    names = [rest.call("POST", SESSIONS, {"template": "firefox"})["id"] for _ in range(WAKES)]

    def all_in(phase: str) -> bool:
        return all(rest.in_phase(n, phase) for n in names)

    assert process.wait_until(lambda: all_in("Running"), 300, interval=0.5), "never Running"
    for name in names:
        rest.call("PATCH", f"{SESSIONS}/{name}", {"state": "hibernated"})
    assert process.wait_until(lambda: all_in("Hibernated"), 300, interval=0.5), "not Hibernated"
    calls, running = [], []
    for name in names:
        started = time.monotonic()
        answer = rest.call("GET", f"{SESSIONS}/{name}/connect")
        calls.append(time.monotonic() - started)
        assert answer["ready"] is False, f"{name} was ready before it woke: {answer}"
        woke = process.wait_until(partial(rest.in_phase, name, "Running"), 120, interval=POLL)
        assert woke, f"{name} did not become Running after connect"
        running.append(time.monotonic() - started)
    return {"connect_call": summary(calls), "connect_to_running": summary(running)}


def _bulk_sessions(custom: client.CustomObjectsApi, rest: Rest) -> dict[str, Any]:
    """Top the namespace up to LISTED sessions; wait until the list shows them reconciled."""
    present: Any = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "sessions")
    existing = len(present["items"])

    def create(i: int) -> None:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            "sessions",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Session",
                "metadata": {"name": f"listed-{i}"},
                "spec": {
                    "user": f"user{i % 50}",
                    "template": "firefox",
                    "state": "hibernated",
                    "persistentHome": False,
                    "tags": ["bench", f"group{i % 7}"],
                },
            },
        )

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(LISTED - existing)))
    created = time.monotonic() - started

    def settled() -> bool:
        listed = rest.call("GET", SESSIONS)
        return listed["total"] == LISTED and all(
            s["phase"] != "Pending" for s in listed["sessions"]
        )

    assert process.wait_until(settled, 600, interval=1.0), f"the list never showed {LISTED}"
    return {
        "created_directly": LISTED - existing,
        "create_calls_s": round(created, 2),
        "listed_and_reconciled_s": round(time.monotonic() - started, 2),
    }


def _list_load(rest: Rest, front: FacadeProcess, op: OperatorProcess) -> dict[str, Any]:
    request = urllib.request.Request(rest.url + SESSIONS)  # noqa: S310
    request.add_header("Authorization", f"Bearer {rest.token}")
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
        size = len(resp.read())
    asyncio.run(_load(rest, "GET", SESSIONS, total=50, clients=4))  # warm-up, not counted
    facade_cpu, operator_cpu, machine = front.cpu_seconds(), op.cpu_seconds(), machine_ticks()
    loaded = asyncio.run(_load(rest, "GET", SESSIONS, total=LIST_REQUESTS, clients=LIST_CLIENTS))
    busy, total = (now - then for now, then in zip(machine_ticks(), machine, strict=True))
    cpu = {
        "facade_percent": round(100 * (front.cpu_seconds() - facade_cpu) / loaded.seconds, 1),
        "operator_percent": round(100 * (op.cpu_seconds() - operator_cpu) / loaded.seconds, 1),
        "machine_busy_percent": round(100 * busy / total, 1),
    }
    single = asyncio.run(_load(rest, "GET", SESSIONS, total=SINGLE_REQUESTS, clients=1))
    return {
        "response_bytes": size,
        "concurrent": {"clients": LIST_CLIENTS, **loaded.figures(), "cpu": cpu},
        "single_client": single.figures(),
    }


def run() -> dict[str, Any]:
    results: dict[str, Any] = {"scenario": "api", "cpu_count": os.cpu_count()}
    token = mint_hs256(JWT_SECRET, USER, "admin", timedelta(hours=2))
    rss: dict[str, float] = {}
    with control_plane("full") as kubeconfig, database() as database_url:
        custom = client.CustomObjectsApi(api_client(kubeconfig))
        namespace_with_firefox(kubeconfig, NAMESPACE)
        with (
            operator(kubeconfig, NAMESPACE, DATABASE_URL=database_url) as op,
            facade(kubeconfig, database_url, NAMESPACE, JWT_SECRET) as front,
        ):
            rest = Rest(front.url, token)
            rss["started"] = front.rss_mib()
            results["wake"] = _connect_to_running(rest)
            results["bulk"] = _bulk_sessions(custom, rest)
            rss["sessions_1000"] = front.rss_mib()
            results["list"] = _list_load(rest, front, op)
            rss["after_list_load"] = front.rss_mib()
            creates = asyncio.run(
                _load(
                    rest,
                    "POST",
                    SESSIONS,
                    total=CREATES,
                    clients=CREATE_CLIENTS,
                    body={"template": "firefox"},
                )
            )
            results["create"] = {"clients": CREATE_CLIENTS, **creates.figures()}
            rss["after_creates"] = front.rss_mib()
    results["facade_rss_mib"] = rss
    return results


def _latency(stats: dict[str, Any]) -> str:
    return f"p50 {stats['p50_ms']} ms   p99 {stats['p99_ms']} ms   (n={stats['n']})"


def _errors(stats: dict[str, Any]) -> str:
    bad = {code: n for code, n in stats["statuses"].items() if not code.startswith("2")}
    return f"   NON-2XX {bad}" if bad else ""


def main() -> None:
    results = run()
    wake, lst, create, rss = (
        results["wake"],
        results["list"],
        results["create"],
        results["facade_rss_mib"],
    )
    conc, single = lst["concurrent"], lst["single_client"]
    print_table(
        f"api (full profile, facade and operator as processes, {results['cpu_count']} cores)",
        [
            (
                "connect → phase Running (hibernated session)",
                f"{_latency(wake['connect_to_running'])}   "
                f"max {wake['connect_to_running']['max_ms']} ms",
            ),
            ("GET …/connect itself", _latency(wake["connect_call"])),
            (
                f"list {LISTED} sessions, {conc['clients']} clients",
                f"{_latency(conc)}   {conc['per_second']} req/s{_errors(conc)}",
            ),
            (
                "  of which 2xx",
                f"{_latency(conc['ok'])}   {conc['ok_per_second']} req/s",
            ),
            (
                "  CPU: facade / operator / whole machine",
                f"{conc['cpu']['facade_percent']} % / {conc['cpu']['operator_percent']} % / "
                f"{conc['cpu']['machine_busy_percent']} %",
            ),
            (
                f"list {LISTED} sessions, 1 client",
                f"{_latency(single)}   {single['per_second']} req/s{_errors(single)}",
            ),
            ("list response size", f"{lst['response_bytes'] // 1024} KiB"),
            (
                f"create, {create['clients']} clients",
                f"{_latency(create)}   {create['per_second']} creates/s{_errors(create)}",
            ),
            (
                "facade RSS start / 1,000 sessions / after list / after creates",
                " / ".join(str(v) for v in rss.values()) + " MiB",
            ),
            (
                f"{results['bulk']['created_directly']} CRs → listed and reconciled",
                f"{results['bulk']['listed_and_reconciled_s']} s",
            ),
        ],
    )
    print(f"\nwritten to {write_results('api', results)}")
