"""The groups of a user, read for quota selection (``quotas``): identity provider's and admin-set,
through ``streamspace.db.users.groups_of``, the one reader of them."""

from __future__ import annotations

from streamspace.db.users import groups_of
from streamspace_facade.storage.database import DB_WAIT, Database


class GroupStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of(self, user: str, *, wait: float = DB_WAIT) -> list[str]:
        """``user``'s groups, sorted; none for a user without a row."""
        async with self._db.connection(wait) as conn:
            return await groups_of(conn, user)
