"""A machine for the command-line tests: a state that grows as large as its inputs ask."""

from __future__ import annotations

from hotswap.dsl import machine


@machine(init={})
def grow(n: int, entries: dict[int, int]) -> tuple[dict[int, int], int]:
    """Add ``n`` entries (keys counting on from the last); answer how many there are."""
    grown = dict(entries)
    start = len(grown)
    for i in range(start, start + n):
        grown[i] = i * i
    return grown, len(grown)
