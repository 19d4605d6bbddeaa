"""Plugin events, decided purely: which events a row change means, who receives them, the
CloudEvent a receiver gets, its Standard Webhooks signature, and when a failed delivery goes again.

The mirror writer gathers the row it replaces and the row it wrote (``streamspace.db.outbox``),
:func:`derive` decides the event types (docs/PLUGINS.md §4, table in ``tests/unit/test_events.py``),
and the outbox stores them in the same transaction. The delivery worker builds the body with
:func:`envelope`, signs it with :func:`signature_headers` and, after a failure, asks
:func:`after_failure` whether to retry (exponential backoff with full jitter) or give up.
No I/O here; the clock and the random source are passed in.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent
from standardwebhooks.webhooks import Webhook

Row = Mapping[str, Any]

TYPE_PREFIX = "space.stream."
"""CloudEvents ``type`` is this plus the event name (``space.stream.session.created``)."""

EVENT_TYPES = (
    "session.created",
    "session.started",
    "session.stopped",
    "session.hibernated",
    "session.woken",
    "session.deleted",
    "connection.opened",
    "connection.closed",
    "repository.synced",
    "repository.failed",
    "plugin.installed",
    "plugin.enabled",
    "plugin.disabled",
    "plugin.uninstalled",
    "user.created",
    "user.updated",
    "user.deleted",
    "user.login",
)

SUBJECTS = {
    "sessions": "sessions",
    "connections": "connections",
    "repositories": "repositories",
    "installed_plugins": "plugins",
    "users": "users",
}
"""Mirror table → the plural a subject starts with (``sessions/<name>``)."""

STOPPED = frozenset({"Terminated", "Failed"})


def _hibernated_since_started(row: Row) -> bool:
    """The session was hibernated after it last started (waking goes Hibernated → Pending →
    Running, so the phase just before Running is not Hibernated)."""
    if row.get("phase") == "Hibernated":
        return True
    hibernated, started = row.get("hibernated_at"), row.get("started_at")
    # whole seconds: a session hibernated in the second it started has equal times
    return hibernated is not None and (started is None or hibernated >= started)


def _session(old: Row | None, new: Row | None) -> list[str]:
    if new is None:
        return ["session.deleted"] if old is not None else []
    before = None if old is None else old.get("phase")
    after = new.get("phase")
    out = ["session.created"] if old is None else []
    if after != before:
        if after == "Running":
            woken = old is not None and _hibernated_since_started(old)
            out.append("session.woken" if woken else "session.started")
        elif after == "Hibernated":
            out.append("session.hibernated")
        elif after in STOPPED and before not in STOPPED:
            out.append("session.stopped")
    return out


def _connection(old: Row | None, new: Row | None) -> list[str]:
    was_closed = old is not None and old.get("state") == "closed"
    if new is None:
        return ["connection.closed"] if old is not None and not was_closed else []
    out = ["connection.opened"] if old is None else []
    if new.get("state") == "closed" and not was_closed:
        out.append("connection.closed")
    return out


def _repository(old: Row | None, new: Row | None) -> list[str]:
    if new is None:
        return []
    before = None if old is None else old.get("status")
    status = new.get("status")
    fresh = old is None or before != "synced" or old.get("last_sync") != new.get("last_sync")
    if status == "synced" and new.get("last_sync") is not None and fresh:
        return ["repository.synced"]
    if status == "failed" and before != "failed":
        return ["repository.failed"]
    return []


def _plugin(old: Row | None, new: Row | None) -> list[str]:
    if old is None:
        return ["plugin.installed"] if new is not None else []
    if new is None:
        return ["plugin.uninstalled"]
    if bool(old.get("enabled")) != bool(new.get("enabled")):
        return ["plugin.enabled" if new.get("enabled") else "plugin.disabled"]
    return []


USER_FIELDS = ("role", "email", "name", "idp_groups", "groups", "disabled")
"""What a ``user.updated`` is about (a sign-in alone moves only ``last_login``)."""


def _user(old: Row | None, new: Row | None) -> list[str]:
    if new is None:
        return ["user.deleted"] if old is not None else []
    out = ["user.created"] if old is None else []
    if old is not None and any(old.get(f) != new.get(f) for f in USER_FIELDS):
        out.append("user.updated")
    if new.get("last_login") is not None and (
        old is None or old.get("last_login") != new.get("last_login")
    ):
        out.append("user.login")
    return out


_RULES: dict[str, Callable[[Row | None, Row | None], list[str]]] = {
    "sessions": _session,
    "connections": _connection,
    "repositories": _repository,
    "installed_plugins": _plugin,
    "users": _user,
}


def derive(table: str, old: Row | None, new: Row | None) -> list[str]:
    """The events a mirror row change means, in order (``old``/``new`` None: no row).

    The same comparison serves a watch event and a resync after an outage, so a session
    created and started while the facade was down yields both ``created`` and ``started``.
    """
    rule = _RULES.get(table)
    return [] if rule is None else rule(old, new)


def subject(table: str, row: Row) -> str:
    return f"{SUBJECTS[table]}/{row['id']}"


def subscribed(patterns: Iterable[str], event_type: str) -> bool:
    """True when one of a plugin's ``events`` matches: exact, or a prefix with ``*``."""
    for pattern in patterns:
        name = pattern.removeprefix(TYPE_PREFIX)
        if name == event_type or (name.endswith("*") and fnmatch.fnmatchcase(event_type, name)):
            return True
    return False


@dataclass(frozen=True)
class Subscriber:
    """A plugin that receives events: enabled, Ready, with a URL (gathered by the outbox)."""

    uid: str
    namespace: str
    name: str
    events: Sequence[str]
    url: str


def recipients(
    subscribers: Iterable[Subscriber], event_type: str, namespace: str, home: str | None = None
) -> list[Subscriber]:
    """The plugins an event goes to: those that subscribe to it in the object's namespace, and
    those of ``home`` (the facade's own namespace, whose plugins the platform team installs for
    every namespace the facade serves)."""
    return [
        s
        for s in subscribers
        if s.namespace in (namespace, home) and subscribed(s.events, event_type)
    ]


# --- what a receiver gets -----------------------------------------------------------------------


def source(namespace: str) -> str:
    return f"/streamspace/{namespace}"


def envelope(  # noqa: PLR0917 (the CloudEvent's attributes, each a string)
    event_id: str,
    event_type: str,
    event_subject: str,
    namespace: str,
    time: datetime,
    data: Mapping[str, Any],
) -> tuple[bytes, str]:
    """The CloudEvents 1.0 structured JSON body and its content type."""
    event = CloudEvent(
        attributes={
            "id": event_id,
            "source": source(namespace),
            "type": TYPE_PREFIX + event_type,
            "subject": event_subject,
            "time": time,
            "datacontenttype": "application/json",
        },
        data=dict(data),
    )
    message = to_structured_event(event)
    return message.body, message.headers["content-type"]


def signature_headers(secret: str, delivery_id: str, now: datetime, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for ``body``; ``delivery_id`` is stable across retries."""
    stamp = now.astimezone(UTC)
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery_id, stamp, body.decode()),
    }


# --- retries --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base·2^(n-1)))."""

    base: timedelta
    cap: timedelta
    budget: int  # attempts in all; after the last failed one the delivery is dead


@dataclass(frozen=True)
class Outcome:
    status: str  # pending (again) or dead
    next_attempt_at: datetime | None


def after_failure(
    policy: RetryPolicy, attempts: int, now: datetime, random: Callable[[], float]
) -> Outcome:
    """What becomes of a delivery whose ``attempts``-th attempt failed (``random`` in [0, 1))."""
    if attempts >= policy.budget:
        return Outcome("dead", None)
    ceiling = min(policy.cap.total_seconds(), policy.base.total_seconds() * 2 ** (attempts - 1))
    return Outcome("pending", now + timedelta(seconds=ceiling * random()))


def delivered(status: int) -> bool:
    """A receiver's answer that settles a delivery (any 2xx)."""
    return 200 <= status < 300
