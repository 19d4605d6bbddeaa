"""Memory a burst leaves behind, given back: glibc's ``malloc_trim`` once a minute.

A burst (a morning's logins, an idle-deadline burst) makes the operator parse thousands of
answers and watch events at once; Python frees them, but glibc's malloc keeps the freed chunks
(objects over 512 bytes: JSON bodies' dict tables and strings) for reuse, so RSS stays at the
burst's peak. The memory profile of the 1,000-session benchmark showed 122 MiB free inside
malloc's arenas beside 153 MiB of live Python objects (decision 159). ``malloc_trim(0)``
returns the free pages to the kernel; it takes milliseconds, so once a minute costs nothing
measurable. On a C library without it (musl) this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_INTERVAL = 60.0  # seconds


def malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


async def trim_forever(interval: float = TRIM_INTERVAL) -> None:
    """Give malloc's free memory back every ``interval`` seconds until cancelled."""
    trim = malloc_trim()
    if trim is None:
        log.info("no malloc_trim in this C library: freed memory stays with the process")
        return
    while True:
        await asyncio.sleep(interval)
        started = time.perf_counter()
        trim()
        log.debug("malloc_trim took %.1f ms", 1000 * (time.perf_counter() - started))
