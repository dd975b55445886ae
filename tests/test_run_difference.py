"""``.run``'s dict coming back by difference (``hotswap.names.convert``) and the
module cache found by its bytes (``hotswap.cam.loaded``): what ``.run`` returns is what the
plain function returns (equal, of the same types, dicts in the same order, every dict new),
whatever was done to the states on the way; the cache's three indexes stay one."""

from __future__ import annotations

import dataclasses
import importlib
import random
import threading
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.cam import loaded
from hotswap.cam.loaded import (
    cache_usage,
    cost,
    is_loaded,
    load_module,
    preload,
    release,
    set_cache_bytes,
)
from hotswap.client import Client
from hotswap.dsl import machine
from hotswap.dsl.annotations import schema_of_type
from hotswap.errors import ValueTypeError
from hotswap.examples import handbuilt
from hotswap.lang.persistent import SMALL, OMap
from hotswap.names.convert import _diffable, machine_runner
from hotswap.names.schema import from_core, to_core
from served import Served
from test_module_cache import _padded, small_cache  # noqa: F401 - small_cache: the module cache's fixture, used by every test here (autouse)

# --- a machine whose state has a dict of each kind ------------------------------------------


@dataclass(frozen=True)
class Item:
    name: str
    n: int


@dataclass(frozen=True)
class Inner:
    n: int


@dataclass(frozen=True)
class Outer:
    inner: Inner
    tag: str


@dataclass(frozen=True)
class Op:
    kind: int
    key: str
    n: int


@dataclass(frozen=True)
class Many:
    items: dict[str, Item]
    tally: dict[int, int]
    label: str
    flags: dict[str, bool]
    opt: dict[str, int | None]
    pairs: dict[int, tuple[int, str]]
    nested: dict[str, Outer]
    count: int


def _empty() -> Many:
    return Many({}, {}, "", {}, {}, {}, {}, 0)


@machine(init=Many({}, {}, "", {}, {}, {}, {}, 0))
def many(op: Op, s: Many) -> tuple[Many, int]:
    items = dict(s.items)
    tally = dict(s.tally)
    flags = dict(s.flags)
    opt = dict(s.opt)
    pairs = dict(s.pairs)
    nested = dict(s.nested)
    label = s.label
    k = op.key
    if op.kind == 0:
        items[k] = Item(k, op.n)
    elif op.kind == 1:
        items.pop(k, None)
    elif op.kind == 2:  # out and in again: last
        if k in items:
            v = items[k]
            del items[k]
            items[k] = v
    elif op.kind == 3:  # the first entry's record under another key
        for key in list(items.keys()):
            items[k] = items[key]
            break
    elif op.kind == 4:
        tally[op.n % 3] = op.n
    elif op.kind == 5:
        label = k
    elif op.kind == 6:  # every entry again, in the other order
        items = {key: items[key] for key in reversed(list(items.keys()))}
    elif op.kind == 7:  # past the small-map threshold
        for i in range(40):
            items[k + str(i)] = Item(k, i)
    elif op.kind == 8:  # back to a few
        items = {key: items[key] for key in list(items.keys())[:3]}
    elif op.kind == 9:
        flags[k] = op.n > 0
    elif op.kind == 10:
        if op.n > 0:
            opt[k] = op.n
        else:
            opt[k] = None
    elif op.kind == 11:
        pairs[op.n] = (op.n, k)
    elif op.kind == 12:
        nested[k] = Outer(Inner(op.n), k)
    elif op.kind == 13:
        if k in nested:
            nested[k + "x"] = nested[k]
    elif op.kind == 14:
        items.clear()
    elif op.kind == 15:
        flags.pop(k, None)
        pairs.pop(op.n, None)
        opt.pop(k, None)
    elif op.kind == 16:  # the same values, computed again
        tally = {key: tally[key] + 0 for key in tally}
    elif op.kind == 17:
        for i in range(40):
            tally[i] = i * 1000
    elif op.kind == 18:  # a large map shrinking one entry at a time
        for t in list(tally.keys())[:6]:
            del tally[t]
    new = Many(items, tally, label, flags, opt, pairs, nested, s.count + 1)
    return new, len(items)


FIELDS = ("items", "tally", "flags", "opt", "pairs", "nested")
KEYS = ("a", "b", "c", "é", "中文", "x" * 20, "a0")


def _same(a: Any, b: Any, path: str = "value") -> None:
    """``a == b`` with the same types all the way down and dicts in the same order."""
    assert type(a) is type(b), (path, a, b)
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
            assert type(ka) is type(kb), (path, ka, kb)
            _same(va, vb, f"{path}[{ka!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    else:
        assert a == b, (path, a, b)


def _containers(v: Any) -> Iterator[object]:
    """The dicts and lists in ``v``."""
    if isinstance(v, dict):
        yield v
        for x in v.values():
            yield from _containers(x)
    elif isinstance(v, list):
        yield v
        for x in v:
            yield from _containers(x)
    elif isinstance(v, tuple):
        for x in v:
            yield from _containers(x)
    elif dataclasses.is_dataclass(v):
        for f in dataclasses.fields(v):
            yield from _containers(getattr(v, f.name))


def _mutate(how: int, field: str, pick: int, s: Many) -> None:
    """Change the state ``s`` in place (a field set by force, a dict changed)."""
    d: dict[Any, Any] = getattr(s, field)
    key = list(d)[pick % len(d)] if d else None
    if how == 0 and key is not None:  # the same entries in another order
        d[key] = d.pop(key)
    elif how == 1:
        d.clear()
    elif how == 2 and key is not None:  # an equal value, another object
        v = d[key]
        if dataclasses.is_dataclass(v):
            d[key] = replace(v)  # type: ignore[type-var]
        elif isinstance(v, tuple):
            d[key] = tuple(list(v))
        elif type(v) is int:
            d[key] = int(str(v))
    elif how == 3 and key is not None:  # another value
        d[key] = {
            "items": Item("zz", 99),
            "tally": 12345,
            "flags": not d[key],
            "opt": None if d[key] is not None else 7,
            "pairs": (5, "q"),
            "nested": Outer(Inner(5), "q"),
        }[field]
    elif how == 4 and key is not None:
        del d[key]
    elif how == 5:  # frozen, but not against this
        object.__setattr__(s, field, dict(d))


def _thread(steps: list[tuple[int, int, int, int, int, int]], shared: Many | None) -> None:
    """The state threaded through ``many.run`` and changed on the way, against the plain
    function on the very same states; every dict handed out is new."""
    state = _empty()
    handed: list[object] = []
    for kind, key, n, how, field, pick in steps:
        if how < 6:
            _mutate(how, FIELDS[field], pick, state)
        elif how == 6:  # an equal state, another object
            state = replace(state)
        given = {f: dict(getattr(state, f)) for f in FIELDS}
        op = Op(kind, KEYS[key], n)
        expected = many(op, state)
        got = many.run(op, state)
        _same(got, expected)
        assert all(getattr(state, f) == given[f] for f in FIELDS)  # the state given, unchanged
        made = list(_containers(got))
        assert len({id(d) for d in made}) == len(made)
        for d in made:
            assert all(d is not h for h in handed)
            assert all(d is not getattr(state, f) for f in FIELDS)
        handed += made
        if shared is not None:
            _same(many.run(op, shared), many(op, shared))
        state = got[0]


_STEPS = st.lists(
    st.tuples(
        st.integers(0, 19),
        st.integers(0, len(KEYS) - 1),
        st.one_of(st.integers(-3, 3), st.integers(257, 2**40)),
        st.integers(0, 12),  # 0-5: a change in place, 6: an equal state, else none
        st.integers(0, len(FIELDS) - 1),
        st.integers(0, 50),
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(_STEPS)
def test_a_state_of_every_kind_of_dict_comes_back_as_the_plain_function_makes_it(
    steps: list[tuple[int, int, int, int, int, int]],
) -> None:
    """Records, ints, bools, optional ints, tuples and nested records as the values; str keys
    of non-ASCII text and int keys; maps growing past 32 entries and shrinking back; states
    changed in place (order, clear, equal and unequal values, keys deleted, fields set by
    force) or replaced by equal ones between calls."""
    _thread(steps, None)


def test_threads_threading_their_states_and_sharing_one_agree_with_the_plain_function() -> None:
    shared, _ = many.run(Op(0, "a", 1), _empty())
    shared, _ = many.run(Op(4, "a", 300), shared)
    failures: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        steps = [
            (
                rng.randrange(20),
                rng.randrange(len(KEYS)),
                rng.randrange(-3, 4),
                rng.randrange(13),
                rng.randrange(len(FIELDS)),
                rng.randrange(50),
            )
            for _ in range(80)
        ]
        try:
            _thread(steps, shared)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[0]


def test_a_state_the_walker_converts_then_the_state_it_returns() -> None:
    """A ``str`` subclass in a dict that comes back by difference: the walker converts the
    state (nothing to compare with: the dict comes back whole, of plain ``str``), and the state
    returned, given again, comes back by difference from it."""

    class Text(str):
        __slots__ = ()

    state = Many({"a": Item(Text("a"), 1)}, {1: 1}, "", {Text("é"): True}, {}, {}, {}, 0)
    new, _ = many.run(Op(5, "x", 0), state)
    assert type(new.items["a"].name) is str and type(next(iter(new.flags))) is str
    for op in [Op(0, "b", 2), Op(9, "é", -1), Op(2, "a", 0), Op(5, "y", 0)]:
        expected = many(op, new)
        got = many.run(op, new)
        _same(got, expected)
        new = got[0]


def test_only_a_dict_of_own_keys_and_at_most_one_record_deep_comes_back_by_difference() -> None:
    diffable = [dict[str, Item], dict[int, int], dict[str, bool], dict[str, int | None]]
    whole = [dict[str, Outer], dict[str, tuple[int, Item]], dict[bool, int], dict[str, Item | None]]
    assert all(_diffable(schema_of_type(t)) for t in diffable)
    assert not any(_diffable(schema_of_type(t)) for t in whole)
    assert _diffable(schema_of_type(dict[int, tuple[int, str]]))


# --- hand-written steps: a map the step was not given ---------------------------------------


@dataclass(frozen=True)
class Shop:
    items: dict[str, Item]
    other: dict[str, Item]
    label: str


def _swap(pair: Any) -> Any:
    """The input's map as ``items``, and the two maps of the state swapped into ``other``."""
    inp, (items, (other, label)) = pair
    new = (inp, (items, label))
    if len(inp) == 0:  # an empty input: the state's two maps swapped
        new = (other, (items, label))
    return new, new


def _swap_plain(inp: dict[str, Item], s: Shop) -> Shop:
    return Shop(s.other, s.items, s.label) if not inp else Shop(inp, s.items, s.label)


def test_a_step_returning_the_inputs_map_or_the_states_other_map() -> None:
    shop_schema = schema_of_type(Shop)
    run = machine_runner(schema_of_type(dict[str, Item]), shop_schema, shop_schema, _swap)
    same = Item("a", 1)
    state = Shop({"a": same, "b": Item("b", 2)}, {"a": Item("a", 1), "c": Item("c", 3)}, "l")
    rng = random.Random(5)
    for _ in range(60):
        inp = {}
        if rng.random() < 0.6:
            inp = {k: rng.choice([same, Item(k, rng.randrange(3))]) for k in rng.sample("abcd", 2)}
        expected = _swap_plain(inp, state)
        new, out = run(inp, state)
        _same(new, expected)
        _same(out, expected)
        assert new.items is not inp and new.items is not state.other
        assert all(new.items[k] is inp[k] for k in inp)  # the input's records, as in Python
        state = new


def test_a_map_grown_past_the_small_threshold_and_deleted_back_down() -> None:
    """A map of more than :data:`SMALL` entries stays large as entries go, until a rebuild:
    comparing a large map with a small one, or two large ones, converts it whole."""

    def step(pair: Any) -> Any:
        (kind, key), (items, rest) = pair
        items = items.set(key, (key, len(key))) if kind == 0 else items.delete(key)
        new = (items, rest)
        return new, new

    s = schema_of_type(Shop)
    run = machine_runner(schema_of_type(tuple[int, str]), s, s, step)
    state = Shop({}, {}, "")
    keys = [f"k{i}" for i in range(SMALL + 8)]
    for kind, key in [(0, k) for k in keys] + [(1, k) for k in keys[::-1]] + [(0, "z")]:
        before = dict(state.items)
        if kind == 0:
            before[key] = Item(key, len(key))
        else:
            del before[key]
        state, _ = run((kind, key), state)
        _same(state.items, before)
    assert state.items == {"z": Item("z", 1)}
    assert isinstance(to_core(schema_of_type(dict[str, Item]), state.items), OMap)


# --- bugs -----------------------------------------------------------------------------------


def test_a_tuple_subclass_in_a_dict_comes_back_a_plain_tuple_whatever_the_maps_size() -> None:
    """BUG: a tuple-valued dict's entry that the step left as it was comes back as the very
    object given, a ``namedtuple`` here, when the map has at most 32 entries, but as a plain
    ``tuple`` (what converting it gives, and what ``.run`` gave before) when it has more: the
    difference reuses a Python value the compiled encoder accepted by ``isinstance``, which is
    not the value converting it back makes."""
    pair = namedtuple("pair", "n text")  # the subclass is the point
    schema = schema_of_type(dict[int, tuple[int, str]])
    assert type(from_core(schema, to_core(schema, {1: pair(1, "x")}))[1]) is tuple
    for size in (1, SMALL + 8):
        pairs: dict[int, tuple[int, str]] = {i: (i, "y") for i in range(2, size + 1)}
        pairs[1] = pair(1, "x")
        new, _ = many.run(Op(5, "label", 0), Many({}, {}, "", {}, {}, pairs, {}, 0))
        assert type(new.pairs[1]) is tuple, (size, type(new.pairs[1]))


def test_a_kept_state_changed_in_place_to_an_equal_value_of_another_type_is_noticed() -> None:
    """BUG (of the state cache, 5b11aad, before this change): a kept state is told unchanged by
    ``==`` with its copy, and ``True == 1``: an int set to ``True`` in place is not noticed, so
    ``.run`` takes a state it refuses when converted, and returns the ``1`` it had."""
    state, _ = many.run(Op(4, "a", 1), _empty())  # tally {1: 1}, kept
    state.tally[1] = True
    with pytest.raises(ValueTypeError, match="expected int, got True"):
        many.run(Op(5, "b", 0), Many({}, {1: True}, "", {}, {}, {}, {}, 1))
    with pytest.raises(ValueTypeError, match="expected int, got True"):
        many.run(Op(5, "b", 0), state)


# --- the module cache -----------------------------------------------------------------------


def _module(start: int, tag: bytes, size: int = 10) -> bytes:
    """A counter from ``start`` (its identity) with a custom section (not part of it)."""
    return _padded(tag, size, start)


def _consistent() -> None:
    """The cache's indexes hold the same modules, the small ones by their bytes."""
    cached = [entry[0] for entry in loaded._cache.values()]
    assert sorted(map(id, loaded._by_object.values())) == sorted(map(id, cached))
    assert {id(m) for m in loaded._by_content.values()} == {
        id(m) for m in cached if len(m.data) <= 1 << 20
    }
    assert all(loaded._by_content[m.data] is m for m in cached if len(m.data) <= 1 << 20)
    assert all(loaded._by_object[id(m.data)] is m for m in cached)


def test_the_indexes_agree_through_loads_replacements_and_evictions() -> None:
    rng = random.Random(3)
    datas = [
        _module(start, tag, rng.randrange(10, 300_000))
        for start in range(6)
        for tag in (b"a", b"b")
    ]
    for _ in range(150):
        data = rng.choice(datas)
        how = rng.randrange(5)
        if how == 0:
            load_module(bytes(bytearray(data)))  # equal bytes, another object
        elif how == 1:
            load_module(bytearray(data))  # type: ignore[arg-type]
        elif how == 2:
            set_cache_bytes(rng.choice([0, 300_000, 1 << 20]))
        else:
            module = load_module(data)
            kept = cost(module) <= loaded._cache_limit
            assert module.data == data and is_loaded(data) is kept
            assert (load_module(bytes(bytearray(data))) is module) is kept
        _consistent()


def test_a_module_of_one_identity_with_another_section_is_found_only_by_its_own_bytes() -> None:
    one, other = _module(1, b"one"), _module(1, b"other")
    a = load_module(one)
    assert not is_loaded(bytes(bytearray(other)))
    b = load_module(bytes(bytearray(other)))
    assert b is not a and b.custom["pad"] != a.custom["pad"] and cache_usage()[0] == 1
    assert not is_loaded(one) and load_module(one) is not a  # replaced under its identity
    _consistent()


def test_a_module_preloaded_from_equal_bytes_is_the_cached_one_and_kept_once() -> None:
    data = _module(2, b"p")
    module = load_module(data)
    copy = bytes(bytearray(data))
    preload(copy)
    assert load_module(copy) is module
    release(copy, keep=True)
    assert cache_usage()[0] == 1 and load_module(bytes(bytearray(data))) is module
    set_cache_bytes(0)  # let go of it
    set_cache_bytes(1 << 20)
    again = bytes(bytearray(data))
    preload(again)
    assert load_module(again) is not module
    release(again, keep=True)
    assert load_module(bytes(bytearray(data))) is load_module(again)
    _consistent()


def test_threads_loading_the_same_small_module_at_once() -> None:
    data = _module(3, b"t", 50_000)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(30):
                assert load_module(bytes(bytearray(data))).data == data
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[0]
    assert cache_usage()[0] == 1
    _consistent()


def test_is_loaded_says_what_load_module_does_for_a_bytes_subclass() -> None:
    """BUG (minor): ``is_loaded`` of a ``bytes`` subclass of a small cached module's bytes
    says no, while ``load_module`` of it returns the cached module at once (``_small`` takes
    only exact ``bytes``, and ``is_loaded`` no longer works the identity out for the others)."""

    class Bytes(bytes):
        __slots__ = ()

    data = _module(4, b"s")
    module = load_module(data)
    assert load_module(Bytes(data)) is module
    assert is_loaded(Bytes(data))


# --- the keyed-instance bench ---------------------------------------------------------------


def test_the_keyed_bench_sends_an_input_to_every_key_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BUG (minor): ``bench.nodes.pipelined`` sends ``total // window`` whole windows, so the
    keyed bench drops the keys after the last whole window (and fails with an IndexError on
    fewer keys than a window), where it sent them all before."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent))  # ``bench`` is at the root
    bench_instances = importlib.import_module("bench.bench_instances")
    keys = [1, 2, 3, 4, 5]
    with Served(tmp_path / "a", {"counter": handbuilt.counter_module}, trace="off") as node:
        assert bench_instances._pipelined(node.address, keys, window=4) > 0
        with Client(node.address) as client:
            page = client.instances("counter")
    assert sorted(page.keys) == sorted(f"user-{k}" for k in keys)
