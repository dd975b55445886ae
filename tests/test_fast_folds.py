"""The fast path's specialised folds and primitives agree with the reference VM at every budget.

A fold whose body costs the same fixed amount each run is charged once for the whole list when
the fuel covers it (else the loop with a check per iteration runs); a list accumulator built by
appends only is a Python list made persistent after the loop; ``sorted`` and ``join`` take
their cost and compute their result in one call. None of that may change a result, a trap or
the fuel used, least of all where the fuel runs out."""

from __future__ import annotations

from typing import Any

import pytest

from hotswap.cam.build import machine_module
from hotswap.cam.codegen import generate_source
from hotswap.cam.loaded import LoadedModule, load
from hotswap.errors import Trap
from hotswap.examples import cart
from hotswap.lang.ints import INT_MAX
from hotswap.lang.persistent import make_list
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
from hotswap.lang.types import INT, STR, UNIT, ListT


def _outcome(loaded: LoadedModule, value: Any, executor: str, fuel: int) -> tuple[Any, ...]:
    index = loaded.machine.step if loaded.machine else -1
    try:
        result, used = loaded.run_metered(index, value, executor, fuel)  # type: ignore[arg-type]
    except Trap as trap:
        return ("trap", trap.kind)
    return ("ok", result, used)


def _agree_at(loaded: LoadedModule, value: Any, budgets: range) -> list[tuple[Any, ...]]:
    outcomes = []
    for fuel in budgets:
        fast, vm = _outcome(loaded, value, "fast", fuel), _outcome(loaded, value, "vm", fuel)
        assert fast == vm, (fuel, fast, vm)
        outcomes.append(vm)
    return outcomes


def _sum_machine() -> LoadedModule:
    """Input a list of ints, state an int: adds every element to the state (a fold whose body
    always costs the same and never stops early) and outputs the new total."""
    body = compose(Fanout(compose(SND, SND), compose(SND, FST)), Prim(Op.ADD), Inl(UNIT))
    fold = compose(Fanout(TERMINAL, Fanout(FST, SND)), Fold(body))
    step = compose(fold, Case(ID, Lit(0)), Fanout(ID, ID))
    return load(machine_module(ListT(INT), INT, INT, Lit(0), step))


def test_a_fold_of_fixed_cost_is_charged_once_and_runs_out_where_the_vm_does() -> None:
    loaded = _sum_machine()
    index = loaded.machine.step if loaded.machine else -1
    source = generate_source(loaded.module.functions[index].code)
    assert "._n" in source and source.count("for ") == 2  # the charged-once loop, and the other
    xs = make_list(range(20))
    _, used = loaded.run_metered(index, (xs, 0), "vm")
    outcomes = _agree_at(loaded, (xs, 0), range(used + 3))
    assert outcomes[used] == ("ok", (sum(range(20)), sum(range(20))), used)
    assert all(o == ("trap", "out_of_fuel") for o in outcomes[:used])


def test_an_overflow_inside_a_fold_charged_once_is_the_vms_trap_at_every_budget() -> None:
    """The sum overflows at the third element: with fuel for the whole list the trap is the
    overflow; with too little to reach it, ``out_of_fuel``; in between, whatever the VM says."""
    loaded = _sum_machine()
    xs = make_list([INT_MAX - 5, 3, 3, 1, 1, 1])
    outcomes = _agree_at(loaded, (xs, 0), range(120))
    assert ("trap", "overflow") in outcomes and ("trap", "out_of_fuel") in outcomes
    first = outcomes.index(("trap", "overflow"))
    assert all(o == ("trap", "overflow") for o in outcomes[first:])


def test_the_carts_step_agrees_with_the_vm_at_every_budget() -> None:
    """Its three folds (two of fixed cost, one building a list of texts), ``sorted`` and
    ``join``: out of fuel at every point of the step, then the same total at the exact cost."""
    m = cart.cart_sm
    lines = {f"sku-{i}": cart.Line(f"item {i}", 100 + i, 1 + i % 3) for i in range(6)}
    value = (m.to_core_input(cart.SetQty("sku-2", 7)), m.to_core_state(cart.Cart(lines)))
    index = m.loaded.machine.step if m.loaded.machine else -1
    source = generate_source(m.loaded.module.functions[index].code)
    assert "_mklist(" in source and "_x33(" in source and "_x46(" in source
    _, used = m.loaded.run_metered(index, value, "vm")
    outcomes = _agree_at(m.loaded, value, range(0, used + 2))
    assert outcomes[used][0] == "ok" and outcomes[used - 1] == ("trap", "out_of_fuel")


def _join_machine() -> LoadedModule:
    """Input a list of texts, state a separator: joins the list with it."""
    step = compose(Fanout(SND, FST), Prim(Op.STR_JOIN), Fanout(ID, ID))
    return load(machine_module(ListT(STR), STR, STR, StrLit(", "), step))


def test_a_join_too_large_traps_too_large_exactly_when_its_cost_fits() -> None:
    loaded = _join_machine()
    big = "x" * 600_000
    value = (make_list([big, big]), "-")
    index = loaded.machine.step if loaded.machine else -1
    fuel = 10
    while _outcome(loaded, value, "vm", fuel) == ("trap", "out_of_fuel"):
        fuel *= 2
    assert _outcome(loaded, value, "vm", fuel) == ("trap", "too_large")
    lo, hi = fuel // 2, fuel  # out of fuel at lo, too large at hi: find the boundary
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _outcome(loaded, value, "vm", mid) == ("trap", "out_of_fuel"):
            lo = mid
        else:
            hi = mid
    outcomes = _agree_at(loaded, value, range(hi - 2, hi + 2))
    assert outcomes == [("trap", "out_of_fuel")] * 2 + [("trap", "too_large")] * 2
    small = (make_list(["a", "b"]), "-")
    assert loaded.run_metered(index, small, "fast") == loaded.run_metered(index, small, "vm")


@pytest.mark.parametrize("items", [[], ["b", "a"], ["x" * 40, "y", "x" * 20]])
def test_sorting_a_list_costs_what_the_vm_charges_at_every_budget(items: list[str]) -> None:
    step = compose(FST, Prim(Op.LIST_SORT), Fanout(TERMINAL, ID))
    loaded = load(machine_module(ListT(STR), UNIT, ListT(STR), compose(TERMINAL), step))
    value = (make_list(items), ())
    index = loaded.machine.step if loaded.machine else -1
    _, used = loaded.run_metered(index, value, "vm")
    outcomes = _agree_at(loaded, value, range(used + 2))
    assert outcomes[used] == ("ok", ((), make_list(sorted(items))), used)


def test_an_accumulator_read_otherwise_than_appended_to_is_a_persistent_list() -> None:
    """``acc.append(len(acc))``: the length of the list being built is read, so the list is
    not built in place, and the result is the VM's."""
    acc = compose(SND, SND)
    body = compose(Fanout(acc, compose(acc, Prim(Op.LIST_LEN))), Prim(Op.LIST_APPEND), Inl(UNIT))
    fold = compose(Fanout(TERMINAL, Fanout(FST, Empty(ListT(INT)))), Fold(body))
    step = compose(fold, Case(ID, Empty(ListT(INT))), Fanout(TERMINAL, ID))
    loaded = load(machine_module(ListT(INT), UNIT, ListT(INT), compose(TERMINAL), step))
    index = loaded.machine.step if loaded.machine else -1
    assert "_mklist(" not in generate_source(loaded.module.functions[index].code)
    value = (make_list(range(5)), ())
    _, used = loaded.run_metered(index, value, "vm")
    outcomes = _agree_at(loaded, value, range(used + 2))
    assert outcomes[used] == ("ok", ((), make_list(range(5))), used)


def test_a_fold_whose_body_leaves_its_list_accumulator_as_it_is_compiles_and_agrees() -> None:
    """A body that hands its accumulator (an empty list, the kind the fast path builds by
    appends) back unchanged has no statement left once its fuel is charged for the whole
    list: the loop must still be Python (it was a ``for`` with no body, an IndentationError
    a generated module found)."""
    body = compose(SND, SND, Inl(UNIT))
    fold = compose(Fanout(TERMINAL, Fanout(FST, Empty(ListT(UNIT)))), Fold(body))
    step = compose(fold, Case(ID, Empty(ListT(UNIT))), Fanout(TERMINAL, ID))
    loaded = load(machine_module(ListT(INT), UNIT, ListT(UNIT), TERMINAL, step))
    index = loaded.machine.step if loaded.machine else -1
    xs = make_list(range(5))
    _, used = loaded.run_metered(index, (xs, ()), "vm")
    outcomes = _agree_at(loaded, (xs, ()), range(used + 3))
    assert outcomes[used] == ("ok", ((), make_list([])), used)
