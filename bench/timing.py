"""Small timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def rate(fn: Callable[[], object], *, min_time: float = 0.2, repeats: int = 5) -> float:
    """Calls per second of ``fn``: the median of ``repeats`` timed batches."""
    batch = 1
    while True:  # grow the batch until one batch takes long enough to time
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        if time.perf_counter() - start >= min_time / repeats:
            break
        batch *= 2
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        rates.append(batch / (time.perf_counter() - start))
    return statistics.median(rates)


def once_us(fn: Callable[[], object], repeats: int = 20) -> float:
    """Median microseconds of one call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6
