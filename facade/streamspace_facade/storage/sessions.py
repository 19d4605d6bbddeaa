"""``sessions`` and ``connections`` (mirror tables, written by the mirror): the lists the API
serves from PostgreSQL instead of the API server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from streamspace_facade.storage.database import DB_WAIT, Database


def _ts(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


ACCESS = """CASE WHEN user_id = %(caller)s THEN 'owner'
    ELSE coalesce((SELECT s->>'access' FROM jsonb_array_elements(shared_with) s
                   WHERE s->>'user' = %(caller)s), 'admin') END"""
"""``session_access.caller_access`` in SQL: a row is listed for a user only when they own it or it
is shared with them, for operators and admins also otherwise (``admin``)."""

SESSION_JSON = f"""json_build_object(
    'id', id, 'name', id, 'namespace', namespace, 'user', user_id, 'template', template_name,
    'state', state, 'phase', coalesce(phase, 'Pending'), 'status', coalesce(phase, 'Pending'),
    'url', url, 'podName', pod_name,
    'activeConnections', active_connections, 'resources', resources,
    'persistentHome', persistent_home, 'idleTimeout', idle_timeout,
    'maxSessionDuration', max_session_duration, 'tags', to_json(tags),
    'sharedWith', shared_with, 'access', {ACCESS},
    'lastActivity', {_ts("last_activity")}, 'idleDeadline', {_ts("idle_deadline")},
    'startedAt', {_ts("started_at")}, 'hibernatedAt', {_ts("hibernated_at")},
    'schedule', schedule, 'nextStart', {_ts("next_start")}, 'nextStop', {_ts("next_stop")},
    'createdAt', {_ts("created_at")})"""
"""``sessions.caller_view`` in SQL, for lists (a test keeps the two identical)."""

_FILTERS = {
    "ns": "namespace = %(ns)s",
    "user": "user_id = %(user)s",
    "viewer": "(user_id = %(viewer)s OR %(viewer)s = ANY(shared_users))",
    "state": "state = %(state)s",
    "template": "template_name = %(template)s",
    "tag": "%(tag)s = ANY(tags)",
}
_AFTER = "(created_at, uid) < (%(after_at)s::timestamptz, %(after_uid)s::uuid)"


def _page_query(given: list[str], keyset: bool) -> str:
    """The page statement for the filters ``given``: only their conditions are in it, so the
    planner sees each shape as it is and uses the paging indexes (migration 0006)."""
    where = " AND ".join(_FILTERS[name] for name in given) or "true"
    page_where = f"{where} AND {_AFTER}" if keyset else where
    # Keyset paging, newest first: (created_at, uid) is unique, so a page deep in the list
    # reads only its own rows. The page's last sort key comes back with it, microseconds kept.
    return f"""
WITH raw AS (
    SELECT * FROM sessions WHERE {page_where}
    ORDER BY created_at DESC, uid DESC
    LIMIT %(limit)s + 1 OFFSET %(offset)s
), page AS (
    SELECT *, row_number() OVER (ORDER BY created_at DESC, uid DESC) AS rn FROM raw
)
SELECT coalesce(json_agg({SESSION_JSON} ORDER BY rn) FILTER (WHERE rn <= %(limit)s), '[]')::text,
       (SELECT count(*) FROM sessions WHERE {where}),
       count(*) > %(limit)s,
       (SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
               || ' ' || uid::text
        FROM page WHERE rn <= %(limit)s ORDER BY rn DESC LIMIT 1)
FROM page
"""  # noqa: S608 (constant fragments; values are parameters)


@dataclass(frozen=True)
class SessionList:
    """One page of sessions as the API answers it: ``items`` is the JSON array, rendered by
    PostgreSQL (a page costs the facade one string instead of a list of dicts)."""

    items: str
    total: int
    """How many sessions match the filters in all."""
    last: tuple[str, str] | None
    """When more sessions follow: the sort key (created_at with microseconds, uid) of the
    page's last one."""


@dataclass(frozen=True)
class ConnectionRow:
    id: str
    session_id: str
    user_id: str
    client_ip: str | None
    user_agent: str | None
    state: str
    connected_at: datetime | None
    last_heartbeat: datetime | None
    created_at: datetime


class SessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list_json(
        self,
        *,
        namespace: str | None,
        user: str | None = None,
        state: str | None = None,
        template: str | None = None,
        tag: str | None = None,
        viewer: str | None = None,
        caller: str = "",
        limit: int = 100,
        offset: int = 0,
        after: tuple[str, str] | None = None,
    ) -> SessionList:
        """A page of the sessions matching every filter given (None: any), newest first:
        ``limit`` of them after the one whose sort key is ``after`` (or from ``offset``).
        ``viewer``: only sessions they own or that are shared with them; ``caller``: whose
        ``access`` each item states."""
        params = {
            "ns": namespace,
            "user": user,
            "state": state,
            "template": template,
            "tag": tag,
            "viewer": viewer,
            "caller": caller,
            "limit": limit,
            "offset": offset,
            "after_at": None if after is None else after[0],
            "after_uid": None if after is None else after[1],
        }
        query = _page_query([k for k in _FILTERS if params[k] is not None], after is not None)
        async with self._db.connection(DB_WAIT) as conn:
            cur = await conn.execute(query, params)
            items, total, more, last = await cur.fetchone() or ("[]", 0, False, None)
        at, _, uid = (last or "").partition(" ")
        return SessionList(items, total, (at, uid) if more and last else None)

    async def connections(self, namespace: str, session: str) -> list[ConnectionRow]:
        """The Connections of one session, oldest first."""
        return await self._db.rows(
            ConnectionRow,
            "SELECT id, session_id, user_id, client_ip, user_agent, state, connected_at, "
            "last_heartbeat, created_at FROM connections "
            "WHERE namespace = %s AND session_id = %s ORDER BY created_at, id",
            (namespace, session),
        )
