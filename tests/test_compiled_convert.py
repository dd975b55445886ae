"""Compiled conversions agree with the reference walkers: results, errors and Records.

``hotswap.names.convert`` compiles a schema's ``to_core``/``from_core`` into one generated
function each; ``hotswap.names.schema.to_core_reference``/``from_core_reference`` walk the
schema. On any value, good or bad, both must give the same result (same types all the way
down, not just ``==``) or raise the same exception with the same message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.dsl.annotations import schema_of_type
from hotswap.errors import ValueTypeError
from hotswap.examples import cart
from hotswap.lang.persistent import EMPTY_LIST, EMPTY_MAP, OMap, PVector, make_list
from hotswap.lang.types import IntT, ListT, MapT, Prod, StrT, Sum, Type, UnitT
from hotswap.names import convert
from hotswap.names.convert import (
    from_core_function,
    machine_runner,
    migration_runner,
    to_core_function,
    trusted_from_core_function,
)
from hotswap.names.schema import (
    BOOL_SCHEMA,
    INT_SCHEMA,
    NONE_SCHEMA,
    BoolSchema,
    DictSchema,
    Field,
    IntSchema,
    ListSchema,
    NoneSchema,
    Record,
    RecordSchema,
    Schema,
    StrSchema,
    TupleSchema,
    UnionSchema,
    _belongs,
    core_type,
    from_core,
    from_core_reference,
    to_core,
    to_core_reference,
)
from hotswap.names.section import decode_names, encode_names
from strategies import python_types, python_values, values
from test_names_collections import python_values as collection_values
from test_names_collections import schemas as collection_schemas

# --- outcomes, compared strictly ------------------------------------------------------------


def _tree(v: Any) -> Any:
    """``v`` with the type of every node spelled out (``True == 1`` must not hide a bug), and
    the order of every list and dict."""
    if isinstance(v, tuple | list | PVector):
        return (type(v), tuple(_tree(x) for x in v))
    if isinstance(v, dict | OMap):
        return (type(v), tuple((_tree(k), _tree(x)) for k, x in v.items()))
    if isinstance(v, Record):
        return (Record, v.record_name, tuple((k, _tree(x)) for k, x in v.record_fields.items()))
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return (type(v), tuple((f.name, _tree(getattr(v, f.name))) for f in dataclasses.fields(v)))
    return (type(v), v)


def _outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", _tree(fn()))
    except Exception as e:  # noqa: BLE001 - any exception is an outcome to compare
        return ("raise", type(e), str(e))


def _agree_to_core(s: Schema, v: object, path: str = "value") -> tuple[Any, ...]:
    expected = _outcome(lambda: to_core_reference(s, v, path))
    assert _outcome(lambda: to_core_function(s)(v, path)) == expected
    assert _outcome(lambda: to_core(s, v, path)) == expected  # first use: the walker
    assert _outcome(lambda: to_core(s, v, path)) == expected  # then compiled
    return expected


def _agree_from_core(s: Schema, v: object) -> tuple[Any, ...]:
    expected = _outcome(lambda: from_core_reference(s, v))
    assert _outcome(lambda: from_core_function(s)(v)) == expected
    assert _outcome(lambda: from_core(s, v)) == expected
    assert _outcome(lambda: from_core(s, v)) == expected
    if expected[0] == "ok":  # a well-typed value: the unchecked decoder agrees too
        assert _outcome(lambda: trusted_from_core_function(s)(v)) == expected
    return expected


def _classless(s: Schema) -> Schema:
    """``s`` as a names section gives it back: records known by name only."""
    return decode_names(encode_names({"state": s}))["state"]


# --- values that may be wrong anywhere ------------------------------------------------------

_JUNK_LIST: list[Any] = [
    2**63,
    -(2**63) - 1,
    True,
    False,
    0,
    1,
    None,
    "x",
    1.5,
    (),
    (1,),
    (1, 2),
    (0, ()),
]
_JUNK_LIST += [Record("X"), Record("Alpha"), Record("Beta", a=1)]
_JUNK_LIST += ["", "\ud800", b"x", [], [1], ["x"], {}, {"x": 1}, make_list([1]), EMPTY_MAP]
_JUNK = st.sampled_from(_JUNK_LIST)


def _hashable(v: object) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


_HASHABLE_JUNK = st.sampled_from([j for j in _JUNK_LIST if _hashable(j)])


def _maybe_bad(s: Schema, key: bool = False) -> st.SearchStrategy[Any]:
    """Python values of ``s``, now and then with junk (or a Record look-alike) somewhere
    (``key``: only junk that can key a dict)."""
    match s:
        case IntSchema() | BoolSchema() | NoneSchema():
            good = python_values(s)
        case StrSchema():
            good = st.text(max_size=4)
        case ListSchema(item):
            items = st.lists(_maybe_bad(item, key), max_size=3)
            good = items | items.map(tuple)
        case DictSchema(k, v):
            good = st.dictionaries(_maybe_bad(k, True), _maybe_bad(v, key), max_size=3)
        case TupleSchema(items):
            good = st.tuples(*(_maybe_bad(i, key) for i in items))
        case RecordSchema(name=name, fields=fields, cls=cls):
            kwargs = {f.name: _maybe_bad(f.schema, key) for f in fields}
            good = st.builds(lambda **kw: Record(name, **kw), **kwargs)
            if cls is not None:
                good = st.builds(cls, **kwargs) | good
        case UnionSchema(alternatives):
            good = st.one_of(*(_maybe_bad(a, key) for a in alternatives))
    return st.one_of(good, good, good, _HASHABLE_JUNK if key else _JUNK)


_CORE_JUNK_LIST: list[Any] = [2**63, -(2**63) - 1, True, None, "x", (), (2, ()), (True, ()), (0,)]
_CORE_JUNK_LIST += [(0, (), ()), [0, ()], (1.0, 5), (0, 1), (1, ()), (0, ())]
_CORE_JUNK_LIST += ["\udfff", [1], {}, {"x": 1}, EMPTY_LIST, make_list([True]), EMPTY_MAP]
_CORE_JUNK_LIST += [OMap([(1, 2)]), OMap([("x", ())])]
_CORE_JUNK = st.sampled_from(_CORE_JUNK_LIST)


_HASHABLE_CORE_JUNK = st.sampled_from([j for j in _CORE_JUNK_LIST if _hashable(j)])


def _maybe_bad_core(t: Type, key: bool = False) -> st.SearchStrategy[Any]:
    match t:
        case UnitT() | IntT():
            good = values(t)
        case Prod(left, right):
            good = st.tuples(_maybe_bad_core(left, key), _maybe_bad_core(right, key))
        case Sum(left, right):
            good = st.one_of(
                st.tuples(st.just(0), _maybe_bad_core(left, key)),
                st.tuples(st.just(1), _maybe_bad_core(right, key)),
            )
        case StrT():
            good = st.text(max_size=4)
        case ListT(elem):
            good = st.lists(_maybe_bad_core(elem, key), max_size=3).map(make_list)
        case MapT(k, v):
            entry = st.tuples(_maybe_bad_core(k, True), _maybe_bad_core(v, key))
            good = st.lists(entry, max_size=3).map(OMap)
    return st.one_of(good, good, good, _HASHABLE_CORE_JUNK if key else _CORE_JUNK)


schemas = python_types().map(schema_of_type)


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=25)
@given(st.data())
def test_compiled_conversions_agree_on_good_values(data: st.DataObject) -> None:
    s = data.draw(schemas)
    value = data.draw(python_values(s))
    outcome = _agree_to_core(s, value)
    assert outcome[0] == "ok"
    core = to_core_reference(s, value)
    assert _agree_from_core(s, core) == ("ok", _tree(value))


@settings(max_examples=25)
@given(st.data())
def test_compiled_conversions_agree_on_bad_values(data: st.DataObject) -> None:
    s = data.draw(schemas)
    value = data.draw(_maybe_bad(s))
    _agree_to_core(s, value, data.draw(st.sampled_from(["value", "input", "state"])))
    _agree_from_core(s, data.draw(_maybe_bad_core(core_type(s))))


@settings(max_examples=25)
@given(st.data())
def test_compiled_conversions_agree_on_other_schemas_values(data: st.DataObject) -> None:
    """A value of one type converted by another (the errors of a stale client)."""
    s, other = data.draw(schemas), data.draw(schemas)
    _agree_to_core(s, data.draw(python_values(other)))
    core = to_core_reference(other, data.draw(python_values(other)))
    _agree_from_core(s, core)


@settings(max_examples=25)
@given(st.data())
def test_records_known_by_name_agree(data: st.DataObject) -> None:
    """Names-section schemas: any dataclass or Record of the name and fields converts; values
    come back as Records (never instances of a class)."""
    with_classes = data.draw(schemas)
    s = _classless(with_classes)
    value = data.draw(python_values(with_classes))
    assert _agree_to_core(s, value)[0] == "ok"
    core = to_core_reference(s, value)
    back = _agree_from_core(s, core)
    stand_in = from_core_function(s)(core)
    assert back == ("ok", _tree(from_core_reference(s, core)))
    assert _agree_to_core(s, stand_in)[0] == "ok"  # Records convert back
    assert to_core_function(with_classes)(value, "value") == core
    _agree_to_core(s, data.draw(_maybe_bad(s)))


@given(st.data())
@settings(max_examples=25)
def test_machine_runner_converts_like_the_walkers(data: st.DataObject) -> None:
    """The fused run: input and state converted, the step's result converted back."""
    a, b = data.draw(schemas), data.draw(schemas)
    run = machine_runner(a, b, a, lambda pair: (pair[1], pair[0]))
    x, y = data.draw(python_values(a)), data.draw(python_values(b))
    assert _tree(run(x, y)) == _tree((y, x))
    bad = data.draw(_maybe_bad(a))
    expected = _outcome(lambda: to_core_reference(a, bad, "input"))
    if expected[0] == "ok":
        expected = _outcome(lambda: (y, from_core_reference(a, to_core_reference(a, bad))))
    assert _outcome(lambda: run(bad, y)) == expected
    bad_state = data.draw(_maybe_bad(b))
    expected = _outcome(lambda: to_core_reference(b, bad_state, "state"))
    if expected[0] == "ok":
        expected = _outcome(lambda: (from_core_reference(b, to_core_reference(b, bad_state)), x))
    assert _outcome(lambda: run(x, bad_state)) == expected
    migrate = migration_runner(b, b, lambda v: v)
    assert _tree(migrate(y)) == _tree(y)


def _core_mutations(v: Any) -> Any:
    """``v`` with one of its nodes replaced by core junk, every way."""
    yield from _CORE_JUNK_LIST
    if isinstance(v, tuple) and len(v) == 2:
        for m in _core_mutations(v[0]):
            yield (m, v[1])
        for m in _core_mutations(v[1]):
            yield (v[0], m)
    elif isinstance(v, PVector):
        for i, x in enumerate(v):
            for m in _core_mutations(x):
                yield v.set(i, m)
        yield list(v)
    elif isinstance(v, OMap):
        for k, x in v.items():
            for m in _core_mutations(x):
                yield v.set(k, m)
            for m in _core_mutations(k):
                if _hashable(m):
                    yield OMap([(m if key == k else key, y) for key, y in v.items()])
        yield dict(v.items())


def _python_mutations(s: Schema, v: Any) -> Any:
    """``v`` with one of its parts replaced by junk, every way (records as Records)."""
    yield from _JUNK_LIST
    match s:
        case TupleSchema(items):
            for i, item in enumerate(items):
                for m in _python_mutations(item, v[i]):
                    yield (*v[:i], m, *v[i + 1 :])
        case RecordSchema(name=name, fields=fields):
            values = {f.name: getattr(v, f.name) for f in fields}
            for f in fields:
                for m in _python_mutations(f.schema, values[f.name]):
                    yield Record(name, **{**values, f.name: m})
        case UnionSchema(alternatives):
            for alt in alternatives:
                if _belongs(alt, v):
                    yield from _python_mutations(alt, v)
                    break
        case ListSchema(item):
            for i, x in enumerate(v):
                for m in _python_mutations(item, x):
                    yield [*v[:i], m, *v[i + 1 :]]
            yield tuple(v)
        case DictSchema(key, value):
            entries = list(v.items())
            for i, (k, x) in enumerate(entries):
                for m in _python_mutations(value, x):
                    yield dict([*entries[:i], (k, m), *entries[i + 1 :]])
                for m in _python_mutations(key, k):
                    if _hashable(m):
                        yield dict([*entries[:i], (m, x), *entries[i + 1 :]])
            yield entries


@given(st.data())
@settings(max_examples=30)
def test_every_single_mutation_agrees(data: st.DataObject) -> None:
    """Each part of a good value replaced by junk in turn, on both sides."""
    s = data.draw(schemas)
    value = data.draw(python_values(s, small=True))
    by_name = _classless(s)
    for i, bad in enumerate(_python_mutations(s, value)):
        if i > 400:
            break
        _agree_to_core(s, bad)
        _agree_to_core(by_name, bad)
    for i, bad in enumerate(_core_mutations(to_core_reference(s, value))):
        if i > 400:
            break
        _agree_from_core(s, bad)


# --- str, list and dict ----------------------------------------------------------------------


@settings(max_examples=35, deadline=None)
@given(st.data())
def test_collections_agree_on_good_values(data: st.DataObject) -> None:
    s = data.draw(collection_schemas())
    value = data.draw(collection_values(s))
    assert _agree_to_core(s, value)[0] == "ok"
    core = to_core_reference(s, value)
    assert _agree_from_core(s, core) == ("ok", _tree(value))
    by_name = _classless(s)
    assert _agree_to_core(by_name, value)[0] == "ok"
    assert _agree_from_core(by_name, core)[0] == "ok"


@settings(max_examples=35, deadline=None)
@given(st.data())
def test_collections_agree_on_bad_values(data: st.DataObject) -> None:
    s = data.draw(collection_schemas())
    _agree_to_core(s, data.draw(_maybe_bad(s)), data.draw(st.sampled_from(["value", "state"])))
    _agree_to_core(_classless(s), data.draw(_maybe_bad(s)))
    _agree_from_core(s, data.draw(_maybe_bad_core(core_type(s))))


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_collections_agree_on_other_schemas_values(data: st.DataObject) -> None:
    s, other = data.draw(collection_schemas()), data.draw(collection_schemas())
    _agree_to_core(s, data.draw(collection_values(other)))
    _agree_from_core(s, to_core_reference(other, data.draw(collection_values(other))))


@given(st.data())
@settings(max_examples=30, deadline=None)
def test_every_single_mutation_of_collections_agrees(data: st.DataObject) -> None:
    s = data.draw(collection_schemas())
    value = data.draw(collection_values(s))
    by_name = _classless(s)
    for i, bad in enumerate(_python_mutations(s, value)):
        if i > 300:
            break
        _agree_to_core(s, bad)
        _agree_to_core(by_name, bad)
    for i, bad in enumerate(_core_mutations(to_core_reference(s, value))):
        if i > 300:
            break
        _agree_from_core(s, bad)


def test_deep_lists_and_dicts_compile() -> None:
    """Nesting of lists and dicts past the nesting limit gets functions of their own."""
    deep: Schema = INT_SCHEMA
    value: Any = 5
    for i in range(3 * convert._NEST_LIMIT):
        if i % 2:
            deep, value = ListSchema(deep), [value]
        else:
            deep, value = DictSchema(StrSchema(), deep), {"k": value}
    assert _agree_to_core(deep, value)[0] == "ok"
    core = to_core_reference(deep, value)
    assert _agree_from_core(deep, core) == ("ok", _tree(value))
    assert _agree_from_core(deep, make_list([1]))[0] == "raise"


# --- edges ------------------------------------------------------------------------------------


def _record(name: str, *fields: tuple[str, Schema]) -> RecordSchema:
    return RecordSchema(name, tuple(Field(n, f) for n, f in fields))


def test_deep_and_wide_schemas_compile() -> None:
    """Deeper than the nesting limit, unions wider than it, records with many fields."""
    deep: Schema = INT_SCHEMA
    for i in range(3 * convert._NEST_LIMIT):
        deep = UnionSchema((NONE_SCHEMA, _record(f"R{i}", ("inner", deep))))
    value: Any = 7
    for i in range(3 * convert._NEST_LIMIT):
        value = Record(f"R{i}", inner=value)
    core = _agree_to_core(deep, value)
    assert core[0] == "ok"
    assert _agree_from_core(deep, to_core_reference(deep, value))[0] == "ok"
    _agree_to_core(deep, Record("R0", inner=7))

    wide = UnionSchema(tuple(_record(f"A{i}", ("n", INT_SCHEMA)) for i in range(40)))
    for i in (0, 1, 20, 38, 39):
        assert _agree_to_core(wide, Record(f"A{i}", n=i))[0] == "ok"
        assert _agree_from_core(wide, to_core_reference(wide, Record(f"A{i}", n=i)))[0] == "ok"

    many = _record("Many", *((f"f{i}", BOOL_SCHEMA) for i in range(300)))
    big = Record("Many", **{f"f{i}": i % 3 == 0 for i in range(300)})
    assert _agree_to_core(many, big)[0] == "ok"
    assert _agree_from_core(many, to_core_reference(many, big))[0] == "ok"


@pytest.mark.parametrize("name", ["class", "record_name", "ﬁeld", "_fields", "x", "__debug__"])
def test_field_names_that_cannot_be_spliced(name: str) -> None:
    """Keywords, names NFKC would change, `__debug__` (which Python refuses to bind) and
    Record's own attributes go by the namespace."""
    s = UnionSchema((NONE_SCHEMA, _record("R", (name, INT_SCHEMA), ("y", BOOL_SCHEMA))))
    value = Record("R", **{name: 5, "y": True})
    assert _agree_to_core(s, value) == ("ok", _tree((1, (5, (1, ())))))
    assert _agree_from_core(s, (1, (5, (1, ())))) == ("ok", _tree(value))
    _agree_to_core(s, Record("R", **{name: True, "y": True}))


def test_errors_keep_their_messages() -> None:
    @dataclasses.dataclass(frozen=True)
    class Point:
        x: int
        z: bool

    s = schema_of_type(tuple[int, Point | None])
    for bad, message in [
        ((1, Point(1, 2)), "state[1].z: expected bool, got 2"),  # type: ignore[arg-type]
        ((2**63, None), "state[0]: 9223372036854775808 is outside the signed 64-bit range"),
        ((1, 2, 3), "state: expected tuple[int, Point | None], got (1, 2, 3)"),
        ((1, "p"), "state[1]: expected Point | None, got 'p'"),
    ]:
        for fn in (to_core_function(s), lambda v, p: to_core(s, v, p)):
            with pytest.raises(ValueTypeError) as info:
                fn(bad, "state")
            assert str(info.value) == message
    with pytest.raises(ValueTypeError, match=r"value\.snd: expected \(0, _\) or \(1, _\)"):
        from_core_function(s)((1, (2, ())))


def test_compiled_functions_are_cached_by_schema_and_classes() -> None:
    @dataclasses.dataclass(frozen=True)
    class Incr:
        pass

    with_class = schema_of_type(Incr | None)
    same = schema_of_type(Incr | None)
    classless = _classless(with_class)
    assert same == with_class == classless  # equality ignores the classes
    assert to_core_function(same) is to_core_function(with_class)
    assert from_core_function(classless) is not from_core_function(with_class)
    assert type(from_core_function(classless)((0, ()))) is Record
    assert type(from_core_function(with_class)((0, ()))) is Incr
    assert from_core_function(with_class)((1, ())) is None


# --- records that come back as themselves ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Line:
    name: str
    qty: int


@dataclasses.dataclass(frozen=True)
class _Other:
    name: str
    qty: int


@dataclasses.dataclass(frozen=True)
class _Holder:
    items: list[int]


def test_the_runner_gives_back_the_records_the_step_passed_through() -> None:
    """The cart's lines the step did not touch are the input's own objects, as they are from the
    plain function; the changed line is new, and equal to the plain function's."""
    lines = {f"sku-{i}": cart.Line(f"item {i}", 100 + i, 1) for i in range(10)}
    state = cart.Cart(lines)
    new, out = cart.cart_sm.run(cart.SetQty("sku-3", 5), state)
    assert (new, out) == cart.cart_sm(cart.SetQty("sku-3", 5), state)
    assert all(new.lines[k] is lines[k] for k in lines if k != "sku-3")
    assert new.lines["sku-3"] is not lines["sku-3"] and new.lines["sku-3"].qty == 5
    assert new.lines is not lines  # a dict is never shared: it could be changed
    refused, _ = cart.cart_sm.run(cart.RemoveItem("nope"), state)
    assert refused == state and all(refused.lines[k] is lines[k] for k in lines)


def _run(s_in: Schema, s_state: Schema, step: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    return machine_runner(s_in, s_state, s_state, step)


def test_a_record_comes_back_only_as_its_own_class_and_only_when_nothing_in_it_can_change() -> None:
    """Core values are shared (a one-field record of a small int is that int): a record noted
    on the way in comes back only where the same class is expected, and never when something
    in it could be changed (a list)."""
    line, other = schema_of_type(_Line), schema_of_type(_Other)
    same_core = lambda pair: (pair[0], pair[0])  # noqa: E731 - the state becomes the input
    run = _run(line, other, same_core)
    given_line = _Line("a", 1)
    new, _ = run(given_line, _Other("b", 2))
    assert type(new) is _Other and new == _Other("a", 1)
    run_same = _run(line, line, same_core)
    new, _ = run_same(given_line, _Line("b", 2))
    assert new is given_line
    holder = schema_of_type(_Holder)
    run_holder = _run(holder, holder, same_core)
    given_holder = _Holder([1, 2])
    new, _ = run_holder(given_holder, _Holder([]))
    assert new == given_holder and new is not given_holder and new.items is not given_holder.items


@dataclasses.dataclass(frozen=True, eq=False)
class _ByIdentity:
    n: int


def test_a_record_compared_by_identity_is_never_handed_back() -> None:
    """``eq=False``: two such records are different objects whatever they hold, so the plain
    function's new one must not come back as the input's."""
    s = schema_of_type(_ByIdentity)
    given = _ByIdentity(1)
    new, _ = _run(s, s, lambda pair: (pair[0], pair[0]))(given, _ByIdentity(2))
    assert new is not given and type(new) is _ByIdentity and new.n == 1


# --- records built as their classes build them ----------------------------------------------
#
# A decoder builds a record the way :func:`convert.construction` says gives what the walker's
# ``cls(**fields)`` gives: a dataclass's own ``__init__`` by filling the new object's ``__dict__``,
# other classes by calling them. Each class below stands for one way a class can differ.


@dataclasses.dataclass(frozen=True)
class _Plain:
    a: int
    b: str


@dataclasses.dataclass
class _Mutable:
    a: int
    b: str


class _Derived(_Plain):
    """A subclass that is not decorated again: its parent's generated ``__init__``."""


@dataclasses.dataclass(frozen=True)
class _PostInit:
    a: int
    b: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "seen", (self.a, self.b))


@dataclasses.dataclass(frozen=True)
class _OwnInit:
    a: int
    b: str

    def __init__(self, a: int, b: str) -> None:
        object.__setattr__(self, "a", a + 1)
        object.__setattr__(self, "b", b)


@dataclasses.dataclass(frozen=True, slots=True)
class _Slots:
    a: int
    b: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class _KeywordOnly:
    a: int
    b: str


@dataclasses.dataclass(frozen=True)
class _OwnKeywords:
    a: int
    b: str

    def __init__(self, *, b: str, a: int) -> None:
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "a", a)


@dataclasses.dataclass
class _Watched:
    a: int
    b: str

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        object.__setattr__(self, f"set_{name}", True)


class _Stored:
    """A data descriptor: the field's value goes elsewhere than ``__dict__['a']``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return 0 if obj is None else vars(obj)[self.slot]

    def __set__(self, obj: object, value: object) -> None:
        vars(obj)[self.slot] = value


@dataclasses.dataclass
class _Described:
    a: int = _Stored()  # type: ignore[assignment]
    b: str = ""


class _Meta(type):
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        made = super().__call__(*args, **kwargs)
        object.__setattr__(made, "via", "meta")
        return made


@dataclasses.dataclass(frozen=True)
class _WithMeta(metaclass=_Meta):
    a: int
    b: str


_CONSTRUCTIONS: dict[type, str] = {
    _Plain: "direct",
    _Mutable: "direct",
    _Derived: "direct",
    _PostInit: "positional",
    _OwnInit: "positional",
    _Slots: "positional",
    _KeywordOnly: "direct",
    _OwnKeywords: "keyword",
    _Watched: "positional",
    _Described: "positional",
    _WithMeta: "keyword",
}


def test_each_class_is_built_the_way_that_gives_what_calling_it_gives() -> None:
    for cls, how in _CONSTRUCTIONS.items():
        assert convert.construction(cls, ("a", "b")) == how, cls
    assert convert.construction(_Plain, ("b", "a")) != "direct"  # the fields in another order
    assert convert.construction(Record, ("a",)) == "keyword"  # not a dataclass; takes **fields


def _state(v: object) -> tuple[Any, ...]:
    """Everything an instance holds, in order: its class, its ``__dict__`` and its slots."""
    held = tuple(vars(v).items()) if hasattr(v, "__dict__") else ()
    slots = tuple((n, getattr(v, n)) for n in getattr(type(v), "__slots__", ()) if hasattr(v, n))
    return type(v), held, slots


@settings(max_examples=20)
@given(st.integers(-5, 5), st.text(max_size=3), st.sampled_from(sorted(_CONSTRUCTIONS, key=str)))
def test_decoded_records_are_what_calling_their_class_makes(a: int, b: str, cls: type) -> None:
    """Whatever the class: a decoded record holds exactly what ``cls(a=..., b=...)`` holds (its
    ``__post_init__``, ``__init__``, ``__setattr__``, descriptor or metaclass did their part),
    in a union, a list, a dict and through a runner as an output."""
    record = RecordSchema(cls.__name__, (Field("a", INT_SCHEMA), Field("b", StrSchema())), cls)
    expected = _state(cls(a=a, b=b))
    core = (a, b)
    assert _state(from_core_function(record)(core)) == expected
    assert _state(trusted_from_core_function(record)(core)) == expected
    assert _state(from_core_reference(record, core)) == expected
    either = UnionSchema((NONE_SCHEMA, record))
    assert _state(from_core_function(either)((1, core))) == expected
    many = ListSchema(DictSchema(StrSchema(), record))
    (got,) = from_core_function(many)(make_list([OMap([("k", core)])]))
    assert _state(got["k"]) == expected
    run = machine_runner(INT_SCHEMA, INT_SCHEMA, record, lambda pair: (pair[1], core))
    assert _state(run(0, 0)[1]) == expected


def test_records_known_by_name_are_built_as_record_builds_them() -> None:
    s = _classless(schema_of_type(_Line))
    got = from_core_function(s)(("x", 3))
    assert type(got) is Record and got == Record("_Line", name="x", qty=3)
    assert list(got.record_fields.items()) == [("name", "x"), ("qty", 3)]
    with pytest.raises(AttributeError, match="immutable"):
        got.name = "y"


def test_nothing_noted_before_a_value_went_to_the_walker_comes_back() -> None:
    """The compiled conversion refuses a ``str`` subclass (the walker copies its text), after
    it noted the lines before it: the runner starts over with the walker and forgets those
    notes, whose core values are gone (another value could take their place)."""

    class Text(str):
        pass

    lines = {f"sku-{i}": cart.Line(f"item {i}", 100 + i, 1) for i in range(5)}
    lines["odd"] = cart.Line(Text("odd"), 1, 1)
    state = cart.Cart(lines)
    new, out = cart.cart_sm.run(cart.SetQty("sku-3", 5), state)
    assert (new, out) == cart.cart_sm(cart.SetQty("sku-3", 5), state)
    assert type(new.lines["odd"].name) is str
    assert not any(new.lines[k] is lines[k] for k in lines)


# --- nothing is shared that either side could change -----------------------------------------


def _scramble(v: Any, seen: set[int] | None = None) -> None:
    """Change every list and dict reachable from ``v`` in place (records hold them too)."""
    seen = set() if seen is None else seen
    if id(v) in seen:
        return
    seen.add(id(v))
    if isinstance(v, list):
        for x in v:
            _scramble(x, seen)
        v.append("changed")
    elif isinstance(v, dict):
        for x in v.values():
            _scramble(x, seen)
        v.clear()
    elif isinstance(v, tuple):
        for x in v:
            _scramble(x, seen)
    elif dataclasses.is_dataclass(v) and not isinstance(v, type):
        for f in dataclasses.fields(v):
            _scramble(getattr(v, f.name), seen)
    elif isinstance(v, Record):
        for x in v.record_fields.values():
            _scramble(x, seen)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_values_converted_share_nothing_that_can_change(data: st.DataObject) -> None:
    """A value converted, then changed by its owner, leaves what it was converted to as it was,
    both ways and through a runner: its input and state in, its state and output out."""
    s = data.draw(collection_schemas())
    value = data.draw(collection_values(s))
    expected = _tree(value)
    core = to_core_function(s)(value, "value")
    core_tree = _tree(core)
    _scramble(value)
    assert _tree(core) == core_tree
    back = from_core_function(s)(core)
    again = trusted_from_core_function(s)(core)
    assert _tree(back) == _tree(again) == expected
    _scramble(back)
    assert _tree(core) == core_tree
    assert _tree(again) == expected  # two decodings share nothing either

    x, y = data.draw(collection_values(s)), data.draw(collection_values(s))
    x_tree, y_tree = _tree(x), _tree(y)
    run = machine_runner(s, s, s, lambda pair: (pair[1], pair[0]))
    new_state, output = run(x, y)
    assert (_tree(new_state), _tree(output)) == (y_tree, x_tree)
    _scramble(x)
    _scramble(y)
    assert (_tree(new_state), _tree(output)) == (y_tree, x_tree)
    x, y = data.draw(collection_values(s)), data.draw(collection_values(s))
    x_tree, y_tree = _tree(x), _tree(y)
    new_state, output = run(x, y)
    _scramble(new_state)
    _scramble(output)
    assert (_tree(x), _tree(y)) == (x_tree, y_tree)
