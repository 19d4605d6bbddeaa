"""Shared fixtures: a real control plane and a real PostgreSQL, started once per test run.

Set ``STREAMSPACE_TEST_KUBECONFIG`` to run against an existing cluster (with the CRDs applied)
and ``STREAMSPACE_TEST_DATABASE_URL`` to use an existing server (each test still gets a database
of its own). Otherwise both are started here, on loopback, and stopped at the end.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from kubernetes import client, config
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from facade_testing import JWT_SECRET, WEBHOOK_SECRET, FacadeThread
from stack_testing import OperatorThread, Stack
from streamspace.config import load_settings
from streamspace_dev import binaries
from streamspace_dev.cluster import ControlPlane
from streamspace_dev.postgres import LocalPostgres
from streamspace_dev.process import free_port, wait_until
from streamspace_dev.settings import load_dev_settings
from streamspace_facade.state import SERVICES
from streamspace_testing import apply_admission, close_pools, new_namespace

pytest_plugins = ["leakcheck", "faults"]  # leak check (a socket left open fails); fault harness

REPO = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "e2e")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A run stopped with SIGTERM (``timeout``, CI cancelling) tears down like Ctrl-C, so the
    session fixtures stop the control plane and PostgreSQL they started."""
    signal.signal(signal.SIGTERM, _interrupt)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier."""
    for item in items:
        tiers = [m.name for m in item.iter_markers() if m.name in TIERS]
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid} needs exactly one of the markers {TIERS}")


@dataclass
class Cluster:
    kubeconfig: Path
    plane: ControlPlane | None  # None when an existing cluster is used

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))


def _require_binaries(plane: ControlPlane, profile: str) -> None:
    """Tests never build the control plane (a cold build outlasts any test timeout): without the
    binaries the run stops here, saying which command builds them."""
    try:
        binaries.require(plane.cache_dir, profile)
    except binaries.BuildError as exc:
        pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    existing = os.environ.get("STREAMSPACE_TEST_KUBECONFIG")
    if existing:
        yield Cluster(Path(existing), None)
        return
    plane = ControlPlane(tmp_path_factory.mktemp("state"), load_dev_settings().cache_dir)
    _require_binaries(plane, "full")
    try:  # a start that fails half-way still stops what it started
        plane.up("minimal")
        yield Cluster(plane.kubeconfig, plane)
    finally:
        plane.down()


@pytest.fixture(scope="session")
def full_cluster(cluster: Cluster) -> Cluster:
    """The same control plane with controller manager, scheduler and kwok nodes added."""
    if cluster.plane is not None:
        cluster.plane.up("full")
    return cluster


@pytest.fixture(scope="session")
def session_admission(cluster: Cluster) -> Cluster:
    """The cluster with ``crds/session-admission.yaml`` applied, as in an installation (the local
    control plane applies it at start; an existing cluster gets it here)."""
    with cluster.api_client() as api_client:
        apply_admission(api_client)
    return cluster


@pytest.fixture
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    with cluster.api_client() as api_client:
        yield api_client
        close_pools(api_client)


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards."""
    with new_namespace(api) as name:
        yield name


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("STREAMSPACE_TEST_DATABASE_URL")
    if existing:
        yield existing
        return
    server = LocalPostgres(tmp_path_factory.mktemp("pg"))
    url = server.up()
    try:
        yield url
    finally:
        server.down()


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database for one test; its URL."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    info = conninfo_to_dict(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(**{**info, "dbname": name})
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def start_operator(cluster: Cluster, namespace: str) -> Iterator[Callable[..., OperatorThread]]:
    """Start the operator on the test's namespace; extra env like RECONCILE_INTERVAL="1s".

    Standalone unless a peering ``priority`` is given. Each serves /metrics on a port of its own.
    ``clock`` replaces the schedules' clock (a test moves it instead of waiting for a minute).
    """
    started: list[OperatorThread] = []

    def start(
        priority: int | None = None, clock: Callable[[], datetime] | None = None, **env: str
    ) -> OperatorThread:
        settings = load_settings(
            {
                "KUBECONFIG": str(cluster.kubeconfig),
                "NAMESPACE": namespace,
                "METRICS_HOST": "127.0.0.1",
                "METRICS_PORT": str(free_port()),
                "ALLOW_PRIVATE_NETWORKS": "true",  # loopback Git servers
                **env,
            }
        )
        operator = OperatorThread(settings, priority, clock).start()
        started.append(operator)
        return operator

    yield start
    for operator in started:
        if operator.thread.is_alive():
            operator.stop()


@pytest.fixture
def start_facade(cluster: Cluster, namespace: str) -> Iterator[Callable[..., FacadeThread]]:
    """Start facades on the test's namespace; keyword arguments become environment variables."""
    started: list[FacadeThread] = []

    def start(**env: str) -> FacadeThread:
        settings = load_settings(
            {
                "KUBECONFIG": str(cluster.kubeconfig),
                "NAMESPACE": namespace,
                "JWT_SECRET": JWT_SECRET,
                "WEBHOOK_SECRET": WEBHOOK_SECRET,
                "ALLOW_LOCAL_REPOS": "true",
                # tests make many sessions and connects as one user in a moment; the tests of
                # the rate limits themselves set them
                "RATE_LIMIT_CREATE": "off",
                "RATE_LIMIT_CONNECT": "off",
                "ALLOW_PRIVATE_NETWORKS": "true",  # loopback Git servers
                **env,
            }
        )
        facade = FacadeThread(settings).start()
        started.append(facade)
        return facade

    yield start
    for facade in started:
        facade.stop()


@pytest.fixture
def stack_env() -> dict[str, str]:
    """Settings both processes of ``stack`` get (e.g. short idle checks); a directory's
    conftest or a test module overrides this fixture to change them."""
    return {}


@pytest.fixture
def stack(
    database: str,
    namespace: str,
    start_operator: Callable[..., OperatorThread],
    start_facade: Callable[..., FacadeThread],
    stack_env: dict[str, str],
) -> Stack:
    """The product as a user meets it: operator and facade sharing one fresh database."""
    operator = start_operator(DATABASE_URL=database, ALLOW_LOCAL_REPOS="true", **stack_env)
    facade = start_facade(DATABASE_URL=database, **stack_env)
    assert facade.app is not None
    mirror = facade.app[SERVICES].mirror
    assert wait_until(mirror.ready.is_set, timeout=60), "the mirror did not become ready"
    return Stack(facade.url, namespace, database, facade, facade.settings, operator)
