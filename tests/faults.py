"""The fault harness: kill and restart every part of the stack, and stall or cut any connection.

* ``Relay`` — a loopback TCP relay in front of any server: ``cut`` closes every relayed
  connection and stops listening (a crashed peer, a dropped link), ``stall`` keeps connections
  open but holds every byte (a partition: nothing arrives, nothing fails), ``restore`` heals.
* ``Product`` — the operator or the facade as a real process (``python -m streamspace.cli``),
  as the chart runs it (JSON logs, peering); ``kill`` is SIGKILL, ``start`` is a new pod.
* ``Faults`` — a control plane and a PostgreSQL of their own (the ``faults`` fixture, one per
  test module), so that killing etcd, the kube-apiserver or PostgreSQL disturbs no other test.

Every wait has a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes import client, config
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from facade_testing import JWT_SECRET, WEBHOOK_SECRET
from streamspace_dev import binaries, process
from streamspace_dev.cluster import ControlPlane
from streamspace_dev.postgres import LocalPostgres
from streamspace_dev.settings import load_dev_settings
from streamspace_testing import GROUP, TEMPLATE, VERSION, close_pools

STARTUP = 120.0
"""Seconds a process may take to answer its probe: generous, the machine is shared and busy."""


# --- a relay that can stall or cut ----------------------------------------------------------------


class Relay:
    """Loopback TCP relay to ``host:port``: ``stall``, ``hold_new``, ``cut`` and ``restore``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.accepted = 0
        self._lock = threading.Lock()
        self._flowing = threading.Event()  # bytes of open connections pass
        self._admitting = threading.Event()  # new connections reach the server
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._held: list[socket.socket] = []  # accepted, not yet connected upstream
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self.restore()

    def conninfo(self, database: str) -> str:
        """``database`` with host and port replaced by this relay's."""
        return make_conninfo(database, host="127.0.0.1", port=str(self.port))

    def restore(self) -> None:
        """Let bytes flow and connections through again; listen again (same port) if cut."""
        self._flowing.set()
        self._admitting.set()
        if self._listener is not None:
            return
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR on POSIX
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name="relay", daemon=True
        )
        self._acceptor.start()

    def stall(self) -> None:
        """Hold every byte in both directions, and new connections, until ``restore`` (a
        partition: nothing arrives and nothing fails)."""
        self._flowing.clear()
        self._admitting.clear()

    def hold_new(self) -> None:
        """Open connections go on; new ones are accepted and held, their requests unsent, until
        ``restore`` (a client reconnecting while the server restarts, answered after it)."""
        self._admitting.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return  # shut down by cut()
            with self._lock:
                self.accepted += 1
                self._held.append(downstream)
                self._start(self._connect, downstream)

    def _start(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name="relay-pump", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _connect(self, downstream: socket.socket) -> None:
        self._admitting.wait()
        with self._lock:
            if downstream not in self._held:
                return  # cut meanwhile
            self._held.remove(downstream)
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            downstream.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._pairs.append((downstream, upstream))
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                self._start(self._pump, source, sink)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()  # a stall holds the bytes here
                sink.sendall(data)
        except OSError:
            pass
        finally:  # one side gone: the other goes too
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Stop accepting, and close every relayed connection on both sides."""
        listener, acceptor = self._listener, self._acceptor
        if listener is not None and acceptor is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
            acceptor.join(10)
            assert not acceptor.is_alive(), "the relay's acceptor did not stop"
            listener.close()
        self._listener = self._acceptor = None
        with self._lock:
            pairs, threads, held = self._pairs, self._threads, self._held
            self._pairs, self._threads, self._held = [], [], []
        socks = [sock for pair in pairs for sock in pair] + held
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._flowing.set()  # held pumps and connections wake, find their sockets shut, end
        self._admitting.set()
        for thread in threads:
            thread.join(10)
            assert not thread.is_alive(), "a relay thread did not stop"
        for sock in socks:
            sock.close()


@contextlib.contextmanager
def relay_to(url: str) -> Iterator[Relay]:
    """A relay to the server of a PostgreSQL URL, cut (closed) at the end of the block."""
    info = conninfo_to_dict(url)
    relay = Relay(str(info["host"]), int(str(info["port"])))
    try:
        yield relay
    finally:
        relay.cut()


# --- the product as processes -------------------------------------------------------------------


def http_status(url: str, timeout: float = 2.0) -> int:
    """The status of a GET, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - loopback
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


@dataclass
class Product:
    """One operator or facade process; each ``start`` is a new pod (a new peering identity)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    probe: str  # answers 200 once the process serves
    record: process.Started | None = None
    starts: int = 0

    def start(self, timeout: float = STARTUP) -> float:
        """Start the process and wait for its probe; the seconds that took."""
        assert self.record is None or not process.is_running(self.record), f"{self.name} runs"
        self.starts += 1
        began = time.monotonic()
        env = {**self.env, "POD_ID": f"{self.name}-{self.starts}-{uuid.uuid4().hex[:6]}"}
        self.record = process.start(self.name, self.argv, self.log, env=env)
        self.wait_ready(timeout)
        return time.monotonic() - began

    def wait_ready(self, timeout: float = STARTUP) -> None:
        record = self.record
        assert record is not None

        def ready() -> bool:
            assert process.is_running(record), f"{self.name} exited:\n{process.log_tail(record)}"
            return http_status(self.probe) == 200

        assert process.wait_until(ready, timeout, interval=0.1), (
            f"{self.name} not ready after {timeout:.0f}s:\n{process.log_tail(record)}"
        )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye (an OOM kill, a node lost)."""
        assert self.record is not None and process.kill(self.record), f"{self.name} not running"

    def stop(self) -> None:
        if self.record is not None:
            process.stop(self.record)

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records it wrote (across every start)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


# --- a stack of its own ---------------------------------------------------------------------------


@dataclass
class Faults:
    """A full control plane and a PostgreSQL of a test module's own, which its tests may kill."""

    plane: ControlPlane
    postgres: LocalPostgres
    server_url: str  # the PostgreSQL server (its ``streamspace`` database)
    tmp: Path
    products: list[Product] = field(default_factory=list)
    started: int = 0  # products made so far: each logs to a file of its own

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.plane.kubeconfig))

    def new_namespace(self) -> str:
        """A namespace with the example Template, on this control plane."""
        name = f"f-{uuid.uuid4().hex[:8]}"
        with self.api_client() as api:
            client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                GROUP,
                VERSION,
                name,
                "templates",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Template",
                    "metadata": {"name": "firefox"},
                    # small requests: hundreds of sessions fit on the two fake nodes
                    "spec": {**TEMPLATE, "defaultResources": {"memory": "512Mi", "cpu": "250m"}},
                },
            )
            close_pools(api)
        return name

    def api_port(self) -> int:
        state = self.plane.load_state()
        assert state is not None
        return state.api_port

    def kubeconfig_via(self, relay: Relay) -> Path:
        """A kubeconfig that reaches the API server through ``relay`` (the serving certificate
        names 127.0.0.1, so TLS checks pass as before)."""
        config_ = yaml.safe_load(self.plane.kubeconfig.read_text())
        for entry in config_["clusters"]:
            entry["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
        path = self.tmp / f"kubeconfig-via-{relay.port}"
        path.write_text(yaml.safe_dump(config_))
        path.chmod(0o600)
        return path

    def new_database(self) -> str:
        name = f"f_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return make_conninfo(self.server_url, dbname=name)

    def _product(self, name: str, argv: list[str], probe: str, env: dict[str, str]) -> Product:
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.tmp),
            "KUBECONFIG": str(self.plane.kubeconfig),
            "LOG_FORMAT": "json",
            "ALLOW_LOCAL_REPOS": "true",
            "ALLOW_PRIVATE_NETWORKS": "true",
            "SYNC_WORK_DIR": str(self.tmp / "repos"),
        }
        self.started += 1
        product = Product(
            name,
            [sys.executable, "-m", "streamspace.cli", *argv],
            {**base, **env},
            self.tmp / f"{self.started:02d}-{name}.log",
            probe,
        )
        self.products.append(product)
        return product

    def operator(
        self, namespace: str, database: str, *, verbose: bool = False, **env: str
    ) -> Product:
        """An operator as the chart runs one replica (peering, JSON logs); not started yet.
        ``verbose`` logs at debug level (Kopf's own watch restarts among it)."""
        health = process.free_port()
        argv = ["operator", f"--liveness=http://127.0.0.1:{health}/healthz", "--metrics-port=0"]
        if verbose:
            argv.insert(0, "--verbose")
        return self._product(
            "operator",
            argv,
            f"http://127.0.0.1:{health}/healthz",
            {"NAMESPACE": namespace, "DATABASE_URL": database, **env},
        )

    def facade(self, namespace: str, database: str, **env: str) -> Product:
        """A facade replica; ``url`` in its env is where it listens. Not started yet."""
        port = process.free_port()
        product = self._product(
            "facade",
            ["facade", "--host=127.0.0.1", f"--port={port}"],
            f"http://127.0.0.1:{port}/ready",
            {
                "NAMESPACE": namespace,
                "DATABASE_URL": database,
                "JWT_SECRET": JWT_SECRET,
                "WEBHOOK_SECRET": WEBHOOK_SECRET,
                "RATE_LIMIT_CREATE": "off",
                "RATE_LIMIT_CONNECT": "off",
                **env,
            },
        )
        return product

    def migrate(self, database: str) -> None:
        """What the chart's hook Job runs."""
        done = subprocess.run(
            [sys.executable, "-m", "streamspace.cli", "migrate"],
            env={"PATH": os.environ.get("PATH", ""), "DATABASE_URL": database},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def stop_products(self) -> None:
        for product in self.products:
            product.stop()
        self.products.clear()


Key = tuple[str, str, str, str]
"""What the mirror must agree on with a Session: uid, name, resourceVersion, phase."""


def session_keys(api: client.ApiClient, namespace: str) -> set[Key]:
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "sessions"
    )
    return {
        (
            s["metadata"]["uid"],
            s["metadata"]["name"],
            s["metadata"]["resourceVersion"],
            str((s.get("status") or {}).get("phase")),
        )
        for s in listed["items"]
    }


def mirror_keys(database: str, namespace: str) -> set[Key]:
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT uid::text, id, resource_version, coalesce(phase, 'None')"
            " FROM sessions WHERE namespace = %s",
            (namespace,),
        ).fetchall()
    return {(str(a), str(b), str(c), str(d)) for a, b, c, d in rows}


def facade_url(facade: Product) -> str:
    return facade.probe.removesuffix("/ready")


@dataclass
class Stack:
    """An operator and a facade (started) on a namespace and a database of their own."""

    faults: Faults
    namespace: str
    database: str
    operator: Product
    facade: Product
    relay: Relay | None = None  # between both processes and the API server, when asked for

    @property
    def url(self) -> str:
        return facade_url(self.facade)


@contextlib.contextmanager
def running_stack(
    faults: Faults, *, via_relay: bool = False, verbose: bool = False
) -> Iterator[Stack]:
    """The product on ``faults``' plane: migrated database, operator and facade processes;
    ``via_relay`` puts a ``Relay`` between them and the API server."""
    namespace, database = faults.new_namespace(), faults.new_database()
    faults.migrate(database)
    relay = Relay("127.0.0.1", faults.api_port()) if via_relay else None
    env = {} if relay is None else {"KUBECONFIG": str(faults.kubeconfig_via(relay))}
    operator = faults.operator(namespace, database, verbose=verbose, **env)
    facade = faults.facade(namespace, database, **env)
    try:
        operator.start()
        facade.start()
        yield Stack(faults, namespace, database, operator, facade, relay)
    finally:
        faults.stop_products()
        if relay is not None:
            relay.cut()


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    """A full control plane and a PostgreSQL for one test module, stopped at its end."""
    tmp = tmp_path_factory.mktemp("faults")
    plane = ControlPlane(tmp / "state", load_dev_settings().cache_dir)
    try:
        binaries.require(plane.cache_dir, "full")
    except binaries.BuildError as exc:
        pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
    postgres = LocalPostgres(tmp / "pg", crash_safe=True)  # a SIGKILL loses no commit
    stack: Faults | None = None
    try:
        plane.up("full")
        stack = Faults(plane, postgres, postgres.up(), tmp)
        yield stack
    finally:
        if stack is not None:
            stack.stop_products()
        postgres.down()
        plane.down()
