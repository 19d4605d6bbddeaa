"""``api_keys``: the key lookup of every API-key request, and key management for admins.

The management statements are ``streamspace.auth.apikeys``'s, shared with the CLI's
``streamspace token``; here they run on the facade's pool instead of a connection of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.rows import class_row

from streamspace.auth.apikeys import (
    INSERT_KEY,
    INSERT_USER,
    LIST_KEYS,
    REVOKE_KEY,
    ApiKey,
    check_new_key,
    key_columns,
    new_key,
)
from streamspace_facade.storage.database import DB_WAIT, Database


@dataclass(frozen=True)
class KeyOwner:
    """Who a valid (unrevoked, unexpired) key belongs to, and the role it carries."""

    id: int
    user_id: str
    role: str
    stale: bool  # last used over a minute ago (or never): worth recording this use
    valid_for: float | None  # seconds until it expires (None: never)


_LOOKUP = """
SELECT id, user_id, role,
       last_used_at IS NULL OR last_used_at < now() - interval '1 minute' AS stale,
       extract(epoch FROM expires_at - now())::float8 AS valid_for
FROM api_keys
WHERE key_hash = %s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
"""
# at most one write a minute per key: a busy key must not turn every request into a write
_TOUCH = """
UPDATE api_keys SET last_used_at = now()
WHERE id = %s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""


class ApiKeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def owner(self, digest: str, *, wait: float) -> KeyOwner | None:
        """The owner of the key whose hash (``hash_key``) is ``digest``, recording its use;
        None if it is unknown, revoked or expired."""
        async with (
            self._db.connection(wait) as conn,
            conn.cursor(row_factory=class_row(KeyOwner)) as cur,
        ):
            await cur.execute(_LOOKUP, (digest,))
            row = await cur.fetchone()
            if row is not None and row.stale:
                await cur.execute(_TOUCH, (row.id,))
        return row

    async def list(self, user: str | None = None) -> list[ApiKey]:
        """Every key (of ``user`` only, if given), oldest first."""
        async with (
            self._db.connection(DB_WAIT) as conn,
            conn.cursor(row_factory=class_row(ApiKey)) as cur,
        ):
            await cur.execute(LIST_KEYS, {"user": user})
            return await cur.fetchall()

    async def create(self, user: str, role: str, name: str = "") -> str:
        """Create the user if needed and a key for them; the key (the only time it is seen).
        A user name or role that cannot be stored is a ``ValueError``."""
        check_new_key(user, role)
        key = new_key()
        async with self._db.connection(DB_WAIT) as conn, conn.transaction():
            await conn.execute(INSERT_USER, (user, role))
            await conn.execute(INSERT_KEY, (user, name, *key_columns(key), role))
        return key

    async def revoke(self, key_id: int) -> bool:
        """Revoke a key; False when there is no unrevoked key of that id."""
        async with self._db.connection(DB_WAIT) as conn:
            cur = await conn.execute(REVOKE_KEY, (key_id,))
            return cur.rowcount == 1
