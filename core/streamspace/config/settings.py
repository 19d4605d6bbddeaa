"""The settings objects: frozen, typed, with secrets kept out of ``repr`` (read by ``env``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from streamspace.config.terminal import TerminalSettings
from streamspace.durations import format_duration, parse_duration
from streamspace.quantities import Quantity, parse_quantity


class ConfigError(ValueError):
    """The environment holds one or more invalid settings; ``problems`` lists all of them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = field(default="", repr=False)
    """libpq connection string or URL (``DATABASE_URL``, else built from ``DB_*``); secret."""

    configured: bool = False
    """True when the environment named a database; False means none (the facade answers 503)."""


@dataclass(frozen=True)
class KubernetesSettings:
    kubeconfig: str | None = None
    """Path of a kubeconfig (``KUBECONFIG``); None means in-cluster configuration."""

    namespace: str = "streamspace"
    """Namespace the operator watches and the facade writes to (``NAMESPACE``)."""

    all_namespaces: bool = False
    """Operator and facade serve every namespace (``ALL_NAMESPACES=true``)."""

    operator_namespaces: tuple[str, ...] = ()
    """The operator's shard: exactly these namespaces, whatever ``ALL_NAMESPACES`` says
    (``OPERATOR_NAMESPACES=a,b``; names, not globs; docs/SCALING.md). The facade ignores it."""

    @property
    def served(self) -> tuple[str, ...] | None:
        """The namespaces the operator serves; None: every namespace."""
        if self.operator_namespaces:
            return self.operator_namespaces
        return None if self.all_namespaces else (self.namespace,)

    qps: int = 200
    """The operator's own requests per second to the API server, on average (``KUBE_QPS``)."""

    burst: int = 400
    """... and at most this many at once after a quiet spell (``KUBE_BURST``)."""


@dataclass(frozen=True)
class SessionSettings:
    ingress_domain: str | None = None
    """Create an Ingress ``<session>.<domain>`` per session when set (``INGRESS_DOMAIN``)."""

    ingress_class: str | None = None
    """IngressClass of those Ingresses (``INGRESS_CLASS``)."""

    storage_class: str | None = None
    """StorageClass of the per-user home PVC (``STORAGE_CLASS``); None: the cluster default."""

    home_size: str = "10Gi"
    """Size of the per-user home PVC (``HOME_SIZE``)."""

    stale_after: timedelta = timedelta(seconds=60)
    """A connection without a heartbeat for this long is stale (``STALE_AFTER``)."""

    heartbeat_check_interval: timedelta = timedelta(seconds=30)
    """How often connections are checked for staleness (``HEARTBEAT_CHECK_INTERVAL``)."""

    idle_check_interval: timedelta = timedelta(seconds=30)
    """How often running sessions are checked for idleness (``IDLE_CHECK_INTERVAL``)."""

    schedule_check_interval: timedelta = timedelta(seconds=30)
    """How often sessions with a ``spec.schedule`` are checked for a due start or stop
    (``SCHEDULE_CHECK_INTERVAL``); a fire due before the next check is waited for."""

    hibernate_warning: timedelta = timedelta(minutes=5)
    """How long before hibernation the idle warning goes out (``HIBERNATE_WARNING``)."""

    reconcile_interval: timedelta = timedelta(seconds=60)
    """Every session is re-reconciled this often, whatever happened (``RECONCILE_INTERVAL``)."""


@dataclass(frozen=True)
class SyncSettings:
    work_dir: Path = Path("/tmp/streamspace-repos")  # noqa: S108 - the seed's documented default
    """Where repositories are fetched to (``SYNC_WORK_DIR``)."""

    interval: timedelta = timedelta(hours=1)
    """Default interval between scheduled syncs (``SYNC_INTERVAL``)."""

    allow_local_repos: bool = False
    """Accept ``file://`` URLs and local paths: development and tests (``ALLOW_LOCAL_REPOS``)."""

    ca_bundle: Path | None = None
    """Extra CA certificates (PEM) trusted for https Git servers (``SYNC_CA_BUNDLE``)."""

    request_interval: timedelta = timedelta(seconds=10)
    """Webhook-requested syncs of one repository run at most this often; requests in between
    are folded into one later sync, never dropped (``SYNC_REQUEST_INTERVAL``)."""

    max_pack_bytes: int = 256 * 2**20
    """A fetch is aborted once the pack it downloads grows past this (``SYNC_MAX_PACK_BYTES``)."""

    max_object_bytes: int = 16 * 2**20
    """Largest object a pack may declare in its header, checked before it is inflated
    (``SYNC_MAX_OBJECT_BYTES``)."""

    max_bytes: int = 64 * 2**20
    """Byte budget of one sync: the sizes all objects of the pack declare, the distinct blobs
    read and the bytes parsed, each (``SYNC_MAX_BYTES``)."""

    max_manifest_bytes: int = 256 * 2**10
    """Largest catalog manifest stored, as JSON, and largest YAML document once its aliases
    are expanded (``SYNC_MAX_MANIFEST_BYTES``)."""


@dataclass(frozen=True)
class NetworkSettings:
    """Outbound connections to addresses that callers choose (repository URLs)."""

    allow_private_networks: bool = False
    """Let syncs reach loopback, private (RFC 1918, CGNAT, ULA) and link-local addresses
    (``ALLOW_PRIVATE_NETWORKS=true``): development and tests only. Cloud metadata, unspecified
    and multicast addresses stay refused."""


@dataclass(frozen=True)
class EventSettings:
    """Delivery of plugin events (docs/PLUGINS.md §4) by the facade replica that writes the
    mirror. Short values here make the retry tests quick; production keeps the defaults."""

    delivery_timeout: timedelta = timedelta(seconds=10)
    """How long one POST to a plugin may take, connecting included (``EVENT_DELIVERY_TIMEOUT``)."""

    lease: timedelta = timedelta(seconds=30)
    """A delivery being posted is not taken again for this long; after a crash mid-delivery it
    goes again once the lease has run out (``EVENT_DELIVERY_LEASE``, longer than the timeout)."""

    retry_base: timedelta = timedelta(seconds=2)
    """Backoff of the first retry; each further one doubles its ceiling, and the wait is drawn
    uniformly below it (full jitter) (``EVENT_RETRY_BASE``)."""

    retry_cap: timedelta = timedelta(minutes=10)
    """Longest ceiling of a retry's wait (``EVENT_RETRY_CAP``)."""

    retry_budget: int = 15
    """Attempts a delivery gets in all; after the last failed one it is ``dead`` until an admin
    redelivers it (``EVENT_RETRY_BUDGET``). The defaults give up after about 1.5 hours."""

    concurrency: int = 16
    """Deliveries posted at once, each to a different plugin or subject
    (``EVENT_DELIVERY_CONCURRENCY``)."""

    poll_interval: timedelta = timedelta(seconds=1)
    """How often the worker looks for due retries; new events wake it at once
    (``EVENT_POLL_INTERVAL``)."""

    secret_cache: timedelta = timedelta(seconds=30)
    """How long a plugin's signing secret is reused before it is read again
    (``EVENT_SECRET_CACHE``); a rotated secret is used within this time."""

    retention: timedelta = timedelta(days=7)
    """Settled events and their delivery logs are dropped after this (``EVENT_RETENTION``)."""

    ca_bundle: Path | None = None
    """Extra CA certificates (PEM) trusted for https plugin receivers (``EVENT_CA_BUNDLE``)."""


@dataclass(frozen=True)
class HttpSettings:
    port: int = 8080
    """Port the facade listens on (``PORT``)."""

    cors_allowed_origins: tuple[str, ...] = ()
    """Origins allowed for browsers and WebSocket upgrades (``CORS_ALLOWED_ORIGINS``)."""

    db_pool_size: int = 20
    """PostgreSQL connections per facade process (``DB_POOL_SIZE``)."""

    ws_heartbeat: timedelta = timedelta(seconds=30)
    """WebSocket ping interval; a client that does not answer within half of it is closed
    (``WS_HEARTBEAT``)."""

    ws_queue: int = 256
    """Messages waiting for one WebSocket client before it counts as too slow and is dropped
    (``WS_QUEUE``)."""

    idempotency_ttl: timedelta = timedelta(hours=24)
    """How long the answer to a POST with an ``Idempotency-Key`` is kept for replay
    (``IDEMPOTENCY_TTL``)."""

    ws_max_streams_per_user: int = 20
    """Open WebSocket streams one user may hold; more get 429 before the upgrade
    (``WS_MAX_STREAMS_PER_USER``)."""

    ws_max_streams: int = 10_000
    """Open WebSocket streams of all users together, per facade process (``WS_MAX_STREAMS``)."""

    ws_max_log_follows: int = 50
    """Pod logs followed upstream at once, per facade process: subscribers of one container
    share one follow; a new follow past this gets 429 (``WS_MAX_LOG_FOLLOWS``). The log
    streams' own Kubernetes client holds at most two connections per follow."""

    ws_reauth_interval: timedelta = timedelta(seconds=60)
    """How often the credential of an open stream is checked again; a revoked API key or an
    expired token closes the stream with 4401 (``WS_REAUTH_INTERVAL``)."""


@dataclass(frozen=True)
class Rate:
    """At most ``count`` events per ``period`` for one caller (a token bucket of that size)."""

    count: int
    period: timedelta

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.period)}"


def parse_rate(raw: str) -> Rate | None:
    """``10/m``, ``60/1m``, ``5/30s`` → ``Rate``; ``off`` → None (no limit)."""
    if raw.lower() == "off":
        return None
    count, _, per = raw.partition("/")
    period = parse_duration(per if per[:1].isdigit() else f"1{per}")
    if not count.isdigit() or int(count) < 1 or period <= timedelta(0):
        raise ValueError(raw)
    return Rate(int(count), period)


BASE_RESOURCES = ("cpu", "memory", "ephemeral-storage")
"""Resources every session may ask for, within their caps; any other is an extended resource."""


_DEFAULT_CPU = parse_quantity("8")
_DEFAULT_MEMORY = parse_quantity("32Gi")
_DEFAULT_EPHEMERAL = parse_quantity("100Gi")


@dataclass(frozen=True)
class LimitSettings:
    """Admin-set caps on what one session may ask for, and per-user rate limits of the facade.

    Enforced on the REST path (``streamspace.limits``); the names of the environment variables
    are what a refused request reports as its ``details.limit``.
    """

    max_cpu: Quantity = _DEFAULT_CPU
    """Largest cpu request or limit of one session (``MAX_SESSION_CPU``)."""

    max_memory: Quantity = _DEFAULT_MEMORY
    """Largest memory request or limit of one session (``MAX_SESSION_MEMORY``)."""

    max_ephemeral_storage: Quantity = _DEFAULT_EPHEMERAL
    """Largest ephemeral-storage request or limit of one session
    (``MAX_SESSION_EPHEMERAL_STORAGE``)."""

    extended_resources: Mapping[str, Quantity | None] = field(default_factory=dict)
    """Resources other than cpu, memory and ephemeral-storage a session may ask for, each with
    its largest amount or None for no cap (``ALLOWED_EXTENDED_RESOURCES``, e.g.
    ``nvidia.com/gpu=1``); empty: none."""

    max_idle_timeout: timedelta = timedelta(hours=24)
    """Longest ``idleTimeout`` of a session (``MAX_IDLE_TIMEOUT``)."""

    max_session_duration: timedelta = timedelta(days=7)
    """Longest ``maxSessionDuration`` of a session (``MAX_SESSION_DURATION``)."""

    create_rate: Rate | None = Rate(10, timedelta(minutes=1))
    """Session creations per user (``RATE_LIMIT_CREATE``, e.g. ``10/m``; ``off``: none)."""

    connect_rate: Rate | None = Rate(60, timedelta(minutes=1))
    """Connects per user (``RATE_LIMIT_CONNECT``, e.g. ``60/m``; ``off``: none)."""


MIN_JWT_SECRET = 32
"""Characters ``JWT_SECRET`` must have at least: HS256 wants a key as long as its 256-bit hash
(RFC 7518 §3.2), and a short secret can be found by brute force from one token."""

ROLE_NAMES = ("user", "operator", "admin")
"""The roles, lowest to highest (``streamspace.auth.tokens.ROLES`` is this tuple)."""


@dataclass(frozen=True)
class AuthSettings:
    jwt_secret: str | None = field(default=None, repr=False)
    """HS256 secret for bearer JWTs (``JWT_SECRET``), at least ``MIN_JWT_SECRET`` characters;
    secret."""

    jwt_audience: str | None = None
    """Audience HS256 tokens must carry in ``aud`` (``JWT_AUDIENCE``); unset: HS256 tokens
    carrying any ``aud`` are refused (they were made for another service)."""

    oidc_issuer: str | None = None
    """Issuer whose JWKS verifies RS256 bearer JWTs (``OIDC_ISSUER``)."""

    oidc_audience: str | None = None
    """Audience required in OIDC tokens (``OIDC_AUDIENCE``)."""

    oidc_username_claim: str = "sub"
    """Claim of an OIDC token that is the user name, a DNS label (``OIDC_USERNAME_CLAIM``).
    Only this claim is read: a token whose claim is missing or not a DNS label is refused."""

    oidc_groups_claim: str = "groups"
    """Claim of an OIDC token that lists the caller's groups (``OIDC_GROUPS_CLAIM``)."""

    oidc_role_groups: tuple[tuple[str, str], ...] = ()
    """(group, role) pairs: members of the group get the role (``OIDC_ROLE_GROUPS``, e.g.
    ``admin=streamspace-admins,operator=streamspace-operators``). OIDC callers in no listed
    group are users; no other claim grants a role."""

    oidc_client_id: str | None = None
    """The web console's client at the issuer, for signing in with the authorization-code flow
    (``OIDC_CLIENT_ID``; default: ``OIDC_AUDIENCE``, which ID tokens carry as their audience)."""

    oidc_client_secret: str | None = field(default=None, repr=False)
    """That client's secret, when the issuer treats it as confidential (``OIDC_CLIENT_SECRET``;
    PKCE is used either way); secret."""

    oidc_scopes: str = "openid profile email"
    """Scopes the console's sign-in asks for (``OIDC_SCOPES``; add the one that brings the
    groups claim, e.g. ``groups``, if the issuer needs it)."""

    webhook_secret: str | None = field(default=None, repr=False)
    """Shared secret of the repository webhook (``WEBHOOK_SECRET``); secret."""

    webhook_allow_unsigned: bool = False
    """Accept unsigned webhook deliveries (``WEBHOOK_ALLOW_UNSIGNED=true``); never in production."""

    webhook_tolerance: timedelta = timedelta(minutes=5)
    """How far a generic delivery's ``webhook-timestamp`` may be from now
    (``WEBHOOK_TOLERANCE``)."""

    api_key_cache_ttl: timedelta = timedelta(seconds=5)
    """How long a facade process trusts an API key it has looked up before asking PostgreSQL
    again (``API_KEY_CACHE_TTL``, at most ``MAX_API_KEY_CACHE_TTL``; ``0`` looks up every
    request). A key revoked through this process is refused at once; one revoked elsewhere (the
    CLI, another replica) is refused by this process within this long."""


@dataclass(frozen=True)
class AccessSettings:
    """The session access gate (forward auth at the ingress) and the isolation of session pods."""

    ttl: timedelta = timedelta(minutes=15)
    """Lifetime of the credential ``/connect`` issues for a session's host
    (``SESSION_ACCESS_TTL``, at most 24h)."""

    secret: str | None = field(default=None, repr=False)
    """Secret the gate's signing key is derived from (``SESSION_ACCESS_SECRET``, at least 32
    characters); unset: derived from ``JWT_SECRET``, else random per facade process; secret."""

    auth_url: str | None = None
    """The facade's auth-check URL as the ingress controller reaches it, e.g.
    ``http://streamspace-api.streamspace.svc:8080/auth/session`` (``SESSION_AUTH_URL``); session
    Ingresses then carry the ingress-nginx ``auth-url`` annotations."""

    signin_url: str | None = None
    """Where ingress-nginx sends a browser that got 401 (``SESSION_AUTH_SIGNIN_URL``)."""

    traefik_middleware: str | None = None
    """A Traefik ForwardAuth Middleware for session Ingresses, as Traefik names it, e.g.
    ``streamspace-session-auth@kubernetescrd`` (``SESSION_AUTH_TRAEFIK_MIDDLEWARE``)."""

    allow_unauthenticated: bool = False
    """Publish sessions through ``INGRESS_DOMAIN`` without a gate
    (``ALLOW_UNAUTHENTICATED_SESSIONS=true``); never in production."""

    ingress_namespace: str = "ingress-nginx"
    """The only namespace whose pods a session's NetworkPolicy admits (``INGRESS_NAMESPACE``)."""

    allowed_capabilities: tuple[str, ...] = ()
    """Linux capabilities a template may give back to its container by listing them in
    ``capabilities`` (``ALLOWED_CAPABILITIES``, comma-separated); none by default."""


@dataclass(frozen=True)
class MetricsSettings:
    """The operator's Prometheus endpoint (the facade serves ``/metrics`` on its own ``PORT``)."""

    host: str = "0.0.0.0"  # noqa: S104 (scraped from other pods)
    """Address the operator's ``/metrics`` listens on (``METRICS_HOST``)."""

    port: int = 9090
    """Port of the operator's ``/metrics`` (``METRICS_PORT``); 0 serves no metrics."""


@dataclass(frozen=True)
class PeeringSettings:
    """How operator replicas share the work through Kopf peering (one acts, the others wait)."""

    lifetime: timedelta = timedelta(seconds=10)
    """How long a replica's entry in the ``KopfPeering`` counts as alive without a renewal
    (``PEERING_LIFETIME``, whole seconds, 5s to 10m). Each replica renews 5-10 s before its entry
    expires (at least every second); a standby takes over this long after an active replica died
    without saying goodbye (SIGKILL, node lost), so it bounds the takeover time (decision 101)."""


MIN_PEERING_LIFETIME = timedelta(seconds=5)
MAX_PEERING_LIFETIME = timedelta(minutes=10)

LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class RuntimeSettings:
    """How either process behaves as a container: what its logs look like, how it stops."""

    log_format: str = "text"
    """``text`` (one line for people) or ``json`` (one JSON object per line on stderr, for log
    collectors) (``LOG_FORMAT``)."""

    shutdown_timeout: timedelta = timedelta(seconds=20)
    """On SIGTERM, how long in-flight requests may take to finish (facade) and the operator may
    take to stop before Kopf kills it; keep it below the pod's termination grace period
    (``SHUTDOWN_TIMEOUT``)."""


@dataclass(frozen=True)
class Settings:
    runtime: RuntimeSettings = RuntimeSettings()
    database: DatabaseSettings = DatabaseSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    sessions: SessionSettings = SessionSettings()
    sync: SyncSettings = SyncSettings()
    network: NetworkSettings = NetworkSettings()
    events: EventSettings = EventSettings()
    http: HttpSettings = HttpSettings()
    auth: AuthSettings = AuthSettings()
    access: AccessSettings = AccessSettings()
    metrics: MetricsSettings = MetricsSettings()
    limits: LimitSettings = LimitSettings()
    peering: PeeringSettings = PeeringSettings()
    terminal: TerminalSettings = field(default_factory=TerminalSettings)
