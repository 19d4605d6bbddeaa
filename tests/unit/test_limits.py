"""Session caps, rate-limit buckets, quantities and Idempotency-Key decisions: pure, table-driven."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from streamspace import idempotency
from streamspace.config import ConfigError, LimitSettings, Rate, load_settings
from streamspace.idempotency import Key, Outcome, Stored
from streamspace.limits import (
    Bucket,
    InvalidValue,
    is_full,
    retry_after,
    session_violations,
    take,
)
from streamspace.quantities import parse_quantity
from streamspace_facade.limits import RateLimiter
from streamspace_facade.sessions import new_session_name

pytestmark = pytest.mark.unit


# --- quantities ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        (2, Decimal(2)),
        (0.5, Decimal("0.5")),
        ("4Ti", Decimal(4 * 1024**4)),
        ("1.5Gi", Decimal(3 * 1024**3 // 2)),
        ("1e3", Decimal(1000)),
        ("1E-3", Decimal("0.001")),
        ("129M", Decimal(129_000_000)),
        (".5", Decimal("0.5")),
        ("+2", Decimal(2)),
    ],
)
def test_quantities_parse_exactly(raw: Any, value: Decimal) -> None:
    assert parse_quantity(raw).value == value


@pytest.mark.parametrize("raw", ["", "lots", "2 Gi", "1Gb", "1e99999999999999999999", True, "inf"])
def test_bad_quantities_are_refused(raw: Any) -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity(raw)


# --- session caps -------------------------------------------------------------------------------

LIMITS = LimitSettings(
    max_cpu=parse_quantity("4"),
    max_memory=parse_quantity("8Gi"),
    extended_resources={"nvidia.com/gpu": parse_quantity("1"), "example.com/fpga": None},
    max_idle_timeout=timedelta(hours=2),
    max_session_duration=timedelta(hours=12),
)

# spec of a request → [(limit, field, requested, allowed)] it breaks
CAPS: list[tuple[dict[str, Any], list[tuple[str, str, str, str]]]] = [
    ({}, []),
    ({"resources": {"requests": {"cpu": "4", "memory": "8Gi"}}}, []),
    ({"resources": {"limits": {"cpu": "4000m", "nvidia.com/gpu": 1}}}, []),
    ({"resources": {"limits": {"example.com/fpga": "64"}}}, []),
    (
        {"resources": {"requests": {"cpu": "256"}, "limits": {"cpu": "4001m"}}},
        [
            ("MAX_SESSION_CPU", "resources.requests.cpu", "256", "4"),
            ("MAX_SESSION_CPU", "resources.limits.cpu", "4001m", "4"),
        ],
    ),
    (
        {"resources": {"limits": {"memory": "4Ti"}}},
        [("MAX_SESSION_MEMORY", "resources.limits.memory", "4Ti", "8Gi")],
    ),
    (
        {"resources": {"limits": {"nvidia.com/gpu": "8"}}},
        [("ALLOWED_EXTENDED_RESOURCES", "resources.limits.nvidia.com/gpu", "8", "1")],
    ),
    (
        {"resources": {"requests": {"hugepages-2Mi": "1Gi"}}},
        [
            (
                "ALLOWED_EXTENDED_RESOURCES",
                "resources.requests.hugepages-2Mi",
                "1Gi",
                "[cpu, memory, ephemeral-storage, nvidia.com/gpu, example.com/fpga]",
            )
        ],
    ),
    (
        {"idleTimeout": "2562047h", "maxSessionDuration": "2562047h"},
        [
            ("MAX_IDLE_TIMEOUT", "idleTimeout", "2562047h", "2h"),
            ("MAX_SESSION_DURATION", "maxSessionDuration", "2562047h", "12h"),
        ],
    ),
    ({"idleTimeout": "120m", "maxSessionDuration": "43200s"}, []),
    (
        {"maxSessionDuration": "99999999999999999999h"},  # beyond what a timedelta holds
        [("MAX_SESSION_DURATION", "maxSessionDuration", "99999999999999999999h", "12h")],
    ),
]


@pytest.mark.parametrize(("spec", "expected"), CAPS)
def test_session_caps(spec: dict[str, Any], expected: list[tuple[str, str, str, str]]) -> None:
    found = session_violations(spec, LIMITS)
    assert [(v.limit, v.field, v.requested, v.allowed) for v in found] == expected


def test_nothing_but_cpu_memory_and_storage_by_default() -> None:
    found = session_violations({"resources": {"limits": {"nvidia.com/gpu": 1}}}, LimitSettings())
    assert [(v.limit, v.allowed) for v in found] == [
        ("ALLOWED_EXTENDED_RESOURCES", "[cpu, memory, ephemeral-storage]")
    ]


def test_a_value_that_is_no_quantity_is_invalid_not_over_a_limit() -> None:
    with pytest.raises(InvalidValue) as raised:
        session_violations({"resources": {"limits": {"memory": "lots"}}}, LIMITS)
    assert raised.value.field == "resources.limits.memory"


# --- token buckets ------------------------------------------------------------------------------


def test_a_bucket_lets_a_burst_of_its_size_pass_then_refills() -> None:
    rate = Rate(3, timedelta(seconds=30))  # one token every 10 s
    bucket: Bucket | None = None
    waits = []
    for _ in range(4):
        bucket, wait = take(bucket, rate, 100.0)
        waits.append(wait)
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(10.0)
    assert retry_after(waits[3]) == 10
    assert bucket is not None
    bucket, wait = take(bucket, rate, 105.0)
    assert wait == pytest.approx(5.0)
    bucket, wait = take(bucket, rate, 110.0)
    assert wait == 0.0
    assert not is_full(bucket, rate, 110.0)
    assert is_full(bucket, rate, 140.0)


def test_the_limiter_keeps_users_apart_and_says_when_to_retry() -> None:
    now = [0.0]
    limiter = RateLimiter(
        LimitSettings(create_rate=Rate(2, timedelta(minutes=1)), connect_rate=None),
        clock=lambda: now[0],
    )
    assert limiter.check("RATE_LIMIT_CREATE", "alice") is None
    assert limiter.check("RATE_LIMIT_CREATE", "alice") is None
    refused = limiter.check("RATE_LIMIT_CREATE", "alice")
    assert refused is not None and refused.status == 429 and refused.code == "RATE_LIMITED"
    assert refused.details == {"limit": "RATE_LIMIT_CREATE", "allowed": "2/1m", "retryAfter": 30}
    assert limiter.check("RATE_LIMIT_CREATE", "bob") is None
    assert all(limiter.check("RATE_LIMIT_CONNECT", "alice") is None for _ in range(100))
    now[0] = 30.0
    assert limiter.check("RATE_LIMIT_CREATE", "alice") is None


def test_retry_after_is_a_whole_second_at_least() -> None:
    assert [retry_after(s) for s in (0.001, 1.0, 1.2, 59.9)] == [1, 1, 2, 60]


# --- settings -----------------------------------------------------------------------------------


def test_limit_settings_are_read_and_checked() -> None:
    limits = load_settings(
        {
            "MAX_SESSION_CPU": "2",
            "MAX_SESSION_MEMORY": "4Gi",
            "ALLOWED_EXTENDED_RESOURCES": "nvidia.com/gpu=1, example.com/fpga",
            "MAX_IDLE_TIMEOUT": "1h",
            "MAX_SESSION_DURATION": "8h",
            "RATE_LIMIT_CREATE": "5/30s",
            "RATE_LIMIT_CONNECT": "off",
        }
    ).limits
    assert (limits.max_cpu.value, limits.max_memory.value) == (2, 4 * 1024**3)
    assert limits.extended_resources == {
        "nvidia.com/gpu": parse_quantity("1"),
        "example.com/fpga": None,
    }
    assert (limits.max_idle_timeout, limits.max_session_duration) == (
        timedelta(hours=1),
        timedelta(hours=8),
    )
    assert limits.create_rate == Rate(5, timedelta(seconds=30))
    assert limits.connect_rate is None
    defaults = load_settings({}).limits
    assert (str(defaults.create_rate), str(defaults.connect_rate)) == ("10/1m", "60/1m")
    assert defaults.extended_resources == {}
    with pytest.raises(ConfigError) as raised:
        load_settings(
            {
                "MAX_SESSION_CPU": "lots",
                "RATE_LIMIT_CREATE": "0/m",
                "RATE_LIMIT_CONNECT": "ten/m",
                "ALLOWED_EXTENDED_RESOURCES": "cpu=2",
                "IDEMPOTENCY_TTL": "0s",
            }
        )
    assert [p.split("=")[0].split(":")[0] for p in raised.value.problems] == [
        "IDEMPOTENCY_TTL",
        "MAX_SESSION_CPU",
        "ALLOWED_EXTENDED_RESOURCES",
        "RATE_LIMIT_CREATE",
        "RATE_LIMIT_CONNECT",
    ]


# --- Idempotency-Key ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "key"),
    [("abc-123", "abc-123"), ('"8e03978e-40d5"', "8e03978e-40d5"), (" k ", "k")],
)
def test_keys_are_parsed(header: str, key: str) -> None:
    assert idempotency.parse_key(header) == key


@pytest.mark.parametrize("header", ["", '""', "a b", "k\u00e9y", "x" * 256, "a\x00b"])
def test_bad_keys_are_refused(header: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        idempotency.parse_key(header)


KEY = idempotency.key_for("alice", "k1", "POST", "/api/v1/sessions", b'{"template": "firefox"}')


def test_keys_are_scoped_to_the_caller_and_fingerprint_the_request() -> None:
    same = idempotency.key_for(
        "alice", "k1", "POST", "/api/v1/sessions", b'{"template": "firefox"}'
    )
    bob = idempotency.key_for("bob", "k1", "POST", "/api/v1/sessions", b'{"template": "firefox"}')
    other = idempotency.key_for("alice", "k1", "POST", "/api/v1/sessions", b'{"template": "vlc"}')
    assert same == KEY
    assert bob.hash != KEY.hash and bob.fingerprint == KEY.fingerprint
    assert other.hash == KEY.hash and other.fingerprint != KEY.fingerprint
    assert "k1" not in KEY.hash and len(KEY.name_suffix) == 8


@pytest.mark.parametrize(
    ("stored", "outcome"),
    [
        (None, Outcome.PROCEED),
        (Stored(KEY.fingerprint, None, None, None), Outcome.IN_PROGRESS),
        (Stored(KEY.fingerprint, 201, "{}", "application/json"), Outcome.REPLAY),
        (Stored("other", 201, "{}", "application/json"), Outcome.MISMATCH),
        (Stored("other", None, None, None), Outcome.MISMATCH),
    ],
)
def test_what_a_stored_key_means(stored: Stored | None, outcome: Outcome) -> None:
    assert idempotency.decide(stored, KEY) is outcome


def _object(annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "x", "annotations": annotations}}


@pytest.mark.parametrize(
    ("annotations", "outcome"),
    [
        (idempotency.object_annotations(KEY), Outcome.REPLAY),
        (idempotency.object_annotations(Key(KEY.hash, "other")), Outcome.MISMATCH),
        (idempotency.object_annotations(Key("other", KEY.fingerprint)), Outcome.PROCEED),
        ({}, Outcome.PROCEED),
    ],
)
def test_what_an_existing_object_means(annotations: dict[str, str], outcome: Outcome) -> None:
    assert idempotency.match_object(_object(annotations), KEY) is outcome


def test_a_key_names_the_session_it_creates() -> None:
    assert new_session_name("alice", "firefox", KEY.name_suffix) == f"alice-firefox-{KEY.hash[:8]}"
    assert new_session_name("alice", "firefox") != new_session_name("alice", "firefox")
