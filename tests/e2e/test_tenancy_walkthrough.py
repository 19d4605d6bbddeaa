"""Issue 19's "done when", as one test on the full profile (sessions really run on kwok nodes):
a quota of two running sessions holds over REST and over kubectl; bob sees and connects to a
session alice shared with him, and not after she revokes it; a session scheduled to start two
minutes ahead starts then and stops on schedule (the operator's schedule clock is moved by the
test instead of waiting); a terminal opens in a session pod; the usage report adds up what ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from test_terminal import exit_of, output

from clock_testing import Clock
from facade_testing import FacadeThread, WebSocket, token
from stack_testing import OperatorThread, Stack
from streamspace.conditions import timestamp
from streamspace_dev.process import wait_until
from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.e2e

SESSIONS = "/api/v1/sessions"
TIMEOUT = 90


@pytest.fixture
def clock() -> Clock:
    return Clock(timestamp(datetime.now(UTC)))


@pytest.fixture
def clocked_stack(
    full_cluster: Any,
    database: str,
    namespace: str,
    clock: Clock,
    start_operator: Callable[..., OperatorThread],
    start_facade: Callable[..., FacadeThread],
) -> Stack:
    env = {"DATABASE_URL": database, "SCHEDULE_CHECK_INTERVAL": "1s"}
    operator = start_operator(clock=clock, **env)
    facade = start_facade(**env).mirrored()
    return Stack(facade.url, namespace, database, facade, facade.settings, operator)


@pytest.fixture
def terminals() -> Iterator[list[WebSocket]]:
    opened: list[WebSocket] = []
    yield opened
    for ws in opened:
        ws.close()


def phase(objects: Objects, name: str, wanted: str) -> None:
    objects.wait_phase(name, wanted, TIMEOUT)


def test_many_users_fairly(
    clocked_stack: Stack, api: client.ApiClient, clock: Clock, terminals: list[WebSocket]
) -> None:
    stack = clocked_stack
    objects = Objects(api, stack.namespace)
    objects.create("templates", "firefox", TEMPLATE)
    alice, bob = stack.client("alice"), stack.client("bob")
    began = datetime.now(UTC)

    # a quota of two running sessions for alice, as a cluster-admin applies it
    objects.create("sessionquotas", "alice", {"users": ["alice"], "limits": {"runningSessions": 2}})
    first = alice.post(SESSIONS, {"template": "firefox"}).body["id"]
    second = alice.post(SESSIONS, {"template": "firefox"}).body["id"]
    refused = alice.post(SESSIONS, {"template": "firefox"})
    assert refused.status == 403 and refused.body["code"] == "QUOTA_EXCEEDED", refused
    assert refused.body["details"]["allowed"] == 2
    # ... and over kubectl: the third waits Pending, said so, with no workload
    objects.create("sessions", "alice-kubectl", {"user": "alice", "template": "firefox"})
    phase(objects, first, "Running")
    phase(objects, second, "Running")
    assert wait_until(lambda: objects.events("alice-kubectl", "QuotaExceeded"), TIMEOUT)
    assert objects.status("alice-kubectl")["phase"] == "Pending"
    assert alice.get("/api/v1/me").body["quota"]["used"]["runningSessions"] == 2

    # sharing: bob sees and connects to the first session, and not once it is revoked
    shared = f"{SESSIONS}/{first}"
    assert bob.get(shared).status == 404
    assert alice.post(f"{shared}/shares", {"user": "bob", "access": "control"}).status == 200
    listed = {s["id"]: s["access"] for s in bob.get(SESSIONS).body["sessions"]}
    assert listed == {first: "control"}
    connected = bob.get(f"{shared}/connect")
    assert connected.status == 200, connected
    assert alice.delete(f"{shared}/shares/bob").status == 204
    assert bob.get(f"{shared}/connect").status == 404
    assert objects.get("connections", connected.body["connectionId"]) is None

    # a terminal in the first session's pod
    pod = alice.get(shared).body["podName"]
    url = f"{stack.url}/api/v1/ws/exec/{stack.namespace}/{pod}?tty=false"
    terminal = WebSocket(url, token=token("alice"))
    terminals.append(terminal)
    terminal.open()
    terminal.send({"type": "stdin", "data": "echo walkthrough-$((40 + 2))\n"})
    assert "walkthrough-42" in output(terminal, "walkthrough-42")
    terminal.send({"type": "stdin", "data": "exit\n"})
    assert exit_of(terminal)["code"] == 0

    # a schedule two minutes ahead; room is made first (the kubectl session is removed and the
    # second hibernated), else the start would wait for the quota like any other
    objects.custom.delete_namespaced_custom_object(
        "stream.space", "v1alpha1", stack.namespace, "sessions", "alice-kubectl"
    )
    assert alice.patch(f"{SESSIONS}/{second}", {"state": "hibernated"}).status == 200
    now = clock()
    start, stop = now + timedelta(minutes=2), now + timedelta(minutes=4)
    schedule = {
        "start": f"{start.minute} {start.hour} * * *",
        "stop": f"{stop.minute} {stop.hour} * * *",
        "timeZone": "UTC",
    }
    made = alice.post(
        SESSIONS, {"template": "firefox", "state": "hibernated", "schedule": schedule}
    )
    assert made.status == 201, made
    planned = made.body["id"]
    phase(objects, planned, "Hibernated")
    assert wait_until(lambda: objects.status(planned).get("nextStart"), TIMEOUT)
    clock.set(timestamp(start.replace(second=1)))
    phase(objects, planned, "Running")
    assert objects.events(planned, "ScheduledStart")
    clock.set(timestamp(stop.replace(second=1)))
    phase(objects, planned, "Hibernated")
    assert objects.events(planned, "ScheduledStop")

    # usage: alice's running hours are there, bob (who ran nothing of his own) has none
    report = stack.client("root", "admin").get(
        f"/api/v1/analytics/usage?from={timestamp(began - timedelta(minutes=1))}&groupBy=user"
    )
    assert report.status == 200, report
    by_user = {row["key"]: row for row in report.body["items"]}
    elapsed = (datetime.now(UTC) - began).total_seconds() / 3600
    assert set(by_user) == {"alice"}
    # three sessions ran at most for the whole test each; each ran for a moment at least
    assert 0 < by_user["alice"]["runningHours"] <= 3 * elapsed + 0.001
    assert by_user["alice"]["cpuHours"] > 0 and by_user["alice"]["hibernatedHours"] > 0
