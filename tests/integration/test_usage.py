"""The usage report (issue 19) from the mirror's history, through the real facade, PostgreSQL and
API server. Session phases are written with the status subresource, as the operator writes
them, with ``startedAt``/``hibernatedAt`` chosen by the test, so the hours are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from facade_testing import Client, FacadeThread, token
from streamspace.conditions import timestamp
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, VERSION, Objects

pytestmark = pytest.mark.integration

USAGE = "/api/v1/analytics/usage"


@pytest.fixture
def url(start_facade: Callable[..., FacadeThread], database: str) -> str:
    return start_facade(DATABASE_URL=database).mirrored().url


def set_status(objects: Objects, name: str, status: dict[str, Any]) -> None:
    objects.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, objects.ns, "sessions", name, {"status": status}
    )


def transitions(database: str, name: str) -> list[str]:
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT phase FROM session_transitions WHERE session_id = %s ORDER BY at, id", (name,)
        ).fetchall()
    return [r[0] for r in rows]


def test_hours_follow_the_transitions_and_prices_make_a_cost(
    url: str, api: Any, namespace: str, database: str
) -> None:
    objects = Objects(api, namespace)
    made = objects.create("sessions", "alice-a", {"user": "alice", "template": "firefox"})
    created = datetime.fromisoformat(made["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    objects.create("sessions", "bob-b", {"user": "bob", "template": "gimp"})
    start = created + timedelta(minutes=1)
    sized = {"requests": {"cpu": "500m", "memory": "2Gi", "nvidia.com/gpu": "1"}}
    # alice: running 30 minutes (0.5 CPU, 2 GiB, 1 GPU), then hibernated
    set_status(objects, "alice-a", {"phase": "Running", "startedAt": timestamp(start),
                                     "resources": sized})  # fmt: skip
    set_status(objects, "alice-a", {"phase": "Hibernated",
                                     "hibernatedAt": timestamp(start + timedelta(minutes=30))})  # fmt: skip
    # bob: hibernated 15 minutes, then running (no requests reported)
    set_status(objects, "bob-b", {"phase": "Hibernated", "hibernatedAt": timestamp(start)})
    set_status(objects, "bob-b", {"phase": "Running",
                                  "startedAt": timestamp(start + timedelta(minutes=15))})  # fmt: skip
    for name in ("alice-a", "bob-b"):
        objects.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "sessions", name)
    assert wait_until(lambda: transitions(database, "alice-a")[-1:] == ["Deleted"], 30)
    assert wait_until(lambda: transitions(database, "bob-b")[-1:] == ["Deleted"], 30)
    assert transitions(database, "alice-a") == ["Pending", "Running", "Hibernated", "Deleted"]

    window = f"from={timestamp(created)}&to={timestamp(start + timedelta(hours=1))}"
    olga = Client(url, token("olga", "operator"))
    report = olga.get(f"{USAGE}?{window}&groupBy=user&cpuHourPrice=0.04&gpuHourPrice=2")
    assert report.status == 200, report
    by_user = {i["key"]: i for i in report.body["items"]}
    alice, bob = by_user["alice"], by_user["bob"]
    assert alice["runningHours"] == 0.5 and alice["hibernatedHours"] == 0
    assert alice["cpuHours"] == 0.25 and alice["memoryGiBHours"] == 1.0
    assert alice["gpuHours"] == 0.5
    assert alice["cost"] == 0.25 * 0.04 + 0.5 * 2
    assert bob["hibernatedHours"] == 0.25 and bob["runningHours"] == 0 and bob["cost"] == 0
    assert report.body["totals"]["runningHours"] == 0.5
    assert report.body["prices"] == {"cpuHourPrice": 0.04, "gpuHourPrice": 2.0}

    by_template = olga.get(f"{USAGE}?{window}&groupBy=template").body["items"]
    assert {i["key"]: i["runningHours"] for i in by_template} == {"firefox": 0.5, "gimp": 0}
    assert "cost" not in by_template[0]
    # a window that ends a quarter of an hour into alice's running time counts only that
    early = f"from={timestamp(created)}&to={timestamp(start + timedelta(minutes=15))}"
    clipped = olga.get(f"{USAGE}?{early}&user=alice").body["items"]
    assert [(i["key"], i["runningHours"]) for i in clipped] == [("alice", 0.25)]

    # a user sees only their own usage, whatever they ask for
    mine = Client(url, token("bob")).get(f"{USAGE}?{window}&user=alice")
    assert mine.status == 200, mine
    assert [i["key"] for i in mine.body["items"]] == ["bob"]


def test_bad_report_queries_are_422_with_the_field(url: str) -> None:
    alice = Client(url, token("alice"))
    for query, field in (
        ("groupBy=colour", "query.groupBy"),
        ("from=yesterday", "query.from"),
        ("from=2026-12-01T00:00:00", "query.from"),
        ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "query.from"),
        ("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "query.from"),
        ("cpuHourPrice=-1", "query.cpuHourPrice"),
        ("memoryGiBHourPrice=NaN", "query.memoryGiBHourPrice"),
        ("gpuHourPrice=lots", "query.gpuHourPrice"),
    ):
        reply = alice.get(f"{USAGE}?{query}")
        assert reply.status == 422, (query, reply)
        assert field in reply.body["details"]["fields"], (query, reply.body)
