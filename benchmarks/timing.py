"""Timing shared by the benchmarks: the median of repeated runs (these machines are noisy)."""

from __future__ import annotations

import statistics
import time


def median_time(fn, repeats: int = 5) -> float:
    """Median wall-clock seconds of `repeats` calls of `fn()`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
