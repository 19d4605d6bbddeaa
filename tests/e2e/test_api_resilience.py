"""The REST API under stress: PostgreSQL outages, a lost mirror writer, concurrency, hostile input.

PostgreSQL is cut off from one facade by a TCP relay of the test's own (listener and every relayed
connection closed, both sides) and later restored on the same port; the mirror writer is made to
lose its advisory lock by terminating the lock's backend from PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

import psycopg
import pytest
from kubernetes import client, watch

from facade_testing import Client, FacadeThread, Response, token
from faults import Relay, relay_to
from streamspace_dev.process import wait_until
from streamspace_facade.state import SERVICES
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = pytest.mark.e2e

TIMEOUT = 60
SESSIONS = "/api/v1/sessions"


@pytest.fixture
def relay(database: str) -> Iterator[Relay]:
    """Requested before ``start_facade``, so that it closes after the facades have stopped."""
    with relay_to(database) as relay:
        yield relay


# --- helpers ------------------------------------------------------------------------------------


def listed(caller: Client) -> set[str] | None:
    """The ids of the caller's sessions, or None while the list is not available."""
    reply = caller.get(SESSIONS)
    if reply.status != 200:
        return None
    assert reply.body["total"] == len(reply.body["sessions"]), reply
    return {s["id"] for s in reply.body["sessions"]}


def shows(caller: Client, ids: set[str]) -> bool:
    return listed(caller) == ids


def create(caller: Client, template: str = "firefox") -> str:
    reply = caller.post(SESSIONS, {"template": template})
    assert reply.status == 201, reply
    sid: str = reply.body["id"]
    return sid


def mirror_of(facade: FacadeThread) -> Any:
    assert facade.app is not None
    return facade.app[SERVICES].mirror


def health(facade: FacadeThread) -> dict[str, Any]:
    reply = Client(facade.url).get("/health")
    assert reply.status == 200, reply
    body: dict[str, Any] = reply.body
    return body


def assert_unavailable(reply: Response) -> None:
    """503 in the API's error shape, with nothing of a traceback in it."""
    assert reply.status == 503, reply
    assert isinstance(reply.body, dict), reply
    assert set(reply.body) == {"error", "code", "details"}, reply
    assert reply.body["code"] == "UNAVAILABLE", reply
    text = json.dumps(reply.body)
    assert "Traceback" not in text and "psycopg" not in text, reply


def assert_invalid(reply: Response, field: str) -> None:
    """422 naming ``field`` (or a path inside it) among the failed fields."""
    assert reply.status == 422, reply
    assert reply.body["code"] == "VALIDATION_FAILED", reply
    fields = reply.body["details"]["fields"]
    assert any(path == field or path.startswith(f"{field}.") for path in fields), reply


def facade_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records the facade logged as errors (unexpected failures, with their tracebacks)."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("streamspace_facade") and r.levelno >= logging.ERROR
    ]


def delete_session(objects: Objects, name: str) -> None:
    objects.custom.delete_namespaced_custom_object(GROUP, VERSION, objects.ns, "sessions", name)


@pytest.fixture
def objects(api: client.ApiClient, namespace: str) -> Objects:
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    return objects


# --- a. PostgreSQL outage -----------------------------------------------------------------------


def test_postgresql_outage_is_503_and_the_mirror_catches_up(
    relay: Relay,
    database: str,
    objects: Objects,
    start_operator: Callable[..., Any],
    start_facade: Callable[..., FacadeThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    start_operator(DATABASE_URL=database)
    facade = start_facade(DATABASE_URL=relay.conninfo(database))
    assert wait_until(mirror_of(facade).ready.is_set, TIMEOUT), "the mirror did not become ready"
    assert relay.accepted > 0  # the facade really goes through the relay
    alice = Client(facade.url, token("alice"))
    kept, doomed = create(alice), create(alice)
    assert listed(alice) == {kept, doomed}

    relay.cut()
    assert_unavailable(alice.get(SESSIONS))  # may take DB_WAIT
    templates = alice.get("/api/v1/templates")  # the API server only: still served
    assert templates.status == 200, templates
    assert [t["name"] for t in templates.body["templates"]] == ["firefox"]
    assert wait_until(lambda: health(facade)["mirror"] == "standby", TIMEOUT), health(facade)
    objects.create("sessions", "alice-during-outage", {"user": "alice", "template": "firefox"})
    delete_session(objects, doomed)
    assert_unavailable(alice.get(SESSIONS))

    relay.restore()
    assert wait_until(lambda: listed(alice) == {kept, "alice-during-outage"}, TIMEOUT), listed(
        alice
    )
    assert wait_until(lambda: health(facade)["mirror"] == "writer", TIMEOUT), health(facade)
    assert wait_until(lambda: health(facade)["mirrorReady"] is True, TIMEOUT), health(facade)
    after = create(alice)  # writes (and their audit rows) work again too
    assert listed(alice) == {kept, "alice-during-outage", after}
    assert facade_errors(caplog) == []


def session_names(objects: Objects) -> set[str]:
    """The Session CRs of the namespace, straight from the API server."""
    found: Any = objects.custom.list_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions"
    )
    return {item["metadata"]["name"] for item in found["items"]}


def created_audit(database: str) -> list[tuple[str, datetime]]:
    """(Session, when) of the session creates in the audit log, oldest first."""
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            'SELECT resource_id, "timestamp" FROM audit_log'
            " WHERE action = 'create' AND resource_type = 'session' ORDER BY id"
        ).fetchall()
    return [(str(name), at) for name, at in rows]


def test_a_create_during_a_postgresql_outage_is_answered_once(
    relay: Relay,
    database: str,
    objects: Objects,
    start_facade: Callable[..., FacadeThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 13, item 19: the Session CR was written, then the mirror wait answered 503, and the
    client's retry made a second Session."""
    facade = start_facade(DATABASE_URL=relay.conninfo(database))
    assert wait_until(mirror_of(facade).ready.is_set, TIMEOUT), "the mirror did not become ready"
    alice = Client(facade.url, token("alice"))
    key = {"Idempotency-Key": "outage-1"}

    relay.cut()
    first = alice.post(SESSIONS, {"template": "firefox"}, headers=key)
    assert first.status == 201, first  # the write happened: it is not reported as failed
    sid = first.body["id"]
    assert (first.body["user"], first.body["template"]) == ("alice", "firefox"), first
    assert session_names(objects) == {sid}
    retried = alice.post(SESSIONS, {"template": "firefox"}, headers=key)
    assert retried.status == 201 and retried.body["id"] == sid, retried
    assert session_names(objects) == {sid}
    unkeyed = alice.post(SESSIONS, {"template": "firefox"})  # no key: answered all the same
    assert unkeyed.status == 201, unkeyed
    assert_unavailable(alice.get(SESSIONS))  # reads of the mirror do need PostgreSQL

    relay.restore()
    restored = datetime.now(UTC)
    assert wait_until(lambda: listed(alice) == {sid, unkeyed.body["id"]}, TIMEOUT), listed(alice)
    # the audit rows of the outage were held and are stored now, in order, stamped when served
    outage = [sid, sid, unkeyed.body["id"]]
    assert wait_until(lambda: [r[0] for r in created_audit(database)[:3]] == outage, TIMEOUT)
    assert all(at < restored for _, at in created_audit(database)[:3])
    after = alice.post(SESSIONS, {"template": "firefox"}, headers=key)
    assert after.status == 201 and after.body["id"] == sid, after
    changed = alice.post(SESSIONS, {"template": "firefox", "tags": ["x"]}, headers=key)
    assert_invalid(changed, "header.Idempotency-Key")
    assert session_names(objects) == {sid, unkeyed.body["id"]}
    assert facade_errors(caplog) == []


def test_postgresql_cut_mid_create_still_answers_and_makes_one_session(
    relay: Relay,
    database: str,
    objects: Objects,
    start_facade: Callable[..., FacadeThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL goes the moment the API server has the Session: after the key was claimed,
    before the mirror row and the stored answer are written."""
    facade = start_facade(DATABASE_URL=relay.conninfo(database))
    assert wait_until(mirror_of(facade).ready.is_set, TIMEOUT), "the mirror did not become ready"
    alice = Client(facade.url, token("alice"))
    key = {"Idempotency-Key": "mid-request"}
    stream = watch.Watch()
    cut = threading.Event()

    def cut_on_first_session() -> None:
        for _ in stream.stream(
            objects.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            objects.ns,
            "sessions",
            timeout_seconds=TIMEOUT,
        ):
            relay.cut()
            cut.set()
            return

    cutter = threading.Thread(target=cut_on_first_session, name="cutter", daemon=True)
    cutter.start()
    first = alice.post(SESSIONS, {"template": "firefox"}, headers=key)
    cutter.join(TIMEOUT)
    stream.stop()
    assert cut.is_set(), "the Session never appeared"
    assert first.status == 201, first
    sid = first.body["id"]
    assert session_names(objects) == {sid}

    relay.restore()
    assert wait_until(lambda: listed(alice) == {sid}, TIMEOUT), listed(alice)
    # A lost answer is retried: the same Session, or 409 while the first request's claim (never
    # settled: PostgreSQL was gone) still counts as in progress. Never a second Session.
    retried = alice.post(SESSIONS, {"template": "firefox"}, headers=key)
    assert (retried.status, retried.body.get("id")) == (201, sid) or (
        retried.status == 409 and retried.body["code"] == "CONFLICT"
    ), retried
    assert session_names(objects) == {sid}
    assert facade_errors(caplog) == []


# --- b. mirror takeover -------------------------------------------------------------------------


class LeaderSampler:
    """Samples the ``leader`` flag of every mirror until stopped; remembers any double writer."""

    def __init__(self, mirrors: list[Any]) -> None:
        self.mirrors = mirrors
        self.samples = 0
        self.overlaps: list[float] = []  # monotonic times of samples with two writers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):  # a sampling rate, not a wait for a condition
            flags = tuple(bool(m.leader) for m in self.mirrors)
            self.samples += 1
            if sum(flags) > 1:
                self.overlaps.append(time.monotonic())

    def __enter__(self) -> LeaderSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def lock_holders(database_url: str) -> list[int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_mirror_writer_loses_its_lock_and_one_replica_takes_over(
    stack: Any, objects: Objects, start_facade: Callable[..., FacadeThread]
) -> None:
    second = start_facade(DATABASE_URL=stack.database_url)
    facades = [stack.facade, second]
    mirrors = [mirror_of(f) for f in facades]
    alice = stack.client("alice")
    with LeaderSampler(mirrors) as sampler:
        assert wait_until(lambda: sum(m.leader for m in mirrors) == 1, TIMEOUT)
        assert wait_until(lambda: len(lock_holders(stack.database_url)) == 1, TIMEOUT)
        writer = next(i for i, m in enumerate(mirrors) if m.leader)
        assert [health(f)["mirror"] for f in facades] == [
            "writer" if i == writer else "standby" for i in range(2)
        ]
        (old_pid,) = lock_holders(stack.database_url)
        with psycopg.connect(stack.database_url, autocommit=True) as conn:

            def last_query() -> Any:
                row = conn.execute(
                    "SELECT query_start FROM pg_stat_activity WHERE pid = %s", (old_pid,)
                ).fetchone()
                return row and row[0]

            # The worst moment for the lock to go: right after the writer checked on it.
            before = last_query()
            assert wait_until(lambda: last_query() != before, TIMEOUT, interval=0.01)
            terminated = conn.execute(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND a.datname = current_database()"
            ).fetchall()
        assert terminated == [(True,)]

        def taken_over() -> bool:
            holders = lock_holders(stack.database_url)
            leaders = [m for m in mirrors if m.leader]
            return (
                len(holders) == 1
                and holders[0] != old_pid
                and len(leaders) == 1
                and leaders[0].ready.is_set()
            )

        assert wait_until(taken_over, TIMEOUT), (lock_holders(stack.database_url), mirrors)
        objects.create("sessions", "alice-after-takeover", {"user": "alice", "template": "firefox"})
        for facade in facades:  # the writer stored it; the standby reads the same table
            caller = Client(facade.url, token("alice"))
            assert wait_until(partial(shows, caller, {"alice-after-takeover"}), TIMEOUT)
        assert listed(alice) == {"alice-after-takeover"}
    assert sampler.samples > 100
    overlap = sampler.overlaps and sampler.overlaps[-1] - sampler.overlaps[0]
    assert sampler.overlaps == [], (
        f"two writers at once in {len(sampler.overlaps)} of {sampler.samples} samples,"
        f" over {overlap:.2f}s"
    )


# --- c. concurrency -----------------------------------------------------------------------------


def test_concurrent_creates_and_connects(stack: Any, objects: Objects) -> None:
    alice: Client = stack.client("alice")

    def post(_: int) -> Response:
        return alice.post(SESSIONS, {"template": "firefox"})

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(post, range(20)))
    assert [r.status for r in replies] == [201] * 20, replies
    ids = {r.body["id"] for r in replies}
    assert len(ids) == 20
    everything = alice.get(SESSIONS)  # read-your-writes, at once
    assert everything.status == 200 and everything.body["total"] == 20, everything
    assert {s["id"] for s in everything.body["sessions"]} == ids
    with psycopg.connect(stack.database_url) as conn:
        audited = conn.execute(
            "SELECT resource_id FROM audit_log WHERE action = 'create' AND resource_type = 'session'"
        ).fetchall()
    assert sorted(r[0] for r in audited) == sorted(ids)

    sid = sorted(ids)[0]

    def connect(_: int) -> Response:
        return alice.get(f"{SESSIONS}/{sid}/connect")

    with ThreadPoolExecutor(10) as pool:
        connects = list(pool.map(connect, range(10)))
    assert [r.status for r in connects] == [200] * 10, connects
    connection_ids = {r.body["connectionId"] for r in connects}
    assert len(connection_ids) == 10
    connections = alice.get(f"{SESSIONS}/{sid}/connections")
    assert connections.status == 200, connections
    assert {c["id"] for c in connections.body["connections"]} >= connection_ids


# --- d. hostile input ---------------------------------------------------------------------------


# "{name}" stands for the real object's name: near misses must not reach it either.
HOSTILE_IDS = [
    "%2E", "%2e", "%2E%2E", "%2e%2E", ".", "..",
    "%2E%2E%2F{name}", "..%2F{name}", "{name}%2F", "{name}%2F..", "{name}%0A", "{name}%00",
    "{name}%20", "%20{name}", "{name}.", "{name}%2E",
]  # fmt: skip


def test_hostile_ids_never_reach_an_object_or_a_collection(stack: Any, objects: Objects) -> None:
    admin = stack.client("root", "admin")
    sid = create(stack.client("alice"))
    repository = admin.post(
        "/api/v1/repositories",
        {"name": "templates", "url": "https://git.example.invalid/org/templates"},
    )
    assert repository.status == 201, repository

    for hostile in HOSTILE_IDS:
        template, session, repo = (hostile.format(name=n) for n in ("firefox", sid, "templates"))
        for method, path in [
            ("GET", f"/api/v1/templates/{template}"),
            ("DELETE", f"/api/v1/templates/{template}"),
            ("GET", f"{SESSIONS}/{session}"),
            ("PATCH", f"{SESSIONS}/{session}"),
            ("DELETE", f"{SESSIONS}/{session}"),
            ("GET", f"{SESSIONS}/{session}/connect"),
            ("POST", f"/api/v1/repositories/{repo}/sync"),
            ("DELETE", f"/api/v1/repositories/{repo}"),
        ]:
            body = {"state": "hibernated"} if method == "PATCH" else None
            reply = admin.request(method, path, body)
            assert reply.status == 404, (method, path, reply)
            assert isinstance(reply.body, dict) and reply.body["code"] == "NOT_FOUND", (path, reply)

    assert objects.get("templates", "firefox") is not None
    kept = objects.session(sid)
    assert kept is not None and not kept["metadata"].get("deletionTimestamp"), kept
    assert kept["spec"].get("state", "running") == "running"
    connections: Any = objects.custom.list_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "connections"
    )
    assert connections["items"] == []
    assert listed(admin) == {sid}
    stored = objects.get("templaterepositories", "templates")
    assert stored is not None and not stored["metadata"].get("deletionTimestamp"), stored
    assert "stream.space/sync-requested" not in (stored["metadata"].get("annotations") or {})


def test_nul_and_newlines_are_refused(stack: Any, objects: Objects) -> None:
    admin = stack.client("root", "admin")
    assert_invalid(admin.get(f"{SESSIONS}?tag=a%00b"), "query")
    assert_invalid(admin.get(f"{SESSIONS}?user=%00"), "query")
    keys = "/api/v1/admin/apikeys"
    assert_invalid(admin.post(keys, {"user": "abc", "role": "user", "name": "x\u0000y"}), "name")
    assert_invalid(admin.post(keys, {"user": "abc\n", "role": "user", "name": "x"}), "user")
    assert_invalid(admin.post(keys, {"user": "ab\u0000c", "role": "user"}), "user")
    listed_keys = admin.get(keys)
    assert listed_keys.status == 200 and listed_keys.body["total"] == 0, listed_keys
    assert_invalid(admin.post(SESSIONS, {"template": "firefox\n"}), "template")
    assert_invalid(admin.post(SESSIONS, {"template": "firefox", "user": "alice\n"}), "user")
    assert_invalid(admin.post(SESSIONS, {"template": "fire\u0000fox"}), "template")
    assert listed(admin) == set()


UNUSABLE_URLS = [
    "https://[",
    "https://h:99999/x",
    "https://h:-1/x",
    "https://h/x y",
    "https://h/x\r\nHost: evil",
    "https://h/x\u0000",
]


def test_unusable_repository_urls_are_422(stack: Any) -> None:
    operator = stack.client("ops", "operator")
    for url in UNUSABLE_URLS:
        assert_invalid(operator.post("/api/v1/repositories", {"url": url}), "url")
    everything = operator.get("/api/v1/repositories")
    assert everything.status == 200 and everything.body["total"] == 0, everything
