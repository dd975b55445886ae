"""Limits that keep one request's cost in proportion to what it is allowed to cost.

- Values received from a peer: a list of a zero-width type (``List Unit``) is its count alone,
  so a few bytes could ask for millions of elements, and a list of such lists for that many
  times more. The node's input decoder is bounded; the store's is not (a step may have built a
  large state, and recovery must read back whatever a step could build).
- Fuel: weighing an argument for its cost stops once the instruction is sure to run out, so a
  huge value traps ``out_of_fuel`` in time proportional to the fuel, not to its size.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from hotswap.cam.build import build_function, machine_module
from hotswap.cam.codegen import compile_metered, generate_source
from hotswap.cam.encoding import uleb
from hotswap.cam.loaded import Executor, load
from hotswap.cam.module import Module
from hotswap.cam.values import ZERO_WIDTH_ALLOWANCE, encode_value, value_decoder
from hotswap.cam.vm import VM
from hotswap.errors import DecodeError, Trap
from hotswap.lang import prims
from hotswap.lang.check import MAX_STR_LEN
from hotswap.lang.persistent import OMap, make_list, safe_key
from hotswap.lang.prims import TRUE
from hotswap.lang.terms import (
    DISTL,
    FST,
    ID,
    SND,
    TERMINAL,
    Case,
    Fanout,
    Fold,
    Inl,
    Lit,
    Op,
    Prim,
    Term,
    Terminal,
    compose,
)
from hotswap.lang.types import BOOL, INT, STR, UNIT, ListT, MapT, Prod

L_UNIT = ListT(UNIT)
EXECUTORS: tuple[Executor, ...] = ("fast", "vm")


def test_a_bounded_decoder_refuses_a_count_of_units_past_its_allowance() -> None:
    bomb = uleb(2**24)  # four bytes asking for 2**24 elements
    with pytest.raises(DecodeError, match=r"zero-width types than a value received may hold"):
        value_decoder(L_UNIT, bounded=True)(bomb)
    ok = uleb(ZERO_WIDTH_ALLOWANCE)
    assert len(value_decoder(L_UNIT, bounded=True)(ok)) == ZERO_WIDTH_ALLOWANCE
    # the store's decoder reads back whatever a step could have built
    assert len(value_decoder(L_UNIT)(uleb(2**20))) == 2**20


def test_the_allowance_is_for_the_whole_value_not_each_list() -> None:
    """A list of 1,000 lists of 1,000 units: each inner list is within the allowance, the
    million together are not."""
    nested = ListT(L_UNIT)
    inner = make_list([()] * 1000)
    data = encode_value(make_list([inner] * 1000), nested)
    assert len(data) < 4000
    with pytest.raises(DecodeError, match=r"a list of 1000 elements"):
        value_decoder(nested, bounded=True)(data)
    few = encode_value(make_list([inner] * 10), nested)
    assert len(value_decoder(nested, bounded=True)(few)) == 10


def test_the_allowance_grows_with_the_bytes_of_the_value() -> None:
    """Inside a pair with an Int list, units may number as many as the value has bytes."""
    t = Prod(ListT(INT), L_UNIT)
    ints = make_list(range(100, 100 + 100_000))  # 3 bytes each
    units = make_list([()] * (ZERO_WIDTH_ALLOWANCE + 250_000))
    data = encode_value((ints, units), t)
    got = value_decoder(t, bounded=True)(data)
    assert len(got[1]) == len(units)


def test_weighing_stops_once_the_cap_is_passed() -> None:
    big = make_list([make_list(range(1000))] * 1000)  # weight 1,001,000
    assert prims.weight(big) == 1000 + 1000 * 1000
    capped = prims.weight(big, 5000)
    assert 5000 < capped < 1000 + 1000 * 1000
    assert prims.weight(big, 10**7) == 1000 + 1000 * 1000  # exact within the cap
    xs = make_list(["a" * 160] * 100_000)
    assert prims.COST[Op.LIST_SORT](xs) == 100_000 * 17 * 11
    assert 1000 < prims.COST[Op.LIST_SORT](xs, 1000) < 100_000 * 17 * 11
    assert prims.COST[Op.LIST_CONTAINS]((xs, "b"), 50) == 51


def _equal_to_itself() -> Module:
    """A machine whose step compares its input, a List (List Int), with itself."""
    step = Fanout(SND, compose(Fanout(FST, FST), Prim(Op.EQUAL)))
    return machine_module(ListT(ListT(INT)), INT, BOOL, Lit(0), step)


def test_a_huge_argument_traps_out_of_fuel_in_time_of_the_fuel() -> None:
    """Equality on a value of weight 10**7 with 1,000 units of fuel: both executors trap at the
    same point, without weighing the whole value first."""
    module = load(_equal_to_itself())
    row = make_list(range(10_000))
    value = make_list([row] * 1000)
    for executor in EXECUTORS:
        with pytest.raises(Trap) as trapped:
            module.step(value, 0, executor=executor, fuel=1000)
        assert trapped.value.kind == "out_of_fuel"
    for executor in EXECUTORS:
        assert module.step(make_list([row]), 0, executor=executor, fuel=100_000) == (0, TRUE)


def _concatenations(n: int) -> Module:
    """A step whose output is ``n`` concatenations ``s + s`` of its input, all kept."""
    out, term = STR, compose(Fanout(FST, FST), Prim(Op.STR_CONCAT))
    tree: Term = term
    for _ in range(n - 1):
        tree, out = Fanout(term, tree), Prod(STR, out)
    return machine_module(STR, UNIT, out, Terminal(), Fanout(SND, tree))


def test_fuel_bounds_the_memory_of_a_run_of_concatenations() -> None:
    """Forty concatenations of megabyte texts in one stretch of code with no fold: with fuel
    for three, the run stops at the fourth on both executors, having held four texts, not
    forty (the fast path compares the fuel with zero after each concatenation)."""
    module = load(_concatenations(40))
    half = "x" * (MAX_STR_LEN // 2)
    for executor in EXECUTORS:
        tracemalloc.start()
        try:
            with pytest.raises(Trap) as trapped:
                module.step(half, (), executor=executor, fuel=3 * (1 + MAX_STR_LEN // 16) + 50)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert trapped.value.kind == "out_of_fuel"
        assert peak < 12 * MAX_STR_LEN, f"{executor}: {peak} bytes at the peak"


def test_an_equality_runs_once_where_it_is_charged_not_in_every_iteration() -> None:
    """An ``EQUAL`` in a fold's environment is charged once; the fast path must compare once
    too (it used to splice the comparison into the loop body: each iteration compared two
    big lists again for no fuel)."""
    equal = compose(FST, Prim(Op.EQUAL))
    body = compose(
        Fanout(compose(SND, SND), FST),
        DISTL,
        Case(
            compose(FST, Inl(UNIT)),
            compose(FST, Fanout(ID, Lit(1)), Prim(Op.ADD), Inl(UNIT)),
        ),
    )  # count the elements while the two lists are equal
    term = compose(
        Fanout(equal, Fanout(SND, Lit(0))), Fold(body), Case(ID, compose(TERMINAL, Lit(0)))
    )
    function = build_function(term, Prod(Prod(ListT(INT), ListT(INT)), ListT(INT)), INT)
    source = generate_source(function.code)
    loop = source[source.index("for ") :]
    assert source.count("==") == 1 and "==" not in loop, source
    a, ys = make_list(range(50)), make_list(range(7))
    fast = compile_metered(function.code)(((a, make_list(range(50))), ys), 10_000)
    vm = VM(function.code)
    assert vm.run(((a, make_list(range(50))), ys), 10_000) == fast[0] == 7
    assert vm.statistics().fuel == 10_000 - fast[1]


def test_membership_in_an_empty_list_costs_nothing_under_any_cap() -> None:
    heavy = "x" * 16_000  # weight 1,000
    for cap in (0, 5, 10**6):
        assert prims.COST[Op.LIST_CONTAINS]((make_list([]), heavy), cap) == 0


_MASK = (1 << 64) - 1
_P1, _P2, _P5 = 11400714785074694791, 14029467366897019727, 2870177450012600261


def _pairs_with_one_hash(n: int) -> list[tuple[int, int]]:
    """``n`` keys ``(a, b)`` of Ints whose Python hashes are all equal: CPython's tuple hash is
    xxHash's round over the items' hashes with no secret, and an int below 2**61 - 1 hashes to
    itself, so the round can be run backwards from a chosen result to the ``b`` for each ``a``."""

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (64 - r))) & _MASK

    def after(acc: int, lane: int) -> int:
        return rotl((acc + lane * _P2) & _MASK, 31) * _P1 & _MASK

    target = after(after(_P5, 1), 2)  # the state hash((1, 2)) ends in, before its length
    keys: list[tuple[int, int]] = []
    a = 3
    while len(keys) < n:
        first = after(_P5, a)
        x = target * pow(_P1, -1, 1 << 64) & _MASK
        x = ((x >> 31) | (x << 33)) & _MASK  # undo the rotation
        lane = (x - first) * pow(_P2, -1, 1 << 64) & _MASK
        if lane < (1 << 61) - 1:
            keys.append((a, lane))
        a += 1
    return keys


def test_keys_chosen_to_collide_in_pythons_hash_do_not_collide_in_a_map() -> None:
    """Such keys would make every insert into a map, and the decoder's duplicate check, walk
    all the others (a 380 KB input took 99 s to decode). Indexed by ``safe_key``, they spread."""
    keys = _pairs_with_one_hash(300)
    assert len({hash(k) for k in keys}) == 1 == len({hash(k) for k in [*keys, (1, 2)]})
    assert len({hash(safe_key(k)) for k in keys}) == len(keys)
    t = MapT(Prod(INT, INT), INT)
    m = OMap((k, i) for i, k in enumerate(keys))
    again = value_decoder(t, bounded=True)(encode_value(m, t))
    assert again == m and [again[k] for k in keys] == list(range(len(keys)))
    with pytest.raises(DecodeError, match="a map key appears twice"):
        entry = encode_value((keys[5], 0), Prod(Prod(INT, INT), INT))
        value_decoder(t)(uleb(2) + entry + entry)


def test_equality_pays_for_the_pairs_it_compares() -> None:
    """A record of 1,024 Ints is 1,023 pairs: comparing two such records costs that, not 0,
    so a machine comparing wide records runs out of fuel in proportion to the work."""
    wide: Any = 0
    for i in range(1, 1024):
        wide = (wide, i)
    assert prims.weight(wide) == 1023
    assert prims.weight((1, ())) == 1  # an injection: a Bool
    assert prims.weight(make_list([(0, ()), (1, ())])) == 2 + 2
    assert prims.COST[Op.EQUAL]((wide, wide)) == 1023
