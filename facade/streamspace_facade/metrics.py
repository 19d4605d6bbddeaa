"""Prometheus metrics of the facade, served at ``GET /metrics`` (public, like ``/health``).

The metrics live in a registry of this process's own, not in prometheus_client's global one:
tests run the operator and the facade as threads of one interpreter, and each ``/metrics``
must show only its own process. Labels are bounded sets (route templates, never raw paths or
object names), so a client cannot grow the series count.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from streamspace.runtime_metrics import METHODS, asyncio_tasks, request_labels

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
WS_RESYNCS = Counter(
    "streamspace_websocket_resyncs_total",
    "Fresh snapshots sent to sessions_delta subscribers after the first, by reason (resync: "
    "the client asked; lagging: its queue overflowed and was replaced by a snapshot)",
    ["reason"],
    registry=REGISTRY,
)
WS_REFUSED = Counter(
    "streamspace_websocket_refused_total",
    "WebSocket upgrades refused with 429, by stream and the limit that was reached",
    ["stream", "limit"],
    registry=REGISTRY,
)
LOG_FOLLOWS = Gauge(
    "streamspace_log_follows",
    "Pod logs followed upstream right now (one per container, shared by its subscribers)",
    registry=REGISTRY,
)
LOG_FOLLOWS_OPENED = Counter(
    "streamspace_log_follows_opened_total",
    "Upstream pod log follows opened (a subscriber joining an open follow opens none)",
    registry=REGISTRY,
)

# HTTP requests: route is the route's template (``/api/v1/sessions/{id}``) or ``unmatched``.
HTTP_DURATION = Histogram(
    "streamspace_http_request_duration_seconds",
    "HTTP requests by method, route template and final status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
UNMATCHED = "unmatched"

# Repository webhook deliveries; provider ∈ github|gitlab|generic.
WEBHOOK_DELIVERIES = Counter(
    "streamspace_webhook_deliveries_total",
    "Repository webhook deliveries by provider and result (accepted, no-match, duplicate,"
    " ignored, unauthorized, invalid, too-large)",
    ["provider", "result"],
    registry=REGISTRY,
)

# The PostgreSQL mirror (see mirror.py); table ∈ the mirrored tables.
MIRROR_EVENT_SECONDS = Histogram(
    "streamspace_mirror_event_seconds",
    "Seconds from receiving a watch event to its row change being committed, by table",
    ["table"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
MIRROR_BATCH = Histogram(
    "streamspace_mirror_batch_events",
    "Watch events written to the mirror in one transaction, by table",
    ["table"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
    registry=REGISTRY,
)
MIRROR_EVENTS = Counter(
    "streamspace_mirror_events_total",
    "Watch events written to the mirror, by table and type (ADDED, MODIFIED, DELETED)",
    ["table", "type"],
    registry=REGISTRY,
)
MIRROR_RESYNCS = Counter(
    "streamspace_mirror_resyncs_total",
    "Full resyncs of a mirror table (list, upsert all, delete vanished rows)",
    ["table"],
    registry=REGISTRY,
)
AUDIT_BACKLOG = Gauge(
    "streamspace_audit_backlog",
    "Audit records waiting for PostgreSQL (held during an outage, stored when it returns)",
    registry=REGISTRY,
)
AUDIT_LOST = Counter(
    "streamspace_audit_lost_total",
    "Audit records not stored (backlog full, or the facade stopped first); each is logged",
    registry=REGISTRY,
)
MIRROR_WRITER = Gauge(
    "streamspace_mirror_writer",
    "1 while this replica holds the mirror lock and writes the mirror, else 0",
    registry=REGISTRY,
)
MIRROR_LAG = Gauge(
    "streamspace_mirror_lag_seconds",
    "Age of the oldest watch event received but not yet written to PostgreSQL; 0 when caught up",
    registry=REGISTRY,
)


# Plugin event deliveries (deliveries.py); result ∈ delivered|retry|dead.
EVENT_DELIVERIES = Counter(
    "streamspace_event_deliveries_total",
    "Attempts to deliver a plugin event, by result (delivered; retry: failed, goes again;"
    " dead: failed with its retry budget spent)",
    ["result"],
    registry=REGISTRY,
)
EVENT_LATENCY = Histogram(
    "streamspace_event_delivery_latency_seconds",
    "Seconds from the mirror observing a change to its plugin event being accepted by a"
    " receiver (retries included)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
    registry=REGISTRY,
)
EVENT_OUTBOX_DEPTH = Gauge(
    "streamspace_event_outbox_depth",
    "Plugin deliveries not yet settled (pending), as the delivery worker last counted them;"
    " 0 on replicas that do not deliver",
    registry=REGISTRY,
)

# The process itself: a leak of tasks or a request storm shows here first (bench soak).
ASYNCIO_TASKS = Gauge(
    "streamspace_asyncio_tasks",
    "Tasks of this process's event loop not yet done, counted when scraped",
    registry=REGISTRY,
)
ASYNCIO_TASKS.set_function(asyncio_tasks)
KUBERNETES_REQUESTS = Counter(
    "streamspace_kubernetes_requests_total",
    "Requests this process sent to the Kubernetes API, by client, method and status code"
    " (error: no answer); a watch counts once, when it opens",
    ["client", "method", "code"],
    registry=REGISTRY,
)


def kubernetes_request(client: str, method: str, status: int | None) -> None:
    KUBERNETES_REQUESTS.labels(client, *request_labels(method, status)).inc()


class Pending:
    """Watch events received and not yet committed, for ``streamspace_mirror_lag_seconds``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._since: dict[object, float] = {}

    def start(self, key: object) -> float:
        now = self.clock()
        self._since[key] = now
        return now

    def done(self, key: object) -> float:
        """Seconds since :meth:`start` of ``key``."""
        now = self.clock()
        return now - self._since.pop(key, now)

    def lag(self) -> float:
        if not self._since:
            return 0.0
        return max(0.0, self.clock() - min(self._since.values()))


PENDING = Pending()
MIRROR_LAG.set_function(PENDING.lag)


def route_label(request: web.Request) -> str:
    """The matched route's template, never the raw path (bounded label values)."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


@web.middleware
async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time every request by route and final status; outermost, so it sees error answers."""
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        status = exc.status
        raise
    else:
        status = response.status
        return response
    finally:
        # A WebSocket (101) lasts as long as the client stays: the websocket_* series count it.
        if status != 101:
            HTTP_DURATION.labels(
                request.method if request.method in METHODS else "other",
                route_label(request),
                str(status),
            ).observe(time.perf_counter() - start)


async def metrics(request: web.Request) -> web.Response:
    del request
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/metrics", metrics)
