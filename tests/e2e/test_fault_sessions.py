"""No lost sessions under combined faults: 200 creates over REST while the parts die under them.

The operator and the facade run as real processes (as the chart runs them) on a control plane
and a PostgreSQL of this module's own (``faults``), which the tests kill and restart:

* the operator is SIGKILLed twice and the kube-apiserver restarted once during the creates;
* PostgreSQL is killed for 30 s in the middle of the creates.

Clients retry what failed with the same ``Idempotency-Key``, as the API documents. Afterwards
every answered create has exactly its Session, each Running with one Deployment, one Service and
its user's home volume; the mirror equals the CRs row for row; every create has its audit row.
The recovery times are printed (``pytest -s``), never asserted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from kubernetes import client

from facade_testing import Client, token
from faults import Faults, Key, Stack, mirror_keys, running_stack, session_keys
from streamspace.naming import home_pvc_name
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, VERSION, close_pools

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

SESSIONS = 200
USERS = 20
WORKERS = 8
SETTLE = 600.0  # seconds for every session to be Running once the faults are over
SESSIONS_PATH = "/api/v1/sessions"


@dataclass
class Load:
    """``SESSIONS`` creates over REST by ``USERS`` users, each retried with its key until 201."""

    url: str
    answered: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> Session name
    statuses: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, index: int) -> None:
        user, key = f"user-{index % USERS}", f"fault-create-{index:04d}"
        caller = Client(self.url, token(user))
        deadline, pause = time.monotonic() + SETTLE, 0.2
        while time.monotonic() < deadline:
            try:
                reply = caller.post(
                    SESSIONS_PATH, {"template": "firefox"}, headers={"Idempotency-Key": key}
                )
                status = str(reply.status)
            except OSError as exc:  # the facade itself unreachable
                reply, status = None, type(exc).__name__
            with self.lock:
                self.statuses[status] += 1
            if reply is not None and reply.status == 201:
                assert reply.body["user"] == user, reply
                with self.lock:
                    self.answered[key] = reply.body["id"]
                return
            if reply is not None and reply.status < 500 and reply.status not in (409, 429):
                with self.lock:
                    self.refused.append(f"{key}: {reply}")
                return
            time.sleep(pause)  # a retry with backoff, as a client does
            pause = min(pause * 2, 3.0)
        with self.lock:
            self.refused.append(f"{key}: no 201 within {SETTLE:.0f}s")

    def count(self) -> int:
        with self.lock:
            return len(self.answered)


@pytest.fixture
def stack(faults: Faults) -> Iterator[Stack]:
    with running_stack(faults) as running:
        yield running


def run_load(stack: Stack, at: dict[int, Callable[[], None]]) -> Load:
    """The creates, with ``at[n]`` run (here, in order) once ``n`` creates were answered."""
    load = Load(stack.url)
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(load.create, i) for i in range(SESSIONS)]
        for threshold, fault in sorted(at.items()):
            assert wait_until(lambda t=threshold: load.count() >= t, SETTLE, interval=0.05), (
                f"only {load.count()} creates answered: {load.statuses}"
            )
            fault()
        for future in futures:
            future.result()
    assert not load.refused, load.refused[:5]
    assert len(load.answered) == SESSIONS, load.statuses
    return load


def kill_operator(stack: Stack, timings: dict[str, list[float]]) -> Callable[[], None]:
    def fault() -> None:
        stack.operator.kill()
        timings["operator start after SIGKILL (s)"].append(stack.operator.start())

    return fault


def restart_apiserver(stack: Stack, timings: dict[str, list[float]]) -> Callable[[], None]:
    def fault() -> None:
        began = time.monotonic()
        stack.faults.plane.restart("kube-apiserver")
        timings["kube-apiserver restart (s)"].append(time.monotonic() - began)

    return fault


# --- what must hold afterwards --------------------------------------------------------------------


def owned_by(obj: Any, uid: str) -> bool:
    return any(ref.uid == uid for ref in obj.metadata.owner_references or [])


def assert_every_session_whole(stack: Stack, load: Load) -> float:
    """Every answered create has its Session, and only those exist; each is Running with one
    Deployment and one Service it owns, and its user's home volume. The seconds until then."""
    began = time.monotonic()
    with stack.faults.api_client() as api:
        custom = client.CustomObjectsApi(api)

        def sessions() -> list[dict[str, Any]]:
            listed = custom.list_namespaced_custom_object(
                GROUP, VERSION, stack.namespace, "sessions"
            )
            return list(listed["items"])

        def all_running() -> bool:
            items = sessions()
            return len(items) >= SESSIONS and all(
                (s.get("status") or {}).get("phase") == "Running" for s in items
            )

        assert wait_until(all_running, SETTLE, interval=1.0), Counter(
            (s.get("status") or {}).get("phase") for s in sessions()
        )
        settled = time.monotonic() - began
        items = sessions()
        assert sorted(s["metadata"]["name"] for s in items) == sorted(load.answered.values())
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        deployments = apps.list_namespaced_deployment(stack.namespace).items
        services = core.list_namespaced_service(stack.namespace).items
        claims = {
            c.metadata.name
            for c in core.list_namespaced_persistent_volume_claim(stack.namespace).items
        }
        for session in items:
            uid = session["metadata"]["uid"]
            name = session["metadata"]["name"]
            assert len([d for d in deployments if owned_by(d, uid)]) == 1, name
            assert len([s for s in services if owned_by(s, uid)]) == 1, name
            assert home_pvc_name(session["spec"]["user"]) in claims, name
        assert len(deployments) == SESSIONS and len(services) == SESSIONS
        close_pools(api)
    return settled


def assert_mirror_matches(stack: Stack) -> float:
    """The mirror holds exactly the Sessions, each at the CR's resourceVersion; the seconds it
    took to catch up after the sessions settled."""
    began = time.monotonic()
    with stack.faults.api_client() as api:

        def differ() -> set[Key]:
            return session_keys(api, stack.namespace) ^ mirror_keys(stack.database, stack.namespace)

        assert wait_until(lambda: not differ(), SETTLE, interval=0.5), sorted(differ())[:6]
        close_pools(api)
    return time.monotonic() - began


def assert_every_create_audited(stack: Stack, load: Load) -> None:
    with psycopg.connect(stack.database) as conn:
        audited = {
            row[0]
            for row in conn.execute(
                "SELECT resource_id FROM audit_log WHERE action = 'create'"
                " AND resource_type = 'session' AND (changes->>'status')::int = 201"
            ).fetchall()
        }
    missing = set(load.answered.values()) - audited
    assert not missing, sorted(missing)[:10]


def report(title: str, timings: dict[str, list[float]], load: Load) -> None:
    print(f"\n{title}")
    for name, values in timings.items():
        print(f"  {name:<44} " + " ".join(f"{v:6.1f}" for v in values))
    print(f"  answers seen by the clients: {dict(sorted(load.statuses.items()))}")


# --- the scenarios ------------------------------------------------------------------------------


def test_creates_survive_two_operator_kills_and_an_apiserver_restart(stack: Stack) -> None:
    timings: dict[str, list[float]] = {
        "operator start after SIGKILL (s)": [],
        "kube-apiserver restart (s)": [],
    }
    load = run_load(
        stack,
        {
            40: kill_operator(stack, timings),
            100: restart_apiserver(stack, timings),
            150: kill_operator(stack, timings),
        },
    )
    timings["all Running after the last create (s)"] = [assert_every_session_whole(stack, load)]
    timings["mirror equal to the CRs after that (s)"] = [assert_mirror_matches(stack)]
    assert_every_create_audited(stack, load)
    report("200 creates, operator SIGKILLed twice, kube-apiserver restarted", timings, load)


@dataclass
class Reader:
    """A user listing their sessions twice a second, as a web console does; what it was told."""

    url: str
    seen: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, status)
    wrong: list[str] = field(default_factory=list)  # answers other than 200 and a clean 503
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        caller = Client(self.url, token("user-0"))
        while not self.stop.wait(0.5):
            try:
                reply = caller.get(SESSIONS_PATH)
            except OSError:
                continue
            clean = reply.status == 200 or (
                reply.status == 503 and reply.body.get("code") == "UNAVAILABLE"
            )
            if not clean:  # never a 500, never a traceback
                self.wrong.append(str(reply))
            self.seen.append((time.monotonic(), reply.status))

    def statuses(self, since: float, until: float) -> set[int]:
        return {status for at, status in self.seen if since <= at <= until}


OUTAGE = 30.0
"""Seconds PostgreSQL stays dead (the scenario's length, not a wait for a condition)."""


def test_creates_survive_postgresql_killed_for_30_seconds(stack: Stack) -> None:
    timings: dict[str, list[float]] = {}
    reader = Reader(stack.url)
    watcher = threading.Thread(target=reader.run, name="reader", daemon=True)
    outage: dict[str, float] = {}

    def kill_postgresql() -> None:
        stack.faults.postgres.kill()
        outage["killed"] = time.monotonic()
        threading.Event().wait(OUTAGE)  # the creates go on meanwhile, in their threads
        outage["restarting"] = time.monotonic()
        stack.faults.postgres.restart()
        outage["restarted"] = time.monotonic()
        timings["PostgreSQL restart (s)"] = [outage["restarted"] - outage["restarting"]]

    watcher.start()
    try:
        load = run_load(stack, {60: kill_postgresql})

        def read_again() -> bool:
            return any(s == 200 and at > outage["restarted"] for at, s in reader.seen)

        assert wait_until(read_again, SETTLE, interval=0.2), reader.seen[-5:]
    finally:
        reader.stop.set()
        watcher.join(10)
    assert not reader.wrong, reader.wrong[:3]
    first = min(at for at, s in reader.seen if s == 200 and at > outage["restarted"])
    timings["reads answered again after the restart (s)"] = [first - outage["restarted"]]
    # from a pooled connection's wait (DB_WAIT, 10 s) after the kill until the restart: refused
    assert reader.statuses(outage["killed"] + 12, outage["restarting"]) == {503}
    timings["all Running after the last create (s)"] = [assert_every_session_whole(stack, load)]
    timings["mirror equal to the CRs after that (s)"] = [assert_mirror_matches(stack)]
    assert_every_create_audited(stack, load)
    report(f"200 creates, PostgreSQL killed for {OUTAGE:.0f} s", timings, load)
