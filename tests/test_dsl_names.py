"""The names custom section, the nominal upgrade lint, and values shown and parsed by name."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotswap.dsl import (
    Machine,
    Migration,
    compile_source,
    core_type,
    decode_names,
    encode_names,
    names_for,
    nominal_differences,
    parse,
    render,
)
from hotswap.dsl.annotations import schema_of_type
from hotswap.errors import DecodeError, ValueTypeError
from hotswap.examples.bank import bank_sm
from hotswap.examples.counter import counter_sm, counter_sm2, upgrade_state
from hotswap.lang.types import INT, Sum


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Incr:
    pass


COUNTER_NAMES = (
    b'{"input":{"union":[{"fields":[],"record":"Incr"},{"fields":[],"record":"Count"}]},'
    b'"output":{"union":["none","int"]},"state":"int","version":1}'
)


def test_counter_names_section_is_canonical_json() -> None:
    """Keys sorted, no spaces, ASCII: one byte string per set of names."""
    assert counter_sm.compiled.names == COUNTER_NAMES
    assert counter_sm.loaded.custom["names"] == COUNTER_NAMES


def test_names_do_not_change_the_identity() -> None:
    """Renaming every case and field changes the names section, not the module identity."""
    source = """
@dataclass(frozen=True)
class Add:
    pass

@dataclass(frozen=True)
class Get:
    pass

@machine(init=0)
def renamed(cmd: Add | Get, total: int) -> tuple[int, None | int]:
    match cmd:
        case Add():
            return total + 1, None
        case Get():
            return total, total
"""
    renamed = compile_source(source)["renamed"]
    assert renamed.identity == counter_sm.identity
    assert renamed.module != counter_sm.module
    differences = nominal_differences(COUNTER_NAMES, renamed.loaded.custom["names"])
    assert differences == [
        "input|0: record Incr is now named Add",
        "input|1: record Count is now named Get",
    ]


def test_reordered_cases_are_flagged() -> None:
    """``Incr | Count`` to ``Count | Incr`` is structurally equal and means the opposite."""
    source = """
@dataclass(frozen=True)
class Incr:
    pass

@dataclass(frozen=True)
class Count:
    pass

@machine(init=0)
def swapped(inp: Count | Incr, state: int) -> tuple[int, None | int]:
    match inp:
        case Incr():
            return state + 1, None
        case Count():
            return state, state
"""
    swapped = compile_source(source)["swapped"]
    assert isinstance(swapped, Machine)
    assert swapped.input_type == counter_sm.input_type
    lint = nominal_differences(counter_sm.compiled.names, swapped.compiled.names)
    assert len(lint) == 1
    assert "input: the cases Incr | Count were reordered to Count | Incr" in lint[0]
    assert "a value sent as Incr would now mean Count" in lint[0]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("class R:\n    a: int\n    b: int", "class R:\n    b: int\n    a: int", "reordered"),
        ("class R:\n    a: int", "class R:\n    total: int", "field R.a is now named total"),
        ("class R:\n    a: int", "class S:\n    a: int", "record R is now named S"),
    ],
)
def test_renamed_and_reordered_fields_are_flagged(old: str, new: str, expected: str) -> None:
    """Field names are part of what a client sends; the lint names the field."""

    def roles(cls_source: str) -> dict[str, Any]:
        namespace: dict[str, Any] = {"dataclass": dataclass}
        exec(f"@dataclass(frozen=True)\n{cls_source}", namespace)
        cls = next(v for k, v in namespace.items() if k in ("R", "S"))
        return {"state": schema_of_type(cls)}

    lint = nominal_differences(roles(old), roles(new))
    assert any(expected in line for line in lint), lint


def test_structural_changes_and_equal_names_are_not_flagged() -> None:
    """The lint is about names only: a changed layout or identical names give nothing."""
    assert nominal_differences(counter_sm.compiled.names, counter_sm.compiled.names) == []
    assert nominal_differences(counter_sm.compiled.names, counter_sm2.compiled.names) == []
    assert nominal_differences(counter_sm.compiled.names, bank_sm.compiled.names) == []


def test_same_layout_different_kinds_are_flagged() -> None:
    """A record of one int and a plain int share a layout; the lint notices."""
    old = {"input": schema_of_type(Deposit)}
    new = {"input": schema_of_type(int)}
    assert nominal_differences(old, new) == ["input: Deposit is now int (same layout, other names)"]


BAD_SECTIONS: list[tuple[bytes, str]] = [
    (b"", "not valid JSON"),
    (b"\xff", "not valid JSON"),
    (b"[]", "version 1"),
    (b'{"version":2}', "version 1"),
    (b'{"version":1,"extra":"int"}', "unknown role"),
    (b'{"version":1,"input":"float"}', "not a type tree"),
    (b'{"version":1,"input":{"tuple":["int"]}}', "fewer than two"),
    (b'{"version":1,"input":{"record":"1x","fields":[]}}', "not an identifier"),
    (b'{"version":1,"input":{"record":"R","fields":[["a","int"],["a","int"]]}}', "bad field"),
    (b'{"version":1,"input":{"record":"R","fields":[["a"]]}}', "malformed field"),
    (b'{"version":1,"input":{"union":["int","int"]}}', "cannot be told apart"),
    (b'{"version":1,"input":{"union":["int","bool"]}}', "subclass of int"),
    (b'{"version":1,"input":{"union":["int"]}}', "two or more"),
    (b'{"version":1,"input":{"union":["int",{"union":["none","bool"]}]}}', "nests a union"),
    (b'{"version":1,"input":' + b'{"tuple":["int",' * 100 + b'"int"' + b"]}" * 100 + b"}", "deep"),
    (b" " * (1 << 21), "exceeds"),
]


@pytest.mark.parametrize(("data", "fragment"), BAD_SECTIONS, ids=lambda x: repr(x)[:40])
def test_malformed_names_sections_are_decode_errors(data: bytes, fragment: str) -> None:
    """Decoding is strict and says what is wrong."""
    with pytest.raises(DecodeError, match=fragment):
        decode_names(data)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_errors(data: bytes) -> None:
    """Bytes from the network never escape as anything but our own errors."""
    with contextlib.suppress(DecodeError):
        decode_names(data)


def test_names_for_checks_the_layout() -> None:
    """A names section that does not describe the module's types is rejected."""
    roles = names_for(COUNTER_NAMES, {})
    assert set(roles) == {"input", "state", "output"}
    with pytest.raises(DecodeError, match="does not fit"):
        names_for(COUNTER_NAMES, {"output": Sum(INT, INT)})
    with pytest.raises(DecodeError, match="has no 'old'"):
        names_for(COUNTER_NAMES, {"old": INT})
    assert encode_names(names_for(COUNTER_NAMES, {"state": INT})) == COUNTER_NAMES


# --- values by name -------------------------------------------------------------------------

BANK_INPUT = bank_sm.input_schema
BANK_OUTPUT = bank_sm.output_schema


@pytest.mark.parametrize(
    ("text", "schema", "core", "canonical"),
    [
        ("Deposit(amount=5)", BANK_INPUT, (0, 5), "Deposit(amount=5)"),
        ("Deposit(5)", BANK_INPUT, (0, 5), "Deposit(amount=5)"),
        ("  Withdraw(amount=-3) ", BANK_INPUT, (1, (0, -3)), "Withdraw(amount=-3)"),
        ("Balance()", BANK_INPUT, (1, (1, ())), "Balance()"),
        ("Balance", BANK_INPUT, (1, (1, ())), "Balance()"),
        (
            "Refused(reason=InsufficientFunds(balance=1, requested=9))",
            BANK_OUTPUT,
            (1, (1, (0, (1, 9)))),
            "Refused(reason=InsufficientFunds(balance=1, requested=9))",
        ),
        ("None", counter_sm.output_schema, (0, ()), "None"),
        ("-9223372036854775808", counter_sm.output_schema, (1, -(2**63)), "-9223372036854775808"),
        ("(1, 2)", counter_sm2.state_schema, (1, 2), "(1, 2)"),
    ],
)
def test_values_parse_and_render_by_name(
    text: str, schema: Any, core: object, canonical: str
) -> None:
    """Python syntax in, core value out, and back to the canonical keyword form."""
    assert parse(text, schema) == core
    assert render(core, schema) == canonical


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Deposit(amount=5", "cannot parse"),
        ("Transfer(amount=5)", "expected Deposit | Withdraw | Balance"),
        ("Deposit()", "missing amount"),
        ("Deposit(amount=1, amount=2)", "given twice"),
        ("Deposit(1, 2)", "takes 1 fields"),
        ("Deposit(value=1)", "no field value"),
        ("Deposit(amount=True)", "expected int"),
        ("Deposit(amount=9223372036854775808)", "outside the signed 64-bit range"),
        ("__import__('os').system('true')", "expected Deposit | Withdraw | Balance"),
        ("Deposit(amount=1) + 1", "expected"),
        ("x" * 100_001, "too long"),
        ("(" * 5000 + ")" * 5000, "cannot parse"),
        ("\x00", "cannot parse"),
    ],
)
def test_bad_value_text_raises_value_type_error(text: str, fragment: str) -> None:
    """Parsing never evaluates the text and reports every mistake as a ValueTypeError."""
    with pytest.raises(ValueTypeError, match=fragment):
        parse(text, BANK_INPUT)


@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_value_type_errors(text: str) -> None:
    """Whatever a user types at a prompt, parsing fails cleanly or gives a well-typed value."""
    try:
        value = parse(text, BANK_INPUT)
    except ValueTypeError:
        return
    assert parse(render(value, BANK_INPUT), BANK_INPUT) == value


def test_render_checks_the_core_value() -> None:
    """A core value that does not fit the schema is reported, not misprinted."""
    with pytest.raises(ValueTypeError):
        render((2, 5), BANK_INPUT)
    assert render((0, 5), schema_of_type(Deposit | Incr)) == "Deposit(amount=5)"


@pytest.mark.parametrize(
    "compiled",
    [counter_sm, counter_sm2, bank_sm, upgrade_state],
    ids=lambda m: m.name,
)
def test_names_section_decodes_to_the_schemas(
    compiled: Machine[..., Any] | Migration[..., Any],
) -> None:
    """What a node reads from a module's names section is what the source declared."""
    data = compiled.loaded.custom["names"]
    types = {role: core_type(s) for role, s in compiled.schemas.items()}
    assert names_for(data, types) == compiled.schemas
