"""Five concurrent connects racing the idle timer and the user's own hibernate, 50 rounds.

Issue 15: never a double wake, never a lost user decision (decision 95 defines both). The real
operator and facade run in threads of this process (nothing is killed here), on the full
profile, so Deployments scale and sessions reach ``Running`` on kwok nodes. The rounds run on
``SESSIONS`` sessions at once, each session going through its rounds in turn.

A round: the session is running with no connection, its idle deadline near. Around that deadline
(a little before or after, at random), or in half the rounds right after the idle timer has
hibernated the session, five connects and the user's ``PATCH state=hibernated`` are sent over
REST, in one of three orders: the user first, the connects first, or all at once.
Once every connection is adopted and the phase follows the state, the round is judged on the
sequence of Session versions a watch recorded (every write, in order) and on the REST answers'
real-time order:

* every call was answered 2xx (a refused hibernate is a lost decision too);
* the connects all answered before the user's hibernate was sent → it stays hibernated, and at
  most one wake happened (one that ended an idle hibernation);
* the hibernate answered before any connect was sent → it is running again, woken exactly once;
* overlapping → either, with at most one wake per hibernation (idle and user: two);
* never more ``Woken`` Events than wakes;
* where the idle timer was waited for, its hibernation is in the sequence.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client, watch

from facade_testing import Client, FacadeThread
from streamspace.conditions import parse_timestamp
from streamspace_dev.process import wait_until
from streamspace_facade.app import SERVICES
from streamspace_testing import GROUP, TEMPLATE, TIMEOUT, VERSION, Objects

# a busy shared machine makes each round slower than its few seconds
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROUNDS = 50
SESSIONS = 5  # sessions raced at once; each runs ROUNDS // SESSIONS rounds in turn
CONNECTS = 5
IDLE_TIMEOUT = 3  # seconds
POLL = 0.3  # seconds between reads while waiting: several threads poll, the machine is shared
ORDERS = ("user-last", "user-first", "together")
# Sent around the idle deadline, or once the idle timer has hibernated the session (so that it
# certainly takes part even when a busy machine makes it late).
KINDS = [(order, idle_first) for order in ORDERS for idle_first in (False, True)]
# Connections carry no heartbeats here: they must not go stale during a run.
FAST = {
    "STALE_AFTER": "600s",
    "HEARTBEAT_CHECK_INTERVAL": "5s",
    "IDLE_CHECK_INTERVAL": "1s",
    "HIBERNATE_WARNING": "1s",
}
CAUSE = "stream.space/state-cause"


@dataclass(frozen=True)
class Version:
    rv: str
    state: str
    cause: str | None


@dataclass(frozen=True)
class Call:
    start: float  # time.monotonic() when sent
    end: float  # ... and when answered
    status: int
    body: Any


class Versions:
    """Every version of every Session of the namespace, in order, from one watch."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.seen: dict[str, list[Version]] = {}
        self.lock = threading.Lock()
        self.stream = watch.Watch()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        listed = objects.custom.list_namespaced_custom_object(
            GROUP, VERSION, objects.ns, "sessions"
        )
        self.rv = listed["metadata"]["resourceVersion"]
        self.thread = threading.Thread(target=self._run, name="versions", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            # short watches, resumed where they ended: close() waits for the current one only
            while not self.stop.is_set():
                for event in self.stream.stream(
                    self.objects.custom.list_namespaced_custom_object, GROUP, VERSION,
                    self.objects.ns, "sessions", resource_version=self.rv, timeout_seconds=5,
                ):  # fmt: skip
                    obj = event["object"]
                    if event["type"] == "ERROR":  # e.g. 410 Gone: versions were missed
                        self.error = AssertionError(f"watch failed: {obj}")
                        return
                    meta = obj["metadata"]
                    self.rv = meta["resourceVersion"]
                    version = Version(
                        self.rv,
                        str((obj.get("spec") or {}).get("state", "running")),
                        (meta.get("annotations") or {}).get(CAUSE),
                    )
                    with self.lock:
                        self.seen.setdefault(meta["name"], []).append(version)
        except BaseException as exc:  # reported by since() and close()
            if not self.stop.is_set():
                self.error = exc

    def caught_up(self, name: str, current: str) -> int:
        """How many versions of ``name`` there are up to ``current``, once the watch saw it."""

        def seen() -> bool:
            assert self.error is None, self.error
            with self.lock:
                return any(v.rv == current for v in self.seen.get(name, []))

        assert wait_until(seen, TIMEOUT, interval=0.1), f"the watch missed {name}@{current}"
        with self.lock:
            return 1 + [v.rv for v in self.seen[name]].index(current)

    def since(self, name: str, start: int) -> list[Version]:
        with self.lock:
            return list(self.seen[name][start - 1 :])  # from the version the round started in

    def close(self) -> None:
        self.stop.set()
        self.stream.stop()
        self.thread.join(30)


@dataclass
class Round:
    session: str
    order: str
    idle_first: bool
    connects: list[Call] = field(default_factory=list)
    hibernate: Call | None = None
    versions: list[Version] = field(default_factory=list)
    woken_events: int = 0
    final: str = ""

    @property
    def wakes(self) -> int:
        pairs = zip(self.versions, self.versions[1:], strict=False)
        return sum(a.state == "hibernated" and b.state == "running" for a, b in pairs)

    @property
    def idle_hibernations(self) -> int:
        pairs = zip(self.versions, self.versions[1:], strict=False)
        return sum(
            a.state == "running" and b.state == "hibernated" and b.cause == "hibernated:Idle"
            for a, b in pairs
        )

    def problems(self) -> list[str]:
        """What breaks the round's promises (empty when kept)."""
        assert self.hibernate is not None
        found = [
            f"{c.status} {c.body}" for c in [*self.connects, self.hibernate] if c.status >= 300
        ]
        user_last = max(c.end for c in self.connects) < self.hibernate.start
        user_first = self.hibernate.end < min(c.start for c in self.connects)
        if user_last and (self.final != "hibernated" or self.wakes > 1):
            found.append("lost user decision: connects answered before the hibernate woke it")
        if user_first and (self.final != "running" or self.wakes != 1):
            found.append(f"a connect after the hibernate woke it {self.wakes} times, not once")
        if self.wakes > 2:
            found.append(f"double wake: {self.wakes} wakes for at most two hibernations")
        if self.woken_events > self.wakes:
            found.append(f"double wake: {self.woken_events} Woken events for {self.wakes} wakes")
        if self.idle_first and self.idle_hibernations != 1:
            found.append("the idle timer did not hibernate it before the race")
        return found

    def __str__(self) -> str:
        steps = " → ".join(f"{v.state}({v.cause or '-'})" for v in self.versions)
        return f"{self.session} [{self.order}{', idle first' if self.idle_first else ''}] final={self.final} wakes={self.wakes}: {steps}"


@pytest.fixture
def race_stack(
    full_cluster: Any,
    api: client.ApiClient,
    database: str,
    namespace: str,
    start_operator: Callable[..., Any],
    start_facade: Callable[..., FacadeThread],
) -> tuple[str, Objects]:
    """Operator (short idle checks) and facade on one database; the facade's URL."""
    start_operator(DATABASE_URL=database, **FAST)
    facade = start_facade(DATABASE_URL=database)
    assert facade.app is not None
    assert wait_until(facade.app[SERVICES].mirror.ready.is_set, 60), "mirror not ready"
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    return facade.url, objects


def timed(call: Callable[[], Any]) -> Call:
    start = time.monotonic()
    reply = call()
    return Call(start, time.monotonic(), reply.status, reply.body)


class Racer:
    """One session and its user, going through rounds."""

    def __init__(self, url: str, objects: Objects, versions: Versions, user: str) -> None:
        from facade_testing import token  # noqa: PLC0415

        self.user = Client(url, token(user))
        self.objects, self.versions = objects, versions
        self.pool = ThreadPoolExecutor(max_workers=CONNECTS + 1)
        created = self.user.post(
            "/api/v1/sessions", {"template": "firefox", "idleTimeout": f"{IDLE_TIMEOUT}s"}
        )
        assert created.status == 201, created
        self.name: str = created.body["id"]
        self.path = f"/api/v1/sessions/{self.name}"
        self.connection_ids: list[str] = []

    def connections(self) -> list[dict[str, Any]]:
        label = f"stream.space/session={self.name}"
        listed = self.objects.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.objects.ns, "connections", label_selector=label
        )
        return list(listed["items"])

    def reset(self) -> tuple[datetime, str]:
        """Running, no connection, idle clock started: when the idle timer will fire, and the
        resourceVersion seen so (the idle timer may hibernate it any moment after)."""
        for cid in self.connection_ids:
            reply = self.user.delete(f"{self.path}/disconnect?connectionId={cid}")
            assert reply.status == 200, reply
        self.connection_ids = []

        def idle_clock() -> bool:
            session = self.objects.session(self.name) or {}
            if session["spec"].get("state") != "running":
                # after a hibernated round, or the idle timer was quicker than this check
                reply = self.user.patch(self.path, {"state": "running"})
                assert reply.status == 200, reply
                return False
            status = session.get("status") or {}
            seen.append(session)
            return (
                status.get("phase") == "Running"
                and status.get("activeConnections") == 0
                and bool(status.get("idleDeadline"))
                and not self.connections()
            )

        seen: list[dict[str, Any]] = []
        assert wait_until(idle_clock, TIMEOUT, interval=POLL), self.objects.status(self.name)
        deadline = parse_timestamp(seen[-1]["status"]["idleDeadline"])
        assert deadline is not None
        return deadline, str(seen[-1]["metadata"]["resourceVersion"])

    def connect(self, at: datetime) -> Call:
        pause(at)
        call = timed(lambda: self.user.get(f"{self.path}/connect"))
        if call.status == 200:
            self.connection_ids.append(call.body["connectionId"])
        return call

    def hibernate(self, at: datetime) -> Call:
        pause(at)
        return timed(lambda: self.user.patch(self.path, {"state": "hibernated"}))

    def race(self, order: str, idle_first: bool, rng: random.Random) -> Round:
        deadline, running = self.reset()
        start = self.versions.caught_up(self.name, running)
        woken_before = len(self.objects.events(self.name, "Woken"))
        # Around the moment the idle timer fires: sometimes before it, more often after.
        if idle_first:
            hibernated = lambda: self.objects.spec(self.name).get("state") == "hibernated"  # noqa: E731
            assert wait_until(hibernated, TIMEOUT, interval=0.1), "the idle timer never fired"
            at = datetime.now(UTC)
        else:  # a little before the idle timer fires, or after
            at = deadline + timedelta(seconds=rng.uniform(-0.3, 1.0))
        result = Round(self.name, order, idle_first)
        connects = [
            lambda i=i: self.connect(at + timedelta(seconds=0.02 * i)) for i in range(CONNECTS)
        ]
        if order == "user-first":
            result.hibernate = self.hibernate(at)
            result.connects = list(self.pool.map(lambda f: f(), connects))
        elif order == "user-last":
            result.connects = list(self.pool.map(lambda f: f(), connects))
            result.hibernate = self.hibernate(at)
        else:
            user = self.pool.submit(self.hibernate, at + timedelta(seconds=rng.uniform(0, 0.1)))
            result.connects = list(self.pool.map(lambda f: f(), connects))
            result.hibernate = user.result()
        self.settle()
        result.final = self.objects.spec(self.name)["state"]
        result.versions = self.versions.since(self.name, start)
        result.woken_events = len(self.objects.events(self.name, "Woken")) - woken_before
        return result

    def settle(self) -> None:
        """Every connection adopted (its wake decided), the phase following the state."""

        def adopted() -> bool:
            found = self.connections()
            return len(found) == CONNECTS and all(
                (c.get("status") or {}).get("connectedAt") for c in found
            )

        def steady() -> bool:
            session = self.objects.session(self.name) or {}
            state = session["spec"].get("state")
            phase = (session.get("status") or {}).get("phase")
            return (state, phase) in (("running", "Running"), ("hibernated", "Hibernated"))

        assert wait_until(adopted, TIMEOUT, interval=POLL), self.connections()
        assert wait_until(steady, TIMEOUT, interval=POLL), self.objects.status(self.name)


def pause(until: datetime) -> None:
    """The race's schedule (when to send), not a wait for a condition."""
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()))


def test_connects_racing_idle_timer_and_user_hibernate(race_stack: tuple[str, Objects]) -> None:
    url, objects = race_stack
    versions = Versions(objects)
    racers: list[Racer] = []
    try:
        with ThreadPoolExecutor(max_workers=SESSIONS) as pool:
            racers = list(
                pool.map(lambda i: Racer(url, objects, versions, f"racer{i}"), range(SESSIONS))
            )

            def rounds(index: int) -> list[Round]:
                rng = random.Random(index)  # noqa: S311 - a schedule, not a secret
                racer = racers[index]
                return [
                    racer.race(*KINDS[(index + n) % len(KINDS)], rng)
                    for n in range(ROUNDS // SESSIONS)
                ]

            results = [r for done in pool.map(rounds, range(SESSIONS)) for r in done]
    finally:
        versions.close()
        for racer in racers:
            racer.pool.shutdown()
    assert len(results) == ROUNDS
    wakes = {o: sum(r.wakes for r in results if r.order == o) for o in ORDERS}
    idle = sum(r.idle_hibernations for r in results)
    print(f"{len(results)} rounds; wakes by order {wakes}; idle hibernations {idle}")
    broken = [f"{r}: {'; '.join(r.problems())}" for r in results if r.problems()]
    assert not broken, "\n".join(broken)
