"""Typed application state and the per-request helpers every route uses."""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web

from streamspace.conditions import timestamp
from streamspace.config import Settings
from streamspace_facade.errors import bad_request, forbidden, invalid, unavailable
from streamspace_facade.principal import Principal
from streamspace_facade.storage import Storage


@dataclass
class QuotaBook:
    """What quota checks keep between requests (``quotas``): a lock per (namespace, user), the
    Sessions this process wrote that its watch may not show yet, Templates' default resources."""

    locks: defaultdict[tuple[str, str], asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )
    written: dict[tuple[str, str], tuple[float, dict[str, Any]]] = field(default_factory=dict)
    templates: dict[tuple[str, str], tuple[float, dict[str, dict[str, str]]]] = field(
        default_factory=dict
    )


@dataclass
class Services:
    """What the routes share; built and torn down by the app's cleanup context."""

    settings: Settings
    kube: Any = None  # streamspace_facade.kube.Kube
    storage: Storage | None = None  # None: no database configured
    mirror: Any = None  # streamspace_facade.mirror.Mirror
    auth: Any = None  # streamspace_facade.auth.Authenticator
    http: aiohttp.ClientSession | None = None
    live: Any = None  # streamspace_facade.ws.Live: the WebSocket streams
    terminals: Any = None  # streamspace_facade.terminal.Terminals: pods/exec sessions
    audit: Any = None  # streamspace_facade.audit.AuditLog
    access_key: bytes = field(default=b"", repr=False)  # signs session access credentials
    list_key: bytes = field(default=b"", repr=False)  # signs list continue tokens (paging)
    templates_seen: dict[str, float] = field(default_factory=dict)
    """Template name → monotonic time a session create last found it (``sessions``)."""
    quota_book: QuotaBook = field(default_factory=QuotaBook)
    stopping: bool = False  # SIGTERM arrived: readiness fails while requests finish

    @property
    def namespace(self) -> str:
        """The namespace new objects go to."""
        return self.settings.kubernetes.namespace

    @property
    def scope(self) -> str | None:
        """The namespace whose objects this facade serves (None: all of them)."""
        k = self.settings.kubernetes
        return None if k.all_namespaces else k.namespace

    def db(self) -> Storage:
        """The storage layer, or a 503 when no database is configured."""
        if self.storage is None:
            raise unavailable("no database configured")
        return self.storage


SERVICES = web.AppKey("services", Services)
PRINCIPAL = web.RequestKey("principal", Principal)
AUDIT = web.RequestKey("audit", dict)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def principal(request: web.Request) -> Principal:
    who: Principal = request[PRINCIPAL]
    return who


def require(request: web.Request, role: str) -> Principal:
    who = principal(request)
    if not who.at_least(role):
        raise forbidden(f"this needs the {role} role or higher")
    return who


def audit(
    request: web.Request,
    action: str,
    resource_type: str,
    resource_id: str | None,
    changes: Mapping[str, Any] | None = None,
) -> None:
    """Describe the change this request made; the audit middleware stores it."""
    request[AUDIT] = {
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "changes": dict(changes or {}),
    }


MAX_BODY_DEPTH = 32
"""Nesting levels a request body may have: every body we accept is a few levels deep, and a
deeper one would only make later code (validation, ``json.dumps``, Jsonb) recurse."""


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it.

    Every route that accepts JSON reads it here, so hostile bodies are refused in one place:
    nesting that exhausts the parser's recursion (``[[[[...``) and nesting deeper than
    ``MAX_BODY_DEPTH`` are a 400, never a 500.
    """
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except RecursionError:
        raise bad_request(f"request body nests deeper than {MAX_BODY_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    if depth(body) > MAX_BODY_DEPTH:
        raise bad_request(f"request body nests deeper than {MAX_BODY_DEPTH} levels")
    return body


def depth(value: Any) -> int:
    """How many levels of objects and arrays ``value`` nests (a scalar: 0), without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, level)
        pending.extend((child, level + 1) for child in children)
    return deepest


class Fields:
    """Collects field problems of one request and raises them all at once (422)."""

    def __init__(self, body: Mapping[str, Any], allowed: Iterable[str], where: str = "") -> None:
        self.body = body
        self.where = where
        self.errors: dict[str, str] = {}
        for key in body:
            if key not in allowed:
                self.errors[self.path(key)] = "unknown field"

    def path(self, key: str) -> str:
        return f"{self.where}{key}"

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        *,
        required: bool = False,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        if key not in self.body or self.body[key] is None:
            if required:
                self.errors[self.path(key)] = "required"
            return None
        value = self.body[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            self.errors[self.path(key)] = f"must be {names}"
            return None
        if isinstance(value, str) and "\x00" in value:
            self.errors[self.path(key)] = "must not contain NUL characters"
            return None
        if check is not None:
            problem = check(value)
            if problem:
                self.errors[self.path(key)] = problem
                return None
        return value

    def fail(self, key: str, problem: str) -> None:
        self.errors[self.path(key)] = problem

    def done(self) -> None:
        if self.errors:
            raise invalid(self.errors)


_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    list: "a list",
    dict: "an object",
}

DURATION = re.compile(r"^[0-9]+(s|m|h)$")


def duration_problem(value: str) -> str | None:
    return None if DURATION.match(value) else "must be a duration like 90s, 30m or 8h"


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid({f"query.{name}": "must be an integer"}) from None
    if not low <= value <= high:
        raise invalid({f"query.{name}": f"must be between {low} and {high}"})
    return value


def iso(value: datetime | None) -> str | None:
    """A stored time as the API writes times (RFC 3339, UTC, to the second), or None."""
    return None if value is None else timestamp(value)
