"""Scenario `reconcile`: how fast Sessions become workloads, and what the operator costs.

* create → Deployment latency of single sessions (p50/p99),
* a burst of 200 sessions: time until every one has its Deployment and Service,
* hibernate and wake latency (state patch → Deployment replicas changed),
* operator RSS and CPU with 1,000 sessions,
* Kubernetes API requests the operator sent per session created (Kopf's and its own, from
  ``streamspace_kubernetes_requests_total``), and per second while 1,000 sessions sit still.

Runs against a minimal control plane (no pods are needed to measure the operator's side).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client

from bench.common import (
    DeploymentRecorder,
    api_client,
    control_plane,
    operator,
    print_table,
    summary,
    write_results,
)
from streamspace_dev import process

NAMESPACE = "bench-reconcile"
GROUP, VERSION = "stream.space", "v1alpha1"
SINGLE = 40
BURST = 200
CYCLES = 40
TOTAL = 1000
STILL = 60.0  # seconds of watching 1,000 unchanging sessions (one RECONCILE_INTERVAL)


def session(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Session",
        "metadata": {"name": name},
        "spec": {"user": f"user{hash(name) % 50}", "template": "firefox", "persistentHome": False},
    }


def run() -> dict[str, Any]:
    results: dict[str, Any] = {"scenario": "reconcile"}
    with control_plane() as kubeconfig:
        api = api_client(kubeconfig)
        custom = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            "templates",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Template",
                "metadata": {"name": "firefox"},
                "spec": {
                    "baseImage": "lscr.io/linuxserver/firefox:latest",
                    "kasmvnc": {"enabled": True, "port": 3000},
                },
            },
        )
        recorder = DeploymentRecorder(kubeconfig, NAMESPACE)

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "sessions", session(name)
            )

        with operator(kubeconfig, NAMESPACE, metrics=True) as op:
            results["operator_rss_idle_mib"] = round(op.rss_mib(), 1)
            requests = op.kubernetes_requests()
            single = []
            for i in range(SINGLE):
                started = time.monotonic()
                create(f"single-{i}")
                single.append(recorder.wait_for(f"single-{i}", 1, started))
            results["create_to_deployment"] = summary(single)
            # Settled: every single session has its Service, and the status writes are done.
            assert process.wait_until(
                lambda: len(core.list_namespaced_service(NAMESPACE).items) >= SINGLE, 120
            )
            time.sleep(2)
            results["requests_per_session_single"] = _per(op, requests, SINGLE)

            names = [f"burst-{i}" for i in range(BURST)]
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(create, names))
            created = time.monotonic() - started
            last = max(recorder.wait_for(n, 1, started, timeout=600) for n in names)
            assert process.wait_until(
                lambda: len(core.list_namespaced_service(NAMESPACE).items) >= SINGLE + BURST, 300
            )
            results["burst"] = {
                "sessions": BURST,
                "create_calls_s": round(created, 2),
                "all_deployments_s": round(last, 2),
                "all_services_s": round(time.monotonic() - started, 2),
            }

            hibernate, wake = [], []
            for i in range(CYCLES):
                name = f"single-{i % SINGLE}"
                for state, replicas, sink in (("hibernated", 0, hibernate), ("running", 1, wake)):
                    recorder.forget(name)
                    started = time.monotonic()
                    custom.patch_namespaced_custom_object(
                        GROUP, VERSION, NAMESPACE, "sessions", name, {"spec": {"state": state}}
                    )
                    sink.append(recorder.wait_for(name, replicas, started))
            results["hibernate_latency"] = summary(hibernate)
            results["wake_latency"] = summary(wake)

            existing = SINGLE + BURST
            cpu_before = op.cpu_seconds()
            requests = op.kubernetes_requests()
            started = time.monotonic()
            rest = [f"bulk-{i}" for i in range(TOTAL - existing)]
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(create, rest))
            last = max(recorder.wait_for(n, 1, started, timeout=900) for n in rest)
            results["sessions_total"] = TOTAL
            results["bulk_to_1000_s"] = round(last, 2)
            results["operator_cpu_s_for_bulk"] = round(op.cpu_seconds() - cpu_before, 2)
            assert process.wait_until(
                lambda: len(core.list_namespaced_service(NAMESPACE).items) >= TOTAL, 300
            )
            time.sleep(2)
            results["requests_per_session_bulk"] = _per(op, requests, len(rest))
            results["operator_rss_1000_mib"] = round(op.rss_mib(), 1)
            requests, cpu_before = op.kubernetes_requests(), op.cpu_seconds()
            time.sleep(STILL)
            still = {k: v / STILL for k, v in _delta(op, requests).items()}
            results["still_1000"] = {
                "seconds": STILL,
                "requests_per_s": round(still["total"], 2),
                "operator_cpu_percent": round(100 * (op.cpu_seconds() - cpu_before) / STILL, 1),
            }
        recorder.close()
    return results


def _delta(op: Any, before: dict[str, float]) -> dict[str, float]:
    now = op.kubernetes_requests()
    return {k: v - before.get(k, 0.0) for k, v in now.items()}


def _per(op: Any, before: dict[str, float], sessions: int) -> dict[str, float]:
    """Requests sent since ``before`` per session created, by client and in all."""
    return {k: round(v / sessions, 2) for k, v in _delta(op, before).items()}


def _requests(per: dict[str, float]) -> str:
    return (
        f"{per['total']} (kopf {per.get('kopf', 0.0)}, streamspace {per.get('streamspace', 0.0)})"
    )


def _latency(stats: dict[str, float]) -> str:
    return f"p50 {stats['p50_ms']} ms   p99 {stats['p99_ms']} ms   (n={stats['n']})"


def main() -> None:
    results = run()
    burst = results["burst"]
    print_table(
        "reconcile (minimal control plane, operator as a separate process)",
        [
            ("create → Deployment, single sessions", _latency(results["create_to_deployment"])),
            ("API requests per session, single", _requests(results["requests_per_session_single"])),
            ("API requests per session, bulk", _requests(results["requests_per_session_bulk"])),
            (f"burst of {BURST}: all Deployments", f"{burst['all_deployments_s']} s"),
            (f"burst of {BURST}: all Services", f"{burst['all_services_s']} s"),
            ("hibernate: patch → replicas 0", _latency(results["hibernate_latency"])),
            ("wake: patch → replicas 1", _latency(results["wake_latency"])),
            ("operator RSS, idle", f"{results['operator_rss_idle_mib']} MiB"),
            (f"operator RSS, {TOTAL} sessions", f"{results['operator_rss_1000_mib']} MiB"),
            (
                f"bulk to {TOTAL} sessions: time / operator CPU",
                f"{results['bulk_to_1000_s']} s / {results['operator_cpu_s_for_bulk']} s",
            ),
            (
                f"{TOTAL} sessions sitting still {STILL:.0f} s: requests/s / CPU",
                f"{results['still_1000']['requests_per_s']} / "
                f"{results['still_1000']['operator_cpu_percent']} %",
            ),
        ],
    )
    print(f"\nwritten to {write_results('reconcile', results)}")
