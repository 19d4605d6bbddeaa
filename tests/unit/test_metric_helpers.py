"""Metric helpers: bounded label values, the mirror's lag clock, the metrics port setting, the
asyncio task count."""

from __future__ import annotations

import asyncio
import math

import pytest

from streamspace.config import ConfigError, load_settings
from streamspace.runtime_metrics import asyncio_tasks, request_labels
from streamspace_facade.metrics import Pending
from streamspace_operator.metrics import phase_label, reason_label

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("phase", "label"),
    [
        ("Running", "Running"),
        ("Hibernated", "Hibernated"),
        (None, "Pending"),  # not reconciled yet
        ("running", "Unknown"),
        ("x" * 300, "Unknown"),
        (3, "Unknown"),
    ],
)
def test_phase_label_is_one_of_a_few(phase: object, label: str) -> None:
    assert phase_label(phase) == label


@pytest.mark.parametrize(
    ("cause", "reason"),
    [("Idle", "idle"), ("Connect", "connection"), (None, "manual"), ("made-up", "manual")],
)
def test_reason_label(cause: str | None, reason: str) -> None:
    assert reason_label(cause) == reason


@pytest.mark.parametrize(
    ("method", "status", "labels"),
    [
        ("get", 200, ("GET", "200")),
        ("PATCH", 409, ("PATCH", "409")),
        ("POST", None, ("POST", "error")),  # no answer
        ("GET", 0, ("GET", "error")),  # the client library's status for a TLS failure
        ("BREW", 418, ("other", "418")),
    ],
)
def test_kubernetes_request_labels(
    method: str, status: int | None, labels: tuple[str, str]
) -> None:
    assert request_labels(method, status) == labels


def test_asyncio_tasks_counts_the_running_loop() -> None:
    assert math.isnan(asyncio_tasks())  # no loop runs here

    async def main() -> tuple[float, float]:
        release = asyncio.Event()
        waiting = [asyncio.create_task(release.wait()) for _ in range(3)]
        await asyncio.sleep(0)
        during = asyncio_tasks()
        release.set()
        await asyncio.gather(*waiting)
        return during, asyncio_tasks()

    assert asyncio.run(main()) == (4.0, 1.0)  # main itself, and the three until released


def test_mirror_lag_is_the_age_of_the_oldest_pending_event() -> None:
    now = [100.0]
    pending = Pending(clock=lambda: now[0])
    assert pending.lag() == 0.0
    pending.start("sessions")
    now[0] = 101.0
    pending.start("connections")
    now[0] = 103.5
    assert pending.lag() == 3.5
    assert pending.done("sessions") == 3.5
    assert pending.lag() == 2.5
    assert pending.done("connections") == 2.5
    assert pending.lag() == 0.0


def test_metrics_port_zero_turns_the_endpoint_off() -> None:
    assert load_settings({}).metrics.port == 9090
    assert load_settings({"METRICS_PORT": "0"}).metrics.port == 0
    settings = load_settings({"METRICS_PORT": "19090", "METRICS_HOST": "127.0.0.1"})
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 19090)
    with pytest.raises(ConfigError):
        load_settings({"METRICS_PORT": "70000"})
    with pytest.raises(ConfigError):
        load_settings({"PORT": "0"})  # the facade's port has no "off"
