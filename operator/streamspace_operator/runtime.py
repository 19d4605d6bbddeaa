"""How the operator runs: Kopf settings for production, and the entry point that starts Kopf.

Our own prefix for annotations and the (legacy) finalizer, so objects carry ``stream.space/...``
and not Kopf's defaults; status is written by explicit patches only (nothing is stored in
``status.kopf``); watches time out and reconnect so that a silently dropped connection is
noticed; peering makes two replicas never act at once.

The namespaces served are ``KubernetesSettings.served``: one, a shard's set (each with its own
``KopfPeering``, so replicas of one shard coordinate and two shards never see each other), or
every namespace (one ``ClusterKopfPeering``). docs/SCALING.md says when to shard.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import kopf

from streamspace import API_GROUP
from streamspace.config import Settings
from streamspace_operator.context import Context
from streamspace_operator.handlers import build_registry
from streamspace_operator.release import FINALIZER

log = logging.getLogger(__name__)

PEERING_NAME = "streamspace"
KOPF_PREFIX = f"operator.{API_GROUP}"

SENIORITY_EPOCH_MS = 2**42
"""A millisecond instant (the year 2109) after every start, so that seniority priorities stay
positive; times 1024 plus a tie-breaker they stay below 2**53, exact in any JSON reader."""


def seniority_priority(started: float, tiebreak: int) -> int:
    """The peering priority of a replica started at ``started`` (Unix seconds): the earlier, the
    higher, so a replica that starts (a new pod, a restarted container) never outranks the one
    already acting and never takes the work over from a live replica (decision 102).
    ``tiebreak`` (0-1023, random) keeps two starts in the same millisecond apart: equal
    priorities make Kopf pause both."""
    if not 0 <= tiebreak < 1024:
        raise ValueError(f"tiebreak {tiebreak} is not within 0-1023")
    return (SENIORITY_EPOCH_MS - int(started * 1000)) * 1024 + tiebreak


@dataclass(frozen=True)
class RunOptions:
    """Command-line choices of ``streamspace operator`` (the rest comes from Settings)."""

    liveness_endpoint: str | None = "http://0.0.0.0:8081/healthz"
    standalone: bool = False
    priority: int = 0
    clock: Callable[[], datetime] | None = None  # the schedules' clock; None: the real one


def operator_settings() -> kopf.OperatorSettings:
    """Kopf settings for every deployment of the operator."""
    settings = kopf.OperatorSettings()
    # Nothing of ours gets a finalizer any more (decision 91); under this name Kopf removes the
    # one older versions put on objects, as it handles each.
    settings.persistence.finalizer = FINALIZER
    # Kopf's own annotations get a prefix of their own: Kopf leaves every annotation under its
    # storage prefix out of diffs, and stream.space/ ones (sync-requested) must be seen. Only
    # repositories and plugins have create/update handlers and so these annotations; Sessions
    # are handled on every event (decision 134) and Kopf writes nothing on them.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # only warnings become Events; ours are explicit
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 30
    settings.peering.name = PEERING_NAME
    settings.peering.mandatory = True
    # The thread pool of synchronous handlers; ours are all async (index functions too), so it
    # runs only the liveness probe. Concurrency is not bounded by a number of Kopf workers
    # (queueing.worker_limit stays unset: a full set of busy workers would hold every other
    # object's events, a wake's among them, behind them) but by the rate limit of our client,
    # where a start or wake goes first (decision 136).
    settings.execution.max_workers = 4
    # No cluster-wide discovery watches (CRDs, namespaces): the namespaces and resources are
    # known at start, and the operator's RBAC grants nothing cluster-wide in one namespace.
    settings.scanning.disabled = True
    return settings


async def serve(
    settings: Settings,
    options: RunOptions,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run Kopf with our handlers until ``stop_flag`` is set (or the process is signalled)."""
    served = settings.kubernetes.served
    log.info(
        "starting operator: %s, peering %s",
        "all namespaces" if served is None else f"namespace(s) {', '.join(served)}",
        "off (standalone)"
        if options.standalone
        else f"{PEERING_NAME} (priority {options.priority},"
        f" lifetime {settings.peering.lifetime.total_seconds():.0f}s)",
    )
    kopf_settings = operator_settings()
    kopf_settings.peering.standalone = options.standalone
    kopf_settings.peering.mandatory = not options.standalone
    kopf_settings.peering.priority = options.priority
    kopf_settings.peering.clusterwide = served is None
    # Our lifetime, written into our entry: a standby takes over at most this long after we
    # died without leaving (decision 101). Kopf keeps whole seconds.
    kopf_settings.peering.lifetime = int(settings.peering.lifetime.total_seconds())
    # On SIGTERM Kopf stops its watches and handlers, runs the cleanup handlers (clients closed)
    # and leaves the peering; should that hang, it kills itself once SHUTDOWN_TIMEOUT is over,
    # before the kubelet would (its grace period is longer), rather than 10 minutes later.
    shutdown = settings.runtime.shutdown_timeout
    kopf_settings.process.ultimate_exiting_timeout = shutdown.total_seconds()
    await kopf.operator(
        registry=build_registry(settings),
        settings=kopf_settings,
        clusterwide=served is None,
        namespaces=served or (),
        standalone=options.standalone,
        priority=options.priority,
        peering_name=None if options.standalone else PEERING_NAME,  # a name makes it mandatory
        liveness_endpoint=options.liveness_endpoint,
        memo=kopf.Memo(ctx=_context(settings, options)),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def _context(settings: Settings, options: RunOptions) -> Context:
    ctx = Context(settings, peering=None if options.standalone else PEERING_NAME)
    if options.clock is not None:
        ctx.clock = options.clock
    return ctx


def run(settings: Settings, options: RunOptions) -> int:
    """Run the operator until it is stopped (SIGINT/SIGTERM)."""
    # Kopf logs every handler success at INFO: at hundreds of sessions with timers that drowns
    # everything else. Failures (ERROR) and our own logs stay.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    asyncio.run(serve(settings, options))
    return 0
