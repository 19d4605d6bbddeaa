"""Users and groups (issue 19): who has signed in, with the groups quotas are chosen by.

``Directory`` stands between authentication and the ``users`` table. Every authenticated request
passes it: the first request of a user makes their row (``user.created``), a credential whose
role or groups differ from the row updates it (``user.updated``), a browser sign-in moves
``last_login`` (``user.login``), and a user an admin disabled is refused (403 ``USER_DISABLED``).
What it read is kept for ``API_KEY_CACHE_TTL`` per user, so a busy user costs one query per
interval, not one per request; a change made through this process is seen by it at once, by
other replicas within that interval. When PostgreSQL cannot answer, the caller goes on with the
groups their credential names and without the disabled check (an outage must not stop the routes
that need only the Kubernetes API).

Routes: ``GET /api/v1/users`` (operators and admins; ``?group=``), ``GET /api/v1/users/{id}``
(the user themself, operators and admins), ``PATCH`` and ``DELETE`` (admins). An admin sets
``groups`` (added to the identity provider's), ``disabled``, ``email`` and ``name``; never the
role, which comes from the identity provider or the API key alone (decision 196).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from streamspace.conditions import timestamp
from streamspace.naming import is_dns_label
from streamspace_facade import paging, quotas
from streamspace_facade.errors import ApiError, invalid, not_found
from streamspace_facade.principal import Principal
from streamspace_facade.responses import json_response
from streamspace_facade.state import Fields, audit, json_body, principal, require, services
from streamspace_facade.storage import StorageError
from streamspace_facade.storage.users import Seen, UserRow, UserStore

log = logging.getLogger(__name__)

DB_TIMEOUT = 2.0
MAX_CACHED_USERS = 10_000
GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
MAX_ADMIN_GROUPS = 100


def disabled_error() -> ApiError:
    return ApiError(403, "USER_DISABLED", "this user is disabled; ask an administrator")


class Directory:
    """The users table as authentication sees it; one per application."""

    def __init__(
        self, store: UserStore, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._known: dict[str, tuple[UserRow, Seen, float]] = {}

    async def admit(self, who: Principal, seen: Seen) -> Principal:
        """``who`` with their groups; 403 when disabled, 503 when that cannot be told."""
        row = self._fresh(seen)
        if row is None:
            try:
                row = await self._store.seen(seen, wait=DB_TIMEOUT)
            except StorageError as exc:  # an outage, or the schema not migrated yet
                # routes that need only the Kubernetes API keep working through an outage: the
                # caller goes on with the groups their credential names (decision 195)
                log.warning("cannot read user %s, admitted unchecked: %s", who.user, exc)
                return dataclasses.replace(who, groups=tuple(seen.groups or ()))
            self._keep(row, seen)
        if row.disabled:
            raise disabled_error()
        return dataclasses.replace(who, groups=row.all_groups)

    def _fresh(self, seen: Seen) -> UserRow | None:
        found = self._known.get(seen.user)
        if found is None:
            return None
        row, before, until = found
        if self._clock() >= until or before != seen:
            del self._known[seen.user]
            return None
        return row

    def _keep(self, row: UserRow, seen: Seen) -> None:
        if len(self._known) >= MAX_CACHED_USERS:
            self._known.clear()
        self._known[row.id] = (row, seen, self._clock() + self._ttl)

    def forget(self, user: str) -> None:
        """An admin changed ``user``: read the row again on their next request."""
        self._known.pop(user, None)

    async def logged_in(self, user: str) -> None:
        """A browser of ``user`` signed in (``user.login``)."""
        await self._store.logged_in(user)


def user_view(row: UserRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "email": row.email,
        "name": row.name,
        "role": row.role,
        "groups": list(row.all_groups),
        "identityProviderGroups": row.idp_groups,
        "adminGroups": row.groups,
        "disabled": row.disabled,
        "createdAt": timestamp(row.created_at),
        "lastLogin": row.last_login and timestamp(row.last_login),
    }


def _store(request: web.Request) -> UserStore:
    return services(request).db().users


async def list_users(request: web.Request) -> web.Response:
    require(request, "operator")
    group = request.query.get("group") or None
    win = paging.window(request, "users", {"group": group})
    rows = await _store(request).list(group)
    return json_response(
        paging.in_memory(request, win, "users", rows, key=lambda r: (r.id,), view=user_view)
    )


def _user_id(request: web.Request) -> str:
    """The ``{id}`` of the path; someone else's is 404 to a plain user (nothing is revealed)."""
    user = request.match_info["id"]
    who = principal(request)
    if not is_dns_label(user) or (user != who.user and not who.at_least("operator")):
        raise not_found("user", user)
    return user


async def get_user(request: web.Request) -> web.Response:
    user = _user_id(request)
    row = await _store(request).get(user)
    if row is None:
        raise not_found("user", user)
    return json_response(user_view(row))


def _groups_problem(value: list[Any]) -> str | None:
    if len(value) > MAX_ADMIN_GROUPS:
        return f"at most {MAX_ADMIN_GROUPS} groups"
    bad = [g for g in value if not isinstance(g, str) or not GROUP_NAME.match(g)]
    if bad:
        return "each group is 1-128 letters, digits or ._:@/- starting with a letter or digit"
    return None


def _text_problem(value: str) -> str | None:
    return None if len(value) <= 256 else "at most 256 characters"


async def patch_user(request: web.Request) -> web.Response:
    who = require(request, "admin")
    user = _user_id(request)
    fields = Fields(await json_body(request), {"groups", "disabled", "email", "name"})
    groups = fields.get("groups", list, check=_groups_problem)
    disabled = fields.get("disabled", bool)
    email = fields.get("email", str, check=_text_problem)
    name = fields.get("name", str, check=_text_problem)
    if disabled and user == who.user:
        fields.fail("disabled", "an admin cannot disable themself")
    fields.done()
    svc = services(request)
    row = await svc.db().users.patch(user, groups=groups, disabled=disabled, email=email, name=name)
    if row is None:
        raise not_found("user", user)
    if svc.auth.users is not None:
        svc.auth.users.forget(user)
    changes = {k: v for k, v in (("groups", groups), ("disabled", disabled)) if v is not None}
    audit(request, "update", "user", user, changes)
    return json_response(user_view(row))


async def delete_user(request: web.Request) -> web.Response:
    who = require(request, "admin")
    user = _user_id(request)
    if user == who.user:
        raise invalid({"id": "an admin cannot delete themself"})
    svc = services(request)
    row = await svc.db().users.delete(user)
    if row is None:
        raise not_found("user", user)
    if svc.auth.users is not None:
        svc.auth.users.forget(user)
    svc.auth.keys.forget_user(user)  # their API keys went with the row (cascade)
    audit(request, "delete", "user", user)
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    """Who the caller is, their groups, what their user row says, and the SessionQuota that
    governs them in the facade's namespace with what they use of it (null: none)."""
    who = principal(request)
    svc = services(request)
    body: dict[str, Any] = dict(who.view)
    if svc.storage is not None:
        row = await svc.storage.users.get(who.user)
        if row is not None:
            body.update(
                email=row.email,
                name=row.name,
                lastLogin=row.last_login and timestamp(row.last_login),
            )
    body["quota"] = await quotas.quota_view(request, who)
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/me", me)
    router.add_get("/api/v1/users", list_users)
    router.add_get("/api/v1/users/{id}", get_user)
    router.add_patch("/api/v1/users/{id}", patch_user)
    router.add_delete("/api/v1/users/{id}", delete_user)
