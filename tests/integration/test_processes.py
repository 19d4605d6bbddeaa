"""The two processes start against the real control plane, answer their probes, log JSON lines
with LOG_FORMAT=json, and stop cleanly on SIGTERM (the kubelet's way of ending a pod)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from kubernetes import client

from facade_testing import JWT_SECRET, WebSocket, token
from streamspace import __version__
from streamspace.config import load_settings
from streamspace_dev import process
from streamspace_dev.stack import standalone_operator_argv
from streamspace_facade.app import create_app
from streamspace_facade.state import SERVICES

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
async def test_facade_health_ready_and_version(cluster: Any) -> None:
    """Without a database the facade still starts: health, readiness, version and JWT routes."""
    settings = load_settings({"KUBECONFIG": str(cluster.kubeconfig)})
    async with TestClient(TestServer(create_app(settings))) as http:
        resp = await http.get("/health")
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "mirror": None, "mirrorReady": False}
        resp = await http.get("/version")
        assert (await resp.json())["version"] == __version__
        live = http.app[SERVICES].live
        await asyncio.wait_for(live.informer.synced.wait(), 30)
        resp = await http.get("/ready")
        assert resp.status == 200
        assert await resp.json() == {
            "status": "ready",
            "checks": {"kubernetes": "ok", "database": "not configured"},
        }


@pytest.mark.asyncio
async def test_facade_is_not_ready_without_its_database(cluster: Any) -> None:
    """A configured PostgreSQL that does not answer: 503 naming it, and nothing about where it
    is (the endpoint is public)."""
    nowhere = f"postgresql://streamspace@127.0.0.1:{process.free_port()}/streamspace"
    settings = load_settings({"KUBECONFIG": str(cluster.kubeconfig), "DATABASE_URL": nowhere})
    async with TestClient(TestServer(create_app(settings))) as http:
        await asyncio.wait_for(http.app[SERVICES].live.informer.synced.wait(), 30)
        resp = await http.get("/ready")
        assert resp.status == 503
        body = await resp.json()
        assert body["code"] == "UNAVAILABLE"
        assert body["error"] == "not ready: database unreachable"
        assert body["details"]["checks"] == {"kubernetes": "ok", "database": "unreachable"}
        assert "127.0.0.1" not in await resp.text()
        assert (await http.get("/health")).status == 200  # alive all the same


GRACE = 30.0
"""A pod's default termination grace period: the kubelet's SIGKILL comes this long after TERM."""


def _json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of a process's output, each of which must be one JSON object."""
    records = []
    for line in log.read_text().splitlines():
        record = json.loads(line)  # a line that is not JSON fails here, showing itself
        assert {"time", "level", "logger", "message"} <= set(record), record
        records.append(record)
    return records


def _start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
        )


def _stopped(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_operator_stops_on_sigterm_and_leaves_the_peering(
    cluster: Any, api: Any, tmp_path: Path, namespace: str
) -> None:
    """With peering (as deployed): SIGTERM → Kopf stops, runs the cleanup, removes this replica
    from the KopfPeering and the process exits 0, well before Kopf's own SHUTDOWN_TIMEOUT kill
    (which would end it with SIGKILL, not 0). Its log lines, Kopf's included, are JSON."""
    port = process.free_port()
    identity = "streamspace-operator-under-test"
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "NAMESPACE": namespace,
        "POD_ID": identity,  # the chart sets it from metadata.name
        "LOG_FORMAT": "json",
    }
    argv = [
        sys.executable,
        "-m",
        "streamspace.cli",
        "operator",
        f"--liveness=http://127.0.0.1:{port}/healthz",
        "--metrics-port=0",
    ]
    objects = client.CustomObjectsApi(api)

    def peers() -> dict[str, Any]:
        peering = objects.get_namespaced_custom_object(
            "kopf.dev", "v1", namespace, "kopfpeerings", "streamspace"
        )
        return dict(peering.get("status") or {})

    log = tmp_path / "operator.log"
    proc = _start(argv, log, env)
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        assert process.wait_until(lambda: _get(url)[0] == 200, 60), log.read_text()[-3000:]
        assert process.wait_until(lambda: identity in peers(), 30), peers()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(GRACE) == 0, log.read_text()[-3000:]
    finally:
        _stopped(proc)
    assert identity not in peers()
    records = _json_lines(log)
    assert any(r["logger"].startswith("kopf.") for r in records)
    assert any("SIGTERM" in r["message"] for r in records)


def test_facade_stops_on_sigterm_closing_streams_with_1001(
    cluster: Any, tmp_path: Path, namespace: str
) -> None:
    """SIGTERM → the facade stops listening, tells WebSocket clients it is going away (1001)
    and exits 0 within SHUTDOWN_TIMEOUT; its log, access log included, is JSON lines."""
    port = process.free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "NAMESPACE": namespace,
        "JWT_SECRET": JWT_SECRET,
        "LOG_FORMAT": "json",
        "SHUTDOWN_TIMEOUT": "10s",
    }
    env.pop("DATABASE_URL", None)
    argv = [sys.executable, "-m", "streamspace.cli", "facade", "--host=127.0.0.1", f"--port={port}"]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "facade.log"
    proc = _start(argv, log, env)
    try:
        assert process.wait_until(lambda: _get(f"{url}/ready")[0] == 200, 60), log.read_text()
        with WebSocket(f"{url}/api/v1/ws/sessions", token=token("alice")) as stream:
            stream.next()  # the first snapshot: the stream is live
            proc.send_signal(signal.SIGTERM)
            assert stream.closed.wait(GRACE)
            assert stream.close_code == 1001
            assert proc.wait(GRACE) == 0, log.read_text()[-3000:]
    finally:
        _stopped(proc)
    records = _json_lines(log)
    access = [r for r in records if r["logger"] == "aiohttp.access" and r["path"] == "/ready"]
    assert access, records
    assert {"method", "path", "status", "bytes", "duration", "remote"} <= set(access[-1])
    assert access[-1]["status"] == 200 and access[-1]["method"] == "GET"
    assert any(r["message"] == "facade stopped" for r in records)


def test_console_script_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "streamspace.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for command in ("operator", "facade", "watch", "migrate", "dev", "token"):
        assert command in out
