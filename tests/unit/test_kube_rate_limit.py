"""The operator's client-side rate limit (token bucket, priorities) and its 429 retries.

The bucket runs on a fake clock; the retry test talks to a small aiohttp server on localhost
that answers 429 with a ``Retry-After`` first (no API server can be made to do that on cue).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client

from receivers import serve_get
from streamspace_operator import ratelimit
from streamspace_operator.kube import CountedApiClient, Kube
from streamspace_operator.ratelimit import HIGH, LOW, NORMAL, RateLimiter, retry_after

pytestmark = pytest.mark.unit


class FakeClock:
    """Time that passes only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_a_burst_is_held_to_qps_after_the_banked_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, 5, clock=clock, sleep=clock.sleep)
    granted: list[float] = []

    async def request() -> None:
        await limiter.acquire()
        granted.append(clock.now)

    await asyncio.gather(*(request() for _ in range(45)))
    assert len(granted) == 45
    assert granted[:5] == [0.0] * 5  # the burst goes at once
    # then 10 a second: the k-th request after the burst not before k/10 s
    for k, moment in enumerate(granted[5:], start=1):
        assert moment >= k / 10 - 1e-9
    assert granted[-1] == pytest.approx(4.0)  # and no slower than that either
    # in any one-second window no more than burst + qps requests
    for start in granted:
        assert sum(1 for t in granted if start <= t < start + 1) <= 5 + 10


@pytest.mark.asyncio
async def test_the_bucket_refills_while_idle_up_to_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, 5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        await limiter.acquire()
    clock.now += 100.0  # a long quiet spell banks no more than the burst
    granted = []
    for _ in range(7):
        await limiter.acquire()
        granted.append(clock.now)
    assert granted[:5] == [100.0] * 5
    assert granted[5] > 100.0


@pytest.mark.asyncio
async def test_waiters_are_served_by_priority_then_in_order() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 1, clock=clock, sleep=clock.sleep)
    await limiter.acquire()  # the bucket is empty now
    order: list[str] = []

    async def request(name: str, level: int) -> None:
        with ratelimit.priority(level):
            await limiter.acquire()
        order.append(name)

    hibernations = [asyncio.create_task(request(f"hibernate-{i}", LOW)) for i in range(20)]
    await asyncio.sleep(0)
    drift = asyncio.create_task(request("drift", NORMAL))
    wake = asyncio.create_task(request("wake", HIGH))
    await asyncio.gather(*hibernations, drift, wake)
    assert order[:2] == ["wake", "drift"]
    assert order[2:] == [f"hibernate-{i}" for i in range(20)]


@pytest.mark.asyncio
async def test_a_cancelled_waiter_takes_no_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 1, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    gone = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    await limiter.acquire()
    assert clock.now == pytest.approx(1.0)  # one token's wait, not two


def test_retry_after_is_read_and_bounded() -> None:
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({}) == ratelimit.RETRY_AFTER_DEFAULT
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 1.0
    assert retry_after({"Retry-After": "86400"}) == ratelimit.RETRY_AFTER_CAP
    assert retry_after({"Retry-After": "-5"}) == 0.0


@pytest.mark.asyncio
async def test_a_429_is_retried_after_its_retry_after() -> None:
    """API Priority and Fairness turns a request away with 429 and Retry-After: the client
    waits that long and sends it again, for parsed (_preload_content) and raw reads alike."""
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        if len(hits) % 2 == 1:
            return web.json_response(
                {"kind": "Status", "code": 429}, status=429, headers={"Retry-After": "2"}
            )
        return web.json_response({"metadata": {"name": request.path.rsplit("/", 1)[1]}})

    runner, port = await serve_get(handler)
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    api = CountedApiClient(configuration)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    api.sleep = sleep  # type: ignore[method-assign]
    try:
        kube = Kube(api)
        session: Any = await kube.get_custom("Session", "ns", "s1")
        assert session["metadata"]["name"] == "s1"
        deployment = await kube.get_child("Deployment", "ns", "d1")
        assert deployment is not None and deployment["metadata"]["name"] == "d1"
    finally:
        await api.close()
        await runner.cleanup()
    assert len(hits) == 4
    assert slept == [2.0, 2.0]


@pytest.mark.asyncio
async def test_429s_without_end_give_up_with_the_error() -> None:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"code": 429}, status=429, headers={"Retry-After": "1"})

    runner, port = await serve_get(handler)
    api = CountedApiClient(client.Configuration(host=f"http://127.0.0.1:{port}"))

    async def sleep(seconds: float) -> None:
        del seconds

    api.sleep = sleep  # type: ignore[method-assign]
    try:
        with pytest.raises(client.exceptions.ApiException) as refused:
            await Kube(api).get_custom("Session", "ns", "s1")
    finally:
        await api.close()
        await runner.cleanup()
    assert refused.value.status == 429
    assert len(hits) == ratelimit.RETRIES_ON_429 + 1


@pytest.mark.asyncio
async def test_requests_in_flight_are_bounded_and_a_freed_slot_goes_to_the_most_urgent() -> None:
    limiter = RateLimiter(1000, 1000, max_in_flight=2)
    await limiter.acquire()
    await limiter.acquire()  # both slots taken, tokens to spare
    order: list[str] = []

    async def request(name: str, level: int) -> None:
        with ratelimit.priority(level):
            await limiter.acquire()
        order.append(name)

    hibernations = [asyncio.create_task(request(f"hibernate-{i}", LOW)) for i in range(5)]
    await asyncio.sleep(0.01)
    assert order == [] and limiter.waiting == 5  # tokens alone do not admit them
    wake = asyncio.create_task(request("wake", HIGH))
    await asyncio.sleep(0.01)
    limiter.release()
    await wake
    assert order == ["wake"]
    for _ in range(5):
        limiter.release()
        await asyncio.sleep(0.01)
    await asyncio.gather(*hibernations)
    assert order == ["wake"] + [f"hibernate-{i}" for i in range(5)]
    assert limiter.in_flight == 2


@pytest.mark.asyncio
async def test_a_waiter_cancelled_after_its_grant_gives_its_slot_back() -> None:
    limiter = RateLimiter(1000, 1000, max_in_flight=1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    limiter.release()  # the server grants the waiter its slot...
    waiter.cancel()  # ...and it is cancelled before it could send
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0.01)
    assert limiter.in_flight == 0
    await asyncio.wait_for(limiter.acquire(), 1)  # the slot is there for the next one


@pytest.mark.asyncio
async def test_the_client_holds_requests_at_its_slots_and_gives_each_back() -> None:
    """A real HTTP server that answers only when told: no more than ``max_in_flight`` requests
    reach it at once, the urgent one queued behind bulk ones reaches it first, and every slot
    comes back whatever the answer (200, 404, 429 then 200)."""
    release = asyncio.Event()
    arrived: list[str] = []
    at_once = {"now": 0, "most": 0}
    tried: set[str] = set()

    async def handler(request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[1]
        arrived.append(name)
        at_once["now"] += 1
        at_once["most"] = max(at_once["most"], at_once["now"])
        try:
            await release.wait()
        finally:
            at_once["now"] -= 1
        if name == "gone":
            return web.json_response({"code": 404}, status=404)
        if name == "busy" and name not in tried:
            tried.add(name)
            return web.json_response({"code": 429}, status=429, headers={"Retry-After": "0"})
        return web.json_response({"metadata": {"name": name}})

    runner, port = await serve_get(handler)
    limiter = RateLimiter(1000, 1000, max_in_flight=2)
    api = CountedApiClient(client.Configuration(host=f"http://127.0.0.1:{port}"))
    api.limiter = limiter
    kube = Kube(api)

    async def get(name: str, level: int) -> Any:
        with ratelimit.priority(level):
            return await kube.get_child("Deployment", "ns", name)

    try:
        bulk = [asyncio.create_task(get(f"bulk-{i}", LOW)) for i in range(4)]
        extra = [asyncio.create_task(get(n, LOW)) for n in ("gone", "busy")]
        await asyncio.sleep(0.2)
        wake = asyncio.create_task(get("wake", HIGH))
        await asyncio.sleep(0.2)
        # the others wait in the limiter, not in the connection pool
        assert sorted(arrived) == ["bulk-0", "bulk-1"]
        release.set()
        results = await asyncio.gather(*bulk, *extra, wake)
    finally:
        release.set()
        await api.close()
        await runner.cleanup()
    assert "wake" in arrived[2:4]  # one of the two slots freed first (both freed at once)
    assert at_once["most"] == 2
    assert results[4] is None and results[5]["metadata"]["name"] == "busy"
    assert arrived.count("busy") == 2
    assert limiter.in_flight == 0
