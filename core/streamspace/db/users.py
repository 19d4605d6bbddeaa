"""The ``users`` table: who has signed in, their role and their groups (issue 19)."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import AsyncConnection

GROUPS_OF = "SELECT array(SELECT DISTINCT unnest(idp_groups || groups)) FROM users WHERE id = %s"


async def groups_of(conn: AsyncConnection, user: str) -> list[str]:
    """The groups ``user`` is in (identity provider's and admin-set), sorted; none when unknown."""
    async with conn.cursor() as cur:
        await cur.execute(GROUPS_OF, (user,))
        row = await cur.fetchone()
    return sorted(row[0]) if row and row[0] else []


async def groups_of_many(conn: AsyncConnection, users: Sequence[str]) -> dict[str, list[str]]:
    """``groups_of`` for several users in one query; users without a row are absent."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT id, array(SELECT DISTINCT unnest(idp_groups || groups)) FROM users"
            " WHERE id = ANY(%s)",
            (list(users),),
        )
        rows = await cur.fetchall()
    return {user: sorted(groups) for user, groups in rows}
