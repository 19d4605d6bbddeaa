"""Admin-set limits at the REST edge: per-user rate limits, and session caps as 403 answers.

Rate limits are token buckets per user, kept in this process (``RATE_LIMIT_CREATE`` on
``POST /api/v1/sessions``, ``RATE_LIMIT_CONNECT`` on ``GET /api/v1/sessions/{id}/connect``). A
refused request is a 429 with ``Retry-After`` and a JSON error naming the limit. With several
facade replicas each keeps its own buckets, so a user's rate is at most replicas x the setting.

The caps on one session (resources, idle timeout, maximum duration) are decided by
``streamspace.limits``; :func:`enforce_caps` turns a refusal into the API's error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from streamspace.config import LimitSettings, Rate
from streamspace.limits import (
    LIMIT_EXCEEDED,
    RATE_LIMITED,
    Bucket,
    InvalidValue,
    is_full,
    retry_after,
    session_violations,
    take,
)
from streamspace_facade.errors import ApiError, invalid
from streamspace_facade.responses import json_response
from streamspace_facade.state import PRINCIPAL, principal

RATE_LIMITED_ROUTES = {
    ("POST", "/api/v1/sessions"): "RATE_LIMIT_CREATE",
    ("GET", "/api/v1/sessions/{id}/connect"): "RATE_LIMIT_CONNECT",
}
"""(method, route template) → the setting that limits how often one user may call it."""

MAX_BUCKETS = 10_000
"""Buckets kept before the full ones (users who have not called for a while) are dropped."""


class RateLimiter:
    """Token buckets per (limit, user); ``clock`` is monotonic seconds (injected by tests)."""

    def __init__(self, limits: LimitSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.rates: dict[str, Rate | None] = {
            "RATE_LIMIT_CREATE": limits.create_rate,
            "RATE_LIMIT_CONNECT": limits.connect_rate,
        }
        self.clock = clock
        self.buckets: dict[tuple[str, str], Bucket] = {}

    def check(self, limit: str, user: str) -> ApiError | None:
        """None when ``user`` may make one more call under ``limit``, else the 429 to answer."""
        rate = self.rates[limit]
        if rate is None:
            return None
        now = self.clock()
        bucket, wait = take(self.buckets.get((limit, user)), rate, now)
        self.buckets[(limit, user)] = bucket
        if len(self.buckets) > MAX_BUCKETS:
            self._forget_full(now)
        if not wait:
            return None
        seconds = retry_after(wait)
        return ApiError(
            429,
            RATE_LIMITED,
            f"too many requests: {limit} allows {rate} per user; retry in {seconds}s",
            {"limit": limit, "allowed": str(rate), "retryAfter": seconds},
        )

    def _forget_full(self, now: float) -> None:
        self.buckets = {
            k: b
            for k, b in self.buckets.items()
            if (rate := self.rates[k[0]]) is not None and not is_full(b, rate, now)
        }


def rate_limits(limits: LimitSettings) -> Middleware:
    """The middleware enforcing ``RATE_LIMITED_ROUTES`` for authenticated callers."""
    limiter = RateLimiter(limits)

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        limit = RATE_LIMITED_ROUTES.get(
            (request.method, resource.canonical if resource is not None else "")
        )
        if limit is not None and PRINCIPAL in request:
            refused = limiter.check(limit, principal(request).user)
            if refused is not None:
                return json_response(
                    refused.body(),
                    status=refused.status,
                    headers={"Retry-After": str(refused.details["retryAfter"])},
                )
        return await handler(request)

    return rate_limit


def enforce_caps(spec: Mapping[str, Any], limits: LimitSettings) -> None:
    """Refuse (403 ``LIMIT_EXCEEDED``) a Session spec of a request that breaks any cap."""
    try:
        found = session_violations(spec, limits)
    except InvalidValue as exc:
        raise invalid({exc.field: exc.problem}) from None
    if found:
        raise ApiError(
            403,
            LIMIT_EXCEEDED,
            "; ".join(v.message for v in found),
            {**found[0].details(), "violations": [v.details() for v in found]},
        )
