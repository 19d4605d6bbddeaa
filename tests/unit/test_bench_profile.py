"""The benchmarks' profile summaries: py-spy's collapsed stacks and tracemalloc snapshots."""

from __future__ import annotations

import tracemalloc

import pytest
from bench import traced
from bench.profile import package, summarize

pytestmark = pytest.mark.unit

RAW = """\
process 1:"python";run (asyncio/runners.py:118);BaseEventLoop._run_once (asyncio/base_events.py:1922);Handle._run (asyncio/events.py:80);loads (json/__init__.py:346) 20
process 1:"python";main (streamspace/cli.py:180);BaseEventLoop._run_once (asyncio/base_events.py:1910);EpollSelector.select (selectors.py:468) 10
process 1:"python";run (asyncio/runners.py:118);reconcile (streamspace_operator/sessions.py:80);decide (streamspace/lifecycle.py:210) 10
process 1:"python";run (asyncio/runners.py:118);process_raw_event (kopf/_core/reactor/processing.py:90) 60
not a sample line
"""


def test_package_of_a_frame_file() -> None:
    assert package("/x/.venv/lib/python3.11/site-packages/kopf/_core/engines/peering.py") == "kopf"
    assert package("/root/.pyenv/versions/3.11.7/lib/python3.11/asyncio/events.py") == "asyncio"
    assert package("kopf/_core/reactor/processing.py") == "kopf"
    assert package("json/__init__.py") == "json"
    assert package("<frozen runpy>") == "<frozen runpy>"
    assert package("/work/main/operator/streamspace_operator/cache.py") == "streamspace_operator"
    assert package("/work/main/tests/unit/test_x.py") == "unit"


def test_collapsed_stacks_become_shares_by_function_and_package() -> None:
    summary = summarize(RAW)
    assert summary["samples"] == 100
    assert summary["self"][0] == {
        "name": "process_raw_event (kopf/_core/reactor/processing.py)",
        "pct": 60.0,
    }
    packages = {p["name"]: p["pct"] for p in summary["packages"]}
    # by the innermost frame outside the standard library; the loop polling, or running a
    # callback of the standard library's, is the loop's, even below our entry point
    assert packages == {"kopf": 60.0, "event loop": 30.0, "streamspace": 10.0}


def test_a_memory_snapshot_counts_what_is_still_held() -> None:
    tracemalloc.start(1)
    try:
        held = [bytearray(1024) for _ in range(4096)]  # 4 MiB from this test's own lines
        snap = traced.snapshot()
    finally:
        tracemalloc.stop()
    assert len(held) == 4096
    assert snap["traced_mib"] >= 4.0 and snap["rss_mib"] > snap["traced_mib"]
    top = snap["lines"][0]
    assert top["at"].startswith(__file__ + ":") and top["count"] >= 4096, top
    assert snap["packages"][0]["name"] == "unit" and snap["packages"][0]["mib"] >= 4.0
