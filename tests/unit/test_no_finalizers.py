"""The operator's registry asks Kopf for no finalizer (decision 91): not for a deletion handler,
not for a timer. Kopf has no public switch for timers, so this also catches a Kopf release that
changes how ``streamspace_operator.timers`` turns it off."""

from __future__ import annotations

import pytest

from streamspace.config import load_settings
from streamspace_operator.handlers import build_registry
from streamspace_operator.timers import alive, finalizing_handlers

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
        "sync_due",
        "plugin_drift",
    }
    assert all(t.when is alive for t in timers)
