"""The persistent vector behaves as a Python list, across the sizes where the trie grows."""

from __future__ import annotations

import gc
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.lang import prims
from hotswap.lang.persistent import OMap
from hotswap.lang.terms import Op
from hotswap.lang.vector import PVector

#: Sizes around the trie's boundaries: one leaf, the first level full, the second level full.
SIZES = [0, 1, 31, 32, 33, 64, 1055, 1056, 1057, 33823, 33824, 33825]


@pytest.mark.parametrize("n", SIZES)
def test_built_and_appended_vectors_hold_the_same_elements(n: int) -> None:
    built = PVector(range(n))
    appended: PVector[int] = PVector()
    for i in range(n):
        appended = appended.append(i)
    assert len(built) == len(appended) == n
    assert list(built) == list(appended) == list(range(n))
    assert built == appended
    if n:
        assert built[n - 1] == appended[-1] == n - 1
        assert built[0] == appended[-n] == 0


@pytest.mark.parametrize("n", [33, 1057, 33825])
def test_set_changes_one_element_and_leaves_the_old_version_intact(n: int) -> None:
    v = PVector(range(n))
    for i in (0, 31, 32, n // 2, n - 33, n - 1):
        w = v.set(i, -1)
        assert w[i] == -1 and v[i] == i
        assert sum(1 for a, b in zip(v, w, strict=True) if a != b) == 1
    assert v.set(-1, 7)[n - 1] == 7


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(), max_size=80),
    st.lists(
        st.tuples(st.sampled_from(["append", "set", "slice"]), st.integers(-90, 90), st.integers()),
        max_size=40,
    ),
)
def test_operations_agree_with_a_python_list(
    start: list[int], ops: list[tuple[str, int, int]]
) -> None:
    v, model = PVector(start), list(start)
    for op, i, x in ops:
        if op == "append":
            v, model = v.append(x), [*model, x]
        elif op == "set":
            if -len(model) <= i < len(model):
                v = v.set(i, x)
                model = model.copy()
                model[i] = x
            else:
                with pytest.raises(IndexError):
                    v.set(i, x)
        else:
            assert list(v[i : i + x % 50]) == model[i : i + x % 50]
        assert list(v) == model and len(v) == len(model)
    assert all(x in v for x in model)
    assert v == PVector(model) and pickle.loads(pickle.dumps(v)) == v


def test_a_new_version_of_a_big_vector_is_cheap_for_the_garbage_collector() -> None:
    """The trie's nodes are tuples: a new version adds a handful of objects to the collector's
    youngest generation, not one object that traverses a million elements."""
    big = PVector(range(1_000_000))
    gc.collect()
    before = len(gc.get_objects(generation=0))
    newer = big.set(500_000, -1).append(1)
    added = len(gc.get_objects(generation=0)) - before
    assert newer[500_000] == -1 and big[500_000] == 500_000
    assert added < 20


def test_map_keys_chosen_to_collide_in_32_bits_do_not_collide_in_the_index() -> None:
    """``i * (2**32 + 1)`` hashes to a value whose two 32-bit halves are equal: a trie that
    folds hashes to 32 bits would put them all in one bucket. The index salts every key."""
    keys = [i * 4294967297 for i in range(2000)]
    m = OMap((k, i) for i, k in enumerate(keys))
    low_bits = {hash(salted) & 0xFFFFFFFF for salted in m._index}
    assert len(low_bits) > 1990
    assert [m.get(k) for k in keys[:5]] == [0, 1, 2, 3, 4] and m.get(-1) is None


def test_membership_in_a_list_pays_for_the_size_of_what_it_compares() -> None:
    small, big = "x", "y" * 16 * 100
    xs = PVector([big] * 50)
    assert prims.COST[Op.LIST_CONTAINS]((xs, small)) == 50
    assert prims.COST[Op.LIST_CONTAINS]((xs, big)) == 1 + 100  # found at once, weight 100
    assert prims.COST[Op.LIST_CONTAINS]((xs, "z" * 1600)) == 50 * 101
    assert prims.COST[Op.LIST_SORT](xs) == 50 * 6 * 101
