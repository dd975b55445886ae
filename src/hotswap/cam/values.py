"""The canonical, type-directed binary encoding of values (docs/bytecode.md, "Values").

    Unit      nothing
    Int       signed LEB128, minimal, within the signed 64-bit range
    A x B     the encoding of A, then of B
    A + B     one byte 0x00 (left) or 0x01 (right), then the payload

The type is known to both sides, so nothing else is needed; decoding rejects trailing bytes,
so each value has exactly one encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import assert_never

from hotswap.cam import limits
from hotswap.cam.encoding import Reader, sleb
from hotswap.errors import DecodeError, ValueTypeError
from hotswap.lang.evaluate import Value
from hotswap.lang.ints import in_range
from hotswap.lang.types import INT, UNIT, IntT, Prod, Sum, Type, UnitT
from hotswap.lang.values import check_value


def encode_value(v: Value, t: Type) -> bytes:
    """The canonical bytes of ``v : t``; :class:`ValueTypeError` if ``v`` is not of type ``t``."""
    check_value(v, t)
    return value_encoder(t)(v)


def decode_value(data: bytes, t: Type) -> Value:
    """Decode the canonical bytes of a value of type ``t``, or raise :class:`DecodeError`
    (:class:`ValueTypeError` if ``t`` itself exceeds the limits on types)."""
    return value_decoder(t)(bytes(data))


def encode_type(t: Type) -> bytes:
    """A standalone type, as its tree in pre-order: 0x00 Unit, 0x01 Int, 0x02 a b, 0x03 a b.

    Used where a type travels on its own (a node's status reply); inside modules types live in
    the hash-consed type table instead."""
    if t.size > limits.MAX_TYPE_SIZE or t.depth > limits.MAX_TYPE_DEPTH:
        raise ValueTypeError(f"type {t} exceeds the limits on type depth or size")
    out = bytearray()
    stack = [t]
    while stack:
        node = stack.pop()
        match node:
            case UnitT():
                out.append(0)
            case IntT():
                out.append(1)
            case Prod(left, right) | Sum(left, right):
                out.append(2 if isinstance(node, Prod) else 3)
                stack.extend((right, left))
            case _:
                assert_never(node)
    return bytes(out)


def decode_type(data: bytes) -> Type:
    """Inverse of :func:`encode_type`; :class:`DecodeError` on anything else."""
    r = Reader(data, what="type")
    t = _decode_type(r, 0)
    if not r.at_end():
        raise r.fail("trailing bytes after a type")
    return t


def _decode_type(r: Reader, depth: int) -> Type:
    if depth > limits.MAX_TYPE_DEPTH:
        raise r.fail(f"type nested deeper than {limits.MAX_TYPE_DEPTH}")
    tag = r.byte()
    if tag == 0:
        return UNIT
    if tag == 1:
        return INT
    if tag in (2, 3):
        left = _decode_type(r, depth + 1)
        right = _decode_type(r, depth + 1)
        return Prod(left, right) if tag == 2 else Sum(left, right)
    r.pos -= 1
    raise r.fail(f"unknown type tag {tag}")


# --- compiled codecs ------------------------------------------------------------------------
# The one codec: a closure per (interned) type, built once and cached, so the node's work per
# step (decode an input, encode an output and a state) walks prebuilt closures instead of
# matching on the type at every node of the value. ``encode_value`` checks the value against
# its type first; ``value_encoder`` alone does not, since values produced by verified code are
# well typed. Decoding checks everything: minimal LEB128, the signed 64-bit range, sum tags,
# no trailing bytes.

_Enc = Callable[[Value, bytearray], None]
_Dec = Callable[[bytes, int], tuple[Value, int]]


def _encode_int(v: int, out: bytearray) -> None:
    if -64 <= v < 64:
        out.append(v & 0x7F)
    else:
        out += sleb(v)


def _encode_unit(v: Value, out: bytearray) -> None:
    return None


def _build_encoder(t: Type) -> _Enc:
    match t:
        case UnitT():
            return _encode_unit
        case IntT():
            return _encode_int
        case Prod(left, right):
            first, second = _build_encoder(left), _build_encoder(right)

            def pair(v: Value, out: bytearray) -> None:
                first(v[0], out)
                second(v[1], out)

            return pair
        case Sum(left, right):
            on_left, on_right = _build_encoder(left), _build_encoder(right)

            def tagged(v: Value, out: bytearray) -> None:
                if v[0]:
                    out.append(1)
                    on_right(v[1], out)
                else:
                    out.append(0)
                    on_left(v[1], out)

            return tagged
        case _:
            assert_never(t)


@lru_cache(maxsize=1024)
def value_encoder(t: Type) -> Callable[[Value], bytes]:
    """A fast encoder for values of ``t`` known to be well typed (results of verified code)."""
    if t is INT:
        return lambda v: bytes((v & 0x7F,)) if -64 <= v < 64 else sleb(v)
    if t is UNIT:
        return lambda v: b""
    walk = _build_encoder(t)

    def encode(v: Value) -> bytes:
        out = bytearray()
        walk(v, out)
        return bytes(out)

    return encode


def _decode_int(data: bytes, pos: int) -> tuple[Value, int]:
    b = data[pos]
    if b < 0x80:  # one byte: always minimal
        return (b - 128 if b & 0x40 else b), pos + 1
    r = Reader(data, pos, what="value")
    n = r.sleb()
    if not in_range(n):
        raise DecodeError(f"value: {n} is outside the signed 64-bit range")
    return n, r.pos


def _decode_unit(data: bytes, pos: int) -> tuple[Value, int]:
    return (), pos


def _build_decoder(t: Type) -> _Dec:
    match t:
        case UnitT():
            return _decode_unit
        case IntT():
            return _decode_int
        case Prod(left, right):
            first, second = _build_decoder(left), _build_decoder(right)

            def pair(data: bytes, pos: int) -> tuple[Value, int]:
                a, pos = first(data, pos)
                b, pos = second(data, pos)
                return (a, b), pos

            return pair
        case Sum(left, right):
            on_left, on_right = _build_decoder(left), _build_decoder(right)

            def tagged(data: bytes, pos: int) -> tuple[Value, int]:
                tag = data[pos]
                if tag == 0:
                    v, pos = on_left(data, pos + 1)
                    return (0, v), pos
                if tag == 1:
                    v, pos = on_right(data, pos + 1)
                    return (1, v), pos
                raise DecodeError(f"value at byte {pos}: sum tag must be 0 or 1, got {tag}")

            return tagged
        case _:
            assert_never(t)


@lru_cache(maxsize=1024)
def value_decoder(t: Type) -> Callable[[bytes], Value]:
    """A fast decoder for canonical bytes of ``t``; the same checks as :func:`decode_value`."""
    if t.depth > limits.MAX_TYPE_DEPTH or t.size > limits.MAX_TYPE_SIZE:
        raise ValueTypeError(f"type {t} exceeds the limits on type depth or size")
    walk = _build_decoder(t)

    def decode(data: bytes) -> Value:
        try:
            v, pos = walk(data, 0)
        except IndexError:
            raise DecodeError(f"value: unexpected end of data for a value of type {t}") from None
        if pos != len(data):
            raise DecodeError(f"value: {len(data) - pos} trailing bytes after a value of type {t}")
        return v

    return decode
