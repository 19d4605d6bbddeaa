"""Settings of the terminal (``/api/v1/ws/exec/{namespace}/{pod}``): a group of its own.

The facade runs a shell in a session pod through the API server's ``pods/exec``; these bound
what one user, and one facade process, may hold open, and which programs a terminal may start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamspace.config.env import EnvReader

DEFAULT_SHELLS = (
    "/bin/sh",
    "/bin/bash",
    "/bin/ash",
    "/bin/zsh",
    "/usr/bin/bash",
    "/usr/bin/zsh",
    "/usr/bin/fish",
)


@dataclass(frozen=True)
class TerminalSettings:
    idle_timeout: timedelta = timedelta(minutes=15)
    """A terminal the client sent nothing to (no keystroke, no resize) for this long is closed
    with 4408 (``TERMINAL_IDLE_TIMEOUT``); output alone does not keep it open."""

    max_per_user: int = 3
    """Terminals one user may hold open at once, per facade process; more get 429
    ``TOO_MANY_STREAMS`` before the upgrade (``TERMINAL_MAX_PER_USER``)."""

    max_open: int = 100
    """Terminals of all users together, per facade process; also the most connections the
    terminals' own Kubernetes client holds (``TERMINAL_MAX``)."""

    shells: tuple[str, ...] = DEFAULT_SHELLS
    """Programs ``?command=`` may name (absolute paths, no arguments; the first is the
    default) (``TERMINAL_SHELLS``, comma-separated)."""


def read_terminal(read: EnvReader) -> TerminalSettings:
    d = TerminalSettings()
    shells = tuple(s.strip() for s in (read.text("TERMINAL_SHELLS") or "").split(",") if s.strip())
    for shell in shells:
        if not shell.startswith("/") or any(c.isspace() or c == "\x00" for c in shell):
            read.problems.append(
                f"TERMINAL_SHELLS: {shell!r} is not an absolute path without arguments"
            )
    return TerminalSettings(
        idle_timeout=read.duration("TERMINAL_IDLE_TIMEOUT", d.idle_timeout),
        max_per_user=read.count("TERMINAL_MAX_PER_USER", d.max_per_user, 1000),
        max_open=read.count("TERMINAL_MAX", d.max_open, 10_000),
        shells=shells or d.shells,
    )
