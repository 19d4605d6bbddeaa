"""``streamspace watch``'s reconnect loop against a scripted WebSocket server on loopback.

Each connection the server accepts plays the next step of a script: a refusal with an HTTP
status, a message then a close frame with a code, or a message then a cut without a close
frame (what a SIGKILLed replica looks like). The real facade going away is covered by
``tests/e2e/test_fault_ws.py``; here each way a stream can end is checked on its own.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from streamspace_facade import watch

pytestmark = pytest.mark.integration

Step = tuple[str, int]  # ("refuse", status) | ("close", code) | ("cut", 0)


async def run(script: list[Step], *, reconnect: bool = True) -> tuple[int, list[str], list[str]]:
    """Serve ``script`` (one step per connection) to ``watch``; its exit code, stdout, stderr."""
    steps: Iterator[Step] = iter(script)

    async def handler(request: web.Request) -> web.StreamResponse:
        action, value = next(steps)
        if action == "refuse":
            return web.json_response({"code": "NOPE"}, status=value)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"type": "sessions_update", "reason": "subscribe", "sessions": []}')
        if action == "close":
            await ws.close(code=value)
        elif request.transport is not None:
            request.transport.abort()  # no close frame, as from a killed process
        return ws

    app = web.Application()
    app.router.add_get("/api/v1/ws/sessions", handler)
    out, err = io.StringIO(), io.StringIO()
    async with TestServer(app) as server:
        url = str(server.make_url("/api/v1/ws/sessions")).replace("http://", "ws://")
        code = await watch.watch(
            url, "t", brief=True, reconnect=reconnect, out=out, err=err, rand=lambda: 0.0
        )
    return code, out.getvalue().splitlines(), err.getvalue().splitlines()


@pytest.mark.asyncio
async def test_watch_reconnects_after_cuts_refusals_and_going_away_until_a_normal_close() -> None:
    script = [("cut", 0), ("refuse", 503), ("close", 1001), ("close", 1013), ("close", 1000)]
    code, lines, errors = await run(script)
    assert code == 0
    assert len(lines) == 4, lines  # a snapshot on each connection that was served
    assert all(" subscribe: 0 []" in line for line in lines)
    assert errors == [
        "stream closed (1006); reconnecting in 0.00s",
        "refused: HTTP 503; reconnecting in 0.00s",
        "stream closed (1001); reconnecting in 0.00s",
        "stream closed (1013); reconnecting in 0.00s",
        "stream closed (1000)",
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("script", "exit_code", "last"),
    [
        ([("refuse", 401)], 1, "refused: HTTP 401"),
        ([("refuse", 404)], 1, "refused: HTTP 404"),
        ([("close", 4401)], 1, "stream closed (4401)"),
        ([("close", 1008)], 1, "stream closed (1008)"),
    ],
)
async def test_watch_stops_where_another_attempt_cannot_help(
    script: list[Step], exit_code: int, last: str
) -> None:
    code, _, errors = await run(script)
    assert (code, errors) == (exit_code, [last])


@pytest.mark.asyncio
@pytest.mark.parametrize(("step", "exit_code"), [(("cut", 0), 1), (("close", 1001), 0)])
async def test_watch_without_reconnect_ends_with_the_stream(step: Step, exit_code: int) -> None:
    code, lines, _ = await run([step], reconnect=False)
    assert code == exit_code and len(lines) == 1
