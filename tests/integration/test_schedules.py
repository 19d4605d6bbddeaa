"""Scheduled sessions against the real API server: the operator's schedule timer (with a clock
the test moves instead of waiting for a cron's minute), the CRD's validation, and the REST API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clock_testing import Clock, at
from streamspace.decisions import decision_of
from streamspace.schedules import FIRED_ANNOTATION, schedule_problems
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = pytest.mark.integration

TIMEOUT = 30
FAST = {"SCHEDULE_CHECK_INTERVAL": "1s", "RECONCILE_INTERVAL": "2s"}


@pytest.fixture
def objects(cluster: Any, api: client.ApiClient, namespace: str) -> Objects:
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    return objects


def condition(objects: Objects, name: str, kind: str) -> dict[str, Any]:
    conditions = objects.status(name).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def wait_status(objects: Objects, name: str, **wanted: Any) -> dict[str, Any]:
    def reached() -> bool:
        status = objects.status(name)
        return all(status.get(k) == v for k, v in wanted.items())

    assert wait_until(reached, TIMEOUT), f"{name}: {objects.status(name)} never had {wanted}"
    return objects.status(name)


def test_scheduled_start_and_stop_fire_on_the_moved_clock_and_leave_users_decisions_be(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    # the night Berlin springs forward: 02:30 does not exist, the start fires at 03:00 CEST
    clock = Clock("2026-03-29T00:59:00Z")
    start_operator(clock=clock, **FAST)
    schedule = {"start": "30 2 * * *", "stop": "0 4 * * *", "timeZone": "Europe/Berlin"}
    objects.create(
        "sessions",
        "alice-lab",
        {"user": "alice", "template": "firefox", "state": "hibernated", "schedule": schedule},
    )
    wait_status(
        objects, "alice-lab", nextStart="2026-03-29T01:00:00Z", nextStop="2026-03-29T02:00:00Z"
    )
    scheduled = condition(objects, "alice-lab", "Scheduled")
    assert scheduled["status"] == "True" and scheduled["reason"] == "Scheduled"
    assert objects.spec("alice-lab")["state"] == "hibernated"  # nothing due yet

    clock.set("2026-03-29T01:00:02Z")
    assert wait_until(lambda: objects.spec("alice-lab")["state"] == "running", TIMEOUT)
    wait_status(objects, "alice-lab", nextStart="2026-03-30T00:30:00Z")
    session = objects.session("alice-lab") or {}
    # recorded as the operator's decision, with its fire time, in the one write
    assert decision_of(session).who == "schedule"
    assert session["metadata"]["annotations"][FIRED_ANNOTATION] == "start:2026-03-29T01:00:00Z"
    assert wait_until(lambda: objects.events("alice-lab", "ScheduledStart"), TIMEOUT)
    [event] = objects.events("alice-lab", "ScheduledStart")
    assert "2026-03-29T01:00:00Z" in event.message and "running" in event.message

    # the user's own decision stands until the next scheduled time: hibernated by hand, the
    # session is not started again, and the stop finds nothing to do
    objects.set_state("alice-lab", "hibernated")
    clock.set("2026-03-29T02:00:01Z")
    wait_status(objects, "alice-lab", nextStop="2026-03-30T02:00:00Z")
    assert objects.spec("alice-lab")["state"] == "hibernated"
    assert objects.events("alice-lab", "ScheduledStop") == []
    # woken by hand, it runs through the next start (nothing to do) until the next stop
    objects.set_state("alice-lab", "running")
    clock.set("2026-03-30T00:30:01Z")
    wait_status(objects, "alice-lab", nextStart="2026-03-31T00:30:00Z")
    assert objects.spec("alice-lab")["state"] == "running"
    clock.set("2026-03-30T02:00:01Z")
    assert wait_until(lambda: objects.spec("alice-lab")["state"] == "hibernated", TIMEOUT)
    wait_status(objects, "alice-lab", nextStop="2026-03-31T02:00:00Z")
    assert wait_until(lambda: objects.events("alice-lab", "ScheduledStop"), TIMEOUT)
    [stop] = objects.events("alice-lab", "ScheduledStop")
    assert "2026-03-30T02:00:00Z" in stop.message
    assert len(objects.events("alice-lab", "ScheduledStart")) == 1  # each fire once

    # a schedule removed: its times and condition go with it
    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "alice-lab", {"spec": {"schedule": None}}
    )
    assert wait_until(
        lambda: (
            not {"nextStart", "nextStop"} & set(objects.status("alice-lab"))
            and not condition(objects, "alice-lab", "Scheduled")
        ),
        TIMEOUT,
    ), objects.status("alice-lab")


def test_a_start_does_not_revive_a_terminated_session(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    clock = Clock("2026-11-28T07:59:00Z")
    start_operator(clock=clock, **FAST)
    objects.create(
        "sessions",
        "alice-done",
        {
            "user": "alice",
            "template": "firefox",
            "state": "terminated",
            "schedule": {"start": "0 8 * * *"},
        },
    )
    wait_status(objects, "alice-done", nextStart="2026-11-28T08:00:00Z")
    clock.set("2026-11-28T08:00:01Z")
    wait_status(objects, "alice-done", nextStart="2026-11-29T08:00:00Z")  # the fire passed
    assert objects.spec("alice-done")["state"] == "terminated"
    assert objects.events("alice-done", "ScheduledStart") == []


def test_a_kubectl_schedule_the_schema_cannot_judge_gets_a_condition_and_an_event(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator(**FAST)
    bad = {"start": "61 8 * * *", "stop": "0 18 * * *", "timeZone": "Mars/Olympus_Mons"}
    objects.create(
        "sessions", "alice-bad", {"user": "alice", "template": "firefox", "schedule": bad}
    )
    assert wait_until(
        lambda: condition(objects, "alice-bad", "Scheduled").get("reason") == "ScheduleInvalid",
        TIMEOUT,
    ), objects.status("alice-bad")
    message = condition(objects, "alice-bad", "Scheduled")["message"]
    assert "spec.schedule.start: invalid cron expression '61 8 * * *'" in message
    assert "spec.schedule.timeZone: unknown time zone 'Mars/Olympus_Mons'" in message
    assert wait_until(lambda: objects.events("alice-bad", "ScheduleInvalid"), TIMEOUT)
    status = objects.status("alice-bad")
    assert "nextStart" not in status and "nextStop" not in status


def test_the_example_is_accepted_and_valid(objects: Objects) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "scheduled-session.yaml"
    doc = yaml.safe_load(example.read_text())
    doc["metadata"].pop("namespace")
    created = objects.custom.create_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", doc
    )
    assert created["spec"]["schedule"] == doc["spec"]["schedule"]
    assert schedule_problems(created["spec"]["schedule"]) == {}


@pytest.mark.parametrize(
    ("schedule", "field", "text"),
    [
        ({}, "spec.schedule", "a schedule needs start, stop or both"),
        ({"timeZone": "UTC"}, "spec.schedule", "a schedule needs start, stop or both"),
        ({"start": "every day at eight"}, "spec.schedule.start", "should match"),
        ({"stop": "0 8 * * * *"}, "spec.schedule.stop", "should match"),
        ({"start": "0 8 * * *", "timeZone": "../etc/x"}, "spec.schedule.timeZone", "should match"),
    ],
)
def test_the_api_server_rejects_what_the_schema_can_judge(
    objects: Objects, schedule: dict[str, Any], field: str, text: str
) -> None:
    with pytest.raises(ApiException) as refused:
        objects.create(
            "sessions", "alice-x", {"user": "alice", "template": "firefox", "schedule": schedule}
        )
    assert refused.value.status == 422
    assert field in str(refused.value.body) and text in str(refused.value.body)


def test_schedules_over_rest(stack: Any, api: client.ApiClient) -> None:
    Objects(api, stack.namespace).create("templates", "firefox", TEMPLATE)
    alice, bob = stack.client("alice"), stack.client("bob")
    schedule = {"start": "0 8 * * 1-5", "stop": "0 18 * * 1-5", "timeZone": "Europe/Berlin"}
    created = alice.post("/api/v1/sessions", {"template": "firefox", "schedule": schedule})
    assert created.status == 201, created
    sid = created.body["id"]
    assert created.body["schedule"] == schedule
    path = f"/api/v1/sessions/{sid}"

    def times() -> tuple[Any, Any]:
        body = alice.get(path).body
        return body["nextStart"], body["nextStop"]

    assert wait_until(lambda: all(times()), TIMEOUT), alice.get(path).body
    next_start, next_stop = (at(t) for t in times())
    now = datetime.now(next_start.tzinfo)
    assert now < next_start <= now + timedelta(days=4) and now < next_stop
    assert next_start.minute == 0 and next_start.hour in (6, 7)  # 08:00 CEST or CET in UTC
    # a list (rendered by PostgreSQL from the mirror, which follows the watch) comes to say
    # what a GET (the object itself) says
    scheduling = ("schedule", "nextStart", "nextStop")

    def listed_as_got() -> bool:
        [listed] = alice.get("/api/v1/sessions").body["sessions"]
        single = alice.get(path).body
        assert set(listed) == set(single)
        return [listed[k] for k in scheduling] == [single[k] for k in scheduling]

    assert wait_until(listed_as_got, TIMEOUT), alice.get("/api/v1/sessions").body
    assert alice.get("/api/v1/sessions").body["sessions"][0]["schedule"] == schedule

    # bad input: 422 with the field path, nothing changed
    for bad, field in (
        ({"start": "0 25 * * *"}, "schedule.start"),
        ({"stop": "0 8 * *"}, "schedule.stop"),
        ({"start": "0 8 * * *", "timeZone": "Atlantis/Capital"}, "schedule.timeZone"),
        ({}, "schedule"),
        ({"start": "0 8 * * *", "every": "day"}, "schedule"),
    ):
        refused = alice.patch(path, {"schedule": bad})
        assert refused.status == 422, refused
        assert field in refused.body["details"]["fields"], refused.body
    refused = alice.post("/api/v1/sessions", {"template": "firefox", "schedule": {"start": "x"}})
    assert refused.status == 422 and "schedule.start" in refused.body["details"]["fields"]

    # attack: bob sets a schedule on alice's session: 404, as for any session not his
    hijack = bob.patch(path, {"schedule": {"stop": "* * * * *"}})
    assert hijack.status == 404, hijack
    assert alice.get(path).body["schedule"] == schedule

    # a PATCH replaces the whole schedule; null removes it
    replaced = alice.patch(path, {"schedule": {"stop": "30 17 * * *"}})
    assert replaced.status == 200, replaced
    assert replaced.body["schedule"] == {"stop": "30 17 * * *", "timeZone": "UTC"}
    assert wait_until(lambda: times()[0] is None and times()[1] is not None, TIMEOUT)
    assert at(times()[1]).strftime("%H:%M") == "17:30"
    removed = alice.patch(path, {"schedule": None})
    assert removed.status == 200 and removed.body["schedule"] is None
    assert wait_until(lambda: times() == (None, None), TIMEOUT)
