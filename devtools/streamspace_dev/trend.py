"""Trends of sampled series for the soak benchmark: least-squares slope per hour after a warm-up.

A leak shows as a slope: memory, file descriptors or tasks that keep growing under a load that
does not. The first samples are skipped (imports, caches, pools and the informers filling up);
the rest get an ordinary least-squares line, whose slope is reported per hour, beside the mean
so that a slope can be read relative to the level it sits on. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Trend:
    samples: int
    """Points the line was fitted to (after the warm-up)."""
    mean: float
    per_hour: float
    """Least-squares slope, in the series' unit per hour; NaN with fewer than two points."""

    @property
    def percent_per_hour(self) -> float:
        """The slope relative to the mean, in percent per hour (NaN when the mean is 0)."""
        return 100 * self.per_hour / self.mean if self.mean else math.nan


def slope(times: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (units per time unit); NaN when it is
    undefined (fewer than two points, or all at one time). NaN values are left out."""
    points = [(t, v) for t, v in zip(times, values, strict=True) if not math.isnan(v)]
    if len(points) < 2:
        return math.nan
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return math.nan
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def trend(seconds: Sequence[float], values: Sequence[float], warmup: float) -> Trend:
    """The trend of a series sampled at ``seconds`` (since the start), ignoring the first
    ``warmup`` seconds."""
    kept = [(t, v) for t, v in zip(seconds, values, strict=True) if t >= warmup]
    known = [v for _, v in kept if not math.isnan(v)]
    return Trend(
        samples=len(known),
        mean=sum(known) / len(known) if known else math.nan,
        per_hour=slope([t / 3600 for t, _ in kept], [v for _, v in kept]),
    )
