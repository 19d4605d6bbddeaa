"""Admin-set limits as pure decisions: session caps, and the token bucket of the rate limits.

``session_violations`` checks what a request asks of one session (resources, idle timeout,
maximum duration) against ``LimitSettings``; the facade refuses a create or an update that has
any. ``take`` is one step of a token bucket: the facade keeps a bucket per user and limit, and
this says whether a request may pass and, if not, when it could.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from streamspace.config import BASE_RESOURCES, LimitSettings, Rate
from streamspace.durations import format_duration, parse_duration
from streamspace.quantities import Quantity, parse_quantity

LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
"""The error code of a request refused by a cap."""

RATE_LIMITED = "RATE_LIMITED"
"""The error code of a request refused by a rate limit."""

_CAP_NAMES = {
    "cpu": "MAX_SESSION_CPU",
    "memory": "MAX_SESSION_MEMORY",
    "ephemeral-storage": "MAX_SESSION_EPHEMERAL_STORAGE",
}
EXTENDED_LIMIT = "ALLOWED_EXTENDED_RESOURCES"


@dataclass(frozen=True)
class Violation:
    """One value of a request above its cap; ``limit`` names the setting that sets the cap."""

    limit: str
    field: str
    requested: str
    allowed: str

    @property
    def message(self) -> str:
        return f"{self.field} {self.requested} is above the limit {self.limit}={self.allowed}"

    def details(self) -> dict[str, str]:
        return {
            "limit": self.limit,
            "field": self.field,
            "requested": self.requested,
            "allowed": self.allowed,
        }


class InvalidValue(ValueError):
    """A value that is not a quantity or duration at all (a 422, not a limit)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _cap(name: str, limits: LimitSettings) -> tuple[str, Quantity | None] | None:
    """The setting that caps resource ``name`` and its value; None: not allowed at all."""
    if name == "cpu":
        return _CAP_NAMES[name], limits.max_cpu
    if name == "memory":
        return _CAP_NAMES[name], limits.max_memory
    if name == "ephemeral-storage":
        return _CAP_NAMES[name], limits.max_ephemeral_storage
    if name in limits.extended_resources:
        return EXTENDED_LIMIT, limits.extended_resources[name]
    return None


def resource_violations(resources: Mapping[str, Any], limits: LimitSettings) -> list[Violation]:
    """Caps broken by normalised ``{requests, limits}`` resources; InvalidValue on a bad one."""
    found: list[Violation] = []
    for part in ("requests", "limits"):
        for name, raw in (resources.get(part) or {}).items():
            field = f"resources.{part}.{name}"
            try:
                requested = parse_quantity(raw)
            except ValueError as exc:
                raise InvalidValue(field, str(exc)) from None
            cap = _cap(str(name), limits)
            if cap is None:
                allowed = ", ".join([*BASE_RESOURCES, *limits.extended_resources])
                found.append(Violation(EXTENDED_LIMIT, field, requested.text, f"[{allowed}]"))
            elif cap[1] is not None and requested.value > cap[1].value:
                found.append(Violation(cap[0], field, requested.text, cap[1].text))
    return found


def _duration(field: str, raw: str, cap: timedelta, limit: str) -> Violation | None:
    try:
        requested = parse_duration(raw)
    except ValueError as exc:
        raise InvalidValue(field, str(exc)) from None
    except OverflowError:  # well-formed, and longer than any timedelta: above every cap
        return Violation(limit, field, raw, format_duration(cap))
    if requested > cap:
        return Violation(limit, field, raw, format_duration(cap))
    return None


def session_violations(spec: Mapping[str, Any], limits: LimitSettings) -> list[Violation]:
    """Every cap that the (partial) Session ``spec`` of a request breaks, in field order."""
    found: list[Violation] = []
    if spec.get("resources"):
        found += resource_violations(spec["resources"], limits)
    for field, cap, limit in (
        ("idleTimeout", limits.max_idle_timeout, "MAX_IDLE_TIMEOUT"),
        ("maxSessionDuration", limits.max_session_duration, "MAX_SESSION_DURATION"),
    ):
        if isinstance(spec.get(field), str):
            violation = _duration(field, spec[field], cap, limit)
            if violation is not None:
                found.append(violation)
    return found


@dataclass(frozen=True)
class Bucket:
    """A token bucket's level at a moment (``at``: seconds of a monotonic clock)."""

    tokens: float
    at: float


def take(bucket: Bucket | None, rate: Rate, now: float) -> tuple[Bucket, float]:
    """Take one token for a request at ``now``: the new bucket, and 0 when the request may pass
    or else the seconds until it could. A missing bucket is a full one."""
    per_second = rate.count / rate.period.total_seconds()
    if bucket is None:
        tokens = float(rate.count)
    else:
        tokens = min(float(rate.count), bucket.tokens + (now - bucket.at) * per_second)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / per_second


def is_full(bucket: Bucket, rate: Rate, now: float) -> bool:
    """True when the bucket has refilled: forgetting it changes nothing."""
    per_second = rate.count / rate.period.total_seconds()
    return bucket.tokens + (now - bucket.at) * per_second >= rate.count


def retry_after(seconds: float) -> int:
    """The ``Retry-After`` header's whole seconds for a wait (never 0 for a refused request)."""
    return max(1, math.ceil(seconds))
