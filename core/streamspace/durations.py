"""Go-style duration strings (`90s`, `5m`, `1h30m`, `250ms`), as used in configuration and specs."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+")


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration such as ``1h30m``; raise ValueError naming the bad input."""
    value = text.strip()
    if value == "0":
        return timedelta(0)
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 90s, 5m, 1h30m")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Render a duration the way it is usually written: ``1h30m``, ``45s``, ``0s``."""
    total = int(delta.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(f"{seconds}s" if seconds or not (hours or minutes) else "")
    return "".join(parts)
