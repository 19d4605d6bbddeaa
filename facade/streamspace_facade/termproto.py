"""The terminal's two protocols, as pure functions: the client's JSON messages and the API
server's exec channels (``v4.channel.k8s.io``).

Client → facade (text frames, JSON): ``{"type": "stdin", "data": "<text>"}`` and
``{"type": "resize", "cols": N, "rows": N}``. Facade → client: ``{"type": "stdout"|"stderr",
"data": "<text>"}`` and, once, ``{"type": "exit", "code": N}`` (``code`` null, with ``error``,
when the API server reported a failure that is not an exit code).

API server ↔ facade (binary frames, first byte the channel): 0 stdin, 1 stdout, 2 stderr,
3 the status (a ``metav1.Status`` in JSON, sent once as the command ends), 4 resize
(``{"Width", "Height"}``).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STDIN, STDOUT, STDERR, STATUS, RESIZE = 0, 1, 2, 3, 4
PROTOCOL = "v4.channel.k8s.io"
TERM = "xterm-256color"
"""The ``TERM`` a terminal's shell gets (xterm.js and most terminal emulators speak it)."""
MAX_DIMENSION = 10_000
"""Largest ``cols`` or ``rows`` of a resize (a terminal is at most a few hundred)."""

# kwok, and runtimes that pass Go's os/exec error on, say the code only in the message
_EXIT_STATUS = re.compile(r"exit status (\d+)\b")


LOST = {"type": "exit", "code": None, "error": "the connection to the pod ended"}
"""The ``exit`` message when the exec stream ended without a status."""


class BadMessage(ValueError):
    """A client message the terminal does not understand (its text says why)."""


@dataclass(frozen=True)
class Stdin:
    data: bytes


@dataclass(frozen=True)
class Resize:
    cols: int
    rows: int


def command(shell: str) -> list[str]:
    """The exec command: ``shell`` with ``TERM`` set (exec has no environment parameter)."""
    return ["env", f"TERM={TERM}", shell]


def parse_client(text: str) -> Stdin | Resize:
    """A client message; :class:`BadMessage` for anything else."""
    try:
        said = json.loads(text)
    except ValueError:
        raise BadMessage("messages are JSON objects") from None
    if not isinstance(said, dict):
        raise BadMessage("messages are JSON objects")
    kind = said.get("type")
    if kind == "stdin":
        data = said.get("data")
        if not isinstance(data, str):
            raise BadMessage("stdin: data must be a string")
        return Stdin(data.encode())
    if kind == "resize":
        size: list[int] = []
        for value in (said.get("cols"), said.get("rows")):
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadMessage("resize: cols and rows must be integers")
            if not 1 <= value <= MAX_DIMENSION:
                raise BadMessage(f"resize: cols and rows must be between 1 and {MAX_DIMENSION}")
            size.append(value)
        return Resize(*size)
    raise BadMessage("type must be stdin or resize")


def upstream(message: Stdin | Resize) -> bytes:
    """A client message as the exec channel frame the API server expects."""
    if isinstance(message, Stdin):
        return bytes([STDIN]) + message.data
    size = json.dumps({"Width": message.cols, "Height": message.rows}).encode()
    return bytes([RESIZE]) + size


def exit_message(status: Mapping[str, Any]) -> dict[str, Any]:
    """The ``exit`` message for the status channel's ``metav1.Status``."""
    if status.get("status") == "Success":
        return {"type": "exit", "code": 0}
    causes = (status.get("details") or {}).get("causes") or []
    for cause in causes:
        if cause.get("reason") == "ExitCode" or cause.get("type") == "ExitCode":
            try:
                return {"type": "exit", "code": int(str(cause.get("message")))}
            except (TypeError, ValueError):
                break
    text = str(status.get("message") or "")
    found = _EXIT_STATUS.search(text)
    if found:
        return {"type": "exit", "code": int(found.group(1))}
    return {"type": "exit", "code": None, "error": text[:500] or "the command failed"}


class Output:
    """Turns one output channel's bytes into text messages; a UTF-8 sequence split across
    frames is joined, undecodable bytes become U+FFFD."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def message(self, data: bytes) -> dict[str, Any] | None:
        text = self._decoder.decode(data)
        return {"type": self.kind, "data": text} if text else None
