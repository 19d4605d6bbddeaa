"""The facade's one PostgreSQL pool, and driver errors turned into storage errors at its edge.

Every storage area borrows connections through ``Database.connection``; nothing else in the
facade opens one (the mirror's advisory-lock connection excepted). A ``psycopg`` error raised
while a connection is borrowed leaves as a ``StorageError``, so no caller needs the driver's
exception types to tell an outage (503) from a bug (500).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]

DB_WAIT = 10.0
"""Seconds a request waits for a pooled PostgreSQL connection before answering 503."""


class StorageError(Exception):
    """A database operation failed for a reason other than an outage (a bug, a constraint):
    nobody expects it, so the facade answers 500 and logs it."""


class StorageUnavailable(StorageError):
    """PostgreSQL cannot be reached, or no pooled connection came free in time (a
    ``PoolTimeout``, ``PoolClosed`` and ``OperationalError``): the facade answers 503."""


class Database:
    """Owns the pool: opened once at start-up (without waiting for PostgreSQL, so the facade
    starts while the database is down and answers 503 until it is up), closed at shutdown."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @classmethod
    def for_url(cls, url: str, *, size: int) -> Database:
        """The facade's pool: autocommit connections, at most ``size`` of them."""
        return cls(
            AsyncConnectionPool(
                url,
                min_size=1,
                max_size=size,
                open=False,
                kwargs={"autocommit": True, "connect_timeout": 5},
            )
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self, wait: float) -> None:
        """Raise ``StorageError`` unless PostgreSQL answers a query within ``wait`` seconds
        for a connection (readiness bounds the whole exchange)."""
        async with self.connection(wait) as conn:
            await conn.execute("SELECT 1")

    @asynccontextmanager
    async def connection(
        self, wait: float = DB_WAIT
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection (autocommit), waiting at most ``wait`` seconds for one; driver
        errors raised while it is held, by the pool or by the caller's queries, are translated."""
        try:
            async with self.pool.connection(timeout=wait) as conn:
                yield conn
        except psycopg.OperationalError as exc:  # also PoolTimeout and PoolClosed
            raise StorageUnavailable(str(exc)) from exc
        except psycopg.Error as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    async def rows(self, row: type[T], query: str, params: Params) -> list[T]:
        """Every row ``query`` answers, as ``row`` instances."""
        async with (
            self.connection() as conn,
            conn.cursor(row_factory=class_row(row)) as cur,
        ):
            await cur.execute(query, params)
            return await cur.fetchall()

    async def row(self, row: type[T], query: str, params: Params) -> T | None:
        """The first row ``query`` answers, as a ``row`` instance; None when there is none."""
        found = await self.rows(row, query, params)
        return found[0] if found else None

    async def page(
        self, row: type[T], select: str, count: str, params: Params
    ) -> tuple[list[T], int]:
        """One page (``select``, with its LIMIT and OFFSET) and how many rows match in all
        (``count``), read on one connection."""
        async with self.connection() as conn:
            cur = await conn.execute(count, params)
            total = await cur.fetchone()
            async with conn.cursor(row_factory=class_row(row)) as rows:
                await rows.execute(select, params)
                found = await rows.fetchall()
        return found, int(total[0]) if total else 0
