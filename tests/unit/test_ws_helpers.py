"""Pure parts of the WebSocket edge: where the token may come from, origins, log redaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from streamspace_facade import watch
from streamspace_facade.app import loggable_path
from streamspace_facade.ws import credential, origin_allowed

pytestmark = pytest.mark.unit

WS = "/api/v1/ws/sessions"
ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


def request(path: str, **headers: str) -> web.Request:
    return make_mocked_request("GET", path, headers=CIMultiDict(headers))


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        (WS, {"Sec-WebSocket-Protocol": "streamspace.v1, bearer.abc.def"}, "Bearer abc.def"),
        (WS, {"Sec-WebSocket-Protocol": "bearer.abc"}, "Bearer abc"),
        (WS + "?token=xyz", {}, "Bearer xyz"),
        # the subprotocol wins over the query
        (WS + "?token=xyz", {"Sec-WebSocket-Protocol": "bearer.abc"}, "Bearer abc"),
        (WS, {"Sec-WebSocket-Protocol": "bearer."}, None),
        (WS + "?token=", {}, None),
        (WS, {}, None),
        # only the streams take tokens from places other than the Authorization header
        ("/api/v1/sessions?token=xyz", {}, None),
        ("/api/v1/sessions", {"Sec-WebSocket-Protocol": "bearer.abc"}, None),
    ],
)
def test_credential(path: str, headers: dict[str, str], expected: str | None) -> None:
    assert credential(request(path, **headers)) == expected


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # not a browser
        ("https://ui.example.com", True),  # listed
        ("http://facade.local:8080", True),  # the facade's own host
        ("https://evil.example.net", False),
        ("https://ui.example.com.evil.net", False),
        ("null", False),
        ("http://[", False),
    ],
)
def test_origin_allowed(origin: str | None, allowed: bool) -> None:
    headers = {"Host": "facade.local:8080"}
    if origin is not None:
        headers["Origin"] = origin
    assert origin_allowed(request(WS, **headers), ("https://ui.example.com",)) is allowed


def test_access_log_never_shows_a_query_token() -> None:
    assert loggable_path(request(WS + "?token=s3cret&x=1")) == WS + "?token=REDACTED&x=1"
    assert loggable_path(request(WS + "?access_token=s3cret")) == WS + "?access_token=REDACTED"
    assert loggable_path(request("/api/v1/sessions?user=a")) == "/api/v1/sessions?user=a"


@pytest.mark.parametrize(
    ("api", "stream", "target", "url"),
    [
        ("http://127.0.0.1:8080", "sessions", None, "ws://127.0.0.1:8080/api/v1/ws/sessions"),
        ("https://ss.example.com/", "cluster", None, "wss://ss.example.com/api/v1/ws/cluster"),
        ("http://h", "logs", "team-a/pod-1", "ws://h/api/v1/ws/logs/team-a/pod-1"),
        ("http://h", "logs", "a/b/../c", "ws://h/api/v1/ws/logs/a/b%2F..%2Fc"),
    ],
)
def test_watch_urls(api: str, stream: str, target: str | None, url: str) -> None:
    assert watch.stream_url(api, stream, target) == url


@pytest.mark.parametrize(("stream", "target"), [("logs", None), ("logs", "pod"), ("x", None)])
def test_watch_refuses_incomplete_targets(stream: str, target: str | None) -> None:
    with pytest.raises(ValueError, match=r"logs needs|unknown stream"):
        watch.stream_url("http://h", stream, target)


def test_watch_summary_lines() -> None:
    update = {
        "type": "sessions_update",
        "sessions": [{"id": "alice-ff-1", "phase": "Running"}],
        "count": 1,
        "reason": "change",
        "timestamp": "2026-01-01T00:00:00Z",
    }
    assert watch.summary(update) == "2026-01-01T00:00:00Z change: 1 [alice-ff-1=Running]"
    warning = {"type": "hibernate_warning", "sessionId": "s", "idleDeadline": "T", "timestamp": "t"}
    assert watch.summary(warning) == "t WARNING s hibernates at T"
    assert watch.summary("2026-01-01T00:00:00.1Z hello") == "2026-01-01T00:00:00.1Z hello"


@pytest.mark.parametrize(
    ("attempt", "rand", "delay"),
    [
        (0, 1.0, 0.5),
        (1, 1.0, 1.0),
        (3, 0.5, 2.0),
        (6, 1.0, 30.0),  # 32 s, capped
        (1000, 1.0, 30.0),  # no overflow however long the outage
        (5, 0.0, 0.0),  # full jitter: any delay below the bound
    ],
)
def test_watch_backoff_doubles_with_full_jitter_up_to_a_cap(
    attempt: int, rand: float, delay: float
) -> None:
    assert watch.backoff(attempt, lambda: rand) == delay


@pytest.mark.parametrize(
    ("outcome", "final"),
    [
        (watch.Outcome(close_code=1006), False),  # cut without a close frame: a killed replica
        (watch.Outcome(close_code=1001), False),  # a replica shutting down
        (watch.Outcome(close_code=1013), False),  # too slow: try again
        (watch.Outcome(close_code=1000), True),
        (watch.Outcome(close_code=1008), True),
        (watch.Outcome(close_code=4401), True),  # credentials expired or revoked
        (watch.Outcome(error="Connection refused"), False),
        (watch.Outcome(status=503), False),  # sessions not loaded yet
        (watch.Outcome(status=429), False),
        (watch.Outcome(status=502), False),
        (watch.Outcome(status=401), True),
        (watch.Outcome(status=403), True),
        (watch.Outcome(status=404), True),
    ],
)
def test_watch_reconnects_unless_another_attempt_cannot_help(
    outcome: watch.Outcome, final: bool
) -> None:
    assert outcome.final() is final


def test_the_documented_browser_pattern_backs_off_as_watch_does() -> None:
    """The browser snippet in docs/ARCHITECTURE.md ("Reconnecting") and ``streamspace watch``
    share their delays and their final close codes (the fault test runs the snippet's algorithm)."""
    doc = ARCHITECTURE.read_text()
    base, cap = round(watch.RECONNECT_BASE * 1000), round(watch.RECONNECT_CAP * 1000)
    assert f"const BASE_MS = {base}, CAP_MS = {cap};" in doc
    assert f"const FINAL = [{', '.join(map(str, sorted(watch.FINAL_CLOSES)))}];" in doc
