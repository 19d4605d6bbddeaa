"""The two processes start against the real control plane and answer their health endpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streamspace import __version__
from streamspace.config import load_settings
from streamspace_dev import process
from streamspace_dev.stack import standalone_operator_argv
from streamspace_facade.app import create_app

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read()
    except OSError:
        return 0, b""


@pytest.fixture
def operator_process(cluster: Any, tmp_path: Path, namespace: str) -> Iterator[str]:
    port = process.free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "NAMESPACE": namespace}
    record = process.start(
        "operator",
        standalone_operator_argv(port),
        tmp_path / "operator.log",
        env=env,
    )
    try:
        yield f"http://127.0.0.1:{port}/healthz"
    finally:
        process.stop(record)
        assert not process.is_running(record)


def test_operator_serves_liveness(operator_process: str, namespace: str) -> None:
    assert process.wait_until(lambda: _get(operator_process)[0] == 200, 60)
    _, payload = _get(operator_process)
    assert json.loads(payload)["namespace"] == namespace


def test_operator_serves_metrics_on_the_port_it_is_given(
    cluster: Any, tmp_path: Path, namespace: str
) -> None:
    metrics = process.free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "NAMESPACE": namespace}
    argv = standalone_operator_argv(process.free_port(), metrics)
    record = process.start("operator", argv, tmp_path / "operator.log", env=env)
    try:
        url = f"http://127.0.0.1:{metrics}/metrics"
        assert process.wait_until(lambda: _get(url)[0] == 200, 60), process.log_tail(record)
        assert b"streamspace_sessions{phase=" in _get(url)[1]
    finally:
        process.stop(record)


@pytest.mark.asyncio
async def test_facade_health_and_version(cluster: Any) -> None:
    """Without a database the facade still starts: health, version and JWT routes work."""
    settings = load_settings({"KUBECONFIG": str(cluster.kubeconfig)})
    async with TestClient(TestServer(create_app(settings))) as http:
        resp = await http.get("/health")
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "mirror": None, "mirrorReady": False}
        resp = await http.get("/version")
        assert (await resp.json())["version"] == __version__


def test_console_script_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "streamspace.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for command in ("operator", "facade", "watch", "migrate", "dev", "token"):
        assert command in out
