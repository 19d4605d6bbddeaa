"""A pytest plugin: a test that leaves a socket of this process open fails, naming the socket.

An autouse fixture lists the sockets of the process (``/proc/self/fd``) before each test and
again after the test and its function-scoped fixtures are torn down (it is set up before them,
so it is torn down after them). Higher-scoped fixtures (the control plane, PostgreSQL, the
pytest-asyncio loop) are set up before it, so what they open on first use is part of the
"before" list. New sockets get ``SETTLE`` seconds to go away while the garbage collector runs
and the test's pytest-asyncio loop, if any, runs its pending callbacks (a transport closes on
the next loop iteration, a TLS one after its closing handshake); those still open then fail
the test with their addresses and the object that holds them (where it was allocated, with
``PYTHONTRACEMALLOC=20``). An object the collector frees with a socket still open raises its
``ResourceWarning`` during this test's teardown, so that too fails the test that leaked it.

Loaded by ``tests/conftest.py`` (``pytest_plugins``); ``-p leakcheck`` loads it elsewhere.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

FD_DIR = Path("/proc/self/fd")
SETTLE = 5.0
"""Seconds new sockets get to close after the test before they count as leaked."""
POLL = 0.05
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def open_sockets() -> dict[int, int]:
    """The sockets this process has open: inode → file descriptor."""
    found: dict[int, int] = {}
    for entry in FD_DIR.iterdir():
        try:
            target = str(entry.readlink())
        except OSError:  # closed meanwhile (or the listing's own descriptor)
            continue
        if target.startswith("socket:["):
            found[int(target[8:-1])] = int(entry.name)
    return found


def _address(hexed: str) -> str:
    host, port = hexed.split(":")
    raw = bytes.fromhex(host)
    # the kernel prints each 32-bit word in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return f"{socket.inet_ntop(family, words)}:{int(port, 16)}"


def _endpoints() -> dict[int, str]:
    """What ``/proc/net`` says about each socket of this network namespace, by inode."""
    found: dict[int, str] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = (Path("/proc/self/net") / proto).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            state = f" {TCP_STATES.get(f[3], f[3])}" if proto.startswith("tcp") else ""
            found[int(f[9])] = f"{proto} {_address(f[1])} -> {_address(f[2])}{state}"
    try:
        lines = Path("/proc/self/net/unix").read_text().splitlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        f = line.split()
        found[int(f[6])] = "unix " + (f[7] if len(f) > 7 else "(unnamed, e.g. a socketpair)")
    return found


def _holders(fds: set[int]) -> dict[int, list[str]]:
    """For each descriptor, the Python socket that owns it and the objects that refer to it,
    with where each was allocated when tracemalloc is on."""
    found: dict[int, list[str]] = {}
    for obj in gc.get_objects():
        if not isinstance(obj, socket.socket):
            continue
        try:
            fd = obj.fileno()
        except OSError:
            continue
        if fd not in fds:
            continue
        described = found.setdefault(fd, [])
        referrers = [r for r in gc.get_referrers(obj) if not isinstance(r, (dict, list, tuple))]
        for held in [obj, *referrers[:3]]:
            described.append(f"held by {type(held).__module__}.{type(held).__qualname__}")
            trace = tracemalloc.get_object_traceback(held)
            if trace is not None:
                described.extend(f"  {line}" for line in trace.format(limit=8))
    return found


def describe(leaked: dict[int, int]) -> str:
    endpoints = _endpoints()
    holders = _holders(set(leaked.values()))
    lines = []
    for inode, fd in sorted(leaked.items(), key=lambda item: item[1]):
        lines.append(f"  fd {fd}: {endpoints.get(inode, f'socket inode {inode}')}")
        lines.extend(f"    {line}" for line in holders.get(fd, ["(no Python socket object)"]))
    if not tracemalloc.is_tracing():
        lines.append("  (run with PYTHONTRACEMALLOC=20 to see where each holder was allocated)")
    return "\n".join(lines)


def _loops(request: pytest.FixtureRequest) -> list[asyncio.AbstractEventLoop]:
    """The pytest-asyncio loops this test ran on (they only run while a test or fixture does)."""
    loops = []
    for name in request.fixturenames:
        if name.startswith("_") and name.endswith("_scoped_runner"):
            runner = request.getfixturevalue(name)
            if isinstance(runner, asyncio.Runner):
                loops.append(runner.get_loop())
    return loops


def _settle(baseline: dict[int, int], loops: list[asyncio.AbstractEventLoop]) -> dict[int, int]:
    """The sockets opened since ``baseline`` that are still open once ``SETTLE`` has passed."""
    deadline = time.monotonic() + SETTLE
    while True:
        leaked = {k: v for k, v in open_sockets().items() if k not in baseline}
        if not leaked or time.monotonic() >= deadline:
            return leaked
        gc.collect()
        idle = [lo for lo in loops if not lo.is_closed() and not lo.is_running()]
        if idle:
            for loop in idle:
                loop.run_until_complete(asyncio.sleep(POLL / len(idle)))
        else:
            time.sleep(POLL)  # polling other threads' sockets until SETTLE's deadline


@pytest.fixture(autouse=True)
def no_leaked_sockets(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it (or its function-scoped fixtures) left a socket open."""
    if not FD_DIR.is_dir():  # not Linux: nothing to compare
        yield
        return
    loops = _loops(request)
    baseline = open_sockets()
    yield
    leaked = _settle(baseline, loops)
    if leaked:
        pytest.fail(
            f"{request.node.nodeid} left {len(leaked)} socket(s) open "
            f"({SETTLE:g} s after its teardown):\n{describe(leaked)}",
            pytrace=False,
        )
