"""Prometheus metrics of the facade, served at ``GET /metrics`` (public, like ``/health``).

The metrics live in a registry of this process's own, not in prometheus_client's global one:
tests run the operator and the facade as threads of one interpreter, and each ``/metrics``
must show only its own process. Labels are bounded sets (route templates, never raw paths or
object names), so a client cannot grow the series count.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# WebSocket streams (incremented by the WebSocket module).
WS_CLIENTS = Gauge(
    "streamspace_websocket_clients",
    "Connected WebSocket clients by stream",
    ["stream"],
    registry=REGISTRY,
)
WS_DROPPED = Counter(
    "streamspace_websocket_dropped_total",
    "WebSocket clients disconnected by the server, by stream and reason",
    ["stream", "reason"],
    registry=REGISTRY,
)
WS_MESSAGES = Counter(
    "streamspace_websocket_messages_total",
    "Messages queued to WebSocket clients by stream and type",
    ["stream", "type"],
    registry=REGISTRY,
)
