"""Settings: the environment is read once, into a frozen object that is passed explicitly.

``settings`` holds the objects (secrets kept out of ``repr``, so that logging a settings object
never leaks them); ``env`` reads them from the environment, the only module that does, and
collects every problem into one ``ConfigError``.
"""

from streamspace.config.env import (
    MAX_ACCESS_TTL,
    MAX_API_KEY_CACHE_TTL,
    MIN_ACCESS_SECRET,
    EnvReader,
    load_runtime_settings,
    load_settings,
)
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
from streamspace.config.terminal import TerminalSettings

__all__ = [
    "BASE_RESOURCES",
    "LOG_FORMATS",
    "MAX_ACCESS_TTL",
    "MAX_API_KEY_CACHE_TTL",
    "MAX_PEERING_LIFETIME",
    "MIN_ACCESS_SECRET",
    "MIN_JWT_SECRET",
    "MIN_PEERING_LIFETIME",
    "ROLE_NAMES",
    "AccessSettings",
    "AuthSettings",
    "ConfigError",
    "DatabaseSettings",
    "EnvReader",
    "EventSettings",
    "HttpSettings",
    "KubernetesSettings",
    "LimitSettings",
    "MetricsSettings",
    "NetworkSettings",
    "PeeringSettings",
    "Rate",
    "RuntimeSettings",
    "SessionSettings",
    "Settings",
    "SyncSettings",
    "TerminalSettings",
    "load_runtime_settings",
    "load_settings",
    "parse_rate",
]
