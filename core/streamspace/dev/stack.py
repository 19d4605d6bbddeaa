"""``streamspace dev run``: the whole product on one machine, in the foreground.

Full-profile control plane (or the cluster ``KUBECONFIG`` names, when asked), PostgreSQL (or
``DATABASE_URL``), migrations, an admin API key, then ``streamspace operator`` and
``streamspace facade`` as child processes. Ctrl-C stops what this command started, newest first,
and nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg

from streamspace.auth.apikeys import create_api_key
from streamspace.config import DevSettings, Settings
from streamspace.db.migrate import migrate
from streamspace.dev import process
from streamspace.dev.cluster import ClusterError, ControlPlane
from streamspace.dev.postgres import LocalPostgres


def _facade_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


Cleanups = list[Callable[[], object]]


def _kubeconfig(settings: Settings, dev: DevSettings, cleanups: Cleanups) -> Path:
    """The existing cluster's kubeconfig when asked for, else a local full-profile cluster."""
    if dev.use_existing_cluster:
        if not settings.kubernetes.kubeconfig:
            raise ClusterError("STREAMSPACE_USE_EXISTING_CLUSTER needs KUBECONFIG")
        print(f"using the existing cluster of {settings.kubernetes.kubeconfig}")
        return Path(settings.kubernetes.kubeconfig)
    plane = ControlPlane(dev.state_dir, dev.cache_dir)
    print("starting the local control plane (full profile; the first run builds it)...")
    already = plane.status()["running"]
    plane.up("full")
    if not already:
        cleanups.append(plane.down)
    return plane.kubeconfig


def _database(settings: Settings, dev: DevSettings, cleanups: Cleanups) -> str:
    """``DATABASE_URL``/``DB_*`` when configured, else a throw-away local server."""
    if settings.database.configured:
        return settings.database.url
    pg = LocalPostgres(dev.state_dir)
    already = pg.url() is not None
    url = pg.up()
    if not already:
        cleanups.append(pg.down)
    return url


def standalone_operator_argv(liveness_port: int) -> list[str]:
    """``streamspace operator`` for one local replica, with its liveness endpoint on loopback."""
    return [
        sys.executable,
        "-m",
        "streamspace.cli",
        "operator",
        "--standalone",
        f"--liveness=http://127.0.0.1:{liveness_port}/healthz",
    ]


def _start_processes(env: dict[str, str], logs: Path, cleanups: Cleanups) -> list[process.Started]:
    facade = [sys.executable, "-m", "streamspace.cli", "facade", "--host", "127.0.0.1"]
    children = [
        process.start(
            "operator",
            standalone_operator_argv(process.free_port()),
            logs / "operator.log",
            env=env,
        ),
        process.start("facade", facade, logs / "facade.log", env=env),
    ]
    for child in children:
        cleanups.append(functools.partial(process.stop, child))
    return children


def run_stack(settings: Settings, dev: DevSettings, port: int | None = None) -> int:
    cleanups: Cleanups = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        kubeconfig = _kubeconfig(settings, dev, cleanups)
        db_url = _database(settings, dev, cleanups)
        applied = migrate(db_url)
        print(f"database ready ({len(applied)} migration(s) applied)")
        with psycopg.connect(db_url, autocommit=True) as conn:
            admin_key = create_api_key(conn, "admin", "admin", name="make run")
        facade_port = port or settings.http.port
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "DATABASE_URL": db_url,
            "NAMESPACE": settings.kubernetes.namespace,
            "PORT": str(facade_port),
        }
        logs = dev.state_dir / "logs"
        children = _start_processes(env, logs, cleanups)
        facade = children[1]
        process.wait_until(
            lambda: _facade_healthy(facade_port) or not process.is_running(facade), 60
        )
        if not _facade_healthy(facade_port):
            raise ClusterError("the facade did not start:\n" + process.log_tail(facade))
        _print_welcome(facade_port, admin_key, kubeconfig, logs)
        while not stop.wait(1.0):
            for child in children:
                if not process.is_running(child):
                    print(f"{child.name} exited; last lines of {child.log}:")
                    print(process.log_tail(child))
                    return 1
        print("\nstopping...")
        return 0
    finally:
        for cleanup in reversed(cleanups):
            with contextlib.suppress(Exception):
                cleanup()


def _print_welcome(port: int, key: str, kubeconfig: Path, logs: Path) -> None:
    api = f"http://127.0.0.1:{port}"
    print(
        f"""
StreamSpace is running.

  API:         {api}   (health: {api}/health)
  Admin key:   {key}
  Kubeconfig:  {kubeconfig}
  Logs:        {logs}/operator.log, {logs}/facade.log

Try:
  curl {api}/health
  curl {api}/version
  export KUBECONFIG={kubeconfig}
  kubectl get crds | grep stream.space
  kubectl apply -f examples/template-firefox.yaml -f examples/session.yaml
  kubectl get ss,tpl -w
  kubectl patch ss alice-firefox --type=merge -p '{{"spec":{{"state":"hibernated"}}}}'
  kubectl apply -f examples/connection.yaml    # wakes it again

Press Ctrl-C to stop everything this command started.
""",
        flush=True,
    )
