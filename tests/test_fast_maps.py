"""The fast path's inline map primitives agree with the reference VM at every budget.

``MAP_GET``, ``MAP_INDEX``, ``MAP_CONTAINS``, ``MAP_INSERT`` and ``MAP_DELETE`` on a small map
whose size is not measured are done on its ``dict`` in the generated code; any other map goes
through the primitive's implementation. Either way the result, the trap and the fuel used are
the VM's, and the map made is the one the implementation makes: the same entries in the same
order, small while it holds at most 32 entries, the empty map once its last entry goes."""

from __future__ import annotations

from typing import Any

import pytest

from hotswap.cam.codegen import generate_source
from hotswap.dsl import Machine, compile_source
from hotswap.lang.persistent import EMPTY_MAP, SMALL, OMap, state_size
from test_fast_folds import _outcome

_SOURCE = """
from dataclasses import dataclass
from hotswap.dsl import machine


@dataclass(frozen=True)
class Put:
    key: str
    value: int


@dataclass(frozen=True)
class Drop:
    key: str


@dataclass(frozen=True)
class Read:
    key: str


@machine(init={})
def table(cmd: Put | Drop | Read, d: dict[str, int]) -> tuple[dict[str, int], int]:
    match cmd:
        case Put(key, value):
            old = d.get(key)
            d = d | {key: value}
            return d, (0 if old is None else old) + len(d)
        case Drop(key):
            if key in d:
                d = {k: v for k, v in d.items() if k != key} if len(d) > 40 else d
                copy = dict(d)
                del copy[key]
                return copy, len(copy)
            return d, -1
        case Read(key):
            return d, d[key]
"""


def _table() -> Machine[..., Any]:
    found = compile_source(_SOURCE)
    m = found["table"]
    assert isinstance(m, Machine)
    return m


TABLE = _table()
_NS = TABLE.__wrapped__.__globals__
Put, Drop, Read = _NS["Put"], _NS["Drop"], _NS["Read"]


def _agree(cmd: Any, state: dict[str, int], measured: bool) -> tuple[Any, ...]:
    """The fast path against the VM on ``cmd`` with ``state``, at every budget up to the
    step's cost and with plenty; ``measured``: the state map's size taken first, as a node's
    state limit takes it, so that the primitives' own code runs."""
    loaded = TABLE.loaded
    core = TABLE.to_core_state(state)
    if measured:
        state_size(core)
    value = (TABLE.to_core_input(cmd), core)
    exact = _outcome(loaded, value, "vm", 1 << 40)
    used = exact[2] if exact[0] == "ok" else 200
    for fuel in [*range(0, used + 3), 1 << 40]:
        fast, vm = _outcome(loaded, value, "fast", fuel), _outcome(loaded, value, "vm", fuel)
        assert fast == vm, (fuel, fast, vm)
    return exact


def test_the_inline_forms_are_in_the_generated_code() -> None:
    loaded = TABLE.loaded
    index = loaded.machine.step if loaded.machine else -1
    source = generate_source(loaded.module.functions[index].code)
    assert "_small_map(" in source and ".get(" in source and "._size < 0" in source


SIZES = [0, 1, 2, SMALL - 1, SMALL, SMALL + 1, 45]


def _state(n: int) -> dict[str, int]:
    return {f"k{i}": i for i in range(n)}


@pytest.mark.parametrize("measured", [False, True])
@pytest.mark.parametrize("n", SIZES)
def test_each_primitive_agrees_with_the_vm_on_maps_small_and_large(n: int, measured: bool) -> None:
    state = _state(n)
    m = TABLE
    for cmd in [Put("k0", 7), Put("new", 1), Drop("k0"), Drop("absent"), Read("k1"), Read("no")]:
        outcome = _agree(cmd, state, measured)
        try:
            expected = m(cmd, state)
        except KeyError:
            assert outcome == ("trap", "missing_key"), (cmd, outcome)
            continue
        assert outcome[0] == "ok", (cmd, outcome)
        new, out = m.from_core_state(outcome[1][0]), m.from_core_output(outcome[1][1])
        assert (new, out) == expected and list(new) == list(expected[0]), cmd
        assert m.run(cmd, state) == expected


@pytest.mark.parametrize("n", [SMALL, SMALL + 1])
def test_a_map_made_inline_is_the_one_the_implementation_makes(n: int) -> None:
    """Small while it holds at most 32 entries, large past it; the last entry's delete gives
    the empty map itself."""
    m = TABLE
    step = m.loaded.function(m.loaded.machine.step if m.loaded.machine else -1)
    grown, _ = step((m.to_core_input(Put("new", 1)), m.to_core_state(_state(n - 1))))
    assert isinstance(grown, OMap) and (grown._small is not None) == (n <= SMALL)
    assert list(grown.items())[-1] == ("new", 1) and len(grown) == n
    emptied, out = step((m.to_core_input(Drop("only")), m.to_core_state({"only": 3})))
    assert emptied is EMPTY_MAP and out == 0
