"""What the WebSocket streams publish: a watched copy of the Sessions, fanned out to subscribers.

Every facade replica keeps its own copy of the Sessions in its scope (:class:`Informer`: list,
then watch from the list's resourceVersion, list again when the watch expires or fails), so a
change reaches the subscribers of every replica straight from the API server, whichever replica
or tool (kubectl, GitOps) made it, and without waiting for the PostgreSQL mirror.

:class:`SessionFeed` turns changes into ``sessions_update`` messages. Subscribers fall into
groups that see the same sessions: one group per user (their own sessions and those shared with
them, each with the group's ``access``), and one for operators and admins, who see everything. A
change marks the groups that can see the session (before and after the change, since an owner
and the shares may change: a revoked user's stream drops the session at the next flush); dirty
groups are flushed together a moment later (``FLUSH_DELAY``), so a burst of changes costs one
message per group, and every message is serialised once per group, not once per subscriber.
Every ``SNAPSHOT_INTERVAL`` each group gets a snapshot whether anything changed or not (the
seed's behaviour, which clients rely on to heal after a missed message).

Deltas (opt-in, ``?format=delta``): a subscriber gets one snapshot (``sessions_update`` with a
``seq``), then ``sessions_delta`` messages carrying only the sessions its group sees that
changed (``upserted``, their whole view) and those it no longer sees (``removed``: deleted,
or moved to another owner), numbered ``seq + 1``, ``seq + 2``, ... per group, and no periodic
snapshots. A client that finds a gap sends ``{"type": "resync"}`` (or reconnects) and gets a
fresh snapshot; one whose queue overflows gets its queue replaced by a fresh snapshot
(``reason: "lagging"``) instead of being closed. A delta is computed and encoded once per group
per flush. A snapshot may already hold changes of the next delta (views are current, deltas are
flushed ``FLUSH_DELAY`` later); every entry of a delta is a session's whole current view, so
applying it again changes nothing.

Idle warnings: a running session with ``status.idleDeadline`` gets one ``hibernate_warning``
message, ``HIBERNATE_WARNING`` before the deadline, to the subscribers who can see it. A
subscriber who joins inside the warning window gets the warning at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from streamspace import sharing
from streamspace.conditions import parse_timestamp, timestamp
from streamspace.db.mirror import is_deleted, session_row
from streamspace_facade import metrics
from streamspace_facade.kube import Kube
from streamspace_facade.principal import Principal
from streamspace_facade.sessions import session_view

log = logging.getLogger(__name__)

EVERYONE = "*"
"""The group of operators and admins."""
FLUSH_DELAY = 0.05
"""Seconds between the first change of a burst and its message (changes meanwhile coalesce)."""
SNAPSHOT_INTERVAL = 3.0

Object = dict[str, Any]
Change = Callable[[Object | None, Object | None], None]


class Subscriber(Protocol):
    principal: Principal

    def send(self, message: bytes) -> None:
        """Queue a UTF-8 text message; never blocks (one that cannot keep up is dropped)."""


def group_of(who: Principal) -> str:
    return EVERYONE if who.sees_everything else f"user:{who.user}"


def now() -> datetime:
    return datetime.now(UTC)


def message(kind: str, **fields: Any) -> bytes:
    """A stream message as the UTF-8 bytes of its JSON: encoded once, sent to many."""
    body = {"type": kind, **fields, "timestamp": timestamp(now())}
    return json.dumps(body, default=str).encode()


class Informer:
    """A current copy of one kind's objects in a namespace scope (None: all namespaces).

    ``on_change(old, new)`` is called for every difference: ``old`` None for a new object,
    ``new`` None for a removed one. Objects being deleted (``deletionTimestamp``) count as gone,
    as they do for the REST API.
    """

    def __init__(
        self,
        kube: Kube,
        kind: str,
        namespace: str | None,
        on_change: Change,
        *,
        retry_seconds: float = 2.0,
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.on_change = on_change
        self.retry_seconds = retry_seconds
        self.objects: dict[str, Object] = {}
        self.synced = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                version = await self._relist()
                self.synced.set()
                # returns when the server no longer has the version reached: list again
                await self.kube.follow(
                    self.kind,
                    self.namespace,
                    version,
                    self._event,
                    retry_seconds=self.retry_seconds,
                    reader="streams",
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "watch of %s interrupted (%s: %s); listing again in %.1fs",
                    self.kind,
                    type(exc).__name__,
                    exc,
                    self.retry_seconds,
                )
                await asyncio.sleep(self.retry_seconds)

    async def _relist(self) -> str:
        items, version = await self.kube.list(self.kind, self.namespace)
        fresh = {str(o["metadata"]["uid"]): o for o in items if not is_deleted(o)}
        for uid in list(self.objects):
            if uid not in fresh:
                self._set(uid, None)
        for uid, obj in fresh.items():
            self._set(uid, obj)
        return version

    def observed(self, obj: Object) -> None:
        """A write this process just made, applied now rather than when its watch event comes
        (a revoke must hold at this replica's gate at once); never rolls a newer copy back."""
        uid = str(obj["metadata"]["uid"])
        old = self.objects.get(uid)
        if old is None or _newer(obj, old):
            self._set(uid, None if is_deleted(obj) else dict(obj))

    async def _event(self, kind: str, obj: Object) -> None:
        uid = str(obj["metadata"]["uid"])
        self._set(uid, None if kind == "DELETED" or is_deleted(obj) else obj)

    def _set(self, uid: str, obj: Object | None) -> None:
        old = self.objects.get(uid)
        if obj is None:
            if old is None:
                return
            del self.objects[uid]
        else:
            if old is not None and _version(old) == _version(obj):
                return
            obj["metadata"].pop("managedFields", None)  # a third of an object, never read here
            self.objects[uid] = obj
        try:
            self.on_change(old, obj)
        except Exception:
            log.exception("handling a change of %s %s failed", self.kind, uid)


def _version(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"].get("resourceVersion", ""))


def _newer(obj: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    a, b = _version(obj), _version(than)
    return not (a.isdigit() and b.isdigit()) or int(a) > int(b)


def _users(view: Mapping[str, Any]) -> tuple[str, ...]:
    """Who sees a session view: its owner and the users it is shared with."""
    return (view["user"], *(s["user"] for s in view.get("sharedWith") or ()))


def audiences(view: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The groups that see a session view (none for a session that does not exist)."""
    return () if view is None else (EVERYONE, *(f"user:{u}" for u in _users(view)))


def for_group(group: str, view: dict[str, Any]) -> dict[str, Any]:
    """A view as ``group`` sees it: with the group's ``access`` to it (decision 175)."""
    if group == EVERYONE:
        return {**view, "access": sharing.ADMIN}
    user = group.removeprefix("user:")
    shares = {"user": view["user"], "sharedWith": view.get("sharedWith") or ()}
    return {**view, "access": sharing.access_of(shares, user)}


def removal(view: Mapping[str, Any]) -> dict[str, Any]:
    """How a ``sessions_delta`` names a session that its group no longer sees."""
    return {"id": view["id"], "namespace": view["namespace"]}


class SessionFeed:
    """Sessions as the ``/api/v1/ws/sessions`` subscribers see them, and the fan-out to them."""

    def __init__(self, warning: timedelta) -> None:
        self.warning = warning
        self.views: dict[str, dict[str, Any]] = {}  # uid → session view
        self.groups: dict[str, set[Subscriber]] = {}
        self.delta_groups: dict[str, set[Subscriber]] = {}
        self.objects: dict[str, Object] = {}
        self._dirty: set[str] = set()
        self._before: dict[str, dict[str, Any] | None] = {}  # uid → view at the last flush
        self._per_user: dict[str, int] = {}  # user → sessions they see
        self._names: dict[tuple[str, str], str] = {}  # (namespace, name) → uid
        self._seq: dict[str, int] = {}  # delta group → its last sequence number
        self._snapshots: dict[tuple[str, str], tuple[int, bytes]] = {}  # (group, reason) → …
        self._flush: asyncio.TimerHandle | None = None
        self._warnings: dict[str, asyncio.TimerHandle] = {}  # uid → pending warning
        self._warned: dict[str, str] = {}  # uid → the deadline already warned about

    # -- changes --------------------------------------------------------------------------

    def on_change(self, old: Object | None, new: Object | None) -> None:
        uid = str((new or old or {}).get("metadata", {}).get("uid"))
        before = self.views.get(uid)
        self._before.setdefault(uid, before)
        if before is not None:
            self._dirty.update(audiences(before))
            self._count(before, -1)
            self._names.pop((before["namespace"], before["id"]), None)
        if new is None:
            self.views.pop(uid, None)
            self.objects.pop(uid, None)
        else:
            view = self.views[uid] = session_view(session_row(new))
            self.objects[uid] = new
            self._names[view["namespace"], view["id"]] = uid
            self._dirty.update(audiences(view))
            self._count(view, 1)
        self._dirty.add(EVERYONE)
        self._schedule_warning(uid, new)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush_dirty)

    def _count(self, view: Mapping[str, Any], step: int) -> None:
        for user in _users(view):
            left = self._per_user.get(user, 0) + step
            if left:
                self._per_user[user] = left
            else:
                self._per_user.pop(user, None)

    def spec_of(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The current spec of Session ``namespace/name``; None when there is none."""
        uid = self._names.get((namespace, name))
        obj = None if uid is None else self.objects.get(uid)
        return None if obj is None else obj.get("spec") or {}

    def _flush_dirty(self) -> None:
        self._flush = None
        dirty, self._dirty = self._dirty, set()
        for group in dirty:
            self.publish(group, "change")
        self._flush_deltas()

    def _flush_deltas(self) -> None:
        before, self._before = self._before, {}
        if self.delta_groups:
            self.publish_deltas(before)

    def publish_deltas(self, before: Mapping[str, dict[str, Any] | None]) -> int:
        """Send each delta group what changed for it since ``before`` (uid → earlier view)."""
        changes: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
        for uid, old in before.items():
            new = self.views.get(uid)
            if old == new:
                continue
            seen = audiences(new)
            for group in seen:
                if new is not None and group in self.delta_groups:
                    changes.setdefault(group, ([], []))[0].append(for_group(group, new))
            for group in audiences(old):
                if old is not None and group not in seen and group in self.delta_groups:
                    changes.setdefault(group, ([], []))[1].append(removal(old))
        sent = 0
        for group, (upserted, removed) in changes.items():
            seq = self._seq[group] = self._seq.get(group, 0) + 1
            payload = message(
                "sessions_delta",
                seq=seq,
                upserted=upserted,
                removed=removed,
                count=self.count(group),
            )
            subscribers = self.delta_groups[group]
            for subscriber in list(subscribers):
                subscriber.send(payload)
            sent += len(subscribers)
        metrics.WS_MESSAGES.labels("sessions", "sessions_delta").inc(sent)
        return sent

    # -- messages -------------------------------------------------------------------------

    def visible(self, group: str) -> list[dict[str, Any]]:
        if group == EVERYONE:
            views = [for_group(group, v) for v in self.views.values()]
        else:
            user = group.removeprefix("user:")
            views = [for_group(group, v) for v in self.views.values() if user in _users(v)]
        # the REST list's order: newest first
        views.sort(key=lambda v: (v["createdAt"] or "", v["id"]), reverse=True)
        return views

    def count(self, group: str) -> int:
        if group == EVERYONE:
            return len(self.views)
        return self._per_user.get(group.removeprefix("user:"), 0)

    def snapshot(self, group: str, reason: str) -> bytes:
        """``reason`` (an addition to the seed's format): ``subscribe``, ``change`` or
        ``snapshot`` (the periodic one)."""
        sessions = self.visible(group)
        return message("sessions_update", sessions=sessions, count=len(sessions), reason=reason)

    def publish(self, group: str, reason: str) -> int:
        """Send the group's current sessions to its subscribers; how many were sent to."""
        subscribers = self.groups.get(group)
        if not subscribers:
            return 0
        payload = self.snapshot(group, reason)
        for subscriber in list(subscribers):
            subscriber.send(payload)
        metrics.WS_MESSAGES.labels("sessions", "sessions_update").inc(len(subscribers))
        return len(subscribers)

    async def snapshots(self, interval: float = SNAPSHOT_INTERVAL) -> None:
        """Forever: every group with subscribers gets its snapshot."""
        while True:
            await asyncio.sleep(interval)
            for group in list(self.groups):
                self.publish(group, "snapshot")

    # -- subscribers ----------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        group = group_of(subscriber.principal)
        self.groups.setdefault(group, set()).add(subscriber)
        subscriber.send(self.snapshot(group, "subscribe"))
        for warning in self._warnings_for(subscriber.principal):
            subscriber.send(warning)

    def subscribe_deltas(self, subscriber: Subscriber) -> None:
        """A ``?format=delta`` subscriber: a snapshot now, then only its group's deltas."""
        start = self.resync_messages(subscriber, "subscribe")  # flushes pending changes first
        self.delta_groups.setdefault(group_of(subscriber.principal), set()).add(subscriber)
        for payload in start:
            subscriber.send(payload)

    def delta_snapshot(self, group: str, reason: str) -> bytes:
        """A delta group's snapshot and the sequence number of the last delta it includes,
        encoded once per group, reason and sequence number however many ask. Changes not yet
        flushed are flushed first, so that the snapshot holds exactly the deltas up to it."""
        if self._before:
            self._flush_deltas()
        seq = self._seq.get(group, 0)
        cached = self._snapshots.get((group, reason))
        if cached is None or cached[0] != seq:
            sessions = self.visible(group)
            payload = message(
                "sessions_update", sessions=sessions, count=len(sessions), reason=reason, seq=seq
            )
            cached = self._snapshots[group, reason] = (seq, payload)
        return cached[1]

    def resync_messages(self, subscriber: Subscriber, reason: str) -> list[bytes]:
        """A delta subscriber's fresh start: its group's snapshot, then the warnings in force.
        ``reason``: ``subscribe``, ``resync`` (the client asked) or ``lagging`` (its queue
        overflowed and was replaced)."""
        metrics.WS_MESSAGES.labels("sessions", "sessions_update").inc()
        snapshot = self.delta_snapshot(group_of(subscriber.principal), reason)
        return [snapshot, *self._warnings_for(subscriber.principal)]

    def unsubscribe(self, subscriber: Subscriber) -> None:
        group = group_of(subscriber.principal)
        for groups in (self.groups, self.delta_groups):
            members: set[Any] | None = groups.get(group)
            if members is not None:
                members.discard(subscriber)
                if not members:
                    del groups[group]
        if group not in self.delta_groups:
            self._seq.pop(group, None)
            for key in [k for k in self._snapshots if k[0] == group]:
                del self._snapshots[key]

    def subscribers(self) -> Iterator[Subscriber]:
        for members in self.groups.values():
            yield from members
        for deltas in self.delta_groups.values():
            yield from deltas

    # -- idle warnings --------------------------------------------------------------------

    def _deadline(self, obj: Object | None) -> datetime | None:
        """The idle deadline of a running session, or None."""
        if obj is None:
            return None
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if spec.get("state", "running") != "running" or status.get("phase") != "Running":
            return None
        return parse_timestamp(status.get("idleDeadline"))

    def _schedule_warning(self, uid: str, obj: Object | None) -> None:
        pending = self._warnings.pop(uid, None)
        if pending is not None:
            pending.cancel()
        deadline = self._deadline(obj)
        if deadline is None:
            self._warned.pop(uid, None)
            return
        if self._warned.get(uid) == timestamp(deadline):
            return
        delay = (deadline - self.warning - now()).total_seconds()
        loop = asyncio.get_running_loop()
        self._warnings[uid] = loop.call_later(max(0.0, delay), self._warn, uid, deadline)

    def _warn(self, uid: str, deadline: datetime) -> None:
        self._warnings.pop(uid, None)
        if self._deadline(self.objects.get(uid)) != deadline or now() >= deadline:
            return
        self._warned[uid] = timestamp(deadline)
        payload = self._warning_message(uid)
        for group in audiences(self.views[uid]):
            for groups in (self.groups, self.delta_groups):
                for subscriber in list(groups.get(group, ())):
                    subscriber.send(payload)
                    metrics.WS_MESSAGES.labels("sessions", "hibernate_warning").inc()

    def _warnings_for(self, who: Principal) -> list[bytes]:
        return [
            self._warning_message(uid)
            for uid in self._warning_window()
            if _can_see(who, self.views[uid])
        ]

    def _warning_window(self) -> list[str]:
        moment = now()
        return [
            uid
            for uid, obj in self.objects.items()
            if (deadline := self._deadline(obj)) is not None
            and deadline - self.warning <= moment < deadline
        ]

    def _warning_message(self, uid: str) -> bytes:
        view = self.views[uid]
        deadline = self._deadline(self.objects[uid])
        left = 0 if deadline is None else max(0, round((deadline - now()).total_seconds()))
        return message(
            "hibernate_warning",
            sessionId=view["id"],
            namespace=view["namespace"],
            user=view["user"],
            idleDeadline=view["idleDeadline"],
            secondsRemaining=left,
            message=f"session {view['id']} hibernates at {view['idleDeadline']} unless used",
        )

    def close(self) -> None:
        for handle in self._warnings.values():
            handle.cancel()
        self._warnings.clear()
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None


def _can_see(who: Principal, view: Mapping[str, Any]) -> bool:
    return who.sees_everything or who.user in _users(view)
