"""Connections, auto-start and auto-hibernation with short timeouts, on the full profile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from streamspace.conditions import parse_timestamp, timestamp
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = pytest.mark.e2e

FAST = {
    "STALE_AFTER": "2s",
    "HEARTBEAT_CHECK_INTERVAL": "1s",
    "IDLE_CHECK_INTERVAL": "1s",
    "HIBERNATE_WARNING": "2s",
}
# Waking takes a few seconds on a loaded machine; connections without heartbeats must not go
# stale meanwhile in the tests that are about waking, not staleness.
WAKE = {**FAST, "STALE_AFTER": "60s"}


@pytest.fixture
def objects(full_cluster: Any, api: client.ApiClient, namespace: str) -> Objects:
    objs = Objects(api, namespace)
    objs.create("templates", "firefox", TEMPLATE)
    return objs


def connect(objects: Objects, name: str, session: str, user: str = "alice") -> None:
    objects.create("connections", name, {"session": session, "user": user, "clientIP": "10.1.2.3"})


def connection(objects: Objects, name: str) -> dict[str, Any] | None:
    return objects.get("connections", name)


def heartbeat(objects: Objects, name: str) -> None:
    objects.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, objects.ns, "connections", name,
        {"status": {"lastHeartbeat": timestamp(datetime.now(UTC))}},
    )  # fmt: skip


def hibernation_requested(objects: Objects, name: str, latest: datetime) -> datetime:
    """When the session's spec.state left ``running`` (watched closely), failing after ``latest``."""
    remaining = max(0.0, (latest - datetime.now(UTC)).total_seconds())
    left = wait_until(lambda: objects.spec(name)["state"] != "running", remaining, interval=0.05)
    assert left, f"{name} was not hibernated by {latest}"
    return datetime.now(UTC)


def test_connect_wakes_a_hibernated_session(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator(**WAKE)
    objects.create(
        "sessions", "s1", {"user": "alice", "template": "firefox", "state": "hibernated"}
    )
    objects.wait_phase("s1", "Hibernated")
    connect(objects, "c1", "s1")
    status = objects.wait_phase("s1", "Running")
    assert objects.spec("s1")["state"] == "running"
    conn = connection(objects, "c1")
    assert conn is not None
    assert conn["metadata"]["ownerReferences"][0]["name"] == "s1"
    assert conn["status"]["state"] == "active" and conn["status"]["connectedAt"]
    assert wait_until(lambda: objects.status("s1").get("activeConnections") == 1, 10)
    assert "idleDeadline" not in objects.status("s1")
    assert status["phase"] == "Running"
    woken = objects.events("s1", "Woken")
    assert len(woken) == 1 and "(Connect)" in woken[0].message
    # The cause annotation was consumed.
    meta = objects.get("sessions", "s1")["metadata"]  # type: ignore[index]
    assert "stream.space/state-cause" not in (meta.get("annotations") or {})


def test_concurrent_connects_wake_once(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator(**WAKE)
    objects.create(
        "sessions", "s2", {"user": "alice", "template": "firefox", "state": "hibernated"}
    )
    objects.wait_phase("s2", "Hibernated")
    with ThreadPoolExecutor(max_workers=5) as pool:
        list(pool.map(lambda i: connect(objects, f"c2-{i}", "s2"), range(5)))
    objects.wait_phase("s2", "Running")
    assert wait_until(lambda: objects.status("s2").get("activeConnections") == 5, 20)
    assert len(objects.events("s2", "Woken")) == 1
    assert wait_until(
        lambda: all(
            (connection(objects, f"c2-{i}") or {}).get("status", {}).get("state") == "active"
            for i in range(5)
        ),
        20,
    )


def test_connections_to_missing_or_terminated_sessions_are_rejected(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator(**FAST)
    objects.create(
        "sessions", "done", {"user": "alice", "template": "firefox", "state": "terminated"}
    )
    objects.wait_phase("done", "Terminated")
    statuses: dict[str, list[dict[str, Any]]] = {"c-missing": [], "c-done": []}
    stream = watch.Watch()

    def record() -> None:
        for event in stream.stream(
            objects.custom.list_namespaced_custom_object, GROUP, VERSION, objects.ns,
            "connections", timeout_seconds=30,
        ):  # fmt: skip
            obj = event["object"]
            statuses[obj["metadata"]["name"]].append(obj.get("status") or {})
            if event["type"] == "DELETED" and obj["metadata"]["name"] == "c-done":
                stream.stop()

    watcher = threading.Thread(target=record)
    watcher.start()
    connect(objects, "c-missing", "no-such-session")
    connect(objects, "c-done", "done")
    watcher.join(30)
    assert wait_until(
        lambda: connection(objects, "c-missing") is None and connection(objects, "c-done") is None,
        20,
    )
    rejected = {
        name: next(s for s in seen if s.get("state") == "rejected")
        for name, seen in statuses.items()
    }
    assert "'no-such-session' is not found" in rejected["c-missing"]["message"]
    assert "'done' is terminated" in rejected["c-done"]["message"]
    assert objects.spec("done")["state"] == "terminated"  # not woken


def test_heartbeats_keep_a_session_alive_then_stale_connections_go_and_it_sleeps(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator(**FAST)
    objects.create("sessions", "s3", {"user": "alice", "template": "firefox", "idleTimeout": "3s"})
    objects.wait_phase("s3", "Running")
    connect(objects, "c3", "s3")
    assert wait_until(lambda: objects.status("s3").get("activeConnections") == 1, 10)
    until = time.monotonic() + 8  # well past idleTimeout and STALE_AFTER
    while time.monotonic() < until:
        heartbeat(objects, "c3")
        assert objects.spec("s3")["state"] == "running"
        assert "idleDeadline" not in objects.status("s3")
        time.sleep(0.5)  # the client's heartbeat cadence, not a wait for a condition
    # Heartbeats stop: the connection goes stale and is deleted, then the session hibernates.
    assert wait_until(lambda: connection(objects, "c3") is None, 10)
    objects.wait_phase("s3", "Hibernated", timeout=20)
    assert wait_until(lambda: objects.events("s3", "Hibernated"), 10)  # posted after the status
    hibernated = objects.events("s3", "Hibernated")
    assert len(hibernated) == 1 and "(Idle)" in hibernated[0].message
    assert objects.status("s3")["activeConnections"] == 0


def test_idle_sessions_hibernate_within_the_window_and_never_before(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator(**FAST)
    objects.create("sessions", "s4", {"user": "alice", "template": "firefox", "idleTimeout": "4s"})
    objects.wait_phase("s4", "Running")
    assert wait_until(lambda: "idleDeadline" in objects.status("s4"), 10)
    deadline = parse_timestamp(objects.status("s4")["idleDeadline"])
    assert deadline is not None
    changed = hibernation_requested(objects, "s4", deadline + timedelta(seconds=3))
    assert changed >= deadline, f"hibernated {deadline - changed} before the deadline"
    assert objects.events("s4", "IdleWarning"), "no warning before hibernation"
    objects.wait_phase("s4", "Hibernated")


def test_a_manual_state_change_wins_over_a_racing_timer(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    """The timer read the session, then its user changed it: the timer's write must fail."""
    from streamspace_operator import connections  # noqa: PLC0415
    from streamspace_operator.context import Context  # noqa: PLC0415
    from streamspace_operator.kube import Kube  # noqa: PLC0415

    operator = start_operator(**{**FAST, "IDLE_CHECK_INTERVAL": "1h"})  # no timer of its own
    objects.create("sessions", "s5", {"user": "alice", "template": "firefox", "idleTimeout": "1s"})
    started = parse_timestamp(objects.wait_phase("s5", "Running")["startedAt"])
    assert started is not None
    assert wait_until(lambda: datetime.now(UTC) > started + timedelta(seconds=1.5), 5)  # idle

    class UserRacesTheTimer(Kube):
        async def get_custom(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
            body = await super().get_custom(kind, namespace, name)
            objects.set_state("s5", "terminated")  # the user, right after the timer's read
            return body

    async def race() -> None:
        from streamspace_operator.kube import connect as connect_api  # noqa: PLC0415

        api = await connect_api(str(operator.settings.kubernetes.kubeconfig))
        ctx = Context(operator.settings, kube=UserRacesTheTimer(api))
        try:
            await connections._hibernate_if_still_idle(ctx, objects.ns, "s5", {})  # type: ignore[arg-type]
        finally:
            await api.close()

    import asyncio  # noqa: PLC0415

    asyncio.run(race())
    assert objects.spec("s5")["state"] == "terminated"
    objects.wait_phase("s5", "Terminated")
    assert objects.events("s5", "Hibernated") == []


def test_operator_restart_keeps_the_deadline_and_hibernates_once(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    first = start_operator(**FAST)
    objects.create("sessions", "s6", {"user": "alice", "template": "firefox", "idleTimeout": "6s"})
    objects.wait_phase("s6", "Running")
    assert wait_until(lambda: "idleDeadline" in objects.status("s6"), 10)
    deadline = parse_timestamp(objects.status("s6")["idleDeadline"])
    assert deadline is not None
    first.stop()
    start_operator(**FAST)
    assert hibernation_requested(objects, "s6", deadline + timedelta(seconds=5)) >= deadline
    objects.wait_phase("s6", "Hibernated")
    # The Event is posted right after the status that shows the phase.
    assert wait_until(lambda: len(objects.events("s6", "Hibernated")) >= 1, 10)
    assert len(objects.events("s6", "Hibernated")) == 1


def test_deleting_a_session_deletes_its_connections(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator(**FAST)
    objects.create("sessions", "s7", {"user": "alice", "template": "firefox"})
    objects.wait_phase("s7", "Running")
    connect(objects, "c7", "s7")
    assert wait_until(
        lambda: ((connection(objects, "c7") or {}).get("metadata") or {}).get("ownerReferences"),
        10,
    )
    objects.custom.delete_namespaced_custom_object(GROUP, VERSION, objects.ns, "sessions", "s7")
    assert wait_until(lambda: connection(objects, "c7") is None, 60)


def test_heartbeat_status_patch_is_rejected_for_bad_values(objects: Objects) -> None:
    connect(objects, "c8", "whatever")
    with pytest.raises(ApiException) as caught:
        objects.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, objects.ns, "connections", "c8", {"status": {"state": "zombie"}}
        )
    assert caught.value.status == 422
