"""The state-size limit: a state that would encode in more than ``MAX_STATE_BYTES`` traps.

A node checks the size of every new state (docs/bytecode.md, section 11.3). Lists and maps
remember their encoded size once measured or decoded and keep it through updates, so the check
costs what a step changed, not the size of the state: ``encoded_size`` must therefore be exactly
the length of the encoding, for every value and after every update.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotswap.cam.build import machine_module
from hotswap.cam.loaded import load
from hotswap.cam.values import decode_value, encode_value
from hotswap.errors import Trap
from hotswap.lang.check import MAX_STATE_BYTES
from hotswap.lang.persistent import EMPTY_LIST, EMPTY_MAP, OMap, encoded_size, make_list
from hotswap.lang.terms import FST, Empty, Fanout, Lit, Op, Prim, compose
from hotswap.lang.types import INT, STR, UNIT, ListT, MapT, Prod
from strategies import data_types, data_values


@given(st.data())
def test_encoded_size_is_the_length_of_the_encoding(data: st.DataObject) -> None:
    t = data.draw(data_types())
    v = data.draw(data_values(t))
    raw = encode_value(v, t)
    assert encoded_size(v) == len(raw)
    again = decode_value(raw, t)  # decoded collections know their size from the bytes
    assert encoded_size(again) == len(raw)


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
        m = decode_value(encode_value(m, t), t)
    else:
        encoded_size(m)
    for op in script:
        if op[0] == "set":
            m = m.set(op[1] * 99, op[2])
        elif op[0] == "delete":
            m = m.delete(op[1] * 99)
        else:
            m = m.update(OMap(op[1].items()))
        known = m._size
        assert known == len(encode_value(m, t))
    assert encoded_size(m) == len(encode_value(m, t))


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
    encoded_size(xs)
    for op in script:
        if isinstance(op, int):
            xs = xs.append((op, str(op)))
        elif len(xs):
            xs = xs.set(op[0] % len(xs), (op[1], "é" * op[1] if op[1] > 0 else ""))
        assert xs._size == len(encode_value(xs, t))


def test_collections_of_zero_width_elements_measure_without_walking() -> None:
    units = make_list([()] * 1_000_000)
    assert encoded_size(units) == 3 == len(encode_value(units, ListT(UNIT)))
    assert encoded_size(EMPTY_LIST) == 1 and encoded_size(EMPTY_MAP) == 1


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
