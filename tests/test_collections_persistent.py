"""Persistent values behave as Python's own: ``OMap`` as ``dict``, the list and text primitives
as ``list`` and ``str`` (indices, negative indices, slices, traps for what Python raises).

The plain Python function is the DSL's oracle, so any difference here is a difference between
a machine and its source.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.cam.values import decode_value, encode_value
from hotswap.errors import Trap
from hotswap.lang import prims
from hotswap.lang.ints import INT_MAX, INT_MIN
from hotswap.lang.persistent import EMPTY_LIST, EMPTY_MAP, OMap, PVector, make_list
from hotswap.lang.terms import Op
from hotswap.lang.types import INT, MapT

# --- OMap against dict ----------------------------------------------------------------------

keys = st.one_of(st.integers(0, 40), st.sampled_from(["a", "b", "", "\u00e9"]))
Op_ = tuple[Any, ...]
operations = st.one_of(
    st.tuples(st.just("set"), keys, st.integers(-5, 5)),
    st.tuples(st.just("set"), keys, st.integers(-5, 5)),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("update"), st.lists(st.tuples(keys, st.integers(-5, 5)), max_size=6)),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("churn"), keys, st.integers(1, 40)),  # holes, until the slots compact
)


def same(m: OMap, d: dict[Any, Any], probes: list[Any]) -> None:
    """Everything observable of ``m`` is as ``d``'s: order, length, membership, lookups."""
    assert list(m.items()) == list(d.items())
    assert list(m.keys()) == list(d.keys())
    assert list(m.values()) == list(d.values())
    assert list(m) == list(d)
    assert len(m) == len(d)
    assert (len(m) == 0) == (not d)
    for k in probes:
        assert (k in m) == (k in d)
        assert m.get(k, "missing") == d.get(k, "missing")
        assert m.get(k) == d.get(k)
        if k in d:
            assert m[k] == d[k]
        else:
            with pytest.raises(KeyError):
                m[k]


def apply(m: OMap, d: dict[Any, Any], op: Op_) -> tuple[OMap, dict[Any, Any]]:
    match op:
        case ("set", k, v):
            d = {**d, k: v}
            return m.set(k, v), d
        case ("delete", k):
            d = {key: v for key, v in d.items() if key != k}
            return m.delete(k), d
        case ("update", pairs):
            other = dict(pairs)
            return m.update(OMap(pairs)), d | other
        case ("churn", k, n):  # set and delete k n times: each round leaves a hole
            for i in range(n):
                m = m.set(k, i).delete(k)
            d = {key: v for key, v in d.items() if key != k}
            return m, d
    return m, d


@settings(max_examples=150, deadline=None)
@given(st.lists(operations, max_size=120), st.lists(keys, max_size=6))
def test_omap_behaves_as_dict_on_operation_sequences(ops: list[Op_], probes: list[Any]) -> None:
    """After every operation the map is the dict; earlier versions never change."""
    m, d = EMPTY_MAP, dict[Any, Any]()
    snapshots: list[tuple[OMap, dict[Any, Any]]] = []
    for op in ops:
        if op[0] == "snapshot":
            snapshots.append((m, dict(d)))
            continue
        m, d = apply(m, d, op)
        same(m, d, probes + ([op[1]] if op[0] in ("set", "delete") else []))
    for old, old_dict in snapshots:  # persistence: nothing later touched them
        same(old, old_dict, probes)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(keys, st.integers(-3, 3)), max_size=12),
    st.lists(st.tuples(keys, st.integers(-3, 3)), max_size=12),
    st.randoms(use_true_random=False),
)
def test_omap_equality_is_dict_equality_whatever_the_order(
    a: list[tuple[Any, int]], b: list[tuple[Any, int]], rnd: Any
) -> None:
    """Equal exactly when the dicts are equal; reordering the entries keeps equality (and
    changes the encoding, which keeps the order)."""
    da, db = dict(a), dict(b)
    ma, mb = OMap(a), OMap(b)
    assert list(ma.items()) == list(da.items())  # OMap(pairs) is dict(pairs), order included
    assert (ma == mb) == (da == db)
    assert (ma != mb) == (da != db)
    shuffled = list(da.items())
    rnd.shuffle(shuffled)
    assert OMap(shuffled) == ma
    t = MapT(INT, INT) if all(isinstance(k, int) for k in da) else None
    if t is not None:
        raw = encode_value(OMap(shuffled), t)
        assert list(decode_value(raw, t).items()) == shuffled
    assert ma != dict(a)  # a map equals only a map
    assert ma != list(a)


def test_many_deletes_compact_the_slots_and_keep_the_order() -> None:
    """Deleting most of 1,000 entries compacts the slot vector; order and contents stay
    those of a dict, and every version along the way stays intact."""
    m, d = EMPTY_MAP, dict[int, int]()
    for i in range(1000):
        m, d = m.set(i, -i), {**d, i: -i}
    full = m
    versions: list[tuple[OMap, dict[int, int]]] = []
    for i in range(0, 1000, 3):
        m = m.delete(i)
        del d[i]
        if i % 150 == 0:
            versions.append((m, dict(d)))
    for i in range(1, 1000, 3):
        m = m.delete(i)
        del d[i]
    m = m.set(1, 11).set(2, 22)  # a new key goes last, an old one stays in place
    d[1] = 11
    d[2] = 22
    same(m, d, [0, 1, 2, 5, 998, 999, 1000])
    assert len(m._slots) <= 2 * len(m) + 32  # compacted: no unbounded growth of holes
    assert list(full.items()) == [(i, -i) for i in range(1000)]
    for old, old_dict in versions:
        same(old, old_dict, [0, 3, 4, 999])
    emptied = full
    for i in range(1000):
        emptied = emptied.delete(i)
    assert emptied == EMPTY_MAP and len(emptied) == 0 and list(emptied.items()) == []
    assert emptied.set("x", 1) == OMap([("x", 1)])


def test_reinserting_a_deleted_key_puts_it_last_as_dict_does() -> None:
    m = OMap([("a", 1), ("b", 2), ("c", 3)]).delete("a").set("a", 4)
    d = {"a": 1, "b": 2, "c": 3}
    del d["a"]
    d["a"] = 4
    assert list(m.items()) == list(d.items()) == [("b", 2), ("c", 3), ("a", 4)]
    assert m.delete("zzz") is m  # deleting what is absent changes nothing


def test_merge_is_dict_union() -> None:
    """``d | e``: e's values win, the keys of d keep their places, e's new keys follow in e's
    order; MAP_MERGE is that, and charges one unit per entry of e."""
    d = {"a": 1, "b": 2, "c": 3}
    e = {"c": 30, "z": 26, "a": 10, "y": 25}
    merged = prims.IMPL[Op.MAP_MERGE]((OMap(d.items()), OMap(e.items())))
    assert list(merged.items()) == list((d | e).items())
    assert prims.COST[Op.MAP_MERGE]((OMap(d.items()), OMap(e.items()))) == len(e)


def test_omap_is_immutable_and_pickles_with_its_order() -> None:
    m = OMap([("b", 1), ("a", 2)])
    with pytest.raises(AttributeError, match="immutable"):
        m._index = None  # type: ignore[assignment]
    back = pickle.loads(pickle.dumps(m))
    assert list(back.items()) == [("b", 1), ("a", 2)]
    with pytest.raises(TypeError):
        hash(m)


# --- the list and text primitives against list and str --------------------------------------

indices = st.one_of(
    st.integers(-8, 8), st.sampled_from([INT_MIN, INT_MAX, INT_MIN + 1, -(2**62), 2**62])
)
elements = st.lists(st.integers(-3, 3), max_size=7)
texts = st.text(max_size=7)


def python(f: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("ok", f(*args))
    except IndexError:
        return ("index_error", None)


def prim(op: Op, arg: Any) -> tuple[str, Any]:
    try:
        result = prims.IMPL[op](arg)
    except Trap as t:
        return (t.kind, None)
    return ("ok", list(result) if isinstance(result, PVector) else result)


@settings(max_examples=200, deadline=None)
@given(elements, indices, indices)
def test_list_slicing_and_indexing_are_pythons(xs: list[int], i: int, j: int) -> None:
    v = make_list(xs)
    assert prim(Op.LIST_SLICE, (v, (i, j))) == ("ok", xs[i:j])
    assert isinstance(prims.IMPL[Op.LIST_SLICE]((v, (i, j))), PVector)
    assert prims.COST[Op.LIST_SLICE]((v, (i, j))) == len(xs[i:j])
    assert prim(Op.LIST_INDEX, (v, i)) == python(lambda: xs[i])

    def assign() -> list[int]:
        ys = list(xs)
        ys[i] = j
        return ys

    assert prim(Op.LIST_SET, (v, (i, j))) == python(assign)
    assert list(v) == xs  # the original is untouched


@settings(max_examples=200, deadline=None)
@given(texts, indices, indices)
def test_text_slicing_and_indexing_are_pythons(s: str, i: int, j: int) -> None:
    """Code points, not bytes: "\u00e9"[0] is one character."""
    assert prim(Op.STR_SLICE, (s, (i, j))) == ("ok", s[i:j])
    assert prim(Op.STR_INDEX, (s, i)) == python(lambda: s[i])
    assert prim(Op.STR_LEN, s) == ("ok", len(s))


@settings(max_examples=150, deadline=None)
@given(elements, elements, st.integers(-3, 3), st.integers(-4, 12), st.integers(-4, 12))
def test_other_list_primitives_are_pythons(
    xs: list[int], ys: list[int], x: int, a: int, b: int
) -> None:
    v, w = make_list(xs), make_list(ys)
    assert prim(Op.LIST_APPEND, (v, x)) == ("ok", [*xs, x])
    assert prim(Op.LIST_CONCAT, (v, w)) == ("ok", xs + ys)
    assert prim(Op.LIST_CONTAINS, (v, x)) == ("ok", (1, ()) if x in xs else (0, ()))
    assert prim(Op.LIST_SORT, v) == ("ok", sorted(xs))
    assert prim(Op.LIST_LEN, v) == ("ok", len(xs))
    assert prim(Op.RANGE, (a, b)) == ("ok", list(range(a, b)))
    assert prims.COST[Op.RANGE]((a, b)) == len(range(a, b))
    position = xs.index(x) + 1 if x in xs else len(xs)
    assert prims.COST[Op.LIST_CONTAINS]((v, x)) == position  # elements compared


@settings(max_examples=100, deadline=None)
@given(st.lists(texts, max_size=6), texts, texts, st.integers(INT_MIN, INT_MAX))
def test_text_primitives_are_pythons(words: list[str], s: str, t: str, n: int) -> None:
    truth = {True: (1, ()), False: (0, ())}
    assert prim(Op.LIST_SORT, make_list(words)) == ("ok", sorted(words))  # by code point
    assert prim(Op.STR_CONCAT, (s, t)) == ("ok", s + t)
    assert prim(Op.STR_CONTAINS, (s, t)) == ("ok", truth[t in s])
    assert prim(Op.STR_LT, (s, t)) == ("ok", truth[s < t])
    assert prim(Op.STR_LE, (s, t)) == ("ok", truth[s <= t])
    assert prim(Op.STR_GT, (s, t)) == ("ok", truth[s > t])
    assert prim(Op.STR_GE, (s, t)) == ("ok", truth[s >= t])
    assert prim(Op.INT_TO_STR, n) == ("ok", str(n))
    assert prim(Op.EQUAL, (s, t)) == ("ok", truth[s == t])


def test_map_primitives_are_dicts() -> None:
    d = {"b": 2, "a": 1}
    m = OMap(d.items())
    assert list(prims.IMPL[Op.MAP_KEYS](m)) == list(d.keys())
    assert list(prims.IMPL[Op.MAP_VALUES](m)) == list(d.values())
    assert list(prims.IMPL[Op.MAP_ITEMS](m)) == list(d.items())
    assert prims.IMPL[Op.MAP_GET]((m, "a")) == (1, 1)
    assert prims.IMPL[Op.MAP_GET]((m, "z")) == (0, ())
    assert prims.IMPL[Op.MAP_INDEX]((m, "b")) == 2
    with pytest.raises(Trap) as trap:
        prims.IMPL[Op.MAP_INDEX]((m, "z"))
    assert trap.value.kind == "missing_key"
    inserted = prims.IMPL[Op.MAP_INSERT]((m, ("a", 10)))
    assert list(inserted.items()) == list({**d, "a": 10}.items())
    assert list(prims.IMPL[Op.MAP_DELETE]((m, "b")).items()) == [("a", 1)]
    assert prims.IMPL[Op.MAP_CONTAINS]((m, "b")) == (1, ())
    assert prims.IMPL[Op.MAP_LEN](m) == 2


@pytest.mark.parametrize(
    ("op", "arg"),
    [
        (Op.LIST_APPEND, (make_list([1, 2, 3]), 4)),
        (Op.LIST_CONCAT, (make_list([1, 2]), make_list([3, 4]))),
        (Op.MAP_INSERT, (OMap([(1, 1), (2, 2), (3, 3)]), (4, 4))),
        (Op.MAP_MERGE, (OMap([(1, 1), (2, 2)]), OMap([(3, 3), (4, 4)]))),
        (Op.RANGE, (0, 4)),
    ],
)
def test_collections_past_the_limit_trap_too_large(
    op: Op, arg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the limit lowered to 3 elements, a fourth traps ``too_large``; at the limit (an
    update of an existing key included) nothing traps."""
    monkeypatch.setattr(prims, "MAX_ELEMENTS", 3)
    with pytest.raises(Trap) as trap:
        prims.IMPL[op](arg)
    assert trap.value.kind == "too_large"
    assert prims.IMPL[Op.MAP_INSERT]((OMap([(1, 1), (2, 2), (3, 3)]), (3, 0)))[3] == 0
    assert list(prims.IMPL[Op.RANGE]((0, 3))) == [0, 1, 2]


def test_text_past_the_limit_traps_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prims, "MAX_STR_LEN", 4)
    assert prims.IMPL[Op.STR_CONCAT](("ab", "cd")) == "abcd"
    with pytest.raises(Trap) as trap:
        prims.IMPL[Op.STR_CONCAT](("ab", "cde"))
    assert trap.value.kind == "too_large"


def test_empty_collections_are_shared_and_empty() -> None:
    assert len(EMPTY_LIST) == 0 and len(EMPTY_MAP) == 0
    assert make_list([]) == EMPTY_LIST
    assert OMap() == EMPTY_MAP
    assert EMPTY_MAP.set("k", 1).delete("k") is EMPTY_MAP  # the last delete gives the empty map


big_keys = st.one_of(st.integers(0, 300), st.tuples(st.integers(0, 40), st.booleans()))
big_ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), big_keys, st.integers(-5, 5)),
        st.tuples(st.just("delete"), big_keys),
        st.tuples(st.just("branch"), st.integers(0, 1000)),  # go on from an earlier version
    ),
    max_size=400,
)


@settings(max_examples=60, deadline=None)
@given(st.integers(33, 260), big_ops)
def test_large_maps_stay_dicts_through_rebuilds_on_any_version(start: int, ops: list[Any]) -> None:
    """Maps past SMALL entries, deleted from heavily (so rebuilds start, run and end), with
    changes made to earlier versions as well as the latest: every version is its dict, and
    the slots stay within a bound of the live entries."""
    m = OMap((i, i) for i in range(start))
    d = {i: i for i in range(start)}
    versions: list[tuple[OMap, dict[Any, Any]]] = [(m, dict(d))]
    for op in ops:
        if op[0] == "branch":
            m, d = versions[op[1] % len(versions)]
            d = dict(d)
            continue
        m, d = apply(m, d, op)
        versions.append((m, dict(d)))
        if m._small is None:
            assert len(m._slots) <= 3 * len(m) + 48, (len(m._slots), len(m))
    for old, old_dict in versions[:: max(1, len(versions) // 20)]:
        same(old, old_dict, [0, 1, 299, (3, True)])


def test_deleting_again_and_again_from_one_version_costs_what_one_delete_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A version one delete short of a rebuild, deleted from 2,000 times: each delete copies
    at most REBUILD_STEP slots, however large the map (no O(n) compaction per version)."""
    from hotswap.lang import persistent  # noqa: PLC0415 - to count its calls

    m = OMap((i, i) for i in range(6000))
    for i in range(0, 2000):
        m = m.delete(i)
    while m._next is None:  # the last version before a rebuild starts
        before, m = m, m.delete(next(iter(m.keys())))
    m = before
    assert m._next is None
    calls = 0
    salted = persistent.safe_key

    def counting(key: Any) -> Any:
        nonlocal calls
        calls += 1
        return salted(key)

    monkeypatch.setattr(persistent, "safe_key", counting)
    keys = list(m.keys())
    most = 0
    for k in keys[:2000]:
        calls = 0
        shorter = m.delete(k)
        most = max(most, calls)
        assert k not in shorter and len(shorter) == len(m) - 1
    assert most <= persistent.REBUILD_STEP + 2, most
