"""When a requested repository sync runs: the per-repository rate limit on webhook requests.

A sync is requested by setting the ``stream.space/sync-requested`` annotation of a
TemplateRepository to a time; the operator syncs when the value changes. Webhook deliveries
(anyone holding a captured GitHub delivery can replay it under new delivery ids) must not make
the operator fetch a repository again and again, and must not lose a push either. So the facade
writes the time at which the sync should run: now, or ``interval`` after the previous request
when that was more recent. A request while a later one is already scheduled changes nothing:
the scheduled sync fetches the newest commit, this push's included. The operator waits for a
time in the future before syncing (never longer than ``interval`` of its own clock). So a
repository is synced because of webhooks at most once per ``interval``, and the last push of a
burst is always synced (decision 48).

Pure functions: the caller passes ``now``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streamspace import API_GROUP

SYNC_REQUESTED = f"{API_GROUP}/sync-requested"


def stamp(moment: datetime) -> str:
    """The annotation's value: to the microsecond, so two requests in one second differ."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(value: str | None) -> datetime | None:
    """The time an annotation value names, or None (absent, or not a time: sync at once)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def next_request(previous: str | None, now: datetime, interval: timedelta) -> datetime | None:
    """When the sync this request asks for should run, or None when a sync already scheduled
    for later covers it (nothing to write)."""
    last = parse(previous)
    if last is None:
        return now
    if last > now:
        return None
    return max(now, last + interval)


def wait_before_sync(value: str | None, now: datetime, interval: timedelta) -> timedelta | None:
    """How long the operator waits before a requested sync (at most ``interval``, whatever the
    clocks say), or None to sync at once."""
    due = parse(value)
    if due is None or due <= now:
        return None
    return min(due - now, interval)
