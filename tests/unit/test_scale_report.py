"""The scale benchmark's table: every issue-17 target beside its figure, sharded rows too."""

from __future__ import annotations

from typing import Any

import pytest
from bench import scale_report

pytestmark = pytest.mark.unit

LAT = {"p50_ms": 2.0, "p99_ms": 9.0, "n": 40}


def size(n: int) -> dict[str, Any]:
    return {
        "sessions": n,
        "minutes": 3.5,
        "burst": {
            "all_deployments_s": 43.2,
            "all_running_s": 80.0,
            "create_calls_s": 7.0,
            "requests_per_session": {"total": 8.8},
        },
        "steady": {"rss_mib": 403, "cpu_percent": 10.4, "requests_per_s": 8.3},
        "idle_burst": {
            "sessions": n,
            "lateness_s": {"p50": 5, "p99": 13.8, "max": 15, "early": 0},
            "wake_during_burst": LAT,
            "wakes_not_done_in_300s": 0,
        },
        "create_to_deployment_empty": LAT,
        "create_to_deployment_at_n": LAT,
        "requests_per_session_empty": 8.1,
    }


def test_every_target_is_a_row_beside_its_figure() -> None:
    results = {
        "workers": 32,
        "singles": 40,
        "idle_check_s": 30.0,
        "wake_wait_s": 300.0,
        "sizes_run": [size(1000)],
        "sharded": {
            "sessions": 2000,
            "minutes": 9.0,
            "burst": {
                "all_deployments_s": 60.0,
                "all_running_s": 99.0,
                "requests_per_session": [{"total": 8.0}, {"total": 9.0}],
            },
            "shards": ["a", "b"],
            "steady": [{"rss_mib": 300, "cpu_percent": 4.0}, {"rss_mib": 310, "cpu_percent": 5.0}],
        },
    }
    table = dict(scale_report.rows(results))
    assert table["[1000] burst → all Deployments (≤ 10 s at 1,000)"] == "43.2 s"
    assert table["[1000] operator RSS at N (≤ 150 MiB)"] == "403 MiB"
    assert table["[1000] idle burst of 1000: lateness (p99 ≤ 30 s)"].startswith("p50 5 s  p99 13.8")
    assert table["[1000] wake during that burst (p99 ≤ 1 s)"].endswith("not awake after 300 s: 0")
    assert table["[1000] create calls of the burst (32 threads)"] == "7.0 s"
    assert (
        table["[sharded 2000] operator b: RSS / CPU / req per session"] == "310 MiB / 5.0 % / 9.0"
    )
