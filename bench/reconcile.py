"""Scenario `reconcile`: how fast Sessions become workloads, and what the operator costs.

* create → Deployment latency of single sessions (p50/p99),
* a burst of 200 sessions: time until every one has its Deployment and Service,
* hibernate and wake latency (state patch → Deployment replicas changed),
* operator RSS and CPU with 1,000 sessions.

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

        with operator(kubeconfig, NAMESPACE) as op:
            results["operator_rss_idle_mib"] = round(op.rss_mib(), 1)
            single = []
            for i in range(SINGLE):
                started = time.monotonic()
                create(f"single-{i}")
                single.append(recorder.wait_for(f"single-{i}", 1, started))
            results["create_to_deployment"] = summary(single)

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
            started = time.monotonic()
            rest = [f"bulk-{i}" for i in range(TOTAL - existing)]
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(create, rest))
            last = max(recorder.wait_for(n, 1, started, timeout=900) for n in rest)
            results["sessions_total"] = TOTAL
            results["bulk_to_1000_s"] = round(last, 2)
            results["operator_cpu_s_for_bulk"] = round(op.cpu_seconds() - cpu_before, 2)
            results["operator_rss_1000_mib"] = round(op.rss_mib(), 1)
        recorder.close()
    return results


def _latency(stats: dict[str, float]) -> str:
    return f"p50 {stats['p50_ms']} ms   p99 {stats['p99_ms']} ms   (n={stats['n']})"


def main() -> None:
    results = run()
    burst = results["burst"]
    print_table(
        "reconcile (minimal control plane, operator as a separate process)",
        [
            ("create → Deployment, single sessions", _latency(results["create_to_deployment"])),
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
        ],
    )
    print(f"\nwritten to {write_results('reconcile', results)}")
