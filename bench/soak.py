"""Scenario `soak`: 200 sessions under a steady mixed load for 30 minutes; a leak shows as a slope.

The operator and the facade run as processes of their own (``streamspace operator``,
``streamspace facade``) on a full-profile control plane (kwok plays the pods) with a throw-away
PostgreSQL, all started here. ``bench.soak_load`` first creates the sessions over REST, then
keeps them busy: create, connect, heartbeat, disconnect, hibernate, wake and delete at a steady
rate. Every ``SOAK_SAMPLE_SECONDS`` each process is sampled:

* resident memory (``VmRSS``) and open file descriptors, from ``/proc/<pid>``,
* asyncio tasks, from its ``/metrics`` (``streamspace_asyncio_tasks``, counted at scrape time),
* its request rate to the Kubernetes API, from ``streamspace_kubernetes_requests_total`` (counted
  by each process's own HTTP clients; kube-apiserver's ``apiserver_request_total`` has no label
  that tells our two processes apart from the controller manager, the scheduler and kwok),
* its CPU, from ``/proc/<pid>/stat``.

Printed: a table over time, and for each series the least-squares slope per hour after a
warm-up (``streamspace_dev.trend``): memory, descriptors or tasks that keep growing under a load
that does not are a leak; a request rate that grows is work piling up. Knobs (environment):
``SOAK_MINUTES`` (30), ``SOAK_RATE`` (operations per second, 4), ``SOAK_SAMPLE_SECONDS``
(duration / 120, at least 5), ``SOAK_WARMUP_MINUTES`` (a third of the run, at most 5).

The Template asks for 256Mi and 100m per session so that all 200 fit the two fake nodes (the
other scenarios' 2Gi and 1 CPU fit 128).
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    SESSIONS,
    Rest,
    control_plane,
    database,
    facade,
    namespace_with_firefox,
    operator,
    print_table,
    write_results,
)
from bench.soak_load import USERS, WEIGHTS, Load
from streamspace.auth.tokens import mint_hs256
from streamspace_dev import process
from streamspace_dev.trend import trend

NAMESPACE = "bench-soak"
JWT_SECRET = secrets.token_urlsafe(32)
TARGET = 200
RESOURCES = {"memory": "256Mi", "cpu": "100m"}
SERIES = {  # key → (heading, unit)
    "rss_mib": ("RSS", "MiB"),
    "fds": ("fds", "fds"),
    "tasks": ("tasks", "tasks"),
    "kube_rps": ("k8s req/s", "req/s"),
    "cpu_percent": ("CPU %", "%"),
}


@dataclass(frozen=True)
class Knobs:
    minutes: float
    rate: float
    sample_s: float
    warmup_s: float


def knobs() -> Knobs:
    minutes = float(os.environ.get("SOAK_MINUTES", "30"))
    sample = os.environ.get("SOAK_SAMPLE_SECONDS") or max(5.0, minutes * 60 / 120)
    warmup = os.environ.get("SOAK_WARMUP_MINUTES") or min(5.0, minutes / 3)
    return Knobs(
        minutes, float(os.environ.get("SOAK_RATE", "4")), float(sample), float(warmup) * 60
    )


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fds(pid: int) -> float:
    try:
        return float(sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir()))
    except OSError:
        return math.nan


def _scrape(url: str) -> dict[str, float]:
    """Tasks, and Kubernetes requests so far by client, from one ``/metrics``."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
            text = resp.read().decode()
    except OSError:
        return {}
    found: dict[str, float] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamspace_asyncio_tasks":
                found["tasks"] = sample.value
            elif sample.name == "streamspace_kubernetes_requests_total":
                found[f"requests_{sample.labels['client']}"] += sample.value
    return dict(found)


class Sampler(threading.Thread):
    """Samples each process every ``every`` seconds until stopped; its rows in ``rows``."""

    def __init__(self, processes: dict[str, tuple[int, str]], every: float) -> None:
        super().__init__(daemon=True)
        self.processes = processes
        self.every = every
        self.rows: list[dict[str, Any]] = []
        self.stopped = threading.Event()
        self.start_time = time.monotonic()

    def sample(self) -> None:
        row: dict[str, Any] = {"t": round(time.monotonic() - self.start_time, 2)}
        for name, (pid, url) in self.processes.items():
            scraped = _scrape(url)
            row[name] = {
                "rss_mib": round(process.rss_bytes(pid) / 2**20, 2),
                "fds": _fds(pid),
                "cpu_s": _cpu_seconds(pid),
                "tasks": scraped.get("tasks", math.nan),
                "requests": {
                    k.removeprefix("requests_"): v for k, v in scraped.items() if k != "tasks"
                },
            }
        self.rows.append(row)

    def run(self) -> None:
        tick = self.start_time
        while True:
            self.sample()
            tick += self.every
            if self.stopped.wait(max(0.0, tick - time.monotonic())):
                return


def series(rows: list[dict[str, Any]], name: str) -> dict[str, list[float]]:
    """Per-sample series of one process; rates over the interval ending at each sample."""
    out: dict[str, list[float]] = {key: [] for key in SERIES}
    out["t"] = [r["t"] for r in rows]
    previous: dict[str, Any] | None = None
    for row in rows:
        now = row[name]
        for key in ("rss_mib", "fds", "tasks"):
            out[key].append(now[key])
        rps = cpu = math.nan
        if previous is not None:
            before, dt = previous[name], row["t"] - previous["t"]
            if now["requests"] and before["requests"]:
                rps = (sum(now["requests"].values()) - sum(before["requests"].values())) / dt
            cpu = 100 * (now["cpu_s"] - before["cpu_s"]) / dt
        out["kube_rps"].append(rps)
        out["cpu_percent"].append(cpu)
        previous = row
    return out


def _phases(rest: Rest) -> dict[str, int]:
    return dict(Counter(s["phase"] for s in rest.call("GET", SESSIONS)["sessions"]))


def _settled(rest: Rest) -> bool:
    try:
        return "Pending" not in _phases(rest)
    except RuntimeError:  # an error answer (a busy machine): ask again
        return False


async def _drive(load: Load, seconds: float, rate: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        await load.run(http, seconds, rate)


async def _populate(load: Load) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        await load.populate(http)


def run() -> dict[str, Any]:
    k = knobs()
    hours = timedelta(minutes=k.minutes + 60)
    admin = mint_hs256(JWT_SECRET, "soak-admin", "admin", hours)
    tokens = {f"user{i}": mint_hs256(JWT_SECRET, f"user{i}", "user", hours) for i in range(USERS)}
    results: dict[str, Any] = {"scenario": "soak", "cpu_count": os.cpu_count(), **k.__dict__}
    results["weights"] = WEIGHTS
    with control_plane("full") as kubeconfig, database() as database_url:
        namespace_with_firefox(kubeconfig, NAMESPACE, RESOURCES)
        with (
            operator(kubeconfig, NAMESPACE, metrics=True, DATABASE_URL=database_url) as op,
            facade(kubeconfig, database_url, NAMESPACE, JWT_SECRET) as front,
        ):
            assert op.metrics_url is not None
            rest = Rest(front.url, admin)
            load = Load(front.url, tokens, "firefox", TARGET)
            started = time.monotonic()
            asyncio.run(_populate(load))
            settled = process.wait_until(lambda: _settled(rest), 600, 1.0)
            results["populate"] = {
                "sessions": len(load.sessions),
                "seconds": round(time.monotonic() - started, 1),
                "settled": settled,
                "phases": _phases(rest),
            }
            sampler = Sampler(
                {
                    "operator": (op.record.pid, op.metrics_url),
                    "facade": (front.record.pid, f"{front.url}/metrics"),
                },
                k.sample_s,
            )
            sampler.start()
            try:
                asyncio.run(_drive(load, k.minutes * 60, k.rate))
            finally:
                sampler.stopped.set()
                sampler.join(timeout=60)
            results["load"] = load.figures()
            results["phases_at_end"] = _phases(rest)
            results["alive_at_end"] = {
                "operator": process.is_running(op.record),
                "facade": process.is_running(front.record),
            }
    results["samples"] = sampler.rows
    results["trends"] = {
        name: _trends(series(sampler.rows, name), k.warmup_s) for name in ("operator", "facade")
    }
    return results


def _trends(data: dict[str, list[float]], warmup: float) -> dict[str, dict[str, float]]:
    out = {}
    for key in SERIES:
        fitted = trend(data["t"], data[key], warmup)
        out[key] = {
            "samples": fitted.samples,
            "mean": round(fitted.mean, 2),
            "per_hour": round(fitted.per_hour, 3),
            "percent_per_hour": round(fitted.percent_per_hour, 2),
        }
    return out


def _cell(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _over_time(results: dict[str, Any]) -> None:
    rows = results["samples"]
    data = {name: series(rows, name) for name in ("operator", "facade")}
    keys = ("rss_mib", "fds", "tasks", "kube_rps", "cpu_percent")
    heading = "  ".join(f"{SERIES[key][0]:>9}" for key in keys)
    print(f"\nsoak over time ({len(rows)} samples, every {results['sample_s']:g} s)")
    print(f"{'min':>6}  {'operator':<{len(heading)}}  |  facade")
    print(f"{'':>6}  {heading}  |  {heading}")
    step = max(1, math.ceil(len(rows) / 20))
    for i in sorted({*range(0, len(rows), step), len(rows) - 1}):
        cells = [
            "  ".join(f"{_cell(data[name][key][i]):>9}" for key in keys)
            for name in ("operator", "facade")
        ]
        print(f"{rows[i]['t'] / 60:>6.1f}  {cells[0]}  |  {cells[1]}")


def main() -> None:
    results = run()
    _over_time(results)
    trends, warmup = results["trends"], results["warmup_s"] / 60
    print_table(
        f"soak: {TARGET} sessions, {results['rate']:g} operations/s for {results['minutes']:g} "
        f"min, {results['cpu_count']} cores; slope per hour after {warmup:g} min of warm-up",
        [
            (
                f"{name} {SERIES[key][0]}",
                f"mean {_cell(t['mean'])} {SERIES[key][1]}   slope {t['per_hour']:+.2f} "
                f"{SERIES[key][1]}/h ({_cell(t['percent_per_hour'])} %/h, n={t['samples']})",
            )
            for name in ("operator", "facade")
            for key, t in trends[name].items()
        ],
    )
    load = results["load"]
    print_table(
        "soak load (statuses by operation; p50 / p99)",
        [
            (op, f"{figures['statuses']}   {figures['p50_ms']} / {figures['p99_ms']} ms")
            for op, figures in load["by_operation"].items()
        ]
        + [
            (
                "operations started / ticks skipped",
                f"{load['started']} / {load['skipped_ticks']}",
            ),
            (
                "populated",
                f"{results['populate']['sessions']} sessions in "
                f"{results['populate']['seconds']} s, then {results['populate']['phases']}",
            ),
            ("phases at the end", str(results["phases_at_end"])),
            ("processes alive at the end", str(results["alive_at_end"])),
        ],
    )
    print(f"\nwritten to {write_results('soak', results)}")
