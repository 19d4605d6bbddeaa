"""Profiles that explain a benchmark's figures: where a process spends its CPU and its memory.

* :class:`CpuProfile` samples a running process with py-spy (``py-spy record --format raw``,
  no change to the process) over one phase of a scenario, and boils the stacks down to the
  functions that were on the CPU themselves (self) and the packages the time was spent for
  (the innermost frame outside the standard library), as shares of the samples.
* :func:`memory_argv` starts a ``streamspace`` command under ``tracemalloc`` (``bench.traced``);
  :func:`memory_snapshot` asks it (SIGUSR2) for its biggest allocation sites, grouped by
  package and by line, beside its RSS and what glibc's malloc holds free.

Both are opt-in (``SCALE_PROFILE=cpu|memory``, ``API_PROFILE=cpu``, ``WS_PROFILE=cpu``): the
sampler takes CPU of its own and tracemalloc slows every allocation, so a profiled run's other
figures are not the benchmark's figures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from streamspace_dev import process

TOP = 15
RATE = 97  # samples a second, off the beat of the product's own timers
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def package(filename: str) -> str:
    """The package a frame's file belongs to: the first directory below ``site-packages`` or
    the standard library (``kopf/_core/...`` → ``kopf``; ``asyncio/events.py`` → ``asyncio``;
    a top-level module → its name)."""
    path = filename.replace("\\", "/")
    for marker in ("site-packages/", "dist-packages/", "/lib/python3.11/"):
        if marker in path:
            path = path.rsplit(marker, 1)[1]
            break
    else:  # our own code from the work tree: its package; else the file's directory
        parts = path.split("/")
        ours = [p for p in parts[:-1] if p.startswith("streamspace")]
        if ours:
            return ours[-1]
        if path.startswith("/") and len(parts) > 2:
            return parts[-2]
    head = path.lstrip("/").split("/", 1)[0]
    return head.removesuffix(".py") or "?"


def _owner(frames: list[tuple[str, str]]) -> str:
    """Who a sample's time is spent for: the package of the innermost frame that is not the
    standard library (json parsing called by aiohttp counts for aiohttp). "event loop" when no
    such frame is inside the loop's own (polling, scheduling, a standard-library callback);
    "stdlib" for other standard-library-only stacks (a thread pool's worker)."""
    for func, file in reversed(frames):
        if file.endswith("asyncio/base_events.py") and func.endswith(("_run_once", "run_forever")):
            return "event loop"
        name = package(file)
        if name not in sys.stdlib_module_names and not name.startswith("<"):
            return name
    return "stdlib"


def summarize(raw: str, top: int = TOP) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks → shares of samples by function (self) and by package
    (the innermost frame outside the standard library, see ``_owner``)."""
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")[1:]  # the first is the process/thread
        if not frames:
            continue
        total += n
        leaf = _FRAME.match(frames[-1])
        own[f"{leaf['func']} ({leaf['file']})" if leaf else frames[-1]] += n
        parsed = [(m["func"], m["file"]) for f in frames if (m := _FRAME.match(f))]
        packages[_owner(parsed)] += n

    def shares(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"name": name, "pct": round(100 * n / total, 1)} for name, n in counter.most_common(top)
        ]

    return {"samples": total, "self": shares(own), "packages": shares(packages)}


class CpuProfile:
    """``py-spy record`` attached to ``pid`` from ``start`` until ``stop``."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid, self.out = pid, out
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    def start(self) -> CpuProfile:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.unlink(missing_ok=True)
        argv = [spy, "record", "--pid", str(self.pid), "--rate", str(RATE), "--format", "raw"]
        self._proc = subprocess.Popen(
            [*argv, "--output", str(self.out), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._started = time.monotonic()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sampling; the summary (``error`` when py-spy could not sample)."""
        assert self._proc is not None, "start() first"
        seconds = round(time.monotonic() - self._started, 1)
        self._proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, err = self._proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            _, err = self._proc.communicate()
        if not self.out.exists():
            return {"seconds": seconds, "error": err.decode(errors="replace")[-500:]}
        return {"seconds": seconds, "file": str(self.out), **summarize(self.out.read_text())}


def memory_argv(argv: list[str]) -> list[str]:
    """``argv`` of ``python -m streamspace.cli ...`` run under ``bench.traced`` instead."""
    assert argv[1:3] == ["-m", "streamspace.cli"], argv
    return [argv[0], "-m", "bench.traced", *argv[3:]]


def memory_snapshot(pid: int, out: Path, timeout: float = 120.0) -> dict[str, Any]:
    """Ask a process started with :func:`memory_argv` for its allocation sites (it writes
    ``out``, named by ``STREAMSPACE_TRACEMALLOC_OUT``); {} if it does not answer in time."""
    out.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    if not process.wait_until(out.exists, timeout, interval=0.5):
        return {}
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def cpu_rows(label: str, summary: dict[str, Any], top: int = 6) -> list[tuple[str, str]]:
    """Table rows: the packages and the functions that took the most samples (none for an
    empty summary: no profile was asked for)."""
    if not summary:
        return []
    if "error" in summary:
        last = (summary["error"].strip().splitlines() or ["no output"])[-1]
        return [(f"{label}: py-spy failed", last)]
    pkgs = ", ".join(f"{p['name']} {p['pct']}%" for p in summary["packages"][:top])
    own = ", ".join(f"{p['name']} {p['pct']}%" for p in summary["self"][:top])
    return [
        (f"{label}: CPU by package", pkgs),
        (f"{label}: CPU by function (self)", own),
    ]


def memory_rows(label: str, snap: dict[str, Any], top: int = 6) -> list[tuple[str, str]]:
    if not snap:
        return [(f"{label}: tracemalloc", "no answer")]
    pkgs = ", ".join(f"{p['name']} {p['mib']}" for p in snap["packages"][:top])
    return [
        (
            f"{label}: RSS / traced / malloc free",
            f"{snap['rss_mib']} / {snap['traced_mib']} (peak {snap['traced_peak_mib']}) / "
            f"{snap['malloc_free_mib']} MiB",
        ),
        (f"{label}: traced MiB by package", pkgs),
    ]


def _process_name(pid: str) -> str | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return None
    exe = Path(words[0]).name
    if exe.startswith("python"):
        # python -m streamspace.cli operator / python -m bench scale / python -m bench.traced ...
        rest = [w for w in words[1:] if not w.startswith("-")]
        if rest[:1] in (["streamspace.cli"], ["bench.traced"]) and len(rest) > 1:
            return rest[1]
        return f"python {rest[0]}" if rest else "python"
    return exe


def cpu_by_process() -> dict[str, float]:
    """CPU seconds used so far by every process of the machine, summed by name (the binary, or
    the ``streamspace`` subcommand a Python process runs)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = _process_name(entry.name)
        if name is not None:
            used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def cpu_shares(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """What each process name used between two :func:`cpu_by_process` readings, in % of one
    core over ``seconds`` (the machine has ``os.cpu_count()`` times 100 %); the busiest first, those
    under 1 % left out. A process that exited in between is not counted."""
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    return {
        name: round(100 * s / seconds, 1)
        for name, s in sorted(spent.items(), key=lambda kv: -kv[1])
        if 100 * s / seconds >= 1.0
    }


def shares_text(shares: dict[str, float], top: int = 6) -> str:
    """The busiest processes of :func:`cpu_shares`, for a table cell."""
    return ", ".join(f"{name} {pct}" for name, pct in list(shares.items())[:top])
