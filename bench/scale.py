"""Scenario `scale`: the operator at 1,000 and 10,000 sessions, and sharded (issue 17).

Each size N of ``SCALE_SESSIONS`` (default ``1000,10000``) gets a fresh full-profile control
plane (kwok plays the pods; fake nodes are added until every pod fits) and one operator process
with the product's defaults. In order:

* create → Deployment p50/p99 of single sessions while the operator is idle, with no sessions,
* a burst of N Sessions, created by a concurrent client: seconds until every Deployment exists
  and until every Session is Running, and the operator's Kubernetes API requests per session
  over that time (its ``streamspace_kubernetes_requests_total``, by client),
* steady state at N: the operator's CPU (% of one core) and requests/s over ``SCALE_WINDOW``
  seconds (default 120: two rounds of every session timer) after a settling pause, and its RSS,
* create → Deployment p50/p99 of single sessions again, now beside N sessions,
* an idle-deadline burst: ``SCALE_IDLE_BURST`` (default 1,000) of the N sessions are given the
  same last activity and a short idle timeout, as if all their users had left at one instant;
  hibernation lateness (``spec.state`` seen ``hibernated`` minus that deadline) against one
  ``IDLE_CHECK_INTERVAL`` (30 s), and the wake latency (Connection created → Deployment scaled
  to 1) of hibernated sessions woken while the burst runs.

Then the sharded case (``SCALE_SHARDED`` sessions, default 10,000; 0 skips it): 4 namespaces,
2 operators with ``OPERATOR_NAMESPACES`` of 2 namespaces each: the burst, then each operator's
RSS, steady CPU and requests per session. ``SCALE_WORKERS`` (default 32) threads create.
"""

from __future__ import annotations

import math
import os
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from prometheus_client.parser import text_string_to_metric_families

from bench import profile, scale_report
from bench.common import (
    GROUP,
    RESULTS,
    VERSION,
    DeploymentRecorder,
    OperatorProcess,
    api_client,
    control_plane,
    custom_object,
    namespace_with_firefox,
    operator,
    percentile,
    print_table,
    summary,
    write_results,
)
from streamspace.conditions import timestamp
from streamspace_dev import process
from streamspace_dev.objects import KWOK_NODE_LABEL, register_fake_nodes

NAMESPACE = "bench-scale"
TINY = {"memory": "16Mi", "cpu": "10m"}  # 500 pods fit a fake node (its pod limit)
PODS_PER_NODE = 500
SINGLES = 40
SINGLE_EVERY = 1.0  # seconds between them: far longer than an idle operator needs
WAKES = 50
IDLE_TIMEOUT = 90  # seconds from the common last activity to the deadline
IDLE_CHECK = 30.0  # the product's IDLE_CHECK_INTERVAL, which the operator runs with
SETTLE = 30.0
WAKE_WAIT = 300.0


def _knobs() -> dict[str, Any]:
    sizes = os.environ.get("SCALE_SESSIONS", "1000,10000")
    return {
        "sizes": [int(s) for s in sizes.split(",") if s.strip()],
        "sharded": int(os.environ.get("SCALE_SHARDED", "10000")),
        "window_s": float(os.environ.get("SCALE_WINDOW", "120")),
        "idle_burst": int(os.environ.get("SCALE_IDLE_BURST", "1000")),
        "workers": int(os.environ.get("SCALE_WORKERS", "32")),
        # cpu: py-spy on the operator in each phase; memory: the operator under tracemalloc
        "profile": os.environ.get("SCALE_PROFILE", ""),
    }


@contextmanager
def _profiled(
    knobs: dict[str, Any], op: OperatorProcess, label: str, into: dict[str, Any]
) -> Iterator[None]:
    """Each process's share of the CPU over the block, in ``into``; with ``SCALE_PROFILE=cpu``
    the operator's py-spy profile too."""
    sampler = None
    if knobs["profile"] == "cpu":
        sampler = profile.CpuProfile(op.record.pid, RESULTS / f"profile-scale-{label}.txt")
        sampler.start()
    started, before = time.monotonic(), profile.cpu_by_process()
    try:
        yield
    finally:
        seconds = time.monotonic() - started
        shares = profile.cpu_shares(before, profile.cpu_by_process(), seconds)
        into.setdefault("cpu_by_process", {})[label] = shares
        if sampler is not None:
            into.setdefault("cpu_profile", {})[label] = sampler.stop()


def _memory(op: OperatorProcess, traced: Path | None, label: str, into: dict[str, Any]) -> None:
    """With ``SCALE_PROFILE=memory`` (the operator started ``traced``): its allocation sites
    now, in ``into``."""
    if traced is not None:
        into.setdefault("memory_profile", {})[label] = profile.memory_snapshot(
            op.record.pid, traced
        )


class SessionWatch:
    """Every Session of the cluster: its phase, and when ``spec.state`` was first seen
    ``hibernated`` (wall clock)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.phase: dict[tuple[str, str], str] = {}
        self.hibernated: dict[tuple[str, str], datetime] = {}
        self._watch = watch.Watch()
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop:  # a watch that breaks is opened again
            try:
                for event in self._watch.stream(
                    self.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    "sessions",
                    timeout_seconds=120,
                ):
                    obj: Any = event["object"]
                    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                    self.phase[key] = (obj.get("status") or {}).get("phase") or "Pending"
                    if obj["spec"].get("state") == "hibernated":
                        self.hibernated.setdefault(key, datetime.now(UTC))
            except Exception:
                if self._stop:
                    return

    def count(self, phase: str, keys: Iterable[tuple[str, str]]) -> int:
        return sum(1 for k in keys if self.phase.get(k) == phase)

    def close(self) -> None:
        self._stop = True
        self._watch.stop()


def _spec() -> dict[str, Any]:
    return {"user": "bench", "template": "firefox", "persistentHome": False}


def _parallel(fn: Callable[[Any], object], items: Iterable[Any], workers: int) -> float:
    """Run ``fn`` over ``items`` with ``workers`` threads; the seconds it took."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fn, items))
    return time.monotonic() - started


def _add_nodes(kubeconfig: Path, pods: int) -> int:
    """Fake nodes until ``pods`` pods fit (the control plane brings two), once kwok has them."""
    count = max(2, math.ceil(pods / PODS_PER_NODE) + 1)
    names = tuple(f"kwok-node-{i}" for i in range(count))
    register_fake_nodes(kubeconfig, names)
    core = client.CoreV1Api(api_client(kubeconfig))

    def ready() -> bool:
        nodes = core.list_node(label_selector=f"{KWOK_NODE_LABEL}=true").items
        return sum(
            1
            for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        ) >= len(names)

    if not process.wait_until(ready, 120, 1.0):
        raise RuntimeError("kwok did not make the extra nodes ready")
    return count


def _requests(op: OperatorProcess) -> dict[str, float]:
    """The operator's Kubernetes API requests so far, by client, from its /metrics."""
    assert op.metrics_url is not None
    with urllib.request.urlopen(op.metrics_url, timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamspace_kubernetes_requests_total":
                found[sample.labels["client"]] += sample.value
    return dict(found)


def _delta(after: dict[str, float], before: dict[str, float], per: float) -> dict[str, float]:
    out = {k: round((after.get(k, 0) - before.get(k, 0)) / per, 2) for k in after}
    out["total"] = round(sum(out.values()), 2)
    return out


def _singles(
    custom: client.CustomObjectsApi, recorder: DeploymentRecorder, prefix: str
) -> tuple[list[str], dict[str, float]]:
    """Sessions created one every SINGLE_EVERY seconds (not one after the other's Deployment:
    beside N sessions one can take a minute, and 40 in a row would take the whole run)."""
    names = [f"{prefix}-{i}" for i in range(SINGLES)]

    def one(item: tuple[int, str]) -> float:
        i, name = item
        time.sleep(i * SINGLE_EVERY)
        started = time.monotonic()
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "sessions", custom_object("Session", name, _spec())
        )
        return recorder.wait_for(name, 1, started, 900)

    with ThreadPoolExecutor(max_workers=SINGLES) as pool:
        latencies = list(pool.map(one, enumerate(names)))
    return names, summary(latencies)


def _burst(
    kubeconfig: Path,
    ops: list[OperatorProcess],
    watch_: SessionWatch,
    recorders: dict[str, DeploymentRecorder],
    targets: list[tuple[str, str]],
    *,
    workers: int,
) -> dict[str, Any]:
    """Create ``targets`` (namespace, name) at once; until Deployments, until Running."""
    custom = client.CustomObjectsApi(api_client(kubeconfig))
    before = [_requests(op) for op in ops]
    started = time.monotonic()
    created = _parallel(
        lambda t: custom.create_namespaced_custom_object(
            GROUP, VERSION, t[0], "sessions", custom_object("Session", t[1], _spec())
        ),
        targets,
        workers,
    )
    timeout = 300 + len(targets) * 0.5
    deployments = max(recorders[ns].wait_for(n, 1, started, timeout) for ns, n in targets)
    ok = process.wait_until(  # pods come after the Deployments, as slowly on a busy machine
        lambda: watch_.count("Running", targets) == len(targets), deployments + timeout, 2.0
    )
    running = time.monotonic() - started
    return {
        "sessions": len(targets),
        "create_calls_s": round(created, 1),
        "all_deployments_s": round(deployments, 1),
        "all_running_s": round(running, 1) if ok else None,
        "running_of_them": watch_.count("Running", targets),
        # from the first create until all are Running (or the wait ended), timers included
        "requests_over_s": round(running, 1),
        # each operator's requests over the sessions it serves (shards get equal shares)
        "requests_per_session": [
            _delta(_requests(op), b, len(targets) / len(ops))
            for op, b in zip(ops, before, strict=True)
        ],
    }


def _steady(ops: list[OperatorProcess], window: float) -> list[dict[str, float]]:
    time.sleep(SETTLE)
    cpu, reqs, started = (
        [op.cpu_seconds() for op in ops],
        [_requests(op) for op in ops],
        time.monotonic(),
    )
    time.sleep(window)
    wall = time.monotonic() - started
    return [
        {
            "cpu_percent": round(100 * (op.cpu_seconds() - c) / wall, 1),
            "requests_per_s": _delta(_requests(op), r, wall)["total"],
            "rss_mib": round(op.rss_mib(), 1),
        }
        for op, c, r in zip(ops, cpu, reqs, strict=True)
    ]


def _idle_burst(
    kubeconfig: Path,
    watch_: SessionWatch,
    recorder: DeploymentRecorder,
    group: list[str],
    wakers: list[str],
    *,
    workers: int,
) -> dict[str, Any]:
    """Every session of ``group`` idle from one instant; ``wakers`` (hibernated first) woken by
    a Connection each, one every 0.2 s from the deadline on."""
    custom = client.CustomObjectsApi(api_client(kubeconfig))

    def patch(name: str, body: dict[str, Any], status: bool = False) -> None:
        call = (
            custom.patch_namespaced_custom_object_status
            if status
            else custom.patch_namespaced_custom_object
        )
        call(GROUP, VERSION, NAMESPACE, "sessions", name, body)

    asleep = time.monotonic()
    for name in wakers:
        recorder.forget(name)
    _parallel(lambda n: patch(n, {"spec": {"state": "hibernated"}}), wakers, workers)
    for name in wakers:
        recorder.wait_for(name, 0, asleep, 900)
    # As if every user of the group had left at `left`: the last activity the operator writes on
    # a disconnect, then a timeout short enough to wait for (patched second: the deadline jumps
    # from left + 30m to left + IDLE_TIMEOUT).
    left = datetime.now(UTC).replace(microsecond=0)
    deadline = left + timedelta(seconds=IDLE_TIMEOUT)
    patched = _parallel(
        lambda n: patch(n, {"status": {"lastActivity": timestamp(left)}}, status=True),
        group,
        workers,
    )
    patched += _parallel(
        lambda n: patch(n, {"spec": {"idleTimeout": f"{IDLE_TIMEOUT}s"}}), group, workers
    )
    wakes: list[float] = []
    late_wakes: list[str] = []  # not awake after WAKE_WAIT

    def wake(item: tuple[int, str]) -> None:
        i, name = item
        at = deadline + timedelta(seconds=0.2 * i)
        time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
        recorder.forget(name)
        started = time.monotonic()
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            "connections",
            custom_object("Connection", f"wake-{name}", {"session": name, "user": "bench"}),
        )
        try:
            wakes.append(recorder.wait_for(name, 1, started, WAKE_WAIT))
        except TimeoutError:
            late_wakes.append(name)

    waking = threading.Thread(
        target=lambda: _parallel(wake, list(enumerate(wakers)), len(wakers)), daemon=True
    )
    waking.start()
    keys = [(NAMESPACE, n) for n in group]
    done = process.wait_until(
        lambda: all(k in watch_.hibernated for k in keys), IDLE_TIMEOUT + 600, 1.0
    )
    waking.join(600)
    late = [
        (watch_.hibernated[k] - deadline).total_seconds() for k in keys if k in watch_.hibernated
    ]
    return {
        "sessions": len(group),
        "patch_seconds": round(patched, 1),
        "all_hibernated": done,
        "lateness_s": {
            "n": len(late),
            "p50": round(percentile(late, 50), 2),
            "p99": round(percentile(late, 99), 2),
            "max": round(max(late), 2) if late else None,
            "early": sum(1 for x in late if x < 0),
        },
        "wake_during_burst": summary(wakes),
        f"wakes_not_done_in_{WAKE_WAIT:.0f}s": len(late_wakes),
    }


def _progress(part: str, results: dict[str, Any]) -> None:
    """What a part measured so far, written at once: a long run stopped half-way keeps it."""
    write_results(f"scale-{part}", results)
    print(f"{part}: {results}", flush=True)


def run_size(n: int, knobs: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {"sessions": n}
    started = time.monotonic()
    with control_plane("full") as kubeconfig:
        results["fake_nodes"] = _add_nodes(kubeconfig, n + 2 * SINGLES)
        namespace_with_firefox(kubeconfig, NAMESPACE, TINY)
        api = api_client(kubeconfig)
        custom = client.CustomObjectsApi(api)
        sessions, recorder = SessionWatch(api), DeploymentRecorder(kubeconfig, NAMESPACE)
        traced = RESULTS / f"memory-scale-{n}.json" if knobs["profile"] == "memory" else None
        with operator(kubeconfig, NAMESPACE, metrics=True, traced=traced) as op:
            results["rss_start_mib"] = round(op.rss_mib(), 1)
            _memory(op, traced, "start", results)
            before = _requests(op)
            empty, results["create_to_deployment_empty"] = _singles(custom, recorder, "empty")
            keys = [(NAMESPACE, name) for name in empty]
            process.wait_until(lambda: sessions.count("Running", keys) == len(keys), 300, 1.0)
            results["requests_per_session_empty"] = _delta(_requests(op), before, len(empty))
            targets = [(NAMESPACE, f"s-{i}") for i in range(n)]
            with _profiled(knobs, op, f"{n}-burst", results):
                burst = _burst(
                    kubeconfig,
                    [op],
                    sessions,
                    {NAMESPACE: recorder},
                    targets,
                    workers=knobs["workers"],
                )
            burst["requests_per_session"] = burst["requests_per_session"][0]
            results["burst"] = burst
            _progress(f"size-{n}", results)
            with _profiled(knobs, op, f"{n}-steady", results):
                results["steady"] = _steady([op], knobs["window_s"])[0]
            _memory(op, traced, "at_n", results)
            _progress(f"size-{n}", results)
            at_n, results["create_to_deployment_at_n"] = _singles(custom, recorder, "at-n")
            _progress(f"size-{n}", results)
            group = [name for _, name in targets[: min(n, knobs["idle_burst"])]]
            with _profiled(knobs, op, f"{n}-idle-burst", results):
                results["idle_burst"] = _idle_burst(
                    kubeconfig,
                    sessions,
                    recorder,
                    group,
                    (empty + at_n)[:WAKES],
                    workers=knobs["workers"],
                )
            results["rss_end_mib"] = round(op.rss_mib(), 1)
            _memory(op, traced, "end", results)
        sessions.close()
        recorder.close()
    results["minutes"] = round((time.monotonic() - started) / 60, 1)
    _progress(f"size-{n}", results)
    return results


def run_sharded(n: int, knobs: dict[str, Any]) -> dict[str, Any]:
    spaces = [f"scale-{i}" for i in range(4)]
    shards = {"a": spaces[:2], "b": spaces[2:]}
    results: dict[str, Any] = {"sessions": n, "shards": shards}
    started = time.monotonic()
    with control_plane("full") as kubeconfig:
        results["fake_nodes"] = _add_nodes(kubeconfig, n)
        for ns in spaces:
            namespace_with_firefox(kubeconfig, ns, TINY)
        sessions = SessionWatch(api_client(kubeconfig))
        recorders = {ns: DeploymentRecorder(kubeconfig, ns) for ns in spaces}
        with ExitStack() as stack:
            ops = [
                stack.enter_context(
                    operator(
                        kubeconfig, f"shard-{name}", metrics=True, OPERATOR_NAMESPACES=",".join(nss)
                    )
                )
                for name, nss in shards.items()
            ]
            targets = [(spaces[i % 4], f"s-{i}") for i in range(n)]
            burst = _burst(kubeconfig, ops, sessions, recorders, targets, workers=knobs["workers"])
            results["burst"] = burst
            _progress("sharded", results)
            results["steady"] = _steady(ops, knobs["window_s"])
            _progress("sharded", results)
        sessions.close()
        for recorder in recorders.values():
            recorder.close()
    results["minutes"] = round((time.monotonic() - started) / 60, 1)
    return results


def run() -> dict[str, Any]:
    knobs = _knobs()
    results: dict[str, Any] = {
        "scenario": "scale",
        "cpu_count": os.cpu_count(),
        **knobs,
        "singles": SINGLES,
        "idle_check_s": IDLE_CHECK,
        "wake_wait_s": WAKE_WAIT,
    }
    results["sizes_run"] = [run_size(n, knobs) for n in knobs["sizes"]]
    if knobs["sharded"]:
        results["sharded"] = run_sharded(knobs["sharded"], knobs)
    return results


def main() -> None:
    results = run()
    print_table(
        "scale (full profile, kwok; operator as separate processes)", scale_report.rows(results)
    )
    print(f"\nwritten to {write_results('scale', results)}")
