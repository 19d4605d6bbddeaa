"""Helm for the chart tests: the binary the dev tooling built (``make controlplane``), and the chart.

Like the control plane, helm is never built inside a test: without it the run stops at once,
naming the command that builds it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamspace_dev import binaries
from streamspace_dev.settings import load_dev_settings

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "streamspace"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))


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
