"""The audit trail: one ``audit_log`` row for every authenticated mutating request.

A route describes its change with ``state.audit``; the ``audit_trail`` middleware adds the
outcome (status, error code) and hands the record to ``AuditLog``. When PostgreSQL cannot take
it (an outage, a failover), the record waits in a bounded backlog, in order, and a background
task stores the backlog as soon as PostgreSQL answers again, with the time the request was
served: an outage delays audit rows, it does not lose them. Only a full backlog (``BACKLOG``
records) or a facade that stops before PostgreSQL returns loses rows, and then each lost record
is written to the log as an error, whole, so that it can still be recovered from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler

from streamspace.db.audit import Record
from streamspace_facade import metrics
from streamspace_facade.errors import ApiError
from streamspace_facade.state import AUDIT, PRINCIPAL, principal, services
from streamspace_facade.storage import StorageError
from streamspace_facade.storage.audit import AuditStore

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BACKLOG = 10_000
"""Records held while PostgreSQL is away: a few minutes of heavy traffic, a few MiB."""
BATCH = 500
RETRY_EVERY = 1.0
"""Seconds between attempts to store the backlog while PostgreSQL does not answer."""
DB_WAIT = 2.0


class AuditLog:
    """Stores audit records, holding them back (in order) while PostgreSQL is unreachable."""

    def __init__(self, store: AuditStore | None) -> None:
        self.store = store
        self.backlog: deque[Record] = deque()
        self._waiting = asyncio.Event()

    async def write(self, record: Record) -> None:
        if self.store is None:
            log.warning("audit record not stored (no database): %s", _dumps(record))
            return
        if self.backlog:  # behind the records already waiting, to keep their order
            self._hold(record)
            return
        try:
            await self._store([record])
        except (StorageError, TimeoutError) as exc:
            log.warning("audit record held until PostgreSQL answers (%s)", exc)
            self._hold(record)

    def _hold(self, record: Record) -> None:
        if len(self.backlog) >= BACKLOG:
            log.error("audit backlog full (%d); record not stored: %s", BACKLOG, _dumps(record))
            metrics.AUDIT_LOST.inc()
            return
        self.backlog.append(record)
        metrics.AUDIT_BACKLOG.set(len(self.backlog))
        self._waiting.set()

    async def _store(self, records: list[Record]) -> None:
        if self.store is None:
            raise StorageError("no database configured")
        async with asyncio.timeout(DB_WAIT * 2):
            await self.store.insert(records, wait=DB_WAIT)

    async def flush(self) -> bool:
        """Store what waits, oldest first; False when PostgreSQL did not take all of it."""
        while self.backlog:
            batch = list(itertools.islice(self.backlog, BATCH))
            try:
                await self._store(batch)
            except (StorageError, TimeoutError) as exc:
                log.debug("audit backlog of %d not stored yet (%s)", len(self.backlog), exc)
                return False
            for _ in batch:  # new records only ever join at the right end
                self.backlog.popleft()
            metrics.AUDIT_BACKLOG.set(len(self.backlog))
            log.info("stored %d held audit records; %d wait", len(batch), len(self.backlog))
        self._waiting.clear()
        return True

    async def run(self) -> None:
        while True:
            await self._waiting.wait()
            if not await self.flush():
                await asyncio.sleep(RETRY_EVERY)

    def give_up(self) -> None:
        """At exit: what could not be stored goes to the log, whole."""
        for record in self.backlog:
            log.error("audit record not stored before exit: %s", _dumps(record))
            metrics.AUDIT_LOST.inc()
        self.backlog.clear()


def _dumps(record: Record) -> str:
    return json.dumps(record.as_dict(), default=str)


@contextlib.asynccontextmanager
async def running(trail: AuditLog) -> AsyncIterator[AuditLog]:
    task = asyncio.create_task(trail.run(), name="audit-backlog")
    try:
        yield trail
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if trail.backlog:
            await trail.flush()
            trail.give_up()


@web.middleware
async def audit_trail(request: web.Request, handler: Handler) -> web.StreamResponse:
    status, error = 500, None
    try:
        response = await handler(request)
        status = response.status
    except ApiError as exc:
        status, error = exc.status, exc.code
        raise
    else:
        return response
    finally:
        # every mutating request, and reads that changed something (connect makes a Connection)
        if (request.method in MUTATING and PRINCIPAL in request) or AUDIT in request:
            await services(request).audit.write(record(request, status, error))


def record(request: web.Request, status: int, error: str | None) -> Record:
    """The audit record of ``request`` as described so far (``state.audit``), with its outcome;
    a terminal stores one when it opens, before the middleware stores the closing one."""
    described = request.get(AUDIT) or {
        "action": request.method.lower(),
        "resource_type": "request",
        "resource_id": request.path[:500],
        "changes": {},
    }
    changes = {**described["changes"], "status": status}
    if error:
        changes["error"] = error
    return Record(
        user=principal(request).user if PRINCIPAL in request else None,
        action=described["action"],
        resource_type=described["resource_type"],
        resource_id=described["resource_id"],
        changes=changes,
        at=datetime.now(UTC),
        ip_address=request.remote,
    )
