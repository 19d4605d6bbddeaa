"""Schedules meet quotas (issue 19 items 2 and 4): a scheduled start over the owner's running
quota sets the session running as its schedule says, but the operator holds it Pending with
QuotaExceeded and gives it no workload; it starts as soon as room frees up. Real API server;
the operator's clock is moved by the test instead of waiting for the cron's minute."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_schedules import FAST, TIMEOUT, condition, objects

from clock_testing import Clock
from streamspace_dev.process import wait_until
from streamspace_testing import Objects

pytestmark = pytest.mark.integration

__all__ = ["objects"]  # the fixture, shared with test_schedules


def replicas(objects: Objects, session: str) -> int:
    deployment = objects.deployment(session)
    return 0 if deployment is None else int(deployment.spec.replicas or 0)


def test_a_scheduled_start_over_the_running_quota_waits_for_room(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    clock = Clock("2026-12-03T07:59:00Z")
    start_operator(clock=clock, **FAST)
    objects.create("sessionquotas", "alice", {"users": ["alice"], "limits": {"runningSessions": 1}})
    objects.create("sessions", "alice-first", {"user": "alice", "template": "firefox"})
    assert wait_until(lambda: condition(objects, "alice-first", "QuotaExceeded").get("status")
                      in (None, "False"), TIMEOUT)  # fmt: skip
    schedule = {"start": "0 8 * * *", "timeZone": "UTC"}
    objects.create(
        "sessions",
        "alice-morning",
        {"user": "alice", "template": "firefox", "state": "hibernated", "schedule": schedule},
    )
    assert wait_until(lambda: objects.status("alice-morning").get("nextStart"), TIMEOUT)

    clock.set("2026-12-03T08:00:01Z")
    assert wait_until(lambda: objects.spec("alice-morning")["state"] == "running", TIMEOUT)
    assert wait_until(lambda: objects.events("alice-morning", "ScheduledStart"), TIMEOUT)
    # over the quota: held, no workload, said so
    assert wait_until(
        lambda: condition(objects, "alice-morning", "QuotaExceeded").get("status") == "True",
        TIMEOUT,
    ), objects.status("alice-morning")
    assert objects.status("alice-morning")["phase"] == "Pending"
    assert wait_until(lambda: objects.events("alice-morning", "QuotaExceeded"), TIMEOUT)
    assert replicas(objects, "alice-morning") == 0
    assert condition(objects, "alice-first", "QuotaExceeded").get("status") in (None, "False")

    # room frees up: the scheduled session is released
    objects.set_state("alice-first", "hibernated")
    assert wait_until(
        lambda: condition(objects, "alice-morning", "QuotaExceeded").get("status") == "False",
        TIMEOUT,
    ), objects.status("alice-morning")
    assert wait_until(lambda: replicas(objects, "alice-morning") == 1, TIMEOUT)
