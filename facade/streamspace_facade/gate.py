"""The session access gate's web side: credentials for ``/connect`` and the forward-auth check.

The ingress controller in front of the sessions (ingress-nginx ``auth-url``, Traefik
ForwardAuth) calls ``GET /auth/session`` with the original request's URL in its headers before
every request to a session's host. The answer is decided by ``streamspace.auth.access.judge``
against the streams' watched copy of the Session: 200 for a valid credential of its owner or of a
user it is shared with for control, 401 without one, 403 for anyone else's (a revoked share's
included). A credential that
arrived as the ``?streamspace_access=`` query comes back as a host-only cookie, so the browser
carries it from then on (ingress-nginx copies the auth answer's ``Set-Cookie`` to the client;
Traefik does with ``addAuthCookiesToResponse``).

The route is public in the facade's sense: the credential is the gate's own, not a bearer token.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from streamspace import sharing
from streamspace.auth.access import (
    PARAMETER,
    SESSION_HEADER,
    USER_HEADER,
    Grant,
    issue,
    judge,
    original_request,
    signing_key,
)
from streamspace.conditions import timestamp
from streamspace.config import Settings
from streamspace_facade import ws
from streamspace_facade.errors import forbidden, unauthorized
from streamspace_facade.responses import json_response
from streamspace_facade.state import services

log = logging.getLogger(__name__)

AUTH_PATH = "/auth/session"


def access_key(settings: Settings) -> bytes:
    """The gate's signing key: from ``SESSION_ACCESS_SECRET``, else ``JWT_SECRET``, else random
    (then credentials hold for this process only: one replica, and a restart ends them)."""
    secret = settings.access.secret or settings.auth.jwt_secret
    if secret:
        return signing_key(secret)
    log.warning(
        "neither SESSION_ACCESS_SECRET nor JWT_SECRET is set: session credentials are signed"
        " with a key of this process only"
    )
    return secrets.token_bytes(32)


def credential(
    request: web.Request, session: Mapping[str, Any], user: str, url: str | None
) -> dict[str, Any]:
    """The connect answer's access fields: a credential for the owner and for users the session
    is shared with for control; nulls for anyone else (operators and admins may open
    connections, but the gate admits only owners and control shares)."""
    svc = services(request)
    meta, spec = session["metadata"], session.get("spec") or {}
    owner = str(spec.get("user", ""))
    if not sharing.allows(sharing.access_of(spec, user), sharing.CONTROL):
        return {"accessToken": None, "accessExpiresAt": None, "accessUrl": None}
    expires = datetime.now(UTC).replace(microsecond=0) + svc.settings.access.ttl
    grant = Grant(str(meta["namespace"]), str(meta["name"]), user, owner, expires)
    token = issue(svc.access_key, grant)
    access_url = None
    if url:
        access_url = f"{url}{'&' if '?' in url else '?'}{PARAMETER}={token}"
    return {"accessToken": token, "accessExpiresAt": timestamp(expires), "accessUrl": access_url}


async def check(request: web.Request) -> web.Response:
    """Forward auth: may the request described by the headers reach its session?"""
    svc = services(request)
    original = original_request(request.headers)
    token = original.query_token or request.cookies.get(PARAMETER)
    now = datetime.now(UTC)
    feed = (await ws.synced(request)).feed  # the watched Sessions: revokes count at once
    verdict = judge(
        svc.access_key,
        token,
        original.host,
        svc.settings.sessions.ingress_domain,
        now,
        current=lambda grant: feed.spec_of(grant.namespace, grant.session),
    )
    if verdict.status == 401:
        raise unauthorized(verdict.reason)
    if verdict.status == 403 or verdict.grant is None:
        raise forbidden(verdict.reason)
    grant = verdict.grant
    response = json_response(
        {"user": grant.user, "session": grant.session, "expiresAt": timestamp(grant.expires)},
        headers={USER_HEADER: grant.user, SESSION_HEADER: grant.session},
    )
    if original.query_token:
        response.set_cookie(
            PARAMETER,
            original.query_token,
            max_age=max(1, int((grant.expires - now).total_seconds())),
            path="/",
            httponly=True,
            secure=original.scheme == "https",
            samesite="Lax",
        )
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(AUTH_PATH, check)
