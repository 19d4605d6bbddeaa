"""How fast the operator's own client may talk to the API server, and who goes first.

A token bucket as client-go has (``KUBE_QPS`` tokens a second, at most ``KUBE_BURST`` banked):
a burst of thousands of sessions queues here instead of flooding the API server. The queue is
ordered by priority, then by arrival: a user waiting for a session (a start, a wake by a
connection) goes before bulk work (idle hibernations, drift checks), so a hibernation burst
never holds a wake behind it (decision 136). The priority is a context variable, set by the
handler for everything it sends (tasks inherit it).

The queue also bounds the requests in flight (``max_in_flight``, below the HTTP client's
connection pool): past the pool, aiohttp queues waiters first come first served, so a wake sent
during a hibernation burst waited behind hundreds of admitted hibernation requests (p99 24 s at
1,000 sessions). Held here instead, it waits for one request to finish (decision 157).

An answer 429 (API Priority and Fairness turned the request away unprocessed) is retried after
the ``Retry-After`` the server named, a bounded number of times, as client-go does.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

HIGH, NORMAL, LOW = 0, 1, 2
"""Priorities: a user waits (start, wake) / everything else / bulk (idle checks, drift)."""

_PRIORITY: ContextVar[int] = ContextVar("streamspace_kube_priority", default=NORMAL)

RETRIES_ON_429 = 10  # as client-go's maxRetries for Retry-After answers
RETRY_AFTER_DEFAULT = 1.0  # seconds, when a 429 names no (readable) Retry-After
RETRY_AFTER_CAP = 30.0
MIN_WAIT = 0.001  # seconds


@contextlib.contextmanager
def priority(level: int) -> Iterator[None]:
    """Requests sent inside (by this task and the tasks it starts) queue at ``level``."""
    token = _PRIORITY.set(level)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


def current_priority() -> int:
    return _PRIORITY.get()


def retry_after(headers: Mapping[str, str] | None) -> float:
    """Seconds to wait after a 429, from its ``Retry-After`` (seconds; a date is not used by
    the API server); bounded, so a wrong header never stalls the operator for long."""
    raw = (headers or {}).get("Retry-After")
    try:
        seconds = float(raw) if raw is not None else RETRY_AFTER_DEFAULT
    except ValueError:
        seconds = RETRY_AFTER_DEFAULT
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


class RateLimiter:
    """Token bucket with a priority queue. ``qps`` tokens a second, at most ``burst`` kept;
    ``acquire`` returns when the caller may send one request. Waiters are served highest
    priority first (lowest number), first come first served within a priority.

    With ``max_in_flight``, a waiter also needs one of that many slots, which ``release``
    gives back when its request has its answer; every ``acquire`` must then be paired with a
    ``release``."""

    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        max_in_flight: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be positive and burst at least 1")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.qps, self.burst = float(qps), burst
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._freed = asyncio.Event()
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._server: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return sum(1 for *_, future in self._waiters if not future.done())

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.qps)
        self._stamp = now

    def _slot_free(self) -> bool:
        return self.max_in_flight is None or self.in_flight < self.max_in_flight

    def _grant(self) -> None:
        self._tokens -= 1
        if self.max_in_flight is not None:
            self.in_flight += 1

    def release(self) -> None:
        """The request ``acquire`` admitted has its answer (or failed): its slot is free."""
        if self.max_in_flight is None:
            return
        self.in_flight = max(0, self.in_flight - 1)
        self._freed.set()

    async def acquire(self, level: int | None = None) -> None:
        self._refill()
        if not self._waiters and self._tokens >= 1 and self._slot_free():
            self._grant()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(
            self._waiters,
            (current_priority() if level is None else level, next(self._order), future),
        )
        if self._server is None or self._server.done():
            self._server = asyncio.create_task(self._serve(), name="kube rate limiter")
        try:
            await future  # a cancelled waiter's future is cancelled too, and skipped
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted, then cancelled before it could send
            raise

    async def _serve(self) -> None:
        while self._waiters:
            self._refill()
            while self._waiters and self._tokens >= 1 and self._slot_free():
                *_, future = heapq.heappop(self._waiters)
                if not future.done():
                    self._grant()
                    future.set_result(None)
            if not self._waiters:
                break
            if not self._slot_free():
                self._freed.clear()
                await self._freed.wait()
            else:
                # at least a millisecond: a remainder below the clock's resolution never passes
                await self._sleep(max((1 - self._tokens) / self.qps, MIN_WAIT))
