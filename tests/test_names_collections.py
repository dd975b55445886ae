"""``str``, ``list[T]`` and ``dict[K, V]`` through ``hotswap.names``: schemas, Python <-> core
conversion (reference and compiled), the names section, display by name, the lint, the Python
source of a version's types, and the client's conversions."""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib.util
import itertools
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.cam.compiler import compile_term
from hotswap.cam.loaded import LoadedModule, load
from hotswap.cam.module import Function, MachineSig, Module
from hotswap.cam.values import decode_value, encode_value
from hotswap.client.convert import Classes, converter_for, with_classes
from hotswap.errors import DecodeError, HotswapError, ValueTypeError
from hotswap.examples import bank, breaker, counter, quota
from hotswap.lang.check import MAX_ELEMENTS, MAX_STR_LEN
from hotswap.lang.persistent import EMPTY_LIST, EMPTY_MAP, OMap, make_list
from hotswap.lang.terms import Fanout, Fst, Snd
from hotswap.lang.types import INT, STR, UNIT, ListT, MapT, Prod
from hotswap.lang.values import constant
from hotswap.names.convert import (
    from_core_function,
    machine_runner,
    to_core_function,
    trusted_from_core_function,
)
from hotswap.names.display import parse, quote, render, render_by_name
from hotswap.names.lint import nominal_differences
from hotswap.names.pysource import python_source
from hotswap.names.schema import (
    BOOL_SCHEMA,
    INT_SCHEMA,
    NONE_SCHEMA,
    STR_SCHEMA,
    DictSchema,
    Field,
    ListSchema,
    Record,
    RecordSchema,
    Schema,
    SchemaProblem,
    StrSchema,
    TupleSchema,
    UnionSchema,
    core_type,
    describe,
    from_core,
    from_core_reference,
    kind_of,
    records,
    to_core,
    to_core_reference,
    union_of,
    unkeyable,
)
from hotswap.names.section import decode_names, encode_names, names_for

# --- schemas and values, built directly (records with classes of their own) -----------------

_NAMES = ["Line", "Item", "Sku", "Order", "Tag"]
_FIELDS = ["a", "b", "qty", "name", "tags"]
_classes = itertools.count()


def _record_class(name: str, fields: list[str]) -> type:
    return dataclasses.make_dataclass(name, [(f, object) for f in fields], frozen=True)


@st.composite
def record_schemas(draw: st.DrawFn, depth: int, key: bool, name: str | None = None) -> Schema:
    name = name if name is not None else draw(st.sampled_from(_NAMES))
    names = draw(st.lists(st.sampled_from(_FIELDS), max_size=3, unique=True))
    fields = tuple(Field(n, draw(schemas(depth - 1, key))) for n in names)
    return RecordSchema(name, fields, _record_class(name, list(names)))


@st.composite
def schemas(draw: st.DrawFn, depth: int = 3, key: bool = False) -> Schema:
    """Schemas with str, lists and dicts anywhere (``key``: none of lists and dicts, for the
    keys of a dict)."""
    leaves = [INT_SCHEMA, BOOL_SCHEMA, NONE_SCHEMA, STR_SCHEMA]
    if depth <= 0:
        return draw(st.sampled_from(leaves))
    kinds = ["leaf", "tuple", "record", "union"] + ([] if key else ["list", "list", "dict", "dict"])
    kind = draw(st.sampled_from(kinds))
    if kind == "leaf":
        return draw(st.sampled_from(leaves))
    if kind == "list":
        return ListSchema(draw(schemas(depth - 1)))
    if kind == "dict":
        return DictSchema(draw(schemas(depth - 1, key=True)), draw(schemas(depth - 1)))
    if kind == "tuple":
        return TupleSchema(tuple(draw(st.lists(schemas(depth - 1, key), min_size=2, max_size=3))))
    if kind == "record":
        return draw(record_schemas(depth, key))
    names = draw(st.lists(st.sampled_from(_NAMES), max_size=2, unique=True))
    alts: list[Schema] = [draw(record_schemas(depth, key, n)) for n in names]
    optional = [
        NONE_SCHEMA,
        draw(st.sampled_from([INT_SCHEMA, BOOL_SCHEMA])),
        STR_SCHEMA,
        TupleSchema((draw(schemas(depth - 1, key)), draw(schemas(depth - 1, key)))),
    ]
    if not key:
        optional += [ListSchema(draw(schemas(depth - 1))), DictSchema(STR_SCHEMA, INT_SCHEMA)]
    alts += [a for a in optional if draw(st.booleans())]
    if len(alts) < 2:
        alts = [STR_SCHEMA, NONE_SCHEMA]
    return union_of(list(draw(st.permutations(alts))))


_texts = st.text(max_size=6) | st.sampled_from(["", 'a"b\\c', "tab\there\n", "café", "\u202e\x00"])


def python_values(s: Schema) -> st.SearchStrategy[Any]:
    match s:
        case StrSchema():
            return _texts
        case ListSchema(item):
            return st.lists(python_values(item), max_size=4)
        case DictSchema(key, value):
            return st.dictionaries(python_values(key), python_values(value), max_size=4)
        case TupleSchema(items):
            return st.tuples(*(python_values(i) for i in items))
        case RecordSchema(fields=fields, cls=cls):
            assert cls is not None
            return st.builds(cls, **{f.name: python_values(f.schema) for f in fields})
        case UnionSchema(alternatives):
            return st.one_of(*(python_values(a) for a in alternatives))
        case _:
            return st.integers(-(2**63), 2**63 - 1) if s == INT_SCHEMA else _leaf(s)


def _leaf(s: Schema) -> st.SearchStrategy[Any]:
    return st.booleans() if s == BOOL_SCHEMA else st.none()


def _tree(v: Any) -> Any:
    """``v`` with every node's type and every collection's order spelled out."""
    if isinstance(v, tuple | list) or type(v) is type(EMPTY_LIST):
        return (type(v), tuple(_tree(x) for x in v))
    if isinstance(v, dict | OMap):
        return (type(v), tuple((_tree(k), _tree(x)) for k, x in v.items()))
    if isinstance(v, Record):
        return (Record, v.record_name, tuple((k, _tree(x)) for k, x in v.record_fields.items()))
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return (type(v), tuple((f.name, _tree(getattr(v, f.name))) for f in dataclasses.fields(v)))
    return (type(v), v)


def _classless(s: Schema) -> Schema:
    return decode_names(encode_names({"state": s}))["state"]


def _record(name: str, *fields: tuple[str, Schema], cls: type | None = None) -> RecordSchema:
    return RecordSchema(name, tuple(Field(n, f) for n, f in fields), cls)


@dataclasses.dataclass(frozen=True)
class Line:
    sku: str
    qty: int


LINE = _record("Line", ("sku", STR_SCHEMA), ("qty", INT_SCHEMA), cls=Line)
CART = DictSchema(STR_SCHEMA, LINE)


# --- structure ------------------------------------------------------------------------------


def test_describe_kind_and_records() -> None:
    s = DictSchema(
        TupleSchema((STR_SCHEMA, INT_SCHEMA)), ListSchema(UnionSchema((LINE, NONE_SCHEMA)))
    )
    assert describe(s) == "dict[tuple[str, int], list[Line | None]]"
    assert [kind_of(x) for x in (STR_SCHEMA, ListSchema(INT_SCHEMA), CART)] == [
        "str",
        "list",
        "dict",
    ]
    assert [r.name for r in records(ListSchema(DictSchema(STR_SCHEMA, LINE)))] == ["Line"]
    assert core_type(s) is MapT(Prod(STR, INT), ListT(core_type(UnionSchema((LINE, NONE_SCHEMA)))))


def test_records_are_found_in_keys_and_values() -> None:
    key = _record("Key", ("n", INT_SCHEMA))
    assert [r.name for r in records(DictSchema(key, ListSchema(LINE)))] == ["Key", "Line"]


@pytest.mark.parametrize(
    ("alternatives", "kind"),
    [
        ([STR_SCHEMA, STR_SCHEMA], "str"),
        ([ListSchema(INT_SCHEMA), ListSchema(STR_SCHEMA)], "list"),
        ([CART, DictSchema(INT_SCHEMA, INT_SCHEMA), NONE_SCHEMA], "dict"),
    ],
)
def test_a_union_holds_one_str_one_list_one_dict(alternatives: list[Schema], kind: str) -> None:
    with pytest.raises(SchemaProblem, match=f"at most one {kind} alternative") as info:
        union_of(alternatives)
    assert "cannot be told apart at run time" in str(info.value)


def test_a_union_of_each_kind_once_is_fine() -> None:
    u = union_of([STR_SCHEMA, ListSchema(INT_SCHEMA), CART, NONE_SCHEMA, INT_SCHEMA])
    assert describe(u) == "str | list[int] | dict[str, Line] | None | int"


@pytest.mark.parametrize(
    ("key", "where"),
    [
        (ListSchema(INT_SCHEMA), "list[int]"),
        (DictSchema(STR_SCHEMA, INT_SCHEMA), "dict[str, int]"),
        (TupleSchema((INT_SCHEMA, ListSchema(STR_SCHEMA))), "list[str]"),
        (_record("K", ("tags", ListSchema(STR_SCHEMA))), "list[str]"),
        (UnionSchema((NONE_SCHEMA, DictSchema(INT_SCHEMA, INT_SCHEMA))), "dict[int, int]"),
    ],
)
def test_dict_keys_hold_no_list_or_dict(key: Schema, where: str) -> None:
    assert unkeyable(key) == where
    with pytest.raises(SchemaProblem) as info:
        DictSchema(key, INT_SCHEMA)
    assert str(info.value) == (
        f"dict[{describe(key)}, int]: a dict key may not be or hold a list or a dict ({where} "
        "is one); key by a str, int, bool, tuple or record of those instead"
    )


# --- Python <-> core ------------------------------------------------------------------------


def test_cart_converts_both_ways_keeping_order() -> None:
    cart = {"b": Line("b", 2), "a": Line("a", 1)}
    core = to_core(CART, cart)
    assert type(core) is OMap and list(core.items()) == [("b", ("b", 2)), ("a", ("a", 1))]
    back = from_core(CART, core)
    assert type(back) is dict and list(back) == ["b", "a"] and back == cart
    assert list(from_core(_classless(CART), core).values()) == [
        Record("Line", sku="b", qty=2),
        Record("Line", sku="a", qty=1),
    ]
    assert to_core(ListSchema(STR_SCHEMA), ["x", "y"]) == make_list(["x", "y"])
    assert from_core(ListSchema(STR_SCHEMA), make_list(["x"])) == ["x"]
    assert to_core(DictSchema(INT_SCHEMA, INT_SCHEMA), {}) is not None
    assert from_core(ListSchema(INT_SCHEMA), EMPTY_LIST) == []
    assert from_core(CART, EMPTY_MAP) == {}


@pytest.mark.parametrize(
    ("schema", "value", "message"),
    [
        (
            _record("Order", ("lines", ListSchema(LINE))),
            Record("Order", lines=(Line("a", 1),)),
            "state.lines: expected list[Line], got (Line(sku='a', qty=1),): pass a list "
            "(list(...) of it), not a tuple",
        ),
        (
            ListSchema(INT_SCHEMA),
            make_list([1]),
            "state: expected list[int], got pvector([1]): pass a list (list(...) of it), "
            "not a PVector",
        ),
        (ListSchema(INT_SCHEMA), "ab", "state: expected list[int], got 'ab': pass a list ([...])"),
        (ListSchema(INT_SCHEMA), [1, True], "state[1]: expected int, got True"),
        (
            CART,
            [("a", Line("a", 1))],
            "state: expected dict[str, Line], got [('a', Line(sku='a', qty=1))]: pass a dict "
            "({key: value, ...}), not a list",
        ),
        (
            CART,
            OMap([("a", ("a", 1))]),
            "state: expected dict[str, Line], got OMap({'a': ('a', 1)}): pass a dict (dict(...) "
            "of it), not an OMap",
        ),
        (CART, {5: Line("a", 1)}, "state, key 5: expected str, got 5"),
        (CART, {"a": Line("a", "1")}, "state['a'].qty: expected int, got '1'"),  # type: ignore[arg-type]
        (STR_SCHEMA, b"x", "state: expected str, got b'x'"),
        (STR_SCHEMA, "\ud800", "state: text holds a lone surrogate, which UTF-8 cannot encode"),
        (
            STR_SCHEMA,
            "x" * (MAX_STR_LEN + 1),
            f"state: text of {MAX_STR_LEN + 1} code points, more than {MAX_STR_LEN}",
        ),
    ],
)
def test_errors_name_the_place_and_what_to_pass(
    schema: Schema, value: object, message: str
) -> None:
    converters: list[Callable[[object], object]] = [
        lambda v: to_core_reference(schema, v, "state"),
        lambda v: to_core_function(schema)(v, "state"),
    ]
    for convert in converters:
        with pytest.raises(ValueTypeError) as info:
            convert(value)
        assert str(info.value) == message


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(ValueTypeError) as info:
        to_core(ListSchema(INT_SCHEMA), tuple(range(100_000)), "state")
    assert len(str(info.value)) < 400
    assert str(info.value).startswith("state: expected list[int], got (0, 1, 2, ")


def test_too_many_elements_are_refused_before_conversion() -> None:
    class Long(list[int]):
        def __len__(self) -> int:
            return MAX_ELEMENTS + 1

    with pytest.raises(ValueTypeError, match=f"{MAX_ELEMENTS + 1} elements, more than"):
        to_core_reference(ListSchema(INT_SCHEMA), Long())


def test_str_subclasses_convert_as_their_text() -> None:
    class Color(enum.StrEnum):
        RED = "red"

    core = to_core(STR_SCHEMA, Color.RED)
    assert type(core) is str and core == "red"
    u = union_of([STR_SCHEMA, NONE_SCHEMA])
    assert to_core_function(u)(Color.RED, "value") == (0, "red")
    assert type(to_core_function(u)(Color.RED, "value")[1]) is str
    for fn in (
        to_core_function(ListSchema(STR_SCHEMA)),
        functools.partial(to_core_reference, ListSchema(STR_SCHEMA)),
    ):
        assert type(fn(["a", Color.RED], "value")[1]) is str
    assert to_core(DictSchema(STR_SCHEMA, INT_SCHEMA), OrderedDict(b=1, a=2)) == OMap(
        [("b", 1), ("a", 2)]
    )


def test_two_keys_that_convert_to_one_are_refused() -> None:
    """A record known by name takes any class of that name: two such classes may collide."""
    first = dataclasses.make_dataclass("K", [("n", int)], frozen=True)
    second = dataclasses.make_dataclass("K", [("n", int)], frozen=True)
    s = DictSchema(_classless(_record("K", ("n", INT_SCHEMA))), INT_SCHEMA)
    value = {first(1): 1, second(1): 2}
    for fn in (functools.partial(to_core_reference, s), to_core_function(s)):
        with pytest.raises(ValueTypeError, match=r"keys K\(n=1\) and K\(n=1\) are the same key"):
            fn(value, "value")


def test_keys_that_cannot_be_python_keys_are_an_error() -> None:
    @dataclasses.dataclass  # not frozen: not hashable
    class K:
        n: int

    s = DictSchema(_record("K", ("n", INT_SCHEMA), cls=K), INT_SCHEMA)
    core = OMap([(1, 5)])
    for fn in (functools.partial(from_core_reference, s), from_core_function(s)):
        with pytest.raises(ValueTypeError, match="cannot be a Python dict key"):
            fn(core)


def test_core_values_are_checked() -> None:
    cases: list[tuple[Schema, object]] = [
        (ListSchema(INT_SCHEMA), [1, 2]),
        (ListSchema(INT_SCHEMA), make_list([1, True])),
        (CART, {"a": ("a", 1)}),
        (CART, OMap([(1, ("a", 1))])),
        (STR_SCHEMA, "\udfff"),
    ]
    for s, bad in cases:
        with pytest.raises(ValueTypeError):
            from_core_reference(s, bad)
        with pytest.raises(ValueTypeError):
            from_core_function(s)(bad)


@settings(max_examples=35, deadline=None)
@given(st.data())
def test_python_core_and_bytes_round_trip(data: st.DataObject) -> None:
    s = data.draw(schemas())
    value = data.draw(python_values(s))
    core = to_core_reference(s, value)
    assert _tree(to_core_function(s)(value, "value")) == _tree(core)
    assert _tree(from_core_reference(s, core)) == _tree(value)
    assert _tree(from_core_function(s)(core)) == _tree(value)
    assert _tree(trusted_from_core_function(s)(core)) == _tree(value)
    t = core_type(s)
    data_bytes = encode_value(core, t)
    again = decode_value(data_bytes, t)
    assert _tree(again) == _tree(core) and encode_value(again, t) == data_bytes
    assert _tree(from_core(s, again)) == _tree(value)
    by_name = _classless(s)
    assert _tree(to_core_function(by_name)(value, "value")) == _tree(core)
    assert _tree(to_core_reference(by_name, from_core_function(by_name)(core))) == _tree(core)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_machine_runner_with_collections(data: st.DataObject) -> None:
    a, b = data.draw(schemas()), data.draw(schemas())
    run = machine_runner(a, b, a, lambda pair: (pair[1], pair[0]))
    x, y = data.draw(python_values(a)), data.draw(python_values(b))
    assert _tree(run(x, y)) == _tree((y, x))


# --- the names section ----------------------------------------------------------------------

#: Sections the release before str, list and dict wrote (the examples compiled by it): they
#: must decode and encode again to exactly these bytes.
RELEASED = {
    "bank": b'{"input":{"union":[{"fields":[["amount","int"]],"record":"Deposit"},{"fields":[["amount","int"]],"record":"Withdraw"},{"fields":[],"record":"Balance"}]},"output":{"union":[{"fields":[["balance","int"]],"record":"Accepted"},{"fields":[["reason",{"union":[{"fields":[["amount","int"]],"record":"InvalidAmount"},{"fields":[["balance","int"],["requested","int"]],"record":"InsufficientFunds"},{"fields":[["limit","int"]],"record":"LimitExceeded"}]}]],"record":"Refused"}]},"state":{"fields":[["balance","int"],["operations","int"]],"record":"Account"},"version":1}',  # noqa: E501
    "counter": b'{"input":{"union":[{"fields":[],"record":"Incr"},{"fields":[],"record":"Count"}]},"output":{"union":["none","int"]},"state":"int","version":1}',  # noqa: E501
    "counter2": b'{"input":{"union":[{"fields":[],"record":"Incr"},{"fields":[],"record":"Count"}]},"output":{"union":["none","int"]},"state":{"tuple":["int","int"]},"version":1}',  # noqa: E501
    "breaker": b'{"input":{"union":[{"fields":[["now","int"]],"record":"Call"},{"fields":[["now","int"]],"record":"Success"},{"fields":[["now","int"]],"record":"Failure"}]},"output":{"union":["none",{"fields":[],"record":"Allow"},{"fields":[["retry_after","int"]],"record":"Reject"}]},"state":{"union":[{"fields":[["failures","int"]],"record":"Closed"},{"fields":[["since","int"]],"record":"Open"},{"fields":[],"record":"HalfOpen"}]},"version":1}',  # noqa: E501
    "quota2": b'{"input":{"union":[{"fields":[["amount","int"]],"record":"Use"},{"fields":[],"record":"Check"}]},"output":{"union":[{"fields":[["remaining","int"]],"record":"Granted"},{"fields":[["remaining","int"]],"record":"Low"},{"fields":[["remaining","int"]],"record":"Denied"}]},"state":{"fields":[["used","int"],["limit","int"],["warn_below","int"]],"record":"Quota"},"version":1}',  # noqa: E501
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_sections_round_trip_byte_identically(name: str) -> None:
    data = RELEASED[name]
    assert encode_names(decode_names(data)) == data


@pytest.mark.parametrize(
    ("name", "machine"),
    [
        ("bank", bank.bank_sm),
        ("counter", counter.counter_sm),
        ("counter2", counter.counter_sm2),
        ("breaker", breaker.breaker_sm),
        ("quota2", quota.quota_sm2),
    ],
)
def test_examples_still_write_the_released_bytes(name: str, machine: Any) -> None:
    assert machine.compiled.names == RELEASED[name]
    assert machine.loaded.custom["names"] == RELEASED[name]


def test_collections_are_written_with_new_tags_in_version_2() -> None:
    s = _record("Cart", ("lines", CART), ("log", ListSchema(STR_SCHEMA)))
    data = encode_names({"state": s, "input": INT_SCHEMA})
    assert data == (
        b'{"input":"int","state":{"fields":[["lines",{"dict":["str",{"fields":[["sku","str"],'
        b'["qty","int"]],"record":"Line"}]}],["log",{"list":"str"}]],"record":"Cart"},'
        b'"version":2}'
    )
    assert decode_names(data) == {"state": s, "input": INT_SCHEMA}
    assert encode_names({"state": INT_SCHEMA}) == b'{"state":"int","version":1}'


@settings(max_examples=35, deadline=None)
@given(st.dictionaries(st.sampled_from(["input", "state", "output"]), schemas(), min_size=1))
def test_sections_round_trip(roles: dict[str, Schema]) -> None:
    data = encode_names(roles)
    decoded = decode_names(data)
    assert decoded == roles and encode_names(decoded) == data
    assert names_for(data, {r: core_type(s) for r, s in roles.items()}) == roles


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"state":"str","version":1}', "version 1 uses str, list or dict, which need version 2"),
        (
            b'{"state":"int","version":2}',
            "uses no str, list or dict: its canonical form is version 1",
        ),
        (b'{"state":"int","version":3}', "must be an object with version 1 or 2"),
        (b'{"state":"str","version":2.0}', "version that is not an integer"),
        (b'{"state":"str","version":true}', "must be an object with version 1 or 2|not an integer"),
        (b'{"state":{"list":"int","x":1},"version":2}', "state is not a type tree"),
        (b'{"state":{"list":"float"},"version":2}', r"state\[i\] is not a type tree"),
        (
            b'{"state":{"dict":["int"]},"version":2}',
            "state is a dict without \\[key, value\\] types",
        ),
        (b'{"state":{"dict":"int"},"version":2}', "state is a dict without \\[key, value\\] types"),
        (
            b'{"state":{"dict":[{"list":"int"},"int"]},"version":2}',
            r"state: dict\[list\[int\], int\]: a dict key may not be or hold a list or a dict",
        ),
        (
            b'{"state":{"union":["str","str"]},"version":2}',
            "at most one str alternative",
        ),
        (
            b'{"state":{"union":[{"list":"int"},{"list":"str"}]},"version":2}',
            "at most one list alternative",
        ),
    ],
)
def test_bad_sections_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_names(data)


def test_deep_lists_are_refused() -> None:
    tree = '"int"'
    for _ in range(80):
        tree = f'{{"list":{tree}}}'
    with pytest.raises(DecodeError, match="nested more than 64 deep"):
        decode_names(f'{{"state":{tree},"version":2}}'.encode())


def test_names_for_checks_the_layout() -> None:
    data = encode_names({"state": ListSchema(STR_SCHEMA)})
    assert names_for(data, {"state": ListT(STR)}) == {"state": ListSchema(STR_SCHEMA)}
    with pytest.raises(DecodeError, match=r"state list\[str\] does not fit"):
        names_for(data, {"state": ListT(INT)})


# --- display ----------------------------------------------------------------------------------


def test_render_is_python_syntax() -> None:
    value = to_core(CART, {'a"b': Line("x\n", 1), "é": Line("", -2)})
    assert render(value, CART) == '{"a\\"b": Line(sku="x\\n", qty=1), "é": Line(sku="", qty=-2)}'
    nested = ListSchema(union_of([STR_SCHEMA, NONE_SCHEMA, ListSchema(INT_SCHEMA)]))
    assert render(to_core(nested, ["s", None, [1, 2], []]), nested) == '["s", None, [1, 2], []]'
    assert render(EMPTY_MAP, CART) == "{}"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain", '"plain"'),
        ('q"\\', '"q\\"\\\\"'),
        ("\n\r\t\b\f", '"\\n\\r\\t\\b\\f"'),
        ("\x00\x1b\x7f", '"\\u0000\\u001b\\u007f"'),
        ("\u202e\u00a0\u2028", '"\\u202e\\u00a0\\u2028"'),  # bidi override, nbsp, separator
        ("\U000e0001", '"\\U000e0001"'),
        ("日本😀", '"日本😀"'),
    ],
)
def test_strings_are_quoted_readably_and_safely(text: str, shown: str) -> None:
    assert quote(text) == shown
    assert render(text, STR_SCHEMA) == shown
    assert parse(shown, STR_SCHEMA) == text
    assert all(c.isprintable() for c in shown)


@settings(max_examples=45, deadline=None)
@given(st.data())
def test_parse_reads_what_render_writes(data: st.DataObject) -> None:
    s = data.draw(schemas())
    core = to_core(s, data.draw(python_values(s)))
    for schema in (s, _classless(s)):
        text = render(core, schema)
        assert _tree(parse(text, schema)) == _tree(core)  # the dict's order included
        assert render(core, schema, limit=10_000) == text or len(text) > 10_000


@pytest.mark.parametrize(
    ("schema", "text", "message"),
    [
        (STR_SCHEMA, "b'x'", "expected str, got \"b'x'\""),
        (STR_SCHEMA, "f'{x}'", "expected str"),
        (STR_SCHEMA, '"\\ud800"', "lone surrogate"),
        (ListSchema(INT_SCHEMA), "(1, 2)", r"expected list\[int\], got '\(1, 2\)'"),
        (ListSchema(INT_SCHEMA), "[1, 'a']", "expected int, got \"'a'\""),
        (CART, "{1, 2}", r"expected dict\[str, Line\]"),
        (CART, '{"a": Line("a", 1), "a": Line("b", 2)}', 'key "a" appears twice'),
        (CART, "{**x}", r"cannot unpack \(\*\*\)"),
        (CART, '{"a": Item()}', "expected Line"),
    ],
)
def test_parse_refuses_what_is_not_a_value(schema: Schema, text: str, message: str) -> None:
    with pytest.raises(ValueTypeError, match=message):
        parse(text, schema)


def test_parse_accepts_python_spellings() -> None:
    assert parse("'single'", STR_SCHEMA) == "single"
    assert parse('"a" "b"', STR_SCHEMA) == "ab"
    assert parse("{'k': Line('s', 1)}", CART) == OMap([("k", ("s", 1))])
    u = union_of([STR_SCHEMA, ListSchema(STR_SCHEMA), CART, NONE_SCHEMA])
    assert parse('"x"', u) == (0, "x")
    assert parse('["x"]', u) == (1, (0, make_list(["x"])))
    assert parse("{}", u) == (1, (1, (0, EMPTY_MAP)))


def test_render_with_a_limit_cuts_large_values() -> None:
    s = DictSchema(STR_SCHEMA, ListSchema(INT_SCHEMA))
    three = make_list(range(3))
    big = OMap([(f"k{i}", three) for i in range(50_000)])
    size = len(encode_value(big, core_type(s)))
    text = render(big, s, limit=40)
    assert text == (
        '{"k0": [0, 1, 2], "k1": [0, 1, 2], "k2" ... (49998 more elements, ' + f"{size} bytes)"
    )
    assert render(big, s, limit=40, size=123).endswith("(49998 more elements, 123 bytes)")
    assert render(big, s, limit=0, size=1) == "... (50000 more elements, 1 bytes)"
    inner = render(big, s, limit=24, size=1)  # cut inside the second entry's list
    assert inner == '{"k0": [0, 1, 2], "k1": ... (50002 more elements, 1 bytes)'
    long_text = "x" * 1000
    assert render(long_text, STR_SCHEMA, limit=8) == '"xxxxxxx ... (993 more elements, 1002 bytes)'
    small = to_core(CART, {"a": Line("a", 1)})
    assert render(small, CART, limit=1000) == render(small, CART)
    with pytest.raises(ValueError, match="limit must be at least 0"):
        render(small, CART, limit=-1)


def test_render_checks_values() -> None:
    with pytest.raises(ValueTypeError):
        render(make_list([1, "x"]), ListSchema(INT_SCHEMA))
    with pytest.raises(ValueTypeError, match=r"not a value of list\[int\]"):
        render([1], ListSchema(INT_SCHEMA), limit=100)
    with pytest.raises(ValueTypeError, match="not a value of int"):
        render(make_list(["x"]), ListSchema(INT_SCHEMA), limit=100)


# --- a machine module carrying collections ----------------------------------------------------


def _echo_module(input_s: Schema, state_s: Schema, init: object) -> LoadedModule:
    """A machine whose step returns its state unchanged and its input as output."""
    it, st_ = core_type(input_s), core_type(state_s)
    init_fn = Function(UNIT, st_, compile_term(constant(to_core(state_s, init), st_)))
    step = Function(Prod(it, st_), Prod(st_, it), compile_term(Fanout(Snd(), Fst())))
    names = encode_names({"input": input_s, "state": state_s, "output": input_s})
    return load(Module((init_fn, step), MachineSig(it, st_, it, 0, 1), custom=(("names", names),)))


def test_render_by_name_with_a_limit() -> None:
    code = _echo_module(ListSchema(STR_SCHEMA), CART, {"a": Line("a", 1), "b": Line("b", 2)})
    state = code.init()
    assert (
        render_by_name(state, "state", code)
        == '{"a": Line(sku="a", qty=1), "b": Line(sku="b", qty=2)}'
    )
    assert render_by_name(state, "state", code, limit=30) == (
        '{"a": Line(sku="a", qty=1), "b ... (1 more element, 11 bytes)'
    )


def test_client_converter_returns_python_collections_of_the_users_classes() -> None:
    code = _echo_module(ListSchema(STR_SCHEMA), CART, {})
    classes = Classes()
    classes.add(Line, given=True)
    conv = converter_for(code, classes=classes)
    assert conv.lacking == ()
    core = conv.to_core({"x": Line("x", 3)}, "state")
    assert core == OMap([("x", ("x", 3))])
    back = conv.from_core(core, "state")
    assert back == {"x": Line("x", 3)} and type(back["x"]) is Line
    assert conv.from_core(make_list(["a"]), "output") == ["a"]
    bare = converter_for(code)
    assert bare.lacking == ("Line",)
    assert bare.from_core(core, "state") == {"x": Record("Line", sku="x", qty=3)}


def test_with_classes_reaches_into_lists_and_dicts() -> None:
    s = _classless(DictSchema(_record("Key", ("n", INT_SCHEMA)), ListSchema(LINE)))
    key_cls = dataclasses.make_dataclass("Key", [("n", int)], frozen=True)
    found = {"Line": Line, "Key": key_cls}
    attached = with_classes(s, lambda name, fields: found.get(name))
    assert [r.cls for r in records(attached)] == [key_cls, Line]
    assert from_core(attached, OMap([(1, make_list([("a", 2)]))])) == {key_cls(1): [Line("a", 2)]}


def test_classes_learn_from_values_inside_collections() -> None:
    classes = Classes()
    modules = classes.learn_value({"k": [Line("a", 1)]})
    assert modules == (__name__,)
    assert classes.find("Line", ("sku", "qty")) is Line


# --- lint and Python source -------------------------------------------------------------------


def test_lint_compares_inside_lists_and_dicts() -> None:
    item = _record("Item", ("sku", STR_SCHEMA), ("qty", INT_SCHEMA))
    old = {"state": DictSchema(STR_SCHEMA, ListSchema(LINE)), "input": DictSchema(LINE, INT_SCHEMA)}
    new = {"state": DictSchema(STR_SCHEMA, ListSchema(item)), "input": DictSchema(item, INT_SCHEMA)}
    assert nominal_differences(old, new) == [
        "state[k][i]: record Line is now named Item",
        "input.key: record Line is now named Item",
    ]
    assert (
        nominal_differences({"state": ListSchema(INT_SCHEMA)}, {"state": ListSchema(STR_SCHEMA)})
        == []
    )
    assert nominal_differences(encode_names(old), encode_names(old)) == []


def test_python_source_prints_collections(tmp_path: Path) -> None:
    order = _record(
        "Order",
        ("lines", CART),
        ("tags", ListSchema(STR_SCHEMA)),
        ("note", union_of([STR_SCHEMA, NONE_SCHEMA])),
    )
    source = python_source(
        {"input": ListSchema(LINE), "state": order, "output": DictSchema(STR_SCHEMA, INT_SCHEMA)},
        machine="shop",
        identity="ab" * 32,
    )
    assert "    lines: dict[str, Line]\n    tags: list[str]\n    note: str | None\n" in source
    assert "Input: TypeAlias = list[Line]\n" in source
    assert "Output: TypeAlias = dict[str, int]\n" in source
    assert source.index("class Line:") < source.index("class Order:")
    path = tmp_path / f"shop_types_{next(_classes)}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
        made = module.Order(lines={"a": module.Line("a", 1)}, tags=["t"], note=None)
        assert made.tags == ["t"]
    finally:
        del sys.modules[path.stem]


def test_python_source_reserves_the_builtin_names() -> None:
    with pytest.raises(HotswapError, match="'list' cannot be defined"):
        python_source({"state": _record("list", ("n", INT_SCHEMA))}, machine="m", identity="x")
