"""What every handler shares, passed through Kopf's memo: settings, the API client, locks."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import kopf
from psycopg_pool import AsyncConnectionPool

from streamspace.config import Settings
from streamspace.manifests import DEFAULT_RESOURCES, WorkloadOptions
from streamspace_operator.cache import Cache
from streamspace_operator.kube import Kube


@dataclass
class Context:
    settings: Settings
    peering: str | None = None  # the KopfPeering name, None when standalone
    kube: Kube | None = None
    db: AsyncConnectionPool | None = None  # only when a database is configured
    locks: defaultdict[tuple[str, str], asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )
    # The idle deadline each session was last warned about, so each warning goes out once.
    warned: dict[tuple[str, str], datetime] = field(default_factory=dict)
    cache: Cache = field(default_factory=Cache)  # what the watches hold (indexes bound at start)
    retries: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    groups: dict[str, tuple[float, list[str]]] = field(default_factory=dict)  # user → (when, …)
    trimmer: asyncio.Task[None] | None = None  # memory.trim_forever, from start-up to clean-up
    # The clock of the schedules (tests move it rather than waiting for a cron's minute).
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @property
    def api(self) -> Kube:
        if self.kube is None:
            raise kopf.TemporaryError("the Kubernetes client is not connected yet", delay=1)
        return self.kube

    @property
    def idle_interval(self) -> timedelta:
        return self.settings.sessions.idle_check_interval

    @property
    def workload_options(self) -> WorkloadOptions:
        s, access = self.settings.sessions, self.settings.access
        return WorkloadOptions(
            default_resources=DEFAULT_RESOURCES,
            ingress_domain=s.ingress_domain,
            ingress_class=s.ingress_class,
            storage_class=s.storage_class,
            home_size=s.home_size,
            auth_url=access.auth_url,
            auth_signin_url=access.signin_url,
            traefik_middleware=access.traefik_middleware,
            ingress_namespace=access.ingress_namespace,
            allowed_capabilities=access.allowed_capabilities,
        )


def context(memo: kopf.Memo) -> Context:
    ctx: Context = memo["ctx"]
    return ctx


def namespaced(namespace: str | None) -> str:
    """Our resources are all namespaced; Kopf types the namespace as optional for cluster ones."""
    if namespace is None:
        raise kopf.PermanentError("a namespaced resource arrived without a namespace")
    return namespace
