"""The operator's registry asks Kopf for no finalizer (decision 91): not for a deletion handler,
not for a timer. Kopf has no public switch for timers, so this also catches a Kopf release that
changes how ``streamspace_operator.timers`` turns it off."""

from __future__ import annotations

import kopf
import pytest

from streamspace.config import load_settings
from streamspace_operator.handlers import build_registry
from streamspace_operator.timers import GONE, alive_and, finalizing_handlers, stops_on_deletion

pytestmark = pytest.mark.unit


def test_no_handler_makes_kopf_put_a_finalizer() -> None:
    registry = build_registry(load_settings({}))
    assert finalizing_handlers(registry) == []


def test_every_timer_stops_once_its_object_is_deleted() -> None:
    registry = build_registry(load_settings({}))
    timers = list(registry._spawning.get_all_handlers())
    assert {t.id for t in timers} == {
        "session_drift",
        "stale_check",
        "idle_check",
        "schedule_check",
        "sync_due",
        "plugin_drift",
    }
    assert all(stops_on_deletion(t.when) for t in timers)


def test_a_timer_with_a_filter_of_its_own_stops_on_deletion_too() -> None:
    scheduled = alive_and(lambda spec, **_: bool(spec.get("schedule")))
    assert scheduled(memo=kopf.Memo(), spec={"schedule": {"start": "0 8 * * *"}})
    assert not scheduled(memo=kopf.Memo(), spec={})
    assert not scheduled(memo=kopf.Memo({GONE: True}), spec={"schedule": {"start": "0 8 * * *"}})
