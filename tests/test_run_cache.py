"""``.run`` keeps the states it converted or returned (``hotswap.names.convert``,
:func:`~hotswap.names.convert.machine_runner`): a state given again, the same object and
unchanged, is not converted again. Nothing of that may be observable: every result equals the
plain function's, a state changed in place (a dict or list in it, or a field set by force) is
converted again, and no dict or list handed out is one handed out before or one passed in."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.dsl.annotations import schema_of_type
from hotswap.errors import ValueTypeError
from hotswap.examples import cart
from hotswap.lang.persistent import OMap, make_list
from hotswap.names.convert import CACHE_ELEMENTS, CACHE_SLOTS, machine_runner
from hotswap.names.schema import Field, RecordSchema


def _lines(n: int) -> dict[str, cart.Line]:
    return {f"sku-{i}": cart.Line(f"item {i}", 100 + i, 1 + i % 3) for i in range(n)}


def _runner() -> Any:
    """A cart runner of its own, whose kept states are only this test's."""
    m = cart.cart_sm
    c = m.compiled
    assert m.loaded.machine is not None
    return machine_runner(c.input, c.state, c.output, m.loaded.function(m.loaded.machine.step))


def _kept(run: Any) -> list[Any]:
    """The states the runner keeps, most recently used first."""
    return [entry[0] for entry in run.__globals__["_h"][0] if len(entry) > 1]


Command = cart.AddItem | cart.RemoveItem | cart.SetQty | cart.Checkout
INPUTS: list[Command] = [
    cart.AddItem("sku-3", "item 3", 103, 2),
    cart.SetQty("sku-3", 1),
    cart.AddItem("sku-new", "new", 250, 1),
    cart.RemoveItem("sku-new"),
    cart.AddItem("sku-2", "item 2", 102, -1),
]


def _same_as_plain(run: Any, inp: Any, state: Any) -> tuple[Any, Any]:
    expected = cart.cart_sm(inp, state)
    got = run(inp, state)
    assert got == expected
    return got  # type: ignore[no-any-return]


def test_a_state_given_again_is_kept_and_the_results_are_the_plain_functions() -> None:
    run = _runner()
    state = cart.Cart(_lines(10))
    first = _same_as_plain(run, cart.SetQty("sku-3", 5), state)
    assert any(k is state for k in _kept(run)) and any(k is first[0] for k in _kept(run))
    for inp in [cart.SetQty("sku-4", 2), cart.RemoveItem("sku-1"), cart.RemoveItem("nope")]:
        new, _ = _same_as_plain(run, inp, state)
        assert new.lines is not state.lines
        assert all(new.lines[k] is state.lines[k] for k in new.lines if k not in ("sku-4",))


def test_a_loop_threading_the_state_through_agrees_with_the_plain_function() -> None:
    run = _runner()
    state = plain = cart.Cart(_lines(10))
    inputs = INPUTS
    handed_out: list[dict[str, cart.Line]] = [state.lines]
    for inp in inputs * 4:
        new, out = run(inp, state)
        plain, plain_out = cart.cart_sm(inp, plain)
        assert (new, out) == (plain, plain_out)
        assert all(new.lines is not d for d in handed_out)  # a new dict every time
        handed_out.append(new.lines)
        state = new
    assert _kept(run)[0] is state


def test_a_returned_dict_changed_in_place_is_converted_again() -> None:
    run = _runner()
    state, _ = run(cart.SetQty("sku-3", 5), cart.Cart(_lines(10)))
    assert _kept(run)[0] is state
    state.lines["sku-3"] = cart.Line("changed", 7, 9)  # a new value
    _same_as_plain(run, cart.SetQty("sku-4", 2), state)
    del state.lines["sku-5"]  # a key less
    _same_as_plain(run, cart.SetQty("sku-4", 2), state)
    state.lines["sku-x"] = cart.Line("x", 1, 1)  # a key more
    _same_as_plain(run, cart.SetQty("sku-4", 2), state)
    line = state.lines.pop("sku-0")  # the same entries in another order
    state.lines["sku-0"] = line
    new, _ = _same_as_plain(run, cart.SetQty("sku-4", 2), state)
    assert list(new.lines) == list(cart.cart_sm(cart.SetQty("sku-4", 2), state)[0].lines)


def test_a_given_dict_changed_in_place_after_a_run_is_converted_again() -> None:
    run = _runner()
    lines = _lines(10)
    state = cart.Cart(lines)
    _same_as_plain(run, cart.SetQty("sku-3", 5), state)
    assert any(k is state for k in _kept(run))
    lines.clear()
    _, out = _same_as_plain(run, cart.AddItem("a", "a", 1, 1), state)
    assert out == cart.Total(1, 1, "1xa")


def test_a_field_set_by_force_or_an_equal_state_is_converted_again() -> None:
    run = _runner()
    state = cart.Cart(_lines(10))
    _same_as_plain(run, cart.SetQty("sku-3", 5), state)
    object.__setattr__(state, "lines", _lines(3))  # frozen, but not against this
    _same_as_plain(run, cart.SetQty("sku-1", 5), state)
    equal = cart.Cart(_lines(3))  # equal, another object: nothing kept is used
    _same_as_plain(run, cart.SetQty("sku-1", 5), equal)
    replaced = cart.Cart(dict(state.lines))
    replaced.lines["sku-1"] = cart.Line("item 1", 101, 2)  # an equal line, another object
    new, _ = _same_as_plain(run, cart.RemoveItem("sku-0"), replaced)
    assert new.lines["sku-1"] is replaced.lines["sku-1"]


@dataclasses.dataclass(frozen=True)
class _Bag:
    label: str
    items: list[int]
    tags: dict[str, bool]


def _echo(pair: Any) -> Any:
    """A step whose new state and output are both the state it was given."""
    return pair[1], pair[1]


def test_a_list_changed_in_place_is_converted_again() -> None:
    s = schema_of_type(_Bag)
    run = machine_runner(schema_of_type(int), s, s, _echo)
    bag = _Bag("a", [1, 2, 3], {"x": True})
    new, out = run(0, bag)
    assert new == out == bag and new.items is not bag.items and out.items is not new.items
    assert _kept(run)[0] is new
    new.items.append(4)  # the state returned, changed in place
    again, out = run(0, new)
    assert again == out == _Bag("a", [1, 2, 3, 4], {"x": True})
    again.items[0] = 9  # the same length
    assert run(0, again)[1] == _Bag("a", [9, 2, 3, 4], {"x": True})
    again.tags["x"] = False  # the other container
    assert run(0, again)[1] == _Bag("a", [9, 2, 3, 4], {"x": False})
    object.__setattr__(again, "label", "b")  # a field of a value that cannot change, replaced
    assert run(0, again)[1] == _Bag("b", [9, 2, 3, 4], {"x": False})
    given = _Bag("c", [1], {})
    assert run(0, given)[1] == given
    given.items.append(2)
    assert run(0, given)[1] == _Bag("c", [1, 2], {})


def test_only_a_few_states_are_kept_and_none_larger_than_the_bound() -> None:
    run = _runner()
    states = [cart.Cart(_lines(3)) for _ in range(CACHE_SLOTS + 2)]
    for state in states:
        _same_as_plain(run, cart.RemoveItem("nope"), state)
    kept = _kept(run)
    assert len(kept) == CACHE_SLOTS
    s = schema_of_type(_Bag)
    bag_run = machine_runner(schema_of_type(int), s, s, _echo)
    big = _Bag("big", list(range(CACHE_ELEMENTS)), {"x": True})  # one more than the bound
    new, out = bag_run(0, big)
    assert new == out == big and _kept(bag_run) == []
    big.items.append(1)
    assert bag_run(0, big)[1] == big
    at_bound = _Bag("ok", list(range(CACHE_ELEMENTS - 1)), {"x": True})
    new, _ = bag_run(0, at_bound)
    assert _kept(bag_run) == [new, at_bound]


def test_threads_running_at_once_each_get_the_plain_functions_results() -> None:
    run = _runner()
    failures: list[BaseException] = []
    inputs = INPUTS
    shared = cart.Cart(_lines(10))

    def work(seed: int) -> None:
        try:
            state = plain = cart.Cart(_lines(5 + seed))
            for round_ in range(60):
                inp = inputs[(round_ + seed) % len(inputs)]
                new, out = run(inp, state)
                plain, plain_out = cart.cart_sm(inp, plain)
                assert (new, out) == (plain, plain_out)
                assert run(inp, shared) == cart.cart_sm(inp, shared)
                if round_ % 7 == seed % 7:  # someone changes a state it got back
                    new.lines[f"t{seed}"] = cart.Line("t", 1, 1)
                    plain.lines[f"t{seed}"] = cart.Line("t", 1, 1)
                state = new
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[0]


def test_a_state_the_walker_converts_is_not_kept() -> None:
    """A ``str`` subclass in the state: the compiled conversion hands the state to the walker,
    and nothing of it is kept (its copy was never converted)."""

    class Text(str):
        pass

    run = _runner()
    lines = _lines(4)
    lines["odd"] = cart.Line(Text("odd"), 1, 1)
    state = cart.Cart(lines)
    new, _ = _same_as_plain(run, cart.SetQty("sku-3", 5), state)
    assert all(k is not state for k in _kept(run))
    assert type(new.lines["odd"].name) is str


@dataclasses.dataclass(frozen=True)
class _Sorted:
    items: list[int]

    def __post_init__(self) -> None:
        self.items.sort()  # what it is made of is not what it holds


def test_a_state_its_class_changes_as_it_is_made_is_not_kept_as_returned() -> None:
    """``run`` returns ``_Sorted([3, 1, 2])`` holding ``[1, 2, 3]``: that state given back is
    converted, not taken for the core value it was made of."""
    calls: list[int] = []

    def step(pair: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            return make_list([3, 1, 2]), make_list([])
        return pair[1], pair[1]  # the state, as it was given, is the output

    items = schema_of_type(list[int])  # the DSL refuses such a class: a schema made by hand
    s = RecordSchema("_Sorted", (Field("items", items),), _Sorted)
    run = machine_runner(schema_of_type(int), s, items, step)
    new, _ = run(0, _Sorted([]))
    assert new.items == [1, 2, 3]
    assert all(k is not new for k in _kept(run))  # kept as given, converted, only
    assert run(0, new)[1] == [1, 2, 3]


# --- a dict that comes back by difference ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Item:
    name: str
    n: int


@dataclasses.dataclass(frozen=True)
class _Shop:
    items: dict[str, _Item]
    tally: dict[int, int]
    label: str


_KEYS = st.sampled_from(["a", "b", "c", "d", "é", "x" * 20])
#: (kind, key, value): what the step below does to the state (and :func:`_apply` in Python).
_OPS = st.tuples(st.integers(0, 8), _KEYS, st.integers(-3, 3))


def _core_step(pair: Any) -> Any:
    """A step written on core values: each kind of change a step can make to a map."""
    (kind, (key, value)), (items, (tally, label)) = pair
    first = next(iter(items.keys()), None)
    if kind == 0:
        items = items.set(key, (key, value))
    elif kind == 1:
        items = items.delete(key)
    elif kind == 2 and key in items:  # out and in again: the same value, last
        items = items.delete(key).set(key, items[key])
    elif kind == 3 and first is not None:  # the same value under another key
        items = items.set(key, items[first])
    elif kind == 4:
        tally = tally.set(value % 3, value)
    elif kind == 5:
        label = key
    elif kind == 6:  # every entry again, in the other order
        items = OMap(list(items.items())[::-1])
    elif kind == 7:
        items = OMap(list(items.items()) + [(k + "!", (k, 1)) for k in list(items.keys())[:30]])
    new = (items, (tally, label))
    return new, new


def _apply(op: tuple[int, str, int], shop: _Shop) -> _Shop:
    kind, key, value = op
    items, tally, label = dict(shop.items), dict(shop.tally), shop.label
    first = next(iter(items), None)
    if kind == 0:
        items[key] = _Item(key, value)
    elif kind == 1:
        items.pop(key, None)
    elif kind == 2 and key in items:
        items[key] = items.pop(key)
    elif kind == 3 and first is not None:
        items[key] = items[first]
    elif kind == 4:
        tally[value % 3] = value
    elif kind == 5:
        label = key
    elif kind == 6:
        items = dict(list(items.items())[::-1])
    elif kind == 7:
        items = {**items, **{k + "!": _Item(k, 1) for k in list(items)[:30]}}
    return _Shop(items, tally, label)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_OPS, st.integers(0, 5)), max_size=40))
def test_a_dict_coming_back_by_difference_is_the_one_python_makes(
    ops: list[tuple[tuple[int, str, int], int]],
) -> None:
    """Threaded through ``run`` (sometimes changed in place, or replaced by an equal copy, on
    the way), the state is what the same changes make in Python, in the same order, in dicts
    never handed out before; an entry no change touched is the object it was."""
    s = schema_of_type(_Shop)
    run = machine_runner(schema_of_type(tuple[int, str, int]), s, s, _core_step)
    state = expected = _Shop({"a": _Item("a", 0)}, {}, "")
    handed_out: list[object] = []
    for op, how in ops:
        if how == 0:  # the state returned, changed in place
            state.items["z"] = _Item("z", 9)
            expected = dataclasses.replace(expected, items={**expected.items, "z": _Item("z", 9)})
        elif how == 1:  # an equal state, another object
            state = _Shop(dict(state.items), dict(state.tally), state.label)
        given_items = dict(state.items)
        new, out = run(op, state)
        expected = _apply(op, expected)
        assert new == out == expected
        assert list(new.items) == list(expected.items) and list(new.tally) == list(expected.tally)
        assert all(type(v) is _Item for v in new.items.values())
        for d in (new.items, new.tally, out.items, out.tally):
            assert all(d is not h for h in handed_out) and d is not state.items
            handed_out.append(d)
        if how != 0:  # (an entry set in place to an equal value may come back as the old one)
            touched = {op[1]} if op[0] in (0, 3) else set(new.items) if op[0] == 7 else set()
            for k, v in new.items.items():  # untouched entries are the objects they were
                if k not in touched and k in given_items:
                    assert v is given_items[k]
        state = new


@dataclasses.dataclass(frozen=True)
class _Kinds:
    lines: dict[str, cart.Line]
    names: dict[int, str]
    counts: list[int]
    words: list[str]


def test_a_state_given_back_unchanged_is_the_core_value_kept() -> None:
    """Given back as ``run`` returned it, a state is not converted again: the step gets the
    very core value it made, whether the kept state is told unchanged by its items' identity
    (ints, which a ``bool`` would equal) or by equality (texts)."""
    seen: list[Any] = []

    def step(pair: Any) -> Any:
        seen.append(pair[1])
        return pair[1], pair[1]

    s = schema_of_type(_Kinds)
    run = machine_runner(schema_of_type(int), s, s, step)
    state = _Kinds({"a": cart.Line("a", 1, 2)}, {1: "x", 2: "y"}, [1, 2, 3], ["p", "q"])
    for _ in range(3):
        state, _ = run(0, state)
    assert seen[1] is seen[0] and seen[2] is seen[0]
    state.counts[0] = True  # an equal item of another type: converted again, and refused
    with pytest.raises(ValueTypeError):
        run(0, state)


def test_a_state_the_step_gives_back_is_a_new_one_made_of_what_was_kept() -> None:
    """A refusal gives back the state it was given: ``run`` makes a new state of the kept
    entry, equal to the plain function's, sharing no dict with the state given, and keeps it;
    a kept state changed in place is converted, not made of its stale entry, also when it is
    now too large to keep."""
    seen: list[Any] = []
    m = cart.cart_sm
    c, step = m.compiled, m.loaded.function(m.loaded.machine.step)  # type: ignore[union-attr]

    def recording(pair: Any) -> Any:
        seen.append(pair[1])
        return step(pair)

    run = machine_runner(c.input, c.state, c.output, recording)
    refusal = cart.AddItem("sku-2", "item 2", 102, -1)
    state = cart.Cart(_lines(10))
    new, out = _same_as_plain(run, refusal, state)
    assert isinstance(out, cart.Refused)
    assert new is not state and new.lines is not state.lines
    assert all(new.lines[k] is state.lines[k] for k in state.lines)
    assert _kept(run)[0] is new
    again, _ = _same_as_plain(run, refusal, new)
    assert seen[1] is seen[0] and again.lines is not new.lines  # told unchanged, not converted
    new.lines["sku-3"] = cart.Line("changed", 7, 9)  # the state returned, changed in place
    changed, _ = _same_as_plain(run, refusal, new)
    assert changed.lines["sku-3"] == cart.Line("changed", 7, 9)
    new.lines.update(_lines(CACHE_ELEMENTS + 1))  # and now too large to keep
    large, _ = _same_as_plain(run, refusal, new)
    assert large.lines == new.lines and len(large.lines) == CACHE_ELEMENTS + 1
    assert all(k is not large for k in _kept(run))


@pytest.mark.parametrize("slots", [1, 2, CACHE_SLOTS])
def test_the_states_kept_are_as_many_as_the_slots(
    monkeypatch: pytest.MonkeyPatch, slots: int
) -> None:
    """However many slots a runner is generated with, it holds that many entries: one more
    state pushes the oldest out, and each result is still the plain function's."""
    monkeypatch.setattr("hotswap.names.convert.CACHE_SLOTS", slots)
    run = _runner()
    states = [cart.Cart(_lines(n)) for n in range(1, slots + 3)]
    for state in states:
        _same_as_plain(run, cart.SetQty("sku-0", 2), state)
        _same_as_plain(run, cart.RemoveItem("nope"), state)  # given back: made of the entry
        assert len(run.__globals__["_h"][0]) == slots
    assert all(k is not states[0] for k in _kept(run))  # pushed out long since
