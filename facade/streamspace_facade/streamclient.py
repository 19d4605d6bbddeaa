"""One WebSocket client of the facade: a bounded queue of outgoing messages and its writer.

Publishing never waits for a client: a message that does not fit in a full queue means the
client is too slow, and it is closed (1013). A ``sessions_delta`` client (``resync`` set) gets its
queue replaced by one fresh snapshot instead (``reason: "lagging"``), as everything queued is
older than that snapshot; it is closed only if it overflows again before the writer has even
taken that snapshot (it is stuck, not lagging). It may also ask for a snapshot itself with the
text message ``{"type": "resync"}``; while one is queued, more requests are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from streamspace_facade import metrics
from streamspace_facade.state import principal

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 2.0
"""Seconds a closing handshake may take before the connection is simply cut."""

_END = object()


@dataclass(frozen=True)
class _Snapshot:
    """A fresh start queued for a delta client: its snapshot and the warnings in force."""

    messages: list[bytes]


Resync = Callable[[str], list[bytes]]
"""Builds a delta client's fresh start for a reason: ``resync`` (the client asked) or
``lagging`` (its queue overflowed)."""


class Client:
    """One WebSocket subscriber: a bounded queue and the task that writes it out."""

    def __init__(
        self, request: web.Request, ws: web.WebSocketResponse, stream: str, queue_size: int
    ) -> None:
        self.ws = ws
        self.principal = principal(request)
        self.stream = stream
        self.queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self.closed = False
        self._transport = request.transport
        self._end = (int(WSCloseCode.OK), "")
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self.resync: Resync | None = None
        """Set for delta clients: overflow and ``resync`` requests queue a fresh snapshot."""
        self._snapshot_queued: str | None = None
        """The reason of a snapshot queued and not yet taken by the writer."""

    def send(self, data: bytes) -> None:
        """Queue a text message (UTF-8 bytes, encoded once by the publisher)."""
        if self.closed:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self._overflow()

    def _overflow(self) -> None:
        if self.resync is None or self._snapshot_queued == "lagging":
            self.drop(WSCloseCode.TRY_AGAIN_LATER, "too slow", reason="slow")
            return
        while not self.queue.empty():  # all older than the snapshot that replaces them
            self.queue.get_nowait()
        self._queue_snapshot(self.resync, "lagging")

    def _queue_snapshot(self, resync: Resync, reason: str) -> None:
        metrics.WS_RESYNCS.labels(reason).inc()
        self._snapshot_queued = reason
        self.queue.put_nowait(_Snapshot(resync(reason)))

    def request_resync(self) -> None:
        """The client asked for a snapshot; one already queued will do."""
        if self.resync is None or self.closed or self._snapshot_queued:
            return
        if self.queue.full():
            self._overflow()
        else:
            self._queue_snapshot(self.resync, "resync")

    def _heard(self, text: str) -> None:
        """A text message from the client: ``{"type": "resync"}`` is the one understood."""
        try:
            said = json.loads(text)
        except ValueError:
            return
        if isinstance(said, dict) and said.get("type") == "resync":
            self.request_resync()

    def end(self, code: int, text: str) -> None:
        """Close once everything queued so far is written."""
        if self.closed:
            return
        self._end = (code, text)
        try:
            self.queue.put_nowait(_END)
        except asyncio.QueueFull:
            self.drop(WSCloseCode.TRY_AGAIN_LATER, "too slow", reason="slow")
            return
        self.closed = True

    async def closing(self) -> None:
        """Wait for a close under way to finish."""
        if self._closer is not None:
            await self._closer

    def drop(self, code: int, text: str, *, reason: str) -> None:
        """Close now, whatever is queued (the writer may be stuck on a full socket)."""
        if self._closer is not None:
            return
        self.closed = True
        metrics.WS_DROPPED.labels(self.stream, reason).inc()
        log.info("closing %s stream of %s: %s", self.stream, self.principal.user, text)
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        self._closer = asyncio.create_task(self._close(code, text))

    async def _close(self, code: int, text: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code=code, message=text.encode()[:123])
        except (TimeoutError, ConnectionError, aiohttp.ClientError):
            pass
        finally:
            if self._transport is not None and not self._transport.is_closing():
                self._transport.abort()  # a peer that does not read never completes a handshake

    async def _write(self) -> None:
        while True:
            item = await self.queue.get()
            if item is _END:
                self._closer = asyncio.create_task(self._close(*self._end))
                return
            if isinstance(item, _Snapshot):
                self._snapshot_queued = None  # taken: a later overflow may replace the queue
                for data in item.messages:
                    await self.ws.send_frame(data, WSMsgType.TEXT)
                continue
            await self.ws.send_frame(item, WSMsgType.TEXT)

    async def run(self) -> None:
        """Serve until the client leaves or is closed: read (pongs, close), write the queue."""
        self._writer = asyncio.create_task(self._write())
        try:
            async for msg in self.ws:
                if msg.type is WSMsgType.ERROR:
                    break
                if msg.type is WSMsgType.TEXT and self.resync is not None:
                    self._heard(msg.data)
        finally:
            self.closed = True
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._writer
            if self._closer is not None:
                await self._closer
