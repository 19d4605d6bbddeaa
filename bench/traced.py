"""``python -m bench.traced <streamspace subcommand and flags>``: the command under tracemalloc.

On SIGUSR2 it writes, to ``STREAMSPACE_TRACEMALLOC_OUT``, what Python has allocated and still
holds (by package and by line), the peak, its RSS, and what glibc's malloc keeps free — the
figures that tell live objects from memory a burst left behind. For benchmarks only
(``bench.profile``): tracemalloc slows every allocation.
"""

from __future__ import annotations

import ctypes
import json
import os
import runpy
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

from bench.profile import package

FRAMES = 1
TOP = 25
MIB = 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _malloc_free_mib() -> float | None:
    """Bytes glibc's malloc holds free in its arenas (all threads'): memory a burst allocated
    and Python gave back, which RSS still counts."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    info = libc.mallinfo2()
    free: int = info.fordblks
    return round(free / MIB, 1)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def snapshot() -> dict[str, Any]:
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    by_package: dict[str, int] = {}
    for stat in snap.statistics("filename"):
        name = package(stat.traceback[0].filename)
        by_package[name] = by_package.get(name, 0) + stat.size
    lines = snap.statistics("lineno")[:TOP]
    traced, peak = tracemalloc.get_traced_memory()
    return {
        "rss_mib": _rss_mib(),
        "traced_mib": round(traced / MIB, 1),
        "traced_peak_mib": round(peak / MIB, 1),
        "malloc_free_mib": _malloc_free_mib(),
        "packages": [
            {"name": name, "mib": round(size / MIB, 1)}
            for name, size in sorted(by_package.items(), key=lambda kv: -kv[1])[:TOP]
        ],
        "lines": [
            {
                "at": f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}",
                "mib": round(stat.size / MIB, 2),
                "count": stat.count,
            }
            for stat in lines
        ],
    }


def _dump(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    out = Path(os.environ["STREAMSPACE_TRACEMALLOC_OUT"])
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(snapshot(), indent=1))
    partial.replace(out)


def main() -> None:
    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR2, _dump)
    sys.argv = ["streamspace", *sys.argv[1:]]
    runpy.run_module("streamspace.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
