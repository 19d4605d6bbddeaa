"""A pytest plugin: a test that leaves a socket of this process open fails, naming the socket.

An autouse fixture lists the sockets of the process (``/proc/self/fd``) before each test and
again after the test and its function-scoped fixtures are torn down (it is set up before them,
so it is torn down after them). Higher-scoped fixtures (the control plane, PostgreSQL, the
pytest-asyncio loop) are set up before it, so what they open on first use is part of the
"before" list. New sockets get ``SETTLE`` seconds to go away while the garbage collector runs
and the test's pytest-asyncio loop, if any, runs its pending callbacks (a transport closes on
the next loop iteration, a TLS one after its closing handshake); those still open then fail
the test with their addresses and the objects that hold them. An object the collector frees
with a socket still open raises its ``ResourceWarning`` during this test's teardown, so that
too fails the test that leaked it (what was known of the socket is printed to stderr first).

``LEAKCHECK_TRACEMALLOC=20`` adds where each holder was allocated: it starts tracemalloc at the
first test, far cheaper than ``PYTHONTRACEMALLOC``, which also traces pytest's start-up.

Loaded by ``tests/conftest.py`` (``pytest_plugins``); ``-p leakcheck`` loads it elsewhere.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.logging import caplog_handler_key, caplog_records_key

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


def endpoints() -> dict[int, str]:
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


def _own_code() -> set[object]:
    return {_referrers.__code__, _holders.__code__}


_OWN_CODE: set[object] = set()


def _referrers(obj: object, ignored: list[object]) -> list[object]:
    """What refers to ``obj``, looking through the dicts, lists and tuples in between."""
    found: list[object] = []
    seen = {id(ignored)}
    level = [obj]
    for _ in range(3):
        containers = []
        for target in level:
            for referrer in gc.get_referrers(target):
                if id(referrer) in seen or getattr(referrer, "f_code", None) in _OWN_CODE:
                    continue  # (this module's own frames, looking at it)
                seen.add(id(referrer))
                if isinstance(referrer, (dict, list, tuple)):
                    containers.append(referrer)
                else:
                    found.append(referrer)
        if found or not containers:
            return found
        level = containers
    return found


def _holders(fds: set[int]) -> dict[int, list[str]]:
    """For each descriptor, the Python socket that owns it and the objects that refer to it,
    with where each was allocated when tracemalloc is on."""
    found: dict[int, list[str]] = {}
    if not _OWN_CODE:
        _OWN_CODE.update(_own_code())
    everything = gc.get_objects()
    for obj in everything:
        if not isinstance(obj, socket.socket):
            continue
        try:
            fd = obj.fileno()
        except OSError:
            continue
        if fd not in fds:
            continue
        described = found.setdefault(fd, [])
        for held in [obj, *_referrers(obj, everything)[:4]]:
            described.append(f"held by {type(held).__module__}.{type(held).__qualname__}")
            trace = tracemalloc.get_object_traceback(held)
            if trace is not None:
                described.extend(f"  {line}" for line in trace.format(limit=8))
    return found


def describe(sockets: dict[int, int]) -> dict[int, str]:
    """inode → what is known of the socket: its descriptor, addresses and holders."""
    known = endpoints()
    holders = _holders(set(sockets.values()))
    found = {}
    for inode, fd in sorted(sockets.items(), key=lambda item: item[1]):
        lines = [f"  fd {fd}: {known.get(inode, f'socket inode {inode}')}"]
        lines.extend(f"    {line}" for line in holders.get(fd, ["(no Python socket object)"]))
        found[inode] = "\n".join(lines)
    return found


def report(described: dict[int, str]) -> str:
    lines = list(described.values())
    if not tracemalloc.is_tracing():
        lines.append("  (run with LEAKCHECK_TRACEMALLOC=20 to see where each holder was allocated)")
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


def _new(baseline: dict[int, int]) -> dict[int, int]:
    return {k: v for k, v in open_sockets().items() if k not in baseline}


def _settle(
    baseline: dict[int, int], loops: list[asyncio.AbstractEventLoop]
) -> tuple[dict[int, int], dict[int, str]]:
    """The sockets opened since ``baseline`` that are still open once ``SETTLE`` has passed,
    and what was known of those the garbage collector closed (their ResourceWarning follows,
    without the socket's addresses or the holder's allocation)."""
    deadline = time.monotonic() + SETTLE
    leaked = _new(baseline)
    if not leaked:
        return {}, {}
    described = describe(leaked)
    gc.collect()
    left = _new(baseline)
    collected = {k: v for k, v in described.items() if k not in left}
    while left and time.monotonic() < deadline:
        idle = [lo for lo in loops if not lo.is_closed() and not lo.is_running()]
        if idle:
            for loop in idle:
                loop.run_until_complete(asyncio.sleep(POLL / len(idle)))
        else:
            time.sleep(POLL)  # polling other threads' sockets until SETTLE's deadline
        gc.collect()
        left = _new(baseline)
    return left, collected


def _forget_logged_tracebacks(item: pytest.Item) -> None:
    """Drop the tracebacks of the records pytest keeps for the report (already formatted): their
    frames would keep the objects of a failed call, and their sockets, open until after this."""
    phases = list(item.stash.get(caplog_records_key, {}).values())
    handler = item.stash.get(caplog_handler_key, None)
    for records in [*phases, handler.records if handler is not None else []]:
        for record in records:
            record.exc_info = None


@pytest.fixture(autouse=True)
def no_leaked_sockets(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it (or its function-scoped fixtures) left a socket open."""
    if not FD_DIR.is_dir():  # not Linux: nothing to compare
        yield
        return
    frames = int(os.environ.get("LEAKCHECK_TRACEMALLOC") or 0)
    if frames and not tracemalloc.is_tracing():
        tracemalloc.start(frames)  # from the first test on: far cheaper than tracing start-up
    loops = _loops(request)
    baseline = open_sockets()
    yield
    _forget_logged_tracebacks(request.node)
    leaked, collected = _settle(baseline, loops)
    if collected:
        print(  # shown with the test's failure (the collector's ResourceWarning)
            f"{request.node.nodeid}: the garbage collector closed {len(collected)} socket(s) "
            f"that nothing else closed:\n{report(collected)}",
            file=sys.stderr,
        )
    if leaked:
        pytest.fail(
            f"{request.node.nodeid} left {len(leaked)} socket(s) open "
            f"({SETTLE:g} s after its teardown):\n{report(describe(leaked))}",
            pytrace=False,
        )
