"""JSON answers, encoded by orjson: the one place the facade turns Python values into JSON.

``orjson`` is several times faster than ``json`` and writes bytes, which is what goes on the
wire; a list of a thousand rows costs a fraction of a millisecond. Lists of sessions are
rendered by PostgreSQL instead (``storage.sessions``) and only framed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

JSON = "application/json"


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON bytes (keys as given; non-string keys are an error)."""
    return orjson.dumps(value)


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``web.json_response`` with orjson."""
    return web.Response(body=dumps(data), status=status, headers=headers, content_type=JSON)


def raw_json_response(body: bytes | str, *, status: int = 200) -> web.Response:
    """An answer whose JSON is already encoded (by PostgreSQL, or framed around such JSON)."""
    data = body.encode() if isinstance(body, str) else body
    return web.Response(body=data, status=status, content_type=JSON)
