"""Machines for the keyed-instance tests: a tally in three versions and their migrations.

Version 1 adds each ``Add(n)`` to an int and answers with the total; version 2 keeps the total
and a ``ratio`` that its migration computes as ``1000 // (total - 13)``, so the migration traps
(division by zero) on exactly the instances whose total is 13; version 3 adds a ``version``
field. ``back_to_v1`` is the way back from version 2 (a rollback). The decorated functions stay
plain Python, the oracle the tests compare the node against. A node process imports this module
by name (``instance_machines:tally_v1``), with ``tests`` on its ``PYTHONPATH``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotswap.dsl import machine, migration


@dataclass(frozen=True)
class Add:
    """Add ``n`` to the total."""

    n: int


@dataclass(frozen=True)
class Get:
    """Ask for the total."""


@dataclass(frozen=True)
class Tally:
    total: int
    ratio: int


@dataclass(frozen=True)
class Tally3:
    total: int
    ratio: int
    version: int


@machine(init=0)
def tally_v1(inp: Add | Get, state: int) -> tuple[int, int]:
    match inp:
        case Add(n=n):
            return state + n, state + n
        case Get():
            return state, state


@machine(init=Tally(0, 0))
def tally_v2(inp: Add | Get, state: Tally) -> tuple[Tally, int]:
    match inp:
        case Add(n=n):
            return Tally(state.total + n, state.ratio), state.total + n + 1000
        case Get():
            return state, state.total + 1000


@machine(init=Tally3(0, 0, 3))
def tally_v3(inp: Add | Get, state: Tally3) -> tuple[Tally3, int]:
    match inp:
        case Add(n=n):
            return Tally3(state.total + n, state.ratio, 3), state.total + n + 3000
        case Get():
            return state, state.total + 3000


@migration(tally_v1, tally_v2)
def v1_to_v2(old: int) -> Tally:
    return Tally(old, 1000 // (old - 13))


@migration(tally_v2, tally_v3)
def v2_to_v3(old: Tally) -> Tally3:
    return Tally3(old.total, old.ratio, 3)


@migration(tally_v2, tally_v1)
def back_to_v1(old: Tally) -> int:
    return old.total


@migration(tally_v1, tally_v2)
def v1_to_v2_safe(old: int) -> Tally:
    return Tally(old, 7)
