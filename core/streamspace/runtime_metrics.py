"""Values behind the runtime metrics both processes serve: live asyncio tasks and the labels of
one request to the Kubernetes API.

Each process defines its own series in its own registry (``streamspace_asyncio_tasks``,
``streamspace_kubernetes_requests_total``); what they compute is defined once, here. A leak of
tasks or a request storm shows in these series long before it shows in memory (the soak
benchmark prints their slope per hour).
"""

from __future__ import annotations

import asyncio
import math

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def asyncio_tasks() -> float:
    """Tasks of the running event loop not yet done (the scrape's own included); NaN outside one.

    Both processes serve ``/metrics`` from their one event loop, so a scrape counts that loop.
    """
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # no running loop: nothing to count
        return math.nan


def request_labels(method: str, status: int | None) -> tuple[str, str]:
    """(method, code) of one Kubernetes API request: a bounded method set, ``error`` when no
    answer came (refused, reset, timed out, cancelled)."""
    verb = method.upper()
    return (verb if verb in METHODS else "other", str(status) if status else "error")
