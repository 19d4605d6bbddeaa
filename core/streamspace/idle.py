"""Idleness of a running session, as one pure evaluation.

Last activity is the newest of: the session's start, the recorded ``status.lastActivity``
(connects and disconnects are written there at once), and every connection's last
heartbeat. A session with a live connection is never idle. A running session without one
hibernates once ``last activity + idleTimeout`` has passed; the warning goes out
``HIBERNATE_WARNING`` before that. Heartbeat-driven ``lastActivity`` writes are throttled, the
decision is not: it always uses the newest heartbeat it knows of.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

ACTIVITY_WRITE_INTERVAL = timedelta(seconds=30)


@dataclass(frozen=True)
class ConnectionView:
    name: str
    state: str
    last_seen: datetime | None  # last heartbeat, else when it connected, else when created
    uid: str = ""
    owner: str | None = None  # uid of its controlling Session once adopted

    def of_session(self, session_uid: str) -> bool:
        """Not yet adopted, or adopted by this very Session (not an earlier one of its name)."""
        return self.owner is None or self.owner == session_uid

    def live(self, now: datetime, stale_after: timedelta) -> bool:
        return self.state == "active" and (
            self.last_seen is None or now - self.last_seen < stale_after
        )


@dataclass(frozen=True)
class IdleInput:
    state: str
    phase: str | None
    idle_timeout: timedelta
    last_activity: datetime | None
    started_at: datetime | None
    connections: tuple[ConnectionView, ...]
    now: datetime
    stale_after: timedelta
    hibernate_warning: timedelta


@dataclass(frozen=True)
class IdleDecision:
    active: int
    last_activity: datetime | None  # the newest activity known
    write_last_activity: bool  # status.lastActivity is due an update (throttled)
    idle_deadline: datetime | None  # None while connected or not running
    warn: bool  # inside the warning window
    hibernate: bool
    stale: tuple[str, ...]  # connections to mark stale and delete


def _newest(moments: Iterable[datetime | None]) -> datetime | None:
    present = [m for m in moments if m is not None]
    return max(present) if present else None


def evaluate(inp: IdleInput) -> IdleDecision:
    live = [c for c in inp.connections if c.live(inp.now, inp.stale_after)]
    stale = tuple(sorted(c.name for c in inp.connections if c.state == "active" and c not in live))
    # A connection that has gone stale was still there at its last heartbeat: that counts.
    heartbeat = _newest(c.last_seen for c in inp.connections if c.state == "active")
    newest = _newest([inp.last_activity, inp.started_at, heartbeat])
    write = newest is not None and (
        inp.last_activity is None or newest - inp.last_activity >= ACTIVITY_WRITE_INTERVAL
    )
    running = inp.state == "running" and inp.phase == "Running"
    deadline = newest + inp.idle_timeout if running and not live and newest else None
    return IdleDecision(
        active=len(live),
        last_activity=newest,
        write_last_activity=write,
        idle_deadline=deadline,
        warn=deadline is not None and deadline - inp.hibernate_warning <= inp.now < deadline,
        hibernate=deadline is not None and inp.now >= deadline,
        stale=stale,
    )
