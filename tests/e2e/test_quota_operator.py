"""SessionQuota on the kubectl path: the real operator against the full-profile control plane
(kwok nodes). Sessions over the running quota stay Pending with QuotaExceeded and one Event,
and start by themselves, oldest first, when room frees up (issue 19, item 2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from kubernetes import client

from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, TEMPLATE, TIMEOUT, VERSION, Objects

pytestmark = pytest.mark.e2e

NAMES = [f"alice-{i}" for i in range(1, 6)]


@pytest.fixture
def objects(full_cluster: Any, api: client.ApiClient, namespace: str) -> Objects:
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    return objects


def quota_condition(objects: Objects, name: str) -> dict[str, Any] | None:
    conditions = objects.status(name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "QuotaExceeded"), None)


def is_held(objects: Objects, name: str) -> bool:
    found = quota_condition(objects, name)
    return found is not None and found["status"] == "True"


def phases(objects: Objects) -> dict[str, str | None]:
    return {name: objects.status(name).get("phase") for name in NAMES}


def set_quota(objects: Objects, name: str, limits: dict[str, Any]) -> None:
    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessionquotas", name, {"spec": {"limits": limits}}
    )


def test_kubectl_sessions_over_the_running_quota_wait_and_start_when_room_frees_up(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    objects.create("sessionquotas", "alice", {"users": ["alice"], "limits": {"runningSessions": 3}})
    start_operator()
    for name in NAMES:
        objects.create("sessions", name, {"user": "alice", "template": "firefox"})

    running = {"alice-1": "Running", "alice-2": "Running", "alice-3": "Running"}
    expected = {**running, "alice-4": "Pending", "alice-5": "Pending"}
    assert wait_until(lambda: phases(objects) == expected, TIMEOUT), phases(objects)
    assert wait_until(lambda: is_held(objects, "alice-4") and is_held(objects, "alice-5"), TIMEOUT)
    for name in ("alice-4", "alice-5"):
        held = quota_condition(objects, name)
        assert held is not None and held["reason"] == "QuotaExceeded"
        assert "runningSessions would be 4, allowed 3" in held["message"], held
        assert objects.deployment(name) is None  # no workload at all
        assert wait_until(lambda n=name: len(objects.events(n, "QuotaExceeded")) == 1, TIMEOUT)
    for name in running:
        assert quota_condition(objects, name) is None  # never held: no condition

    # a lowered quota stops nothing that runs (a session made after it shows it is in force)
    set_quota(objects, "alice", {"runningSessions": 1})
    objects.create("sessions", "alice-6", {"user": "alice", "template": "firefox"})

    def lowered() -> bool:
        held = quota_condition(objects, "alice-6")
        return held is not None and "would be 4, allowed 1" in held["message"]

    assert wait_until(lowered, TIMEOUT), objects.status("alice-6")
    assert phases(objects) == expected

    # room frees up: deleting one starts the oldest waiting one, and only that one
    set_quota(objects, "alice", {"runningSessions": 3})
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "alice-1"
    )
    objects.wait_phase("alice-4", "Running")
    freed = quota_condition(objects, "alice-4")
    assert freed is not None and freed["status"] == "False"
    assert is_held(objects, "alice-5") and objects.status("alice-5")["phase"] == "Pending"
    assert len(objects.events("alice-5", "QuotaExceeded")) == 1  # still one Event

    # hibernating one makes room for the oldest waiting one, alice-5, not alice-6
    objects.set_state("alice-2", "hibernated")
    objects.wait_phase("alice-5", "Running")
    assert objects.status("alice-2")["phase"] == "Hibernated"
    assert is_held(objects, "alice-6") and objects.deployment("alice-6") is None


def test_a_default_quota_holds_everyone_until_it_is_deleted(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    objects.create(
        "sessionquotas", "nobody-runs", {"default": True, "limits": {"runningSessions": 0}}
    )
    objects.create("sessionquotas", "bob", {"users": ["bob"], "limits": {"runningSessions": 1}})
    start_operator()
    objects.create("sessions", "carol-1", {"user": "carol", "template": "firefox"})
    objects.create("sessions", "bob-1", {"user": "bob", "template": "firefox"})
    objects.wait_phase("bob-1", "Running")  # bob's own quota wins over the default
    assert wait_until(lambda: is_held(objects, "carol-1"), TIMEOUT), objects.status("carol-1")
    assert objects.status("carol-1")["phase"] == "Pending"
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessionquotas", "nobody-runs"
    )
    objects.wait_phase("carol-1", "Running")


def test_a_group_quota_holds_the_group_on_the_kubectl_path(
    objects: Objects, start_operator: Callable[..., Any], database: str
) -> None:
    objects.create(
        "sessionquotas", "staff", {"groups": ["staff"], "limits": {"runningSessions": 1}}
    )
    start_operator(DATABASE_URL=database)  # applies the migrations at start

    def user_table() -> bool:
        with psycopg.connect(database, autocommit=True) as conn:
            return conn.execute("SELECT to_regclass('users') IS NOT NULL").fetchone() == (True,)

    assert wait_until(user_table, TIMEOUT)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO users (id, idp_groups) VALUES ('dave', '{staff}')")
    for name in ("dave-1", "dave-2"):
        objects.create("sessions", name, {"user": "dave", "template": "firefox"})
    objects.create("sessions", "erin-1", {"user": "erin", "template": "firefox"})
    objects.create("sessions", "erin-2", {"user": "erin", "template": "firefox"})
    objects.wait_phase("dave-1", "Running")
    assert wait_until(lambda: is_held(objects, "dave-2"), TIMEOUT), objects.status("dave-2")
    held = quota_condition(objects, "dave-2")
    assert held is not None and "SessionQuota staff" in held["message"]
    # erin is in no group: no quota selects her
    objects.wait_phase("erin-1", "Running")
    objects.wait_phase("erin-2", "Running")
