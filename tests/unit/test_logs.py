"""LOG_FORMAT: JSON lines with the fixed fields and the records' extras (Kopf's object, the
access log's parts), the text line with Kopf's object prefix, and command errors as JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import kopf
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from streamspace import logs
from streamspace.cli import main
from streamspace_facade.app import AccessLog

pytestmark = pytest.mark.unit

SESSION = kopf.Body(
    {
        "apiVersion": "stream.space/v1alpha1",
        "kind": "Session",
        "metadata": {"name": "alice-firefox-1a2b3c4d", "namespace": "team-a", "uid": "u-1"},
    }
)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Handler, io.StringIO]]:
    """A handler with our JSON formatter on a logger of the test's own choosing."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    yield handler, stream


def attached(logger: logging.Logger, handler: logging.Handler) -> logging.Logger:
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return logger


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_json_line_fields_extras_and_exception(
    captured: tuple[logging.Handler, io.StringIO],
) -> None:
    handler, stream = captured
    log = attached(logging.getLogger("test.logs.json"), handler)
    try:
        failure = ValueError("boom")
        try:
            raise failure
        except ValueError:
            log.exception("failed on %s\nsecond line", "x", extra={"session": "s1", "n": 2})
        log.info("with an odd extra", extra={"thing": object()})
    finally:
        log.removeHandler(handler)
    first, second = lines(stream)
    assert first["level"] == "ERROR"
    assert first["logger"] == "test.logs.json"
    assert first["message"] == "failed on x\nsecond line"  # escaped: still one line
    assert first["session"] == "s1" and first["n"] == 2
    assert first["exception"].startswith("Traceback") and "ValueError: boom" in first["exception"]
    assert first["time"].endswith("Z")
    assert datetime.fromisoformat(first["time"]).utcoffset() is not None
    assert set(first) == {"time", "level", "logger", "message", "exception", "session", "n"}
    assert second["thing"].startswith("<object object")


def test_kopf_object_records_carry_the_object(
    captured: tuple[logging.Handler, io.StringIO],
) -> None:
    """Kopf's per-object loggers put the object reference (and its settings) on the record:
    the reference becomes ``object``, the settings object stays out."""
    handler, stream = captured
    objects = attached(logging.getLogger("kopf.objects"), handler)
    try:
        logger = kopf.LocalObjectLogger(body=SESSION, settings=kopf.OperatorSettings())
        logger.warning("Handler %r failed temporarily", "sessions")
    finally:
        objects.removeHandler(handler)
    (line,) = lines(stream)
    assert line["logger"] == "kopf.objects"
    assert line["message"] == "Handler 'sessions' failed temporarily"
    assert line["object"] == {
        "apiVersion": "stream.space/v1alpha1",
        "kind": "Session",
        "namespace": "team-a",
        "name": "alice-firefox-1a2b3c4d",
        "uid": "u-1",
    }
    assert not {"settings", "k8s_ref", "k8s_skip"} & set(line)


def test_text_line_prefixes_kopf_objects() -> None:
    record = logging.LogRecord(
        "kopf.objects", logging.ERROR, __file__, 1, "failed %s", ("x",), None
    )
    record.k8s_ref = {"namespace": "team-a", "name": "s1"}
    text = logs.TextFormatter().format(record)
    assert text.endswith("ERROR kopf.objects: [team-a/s1] failed x")
    assert record.msg == "failed %s"  # other handlers see the record unchanged


def test_access_log_fields(captured: tuple[logging.Handler, io.StringIO]) -> None:
    handler, stream = captured
    access = attached(logging.getLogger("test.logs.access"), handler)
    try:
        request = make_mocked_request("GET", "/api/v1/ws/sessions?token=s3cret&x=1")
        AccessLog(access, "").log(request, web.Response(status=204), 0.0123456)
    finally:
        access.removeHandler(handler)
    (line,) = lines(stream)
    assert line["method"] == "GET"
    assert line["path"] == "/api/v1/ws/sessions?token=REDACTED&x=1"
    assert line["status"] == 204
    assert line["duration"] == 0.012346
    assert "bytes" in line and "remote" in line
    assert "s3cret" not in stream.getvalue()
    assert '"GET /api/v1/ws/sessions?token=REDACTED&x=1" 204' in line["message"]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """``main`` installs its handler on the root logger; put the root back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def test_command_errors_are_json_lines(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    assert main(["token", "jwt", "--user", "alice"]) == 2
    (line,) = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert line["level"] == "ERROR"
    assert line["message"].startswith("streamspace: JWT_SECRET is not set")


def test_a_bad_log_format_stops_every_command(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    assert main(["token", "jwt", "--user", "alice"]) == 2
    assert "LOG_FORMAT='xml': expected text or json" in capsys.readouterr().err
