"""API keys: ``sk_`` followed by 43 URL-safe characters, stored only as a SHA-256 hash.

The key is shown once, when it is created. A key carries its own role, fixed when it is minted,
and can be revoked; lookups compare hashes, never keys.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

from streamspace.naming import is_dns_label

PREFIX = "sk_"
ROLES = ("user", "operator", "admin")


@dataclass(frozen=True)
class ApiKey:
    id: int
    user_id: str
    name: str
    prefix: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


INSERT_USER = "INSERT INTO users (id, role) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING"
INSERT_KEY = (
    "INSERT INTO api_keys (user_id, name, prefix, key_hash, role) VALUES (%s, %s, %s, %s, %s)"
)
LIST_KEYS = (
    "SELECT id, user_id, name, prefix, role, created_at, last_used_at, revoked_at "
    "FROM api_keys WHERE %(user)s::text IS NULL OR user_id = %(user)s ORDER BY id"
)
REVOKE_KEY = "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL"
"""The statements of key management, shared by the CLI (below, synchronous) and the facade's
storage layer (asynchronous), so both manage keys the same way."""


def check_new_key(user: str, role: str) -> None:
    """Refuse (``ValueError``) a key for a user name or role that cannot be stored."""
    if not is_dns_label(user):
        raise ValueError(f"user {user!r} must be a DNS label (lower-case letters, digits, '-')")
    if role not in ROLES:
        raise ValueError(f"role {role!r} must be one of {', '.join(ROLES)}")


def key_columns(key: str) -> tuple[str, str]:
    """What is stored of a new key: its shown prefix and its hash."""
    return key[: len(PREFIX) + 6], hash_key(key)


def create_api_key(conn: psycopg.Connection, user: str, role: str, name: str = "") -> str:
    """Create the user if needed and a key for them; return the key (the only time it is seen)."""
    check_new_key(user, role)
    key = new_key()
    with conn.transaction():
        conn.execute(INSERT_USER, (user, role))
        conn.execute(INSERT_KEY, (user, name, *key_columns(key), role))
    return key


def list_api_keys(conn: psycopg.Connection, user: str | None = None) -> list[ApiKey]:
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        cur.execute(LIST_KEYS, {"user": user})
        return cur.fetchall()


def revoke_api_key(conn: psycopg.Connection, key_id: int) -> bool:
    return conn.execute(REVOKE_KEY, (key_id,)).rowcount == 1
