"""The ``Idempotency-Key`` middleware: a POST with a key is answered once per caller and key.

The first request claims the key in PostgreSQL, is served, and its successful answer is stored
(``IDEMPOTENCY_TTL``); a failed one releases the claim, since a refused or failed request
changed nothing and may be sent again. A retry gets the stored answer with
``Idempotent-Replayed: true``; the same key on a different request is a 422, and on a request
still being served a 409.

PostgreSQL being unreachable never fails the request: the key is then not stored, and routes
that create objects make the retry find the first one through the object itself
(``streamspace.idempotency``; the request's ``Key`` is in ``request[IDEMPOTENCY]``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from streamspace import idempotency
from streamspace.idempotency import HEADER, REPLAYED_HEADER, Key, Outcome
from streamspace_facade.errors import conflict, invalid
from streamspace_facade.state import PRINCIPAL, principal, services
from streamspace_facade.storage import StorageError

log = logging.getLogger(__name__)

IDEMPOTENCY = web.RequestKey("idempotency", Key)
"""The key of the current request, when it carries one."""

NOT_STORED = web.RequestKey("idempotency-not-stored", bool)
"""Set by a handler whose answer holds a secret (a plugin's signing secret): the answer is not
stored in PostgreSQL, only that the key was served (``REBUILD`` in place of the answer); a retry
with the same request is served again and finds what the first one made through the object,
a different request with the key is still a 422 (decision 123)."""
REBUILD = "application/vnd.streamspace.rebuild"
"""The content type stored for an answer that was not stored: serve the retry again."""

DB_WAIT = 2.0
"""Seconds to wait for a pooled connection (and twice that for the whole exchange): an outage
or a stalled connection must not hold up the request for long."""

PRUNE_EVERY = 60.0
"""Seconds between deletions of expired answers (by whichever request comes next)."""


class Pruning:
    """When expired answers were last deleted: at most every ``PRUNE_EVERY`` seconds, by the
    request that claims a key next."""

    def __init__(self) -> None:
        self._last = -PRUNE_EVERY

    def take(self) -> bool:
        """Whether this request prunes; taken at once, so concurrent requests do not all."""
        now = time.monotonic()
        if now - self._last < PRUNE_EVERY:
            return False
        self._last = now
        return True


def middleware() -> Middleware:
    """The middleware, with its own clock of when expired answers were last deleted."""
    pruning = Pruning()

    @web.middleware
    async def idempotent(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await _idempotent(request, handler, pruning)

    return idempotent


async def _idempotent(
    request: web.Request,
    handler: Handler,
    pruning: Pruning,
) -> web.StreamResponse:
    header = request.headers.get(HEADER)
    if request.method != "POST" or header is None or PRINCIPAL not in request:
        return await handler(request)
    try:
        raw_key = idempotency.parse_key(header)
    except ValueError as exc:
        raise invalid({f"header.{HEADER}": str(exc)}) from None
    who = principal(request)
    body = await request.read()  # kept by aiohttp: the handler reads the same bytes
    key = idempotency.key_for(who.user, raw_key, request.method, request.path_qs, body)
    request[IDEMPOTENCY] = key
    svc = services(request)
    claimed = False
    if svc.storage is not None:
        try:
            async with asyncio.timeout(DB_WAIT * 2):
                stored = await svc.storage.idempotency.claim(
                    who.user,
                    key,
                    svc.settings.http.idempotency_ttl,
                    prune=pruning.take(),
                    wait=DB_WAIT,
                )
        except (StorageError, TimeoutError) as exc:
            log.warning("idempotency key not checked in PostgreSQL (%s); serving the request", exc)
        else:
            outcome = idempotency.decide(stored, key)
            if outcome is Outcome.MISMATCH:
                raise invalid({f"header.{HEADER}": idempotency.REUSED})
            if outcome is Outcome.IN_PROGRESS:
                raise conflict("a request with this Idempotency-Key is still being served")
            if outcome is Outcome.REPLAY and stored is not None:
                if stored.content_type == REBUILD:
                    return await handler(request)  # it finds what the first request made
                return web.Response(
                    status=stored.status or 200,
                    text=stored.body,
                    content_type=(stored.content_type or "application/json").split(";")[0],
                    headers={REPLAYED_HEADER: "true"},
                )
            claimed = True
    try:
        response = await handler(request)
    except Exception:
        if claimed:
            await _settle(request, key, None)
        raise
    if claimed:
        await _settle(request, key, response)
    return response


async def _settle(request: web.Request, key: Key, response: web.StreamResponse | None) -> None:
    """Store a successful answer; release the claim of anything else."""
    keys = services(request).db().idempotency
    try:
        async with asyncio.timeout(DB_WAIT * 2):
            if (
                isinstance(response, web.Response)
                and 200 <= response.status < 300
                and isinstance(response.body, bytes)
            ):
                secret = bool(request.get(NOT_STORED))
                await keys.complete(
                    key,
                    response.status,
                    "" if secret else response.body.decode(),
                    REBUILD if secret else response.content_type,
                    wait=DB_WAIT,
                )
            else:
                await keys.release(key, wait=DB_WAIT)
    except (StorageError, TimeoutError, UnicodeDecodeError) as exc:
        # The request itself is done; a retry finds created objects through the objects.
        log.warning("idempotent answer not stored (%s)", exc)
