"""Background processes of the local stack: start detached, record, wait for, stop exactly them.

A started process is recorded with its pid and executable. Stopping checks that the pid still runs
that executable before signalling it, so a recycled pid never gets us to kill something we did
not start.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Children started by this process, kept so they are waited for (not left as zombies, nor
# reported by Popen's finaliser as still running) when they stop.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Started:
    """A process we started: enough to find and stop it later, from another process."""

    name: str
    pid: int
    executable: str
    log: str
    argv: tuple[str, ...] = ()  # to start it again (``restart``); paths and flags, no secrets
    user: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "executable": self.executable,
            "log": self.log,
            "argv": list(self.argv),
            "user": self.user,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Started:
        return cls(
            data["name"],
            int(data["pid"]),
            data["executable"],
            data["log"],
            tuple(data.get("argv", ())),
            data.get("user"),
        )


# Below Linux's default ephemeral range (32768-60999): the kernel never hands these out as the
# source port of an outgoing connection, so a port chosen here cannot be taken by some client's
# connect() between the choice and the server's bind (which once killed the scheduler of a test
# control plane: "bind: address already in use").
_PORTS = range(20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (and not handed out before)."""
    for _ in range(200):
        port = random.choice(_PORTS)  # noqa: S311 (not security relevant)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError("no free TCP port found in 20000-31999 on 127.0.0.1")


def start(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: int | None = None,
) -> Started:
    """Start ``argv`` in its own session with output to ``log_path``; return its record."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
            user=user,
            group=None if user is None else _group_of(user),
        )
    _children[proc.pid] = proc
    return Started(name, proc.pid, str(Path(argv[0]).resolve()), str(log_path), tuple(argv), user)


def _group_of(uid: int) -> int:
    import pwd  # noqa: PLC0415 - POSIX-only, needed only when dropping privileges

    return pwd.getpwuid(uid).pw_gid


def is_running(record: Started) -> bool:
    """True while ``record.pid`` is alive and still runs the executable we started."""
    try:
        exe = str(Path(f"/proc/{record.pid}/exe").readlink())
        stat = Path(f"/proc/{record.pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie is gone for our purposes
        return False
    return exe.removesuffix(" (deleted)") == record.executable


def last_words(record: Started, timeout: float = 5.0) -> str:
    """The tail of the log of a process that stopped running: waits (briefly) for a child of
    ours to really exit first, so that what it printed on the way out is in the tail."""
    child = _children.get(record.pid)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout)
    return log_tail(record)


def stop(record: Started, timeout: float = 15.0) -> bool:
    """Stop a recorded process (TERM, then KILL after ``timeout``); False if it was not running."""
    if not is_running(record):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGTERM)
    if not wait_until(lambda: not is_running(record), timeout, interval=0.1):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
        wait_until(lambda: not is_running(record), 5.0, interval=0.1)
    _reap(record.pid)
    return True


def kill(record: Started, timeout: float = 10.0) -> bool:
    """SIGKILL a recorded process and every process of its session (a server's workers die with
    it, as when a container is killed); False if it was not running. Returns once it is gone."""
    if not is_running(record):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGKILL)  # started with start_new_session: pgid == pid
    wait_until(lambda: not is_running(record), timeout, interval=0.05)
    _reap(record.pid)
    return True


def restart(record: Started) -> Started:
    """Start the recorded command again, as the same user, appending to the same log."""
    if not record.argv:
        raise ValueError(f"{record.name} was recorded without its command; it cannot be restarted")
    if is_running(record):
        raise ValueError(f"{record.name} (pid {record.pid}) still runs")
    return start(record.name, record.argv, Path(record.log), user=record.user)


def _reap(pid: int) -> None:
    # When the stopping process is also the parent (tests, `make run`), collect the exit status.
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(record: Started, lines: int = 30) -> str:
    try:
        return "\n".join(Path(record.log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
