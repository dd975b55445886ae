"""Format 2's encodings: values (Str, List, Map), standalone types and modules.

Each value has exactly one encoding, a map's order included, and the decoder rejects every
other byte string with a :class:`DecodeError` that names the problem. Modules that use the new
types or instructions are written in format version 2 and round-trip; modules that do not stay
in version 1, byte for byte.
"""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.cam.build import machine_module
from hotswap.cam.encoding import uleb
from hotswap.cam.fuzz import mutate
from hotswap.cam.instructions import V1_OPCODES, Opcode
from hotswap.cam.loaded import load_module
from hotswap.cam.module import Module, decode_module, encode_module, module_identity, type_table
from hotswap.cam.values import (
    decode_type,
    decode_value,
    encode_type,
    encode_value,
    value_decoder,
    value_encoder,
)
from hotswap.errors import DecodeError, Trap, ValueTypeError
from hotswap.lang.check import MAX_ELEMENTS, MAX_STR_LEN, infer
from hotswap.lang.evaluate import evaluate
from hotswap.lang.persistent import EMPTY_LIST, OMap, make_list
from hotswap.lang.terms import SND, Fanout, Lit, Op, Prim, StrLit, compose
from hotswap.lang.types import BOOL, INT, STR, UNIT, ListT, MapT, Prod, StrT, Sum, Type
from hotswap.lang.values import constant, parse, render
from strategies import (
    components,
    data_terms,
    data_types,
    data_values,
    exact,
    terms,
    types,
    values,
)

# --- values ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_values_round_trip_exactly_maps_in_order(data: st.DataObject) -> None:
    """decode(encode(v)) is v, map order included; the compiled encoder gives the same bytes;
    a trailing byte or a missing one is refused."""
    t = data.draw(data_types(5), label="type")
    v = data.draw(data_values(t), label="value")
    raw = encode_value(v, t)
    assert value_encoder(t)(v) == raw
    back = decode_value(raw, t)
    assert exact(back) == exact(v)
    assert exact(value_decoder(t)(raw)) == exact(v)
    with pytest.raises(DecodeError, match="trailing"):
        decode_value(raw + b"\x00", t)
    if raw:
        with pytest.raises(DecodeError):
            decode_value(raw[:-1], t)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_damaged_value_bytes_are_refused_or_canonical(data: st.DataObject) -> None:
    """Bytes near a valid encoding (flips, insertions, deletions) or arbitrary bytes either
    decode to a value whose encoding is exactly those bytes, or raise DecodeError: one value,
    one byte string, and no other exception."""
    t = data.draw(data_types(5), label="type")
    raw = encode_value(data.draw(data_values(t), label="value"), t)
    rng = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
    damaged = [mutate(rng, raw) for _ in range(8)]
    damaged.append(data.draw(st.binary(max_size=len(raw) + 3), label="bytes"))
    for candidate in damaged:
        try:
            decoded = decode_value(candidate, t)
        except DecodeError:
            continue
        assert encode_value(decoded, t) == candidate


M_INT = MapT(INT, INT)
M_STR = MapT(STR, UNIT)
L_INT = ListT(INT)
L_UNIT = ListT(UNIT)

REFUSED = [
    # duplicate keys: the same key twice is not a map's encoding
    (b"\x02\x01\x05\x01\x06", M_INT, "a map key appears twice"),
    (b"\x02\x01a\x01a", M_STR, "a map key appears twice"),
    (b"\x02", MapT(UNIT, UNIT), "a map key appears twice"),  # keys of no bytes: one at most
    (b"\x02\x00\x00\x00\x01", MapT(BOOL, INT), "a map key appears twice"),
    # text that is not UTF-8: a stray byte, an overlong form, a surrogate, a cut sequence
    (b"\x01\xff", STR, "not valid UTF-8"),
    (b"\x02\xc0\x80", STR, "not valid UTF-8"),
    (b"\x03\xed\xa0\x80", STR, "not valid UTF-8"),
    (b"\x01\xc3", STR, "not valid UTF-8"),
    (b"\x04\xf4\x90\x80\x80", STR, "not valid UTF-8"),  # past U+10FFFF
    # counts in non-minimal LEB128
    (b"\x80\x00", L_INT, "non-minimal unsigned LEB128"),
    (b"\x81\x00\x01", L_INT, "non-minimal unsigned LEB128"),
    (b"\x80\x00", STR, "non-minimal unsigned LEB128"),
    (b"\x80\x00", M_INT, "non-minimal unsigned LEB128"),
    # trailing bytes
    (b"\x00\x00", L_INT, "trailing bytes"),
    (b"\x01a!", STR, "trailing bytes"),
    (b"\x00\x07", M_INT, "trailing bytes"),
    # counts past the bytes left, or past the limits
    (b"\x05\x01\x02", L_INT, "needs more bytes than are left"),
    (b"\x03\x01\x02\x03\x04", M_INT, "needs more bytes than are left"),
    (b"\x05ab", STR, "needs 5 bytes, only 2 left"),
    (uleb(MAX_ELEMENTS + 1), L_UNIT, f"exceeds the limit {MAX_ELEMENTS}"),
    (uleb(4 * MAX_STR_LEN + 1), STR, f"exceeds the limit {4 * MAX_STR_LEN}"),
    (b"\x01\x01", ListT(Sum(UNIT, INT)), "unexpected end of data"),
    (b"\x01\x02", ListT(Sum(UNIT, UNIT)), "sum tag must be 0 or 1"),
]


@pytest.mark.parametrize(("raw", "t", "message"), REFUSED)
def test_non_canonical_collection_bytes_are_refused_with_a_reason(
    raw: bytes, t: Type, message: str
) -> None:
    with pytest.raises(DecodeError, match=re.escape(message)):
        decode_value(raw, t)


def test_text_longer_than_the_limit_in_code_points_is_refused() -> None:
    """2**20 code points is the limit; one more is refused, whatever the bytes say."""
    at_limit = "\u00e9" * MAX_STR_LEN
    raw = encode_value(at_limit, STR)
    assert decode_value(raw, STR) == at_limit
    over = "a" * (MAX_STR_LEN + 1)
    with pytest.raises(DecodeError, match="longer than"):
        decode_value(uleb(len(over)) + over.encode(), STR)
    with pytest.raises(ValueTypeError, match="more than"):
        encode_value(over, STR)


def test_a_list_of_units_is_its_count_alone() -> None:
    """A List Unit is nothing but its count: every count up to the limit is a value. Such a
    list is built from its count at once (each element used to be decoded from no bytes, one
    by one: seconds for the 4 bytes of a count of 2**24)."""
    assert encode_value(make_list([(), (), ()]), L_UNIT) == b"\x03"
    assert decode_value(b"\x03", L_UNIT) == make_list([(), (), ()])
    assert decode_value(b"\x00", L_UNIT) == EMPTY_LIST
    units = ListT(Prod(UNIT, Prod(UNIT, UNIT)))
    many = decode_value(uleb(2**20), units)
    assert len(many) == 2**20 and many[0] == many[-1] == ((), ((), ()))
    assert value_encoder(units)(many) == uleb(2**20)
    nested = ListT(ListT(UNIT))  # a list of lists of units still decodes each inner list
    assert decode_value(b"\x02\x01\x03", nested) == make_list(
        [make_list([()]), make_list([()] * 3)]
    )


def test_map_encoding_follows_insertion_order() -> None:
    """Two equal maps in different orders are different byte strings, each decoding to its
    own order (the order is how the map iterates, so it is part of what is stored)."""
    ab = OMap([("a", 1), ("b", 2)])
    ba = OMap([("b", 2), ("a", 1)])
    t = MapT(STR, INT)
    assert ab == ba
    assert encode_value(ab, t) == b"\x02\x01a\x01\x01b\x02"
    assert encode_value(ba, t) == b"\x02\x01b\x02\x01a\x01"
    assert list(decode_value(encode_value(ba, t), t).keys()) == ["b", "a"]
    emptied = ab.set("c", 3).delete("a")  # a hole in the slots does not show
    assert encode_value(emptied, t) == b"\x02\x01b\x02\x01c\x03"


@pytest.mark.parametrize(
    ("v", "t", "message"),
    [
        ([1, 2], L_INT, "expected a persistent list"),
        ({"a": 1}, M_INT, "expected an OMap"),
        ("\ud800", STR, "lone surrogate"),
        (b"text", STR, "expected Str"),
        (make_list(["a"]), L_INT, "expected Int"),
        (OMap([(1, "x")]), M_INT, "expected Int"),
        (OMap([("k", 1)]), M_INT, "expected Int"),
    ],
)
def test_encoding_refuses_values_of_another_type(v: object, t: Type, message: str) -> None:
    with pytest.raises(ValueTypeError, match=re.escape(message)):
        encode_value(v, t)


# --- standalone types -----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data_types(8))
def test_types_round_trip(t: Type) -> None:
    raw = encode_type(t)
    assert decode_type(raw) is t
    with pytest.raises(DecodeError, match="trailing"):
        decode_type(raw + b"\x00")
    if len(raw) > 1:
        with pytest.raises(DecodeError, match="unexpected end"):
            decode_type(raw[:-1])


def test_type_tags_of_format_2() -> None:
    assert encode_type(STR) == b"\x04"
    assert encode_type(ListT(INT)) == b"\x05\x01"
    assert encode_type(MapT(STR, ListT(UNIT))) == b"\x06\x04\x05\x00"
    assert decode_type(b"\x02\x04\x05\x04") is Prod(STR, ListT(STR))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x06\x05\x01\x01", "a map's key type may not hold a list or map"),
        (b"\x06\x02\x01\x06\x01\x01\x01", "a map's key type may not hold a list or map"),
        (b"\x07", "unknown type tag 7"),
        (b"\x05", "unexpected end"),
        (b"\x04\x04", "trailing bytes"),
        (b"\x05" * 60 + b"\x01", "nested deeper"),
    ],
)
def test_bad_types_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=re.escape(message)):
        decode_type(raw)


# --- modules --------------------------------------------------------------------------------


def _uses_format_2(m: Module) -> bool:
    """Independently of module.format_version: a new opcode or primitive, or a new type."""
    for f in m.functions:
        for instr in f.code:
            if instr.op not in V1_OPCODES:
                return True
            if instr.op is Opcode.PRIM and isinstance(instr.arg, Op) and instr.arg.value > 14:
                return True
    return any(isinstance(c, StrT | ListT | MapT) for t in type_table(m) for c in components(t))


@st.composite
def data_machine_modules(draw: st.DrawFn) -> Module:
    """Machines over format 2 types whose step keeps the state and outputs a generated term."""
    input_t, state_t = draw(data_types(3)), draw(data_types(3))
    output_t = draw(data_types(3))
    body = draw(data_terms(Prod(input_t, state_t), output_t, 2))
    init = constant(draw(data_values(state_t, 2)), state_t)
    custom = draw(st.dictionaries(st.text(min_size=1, max_size=4), st.binary(max_size=4)))
    return machine_module(input_t, state_t, output_t, init, Fanout(SND, body), custom=custom)


@settings(max_examples=50, deadline=None)
@given(data_machine_modules(), st.data())
def test_modules_with_collections_round_trip_in_format_2(m: Module, data: st.DataObject) -> None:
    """decode(encode(m)) == m and encode(decode(b)) == b; the version byte is 2 exactly when
    something of format 2 is used; a version byte that says otherwise is refused; the module
    loads, and both executors agree on a step, fuel included."""
    raw = encode_module(m)
    version = 2 if _uses_format_2(m) else 1
    assert raw[4] == version
    assert decode_module(raw) == m
    assert encode_module(decode_module(raw)) == raw
    other = raw[:4] + bytes([3 - version]) + raw[5:]
    with pytest.raises(DecodeError, match=f"says format version {3 - version}"):
        decode_module(other)
    loaded = load_module(raw)
    assert loaded.machine is not None
    value = (data.draw(data_values(loaded.machine.input)), loaded.init())
    outcomes = []
    for executor in ("vm", "fast"):
        try:
            result, used = loaded.run_metered(loaded.machine.step, value, executor, 100_000)
            outcomes.append(("ok", exact(result), used))
        except Trap as t:
            outcomes.append(("trap", t.kind, 0))
    assert outcomes[0] == outcomes[1]


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_modules_without_new_features_stay_in_format_1(data: st.DataObject) -> None:
    """A module of Unit, Int, products, sums and the first fifteen primitives is version 1."""
    input_t, state_t = data.draw(types(4)), data.draw(types(4))
    body = data.draw(terms(Prod(input_t, state_t), 3))
    output_t = infer(body, Prod(input_t, state_t))
    init = constant(data.draw(values(state_t)), state_t)
    m = machine_module(input_t, state_t, output_t, init, Fanout(SND, body))
    raw = encode_module(m)
    assert not _uses_format_2(m)
    assert raw[4] == 1
    assert decode_module(raw) == m


def test_one_new_instruction_or_type_makes_format_2() -> None:
    """The smallest uses of format 2: a text literal; a Str in a signature; a new primitive."""
    plain = machine_module(INT, INT, INT, Lit(0), Fanout(SND, SND))
    literal = machine_module(INT, INT, STR, Lit(0), Fanout(SND, StrLit("hi")))
    typed = machine_module(STR, INT, INT, Lit(0), Fanout(SND, SND))
    equal = compose(Fanout(SND, SND), Prim(Op.EQUAL))
    prim = machine_module(INT, INT, BOOL, Lit(0), Fanout(SND, equal))
    assert [encode_module(m)[4] for m in (plain, literal, typed, prim)] == [1, 2, 2, 2]
    for m in (literal, typed, prim):
        raw = encode_module(m)
        assert decode_module(raw) == m
        assert module_identity(raw) != module_identity(encode_module(plain))


def test_text_literals_in_modules_must_be_utf8() -> None:
    """A STR immediate is a uLEB length and UTF-8; a stray byte is refused."""
    m = machine_module(INT, INT, STR, Lit(0), Fanout(SND, StrLit("\u00e9")))
    raw = encode_module(m)
    at = raw.index("\u00e9".encode())
    bad = raw[:at] + b"\xff\xff" + raw[at + 2 :]
    with pytest.raises(DecodeError, match="text literal is not valid UTF-8"):
        decode_module(bad)


# --- the seed syntax and constants ----------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_seed_syntax_and_constants_round_trip(data: st.DataObject) -> None:
    """``parse(render(v, t), t)`` is ``v``, map order included (``Str "..."`` with JSON
    escapes, ``List [...]``, ``Map [k => v, ...]``); so is the value of ``constant(v, t)``."""
    t = data.draw(data_types(5), label="type")
    v = data.draw(data_values(t), label="value")
    assert exact(parse(render(v, t), t)) == exact(v)
    assert exact(evaluate(constant(v, t), ())) == exact(v)


@pytest.mark.parametrize(
    ("text", "t", "message"),
    [
        ('Map [Str "a" => Int 1, Str "a" => Int 2]', MapT(STR, INT), "appears twice"),
        ('Str "\\ud800"', STR, "lone surrogate"),
        ("List [Int 1 Int 2]", ListT(INT), "expected ','"),
        ("List [Int 1", ListT(INT), "missing ']'"),
    ],
)
def test_seed_syntax_refuses_what_is_not_a_value(text: str, t: Type, message: str) -> None:
    with pytest.raises(ValueTypeError, match=re.escape(message)):
        parse(text, t)
