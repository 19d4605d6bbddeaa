"""The facade's own writes in quota checks: a Session it created counts before its watch shows
it, and stops counting once the watch has a copy as new, or after ``WRITTEN_TTL`` (one deleted
meanwhile never shows up). A narrow test with a fake Kubernetes list: the watch lag it covers
cannot be produced on demand by a real API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamspace.config import load_settings
from streamspace_facade import quotas
from streamspace_facade.state import Services

pytestmark = pytest.mark.unit


def session(name: str, version: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "resourceVersion": version}
    return {"metadata": meta, "spec": {"user": "alice", "template": "t"}}


class Listed:
    """What the API server lists (the watch's view), set by the test."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    async def list(self, kind: str, namespace: str) -> tuple[list[dict[str, Any]], str]:
        assert (kind, namespace) == ("Session", "ns")
        return list(self.items), "1"


def names(svc: Services) -> list[str]:
    found = asyncio.run(quotas.sessions_of(svc, "ns", "alice"))
    return sorted(s["metadata"]["name"] for s in found)


def test_written_sessions_count_until_the_watch_shows_them_or_they_expire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed = Listed()
    svc = Services(load_settings({}), kube=listed)
    clock = [100.0]
    monkeypatch.setattr(quotas, "clock", lambda: clock[0])
    quotas.remember(svc, session("a", "10"))
    quotas.remember(svc, session("b", "11"))
    assert names(svc) == ["a", "b"]  # not listed yet: counted from the writes
    listed.items = [session("a", "10")]
    assert names(svc) == ["a", "b"] and ("ns", "a") not in svc.quota_book.written
    clock[0] += quotas.WRITTEN_TTL + 1  # b was deleted before the watch ever showed it
    assert names(svc) == ["a"] and svc.quota_book.written == {}
