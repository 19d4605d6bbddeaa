"""List paging: one convention for every list route (decision 147).

Every list takes ``limit`` (a default and a maximum per route) and ``continue``, an opaque token
from the previous page; it answers ``{"<plural>": [...], "total": n, "limit": l, "continue":
token or null}``. Like Kubernetes' ``continue``, the token holds the sort key of the last item
served (keyset paging): the next page starts after it, so pages never repeat or skip an item
that stayed while others were added or removed, and a page deep in 10,000 rows costs what the
first does. Lists that pages by number in the seed API (the template and plugin catalogs, the
delivery log) still take ``page`` (answering ``page`` too); ``page`` with ``continue`` is a 422.

Tokens are signed (HMAC-SHA256 with a key derived from the session access key, so every replica
sharing ``SESSION_ACCESS_SECRET`` or ``JWT_SECRET`` accepts the others' tokens) and bound to the
route and its filters: a token edited, or used with other filters, is a 422 naming
``query.continue``, never a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiohttp import web

from streamspace_facade.errors import invalid
from streamspace_facade.state import query_int, services

T = TypeVar("T")
Key = tuple[Any, ...]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_TOKEN = 2048
"""Characters a ``continue`` token may have (ours are under 200)."""
CONTINUE = "query.continue"


def token_key(access_key: bytes) -> bytes:
    """The key continue tokens are signed with: its own, derived from the access key."""
    return hmac.new(access_key, b"streamspace list continue tokens", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Window:
    """Which part of a list a request asks for."""

    limit: int
    after: Key | None = None
    """Keyset paging: the sort key of the last item of the previous page (None: from the top)."""
    page: int | None = None
    """Numbered paging (``page``, seed API compatibility); ``offset`` follows from it."""
    scope: str = ""
    filters: str = ""
    """A digest of the filters the list was asked with (a token binds them)."""

    @property
    def offset(self) -> int:
        return 0 if self.page is None else (self.page - 1) * self.limit


def window(
    request: web.Request,
    scope: str,
    filters: Mapping[str, Any] | None = None,
    *,
    default: int = DEFAULT_LIMIT,
    maximum: int = MAX_LIMIT,
    numbered: bool = False,
) -> Window:
    """The page ``request`` asks for. ``scope`` names the list; ``filters`` are every query
    value (and the caller, where the list depends on who asks) that shapes it, so a token only
    continues the list it came from. ``numbered``: ``page`` is accepted too."""
    limit = query_int(request, "limit", default, 1, maximum)
    shape = sorted((k, "" if v is None else str(v)) for k, v in (filters or {}).items())
    bound = _b64(hashlib.sha256(orjson.dumps(shape)).digest()[:12])
    raw = request.query.get("continue") or None
    page = None
    if numbered and request.query.get("page"):
        page = query_int(request, "page", 1, 1, 1_000_000)
        if raw is not None:
            raise invalid({CONTINUE: "give either page or continue, not both"})
    after = None if raw is None else _read_token(request, raw, scope, bound)
    return Window(limit, after, page, scope, bound)


def _signature(request: web.Request, payload: bytes) -> bytes:
    return hmac.new(services(request).list_key, payload, hashlib.sha256).digest()[:16]


def _read_token(request: web.Request, raw: str, scope: str, bound: str) -> Key:
    if len(raw) > MAX_TOKEN or raw.count(".") != 1:
        raise invalid({CONTINUE: "not a continue token of this list"})
    body, _, mac = raw.partition(".")
    try:
        payload = _unb64(body)
    except (binascii.Error, ValueError):
        raise invalid({CONTINUE: "not a continue token of this list"}) from None
    # compared as text: base64 decoding ignores the spare bits of a last character, and a
    # token must be exactly the one we wrote
    expected = _b64(_signature(request, payload))
    if not hmac.compare_digest(mac.encode(), expected.encode()) or _b64(payload) != body:
        raise invalid({CONTINUE: "continue token was altered or comes from another server"})
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise invalid({CONTINUE: "not a continue token of this list"}) from None
    if (
        not isinstance(data, dict)
        or data.get("s") != scope
        or data.get("f") != bound
        or not isinstance(data.get("k"), list)
    ):
        raise invalid({CONTINUE: "continue token belongs to another list or other filters"})
    return tuple(data["k"])


def make_token(request: web.Request, win: Window, key: Key) -> str:
    """The token that continues ``win``'s list after the item whose sort key is ``key``."""
    payload = orjson.dumps({"s": win.scope, "f": win.filters, "k": list(key)})
    return f"{_b64(payload)}.{_b64(_signature(request, payload))}"


def envelope(
    request: web.Request,
    win: Window,
    plural: str,
    items: list[Any],
    *,
    total: int,
    last: Key | None,
) -> dict[str, Any]:
    """The list answer; ``last`` is the sort key of the page's last item when more follow."""
    answer: dict[str, Any] = {plural: items, "total": total, "limit": win.limit}
    if win.page is not None:
        answer["page"] = win.page
    answer["continue"] = None if last is None else make_token(request, win, last)
    return answer


def in_memory(
    request: web.Request,
    win: Window,
    plural: str,
    rows: Sequence[T],
    *,
    key: Callable[[T], Key],
    view: Callable[[T], Any],
) -> dict[str, Any]:
    """Page a short list read whole (API keys, repositories, templates, installed plugins,
    connections), ascending by ``key``: unique, of strings and numbers (compared as Python
    compares them, so the order is the same on every replica and in every token)."""
    rows = sorted(rows, key=key)
    start = win.offset
    if win.after is not None:
        after = list(win.after)
        start = next((i for i, r in enumerate(rows) if list(key(r)) > after), len(rows))
    chosen = rows[start : start + win.limit]
    more = start + win.limit < len(rows)
    last = key(chosen[-1]) if more and chosen else None
    return envelope(request, win, plural, [view(r) for r in chosen], total=len(rows), last=last)
