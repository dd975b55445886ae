"""The module format and the value encoding: canonical round trips, and total decoding."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap import load_module
from hotswap.cam.build import machine_module, migration_module
from hotswap.cam.encoding import Reader, sleb, uleb
from hotswap.cam.fuzz import fuzz
from hotswap.cam.module import Module, decode_module, encode_module, module_identity
from hotswap.cam.values import decode_value, encode_value, value_encoder
from hotswap.errors import DecodeError
from hotswap.examples import handbuilt
from hotswap.lang.check import infer
from hotswap.lang.terms import SND, Fanout, Lit
from hotswap.lang.types import INT, UNIT, Prod, Sum, Type
from hotswap.lang.values import constant
from strategies import terms, types, values


@st.composite
def machine_modules(draw: st.DrawFn) -> Module:
    """Machines with random types whose step keeps the state and outputs a random term."""
    input_t, state_t = draw(types(4)), draw(types(4))
    body = draw(terms(Prod(input_t, state_t), 3))
    output_t = infer(body, Prod(input_t, state_t))
    init = constant(draw(values(state_t)), state_t)
    custom = draw(st.dictionaries(st.text(min_size=1, max_size=5), st.binary(max_size=8)))
    return machine_module(input_t, state_t, output_t, init, Fanout(SND, body), custom=custom)


@settings(max_examples=100, deadline=None)
@given(machine_modules())
def test_module_round_trips_on_objects_and_bytes(m: Module) -> None:
    """decode(encode(m)) == m, and encode(decode(b)) == b."""
    data = encode_module(m)
    assert decode_module(data) == m
    assert encode_module(decode_module(data)) == data


@settings(max_examples=50, deadline=None)
@given(machine_modules(), st.binary(min_size=1, max_size=4))
def test_custom_sections_do_not_change_identity(m: Module, extra: bytes) -> None:
    """Names and source live in custom sections, outside the identity."""
    other = Module(m.functions, m.machine, m.migration, (*m.custom, ("\uffff", extra)))
    assert module_identity(encode_module(m)) == module_identity(encode_module(other))
    assert encode_module(m) != encode_module(other)


@given(st.integers(0, 2**64 - 1))
def test_uleb_round_trip(n: int) -> None:
    assert Reader(uleb(n)).uleb() == n


@given(st.integers(-(2**63), 2**63 - 1))
def test_sleb_round_trip(n: int) -> None:
    assert Reader(sleb(n)).sleb() == n


def test_sleb_written_out_lengths_are_minimal_at_every_boundary() -> None:
    """The lengths of one to three bytes are written out: around each boundary where the
    length changes, every integer reads back, minimal (the reader refuses any other), and
    one byte longer than the one before the boundary."""
    for bits in (6, 13, 20, 27):
        for edge in (1 << bits, -(1 << bits)):
            for n in range(edge - 300, edge + 300):
                assert Reader(sleb(n)).sleb() == n
                assert len(sleb(n)) == (max(n, ~n).bit_length() + 7) // 7
    assert [len(sleb(n)) for n in (63, 64, -64, -65, 8191, 8192, -8192, -8193)] == [
        1,
        2,
        1,
        2,
        2,
        3,
        2,
        3,
    ]


@pytest.mark.parametrize(
    ("raw", "signed", "message"),
    [
        (b"\x80\x00", False, "non-minimal unsigned"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", False, "longer than 10 bytes"),
        (b"\xff\x7f", True, "non-minimal signed"),
        (b"\x80\x00", True, "non-minimal signed"),
        (b"\x80", False, "unexpected end"),
    ],
)
def test_leb_rejects_non_minimal_and_truncated(raw: bytes, signed: bool, message: str) -> None:
    """Only the minimal encoding of each integer decodes."""
    r = Reader(raw)
    with pytest.raises(DecodeError, match=message):
        r.sleb() if signed else r.uleb()


@settings(max_examples=200)
@given(st.data())
def test_values_round_trip_canonically(data: st.DataObject) -> None:
    """decode(encode(v)) == v, and trailing or missing bytes are rejected."""
    t = data.draw(types())
    v = data.draw(values(t))
    raw = encode_value(v, t)
    assert decode_value(raw, t) == v
    with pytest.raises(DecodeError, match="trailing"):
        decode_value(raw + b"\x00", t)


@settings(max_examples=200)
@given(st.data())
def test_value_decoding_is_total_and_canonical(data: st.DataObject) -> None:
    """Arbitrary bytes either decode to a value whose encoding is exactly those bytes, or are
    rejected with DecodeError: one value, one byte string."""
    t = data.draw(types())
    v = data.draw(values(t))
    raw = encode_value(v, t)
    assert value_encoder(t)(v) == raw
    damaged = data.draw(st.binary(max_size=len(raw) + 2) | st.just(raw[:-1] + b"\x80"))
    try:
        decoded = decode_value(damaged, t)
    except DecodeError:
        return
    assert encode_value(decoded, t) == damaged


@pytest.mark.parametrize(
    ("raw", "t", "message"),
    [
        (b"\x02", Sum(UNIT, UNIT), "sum tag must be 0 or 1"),
        (b"", INT, "unexpected end"),
        (b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", INT, "outside the signed 64-bit range"),
    ],
)
def test_value_decoding_names_the_problem(raw: bytes, t: Type, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_value(raw, t)


def _counter_bytes() -> bytes:
    return encode_module(handbuilt.counter_module())


def _with_section(data: bytes, section: bytes) -> bytes:
    return data + section


MALFORMED = [
    (lambda b: b"\x00abc" + b[4:], "bad magic"),
    (lambda b: b[:4] + b"\x03" + b[5:], "unsupported module format version 3"),
    (lambda b: b[:4] + b"\x02" + b[5:], "says format version 2, but it uses nothing of it"),
    (lambda b: b[:5], "needs a types and a functions section"),
    (lambda b: b + b"\x07\x00", "unknown section id 7"),
    (lambda b: b + b"\x01\x00", "out of order or repeated"),
    (lambda b: b + b"\x00\x01\x00", "empty, repeated or out of order"),
    (lambda b: b + b"\x00\x02\x01b\x00\x02\x01a", "empty, repeated or out of order"),
    (lambda b: b + b"\x00\x02\x01\xff", "not UTF-8"),
    (lambda b: b[:-1], "section 3 of 5 bytes overruns the data"),
]


@pytest.mark.parametrize(("mutate", "message"), MALFORMED)
def test_malformed_modules_are_rejected_with_a_reason(mutate: object, message: str) -> None:
    """Each kind of damage is named in the error."""
    assert callable(mutate)
    with pytest.raises(DecodeError, match=re.escape(message)):
        decode_module(mutate(_counter_bytes()))


def test_non_canonical_type_table_is_rejected() -> None:
    """A duplicated or unused type, or types out of order, are rejected."""
    m = handbuilt.counter_module()
    data = encode_module(m)
    # types section: id 1, size, count, entries; append an unused Unit-x-Unit type at the end
    size = data[6]
    count = data[7]
    body = data[8 : 7 + size]
    extra = bytes([count + 1]) + body + b"\x02\x00\x00"
    patched = data[:5] + b"\x01" + uleb(len(extra)) + extra + data[7 + size :]
    with pytest.raises(DecodeError, match=r"unused types|repeats"):
        decode_module(patched)
    duplicate = bytes([count + 1]) + body + b"\x00"
    patched = data[:5] + b"\x01" + uleb(len(duplicate)) + duplicate + data[7 + size :]
    with pytest.raises(DecodeError, match="repeats an earlier type"):
        decode_module(patched)


def test_migration_module_round_trip() -> None:
    """A migration module carries one function old -> new."""
    m = migration_module(INT, Prod(INT, INT), Fanout(Lit(0), Lit(0)))
    data = encode_module(m)
    loaded = load_module(data)
    assert loaded.migration is not None and loaded.migration.new == Prod(INT, INT)
    assert loaded.migrate(5) == (0, 0)
    assert loaded.machine is None


def _seeds() -> list[bytes]:
    return [
        encode_module(handbuilt.counter_module()),
        encode_module(handbuilt.bank_module()),
        encode_module(migration_module(INT, Prod(INT, INT), Fanout(Lit(1), Lit(2)))),
    ]


def test_ten_thousand_mutants_raise_only_our_errors() -> None:
    """Flipped, inserted and deleted bytes never raise anything but our rejection errors,
    and every mutant that is accepted runs, with the VM and the fast path agreeing."""
    report = fuzz(_seeds(), 10_000, seed=20261128)
    assert report.mutants == 10_000
    assert sum(report.reasons.values()) > 9_000  # most mutations break form or typing
    assert report.accepted > 0  # ...but some survive, and ran inside fuzz()
