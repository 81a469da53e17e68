"""Small helpers shared by the benchmark modules: statistics, structured log lines."""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterable
from datetime import datetime
from typing import Any


def summary(values: Iterable[float | None]) -> dict[str, Any]:
    """Count, min, median, p90, max and mean of ``values`` (None for an empty list)."""
    data = sorted(v for v in values if v is not None)
    if not data:
        return {"n": 0, "min": None, "median": None, "p90": None, "max": None, "mean": None}
    p90 = data[min(len(data) - 1, round(0.9 * (len(data) - 1)))]
    return {
        "n": len(data),
        "min": data[0],
        "median": statistics.median(data),
        "p90": p90,
        "max": data[-1],
        "mean": statistics.fmean(data),
    }


def bootstrap_ratio(
    numerator: Iterable[float | None],
    denominator: Iterable[float | None],
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 1,
) -> dict[str, Any]:
    """Ratio of medians with a percentile bootstrap interval (each sample resampled on its own).

    Why: with ten runs a side the median moves by several percent between invocations;
    the interval says whether a ratio below 1.0 holds or could be noise.
    """
    a = [v for v in numerator if v is not None]
    b = [v for v in denominator if v is not None]
    if not a or not b:
        return {"ratio": None, "low": None, "high": None, "confidence": confidence, "resamples": 0}
    rng = random.Random(seed)
    ratios = sorted(
        statistics.median(rng.choices(a, k=len(a))) / statistics.median(rng.choices(b, k=len(b)))
        for _ in range(resamples)
    )
    tail = (1.0 - confidence) / 2
    return {
        "ratio": statistics.median(a) / statistics.median(b),
        "low": ratios[int(tail * (resamples - 1))],
        "high": ratios[int((1.0 - tail) * (resamples - 1))],
        "confidence": confidence,
        "resamples": resamples,
    }


def fmt(value: float | None, unit: str = "s", digits: int = 3) -> str:
    """Format a figure for the markdown report."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{' ' + unit if unit else ''}"


def parse_ts(value: str | None) -> float | None:
    """Airflow's ISO timestamps as POSIX seconds."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
