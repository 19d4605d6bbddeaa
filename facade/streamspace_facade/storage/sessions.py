"""``sessions`` and ``connections`` (mirror tables, written by the mirror): the lists the API
serves from PostgreSQL instead of the API server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from streamspace_facade.storage.database import DB_WAIT, Database


def _ts(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


SESSION_JSON = f"""json_build_object(
    'id', id, 'name', id, 'namespace', namespace, 'user', user_id, 'template', template_name,
    'state', state, 'phase', coalesce(phase, 'Pending'), 'status', coalesce(phase, 'Pending'),
    'url', url, 'podName', pod_name,
    'activeConnections', active_connections, 'resources', resources,
    'persistentHome', persistent_home, 'idleTimeout', idle_timeout,
    'maxSessionDuration', max_session_duration, 'tags', to_json(tags),
    'lastActivity', {_ts("last_activity")}, 'idleDeadline', {_ts("idle_deadline")},
    'startedAt', {_ts("started_at")}, 'hibernatedAt', {_ts("hibernated_at")},
    'createdAt', {_ts("created_at")})"""
"""``sessions.session_view`` in SQL, for lists (a test keeps the two identical)."""

_LIST = f"""
SELECT coalesce(json_agg({SESSION_JSON} ORDER BY created_at DESC, id), '[]')::text, count(*)
FROM sessions
WHERE (%(ns)s::text IS NULL OR namespace = %(ns)s)
  AND (%(user)s::text IS NULL OR user_id = %(user)s)
  AND (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(template)s::text IS NULL OR template_name = %(template)s)
  AND (%(tag)s::text IS NULL OR %(tag)s = ANY(tags))
"""  # noqa: S608 (a constant expression; values are parameters)


@dataclass(frozen=True)
class SessionList:
    """A session list as the API answers it: ``items`` is the JSON array, rendered by
    PostgreSQL (a thousand sessions cost the facade one string instead of a thousand dicts)."""

    items: str
    total: int


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
    ) -> SessionList:
        """The sessions matching every filter given (None: any), newest first."""
        params = {"ns": namespace, "user": user, "state": state, "template": template, "tag": tag}
        async with self._db.connection(DB_WAIT) as conn:
            cur = await conn.execute(_LIST, params)
            items, total = await cur.fetchone() or ("[]", 0)
        return SessionList(items, total)

    async def connections(self, namespace: str, session: str) -> list[ConnectionRow]:
        """The Connections of one session, oldest first."""
        return await self._db.rows(
            ConnectionRow,
            "SELECT id, session_id, user_id, client_ip, user_agent, state, connected_at, "
            "last_heartbeat, created_at FROM connections "
            "WHERE namespace = %s AND session_id = %s ORDER BY created_at, id",
            (namespace, session),
        )
