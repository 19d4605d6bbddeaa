"""A clock for the operator's schedules that a test moves instead of waiting for a cron's minute
(``start_operator(clock=...)``)."""

from __future__ import annotations

import threading
from datetime import datetime


class Clock:
    """A clock that stands still until the test moves it."""

    def __init__(self, moment: str) -> None:
        self._lock = threading.Lock()
        self._now = at(moment)

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: str) -> None:
        with self._lock:
            self._now = at(moment)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
