"""Bounds on WebSocket streams: how many a user (and everyone) may hold, and for how long a
credential keeps a stream open.

* :class:`StreamSlots` counts open streams per user and in total; a stream past
  ``WS_MAX_STREAMS_PER_USER`` or ``WS_MAX_STREAMS`` is refused with 429 *before* the upgrade,
  with a JSON error that names the limit. The slot is taken synchronously, so concurrent
  upgrades cannot all slip under the limit.
* :func:`recheck` authenticates an open stream's credential again every
  ``WS_REAUTH_INTERVAL``: a revoked or expired API key, or an expired JWT, closes the stream
  with code 4401 (the WebSocket twin of HTTP 401) and the reason. An unreachable database or
  identity provider does not close it: the next check decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Protocol

from streamspace_facade import metrics
from streamspace_facade.errors import ApiError
from streamspace_facade.principal import Principal

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
"""Close code of a stream whose credential is no longer valid (4000-4999: for applications)."""
TOO_MANY_STREAMS = "TOO_MANY_STREAMS"


def too_many(stream: str, limit: str, maximum: int, what: str) -> ApiError:
    metrics.WS_REFUSED.labels(stream, limit).inc()
    return ApiError(
        429,
        TOO_MANY_STREAMS,
        f"too many open streams: at most {maximum} {what} ({limit}); close one and retry",
        {"limit": limit, "max": maximum},
    )


class StreamSlots:
    """Open streams by user, bounded per user and in total."""

    def __init__(self, per_user: int, total: int) -> None:
        self.per_user = per_user
        self.total = total
        self.by_user: Counter[str] = Counter()

    @property
    def used(self) -> int:
        return self.by_user.total()

    @contextlib.contextmanager
    def slot(self, user: str, stream: str) -> Iterator[None]:
        """Hold one of ``user``'s slots for the ``with`` block; 429 when none is left."""
        if self.by_user[user] >= self.per_user:
            raise too_many(stream, "WS_MAX_STREAMS_PER_USER", self.per_user, "per user")
        if self.used >= self.total:
            raise too_many(stream, "WS_MAX_STREAMS", self.total, "on this server")
        self.by_user[user] += 1
        try:
            yield
        finally:
            self.by_user[user] -= 1
            if self.by_user[user] <= 0:
                del self.by_user[user]


class Authenticate(Protocol):
    async def __call__(self, authorization: str | None) -> Principal: ...


async def recheck(
    authenticate: Authenticate,
    authorization: str,
    who: Principal,
    interval: float,
    close: Callable[[int, str], None],
) -> None:
    """Every ``interval`` seconds, authenticate again; close the stream once that fails."""
    while True:
        await asyncio.sleep(interval)
        try:
            now = await authenticate(authorization)
        except ApiError as exc:
            if exc.status != 401 and exc.code != "USER_DISABLED":
                # 503: cannot tell now; the stream keeps its last verdict
                log.warning("cannot re-check the credential of %s: %s", who.user, exc.message)
                continue
            close(CLOSE_UNAUTHORIZED, f"credentials no longer valid: {exc.message}")
            return
        if now != who:
            close(CLOSE_UNAUTHORIZED, "credentials now name another user or role")
            return
