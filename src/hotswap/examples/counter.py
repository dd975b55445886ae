"""The seed's counter, version 1 and 2, and the state migration between them.

Version 1 counts ``Incr`` inputs and answers ``Count`` with the count; its output ``None | int``
is the seed's ``L Unit`` for Incr and ``R (Int n)`` for Count. Version 2 keeps the old count in
the first component of its state and counts on in the second, like the Erlang original's
``code_change``; ``upgrade_state`` maps ``n`` to ``(n, 0)``.

The order of a union is its layout, so ``None | int`` is written as it is (RUF036 would move
None last, which would make the output ``int + Unit``, not the seed's ``Unit + Int``).

"Upgrade" here is :class:`hotswap.code.Upgrade`, the seed's ``Upgrade old new migration``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from hotswap.code import Upgrade
from hotswap.dsl import machine, migration

if TYPE_CHECKING:
    from hotswap.client import Client


@dataclass(frozen=True)
class Incr:
    """Add one to the count."""


@dataclass(frozen=True)
class Count:
    """Ask for the count."""


@machine(init=0)
def counter_sm(inp: Incr | Count, state: int) -> tuple[int, None | int]:  # noqa: RUF036 - order
    match inp:
        case Incr():
            return state + 1, None
        case Count():
            return state, state


@machine(init=(0, 0))
def counter_sm2(inp: Incr | Count, state: tuple[int, int]) -> tuple[tuple[int, int], None | int]:  # noqa: RUF036 - the seed's order
    old, count = state
    match inp:
        case Incr():
            return (old, count + 1), None
        case Count():
            return state, count


@migration(counter_sm, counter_sm2)
def upgrade_state(old: int) -> tuple[int, int]:
    return old, 0


@migration(counter_sm2, counter_sm)
def downgrade_state(state: tuple[int, int]) -> int:
    """The way back, for rollback: keep the count version 2 has been keeping."""
    _, count = state
    return count


# --- the seed's REPL flow ---------------------------------------------------------------------
# With a node running the counter (`make run`), in a Python REPL:
#
#     >>> from hotswap.examples.counter import *
#     >>> incr()
#     >>> count()
#     1
#     >>> upgrade(Upgrade(counter_sm, counter_sm2, upgrade_state))
#
# The node is found at $HOTSWAP_NODE, or at the node's default address. The client is imported
# on first use: a node that imports this module for its machines loads no client code.

MACHINE = "counter"


@cache
def node() -> Client:
    """The connection the REPL helpers share, opened on first use."""
    from hotswap.client import connect  # noqa: PLC0415 - the node imports this module too

    client = connect()
    client.session.remember(counter_sm, counter_sm2)
    return client


def incr() -> None:
    """The seed's ``incr``: send ``Incr()`` to the node's counter."""
    node().send(MACHINE, Incr())


def count() -> int:
    """The seed's ``count``: send ``Count()``; returns the count."""
    result: int = node().send(MACHINE, Count())
    return result


def upgrade(change: Upgrade) -> None:
    """The seed's ``upgrade``: raises :class:`hotswap.UpgradeRejected` if the node refuses."""
    node().upgrade(MACHINE, change)


__all__ = [
    "Count",
    "Incr",
    "Upgrade",
    "count",
    "counter_sm",
    "counter_sm2",
    "downgrade_state",
    "incr",
    "upgrade",
    "upgrade_state",
]
