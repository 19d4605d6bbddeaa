"""Settings: defaults, parsing, every problem reported at once, secrets kept out of repr."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from streamspace.config import ConfigError, load_runtime_settings, load_settings
from streamspace.durations import format_duration, parse_duration
from streamspace_dev.settings import load_dev_settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("0", 0),
        ("2h0m5s", 7205),
        ("1.5h", 5400),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "5 m", "m5", "1d", "-5s", "5mm", "1h-5m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (90, "1m30s"), (3600, "1h"), (5430, "1h30m30s")]
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


def test_defaults_follow_the_spec() -> None:
    s = load_settings({})
    assert s.kubernetes.namespace == "streamspace"
    assert s.http.port == 8080
    assert s.sync.interval == timedelta(hours=1)
    assert s.sync.work_dir == Path("/tmp/streamspace-repos")  # noqa: S108
    assert s.sessions.stale_after == timedelta(seconds=60)
    assert s.sessions.heartbeat_check_interval == timedelta(seconds=30)
    assert s.sessions.idle_check_interval == timedelta(seconds=30)
    assert s.sessions.hibernate_warning == timedelta(minutes=5)
    assert not s.database.configured
    assert not s.sync.allow_local_repos
    assert not s.auth.webhook_allow_unsigned


def test_values_are_parsed() -> None:
    s = load_settings(
        {
            "NAMESPACE": "team-a",
            "PORT": "9000",
            "SYNC_INTERVAL": "15m",
            "STALE_AFTER": "2s",
            "ALLOW_LOCAL_REPOS": "true",
            "CORS_ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "INGRESS_DOMAIN": "streams.example.com",
            "SESSION_AUTH_URL": "http://streamspace-api.streamspace.svc:8080/auth/session",
            "HOME_SIZE": "50Gi",
        }
    )
    assert s.kubernetes.namespace == "team-a"
    assert s.http.port == 9000
    assert s.sync.interval == timedelta(minutes=15)
    assert s.sessions.stale_after == timedelta(seconds=2)
    assert s.sync.allow_local_repos
    assert s.http.cors_allowed_origins == ("https://a.example", "https://b.example")
    assert s.sessions.ingress_domain == "streams.example.com"
    assert s.sessions.home_size == "50Gi"


def test_session_access_settings() -> None:
    defaults = load_settings({}).access
    assert defaults.ttl == timedelta(minutes=15)
    assert defaults.ingress_namespace == "ingress-nginx"
    assert defaults.allowed_capabilities == ()
    assert defaults.auth_url is None and defaults.secret is None
    s = load_settings(
        {
            "SESSION_ACCESS_TTL": "5m",
            "SESSION_ACCESS_SECRET": "s" * 32,
            "SESSION_AUTH_TRAEFIK_MIDDLEWARE": "streamspace-session-auth@kubernetescrd",
            "INGRESS_DOMAIN": "streams.example.com",
            "INGRESS_NAMESPACE": "traefik",
            "ALLOWED_CAPABILITIES": "net_bind_service, CAP_CHOWN,CHOWN",
        }
    ).access
    assert s.ttl == timedelta(minutes=5)
    assert s.traefik_middleware == "streamspace-session-auth@kubernetescrd"
    assert s.ingress_namespace == "traefik"
    assert s.allowed_capabilities == ("CHOWN", "NET_BIND_SERVICE")
    assert "s" * 32 not in repr(s)


def test_published_sessions_need_a_gate() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"INGRESS_DOMAIN": "streams.example.com"})
    assert "SESSION_AUTH_URL" in caught.value.problems[0]
    opened = load_settings(
        {"INGRESS_DOMAIN": "streams.example.com", "ALLOW_UNAUTHENTICATED_SESSIONS": "true"}
    )
    assert opened.access.allow_unauthenticated


def test_bad_session_access_settings_are_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "SESSION_ACCESS_TTL": "48h",
                "SESSION_ACCESS_SECRET": "hunter2",
                "SESSION_AUTH_URL": "ftp://x/auth",
                "ALLOWED_CAPABILITIES": "ALL,SYS_ADMIN,not a cap",
                "INGRESS_NAMESPACE": "Ingress_Nginx",
            }
        )
    problems = caught.value.problems
    assert len(problems) == 6, problems
    assert "hunter2" not in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "PORT": "eighty",
                "SYNC_INTERVAL": "hourly",
                "STALE_AFTER": "0s",
                "ALLOW_LOCAL_REPOS": "maybe",
            }
        )
    problems = caught.value.problems
    assert len(problems) == 4
    assert any(p.startswith("PORT=") for p in problems)
    assert any(p.startswith("SYNC_INTERVAL=") for p in problems)
    assert any(p.startswith("STALE_AFTER") for p in problems)
    assert any(p.startswith("ALLOW_LOCAL_REPOS=") for p in problems)
    assert "SYNC_INTERVAL" in str(caught.value)


def test_runtime_settings() -> None:
    defaults = load_settings({}).runtime
    assert defaults.log_format == "text"
    assert defaults.shutdown_timeout == timedelta(seconds=20)
    s = load_settings({"LOG_FORMAT": "JSON", "SHUTDOWN_TIMEOUT": "45s"}).runtime
    assert (s.log_format, s.shutdown_timeout) == ("json", timedelta(seconds=45))
    assert load_runtime_settings({"LOG_FORMAT": "json"}).log_format == "json"
    bad = {"LOG_FORMAT": "xml", "SHUTDOWN_TIMEOUT": "0s", "PORT": "eighty"}
    with pytest.raises(ConfigError) as caught:
        load_settings(bad)
    assert len(caught.value.problems) == 3
    assert "LOG_FORMAT='xml': expected text or json" in caught.value.problems
    with pytest.raises(ConfigError) as only_runtime:
        load_runtime_settings(bad)
    assert len(only_runtime.value.problems) == 2  # PORT is not the runtime's business


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, timedelta(seconds=10)), ("5s", timedelta(seconds=5)), ("2m", timedelta(minutes=2))],
)
def test_peering_lifetime(raw: str | None, expected: timedelta) -> None:
    env = {} if raw is None else {"PEERING_LIFETIME": raw}
    assert load_settings(env).peering.lifetime == expected


@pytest.mark.parametrize("raw", ["4s", "1500ms", "11m", "0s", "soon"])
def test_peering_lifetime_out_of_range(raw: str) -> None:
    """Kopf keeps whole seconds; too short lapses under one slow renewal."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"PEERING_LIFETIME": raw})
    assert any(p.startswith(f"PEERING_LIFETIME={raw!r}") for p in caught.value.problems)


@pytest.mark.parametrize(
    ("env", "served"),
    [
        ({}, ("streamspace",)),
        ({"NAMESPACE": "team-a"}, ("team-a",)),
        ({"ALL_NAMESPACES": "true"}, None),
        # a shard: its own set, whatever NAMESPACE (the facade's) and ALL_NAMESPACES say
        ({"OPERATOR_NAMESPACES": " b, a ,b,", "NAMESPACE": "x"}, ("b", "a")),
        ({"OPERATOR_NAMESPACES": "a", "ALL_NAMESPACES": "true"}, ("a",)),
    ],
)
def test_the_namespaces_the_operator_serves(env: dict[str, str], served: object) -> None:
    assert load_settings(env).kubernetes.served == served


def test_a_shard_names_namespaces_not_globs() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"OPERATOR_NAMESPACES": "team-*,ok,Bad"})
    assert caught.value.problems == [
        "OPERATOR_NAMESPACES: 'team-*' is not a namespace name (no globs)",
        "OPERATOR_NAMESPACES: 'Bad' is not a namespace name (no globs)",
    ]


def test_oidc_issuer_needs_an_audience() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"OIDC_ISSUER": "https://id.example", "PORT": "eighty"})
    assert len(caught.value.problems) == 2
    assert any("OIDC_AUDIENCE" in p for p in caught.value.problems)
    s = load_settings({"OIDC_ISSUER": "https://id.example", "OIDC_AUDIENCE": "streamspace"})
    assert s.auth.oidc_issuer == "https://id.example"
    assert s.auth.oidc_audience == "streamspace"
    assert load_settings({"OIDC_AUDIENCE": "streamspace"}).auth.oidc_issuer is None


def test_database_url_wins_over_db_variables() -> None:
    s = load_settings({"DATABASE_URL": "postgresql://u:pw@db/x", "DB_HOST": "other"})
    assert s.database.url == "postgresql://u:pw@db/x"
    assert s.database.configured


def test_db_variables_build_a_connection_string() -> None:
    s = load_settings(
        {
            "DB_HOST": "db.internal",
            "DB_PORT": "6543",
            "DB_USER": "ss",
            "DB_PASSWORD": "p w'd",
            "DB_NAME": "streams",
            "DB_SSLMODE": "require",
        }
    )
    url = s.database.url
    for part in ("host=db.internal", "port=6543", "user=ss", "dbname=streams", "sslmode=require"):
        assert part in url
    assert "password='p w\\'d'" in url


def test_secrets_never_appear_in_repr() -> None:
    s = load_settings(
        {
            "DATABASE_URL": "postgresql://u:hunter2@db/x",
            "JWT_SECRET": "jwt-hunter2-of-at-least-32-characters",
            "WEBHOOK_SECRET": "hook-hunter2",
        }
    )
    assert "hunter2" not in repr(s)


def test_dev_settings(tmp_path: Path) -> None:
    dev = load_dev_settings({"STREAMSPACE_CACHE_DIR": str(tmp_path), "XDG_CACHE_HOME": "/x"})
    assert dev.cache_dir == tmp_path
    assert load_dev_settings({"XDG_CACHE_HOME": "/x"}).cache_dir == Path("/x/streamspace")
    assert load_dev_settings({}).state_dir.name == ".streamspace"
