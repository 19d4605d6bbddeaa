"""Helm for the chart tests: the binary the dev tooling built (``make controlplane``), the chart,
an installed release, and the product run here under the tokens of the chart's ServiceAccounts.

Like the control plane, helm is never built inside a test: without it the run stops at once,
naming the command that builds it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from facade_testing import JWT_SECRET, WEBHOOK_SECRET
from streamspace_dev import binaries, process
from streamspace_dev.cluster import ControlPlane
from streamspace_dev.process import wait_until
from streamspace_dev.settings import load_dev_settings
from streamspace_testing import service_account_kubeconfig

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "streamspace"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
NAMESPACE = "streamspace"
RELEASE = "streamspace"
OPERATOR_SA = f"system:serviceaccount:{NAMESPACE}:streamspace-operator"
FACADE_SA = f"system:serviceaccount:{NAMESPACE}:streamspace-facade"
POD_SECURITY = "pod-security.kubernetes.io/enforce"
REFUSED = re.compile(r"(?<![\d.])403(?![\d.])|forbidden", re.IGNORECASE)


def helm_binary() -> Path:
    try:
        return binaries.require_tool(load_dev_settings().cache_dir, "helm")
    except binaries.BuildError as exc:
        pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)


class Helm:
    """``helm`` against one cluster (its kubeconfig), with a cache and config of the test's own."""

    def __init__(self, binary: Path, kubeconfig: Path, home: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        proc = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr

    def template(self, namespace: str, *args: str) -> list[dict[str, Any]]:
        """The objects ``helm template`` renders (CRDs included), in order."""
        out = self.run(
            "template", "streamspace", str(CHART), "-n", namespace, "--include-crds", *args
        )
        return [d for d in yaml.safe_load_all(out) if d]


@dataclass
class Release:
    helm: Helm
    plane: ControlPlane
    kubeconfig: Path
    install_seconds: float


def _admitted(core: client.CoreV1Api, namespace: str, privileged: bool) -> bool:
    """Whether a root pod (privileged or not) would be admitted there now (a dry run)."""
    container = {"name": "c", "image": "busybox", "securityContext": {"privileged": privileged}}
    pod = {"metadata": {"name": "probe"}, "spec": {"containers": [container]}}
    try:
        core.create_namespaced_pod(namespace, pod, dry_run="All")
    except ApiException as exc:
        if exc.status != 403:
            raise
        return False
    return True


def label_namespace(api: client.ApiClient, namespace: str, level: str | None) -> None:
    """Set (or, with None, remove) the Pod Security level the API server enforces there, and
    wait until it does: admission reads namespace labels from an informer, a moment later."""
    core = client.CoreV1Api(api)
    core.patch_namespace(namespace, {"metadata": {"labels": {POD_SECURITY: level}}})
    # a root pod passes baseline, not restricted; a privileged one passes neither
    expected = {"restricted": (False, False), "baseline": (True, False), None: (True, True)}
    assert wait_until(
        lambda: (
            (_admitted(core, namespace, False), _admitted(core, namespace, True)) == expected[level]
        ),
        30,
    ), f"{namespace} does not enforce {level}"


@contextmanager
def installed(full_cluster: Any, home: Path, *values: str) -> Iterator[Release]:
    """The chart installed as ``streamspace`` in a namespace enforcing ``restricted``, and
    uninstalled afterwards."""
    helm = Helm(helm_binary(), full_cluster.kubeconfig, home)
    with full_cluster.api_client() as api:
        # the namespace exists (it holds the admission parameters of the control plane)
        label_namespace(api, NAMESPACE, "restricted")
        try:
            started = time.monotonic()
            helm.run(
                "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace",
                "--wait", "--timeout", "5m", *values,
            )  # fmt: skip
            seconds = time.monotonic() - started
            yield Release(helm, full_cluster.plane, full_cluster.kubeconfig, seconds)
        finally:
            helm.run("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
            label_namespace(api, NAMESPACE, None)


def available(apps: client.AppsV1Api) -> bool:
    """Every Deployment and StatefulSet of the release namespace has all its replicas ready."""
    deployments = apps.list_namespaced_deployment(NAMESPACE).items
    sets = apps.list_namespaced_stateful_set(NAMESPACE).items
    return (
        bool(deployments)
        and all((d.status.available_replicas or 0) == d.spec.replicas for d in deployments)
        and all((s.status.ready_replicas or 0) == s.spec.replicas for s in sets)
    )


def can_i(kubeconfig: Path, who: str, verb: str, resource: str, namespace: str) -> str:
    """``kubectl auth can-i`` as ``who``: "yes" or "no". ``pods/exec`` is the subresource
    (kubectl itself would read it as the pod named ``exec``)."""
    kind, _, subresource = resource.partition("/")
    proc = subprocess.run(
        [
            "kubectl", f"--kubeconfig={kubeconfig}", "auth", "can-i", verb, kind,
            *([f"--subresource={subresource}"] if subresource else []),
            f"--as={who}", "-n", namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    return proc.stdout.strip()


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
            return resp.status, json.loads(resp.read())
    except OSError:
        return 0, None


@dataclass
class Processes:
    url: str
    logs: list[Path]

    def assert_no_403(self) -> None:
        """Nothing the processes asked of the API server was refused: no log record (one JSON
        object per line) says 403 or Forbidden in its message or exception."""
        for log in self.logs:
            for line in log.read_text().splitlines():
                record = json.loads(line)
                said = f"{record.get('message', '')} {record.get('exception', '')}"
                # a namespace being deleted refuses new objects with 403 too: not a permission
                # (with allNamespaces the operator sees other tests' namespaces go)
                if "being terminated" not in said:
                    assert not REFUSED.search(said), f"{log.name}: {line}"


@contextmanager
def as_the_chart(
    api: client.ApiClient, release: Release, database: str, tmp_path: Path, **env: str
) -> Iterator[Processes]:
    """``streamspace migrate``, ``operator`` and ``facade`` as processes here, the latter two
    with kubeconfigs carrying tokens of the chart's ServiceAccounts; ``env`` adds settings."""
    kubeconfigs = {
        name: service_account_kubeconfig(
            api,
            release.kubeconfig,
            NAMESPACE,
            f"streamspace-{name}",
            tmp_path / f"{name}.kubeconfig",
        )
        for name in ("operator", "facade")
    }
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "NAMESPACE": NAMESPACE,
        "DATABASE_URL": database,
        "ALLOW_LOCAL_REPOS": "true",
        "ALLOW_PRIVATE_NETWORKS": "true",  # the Git server of the test is on loopback
        "SYNC_WORK_DIR": str(tmp_path / "repos"),
        "LOG_FORMAT": "json",  # the chart's default
        **env,
    }
    cli = [sys.executable, "-m", "streamspace.cli"]
    # what the chart's hook Job runs
    migrated = subprocess.run(
        [*cli, "migrate"], env=base, capture_output=True, text=True, timeout=120, check=False
    )
    assert migrated.returncode == 0, migrated.stderr
    health, port = process.free_port(), process.free_port()
    operator = process.start(
        "operator",
        [*cli, "operator", f"--liveness=http://127.0.0.1:{health}/healthz", "--metrics-port=0"],
        tmp_path / "operator.log",
        env={**base, "KUBECONFIG": str(kubeconfigs["operator"])},
    )
    facade = process.start(
        "facade",
        [*cli, "facade", "--host=127.0.0.1", f"--port={port}"],
        tmp_path / "facade.log",
        env={
            **base,
            "KUBECONFIG": str(kubeconfigs["facade"]),
            "JWT_SECRET": JWT_SECRET,
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "RATE_LIMIT_CREATE": "off",
            "RATE_LIMIT_CONNECT": "off",
        },
    )
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: (_get(f"{url}/health")[1] or {}).get("mirrorReady"), 60), (
            process.log_tail(facade)
        )
        assert wait_until(lambda: _get(f"http://127.0.0.1:{health}/healthz")[0] == 200, 60), (
            process.log_tail(operator)
        )
        yield Processes(url, [tmp_path / "operator.log", tmp_path / "facade.log"])
    finally:
        process.stop(facade)
        process.stop(operator)
