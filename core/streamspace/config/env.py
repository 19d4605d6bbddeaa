"""Reading the environment into ``Settings``: every problem collected, reported at once.

No other module reads ``os.environ``. Every problem in the environment is collected and reported
at once (``ConfigError``), so an operator fixing a deployment sees the whole list on first start.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from psycopg.conninfo import make_conninfo

from streamspace.config.settings import (
    BASE_RESOURCES,
    LOG_FORMATS,
    MAX_PEERING_LIFETIME,
    MIN_JWT_SECRET,
    MIN_PEERING_LIFETIME,
    ROLE_NAMES,
    AccessSettings,
    AuthSettings,
    ConfigError,
    DatabaseSettings,
    EventSettings,
    HttpSettings,
    KubernetesSettings,
    LimitSettings,
    MetricsSettings,
    NetworkSettings,
    PeeringSettings,
    Rate,
    RuntimeSettings,
    SessionSettings,
    Settings,
    SyncSettings,
    parse_rate,
)
from streamspace.config.terminal import read_terminal
from streamspace.durations import format_duration, parse_duration
from streamspace.naming import is_dns_label
from streamspace.podsecurity import capability_name
from streamspace.quantities import Quantity, parse_quantity

T = TypeVar("T")


class EnvReader:
    """Reads typed values from an environment mapping, collecting problems instead of raising.

    Public so that the developer tooling (``streamspace_dev``) reads its own settings the same way.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name, "").strip()
        return value or default

    def parsed(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r}: expected {expected}")
            return default

    def duration(self, name: str, default: timedelta) -> timedelta:
        value = self.parsed(name, default, parse_duration, "a duration such as 30s, 5m or 1h")
        if value <= timedelta(0) and self.text(name) is not None:
            self.problems.append(f"{name}: must be longer than zero")
        return value

    def quantity(self, name: str, default: Quantity) -> Quantity:
        return self.parsed(name, default, parse_quantity, "a quantity such as 500m, 2 or 4Gi")

    def rate(self, name: str, default: Rate | None) -> Rate | None:
        return self.parsed(name, default, parse_rate, "a rate such as 10/m, 5/30s, or off")

    def flag(self, name: str) -> bool:
        return self.parsed(name, False, _parse_bool, "true or false")

    def count(self, name: str, default: int, high: int) -> int:
        value = self.parsed(name, default, int, "a whole number")
        if not 0 < value <= high:
            self.problems.append(f"{name}={value}: expected a number between 1 and {high}")
        return value

    def port(self, name: str, default: int, *, zero_disables: bool = False) -> int:
        value = self.parsed(name, default, int, "a port number")
        if value == 0 and zero_disables:
            return value
        if not 0 < value < 65536:
            self.problems.append(f"{name}={value}: expected a port number between 1 and 65535")
        return value


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def _parse_extended(raw: str) -> dict[str, Quantity | None]:
    allowed: dict[str, Quantity | None] = {}
    for item in raw.split(","):
        name, sep, cap = item.strip().partition("=")
        if not name or name in BASE_RESOURCES:
            raise ValueError(raw)
        allowed[name.strip()] = parse_quantity(cap) if sep else None
    return allowed


def _limits(read: EnvReader) -> LimitSettings:
    d = LimitSettings()
    return LimitSettings(
        max_cpu=read.quantity("MAX_SESSION_CPU", d.max_cpu),
        max_memory=read.quantity("MAX_SESSION_MEMORY", d.max_memory),
        max_ephemeral_storage=read.quantity(
            "MAX_SESSION_EPHEMERAL_STORAGE", d.max_ephemeral_storage
        ),
        extended_resources=read.parsed(
            "ALLOWED_EXTENDED_RESOURCES",
            {},
            _parse_extended,
            "comma-separated resource names other than cpu/memory/ephemeral-storage,"
            " each optionally =max (nvidia.com/gpu=1)",
        ),
        max_idle_timeout=read.duration("MAX_IDLE_TIMEOUT", d.max_idle_timeout),
        max_session_duration=read.duration("MAX_SESSION_DURATION", d.max_session_duration),
        create_rate=read.rate("RATE_LIMIT_CREATE", d.create_rate),
        connect_rate=read.rate("RATE_LIMIT_CONNECT", d.connect_rate),
    )


def _role_groups(read: EnvReader) -> tuple[tuple[str, str], ...]:
    """``OIDC_ROLE_GROUPS``: ``role=group`` items separated by commas; a role may repeat."""
    raw = read.text("OIDC_ROLE_GROUPS") or ""
    pairs = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        role, _, group = (x.strip() for x in item.partition("="))
        if role not in ROLE_NAMES or not group:
            read.problems.append(
                f"OIDC_ROLE_GROUPS: {item!r}: expected role=group with a role of "
                + ", ".join(ROLE_NAMES)
            )
            continue
        pairs.append((group, role))
    return tuple(pairs)


def _jwt_secret(read: EnvReader) -> str | None:
    secret = read.text("JWT_SECRET")
    if secret is not None and len(secret) < MIN_JWT_SECRET:
        # the value is a secret: say how long it is, never what it is
        read.problems.append(
            f"JWT_SECRET: {len(secret)} characters is too short; use at least {MIN_JWT_SECRET}"
            " random ones (e.g. `openssl rand -base64 48`)"
        )
    return secret


def _database(read: EnvReader) -> DatabaseSettings:
    url = read.text("DATABASE_URL")
    if url:
        return DatabaseSettings(url=url, configured=True)
    if read.text("DB_HOST") is None:
        return DatabaseSettings()
    conninfo = make_conninfo(
        host=read.text("DB_HOST"),
        port=str(read.port("DB_PORT", 5432)),
        user=read.text("DB_USER", "streamspace"),
        password=read.text("DB_PASSWORD") or None,
        dbname=read.text("DB_NAME", "streamspace"),
        sslmode=read.text("DB_SSLMODE", "prefer"),
    )
    return DatabaseSettings(url=conninfo, configured=True)


def _namespace_set(read: EnvReader, name: str) -> tuple[str, ...]:
    """A comma-separated set of namespace names, in order, without repeats. Globs are refused:
    with scanning off (no cluster-wide namespace watch) Kopf would take them literally."""
    names = [n.strip() for n in (read.text(name) or "").split(",") if n.strip()]
    for bad in (n for n in names if not is_dns_label(n)):
        read.problems.append(f"{name}: {bad!r} is not a namespace name (no globs)")
    return tuple(dict.fromkeys(names))


def _peering(read: EnvReader) -> PeeringSettings:
    lifetime = read.duration("PEERING_LIFETIME", PeeringSettings.lifetime)
    # Kopf keeps whole seconds; below 5 s a replica renews every second and one slow request
    # lets its entry lapse while it still acts.
    if lifetime % timedelta(seconds=1) or not (
        MIN_PEERING_LIFETIME <= lifetime <= MAX_PEERING_LIFETIME
    ):
        read.problems.append(
            f"PEERING_LIFETIME={read.text('PEERING_LIFETIME')!r}: expected whole seconds from"
            f" {format_duration(MIN_PEERING_LIFETIME)} to {format_duration(MAX_PEERING_LIFETIME)}"
        )
    return PeeringSettings(lifetime=lifetime)


def _parse_log_format(raw: str) -> str:
    if raw.lower() not in LOG_FORMATS:
        raise ValueError(raw)
    return raw.lower()


def _runtime(read: EnvReader) -> RuntimeSettings:
    return RuntimeSettings(
        log_format=read.parsed(
            "LOG_FORMAT", RuntimeSettings.log_format, _parse_log_format, " or ".join(LOG_FORMATS)
        ),
        shutdown_timeout=read.duration("SHUTDOWN_TIMEOUT", RuntimeSettings.shutdown_timeout),
    )


def load_runtime_settings(env: Mapping[str, str] | None = None) -> RuntimeSettings:
    """Only the runtime group: the command line sets up logging with it before any command
    runs (and before the command's own ``load_settings`` may fail and need reporting)."""
    read = EnvReader(os.environ if env is None else env)
    runtime = _runtime(read)
    if read.problems:
        raise ConfigError(read.problems)
    return runtime


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``env`` (default: the process environment)."""
    read = EnvReader(os.environ if env is None else env)
    defaults = SessionSettings()
    settings = Settings(
        runtime=_runtime(read),
        database=_database(read),
        kubernetes=KubernetesSettings(
            kubeconfig=read.text("KUBECONFIG"),
            namespace=read.text("NAMESPACE", "streamspace") or "streamspace",
            all_namespaces=read.flag("ALL_NAMESPACES"),
            operator_namespaces=_namespace_set(read, "OPERATOR_NAMESPACES"),
            qps=read.count("KUBE_QPS", KubernetesSettings.qps, 10_000),
            burst=read.count("KUBE_BURST", KubernetesSettings.burst, 10_000),
        ),
        sessions=SessionSettings(
            ingress_domain=read.text("INGRESS_DOMAIN"),
            ingress_class=read.text("INGRESS_CLASS"),
            storage_class=read.text("STORAGE_CLASS"),
            home_size=read.text("HOME_SIZE", defaults.home_size) or defaults.home_size,
            stale_after=read.duration("STALE_AFTER", defaults.stale_after),
            heartbeat_check_interval=read.duration(
                "HEARTBEAT_CHECK_INTERVAL", defaults.heartbeat_check_interval
            ),
            idle_check_interval=read.duration("IDLE_CHECK_INTERVAL", defaults.idle_check_interval),
            schedule_check_interval=read.duration(
                "SCHEDULE_CHECK_INTERVAL", defaults.schedule_check_interval
            ),
            hibernate_warning=read.duration("HIBERNATE_WARNING", defaults.hibernate_warning),
            reconcile_interval=read.duration("RECONCILE_INTERVAL", defaults.reconcile_interval),
        ),
        sync=SyncSettings(
            work_dir=Path(read.text("SYNC_WORK_DIR") or SyncSettings.work_dir),
            interval=read.duration("SYNC_INTERVAL", SyncSettings.interval),
            allow_local_repos=read.flag("ALLOW_LOCAL_REPOS"),
            ca_bundle=Path(ca) if (ca := read.text("SYNC_CA_BUNDLE")) else None,
            request_interval=read.duration("SYNC_REQUEST_INTERVAL", SyncSettings.request_interval),
            max_pack_bytes=read.count("SYNC_MAX_PACK_BYTES", SyncSettings.max_pack_bytes, 2**40),
            max_object_bytes=read.count(
                "SYNC_MAX_OBJECT_BYTES", SyncSettings.max_object_bytes, 2**40
            ),
            max_bytes=read.count("SYNC_MAX_BYTES", SyncSettings.max_bytes, 2**40),
            max_manifest_bytes=read.count(
                "SYNC_MAX_MANIFEST_BYTES", SyncSettings.max_manifest_bytes, 2**30
            ),
        ),
        network=NetworkSettings(allow_private_networks=read.flag("ALLOW_PRIVATE_NETWORKS")),
        events=_events(read),
        http=HttpSettings(
            port=read.port("PORT", HttpSettings.port),
            db_pool_size=read.count("DB_POOL_SIZE", HttpSettings.db_pool_size, 1000),
            ws_heartbeat=read.duration("WS_HEARTBEAT", HttpSettings.ws_heartbeat),
            ws_queue=read.count("WS_QUEUE", HttpSettings.ws_queue, 100_000),
            idempotency_ttl=read.duration("IDEMPOTENCY_TTL", HttpSettings.idempotency_ttl),
            ws_max_streams_per_user=read.count(
                "WS_MAX_STREAMS_PER_USER", HttpSettings.ws_max_streams_per_user, 1_000_000
            ),
            ws_max_streams=read.count("WS_MAX_STREAMS", HttpSettings.ws_max_streams, 1_000_000),
            ws_max_log_follows=read.count(
                "WS_MAX_LOG_FOLLOWS", HttpSettings.ws_max_log_follows, 10_000
            ),
            ws_reauth_interval=read.duration("WS_REAUTH_INTERVAL", HttpSettings.ws_reauth_interval),
            cors_allowed_origins=tuple(
                origin.strip()
                for origin in (read.text("CORS_ALLOWED_ORIGINS") or "").split(",")
                if origin.strip()
            ),
        ),
        auth=AuthSettings(
            jwt_secret=_jwt_secret(read),
            jwt_audience=read.text("JWT_AUDIENCE"),
            oidc_issuer=read.text("OIDC_ISSUER"),
            oidc_audience=read.text("OIDC_AUDIENCE"),
            oidc_username_claim=read.text("OIDC_USERNAME_CLAIM", "sub") or "sub",
            oidc_groups_claim=read.text("OIDC_GROUPS_CLAIM", "groups") or "groups",
            oidc_role_groups=_role_groups(read),
            oidc_client_id=read.text("OIDC_CLIENT_ID") or read.text("OIDC_AUDIENCE"),
            oidc_client_secret=read.text("OIDC_CLIENT_SECRET"),
            oidc_scopes=read.text("OIDC_SCOPES", AuthSettings.oidc_scopes) or "openid",
            webhook_secret=read.text("WEBHOOK_SECRET"),
            webhook_allow_unsigned=read.flag("WEBHOOK_ALLOW_UNSIGNED"),
            webhook_tolerance=read.duration("WEBHOOK_TOLERANCE", AuthSettings.webhook_tolerance),
            api_key_cache_ttl=_api_key_cache_ttl(read),
        ),
        access=_access(read),
        metrics=MetricsSettings(
            host=read.text("METRICS_HOST", MetricsSettings.host) or MetricsSettings.host,
            port=read.port("METRICS_PORT", MetricsSettings.port, zero_disables=True),
        ),
        limits=_limits(read),
        peering=_peering(read),
        terminal=read_terminal(read),
    )
    if settings.auth.oidc_issuer and not settings.auth.oidc_audience:
        read.problems.append(
            "OIDC_ISSUER is set without OIDC_AUDIENCE: OIDC tokens are checked for an audience"
        )
    gated = settings.access.auth_url or settings.access.traefik_middleware
    if settings.sessions.ingress_domain and not gated and not settings.access.allow_unauthenticated:
        read.problems.append(
            "INGRESS_DOMAIN publishes sessions: set SESSION_AUTH_URL (ingress-nginx) or"
            " SESSION_AUTH_TRAEFIK_MIDDLEWARE (Traefik) so that only their owners reach them,"
            " or ALLOW_UNAUTHENTICATED_SESSIONS=true"
        )
    if read.problems:
        raise ConfigError(read.problems)
    return settings


MAX_API_KEY_CACHE_TTL = timedelta(minutes=1)


def _api_key_cache_ttl(read: EnvReader) -> timedelta:
    value = read.parsed(
        "API_KEY_CACHE_TTL",
        AuthSettings.api_key_cache_ttl,
        parse_duration,
        "a duration such as 5s, or 0",
    )
    if not timedelta(0) <= value <= MAX_API_KEY_CACHE_TTL:
        read.problems.append(
            "API_KEY_CACHE_TTL: must be between 0 and 1m (a revoked key works that long)"
        )
    return value


MIN_ACCESS_SECRET = 32
MAX_ACCESS_TTL = timedelta(hours=24)


def _access(read: EnvReader) -> AccessSettings:
    defaults = AccessSettings()
    ttl = read.duration("SESSION_ACCESS_TTL", defaults.ttl)
    if ttl > MAX_ACCESS_TTL:
        read.problems.append("SESSION_ACCESS_TTL: at most 24h (the credential is short-lived)")
    secret = read.text("SESSION_ACCESS_SECRET")
    if secret is not None and len(secret) < MIN_ACCESS_SECRET:
        read.problems.append(f"SESSION_ACCESS_SECRET: at least {MIN_ACCESS_SECRET} characters")
    urls: dict[str, str | None] = {}
    for variable in ("SESSION_AUTH_URL", "SESSION_AUTH_SIGNIN_URL"):
        url = read.text(variable)
        if url is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
            read.problems.append(f"{variable}={url!r}: expected an http(s) URL")
        urls[variable] = url
    capabilities = []
    for raw in (read.text("ALLOWED_CAPABILITIES") or "").split(","):
        if raw.strip():
            name = capability_name(raw)
            if name is None:
                read.problems.append(
                    f"ALLOWED_CAPABILITIES: {raw.strip()!r} is not a capability name"
                    " (such as NET_BIND_SERVICE; ALL is refused)"
                )
            else:
                capabilities.append(name)
    namespace = read.text("INGRESS_NAMESPACE", defaults.ingress_namespace)
    if namespace is not None and not is_dns_label(namespace):
        read.problems.append(f"INGRESS_NAMESPACE={namespace!r}: expected a namespace name")
    return AccessSettings(
        ttl=ttl,
        secret=secret,
        auth_url=urls["SESSION_AUTH_URL"],
        signin_url=urls["SESSION_AUTH_SIGNIN_URL"],
        traefik_middleware=read.text("SESSION_AUTH_TRAEFIK_MIDDLEWARE"),
        allow_unauthenticated=read.flag("ALLOW_UNAUTHENTICATED_SESSIONS"),
        ingress_namespace=namespace or defaults.ingress_namespace,
        allowed_capabilities=tuple(sorted(set(capabilities))),
    )


def _events(read: EnvReader) -> EventSettings:
    d = EventSettings()
    timeout = read.duration("EVENT_DELIVERY_TIMEOUT", d.delivery_timeout)
    lease = read.duration("EVENT_DELIVERY_LEASE", d.lease)
    if lease <= timeout:
        read.problems.append(
            "EVENT_DELIVERY_LEASE must be longer than EVENT_DELIVERY_TIMEOUT (a delivery still"
            " being posted would be taken again)"
        )
    return EventSettings(
        delivery_timeout=timeout,
        lease=lease,
        retry_base=read.duration("EVENT_RETRY_BASE", d.retry_base),
        retry_cap=read.duration("EVENT_RETRY_CAP", d.retry_cap),
        retry_budget=read.count("EVENT_RETRY_BUDGET", d.retry_budget, 1000),
        concurrency=read.count("EVENT_DELIVERY_CONCURRENCY", d.concurrency, 1000),
        poll_interval=read.duration("EVENT_POLL_INTERVAL", d.poll_interval),
        secret_cache=read.duration("EVENT_SECRET_CACHE", d.secret_cache),
        retention=read.duration("EVENT_RETENTION", d.retention),
        ca_bundle=Path(ca) if (ca := read.text("EVENT_CA_BUNDLE")) else None,
    )
