"""The ``idempotency_keys`` table: answers to POSTs with an ``Idempotency-Key``, for replay."""

from __future__ import annotations

from datetime import timedelta

from psycopg import AsyncConnection

from streamspace.idempotency import IN_PROGRESS_SECONDS, Key, Stored


async def claim(conn: AsyncConnection, user: str, key: Key, ttl: timedelta) -> Stored | None:
    """Claim ``key`` for a request about to be served: None when claimed (new, expired, or its
    first request died), else what is stored for it."""
    for _ in range(2):
        cur = await conn.execute(
            _CLAIM,
            {
                "hash": key.hash,
                "user": user,
                "fingerprint": key.fingerprint,
                "lock": IN_PROGRESS_SECONDS,
                "ttl": ttl.total_seconds(),
            },
        )
        if await cur.fetchone() is not None:
            return None
        cur = await conn.execute(
            "SELECT fingerprint, status, body, content_type FROM idempotency_keys"
            " WHERE key_hash = %s",
            (key.hash,),
        )
        row = await cur.fetchone()
        if row is not None:
            return Stored(str(row[0]), row[1], row[2], row[3])
        # pruned between the two statements: claim it again
    return Stored(key.fingerprint, None, None, None)  # busy twice over: a retry will do


_CLAIM = """
    INSERT INTO idempotency_keys (key_hash, user_id, fingerprint, locked_until, expires_at)
    VALUES (%(hash)s, %(user)s, %(fingerprint)s,
            now() + make_interval(secs => %(lock)s::float8),
            now() + make_interval(secs => %(ttl)s::float8))
    ON CONFLICT (key_hash) DO UPDATE
       SET fingerprint = EXCLUDED.fingerprint, status = NULL, body = NULL,
           content_type = NULL, locked_until = EXCLUDED.locked_until,
           expires_at = EXCLUDED.expires_at, created_at = now()
     WHERE idempotency_keys.expires_at < now()
        OR (idempotency_keys.status IS NULL AND idempotency_keys.locked_until < now())
    RETURNING 1
"""


async def complete(
    conn: AsyncConnection, key: Key, status: int, body: str, content_type: str
) -> None:
    """Store the answer of the request that claimed ``key``."""
    await conn.execute(
        "UPDATE idempotency_keys SET status = %s, body = %s, content_type = %s"
        " WHERE key_hash = %s AND fingerprint = %s AND status IS NULL",
        (status, body, content_type, key.hash, key.fingerprint),
    )


async def release(conn: AsyncConnection, key: Key) -> None:
    """Forget a claim whose request failed: a retry is served afresh."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE key_hash = %s AND fingerprint = %s AND status IS NULL",
        (key.hash, key.fingerprint),
    )


async def prune(conn: AsyncConnection) -> int:
    """Delete expired answers; the number deleted."""
    cur = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at < now()")
    return cur.rowcount
