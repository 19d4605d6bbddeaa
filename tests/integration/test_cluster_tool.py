"""`streamspace dev cluster`: idempotent up, status, a down that stops only what it started, and
an up that fails, naming the component, when one of them is not running and healthy."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from streamspace_dev import binaries, process
from streamspace_dev.cluster import ControlPlane
from streamspace_dev.objects import ClusterError
from streamspace_dev.settings import load_dev_settings

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
        _assert_etcd_takes_only_our_clients(plane, first.etcd_port)

        second = plane.up("minimal")  # nothing new is started
        assert {n: r.pid for n, r in second.processes.items()} == {
            n: r.pid for n, r in first.processes.items()
        }

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


def _cache_with_broken_scheduler(tmp_path: Path) -> Path:
    """A cache holding the real binaries, except a kube-scheduler that dies at start-up: the
    scheduler of a test control plane once died that way (its port was taken) unnoticed."""
    real = load_dev_settings().cache_dir
    cache = tmp_path / "cache"
    for name, path in binaries.binary_paths(real, "full").items():
        target = path.relative_to(real)
        (cache / target).parent.mkdir(parents=True, exist_ok=True)
        if name == "kube-scheduler":
            script = "#!/bin/sh\necho 'E1201 bind: address already in use (played)' >&2\nexit 3\n"
            (cache / target).write_text(script)
            (cache / target).chmod(0o755)
        else:
            (cache / target).symlink_to(path)
    return cache


def test_up_fails_naming_a_component_that_died_at_start(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "state", _cache_with_broken_scheduler(tmp_path))
    try:
        with pytest.raises(ClusterError) as failure:
            plane.up("full", timeout=60)
        message = str(failure.value)
        assert message.startswith("kube-scheduler exited during start-up")
        assert "address already in use (played)" in message  # the tail of its log
    finally:
        plane.down()


def test_check_names_a_component_that_died_later_and_up_restarts_it(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "state", load_dev_settings().cache_dir)
    try:
        state = plane.up("full")
        plane.check()  # all healthy
        scheduler = state.processes["kube-scheduler"]
        os.kill(scheduler.pid, signal.SIGKILL)
        assert process.wait_until(lambda: not process.is_running(scheduler), 10)
        with pytest.raises(ClusterError, match=r"^kube-scheduler is not running; last lines"):
            plane.check()
        again = plane.up("full")  # the three full-profile components start afresh
        assert again.processes["kube-scheduler"].pid != scheduler.pid
        assert again.processes["etcd"].pid == state.processes["etcd"].pid
        plane.check()
    finally:
        plane.down()


def test_up_refuses_to_build(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "state", tmp_path / "empty-cache")
    with pytest.raises(binaries.BuildError, match="streamspace dev build --profile full"):
        plane.up("minimal")
    assert not (tmp_path / "empty-cache").exists()


def _assert_etcd_takes_only_our_clients(plane: ControlPlane, port: int) -> None:
    """etcd holds every Secret of the cluster: no plain HTTP, no TLS client without our cert."""
    with pytest.raises(OSError):  # plain HTTP to a TLS port: the connection is dropped
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v3/kv/range", timeout=5)
    ca = plane.dir / "pki" / "ca.crt"
    anonymous = ssl.create_default_context(cafile=str(ca))
    with pytest.raises((ssl.SSLError, OSError)):
        urllib.request.urlopen(f"https://127.0.0.1:{port}/health", timeout=5, context=anonymous)
    ours = ssl.create_default_context(cafile=str(ca))
    ours.load_cert_chain(
        plane.dir / "pki" / "etcd-client.crt", plane.dir / "pki" / "etcd-client.key"
    )
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", timeout=5, context=ours) as r:
        assert r.status == 200
