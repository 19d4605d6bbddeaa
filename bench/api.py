"""Scenario `api`: the facade as REST clients meet it (issue 17 targets beside the figures).

* connect → Running: a hibernated session woken by ``GET /api/v1/sessions/{id}/connect``, until
  ``GET /api/v1/sessions/{id}`` shows phase ``Running`` (polled every 50 ms),
* create: ``POST /api/v1/sessions``, 200 at concurrency 16, spread over 64 users' API keys (rate
  limits are per user), with the operator running and again with it stopped (the facade and
  the API server alone: what the facade itself allows), with the facade's CPU,
* list: a 50-row page (``?limit=50``) out of ``BENCH_API_SESSIONS`` (default 10,000) sessions,
  32 concurrent clients on one facade process (p50/p99, requests/s), a page deep in the list
  (a continue token after half the sessions), revalidation with ``If-None-Match`` (share of
  304s), the same page gzipped, and one client alone,
* answer sizes (identity and gzip), facade RSS and CPU along the way, the machine's cores.

The facade and the operator run as processes of their own (``streamspace facade``,
``streamspace operator``) with a throw-away PostgreSQL; the load comes from this process, with an
admin's API key (so authentication goes through the key cache). The control plane has the full
profile because a session only becomes Running when a pod does.

The listed sessions are created hibernated, as Session CRs applied straight to the API server by
32 threads, after the operator is stopped: the facade's mirror picks them up from its watch like
any others (the list is the real mirror's), but no operator reconciles 10,000 sessions while the
list is timed — the operator at 10,000 is the ``scale`` scenario's. They stay in phase Pending.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes import client, config

from bench import profile
from bench.common import (
    GROUP,
    RESULTS,
    SESSIONS,
    VERSION,
    FacadeProcess,
    Rest,
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
LISTED = int(os.environ.get("BENCH_API_SESSIONS", "10000"))
PAGE = 50
LIST_CLIENTS = 32
LIST_REQUESTS = 4000
SINGLE_REQUESTS = 300
CREATES = 200
CREATE_CLIENTS = 16
CREATE_USERS = 64
BULK_THREADS = 32
TARGETS = {"list_p99_ms": 20.0, "list_per_second": 1000.0, "creates_per_second": 50.0}
"""Issue 17's targets for this machine kind."""


@dataclass
class Load:
    answers: list[tuple[int, float, int]]  # (HTTP status, 0 when none; seconds; body bytes)
    seconds: float

    def figures(self) -> dict[str, Any]:
        ok = [t for status, t, _ in self.answers if 200 <= status < 400]
        return {
            **summary([t for _, t, _ in self.answers]),
            "per_second": round(len(self.answers) / self.seconds, 1),
            "ok_per_second": round(len(ok) / self.seconds, 1),
            "ok": summary(ok),
            "seconds": round(self.seconds, 2),
            "statuses": dict(sorted(Counter(str(s) for s, _, _ in self.answers).items())),
            "mean_bytes": round(sum(b for _, _, b in self.answers) / max(1, len(self.answers))),
        }


async def _load(
    url: str,
    method: str,
    path: str,
    *,
    total: int,
    clients: int,
    tokens: list[str],
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Load:
    """``total`` requests shared by ``clients`` concurrent callers; request i uses
    ``tokens[i % len(tokens)]``. Bodies are read raw (gzip is not undone): the client must not
    be the bottleneck, and the byte count is what went over the wire."""
    answers: list[tuple[int, float, int]] = []
    tickets = iter(range(total))

    async def caller(session: aiohttp.ClientSession) -> None:
        for i in tickets:
            sent = {
                "Authorization": f"Bearer {tokens[i % len(tokens)]}",
                "Accept-Encoding": "identity",  # aiohttp would ask for gzip by default
                **(headers or {}),
            }
            started = time.perf_counter()
            size = 0
            try:
                async with session.request(method, url + path, json=body, headers=sent) as resp:
                    size = len(await resp.content.read())
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            answers.append((status, time.perf_counter() - started, size))

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients),
        timeout=aiohttp.ClientTimeout(total=60),
        auto_decompress=False,
    ) as session:
        started = time.perf_counter()
        await asyncio.gather(*(caller(session) for _ in range(clients)))
        seconds = time.perf_counter() - started
    return Load(answers, seconds)


def _measured(front: FacadeProcess, run: Any, label: str = "") -> tuple[Load, dict[str, Any]]:
    """Run ``run`` (a coroutine) and the facade's, each process's and the machine's CPU
    meanwhile; with ``API_PROFILE=cpu`` and a ``label``, the facade's py-spy profile too."""
    sampler = None
    if label and os.environ.get("API_PROFILE") == "cpu":
        sampler = profile.CpuProfile(front.record.pid, RESULTS / f"profile-api-{label}.txt")
        sampler.start()
    facade_cpu, machine, each = front.cpu_seconds(), machine_ticks(), profile.cpu_by_process()
    loaded: Load = asyncio.run(run)
    busy, total = (now - then for now, then in zip(machine_ticks(), machine, strict=True))
    spent = front.cpu_seconds() - facade_cpu
    figures: dict[str, Any] = {
        "facade_percent": round(100 * spent / loaded.seconds, 1),
        "facade_ms_per_request": round(1000 * spent / max(1, len(loaded.answers)), 2),
        "machine_busy_percent": round(100 * busy / total, 1),
        "by_process_percent": profile.cpu_shares(each, profile.cpu_by_process(), loaded.seconds),
    }
    if sampler is not None:
        figures["facade_profile"] = sampler.stop()
    return loaded, figures


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


def _api_keys(rest: Rest, users: list[str], role: str) -> list[str]:
    """An API key for each user, made through the admin route."""
    return [
        str(rest.call("POST", "/api/v1/admin/apikeys", {"user": u, "role": role})["key"])
        for u in users
    ]


def _creates(front: FacadeProcess, keys: list[str], label: str) -> dict[str, Any]:
    run = _load(
        front.url,
        "POST",
        SESSIONS,
        total=CREATES,
        clients=CREATE_CLIENTS,
        tokens=keys,
        body={"template": "firefox", "state": "hibernated", "persistentHome": False},
    )
    loaded, cpu = _measured(front, run, label)
    return {"clients": CREATE_CLIENTS, "users": len(keys), **loaded.figures(), "cpu": cpu}


def _total(rest: Rest) -> int:
    return int(rest.call("GET", SESSIONS + "?limit=1")["total"])


def _bulk_sessions(kubeconfig: Path, rest: Rest) -> dict[str, Any]:
    """Top the namespace up to LISTED sessions; wait until the facade's list counts them."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = BULK_THREADS
    custom = client.CustomObjectsApi(client.ApiClient(configuration))
    missing = max(0, LISTED - _total(rest))

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
    with ThreadPoolExecutor(max_workers=BULK_THREADS) as pool:
        list(pool.map(create, range(missing)))
    applied = time.monotonic() - started
    assert process.wait_until(lambda: _total(rest) >= LISTED, 900, interval=1.0), "never listed"
    return {
        "applied": missing,
        "apply_s": round(applied, 2),
        "applied_per_second": round(missing / applied, 1) if applied else None,
        "listed_s": round(time.monotonic() - started, 2),
    }


def _get(url: str, path: str, key: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url + path)  # noqa: S310
    request.add_header("Authorization", f"Bearer {key}")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _deep_token(url: str, key: str) -> str:
    """A continue token after about half the sessions (walked 1,000 at a time)."""
    token = ""
    for _ in range(max(1, LISTED // 2000)):
        query = "?limit=1000" + (f"&continue={urllib.parse.quote(token)}" if token else "")
        status, _, raw = _get(url, SESSIONS + query, key)
        assert status == 200, raw[:300]
        token = json.loads(raw)["continue"]
    return token


def _list_load(front: FacadeProcess, key: str) -> dict[str, Any]:
    first = f"{SESSIONS}?limit={PAGE}"
    status, headers, plain = _get(front.url, first, key)
    tag = {k.lower(): v for k, v in headers.items()}["etag"]
    assert status == 200, plain[:300]
    _, zipped_headers, zipped = _get(front.url, first, key, Accept_Encoding="gzip")
    _, _, whole = _get(front.url, f"{SESSIONS}?limit=1000", key)
    _, _, whole_zipped = _get(front.url, f"{SESSIONS}?limit=1000", key, Accept_Encoding="gzip")
    sizes = {
        "page": len(plain),
        "page_gzip": len(zipped),
        "page_1000": len(whole),
        "page_1000_gzip": len(whole_zipped),
        "gzip_encoded": "gzip"
        in {k.lower(): v for k, v in zipped_headers.items()}.get("content-encoding", ""),
    }
    deep = f"{SESSIONS}?limit={PAGE}&continue={urllib.parse.quote(_deep_token(front.url, key))}"

    def load(path: str, clients: int, total: int, **headers: str) -> Any:
        return _load(
            front.url, "GET", path, total=total, clients=clients, tokens=[key], headers=headers
        )

    asyncio.run(load(first, 4, 100))  # warm-up, not counted
    results: dict[str, Any] = {"sizes": sizes}
    for name, path, extra in (
        ("first_page", first, {}),
        ("deep_page", deep, {}),
        ("revalidate", first, {"If-None-Match": tag}),
        ("gzip", first, {"Accept-Encoding": "gzip"}),
    ):
        loaded, cpu = _measured(front, load(path, LIST_CLIENTS, LIST_REQUESTS, **extra), name)
        results[name] = {"clients": LIST_CLIENTS, **loaded.figures(), "cpu": cpu}
    answers = results["revalidate"]["statuses"]
    results["revalidate"]["not_modified_share"] = round(
        answers.get("304", 0) / max(1, sum(answers.values())), 4
    )
    single = asyncio.run(load(first, 1, SINGLE_REQUESTS))
    results["single_client"] = single.figures()
    return results


def run() -> dict[str, Any]:
    results: dict[str, Any] = {
        "scenario": "api",
        "cpu_count": os.cpu_count(),
        "listed": LISTED,
        "targets": TARGETS,
    }
    admin_token = mint_hs256(JWT_SECRET, USER, "admin", timedelta(hours=2))
    rss: dict[str, float] = {}
    with (
        control_plane("full") as kubeconfig,
        database() as database_url,
    ):
        namespace_with_firefox(kubeconfig, NAMESPACE)
        with facade(kubeconfig, database_url, NAMESPACE, JWT_SECRET) as front:
            rest = Rest(front.url, admin_token)
            rss["started"] = front.rss_mib()
            users = [f"creator{i}" for i in range(CREATE_USERS)]
            create_keys = _api_keys(rest, users, "user")
            [list_key] = _api_keys(rest, ["lister"], "admin")
            with operator(kubeconfig, NAMESPACE, DATABASE_URL=database_url):
                results["wake"] = _connect_to_running(rest)
                results["create"] = _creates(front, create_keys, "create")
            results["create_operator_stopped"] = _creates(
                front, create_keys, "create_operator_stopped"
            )
            rss["after_creates"] = front.rss_mib()
            results["bulk"] = _bulk_sessions(kubeconfig, rest)
            rss[f"sessions_{LISTED}"] = front.rss_mib()
            results["list"] = _list_load(front, list_key)
            rss["after_list_load"] = front.rss_mib()
    results["facade_rss_mib"] = rss
    return results


def _latency(stats: dict[str, Any]) -> str:
    return f"p50 {stats['p50_ms']} ms   p99 {stats['p99_ms']} ms   (n={stats['n']})"


def _errors(stats: dict[str, Any]) -> str:
    bad = {code: n for code, n in stats["statuses"].items() if code not in {"200", "201", "304"}}
    return f"   UNEXPECTED {bad}" if bad else ""


def _verdict(value: float, target: float, *, at_most: bool) -> str:
    met = value <= target if at_most else value >= target
    return f"target {'≤' if at_most else '≥'} {target:g}: {'met' if met else 'NOT met'}"


def main() -> None:
    results = run()
    wake, lst, rss = results["wake"], results["list"], results["facade_rss_mib"]
    create, stopped = results["create"], results["create_operator_stopped"]
    first, deep, reval, zipped = (lst[k] for k in ("first_page", "deep_page", "revalidate", "gzip"))
    sizes, single = lst["sizes"], lst["single_client"]
    n = f"{results['listed']:,}"
    rows = [
        (
            "connect → phase Running (hibernated session)",
            f"{_latency(wake['connect_to_running'])}   "
            f"max {wake['connect_to_running']['max_ms']} ms",
        ),
        ("GET …/connect itself", _latency(wake["connect_call"])),
        (
            f"create, {create['clients']} clients, {create['users']} users' keys",
            f"{_latency(create)}   {create['per_second']} creates/s{_errors(create)}   "
            + _verdict(create["per_second"], TARGETS["creates_per_second"], at_most=False),
        ),
        (
            "  CPU: facade (ms per create) / whole machine",
            f"{create['cpu']['facade_percent']} % ({create['cpu']['facade_ms_per_request']} ms)"
            f" / {create['cpu']['machine_busy_percent']} %",
        ),
        (
            "create, operator stopped (facade + API server)",
            f"{_latency(stopped)}   {stopped['per_second']} creates/s{_errors(stopped)}   "
            f"facade CPU {stopped['cpu']['facade_percent']} % "
            f"({stopped['cpu']['facade_ms_per_request']} ms)",
        ),
        (
            f"{PAGE}-row page of {n}, {first['clients']} clients",
            f"{_latency(first)}   {first['per_second']} req/s{_errors(first)}",
        ),
        (
            "  p99 / req/s per facade process",
            _verdict(first["p99_ms"], TARGETS["list_p99_ms"], at_most=True)
            + "   "
            + _verdict(first["per_second"], TARGETS["list_per_second"], at_most=False),
        ),
        (
            "  CPU: facade (ms per request) / whole machine",
            f"{first['cpu']['facade_percent']} % ({first['cpu']['facade_ms_per_request']} ms)"
            f" / {first['cpu']['machine_busy_percent']} %",
        ),
        (
            f"page after {n}/2 (continue token)",
            f"{_latency(deep)}   {deep['per_second']} req/s{_errors(deep)}",
        ),
        (
            "revalidation (If-None-Match)",
            f"{_latency(reval)}   {reval['per_second']} req/s   "
            f"304 share {100 * reval['not_modified_share']:.1f} %{_errors(reval)}",
        ),
        (
            "same page gzipped",
            f"{_latency(zipped)}   {zipped['per_second']} req/s{_errors(zipped)}",
        ),
        (f"{PAGE}-row page, 1 client", f"{_latency(single)}   {single['per_second']} req/s"),
        (
            "answer size: 50 rows / gzip; 1,000 rows / gzip",
            f"{sizes['page'] / 1024:.1f} / {sizes['page_gzip'] / 1024:.1f} KiB; "
            f"{sizes['page_1000'] / 1024:.0f} / {sizes['page_1000_gzip'] / 1024:.0f} KiB",
        ),
        (
            f"{results['bulk']['applied']:,} Session CRs applied ({BULK_THREADS} threads) / listed",
            f"{results['bulk']['apply_s']} s ({results['bulk']['applied_per_second']}/s,"
            f" the API server alone) / {results['bulk']['listed_s']} s",
        ),
        (
            "facade RSS " + " / ".join(k.replace("_", " ") for k in rss),
            " / ".join(str(v) for v in rss.values()) + " MiB",
        ),
    ]
    for label, phase in (("create", create), ("create, op. stopped", stopped), ("page", first)):
        shares = phase["cpu"]["by_process_percent"]
        rows.append(
            (f"  CPU by process during {label} (% of a core)", profile.shares_text(shares)),
        )
        if "facade_profile" in phase["cpu"]:
            rows += profile.cpu_rows(f"  facade during {label}", phase["cpu"]["facade_profile"])
    print_table(
        f"api (full profile, facade and operator as processes, {results['cpu_count']} cores)",
        rows,
    )
    print(f"\nwritten to {write_results('api', results)}")
