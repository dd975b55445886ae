"""Fuel: every run has a budget, both executors charge exactly the same, and the fast path's
unmetered form is used only where it cannot run out."""

from __future__ import annotations

import itertools

import pytest

from hotswap.cam.build import machine_module
from hotswap.cam.codegen import compile_unmetered, has_static_cost
from hotswap.cam.loaded import Executor, LoadedModule, load
from hotswap.cam.module import decode_module, encode_module
from hotswap.errors import InternalError, Trap
from hotswap.examples import handbuilt
from hotswap.lang.persistent import OMap, make_list
from hotswap.lang.terms import (
    FST,
    ID,
    SND,
    TERMINAL,
    Case,
    Empty,
    Fanout,
    Fold,
    Inl,
    Lit,
    Op,
    Prim,
    StrLit,
    compose,
)
from hotswap.lang.types import INT, STR, UNIT, ListT, MapT

EXECUTORS: tuple[Executor, ...] = ("fast", "vm")


def _sum_machine() -> LoadedModule:
    """Input a list of ints, state an int: adds every element to the state (a fold) and
    outputs the new total."""
    body = compose(
        Fanout(compose(SND, SND), compose(SND, FST)), Prim(Op.ADD), Inl(UNIT)
    )  # E x (A x S) -> S + Unit: never stops early
    fold = compose(Fanout(TERMINAL, Fanout(FST, SND)), Fold(body))  # (xs, s) -> S + Unit
    step = compose(fold, Case(ID, Lit(0)), Fanout(ID, ID))
    return load(machine_module(ListT(INT), INT, INT, Lit(0), step))


def test_both_executors_use_exactly_the_same_fuel_and_run_out_at_the_same_budget() -> None:
    loaded = _sum_machine()
    xs = make_list(range(50))
    index = loaded.machine.step if loaded.machine else -1
    used = {e: loaded.run_metered(index, (xs, 0), e)[1] for e in EXECUTORS}
    assert used["fast"] == used["vm"] > 50  # at least one unit per element
    for executor in EXECUTORS:
        result, spent = loaded.run_metered(index, (xs, 0), executor, fuel=used["vm"])
        assert result == (sum(range(50)), sum(range(50)))
        assert spent == used["vm"]
        with pytest.raises(Trap) as trap:
            loaded.run_metered(index, (xs, 0), executor, fuel=used["vm"] - 1)
        assert trap.value.kind == "out_of_fuel"
        assert f"{used['vm'] - 1} units" in str(trap.value)


def test_fuel_grows_with_the_list_one_fold_iteration_at_a_time() -> None:
    loaded = _sum_machine()
    index = loaded.machine.step if loaded.machine else -1
    costs = [loaded.run_metered(index, (make_list(range(n)), 0))[1] for n in range(5)]
    steps = {b - a for a, b in itertools.pairwise(costs)}
    assert len(steps) == 1 and steps.pop() > 0  # each element costs the same


@pytest.mark.parametrize("executor", EXECUTORS)
def test_code_of_static_cost_traps_when_the_budget_is_below_its_cost(executor: Executor) -> None:
    """The counter's step costs a fixed number of units: below that it traps, on the fast path
    too (which then runs its metered form, not the unmetered one)."""
    loaded = load(handbuilt.counter_module())
    index = loaded.machine.step if loaded.machine else -1
    _, cost = loaded.run_metered(index, ((0, ()), 41), executor)
    assert cost <= loaded.info.functions[index].max_steps
    assert loaded.step((0, ()), 41, executor, fuel=cost) == loaded.step((0, ()), 41, executor)
    with pytest.raises(Trap, match="units of fuel"):
        loaded.step((0, ()), 41, executor, fuel=cost - 1)


def test_only_code_without_folds_or_variable_costs_has_an_unmetered_form() -> None:
    counter = handbuilt.counter_module()
    assert has_static_cost(counter.functions[1].code)
    loaded = _sum_machine()
    step = loaded.module.functions[loaded.machine.step if loaded.machine else -1]
    assert not has_static_cost(step.code)
    with pytest.raises(InternalError, match="static cost"):
        compile_unmetered(step.code)


def test_format_version_is_2_exactly_when_a_module_uses_format_2() -> None:
    counter = encode_module(handbuilt.counter_module())
    assert counter[4] == 1
    texts = machine_module(UNIT, STR, STR, StrLit("hello"), Fanout(SND, SND))
    data = encode_module(texts)
    assert data[4] == 2
    assert encode_module(decode_module(data)) == data
    maps = machine_module(
        UNIT,
        MapT(STR, INT),
        INT,
        Empty(MapT(STR, INT)),
        Fanout(SND, compose(SND, Prim(Op.MAP_LEN))),
    )
    loaded = load(maps)
    for executor in EXECUTORS:
        assert loaded.init(executor) == OMap()
        assert loaded.step((), OMap([("a", 1)]), executor) == (OMap([("a", 1)]), 1)
