"""Log output of both processes: a line for people (``LOG_FORMAT=text``) or one JSON object per
line for log collectors (``LOG_FORMAT=json``), on stderr.

Everything goes through the root logger: our modules, Kopf (which never sets up logging itself
unless started by its own ``kopf run``), aiohttp's access log, asyncio, and warnings. A JSON
line holds ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``, ``exception`` when
there is one, and the record's structured extras: Kopf's object reference becomes ``object``
(``kind``, ``namespace``, ``name``, ...), the facade's access log adds ``method``, ``path``,
``status``, ``bytes``, ``duration`` and ``remote``. Secrets never reach a log record in the
first place (settings keep them out of ``repr``; URLs are logged with credentials blanked).
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
# Kopf's extras that are not information: the operator's whole settings object and a flag that
# keeps a record from being posted as a Kubernetes Event. ``k8s_ref`` becomes ``object``.
_KOPF_INTERNAL = frozenset({"settings", "k8s_skip", "k8s_ref"})


def _object(record: logging.LogRecord) -> dict[str, Any] | None:
    """The Kubernetes object a Kopf per-object record is about (its ``k8s_ref`` extra)."""
    ref = getattr(record, "k8s_ref", None)
    if not isinstance(ref, Mapping):
        return None
    return {str(k): v for k, v in ref.items() if v is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        obj = _object(record)
        if obj is not None:
            entry["object"] = obj
        for key, value in vars(record).items():
            if key in _STANDARD or key in _KOPF_INTERNAL or key.startswith("_") or key in entry:
                continue
            entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(entry, default=str, ensure_ascii=False)
        except ValueError:  # an extra that refers to itself: keep the line, lose its structure
            return json.dumps({k: str(v) for k, v in entry.items()}, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line; records about one Kubernetes object are prefixed ``[namespace/name]``
    as Kopf's own formatter does."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        obj = _object(record)
        if obj is not None:
            where = "/".join(str(obj[k]) for k in ("namespace", "name") if k in obj)
            record = copy.copy(record)  # other handlers see the record unchanged
            record.msg = f"[{where}] {record.msg}"
        return super().format(record)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of each record, so a handler installed
    by one in-process run (tests call ``main``) never writes to a stream closed since."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stderr


QUIET_LOGGERS = ("kubernetes_asyncio.client.rest", "kubernetes.client.rest")
"""Loggers kept at INFO even with ``-v``: their DEBUG records carry API response bodies."""


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(log_format: str, *, verbose: bool = False) -> None:
    """Send every log record to stderr in ``log_format`` (``text`` or ``json``).

    Replaces a handler this function installed before, leaves other handlers alone (a test
    runner's capture), and routes ``warnings`` through logging too so that they come out in
    the same format.
    """
    handler = _StderrHandler()
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _StderrHandler)]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LOGGERS:
        # they log whole response bodies at DEBUG: a Secret read would print its data
        logging.getLogger(name).setLevel(logging.INFO)
    logging.captureWarnings(True)


def json_enabled() -> bool:
    """Whether ``configure`` set up JSON lines (command errors are then logged, not printed)."""
    return any(
        isinstance(h, _StderrHandler) and isinstance(h.formatter, JsonFormatter)
        for h in logging.getLogger().handlers
    )
