"""Status conditions per the Kubernetes API conventions, as pure functions.

A condition's ``lastTransitionTime`` moves only when its status changes; reason, message and
observedGeneration are refreshed on every write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str = ""

    @property
    def status_word(self) -> str:
        return "Unknown" if self.status is None else ("True" if self.status else "False")


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, to the second, as Kubernetes writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def merge_conditions(
    existing: Sequence[Mapping[str, Any]] | None,
    wanted: Iterable[Condition],
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The full conditions list after setting ``wanted`` (other existing types are kept)."""
    current = {str(c.get("type")): dict(c) for c in existing or []}
    for cond in wanted:
        previous = current.get(cond.type)
        transitioned = previous is None or previous.get("status") != cond.status_word
        current[cond.type] = {
            "type": cond.type,
            "status": cond.status_word,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": (
                timestamp(now)
                if transitioned or previous is None
                else previous.get("lastTransitionTime", timestamp(now))
            ),
            "observedGeneration": generation,
        }
    return sorted(current.values(), key=lambda c: str(c["type"]))
