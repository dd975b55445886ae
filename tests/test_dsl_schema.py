"""Schemas: the layout of Python types as core types, and Python <-> core value conversion."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Optional, Union

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotswap.dsl.annotations import MISSING, schema_of_annotation, schema_of_type
from hotswap.errors import ValueTypeError
from hotswap.lang.types import BOOL, INT, UNIT, Prod, Sum
from hotswap.lang.values import check_value
from hotswap.names.display import parse, parse_python, render, render_python
from hotswap.names.schema import (
    NONE_SCHEMA,
    Record,
    SchemaProblem,
    UnionSchema,
    core_type,
    describe,
    from_core,
    to_core,
)
from hotswap.names.section import decode_names, encode_names
from strategies import python_types, python_values


@dataclass(frozen=True)
class Incr:
    pass


@dataclass(frozen=True)
class Count:
    pass


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Point:
    x: int
    y: int
    z: bool


@dataclass(frozen=True)
class Wrapper:
    inner: Deposit | None


@dataclass
class Mutable:
    a: int


@dataclass(frozen=True)
class Node:
    next: Node | None


LAYOUTS: list[tuple[Any, Any]] = [
    (int, INT),
    (bool, BOOL),
    (None, UNIT),
    (tuple[int, bool], Prod(INT, BOOL)),
    (tuple[int, int, int], Prod(INT, Prod(INT, INT))),
    (Incr, UNIT),
    (Deposit, INT),
    (Point, Prod(INT, Prod(INT, BOOL))),
    (Incr | Count, Sum(UNIT, UNIT)),
    (None | int, Sum(UNIT, INT)),
    (int | None, Sum(INT, UNIT)),
    (Optional[int], Sum(INT, UNIT)),  # noqa: UP045 - the typing spelling is supported too
    (Union[Incr, Deposit, None], Sum(UNIT, Sum(INT, UNIT))),  # noqa: UP007 - same
    (Incr | Deposit | Point, Sum(UNIT, Sum(INT, Prod(INT, Prod(INT, BOOL))))),
    (Wrapper, Sum(INT, UNIT)),
]


@pytest.mark.parametrize(("tp", "expected"), LAYOUTS, ids=str)
def test_python_types_have_the_documented_layout(tp: Any, expected: Any) -> None:
    """Unions are right-nested in written order; records nest their fields to the right."""
    assert core_type(schema_of_type(tp)) == expected


REJECTED_TYPES: list[tuple[Any, str]] = [
    (float, "float is not supported"),
    (set[int], "is not supported"),
    (list, "list needs its item types"),
    (dict[list[int], int], "a dict's key may not hold a list"),
    (tuple[int, ...], "fixed length"),
    (tuple[int], "two or more"),
    (int | bool, "bool is a subclass of int"),
    (tuple[int, int] | tuple[int, bool], "cannot be told apart"),
    (Mutable, "must be a frozen dataclass"),
    (Node, "recursive type Node"),
    (bytes, "bytes is not supported"),
]


@pytest.mark.parametrize(("tp", "fragment"), REJECTED_TYPES, ids=str)
def test_types_outside_the_subset_are_rejected(tp: Any, fragment: str) -> None:
    """Every type outside the subset is a SchemaProblem naming what is wrong."""
    with pytest.raises(SchemaProblem, match=fragment):
        schema_of_type(tp)


def _lookup(name: str) -> object:
    known = {"int": int, "bool": bool, "tuple": tuple, "list": list, "set": set, "dict": dict}
    known |= {"Incr": Incr, "Count": Count}
    return known.get(name, MISSING)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("int | int", "int appears twice"),
        ("Incr | Count | Incr", "Incr appears twice"),
        ("Missing", "name Missing is not defined"),
        ("set[int]", "not supported"),
        ("dict[int]", "dict takes a key and a value type"),
        ("'Incr | '", "not valid Python"),
    ],
)
def test_annotation_syntax_is_checked_before_python_collapses_it(text: str, fragment: str) -> None:
    """``int | int`` is ambiguous even though Python evaluates it to ``int``."""
    node = ast.parse(text, mode="eval").body
    with pytest.raises(SchemaProblem, match=fragment):
        schema_of_annotation(node, _lookup)


def test_annotation_syntax_reads_strings_and_unions_in_order() -> None:
    """A quoted annotation is read like the unquoted one, in the written order."""
    node = ast.parse("'None | Incr'", mode="eval").body
    schema = schema_of_annotation(node, _lookup)
    assert isinstance(schema, UnionSchema)
    assert schema.alternatives[0] == NONE_SCHEMA
    assert describe(schema) == "None | Incr"


CONVERSIONS: list[tuple[Any, object, object]] = [
    (None | int, None, (0, ())),
    (None | int, 7, (1, 7)),
    (Incr | Count, Count(), (1, ())),
    (bool, True, (1, ())),
    (Point, Point(1, 2, False), (1, (2, (0, ())))),
    (Incr | Deposit | Point, Deposit(5), (1, (0, 5))),
    (Incr | Deposit | Point, Point(0, 0, True), (1, (1, (0, (0, (1, ())))))),
    (tuple[int, None, int], (1, None, 2), (1, ((), 2))),
]


@pytest.mark.parametrize(("tp", "value", "core"), CONVERSIONS, ids=repr)
def test_values_convert_to_the_documented_core_values(tp: Any, value: object, core: object) -> None:
    """Injections follow the union's order: the k-th case is inr^k ; inl."""
    schema = schema_of_type(tp)
    assert to_core(schema, value) == core
    assert from_core(schema, core) == value


@pytest.mark.parametrize(
    ("tp", "value", "fragment"),
    [
        (int, True, "expected int, got True"),
        (int, 2**63, "outside the signed 64-bit range"),
        (bool, 1, "expected bool"),
        (None | int, "x", "expected None | int"),
        (Point, Point(1, 2, 3), r"value\.z: expected bool"),  # type: ignore[arg-type]
        (tuple[int, int], (1, 2, 3), "expected tuple"),
        (Incr | Count, Deposit(1), "expected Incr | Count"),
    ],
)
def test_mismatched_values_raise_value_type_error(tp: Any, value: object, fragment: str) -> None:
    """Conversion checks the value against the type and names the place that differs."""
    with pytest.raises(ValueTypeError, match=fragment):
        to_core(schema_of_type(tp), value)


def test_from_core_checks_the_core_value() -> None:
    """A core value of the wrong shape is a ValueTypeError, not a crash."""
    with pytest.raises(ValueTypeError):
        from_core(schema_of_type(None | int), (2, 5))


@given(st.data())
def test_conversions_round_trip_on_generated_types(data: st.DataObject) -> None:
    """For any type in the subset: to_core is well typed, from_core inverts it, and the
    by-name text and the names section round-trip."""
    schema = schema_of_type(data.draw(python_types()))
    value = data.draw(python_values(schema))
    core = to_core(schema, value)
    check_value(core, core_type(schema))
    assert from_core(schema, core) == value
    text = render(core, schema)
    assert parse(text, schema) == core
    assert render_python(value, schema) == text
    assert parse_python(text, schema) == value
    decoded = decode_names(encode_names({"state": schema}))["state"]
    assert decoded == schema
    assert parse(text, decoded) == core


def test_records_decoded_from_names_match_by_name() -> None:
    """A names-section schema has no classes: it takes any dataclass of the same name and
    fields, and gives back generic Records named after the class (never a look-alike)."""
    schema = decode_names(encode_names({"input": schema_of_type(Incr | Deposit)}))["input"]
    assert render((1, 5), schema) == "Deposit(amount=5)"
    assert to_core(schema, Deposit(5)) == (1, 5)
    stand_in = from_core(schema, (1, 5))
    assert stand_in == Record("Deposit", amount=5) and stand_in.amount == 5
    assert type(stand_in) is Record and not isinstance(stand_in, Deposit)
    assert to_core(schema, stand_in) == (1, 5)  # and it converts back

    @dataclass(frozen=True)
    class Other:
        amount: int

    with pytest.raises(ValueTypeError, match=r"expected Incr \| Deposit"):
        to_core(schema, Other(5))
