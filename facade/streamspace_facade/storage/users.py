"""``users``: the row each signed-in user has, written on first sight and on every sign-in, read
by the user routes; each change stores its plugin events (``user.*``) in the same transaction.

A user's effective groups are the identity provider's (``idp_groups``, replaced whenever a
credential says which groups its holder is in) united with the groups an admin set
(``groups``). The role is the one the credential carried last (roles come from the identity
provider or the API key, never from this table).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from streamspace.db import outbox
from streamspace.db.outbox import Audience
from streamspace_facade.storage.database import DB_WAIT, Database, StorageError

COLUMNS = "id, email, name, role, idp_groups, groups, disabled, created_at, last_login, updated_at"


@dataclass(frozen=True)
class UserRow:
    id: str
    email: str | None
    name: str | None
    role: str
    idp_groups: list[str]
    groups: list[str]
    disabled: bool
    created_at: datetime
    last_login: datetime | None
    updated_at: datetime

    @property
    def all_groups(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.idp_groups) | set(self.groups)))


@dataclass(frozen=True)
class Seen:
    """What one credential says of its holder."""

    user: str
    role: str
    groups: Sequence[str] | None  # None: the credential does not say (API keys)
    email: str | None = None
    name: str | None = None


_SELECT_FOR_UPDATE = f"SELECT {COLUMNS} FROM users WHERE id = %s FOR UPDATE"  # noqa: S608
_UPSERT = f"""
INSERT INTO users (id, role, idp_groups, email, name)
VALUES (%(user)s, %(role)s, coalesce(%(groups)s, '{{}}'::text[]), %(email)s, %(name)s)
ON CONFLICT (id) DO UPDATE SET
    role = excluded.role,
    idp_groups = coalesce(%(groups)s, users.idp_groups),
    email = coalesce(excluded.email, users.email),
    name = coalesce(excluded.name, users.name),
    updated_at = now()
RETURNING {COLUMNS}
"""  # noqa: S608 (constants)
_PATCH = f"""
UPDATE users SET groups = coalesce(%(groups)s, groups), disabled = coalesce(%(disabled)s, disabled),
    email = coalesce(%(email)s, email), name = coalesce(%(name)s, name), updated_at = now()
WHERE id = %(user)s RETURNING {COLUMNS}
"""  # noqa: S608
_LOGIN = f"UPDATE users SET last_login = now() WHERE id = %(user)s RETURNING {COLUMNS}"  # noqa: S608
_DELETE = "DELETE FROM users WHERE id = %(user)s"


class UserStore:
    def __init__(self, db: Database, audience: Audience) -> None:
        self._db = db
        self._audience = audience  # user events go to the plugins of the facade's namespace

    async def _change(
        self,
        user: str,
        statement: str,
        params: Mapping[str, Any],
        *,
        wait: float = DB_WAIT,
        skip: Callable[[Mapping[str, Any]], bool] | None = None,
        insert: bool = False,
    ) -> tuple[UserRow | None, UserRow | None]:
        """Run ``statement`` on the row of ``user`` (locked) and store the events of the
        change in the same transaction; the row before and after. Nothing is run when there is
        no row (unless ``insert``) or when ``skip`` says the write would change nothing."""
        async with self._db.connection(wait) as conn, conn.transaction():
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(_SELECT_FOR_UPDATE, (user,))
                old = await cur.fetchone()
                if old is None and not insert:
                    return None, None
                if old is not None and skip is not None and skip(old):
                    return UserRow(**old), UserRow(**old)
                await cur.execute(statement, params)
                new = await cur.fetchone() if cur.description else None
            home = self._audience.home or ""
            rows = [None if r is None else {**r, "namespace": home} for r in (old, new)]
            await outbox.record(conn, "users", [(rows[0], rows[1])], self._audience)
        return (None if old is None else UserRow(**old)), (None if new is None else UserRow(**new))

    async def seen(self, who: Seen, *, wait: float = DB_WAIT) -> UserRow:
        """Record that ``who`` authenticated: the row is made on first sight and its role, IdP
        groups, email and name kept current (``logged_in`` moves ``last_login``)."""
        params = {
            "user": who.user,
            "role": who.role,
            "groups": None if who.groups is None else sorted(set(who.groups)),
            "email": who.email,
            "name": who.name,
        }
        _, row = await self._change(
            who.user, _UPSERT, params, wait=wait, insert=True, skip=lambda old: _unchanged(old, who)
        )
        if row is None:
            raise StorageError("the users upsert returned no row")
        return row

    async def logged_in(self, user: str) -> UserRow | None:
        """Move ``last_login`` of ``user`` (a browser just signed in); None without a row."""
        return (await self._change(user, _LOGIN, {"user": user}))[1]

    async def get(self, user: str) -> UserRow | None:
        return await self._db.row(UserRow, f"SELECT {COLUMNS} FROM users WHERE id = %s", (user,))  # noqa: S608

    async def list(self, group: str | None = None) -> list[UserRow]:
        """Every user (in ``group``, by either source, if given), by name."""
        where = " WHERE %(group)s = ANY(idp_groups || groups)" if group else ""
        return await self._db.rows(
            UserRow,
            f"SELECT {COLUMNS} FROM users{where} ORDER BY id",  # noqa: S608 (constants)
            {"group": group},
        )

    async def patch(
        self,
        user: str,
        *,
        groups: Sequence[str] | None = None,
        disabled: bool | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> UserRow | None:
        """An admin's change; None when there is no such user."""
        params = {
            "user": user,
            "groups": None if groups is None else sorted(set(groups)),
            "disabled": disabled,
            "email": email,
            "name": name,
        }
        return (await self._change(user, _PATCH, params))[1]

    async def delete(self, user: str) -> UserRow | None:
        """Remove the row (and, by cascade, the user's API keys); None when there was none.
        The answer is the row as it was."""
        return (await self._change(user, _DELETE, {"user": user}))[0]


def _unchanged(old: Mapping[str, Any], who: Seen) -> bool:
    """True when ``seen`` would write nothing new over ``old`` for ``who``."""
    return (
        old["role"] == who.role
        and (who.groups is None or old["idp_groups"] == sorted(set(who.groups)))
        and (who.email is None or old["email"] == who.email)
        and (who.name is None or old["name"] == who.name)
    )
