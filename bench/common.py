"""Shared benchmark plumbing: a control plane, PostgreSQL, the operator and the facade as
processes, a watch recorder, summaries."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from bench import profile
from streamspace.db.migrate import migrate
from streamspace_dev import process
from streamspace_dev.cluster import ControlPlane
from streamspace_dev.postgres import LocalPostgres
from streamspace_dev.settings import load_dev_settings
from streamspace_dev.stack import standalone_operator_argv

RESULTS = Path(".streamspace") / "bench"
GROUP, VERSION = "stream.space", "v1alpha1"
SESSIONS = "/api/v1/sessions"
FIREFOX = {
    "displayName": "Firefox",
    "baseImage": "lscr.io/linuxserver/firefox:latest",
    "kasmvnc": {"enabled": True, "port": 3000},
    "defaultResources": {"memory": "2Gi", "cpu": "1000m"},
}


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
        "p95_ms": round(percentile(values, 95) * 1000, 1),
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


@contextmanager
def database() -> Iterator[str]:
    """A throw-away PostgreSQL server with the schema migrated; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="streamspace-bench-pg-") as tmp:
        server = LocalPostgres(Path(tmp))
        url = server.up()
        try:
            migrate(url)
            yield url
        finally:
            server.down()


def namespace_with_firefox(
    kubeconfig: Path, namespace: str, resources: dict[str, str] | None = None
) -> None:
    """Create ``namespace`` holding the Template ``firefox`` (``resources``: its defaults)."""
    api = api_client(kubeconfig)
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    )
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "templates",
        custom_object(
            "Template",
            "firefox",
            {**FIREFOX, "defaultResources": resources or FIREFOX["defaultResources"]},
        ),
    )


def custom_object(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A body of one of our kinds, to create through the Kubernetes API."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


@dataclass
class OperatorProcess:
    record: process.Started
    samples: list[int] = field(default_factory=list)
    metrics_url: str | None = None

    def rss_mib(self) -> float:
        return process.rss_bytes(self.record.pid) / 2**20

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.record.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def kubernetes_requests(self) -> dict[str, float]:
        """``streamspace_kubernetes_requests_total`` so far, by client (``kopf``, ``streamspace``)
        and in all (``total``); needs ``operator(..., metrics=True)``."""
        from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

        if self.metrics_url is None:
            raise RuntimeError("the operator was started without metrics")
        with urllib.request.urlopen(self.metrics_url, timeout=10) as answer:  # noqa: S310
            text = answer.read().decode()
        counts: dict[str, float] = {"total": 0.0}
        for family in text_string_to_metric_families(text):
            if family.name != "streamspace_kubernetes_requests":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    who = sample.labels["client"]
                    counts[who] = counts.get(who, 0.0) + sample.value
                    counts["total"] += sample.value
        return counts


@contextmanager
def operator(
    kubeconfig: Path,
    namespace: str,
    *,
    metrics: bool = False,
    traced: Path | None = None,
    **env: str,
) -> Iterator[OperatorProcess]:
    """``streamspace operator`` for ``namespace``; ``metrics``: with its ``/metrics`` endpoint;
    ``traced``: under tracemalloc, writing its allocation sites there on SIGUSR2
    (``bench.profile.memory_snapshot``)."""
    port = process.free_port()
    metrics_port = process.free_port() if metrics else 0
    log = RESULTS / f"operator-{namespace}.log"
    log.unlink(missing_ok=True)
    argv = standalone_operator_argv(port, metrics_port)
    if traced is not None:
        argv = profile.memory_argv(argv)
        env = {**env, "STREAMSPACE_TRACEMALLOC_OUT": str(traced.resolve())}
    record = process.start(
        "operator",
        argv,
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
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics" if metrics else None
        yield OperatorProcess(record, metrics_url=metrics_url)
    finally:
        process.stop(record)


@dataclass
class FacadeProcess:
    record: process.Started
    url: str

    def rss_mib(self) -> float:
        return round(process.rss_bytes(self.record.pid) / 2**20, 1)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.record.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _health(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:  # noqa: S310
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except (OSError, ValueError):
        return {}


@contextmanager
def facade(
    kubeconfig: Path, database_url: str, namespace: str, jwt_secret: str
) -> Iterator[FacadeProcess]:
    """``streamspace facade`` on a free loopback port, once its mirror has resynced."""
    port = process.free_port()
    log = RESULTS / f"facade-{namespace}.log"
    log.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "streamspace.cli", "facade", "--host", "127.0.0.1"]
    record = process.start(
        "facade",
        [*argv, "--port", str(port)],
        log,
        env={
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "NAMESPACE": namespace,
            "DATABASE_URL": database_url,
            "JWT_SECRET": jwt_secret,
            # the scenarios measure throughput: a few users create and connect far more often
            # than the per-user rate limits allow a real user to
            "RATE_LIMIT_CREATE": "off",
            "RATE_LIMIT_CONNECT": "off",
            # the ws scenario holds thousands of streams for two users
            "WS_MAX_STREAMS_PER_USER": "10000",
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = process.wait_until(
            lambda: bool(_health(url).get("mirrorReady")) or not process.is_running(record), 60
        )
        if not ready or not process.is_running(record):
            raise RuntimeError("facade did not become ready:\n" + process.log_tail(record))
        yield FacadeProcess(record, url)
    finally:
        process.stop(record)


class Rest:
    """Synchronous calls for setting up and polling; failures raise with the facade's answer."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise RuntimeError(f"{method} {path} answered {exc.code}: {detail}") from None

    def in_phase(self, session: str, phase: str) -> bool:
        return bool(self.call("GET", f"{SESSIONS}/{session}")["phase"] == phase)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


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
