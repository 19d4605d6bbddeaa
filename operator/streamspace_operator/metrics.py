"""Prometheus metrics of the operator, served at ``/metrics`` on ``METRICS_HOST:METRICS_PORT``.

The registry is this module's own, not prometheus_client's global one: tests run the operator
and the facade as threads of one interpreter, and each ``/metrics`` shows its own process only.
A small aiohttp server in the operator's event loop serves it; a Kopf startup handler starts it
and a cleanup handler stops it, so it lives exactly as long as the operator.

Sessions by phase are counted when scraped, from a Kopf index of the sessions this replica
watches: the number is right after a restart, not a sum of increments since the last one.
Labels are bounded sets (phases, handler names, reasons), never object names.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

import aiohttp
import kopf
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
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamspace import API_GROUP, API_VERSION
from streamspace.config import Settings
from streamspace.lifecycle import SessionInput
from streamspace.runtime_metrics import asyncio_tasks, request_labels

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

RECONCILE_SECONDS = Histogram(
    "streamspace_reconcile_duration_seconds",
    "Duration of the operator's handlers, by resource kind and handler",
    ["kind", "handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "streamspace_reconcile_errors_total",
    "Handler runs that failed (Kopf retries them), by resource kind and handler",
    ["kind", "handler"],
    registry=REGISTRY,
)
HIBERNATIONS = Counter(
    "streamspace_hibernations_total",
    "Sessions that reached Hibernated, by reason (idle, manual)",
    ["reason"],
    registry=REGISTRY,
)
WAKES = Counter(
    "streamspace_wakes_total",
    "Hibernated sessions started again, by reason (connection, manual)",
    ["reason"],
    registry=REGISTRY,
)
SYNC_SECONDS = Histogram(
    "streamspace_repository_sync_duration_seconds",
    "Duration of template repository syncs (fetch, parse, store), by result (ok, failed)",
    ["result"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
    registry=REGISTRY,
)
SYNC_FAILURES = Counter(
    "streamspace_repository_sync_failures_total",
    "Template repository syncs that failed",
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
    "Requests this process sent to the Kubernetes API, by client (kopf: Kopf's watches, patches"
    " and events; streamspace: the operator's own), method and status code (error: no answer);"
    " a watch counts once, when it opens",
    ["client", "method", "code"],
    registry=REGISTRY,
)

PHASES = ("Pending", "Running", "Hibernated", "Failed", "Terminated")  # crds/session.yaml
PHASE_INDEX = "session_phases"
# The causes the operator writes with a state change it makes itself (CAUSE_ANNOTATION);
# any other change of spec.state came from a user or a client of the API.
REASONS = {"Idle": "idle", "Connect": "connection"}


def phase_label(phase: object) -> str:
    """A session's phase as a label: one of the CRD's phases, ``Pending`` before the first."""
    if phase is None:
        return "Pending"
    return phase if isinstance(phase, str) and phase in PHASES else "Unknown"


def reason_label(cause: str | None) -> str:
    """Why a session changed state, from the cause the operator recorded (None: a user did)."""
    return REASONS.get(cause or "", "manual")


async def session_phases(status: kopf.Status, **_: Any) -> dict[str, None]:
    """Kopf index: every watched session under its phase."""
    return {phase_label(status.get("phase")): None}


class SessionsByPhase(Collector):
    """``streamspace_sessions{phase}``, counted from the index at scrape time."""

    def __init__(self) -> None:
        self.index: kopf.Index[str, None] | None = None

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "streamspace_sessions",
            "Sessions watched by this operator, by phase",
            labels=["phase"],
        )
        index = self.index
        counts = {phase: 0 for phase in PHASES}
        if index is not None:
            for phase in list(index):
                counts[phase] = len(index.get(phase, ()))
        for phase, count in counts.items():
            family.add_metric([phase], count)
        yield family


SESSIONS = SessionsByPhase()
REGISTRY.register(SESSIONS)


def timed(
    kind: str, handler: str | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Time an async Kopf handler, and log each call at debug level; ``functools.wraps`` keeps
    the handler id Kopf derives."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        labels = (kind, handler or fn.__name__)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            # With -v, one line per call says which replica acted on what and when: how peered
            # replicas are checked never to act at once (Kopf's own per-object INFO lines are
            # turned off, as they would drown everything else).
            target = {
                "kind": kind,
                "namespace": kwargs.get("namespace"),
                "name": kwargs.get("name"),
            }
            log.debug(
                "%s %s/%s: %s",
                kind,
                target["namespace"],
                target["name"],
                labels[1],
                extra={"handled": {**target, "handler": labels[1]}},
            )
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            except Exception:
                RECONCILE_ERRORS.labels(*labels).inc()
                raise
            finally:
                RECONCILE_SECONDS.labels(*labels).observe(time.perf_counter() - start)

        return wrapper

    return decorate


@contextlib.contextmanager
def timing_sync() -> Iterator[None]:
    """Time one repository sync; an exception out of it counts as a failure."""
    start = time.perf_counter()
    try:
        yield
    except Exception:
        SYNC_FAILURES.inc()
        SYNC_SECONDS.labels("failed").observe(time.perf_counter() - start)
        raise
    SYNC_SECONDS.labels("ok").observe(time.perf_counter() - start)


def transitioned(event_reason: str, session: SessionInput) -> None:
    """Count a session's transition, once, with the Event the reconcile posts for it."""
    if event_reason == "Hibernated":
        HIBERNATIONS.labels(reason_label(session.cause_for("hibernated"))).inc()
    elif event_reason == "Woken":
        WAKES.labels(reason_label(session.cause_for("running"))).inc()


def kubernetes_request(client: str, method: str, status: int | None) -> None:
    KUBERNETES_REQUESTS.labels(client, *request_labels(method, status)).inc()


def kopf_trace() -> aiohttp.TraceConfig:
    """Counts the requests of Kopf's HTTP session (see ``handlers.login``) as client ``kopf``."""

    async def answered(_: Any, __: Any, params: aiohttp.TraceRequestEndParams) -> None:
        kubernetes_request("kopf", params.method, params.response.status)

    async def failed(_: Any, __: Any, params: aiohttp.TraceRequestExceptionParams) -> None:
        kubernetes_request("kopf", params.method, None)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(answered)
    trace.on_request_exception.append(failed)
    return trace


async def metrics(request: web.Request) -> web.Response:
    del request
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


class Server:
    """The ``/metrics`` endpoint of one operator, started and stopped by Kopf handlers."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.runner: web.AppRunner | None = None

    async def start(self, **kwargs: Any) -> None:
        SESSIONS.index = kwargs[PHASE_INDEX]
        if self.port == 0 or self.runner is not None:
            return
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise kopf.PermanentError(f"metrics on {self.host}:{self.port}: {exc}") from exc
        self.runner = runner
        log.info("metrics at http://%s:%d/metrics", self.host, self.port)

    async def stop(self, **kwargs: Any) -> None:
        if SESSIONS.index is kwargs.get(PHASE_INDEX):
            SESSIONS.index = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    kopf.index(API_GROUP, API_VERSION, "sessions", registry=registry, id=PHASE_INDEX)(
        session_phases
    )
    server = Server(settings.metrics.host, settings.metrics.port)
    kopf.on.startup(registry=registry, id="metrics_server")(server.start)
    kopf.on.cleanup(registry=registry, id="metrics_server")(server.stop)
