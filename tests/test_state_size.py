"""The state-size limit: a state whose size is above ``MAX_STATE_BYTES`` traps ``too_large``.

A node checks the size of every new state (docs/bytecode.md, section 11.3): its encoded size,
with text that is not all ASCII at four bytes per code point. Lists and maps remember their
size once measured and keep it through updates, so the check costs what a step changed, not
the size of the state: ``state_size`` must therefore be exactly the size the spec defines, for
every value and after every update. Here the spec's definition is written out again, walking
the type, and compared with the implementation, which looks at the value alone.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotswap.cam.build import machine_module
from hotswap.cam.encoding import sleb, uleb
from hotswap.cam.loaded import load, max_size
from hotswap.cam.values import decode_value, encode_value
from hotswap.errors import Trap
from hotswap.lang.check import MAX_STATE_BYTES
from hotswap.lang.persistent import EMPTY_LIST, EMPTY_MAP, OMap, make_list, state_size
from hotswap.lang.terms import FST, SND, Empty, Fanout, Lit, Op, Prim, compose
from hotswap.lang.types import INT, STR, UNIT, IntT, ListT, MapT, Prod, StrT, Sum, Type, UnitT
from strategies import data_types, data_values


def spec_size(v: Any, t: Type) -> int:
    """docs/bytecode.md, section 11.3, "State size", by the type."""
    match t:
        case UnitT():
            return 0
        case IntT():
            return len(sleb(v))
        case StrT():
            n = len(v) if all(ord(c) < 128 for c in v) else 4 * len(v)
            return len(uleb(n)) + n
        case Prod(left, right):
            return spec_size(v[0], left) + spec_size(v[1], right)
        case Sum(left, right):
            return 1 + spec_size(v[1], right if v[0] else left)
        case ListT(elem):
            return len(uleb(len(v))) + sum(spec_size(x, elem) for x in v)
        case MapT(key, value):
            entries = sum(spec_size(k, key) + spec_size(x, value) for k, x in v.items())
            return len(uleb(len(v))) + entries
    raise AssertionError(t)


def _all_ascii(v: Any) -> bool:
    if type(v) is str:
        return v.isascii()
    if type(v) is tuple:
        return all(_all_ascii(x) for x in v)
    if isinstance(v, OMap):
        return all(_all_ascii(k) and _all_ascii(x) for k, x in v.items())
    if type(v) is int:
        return True
    return all(_all_ascii(x) for x in v)


@given(st.data())
def test_state_size_is_the_size_the_spec_defines(data: st.DataObject) -> None:
    """And the length of the encoding exactly, for values whose text is all ASCII."""
    t = data.draw(data_types())
    v = data.draw(data_values(t))
    raw = encode_value(v, t)
    assert state_size(v) == spec_size(v, t) >= len(raw)
    again = decode_value(raw, t)
    assert state_size(again) == spec_size(v, t)
    if _all_ascii(v):
        assert spec_size(v, t) == len(raw)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 40), st.text(max_size=200)),
        st.tuples(st.just("delete"), st.integers(0, 40)),
        st.tuples(st.just("update"), st.dictionaries(st.integers(0, 40), st.text(max_size=3))),
    ),
    max_size=120,
)


@given(ops, st.booleans())
def test_a_measured_map_keeps_its_size_exact_through_updates(
    script: list[Any], decoded: bool
) -> None:
    """Across the small and large forms (at most 32 entries, or more), and ints whose LEB128
    width changes."""
    t = MapT(INT, STR)
    m = OMap((i * 1000, "x" * i) for i in range(30))
    if decoded:
        m = decode_value(encode_value(m, t), t)  # measured afresh: decoding records nothing
    state_size(m)
    for op in script:
        if op[0] == "set":
            m = m.set(op[1] * 99, op[2])
        elif op[0] == "delete":
            m = m.delete(op[1] * 99)
        else:
            m = m.update(OMap(op[1].items()))
        assert m._size == spec_size(m, t)
    assert state_size(m) == spec_size(m, t)


@given(
    st.lists(
        st.one_of(
            st.integers(-(2**63), 2**63 - 1), st.tuples(st.integers(0, 200), st.integers(-5, 5))
        )
    )
)
def test_a_measured_list_keeps_its_size_exact_through_updates(script: list[Any]) -> None:
    t = ListT(Prod(INT, STR))
    xs = make_list([(i, "a" * i) for i in range(3)])
    state_size(xs)
    for op in script:
        if isinstance(op, int):
            xs = xs.append((op, str(op)))
        elif len(xs):
            xs = xs.set(op[0] % len(xs), (op[1], "é" * op[1] if op[1] > 0 else ""))
        assert xs._size == spec_size(xs, t)


def test_collections_of_zero_width_elements_measure_without_walking() -> None:
    units = make_list([()] * 1_000_000)
    assert state_size(units) == 3 == len(encode_value(units, ListT(UNIT)))


def test_the_shared_empty_collections_never_remember_a_size() -> None:
    """Every list and map a step builds from nothing starts from these two: if they remembered
    their size, every append of every step would measure what it appends."""
    assert state_size(EMPTY_LIST) == 1 and state_size(EMPTY_MAP) == 1
    assert EMPTY_LIST._size == -1 and EMPTY_MAP._size == -1
    built = EMPTY_LIST.append("é" * 1000)
    assert built._size == -1 and state_size(built) == 1 + 2 + 4000


def _sharing_machine() -> Any:
    """Input ``List Int``, state ``List (List Int)``: each step makes the state ``[xs, xs]``,
    one list shared twice, twice its size encoded."""
    nested = ListT(ListT(INT))
    twice = compose(
        Fanout(compose(Fanout(Empty(nested), FST), Prim(Op.LIST_APPEND)), FST),
        Prim(Op.LIST_APPEND),
    )  # (xs, _) -> [xs, xs]
    step = Fanout(twice, Lit(0))
    return machine_module(ListT(INT), nested, INT, Empty(nested), step)


def test_a_step_whose_state_would_pass_the_limit_traps_and_changes_nothing() -> None:
    module = load(_sharing_machine())
    state = module.init()
    big = make_list(range(1000, 1000 + 100_000))  # 300 KB encoded; the state holds it twice
    for limit in (None, 700_000):
        new, out = module.step(big, state, state_limit=limit)
        assert len(new) == 2 and new[0] is new[1] and out == 0
    with pytest.raises(Trap) as trapped:
        module.step(big, state, state_limit=500_000)
    assert trapped.value.kind == "too_large"
    assert "more than 500000 bytes" in str(trapped.value)
    assert MAX_STATE_BYTES == 1 << 28  # the default every node uses


@given(data_types().flatmap(lambda t: st.tuples(st.just(t), data_values(t))))
def test_max_size_bounds_every_value_of_a_type_without_text_or_collections(
    typed: tuple[Type, Any],
) -> None:
    """``max_size`` is what lets a step skip measuring its state: it must bound the size of
    every value of its type, and be infinite for a type with text, a list or a map in it."""
    t, v = typed
    bound = max_size(t)
    assert state_size(v) <= bound
    assert (bound == math.inf) == _has_data(t)


def _has_data(t: Type) -> bool:
    match t:
        case StrT() | ListT() | MapT():
            return True
        case Prod(left, right) | Sum(left, right):
            return _has_data(left) or _has_data(right)
    return False


def test_the_widest_ints_reach_max_size() -> None:
    pair = Prod(INT, Sum(UNIT, INT))
    assert max_size(pair) == 21
    assert state_size((-(1 << 63), (1, (1 << 63) - 1))) == 21


def test_a_stepper_measures_a_state_only_when_the_limit_can_be_reached() -> None:
    """An Int state takes 10 bytes at most: a limit of 10 is never reached and not measured;
    a limit of 2 is, and traps as ``step`` does once the count needs three bytes."""
    counter = load(machine_module(UNIT, INT, INT, Lit(0), _count_up()))
    assert counter.stepper(1000, 10) is counter.stepper(1000, 10)  # made once, kept
    for fuel in range(1000, 1040):  # a caller of many budgets keeps a few steps, not all
        assert counter.stepper(fuel, 10)((), 1) == (2, 2)
    assert 0 < len(counter._steppers) <= 16
    assert counter.stepper(1000, 10)((), (1 << 62)) == ((1 << 62) + 1, (1 << 62) + 1)
    assert counter.stepper(1000, 2)((), 8190) == (8191, 8191)  # two bytes: -2**13..2**13-1
    for step in (counter.stepper(1000, 2), lambda i, s: counter.step(i, s, "vm", 1000, 2)):
        with pytest.raises(Trap) as trapped:
            step((), 8191)
        assert trapped.value.kind == "too_large"


def _count_up() -> Any:
    """``(_, n) -> (n + 1, n + 1)``."""
    plus = compose(Fanout(SND, Lit(1)), Prim(Op.ADD))
    return Fanout(plus, plus)
