"""Shared benchmark plumbing: a control plane, the operator as a process, a watch recorder."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from streamspace.config import load_dev_settings
from streamspace.dev import process
from streamspace.dev.cluster import ControlPlane
from streamspace.dev.stack import standalone_operator_argv

RESULTS = Path(".streamspace") / "bench"


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "mean_ms": round(statistics.fmean(values) * 1000, 1) if values else float("nan"),
        "max_ms": round(max(values) * 1000, 1) if values else float("nan"),
    }


@contextmanager
def control_plane(profile: str = "minimal") -> Iterator[Path]:
    """A throw-away control plane (or STREAMSPACE_BENCH_KUBECONFIG); yields its kubeconfig."""
    existing = os.environ.get("STREAMSPACE_BENCH_KUBECONFIG")
    if existing:
        yield Path(existing)
        return
    with tempfile.TemporaryDirectory(prefix="streamspace-bench-") as tmp:
        plane = ControlPlane(Path(tmp), load_dev_settings().cache_dir)
        plane.up(profile)
        try:
            yield plane.kubeconfig
        finally:
            plane.down()


@dataclass
class OperatorProcess:
    record: process.Started
    samples: list[int] = field(default_factory=list)

    def rss_mib(self) -> float:
        return process.rss_bytes(self.record.pid) / 2**20

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.record.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


@contextmanager
def operator(kubeconfig: Path, namespace: str, **env: str) -> Iterator[OperatorProcess]:
    port = process.free_port()
    log = RESULTS / f"operator-{namespace}.log"
    log.unlink(missing_ok=True)
    record = process.start(
        "operator",
        standalone_operator_argv(port),
        log,
        env={**os.environ, "KUBECONFIG": str(kubeconfig), "NAMESPACE": namespace, **env},
    )
    try:
        import urllib.request  # noqa: PLC0415

        def alive() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    return True
            except OSError:
                return False

        if not process.wait_until(alive, 60):
            raise RuntimeError("operator did not start:\n" + process.log_tail(record))
        yield OperatorProcess(record)
    finally:
        process.stop(record)


def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


class DeploymentRecorder:
    """Watches Deployments in a namespace; records when each name first had each replica count."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.api = api_client(kubeconfig)
        self.namespace = namespace
        self.seen: dict[tuple[str, int], float] = {}
        self.cond = threading.Condition()
        self._stop = False
        self._watch = watch.Watch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:  # a watch that breaks is simply opened again
            try:
                self._watch_loop()
            except Exception:
                if self._stop:
                    return

    def _watch_loop(self) -> None:
        apps = client.AppsV1Api(self.api)
        while not self._stop:
            for event in self._watch.stream(
                apps.list_namespaced_deployment, self.namespace, timeout_seconds=30
            ):
                obj: Any = event["object"]
                key = (obj.metadata.name, int(obj.spec.replicas or 0))
                with self.cond:
                    self.seen.setdefault(key, time.monotonic())
                    self.cond.notify_all()
                if self._stop:
                    break

    def wait_for(self, name: str, replicas: int, after: float, timeout: float = 120) -> float:
        """Seconds from ``after`` until ``name`` was seen with ``replicas`` (at or after it)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                seen = self.seen.get((name, replicas))
                if seen is not None and seen >= after - 0.001:
                    return seen - after
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{name} never had {replicas} replica(s)")
                self.cond.wait(remaining)

    def forget(self, name: str) -> None:
        with self.cond:
            for key in [k for k in self.seen if k[0] == name]:
                del self.seen[key]

    def close(self) -> None:
        self._stop = True
        self._watch.stop()


def write_results(scenario: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{scenario}.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{title}\n" + "-" * (width + 30))
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
