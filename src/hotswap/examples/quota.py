"""A usage quota, laid out as docs/upgrades.md recommends: a module per version.

``quota_v1`` holds version 1's types exactly as ``hotswap types quota > quota_v1.py`` writes
them from the running code; this module holds the current version, version 2, under the same
names (``Quota``, ``Use``, ...), and the migration from version 1, written against
``quota_v1``'s classes. Nothing is renamed, so the wire names stay those of version 1 and every
input a client sent to version 1 means the same to version 2.

Version 1 grants ``Use(amount)`` while the quota's ``limit`` allows it and answers ``Check()``
with what remains. Version 2 also warns, with ``Low(remaining)``, once what remains falls below
its ``warn_below``; the migration sets that to a fifth of the old limit, which no derived
migration could (a new field gets a constant).

Version 1's step is kept here, written against ``quota_v1``'s types, only so the example can
start it on a node and ``@migration`` can name it; a real project has it in its history, and
its types in ``quota_v1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from hotswap.dsl import machine, migration
from hotswap.examples import quota_v1

# --- version 1, as it runs: its types are quota_v1's ----------------------------------------


@machine(init=quota_v1.Quota(used=0, limit=1000))
def quota_sm(inp: quota_v1.Input, state: quota_v1.State) -> tuple[quota_v1.State, quota_v1.Output]:
    remaining = state.limit - state.used
    match inp:
        case quota_v1.Use(amount) if 0 < amount <= remaining:
            used = state.used + amount
            return quota_v1.Quota(used, state.limit), quota_v1.Granted(state.limit - used)
        case quota_v1.Use():
            return state, quota_v1.Denied(remaining)
        case quota_v1.Check():
            return state, quota_v1.Granted(remaining)


# --- version 2, the current one -------------------------------------------------------------


@dataclass(frozen=True)
class Use:
    amount: int


@dataclass(frozen=True)
class Check:
    """Ask what remains."""


@dataclass(frozen=True)
class Quota:
    used: int
    limit: int
    warn_below: int


@dataclass(frozen=True)
class Granted:
    remaining: int


@dataclass(frozen=True)
class Low:
    """Granted, but what remains is below the quota's ``warn_below``."""

    remaining: int


@dataclass(frozen=True)
class Denied:
    remaining: int


Input: TypeAlias = Use | Check
State: TypeAlias = Quota
Output: TypeAlias = Granted | Low | Denied


def answer(state: Quota, remaining: int) -> Granted | Low:
    if remaining < state.warn_below:
        return Low(remaining)
    return Granted(remaining)


@machine(init=Quota(used=0, limit=1000, warn_below=200))
def quota_sm2(inp: Input, state: State) -> tuple[State, Output]:
    remaining = state.limit - state.used
    match inp:
        case Use(amount) if 0 < amount <= remaining:
            new = Quota(state.used + amount, state.limit, state.warn_below)
            return new, answer(new, remaining - amount)
        case Use():
            return state, Denied(remaining)
        case Check():
            return state, answer(state, remaining)


@migration(quota_sm, quota_sm2)
def upgrade_quota(old: quota_v1.State) -> State:
    """Version 1's quota, warning below a fifth of its limit."""
    return Quota(old.used, old.limit, warn_below=old.limit // 5)
