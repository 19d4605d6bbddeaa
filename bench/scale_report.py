"""The scale benchmark's table: each target beside its measured figure (``bench.scale``)."""

from __future__ import annotations

from typing import Any

from bench import profile


def _lat(stats: dict[str, float]) -> str:
    return f"p50 {stats['p50_ms']} ms  p99 {stats['p99_ms']} ms (n={stats['n']})"


def _size_rows(size: dict[str, Any], results: dict[str, Any]) -> list[tuple[str, str]]:
    n, burst, steady, idle = size["sessions"], size["burst"], size["steady"], size["idle_burst"]
    rss_target = "≤ 150 MiB" if n <= 1000 else "≤ 600 MiB" if n <= 10_000 else "-"
    reqs = burst["requests_per_session"]
    late = idle["lateness_s"]
    singles, idle_check, wake_wait = (
        results["singles"],
        results["idle_check_s"],
        results["wake_wait_s"],
    )
    return [
        (f"[{n}] burst → all Deployments (≤ 10 s at 1,000)", f"{burst['all_deployments_s']} s"),
        (f"[{n}] burst → all Running", f"{burst['all_running_s']} s"),
        (
            f"[{n}] create calls of the burst ({results['workers']} threads)",
            f"{burst['create_calls_s']} s",
        ),
        (
            f"[{n}] create → Deployment, idle, empty (p99 ≤ 100 ms)",
            _lat(size["create_to_deployment_empty"]),
        ),
        (
            f"[{n}] create → Deployment, idle, at N (p99 ≤ 100 ms)",
            _lat(size["create_to_deployment_at_n"]),
        ),
        (f"[{n}] API requests per session, burst (Go: 9.4)", f"{reqs['total']}  ({reqs})"),
        (
            f"[{n}] API requests per session, {singles} paced creates until Running (Go: 9.4)",
            f"{size['requests_per_session_empty']}",
        ),
        (f"[{n}] operator RSS at N ({rss_target})", f"{steady['rss_mib']} MiB"),
        (f"[{n}] steady CPU at N (≤ 10 % at 10,000)", f"{steady['cpu_percent']} % of a core"),
        (f"[{n}] steady API requests/s at N", f"{steady['requests_per_s']}"),
        (
            f"[{n}] idle burst of {idle['sessions']}: lateness (p99 ≤ {idle_check:.0f} s)",
            f"p50 {late['p50']} s  p99 {late['p99']} s  max {late['max']} s  early {late['early']}",
        ),
        (
            f"[{n}] wake during that burst (p99 ≤ 1 s)",
            f"{_lat(idle['wake_during_burst'])}; not awake after {wake_wait:.0f} s:"
            f" {idle.get(f'wakes_not_done_in_{wake_wait:.0f}s')}",
        ),
        (f"[{n}] wall time of this size", f"{size['minutes']} min"),
        *(
            (f"[{label}] CPU by process (% of a core)", profile.shares_text(shares))
            for label, shares in size.get("cpu_by_process", {}).items()
        ),
        *(
            row
            for label, cpu in size.get("cpu_profile", {}).items()
            for row in profile.cpu_rows(f"[{label}]", cpu)
        ),
        *(
            row
            for label, snap in size.get("memory_profile", {}).items()
            for row in profile.memory_rows(f"[{n} {label}]", snap)
        ),
    ]


def rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for size in results["sizes_run"]:
        rows += _size_rows(size, results)
    sharded = results.get("sharded")
    if sharded:
        n, burst = sharded["sessions"], sharded["burst"]
        rows.append(
            (
                f"[sharded {n}, 2 operators x 2 ns] burst → all Deployments",
                f"{burst['all_deployments_s']} s",
            )
        )
        rows.append((f"[sharded {n}] burst → all Running", f"{burst['all_running_s']} s"))
        for name, steady, reqs in zip(
            sharded["shards"], sharded["steady"], burst["requests_per_session"], strict=True
        ):
            rows.append(
                (
                    f"[sharded {n}] operator {name}: RSS / CPU / req per session",
                    f"{steady['rss_mib']} MiB / {steady['cpu_percent']} % / {reqs['total']}",
                )
            )
        rows.append((f"[sharded {n}] wall time", f"{sharded['minutes']} min"))
    return rows
