"""The canonical, type-directed binary encoding of values (docs/bytecode.md, "Values").

    Unit      nothing
    Int       signed LEB128, minimal, within the signed 64-bit range
    A x B     the encoding of A, then of B
    A + B     one byte 0x00 (left) or 0x01 (right), then the payload

The type is known to both sides, so nothing else is needed; decoding rejects trailing bytes,
so each value has exactly one encoding.
"""

from __future__ import annotations

from typing import assert_never

from hotswap.cam import limits
from hotswap.cam.encoding import Reader, sleb
from hotswap.errors import DecodeError, ValueTypeError
from hotswap.lang.evaluate import Value
from hotswap.lang.ints import in_range
from hotswap.lang.types import IntT, Prod, Sum, Type, UnitT
from hotswap.lang.values import check_value


def encode_value(v: Value, t: Type) -> bytes:
    """The canonical bytes of ``v : t``; :class:`ValueTypeError` if ``v`` is not of type ``t``."""
    check_value(v, t)
    out = bytearray()
    _encode(v, t, out)
    return bytes(out)


def _encode(v: Value, t: Type, out: bytearray) -> None:
    match t:
        case UnitT():
            pass
        case IntT():
            out += sleb(v)
        case Prod(left, right):
            _encode(v[0], left, out)
            _encode(v[1], right, out)
        case Sum(left, right):
            out.append(v[0])
            _encode(v[1], right if v[0] else left, out)
        case _:
            assert_never(t)


def decode_value(data: bytes, t: Type) -> Value:
    """Decode the canonical bytes of a value of type ``t``, or raise :class:`DecodeError`."""
    if t.depth > limits.MAX_TYPE_DEPTH or t.size > limits.MAX_TYPE_SIZE:
        raise ValueTypeError(f"type {t} exceeds the limits on type depth or size")
    reader = Reader(data, what="value")
    v = _decode(reader, t)
    if not reader.at_end():
        raise reader.fail(f"{len(data) - reader.pos} trailing bytes after a value of type {t}")
    return v


def _decode(r: Reader, t: Type) -> Value:
    match t:
        case UnitT():
            return ()
        case IntT():
            n = r.sleb()
            if not in_range(n):
                raise DecodeError(f"value: {n} is outside the signed 64-bit range")
            return n
        case Prod(left, right):
            a = _decode(r, left)
            return (a, _decode(r, right))
        case Sum(left, right):
            tag = r.byte()
            if tag > 1:
                r.pos -= 1
                raise r.fail(f"sum tag must be 0 or 1, got {tag}")
            return (tag, _decode(r, right if tag else left))
        case _:
            assert_never(t)
