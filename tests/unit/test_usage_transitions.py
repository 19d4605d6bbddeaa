"""Which session row changes become usage history rows (``streamspace.db.usage``), pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streamspace.db.usage import requested, transitions

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
T1 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def row(phase: str | None, requests: dict[str, Any] | None = None, **times: Any) -> dict[str, Any]:
    return {"uid": "u1", "namespace": "ns", "id": "s1", "user_id": "alice",
            "template_name": "firefox", "phase": phase, "requests": requests or {},
            "created_at": T0, "started_at": None, "hibernated_at": None, **times}  # fmt: skip


def phases(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[tuple[str, Any]]:
    return [(t["phase"], t["at"]) for t in transitions([(old, new)])]


def test_a_new_session_starts_its_history_at_its_creation() -> None:
    assert phases(None, row(None)) == [("Pending", T0)]


def test_running_and_hibernated_take_the_time_the_status_gives() -> None:
    assert phases(row("Pending"), row("Running", started_at=T1)) == [("Running", T1)]
    assert phases(row("Running"), row("Hibernated", hibernated_at=T1)) == [("Hibernated", T1)]
    assert phases(row("Running"), row("Terminated")) == [("Terminated", None)]  # now()
    assert phases(row("Running"), None) == [("Deleted", None)]


def test_other_changes_write_nothing_but_a_resize_while_running_does() -> None:
    assert phases(row("Running"), row("Running")) == []
    assert phases(row("Hibernated"), row("Hibernated")) == []
    small, big = {"cpu": "1"}, {"cpu": "2"}
    assert phases(row("Running", small), row("Running", small)) == []
    assert [
        t["cpu_millis"] for t in transitions([(row("Running", small), row("Running", big))])
    ] == [2000]


@pytest.mark.parametrize(
    ("requests", "expected"),
    [
        ({"cpu": "500m", "memory": "2Gi"}, (500, 2 * 1024**3, 0)),
        ({"cpu": 2, "memory": "1G", "nvidia.com/gpu": "1"}, (2000, 10**9, 1)),
        ({"cpu": "nonsense"}, (0, 0, 0)),
        ({}, (0, 0, 0)),
    ],
)
def test_requests_become_millicores_bytes_and_gpus(
    requests: dict[str, Any], expected: tuple[int, int, int]
) -> None:
    assert requested(requests) == expected


def test_requests_of_a_session_not_running_count_nothing() -> None:
    [hibernated] = transitions([(row("Running", {"cpu": "1"}), row("Hibernated", {"cpu": "1"}))])
    assert (hibernated["cpu_millis"], hibernated["memory_bytes"]) == (0, 0)
