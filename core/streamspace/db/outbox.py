"""The event outbox: what the mirror writer stores beside a row change, in the same transaction.

``record`` takes the row changes of one transaction (the row replaced and the row written, either
None when there is none), lets :func:`streamspace.events.derive` decide the events, reads the
subscribed plugins once, and inserts one ``plugin_events`` row per event that has a recipient and
one ``plugin_deliveries`` row per recipient. The transaction commits the row and its events
together or neither, so an event is never announced for a change that was rolled back, and never
lost for one that was kept. An event no plugin subscribes to is not stored (nothing would read it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from streamspace import events

Row = Mapping[str, Any]
Change = tuple[Row | None, Row | None]
View = Callable[[Row], Mapping[str, Any]]
Views = Mapping[str, View]
"""Mirror table → how its rows look over REST (the facade's views); the event's ``data``."""


@dataclass(frozen=True)
class Audience:
    """Who hears of a change and how it looks: the rows as the REST API shows them, and the
    home namespace whose plugins hear of every namespace (None: each plugin hears its own)."""

    views: Views = field(default_factory=dict)
    home: str | None = None


NOBODY_IN_PARTICULAR = Audience()

_HIDDEN = frozenset({"uid", "resource_version", "updated_at"})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date | uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def plain_view(row: Row) -> dict[str, Any]:
    """A row as JSON with camelCase keys, for tables without a REST view of their own."""
    return {_camel(k): _json(v) for k, v in row.items() if k not in _HIDDEN}


SUBSCRIBERS = """
    SELECT uid::text, namespace, id, coalesce(events, '{}'), url FROM installed_plugins
    WHERE enabled AND phase = 'Ready' AND coalesce(url, '') <> '' AND cardinality(events) > 0
"""

INSERT_EVENT = """
    INSERT INTO plugin_events (id, type, subject, namespace, data, "time")
    VALUES (%s, %s, %s, %s, %s, %s)
"""

INSERT_DELIVERY = """
    INSERT INTO plugin_deliveries
        (id, event_id, plugin_uid, plugin_namespace, plugin_name, subject, url)
    VALUES (%s, %s, %s, %s, %s, %s, %s)
"""


SETTLE_UNINSTALLED = """
    UPDATE plugin_deliveries SET status = 'dead', last_error = 'plugin uninstalled'
    WHERE status = 'pending' AND plugin_uid = ANY(%s::uuid[])
"""
"""An uninstalled plugin's pending deliveries end at once: nobody is there to receive them (its
Secret, and so its signing secret, went with it)."""


async def subscribers(conn: AsyncConnection[Any]) -> list[events.Subscriber]:
    cur = await conn.execute(SUBSCRIBERS)
    return [
        events.Subscriber(str(uid), str(ns), str(name), list(patterns), str(url))
        for uid, ns, name, patterns, url in await cur.fetchall()
    ]


async def record(
    conn: AsyncConnection[Any],
    table: str,
    changes: Iterable[Change],
    audience: Audience = NOBODY_IN_PARTICULAR,
    now: datetime | None = None,
) -> int:
    """Store the events of ``changes`` of ``table`` (inside the caller's transaction); returns
    how many deliveries were queued."""
    changes = list(changes)
    if table == "installed_plugins":
        gone = [str(old["uid"]) for old, new in changes if old is not None and new is None]
        if gone:
            await conn.execute(SETTLE_UNINSTALLED, (gone,))
    derived = [
        (event_type, old, new)
        for old, new in changes
        for event_type in events.derive(table, old, new)
    ]
    if not derived:
        return 0
    plugins: Sequence[events.Subscriber] = await subscribers(conn)
    if not plugins:
        return 0
    when = now or datetime.now(UTC)
    view = audience.views.get(table, plain_view)
    queued = 0
    for event_type, old, new in derived:
        row = new if new is not None else old
        if row is None:  # derive() decides nothing for no row at all
            continue
        namespace = str(row["namespace"])
        targets = events.recipients(plugins, event_type, namespace, audience.home)
        if not targets:
            continue
        event_id = uuid.uuid4()
        subject = events.subject(table, row)
        await conn.execute(
            INSERT_EVENT,
            (event_id, event_type, subject, namespace, Jsonb(dict(view(row))), when),
        )
        async with conn.cursor() as cur:
            await cur.executemany(
                INSERT_DELIVERY,
                [
                    (uuid.uuid4(), event_id, p.uid, p.namespace, p.name, subject, p.url)
                    for p in targets
                ],
            )
        queued += len(targets)
    return queued
