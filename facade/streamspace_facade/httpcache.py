"""Conditional GETs and compression: ``ETag``/``If-None-Match`` → 304, and gzip (decision 149).

Every successful ``GET`` answer with a body carries a strong ``ETag``: a BLAKE2b digest of the
bytes sent. The body is built anyway (a page of 50 sessions is ~25 KB, hashed in microseconds),
so the tag is exact for every route and filter with no version bookkeeping; what a 304 saves is
the transfer and the client's parsing, which is what polling dashboards pay for. Answers to
authenticated callers are ``Cache-Control: private, no-cache`` (a shared cache must not keep
them, and a browser revalidates before each use) and vary on ``Authorization`` and ``Cookie``
(a signed-in browser's credential).

A client that accepts gzip gets bodies of ``GZIP_MIN_BYTES`` or more compressed (level
``GZIP_LEVEL``, no timestamp, so the same body gives the same bytes). The compressed answer is
another representation, so its tag is the identity tag with ``-gzip`` appended (as Apache does).
WebSockets and streamed answers (pod logs) pass through untouched.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from streamspace_facade.state import PRINCIPAL

GZIP_MIN_BYTES = 1024
"""Smaller bodies go as they are: gzip would save a few bytes and cost a round of zlib."""
GZIP_LEVEL = 5
"""zlib level: most of level 9's ratio on JSON at a third of its CPU."""
GZIP_IN_THREAD = 256 * 1024
"""Bodies this large are compressed off the event loop."""
PRIVATE = "private, no-cache"
_KEPT_ON_304 = frozenset({"etag", "cache-control", "vary", "access-control-allow-origin"})


def entity_tag(body: bytes) -> str:
    """The strong tag of ``body`` (quoted, as the header carries it)."""
    digest = hashlib.blake2b(body, digest_size=16).digest()
    return '"' + base64.urlsafe_b64encode(digest).rstrip(b"=").decode() + '"'


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` value accepts gzip (``gzip;q=0`` refuses it)."""
    for part in header.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "x-gzip", "*"):
            q = params.strip()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False


def matches(header: str, tag: str) -> bool:
    """Weak comparison of ``If-None-Match`` against ``tag`` (RFC 9110 §13.1.2)."""
    if header.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == tag for t in header.split(","))


@web.middleware
async def conditional(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if (
        request.method not in {"GET", "HEAD"}
        or not isinstance(response, web.Response)
        or response.prepared
        or not isinstance(response.body, bytes)
    ):
        return response
    body = response.body
    if PRINCIPAL in request:
        response.headers[hdrs.CACHE_CONTROL] = PRIVATE
        response.headers.add(hdrs.VARY, "Authorization, Cookie")  # a browser's sign-in
    compress = (
        len(body) >= GZIP_MIN_BYTES
        and hdrs.CONTENT_ENCODING not in response.headers
        and accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    )
    if len(body) >= GZIP_MIN_BYTES:
        response.headers.add(hdrs.VARY, "Accept-Encoding")
    if response.status != 200:
        return _compressed(response, body) if compress else response
    tag = entity_tag(body)
    if compress:
        tag = tag[:-1] + '-gzip"'
    response.headers[hdrs.ETAG] = tag
    if matches(request.headers.get(hdrs.IF_NONE_MATCH, "") or "-", tag):
        kept = CIMultiDict((k, v) for k, v in response.headers.items() if k.lower() in _KEPT_ON_304)
        return web.Response(status=304, headers=kept)
    if compress:
        if len(body) >= GZIP_IN_THREAD:
            response.body = await asyncio.to_thread(_gzip, body)
            response.headers[hdrs.CONTENT_ENCODING] = "gzip"
            return response
        return _compressed(response, body)
    return response


def _gzip(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def _compressed(response: web.Response, body: bytes) -> web.Response:
    response.body = _gzip(body)
    response.headers[hdrs.CONTENT_ENCODING] = "gzip"
    return response
