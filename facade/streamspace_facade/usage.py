"""``GET /api/v1/analytics/usage``: session-hours running and hibernated, CPU-hours, memory
GiB-hours and GPU-hours requested, per user, template or namespace, between two times.

Computed from the mirror's history (``session_transitions``), never from counters: every span
between two transitions of a session is clipped to the window and summed. Users get their own
usage; operators and admins everyone's (``?user=`` narrows it). Prices per unit in the query
(``cpuHourPrice``, ``memoryGiBHourPrice``, ``gpuHourPrice``, ``sessionHourPrice``, any of them)
add a cost estimate per row and in all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from streamspace.conditions import timestamp
from streamspace.db.usage import GROUPS, UsageRow
from streamspace_facade.errors import invalid
from streamspace_facade.responses import json_response
from streamspace_facade.state import principal, services

DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW = timedelta(days=366)
MEASURES = {
    "runningHours": "running_hours",
    "hibernatedHours": "hibernated_hours",
    "cpuHours": "cpu_hours",
    "memoryGiBHours": "memory_gib_hours",
    "gpuHours": "gpu_hours",
}
PRICES = {
    "cpuHourPrice": "cpuHours",
    "memoryGiBHourPrice": "memoryGiBHours",
    "gpuHourPrice": "gpuHours",
    "sessionHourPrice": "runningHours",
}
PLACES = Decimal("0.0001")


def _time(request: web.Request, name: str, default: datetime) -> datetime:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid({f"query.{name}": "must be an RFC 3339 time"}) from None
    if value.tzinfo is None:
        raise invalid({f"query.{name}": "must say its time zone (e.g. Z)"})
    return value.astimezone(UTC)


def _prices(request: web.Request) -> dict[str, Decimal]:
    found = {}
    for name in PRICES:
        raw = request.query.get(name)
        if raw is None or raw == "":
            continue
        try:
            price = Decimal(raw)
        except ArithmeticError:
            price = Decimal(-1)
        if not price.is_finite() or price < 0 or price > 10**9:
            raise invalid({f"query.{name}": "must be a number from 0 to 1e9"})
        found[name] = price
    return found


def _measures(row: UsageRow) -> dict[str, Decimal]:
    return {name: Decimal(getattr(row, column)) for name, column in MEASURES.items()}


def _cost(measures: dict[str, Decimal], prices: dict[str, Decimal]) -> Decimal:
    return sum((measures[PRICES[name]] * price for name, price in prices.items()), Decimal(0))


def _view(measures: dict[str, Decimal], prices: dict[str, Decimal]) -> dict[str, Any]:
    out: dict[str, Any] = {k: float(v.quantize(PLACES)) for k, v in measures.items()}
    if prices:
        out["cost"] = float(_cost(measures, prices).quantize(PLACES))
    return out


async def usage_report(request: web.Request) -> web.Response:
    who = principal(request)
    svc = services(request)
    group_by = request.query.get("groupBy") or "user"
    if group_by not in GROUPS:
        raise invalid({"query.groupBy": f"must be one of {', '.join(GROUPS)}"})
    now = datetime.now(UTC)
    end = _time(request, "to", now)
    start = _time(request, "from", end - DEFAULT_WINDOW)
    if not start < end:
        raise invalid({"query.from": "must be before to"})
    if end - start > MAX_WINDOW:
        raise invalid({"query.from": f"the window is at most {MAX_WINDOW.days} days"})
    prices = _prices(request)
    # users see their own usage only; operators and admins anyone's
    user = request.query.get("user") or None if who.sees_everything else who.user
    rows = await svc.db().usage.report(group_by, start, end, now, user=user, namespace=svc.scope)
    items = []
    totals = dict.fromkeys(MEASURES, Decimal(0))
    for row in rows:
        measures = _measures(row)
        for name, value in measures.items():
            totals[name] += value
        items.append({"key": row.key, **_view(measures, prices)})
    body = {
        "from": timestamp(start),
        "to": timestamp(end),
        "groupBy": group_by,
        "items": items,
        "totals": _view(totals, prices),
        "prices": {name: float(price) for name, price in prices.items()},
    }
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/analytics/usage", usage_report)
