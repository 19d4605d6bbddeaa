"""Scenario `idle`: auto-start and auto-hibernation as users would feel them.

* hibernation accuracy: for 200 idle sessions, when ``spec.state`` became ``hibernated`` minus
  the ``idleDeadline`` the operator announced (must be ≥ 0 and ≤ one IDLE_CHECK_INTERVAL),
* wake latency: Connection created → Deployment scaled to 1 (p50/p99), when all is quiet and
  while the 200 idle sessions hibernate at once (the burst must not hold a wake behind it),
* operator CPU and RSS while 2,000 connections heartbeat every 30 s.

Runs on the full profile (sessions must really be Running before they can go idle).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, watch

from bench.common import (
    DeploymentRecorder,
    api_client,
    control_plane,
    custom_object,
    operator,
    percentile,
    print_table,
    summary,
    write_results,
)
from streamspace.conditions import parse_timestamp, timestamp
from streamspace_dev import process

NAMESPACE = "bench-idle"
GROUP, VERSION = "stream.space", "v1alpha1"
SESSIONS = 200
WAKES = 50
SLEEPERS = 20  # hibernated sessions woken one after another while the burst hibernates
HEARTBEAT_SESSIONS = 100
CONNECTIONS = 2000
HEARTBEAT_EVERY = 30.0
HEARTBEAT_FOR = 120.0
IDLE_CHECK = 5.0
# Staleness is not measured here: creating 2,000 connections takes minutes on two cores, and
# none of them may go stale before the heartbeat loop reaches it.
ENV = {
    "IDLE_CHECK_INTERVAL": f"{IDLE_CHECK:.0f}s",
    "STALE_AFTER": "15m",
    "HEARTBEAT_CHECK_INTERVAL": "30s",
}


class StateRecorder:
    """Wall-clock time at which each session was first seen with spec.state hibernated."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.hibernated: dict[str, datetime] = {}
        self.deadlines: dict[str, datetime] = {}  # idleDeadline as announced in the status
        self._watch = watch.Watch()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:  # a watch that breaks is simply opened again
            try:
                for event in self._watch.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    NAMESPACE,
                    "sessions",
                    timeout_seconds=60,
                ):
                    obj: Any = event["object"]
                    deadline = parse_timestamp((obj.get("status") or {}).get("idleDeadline"))
                    if deadline is not None:  # the last one announced (activity moves it)
                        self.deadlines[obj["metadata"]["name"]] = deadline
                    if obj["spec"].get("state") == "hibernated":
                        self.hibernated.setdefault(obj["metadata"]["name"], datetime.now(UTC))
            except Exception:
                if self._stop:
                    return

    def close(self) -> None:
        self._stop = True
        self._watch.stop()


def run() -> dict[str, Any]:
    results: dict[str, Any] = {"scenario": "idle", "idle_check_interval_s": IDLE_CHECK}
    with control_plane("full") as kubeconfig:
        api = api_client(kubeconfig)
        custom = client.CustomObjectsApi(api)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            "templates",
            custom_object(
                "Template",
                "firefox",
                {"baseImage": "lscr.io/linuxserver/firefox:latest", "kasmvnc": {"enabled": True}},
            ),
        )
        deployments = DeploymentRecorder(kubeconfig, NAMESPACE)
        states = StateRecorder(api)

        def create(kind: str, plural: str, name: str, spec: dict[str, Any]) -> None:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, plural, custom_object(kind, name, spec)
            )

        with operator(kubeconfig, NAMESPACE, **ENV) as op:
            idle = [f"idle-{i}" for i in range(SESSIONS)]
            spec = {
                "user": "bench",
                "template": "firefox",
                "idleTimeout": "30s",
                "persistentHome": False,
            }
            sleepers = [f"sleeper-{i}" for i in range(SLEEPERS)]
            asleep = {**spec, "state": "hibernated", "idleTimeout": "1h"}
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda n: create("Session", "sessions", n, asleep), sleepers))
                list(pool.map(lambda n: create("Session", "sessions", n, spec), idle))
            deadlines = states.deadlines  # seen by the watch: a poll can miss a short-lived one

            def all_announced() -> bool:
                return all(name in deadlines for name in idle)

            assert process.wait_until(all_announced, 300, interval=1.0), "no idle deadlines"
            # Wake the sleepers one by one from just before the first deadline on, so the wakes
            # meet the hibernations (the whole burst takes seconds).
            first = min(deadlines.values())
            pause = (first - datetime.now(UTC)).total_seconds() - 1.0
            if pause > 0:
                time.sleep(pause)
            during = []
            for i, name in enumerate(sleepers):
                deployments.forget(name)
                started = time.monotonic()
                create(
                    "Connection", "connections", f"burst-{i}", {"session": name, "user": "bench"}
                )
                during.append(deployments.wait_for(name, 1, started))
            busy_hibernating = sum(1 for n in idle if n not in states.hibernated)
            results["wake_latency_during_burst"] = {
                **summary(during),
                "hibernations_left_after_the_wakes": busy_hibernating,
            }
            assert process.wait_until(lambda: all(n in states.hibernated for n in idle), 300)
            lateness = [(states.hibernated[n] - deadlines[n]).total_seconds() for n in idle]
            results["hibernation_lateness_s"] = {
                "n": len(lateness),
                "min": round(min(lateness), 3),
                "p50": round(percentile(lateness, 50), 3),
                "p99": round(percentile(lateness, 99), 3),
                "max": round(max(lateness), 3),
                "early": sum(1 for x in lateness if x < 0),
            }

            wakes = []
            for i, name in enumerate(idle[:WAKES]):
                deployments.forget(name)
                started = time.monotonic()
                create("Connection", "connections", f"wake-{i}", {"session": name, "user": "bench"})
                wakes.append(deployments.wait_for(name, 1, started))
            results["wake_latency"] = summary(wakes)

            busy = [f"busy-{i}" for i in range(HEARTBEAT_SESSIONS)]
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda n: create("Session", "sessions", n, spec), busy))
                conns = [(f"hb-{i}", busy[i % len(busy)]) for i in range(CONNECTIONS)]
                list(
                    pool.map(
                        lambda c: create(
                            "Connection", "connections", c[0], {"session": c[1], "user": "bench"}
                        ),
                        conns,
                    )
                )
            rss_before = op.rss_mib()
            cpu_before, wall_before = op.cpu_seconds(), time.monotonic()
            sent = 0
            deadline = time.monotonic() + HEARTBEAT_FOR
            with ThreadPoolExecutor(max_workers=8) as pool:
                while time.monotonic() < deadline:
                    tick = time.monotonic()
                    stamp = {"status": {"lastHeartbeat": timestamp(datetime.now(UTC))}}
                    list(
                        pool.map(
                            lambda c, body=stamp: custom.patch_namespaced_custom_object_status(
                                GROUP, VERSION, NAMESPACE, "connections", c[0], body
                            ),
                            conns,
                        )
                    )
                    sent += len(conns)
                    pause = HEARTBEAT_EVERY - (time.monotonic() - tick)
                    if pause > 0 and time.monotonic() + pause < deadline:
                        time.sleep(pause)
                    elif pause > 0:
                        break
            wall = time.monotonic() - wall_before
            results["heartbeats"] = {
                "connections": CONNECTIONS,
                "sessions": HEARTBEAT_SESSIONS,
                "heartbeats_sent": sent,
                "seconds": round(wall, 1),
                "operator_cpu_percent": round(100 * (op.cpu_seconds() - cpu_before) / wall, 1),
                "operator_rss_mib_before": round(rss_before, 1),
                "operator_rss_mib_after": round(op.rss_mib(), 1),
                "busy_sessions_hibernated": sum(1 for n in busy if n in states.hibernated),
            }
        states.close()
        deployments.close()
    return results


def main() -> None:
    results = run()
    late, wake, hb = (
        results["hibernation_lateness_s"],
        results["wake_latency"],
        results["heartbeats"],
    )
    during = results["wake_latency_during_burst"]
    print_table(
        f"idle (full profile, IDLE_CHECK_INTERVAL={IDLE_CHECK:.0f}s)",
        [
            (
                f"hibernation - deadline, {late['n']} sessions",
                f"min {late['min']} s  p50 {late['p50']} s  "
                f"p99 {late['p99']} s  max {late['max']} s",
            ),
            ("hibernated before the deadline", str(late["early"])),
            (
                "wake: Connection → replicas 1",
                f"p50 {wake['p50_ms']} ms   p99 {wake['p99_ms']} ms   (n={wake['n']})",
            ),
            (
                f"wake during the burst of {late['n']} hibernations",
                f"p50 {during['p50_ms']} ms   p99 {during['p99_ms']} ms   (n={during['n']})",
            ),
            (
                f"{hb['connections']} connections heartbeating every {HEARTBEAT_EVERY:.0f}s",
                f"operator CPU {hb['operator_cpu_percent']} %  over {hb['seconds']} s",
            ),
            (
                "operator RSS before / after heartbeats",
                f"{hb['operator_rss_mib_before']} / {hb['operator_rss_mib_after']} MiB",
            ),
            ("busy sessions wrongly hibernated", str(hb["busy_sessions_hibernated"])),
        ],
    )
    print(f"\nwritten to {write_results('idle', results)}")
