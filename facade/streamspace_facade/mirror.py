"""The PostgreSQL mirror of Sessions, Connections and TemplateRepositories.

One facade replica at a time is the writer: the one holding a PostgreSQL advisory lock on a
connection of its own. While it holds the lock it lists each kind, resyncs the table (upsert all,
delete vanished rows) and then follows a watch from the list's resourceVersion. If the lock
connection, PostgreSQL or the API server fails, it lets go, waits, and starts again with a full
resync, so the tables catch up after an outage. The other replicas keep trying for the lock.
The writer also runs the plugin event delivery worker (``deliveries``): each write records the
events it means in its own transaction, and ``queued`` wakes the worker.

Watch events are written in batches: a table's watch queues its events, and its writer takes
everything queued (up to ``BATCH_MAX``) into one transaction, in order, each with the events it
means, so a burst costs one commit instead of one per event while a lone event is written at
once. A table's queue is empty before it is listed again, so a resync never overtakes events.

Read-your-writes: a REST handler that has just written an object calls :meth:`Mirror.observed`.
On the writer replica the row is written at once (same writer, ordered by resourceVersion);
elsewhere the call waits, with a deadline, for the writer to store that version. The object is
written by then, so neither a PostgreSQL outage nor the deadline fails the request: the call
gives up (after at most ``DB_WAIT`` + ``observe_timeout``) and the writer's resync stores the row
once PostgreSQL is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from streamspace.db import mirror as tables
from streamspace.db.migrate import migrate
from streamspace.db.outbox import Audience, View, Views
from streamspace_facade.connections import connection_view
from streamspace_facade.errors import ApiError
from streamspace_facade.kube import Kube
from streamspace_facade.metrics import (
    MIRROR_BATCH,
    MIRROR_EVENT_SECONDS,
    MIRROR_EVENTS,
    MIRROR_RESYNCS,
    MIRROR_WRITER,
    PENDING,
)
from streamspace_facade.plugin_views import installed_view, public_view
from streamspace_facade.repositories import repository_view
from streamspace_facade.sessions import session_view
from streamspace_facade.storage import DB_WAIT
from streamspace_facade.storage.repositories import RepositoryRow
from streamspace_facade.storage.sessions import ConnectionRow

log = logging.getLogger(__name__)


def _typed(kind: type[Any], view: Callable[[Any], dict[str, Any]]) -> View:
    """A view of the storage layer's typed row, applied to a mirror row (a dict)."""
    names = [f.name for f in dataclasses.fields(kind)]
    return lambda row: view(kind(**{name: row[name] for name in names}))


VIEWS: Views = {
    tables.SESSIONS.name: session_view,
    tables.CONNECTIONS.name: _typed(ConnectionRow, connection_view),
    tables.REPOSITORIES.name: _typed(RepositoryRow, repository_view),
    # other plugins' receivers see a plugin as users do: not its configuration or its URL
    tables.PLUGINS.name: lambda row: public_view(installed_view(row)),
}
"""Plugin events carry rows as the REST API shows them (other tables: ``outbox.plain_view``)."""

BATCH_MAX = 500
"""Watch events of one table written in one transaction at most (a table's queue holds twice
as many; a watch waits while it is full)."""
TOMBSTONE_SECONDS = 300.0
MAX_WRITTEN = 100_000
"""Versions remembered per writer (``Mirror._written``) before the memory is cleared."""
MISSING_KIND_RECHECK = 30.0
"""Seconds between looks for a mirrored kind whose CRD the API server does not serve."""


@dataclasses.dataclass(frozen=True)
class _Event:
    """A watch event waiting for the mirror's writer."""

    kind: str
    obj: Mapping[str, Any]
    key: object
    """Its key in ``metrics.PENDING`` (the mirror lag) until it is written."""


class LostLeadership(Exception):
    """The lock connection failed: another replica may now be the writer."""


class Mirror:
    def __init__(
        self,
        database_url: str,
        pool: AsyncConnectionPool,
        kube: Kube,
        namespace: str | None,
        *,
        retry_seconds: float = 2.0,
        observe_timeout: float = 5.0,
        worker: Callable[[], Coroutine[Any, Any, None]] | None = None,
        home: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.pool = pool
        self.kube = kube
        self.namespace = namespace
        self.audience = Audience(VIEWS, home)
        """Plugins of ``home`` (the facade's own namespace) hear of every namespace it serves."""
        self.retry_seconds = retry_seconds
        self.observe_timeout = observe_timeout
        self.worker = worker
        """Runs while this replica writes (the plugin event delivery worker)."""
        self._leader = False
        self.ready = asyncio.Event()
        """Set while this replica is the writer and every table has been resynced."""
        self._migrated = False
        self._resynced: dict[str, asyncio.Event] = {}
        self._lock_pid = 0
        self._writing = asyncio.Lock()  # one write at a time: the writer is one, not one per task
        self._deleted: dict[str, float] = {}  # uid → monotonic time of deletion
        self._numbers = itertools.count()  # of watch events, for their PENDING keys
        self._written: dict[str, str] = {}
        """uid → the resourceVersion this writer last stored: the same version again (a create's
        read-your-writes, then its watch event) is not written twice (decision 152)."""
        self.queued = asyncio.Event()
        """Set when a write queued plugin deliveries: wakes the delivery worker at once."""

    @property
    def leader(self) -> bool:
        """True while this replica holds the mirror lock and writes the tables."""
        return self._leader

    @leader.setter
    def leader(self, value: bool) -> None:
        self._leader = value
        MIRROR_WRITER.set(1 if value else 0)

    @property
    def lock_key(self) -> str:
        return f"streamspace.mirror:{self.namespace or '*'}"

    async def run(self) -> None:
        """Forever: become the writer when possible, mirror, and start over after failures."""
        while True:
            try:
                await self._cycle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _expected(exc):
                    log.warning(
                        "mirror interrupted (%s); retrying in %.1fs",
                        _reason(exc),
                        self.retry_seconds,
                    )
                else:
                    log.exception("mirror failed; retrying in %.1fs", self.retry_seconds)
            finally:
                self.leader = False
                self.ready.clear()
            await asyncio.sleep(self.retry_seconds)

    async def _cycle(self) -> None:
        if not self._migrated:
            await asyncio.to_thread(migrate, self.database_url)
            self._migrated = True
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True, connect_timeout=5
        ) as lock_conn:
            while not await self._try_lock(lock_conn):  # noqa: ASYNC110 (polls PostgreSQL)
                await asyncio.sleep(self.retry_seconds)
            cur = await lock_conn.execute("SELECT pg_backend_pid()")
            self._lock_pid = int((await cur.fetchone() or (0,))[0])
            # A writer whose lock connection died notices within one hold interval; wait that
            # long before writing, so that two replicas never both believe they are the writer.
            # (Every write is also fenced on the lock, see _fence.)
            await asyncio.sleep(self.retry_seconds + 0.5)
            log.info("this replica now writes the mirror (%s)", self.lock_key)
            self.leader = True
            self._written.clear()  # another writer may have stored rows since
            self._resynced = {t.name: asyncio.Event() for t in tables.TABLES}
            async with asyncio.TaskGroup() as group:
                group.create_task(self._hold(lock_conn))
                for table in tables.TABLES:
                    group.create_task(self._follow(table))
                group.create_task(self._announce_ready())
                if self.worker is not None:
                    group.create_task(self.worker(), name="event deliveries")

    async def _fence(self, conn: psycopg.AsyncConnection) -> None:
        """Refuse to write unless our lock connection still holds the mirror lock."""
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND pid = %s)",
            (self._lock_pid,),
        )
        row = await cur.fetchone()
        if not (row and row[0]):
            self.leader = False
            raise LostLeadership("the mirror lock is gone")

    async def _try_lock(self, conn: psycopg.AsyncConnection) -> bool:
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s)::bigint)", (self.lock_key,)
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _hold(self, conn: psycopg.AsyncConnection) -> None:
        """Notice a dead lock connection: the lock died with it, so stop writing."""
        while True:
            await asyncio.sleep(self.retry_seconds)
            try:
                await conn.execute("SELECT 1")
            except psycopg.Error as exc:
                raise LostLeadership(str(exc)) from None

    async def _announce_ready(self) -> None:
        await asyncio.gather(*(resynced.wait() for resynced in self._resynced.values()))
        self.ready.set()

    async def _follow(self, table: tables.Table) -> None:
        if table.name != tables.PLUGINS.name:
            # the plugins first: events derived by the other tables' resyncs go to the plugins
            # subscribed now, not to an empty table (a fresh database, a long outage)
            await self._resynced[tables.PLUGINS.name].wait()
        events: asyncio.Queue[_Event] = asyncio.Queue(2 * BATCH_MAX)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._drain(table, events))
            while True:
                try:
                    items, version = await self.kube.list(table.kind, self.namespace)
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    # the kind's CRD is not installed (an upgrade whose new CRDs were not
                    # applied yet: `helm upgrade` leaves crds/ alone): mirror it as empty and
                    # look again later, rather than stop every other table with it
                    await self._missing_kind(table)
                    continue
                async with self._writing, self.pool.connection() as conn:
                    await self._fence(conn)
                    removed = await tables.resync(conn, table, items, self.namespace, self.audience)
                self.queued.set()
                MIRROR_RESYNCS.labels(table.name).inc()
                log.info("mirror resynced %s: %d rows, %d removed", table.name, len(items), removed)
                self._resynced[table.name].set()
                # returns when the server no longer has the version reached (410): list again
                await self.kube.follow(
                    table.kind,
                    self.namespace,
                    version,
                    functools.partial(self._enqueue, table, events),
                    retry_seconds=self.retry_seconds,
                    reader="mirror",
                )
                await events.join()  # written, before the list that supersedes them

    async def _enqueue(
        self, table: tables.Table, events: asyncio.Queue[_Event], kind: str, obj: Mapping[str, Any]
    ) -> None:
        """A watch event, queued for the table's writer (waits while the queue is full)."""
        key = (id(self), table.name, next(self._numbers))
        PENDING.start(key)
        await events.put(_Event(kind, obj, key))

    async def _drain(self, table: tables.Table, events: asyncio.Queue[_Event]) -> None:
        """Forever: write what the table's watch has queued, a batch per transaction."""
        batch: list[_Event] = []
        try:
            while True:
                batch = [await events.get()]
                while len(batch) < BATCH_MAX and not events.empty():
                    batch.append(events.get_nowait())
                await self._write(table, batch)
                for event in batch:
                    MIRROR_EVENT_SECONDS.labels(table.name).observe(PENDING.done(event.key))
                    MIRROR_EVENTS.labels(table.name, event.kind).inc()
                    events.task_done()
                MIRROR_BATCH.labels(table.name).observe(len(batch))
                batch = []
        finally:
            # a failure: the next writer starts with a full resync; these are no longer pending
            while not events.empty():
                batch.append(events.get_nowait())
            for event in batch:
                PENDING.done(event.key)

    async def _missing_kind(self, table: tables.Table) -> None:
        log.warning(
            "mirror: the API server does not serve %s (is its CRD applied?); "
            "mirroring none, looking again in %.0fs",
            table.kind,
            MISSING_KIND_RECHECK,
        )
        async with self._writing, self.pool.connection() as conn:
            await self._fence(conn)
            await tables.resync(conn, table, [], self.namespace, self.audience)
        self._resynced[table.name].set()
        await asyncio.sleep(MISSING_KIND_RECHECK)

    async def _write(self, table: tables.Table, batch: list[_Event]) -> None:
        """Store watch events of one table, in order, in one transaction."""
        writes: list[tuple[str, Mapping[str, Any]]] = []
        for event in batch:
            uid = str(event.obj["metadata"]["uid"])
            if event.kind == "DELETED" or tables.is_deleted(event.obj):
                self._tombstone(uid)
            elif uid in self._deleted:
                continue  # a late event of an object already gone must not bring its row back
            elif self._stored(uid, event.obj):
                continue  # read-your-writes stored this version already: spare the statement
            writes.append((event.kind, event.obj))
        if not writes:
            return
        async with self._writing, self.pool.connection() as conn:
            await self._fence(conn)
            self._queued(await tables.write(conn, table, writes, self.audience))
        for _, obj in writes:
            self._remember(obj)

    def _stored(self, uid: str, obj: Mapping[str, Any]) -> bool:
        """This writer has stored this version of the object, or a newer one, already."""
        version = str(obj["metadata"].get("resourceVersion", ""))
        return uid in self._written and _not_older(self._written[uid], version)

    def _remember(self, obj: Mapping[str, Any]) -> None:
        version = str(obj["metadata"].get("resourceVersion", ""))
        if version and not tables.is_deleted(obj):
            if len(self._written) >= MAX_WRITTEN:
                self._written.clear()  # only an optimisation: forgetting costs a write
            self._written[str(obj["metadata"]["uid"])] = version

    def _tombstone(self, uid: str) -> None:
        now = time.monotonic()
        self._deleted[uid] = now
        self._written.pop(uid, None)
        if len(self._deleted) > 10_000:
            self._deleted = {u: t for u, t in self._deleted.items() if now - t < TOMBSTONE_SECONDS}

    async def _apply(
        self, conn: psycopg.AsyncConnection, table: tables.Table, obj: Mapping[str, Any]
    ) -> None:
        uid = str(obj["metadata"]["uid"])
        if tables.is_deleted(obj):
            self._tombstone(uid)
        elif uid in self._deleted:
            return  # a late event of an object already gone must not bring its row back
        elif self._stored(uid, obj):
            return  # stored already (the upsert would ignore it): spare the transaction
        await self._fence(conn)
        self._queued(await tables.apply(conn, table, obj, self.audience))
        self._remember(obj)

    def _queued(self, deliveries: int) -> None:
        if deliveries:
            self.queued.set()

    async def observed(self, table: tables.Table, obj: Mapping[str, Any]) -> None:
        """Read-your-writes for an object this replica has just written; never raises for
        PostgreSQL (the write it follows has happened)."""
        await self._bounded(self._observed(table, obj), table, obj["metadata"]["uid"])

    async def forget(self, table: tables.Table, uid: str) -> None:
        """Read-your-writes for a deletion: the row is gone when this returns, unless
        PostgreSQL is unavailable (then the writer removes it once it is back)."""
        await self._bounded(self._forget(table, uid), table, uid)

    async def _bounded(self, work: Awaitable[None], table: tables.Table, uid: str) -> None:
        try:
            async with asyncio.timeout(DB_WAIT + self.observe_timeout):
                await work
        except (TimeoutError, psycopg.Error, PoolTimeout) as exc:
            log.warning(
                "mirror row of %s %s not confirmed (%s); the resync will catch up",
                table.kind,
                uid,
                _reason(exc),
            )

    async def _observed(self, table: tables.Table, obj: Mapping[str, Any]) -> None:
        if self.leader:
            try:
                async with self._writing, self.pool.connection(timeout=DB_WAIT) as conn:
                    await self._apply(conn, table, obj)
            except LostLeadership:
                pass  # the new writer stores it; wait for that below
            else:
                return
        await self._wait_for(table, obj)

    async def _forget(self, table: tables.Table, uid: str) -> None:
        if self.leader:
            self._tombstone(uid)
            try:
                async with self._writing, self.pool.connection(timeout=DB_WAIT) as conn:
                    await self._fence(conn)
                    self._queued(await tables.remove(conn, table, uid, self.audience))
            except LostLeadership:
                pass  # the new writer removes it; wait for that below
            else:
                return
        await self._wait_for(table, {"metadata": {"uid": uid, "deletionTimestamp": "now"}})

    async def _wait_for(self, table: tables.Table, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        uid, version = str(meta["uid"]), str(meta.get("resourceVersion", ""))
        gone = tables.is_deleted(obj)
        deadline = time.monotonic() + self.observe_timeout
        query = f"SELECT resource_version FROM {table.name} WHERE uid = %s"  # noqa: S608 (constant)
        while time.monotonic() < deadline:
            async with self.pool.connection(timeout=DB_WAIT) as conn:
                cur = await conn.execute(query, (uid,))
                row = await cur.fetchone()
            stored = None if row is None else str(row[0])
            if gone and stored is None:
                return
            if not gone and stored is not None and _not_older(stored, version):
                return
            await asyncio.sleep(0.05)
        log.warning("mirror did not show %s %s within %.1fs", table.kind, uid, self.observe_timeout)


EXPECTED = (psycopg.Error, PoolTimeout, ApiError, LostLeadership, OSError, TimeoutError)


def _expected(exc: BaseException) -> bool:
    """Outages of PostgreSQL or the API server, possibly grouped by the TaskGroup."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_expected(e) for e in exc.exceptions)
    return isinstance(exc, EXPECTED)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_reason(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _not_older(stored: str, version: str) -> bool:
    if stored.isdigit() and version.isdigit():
        return int(stored) >= int(version)
    return stored == version


@contextlib.asynccontextmanager
async def running(mirror: Mirror) -> Any:
    task = asyncio.create_task(mirror.run(), name="mirror")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
