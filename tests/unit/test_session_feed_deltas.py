"""``SessionFeed`` deltas for a change the API server refuses today: a session's owner changing
under the same uid (``spec.user`` is immutable by CEL, but a CRD without the rule, or a future
one, would allow it). The one who lost it must see it removed, the new owner upserted.

The integration tests (tests/integration/test_ws_delta.py) cover everything the real API server
can produce; this covers only the feed's arithmetic for this case.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from streamspace_facade.live import SessionFeed
from streamspace_facade.principal import Principal

pytestmark = pytest.mark.unit


class Listener:
    def __init__(self, user: str, role: str = "user") -> None:
        self.principal = Principal(user, role)
        self.received: list[dict[str, Any]] = []
        self.taken = 0
        self.arrived = asyncio.Event()

    def send(self, message: bytes) -> None:
        self.received.append(json.loads(message))
        self.arrived.set()

    async def next_delta(self) -> dict[str, Any]:
        """The next delta not taken yet."""
        while True:
            while self.taken < len(self.received):
                self.taken += 1
                if self.received[self.taken - 1]["type"] == "sessions_delta":
                    return self.received[self.taken - 1]
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)


def session(user: str, version: str, uid: str = "u-1") -> dict[str, Any]:
    return {
        "metadata": {
            "uid": uid,
            "name": "shared",
            "namespace": "ns",
            "resourceVersion": version,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"user": user, "template": "firefox"},
    }


def test_an_owner_change_is_a_removal_for_the_old_owner() -> None:
    async def scenario() -> None:
        feed = SessionFeed(timedelta(minutes=5))
        alice, bob, admin = Listener("alice"), Listener("bob"), Listener("root", "admin")
        full = Listener("alice")
        for listener in (alice, bob, admin):
            feed.subscribe_deltas(listener)
        feed.subscribe(full)
        feed.on_change(None, session("alice", "1"))
        assert (await alice.next_delta())["upserted"][0]["user"] == "alice"
        await admin.next_delta()
        feed.on_change(session("alice", "1"), session("bob", "2"))
        lost = await alice.next_delta()
        assert lost["removed"] == [{"id": "shared", "namespace": "ns"}]
        assert lost["upserted"] == [] and lost["count"] == 0 and lost["seq"] == 2
        gained = await bob.next_delta()
        assert [s["user"] for s in gained["upserted"]] == ["bob"] and gained["seq"] == 1
        assert gained["count"] == 1
        moved = await admin.next_delta()
        assert moved["removed"] == [] and moved["upserted"][0]["user"] == "bob"
        assert moved["seq"] == 2 and moved["count"] == 1
        assert full.received[-1]["type"] == "sessions_update"
        assert full.received[-1]["sessions"] == []
        # a new subscriber's snapshot carries the sequence number of the last delta in it
        late = Listener("bob")
        feed.subscribe_deltas(late)
        assert late.received[0]["seq"] == 1 and late.received[0]["count"] == 1
        feed.close()

    asyncio.run(scenario())


def test_a_burst_that_ends_where_it_began_sends_nothing_and_a_snapshot_waits_for_none() -> None:
    async def scenario() -> None:
        feed = SessionFeed(timedelta(minutes=5))
        alice = Listener("alice")
        feed.subscribe_deltas(alice)
        feed.on_change(None, session("alice", "1"))
        # a snapshot asked for inside the burst flushes it first: it matches its seq
        late = Listener("alice")
        feed.subscribe_deltas(late)
        assert late.received[0]["seq"] == 1 and late.received[0]["count"] == 1
        assert (await alice.next_delta())["seq"] == 1
        feed.on_change(session("alice", "1"), session("alice", "2"))
        tagged = session("alice", "3")
        tagged["spec"]["tags"] = ["x"]
        feed.on_change(session("alice", "2"), tagged)
        feed.on_change(tagged, session("alice", "4"))  # back to what alice has
        other = session("alice", "1", uid="u-2")
        other["metadata"]["name"] = "other"
        feed.on_change(None, other)
        delta = await alice.next_delta()
        assert [s["id"] for s in delta["upserted"]] == ["other"] and delta["seq"] == 2
        feed.close()

    asyncio.run(scenario())
