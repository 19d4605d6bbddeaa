"""``idempotency_keys``: claims and stored answers of requests sent with an
``Idempotency-Key`` (the statements are ``streamspace.db.idempotency``'s)."""

from __future__ import annotations

from datetime import timedelta

from streamspace.db import idempotency
from streamspace.idempotency import Key, Stored
from streamspace_facade.storage.database import Database


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(
        self, user: str, key: Key, ttl: timedelta, *, prune: bool, wait: float
    ) -> Stored | None:
        """Claim ``key`` for a request about to be served: None when claimed, else what is
        stored for it. ``prune`` also deletes expired answers (the caller decides how often)."""
        async with self._db.connection(wait) as conn:
            stored = await idempotency.claim(conn, user, key, ttl)
            if prune:
                await idempotency.prune(conn)
        return stored

    async def complete(
        self, key: Key, status: int, body: str, content_type: str, *, wait: float
    ) -> None:
        """Store the successful answer of the request that claimed ``key``."""
        async with self._db.connection(wait) as conn:
            await idempotency.complete(conn, key, status, body, content_type)

    async def release(self, key: Key, *, wait: float) -> None:
        """Give up the claim of a request that failed (it changed nothing; it may be retried)."""
        async with self._db.connection(wait) as conn:
            await idempotency.release(conn, key)
