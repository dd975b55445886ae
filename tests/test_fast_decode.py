"""The generated value decoders (hotswap.cam.fastdecode) against the closures they stand in for:
the same values from the same bytes, and the same errors, message and all, from any others."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.cam import fastdecode, values
from hotswap.cam.encoding import Reader
from hotswap.errors import DecodeError
from hotswap.lang.evaluate import Value
from hotswap.lang.ints import in_range
from hotswap.lang.persistent import OMap, make_list
from hotswap.lang.types import INT, UNIT, ListT, MapT, Prod, Sum, Type
from strategies import data_types, data_values


def _both(t: Type) -> tuple[Callable[[bytes], Value], Callable[[bytes], Value]]:
    """The closures' decoder and the generated one of ``t``, each with value_decoder's
    handling of the end of the data and of trailing bytes."""

    def whole(walk: Callable[[bytes, int], tuple[Value, int]]) -> Callable[[bytes], Value]:
        def decode(data: bytes) -> Value:
            try:
                v, pos = walk(data, 0)
            except IndexError:
                raise DecodeError("value: unexpected end of data") from None
            if pos != len(data):
                raise DecodeError(f"value: {len(data) - pos} trailing bytes")
            return v

        return decode

    generated = fastdecode.generated_decoder(t, values._READERS, values.min_width)
    return whole(values._build_decoder(t)), whole(generated)


def _outcome(decode: Callable[[bytes], Value], data: bytes) -> object:
    try:
        return ("value", decode(data))
    except DecodeError as e:
        return ("error", str(e))


@settings(max_examples=300)
@given(st.data())
def test_generated_decoders_agree_with_the_closures(data: st.DataObject) -> None:
    t = data.draw(data_types())
    v = data.draw(data_values(t))
    raw = values.value_encoder(t)(v)
    closures, generated = _both(t)
    assert generated(raw) == v
    damaged = data.draw(
        st.binary(max_size=len(raw) + 3)
        | st.just(raw[:-1])
        | st.just(raw + b"\x00")
        | st.builds(
            lambda at, b: raw[:at] + bytes([b]) + raw[at + 1 :],
            st.integers(0, max(len(raw) - 1, 0)),
            st.integers(0, 255),
        )
    )
    assert _outcome(generated, damaged) == _outcome(closures, damaged)


def _reference_int(data: bytes) -> object:
    r = Reader(data, 0, what="value")
    n = r.sleb()
    if not in_range(n) or r.pos not in (2, 3):
        return None
    return n, r.pos


@pytest.mark.parametrize("width", [2, 3])
def test_every_short_int_encoding_reads_as_the_reader_reads_it(width: int) -> None:
    """Every two- and three-byte sLEB128 (the ones read inline, minimal or not): the value the
    Reader gives, or a DecodeError where it refuses."""
    walk = fastdecode.generated_decoder(INT, values._READERS, values.min_width)
    lasts = range(0x80)
    middles = [b""] if width == 2 else [bytes([m]) for m in range(0x80, 0x100)]
    checked = 0
    for first in range(0x80, 0x100, 1 if width == 2 else 13):
        for middle in middles:
            for last in lasts:
                data = bytes([first]) + middle + bytes([last]) + b"\x05"
                try:
                    expected = _reference_int(data)
                except DecodeError:
                    expected = None
                try:
                    got: object = walk(data, 0)
                except DecodeError:
                    got = None
                assert got == expected, data.hex()
                checked += 1
    assert checked >= 128 * 128


@pytest.mark.parametrize(
    "t",
    [
        # deeper than the nesting one generated function holds: inner parts get their own
        ListT(ListT(ListT(ListT(ListT(ListT(ListT(ListT(INT)))))))),
        Sum(UNIT, Sum(UNIT, Sum(UNIT, Sum(UNIT, Sum(UNIT, Sum(UNIT, Sum(UNIT, Sum(INT, UNIT)))))))),
        MapT(INT, ListT(MapT(INT, ListT(MapT(INT, ListT(MapT(INT, Prod(INT, INT)))))))),
    ],
)
def test_deeply_nested_types_decode_alike(t: Type) -> None:
    closures, generated = _both(t)

    def sample(t: Type, depth: int = 0) -> Value:
        match t:
            case ListT(elem):
                return make_list([sample(elem, depth + 1), sample(elem, depth + 1)])
            case _:
                return values._build_decoder(t)(values.value_encoder(t)(_some(t)), 0)[0]

    v = sample(t)
    raw = values.value_encoder(t)(v)
    assert generated(raw) == closures(raw) == v
    for cut in range(len(raw)):
        assert _outcome(generated, raw[:cut]) == _outcome(closures, raw[:cut])


def _some(t: Type) -> Value:
    """A value of ``t`` with something in each collection."""
    match t:
        case Prod(a, b):
            return (_some(a), _some(b))
        case Sum(a, _):
            return (0, _some(a))
        case ListT(elem):
            return make_list([_some(elem)])
        case MapT(k, v):
            return OMap([(_some(k), _some(v))])
        case _:
            return () if t == UNIT else 300


def test_values_of_a_kilobyte_or_more_are_read_by_the_generated_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``value_decoder`` reads large values with the generated decoder, made at the first of
    them, and small ones with the closures: the same values and errors either way."""
    t = MapT(INT, Prod(ListT(INT), INT))
    made: list[Type] = []
    real = fastdecode.generated_decoder

    def counted(t: Type, *args: object) -> Callable[[bytes, int], tuple[Value, int]]:
        made.append(t)
        return real(t, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(fastdecode, "generated_decoder", counted)
    values.value_decoder.cache_clear()
    small = OMap([(1, (make_list([2]), 3))])
    large = OMap((k, (make_list(range(k % 5)), k)) for k in range(400))
    small_bytes, large_bytes = (values.value_encoder(t)(v) for v in (small, large))
    assert len(small_bytes) < values.GENERATED_FROM <= len(large_bytes)
    decode = values.value_decoder(t)
    assert decode(small_bytes) == small
    assert made == []  # a small value: the closures, nothing generated
    assert decode(large_bytes) == large
    assert decode(large_bytes) == large
    assert made == [t]  # made once, at the first large value
    threshold = values.GENERATED_FROM
    for damaged in (large_bytes[:-1], large_bytes + b"\x00", large_bytes[:300] + b"\x02"):
        generated = _outcome(decode, damaged)
        monkeypatch.setattr(values, "GENERATED_FROM", 1 << 40)  # the closures, for this one
        assert _outcome(decode, damaged) == generated
        assert generated[0] == "error"  # type: ignore[index]
        monkeypatch.setattr(values, "GENERATED_FROM", threshold)
    values.value_decoder.cache_clear()
