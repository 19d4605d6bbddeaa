"""`streamspace dev cluster`: idempotent up, status, and a down that stops only what it started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamspace.config import load_dev_settings
from streamspace.dev import process
from streamspace.dev.cluster import ControlPlane

pytestmark = pytest.mark.integration


def test_up_is_idempotent_and_down_stops_only_its_own(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "state", load_dev_settings().cache_dir)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        first = plane.up("minimal")
        assert plane.kubeconfig.exists()
        status = plane.status()
        assert status["running"] and status["profile"] == "minimal"
        assert set(status["components"]) == {"etcd", "kube-apiserver"}
        assert all(c["running"] and c["rss_mib"] > 0 for c in status["components"].values())

        second = plane.up("minimal")  # nothing new is started, nothing is built
        assert {n: r.pid for n, r in second.processes.items()} == {
            n: r.pid for n, r in first.processes.items()
        }
        assert "build_seconds" in second.timings

        records = list(first.processes.values())
        assert sorted(plane.down()) == ["etcd", "kube-apiserver"]
        assert not any(process.is_running(r) for r in records)
        assert bystander.poll() is None  # untouched
        assert not plane.kubeconfig.exists()
        assert plane.down() == []
        assert plane.status() == {"running": False, "components": {}}
    finally:
        plane.down()
        bystander.kill()
        bystander.wait()
