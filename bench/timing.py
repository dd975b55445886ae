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


def interleaved_rates(
    fns: dict[str, Callable[[], object]], *, rounds: int = 7, min_time: float = 0.05
) -> dict[str, float]:
    """Calls per second of each of ``fns``, timed in turn ``rounds`` times over: the best
    round of each. On a shared machine whose speed drifts, functions timed side by side see
    the same drift, and the best round is the one least slowed by others (noise only adds)."""
    best = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = max(best[name], rate(fn, min_time=min_time, repeats=3))
    return best
