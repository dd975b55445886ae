"""The canonical, type-directed binary encoding of values (docs/bytecode.md, "Values").

    Unit      nothing
    Int       signed LEB128, minimal, within the signed 64-bit range
    A x B     the encoding of A, then of B
    A + B     one byte 0x00 (left) or 0x01 (right), then the payload
    Str       uLEB128 byte length, then UTF-8 (no surrogates; at most 2**20 code points)
    List A    uLEB128 count, then each element in order
    Map K V   uLEB128 count, then each key and its value, in insertion order; no key twice

The type is known to both sides, so nothing else is needed; decoding rejects trailing bytes,
so each value has exactly one encoding (a map's order is part of the value: it is how the map
iterates).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import lru_cache
from itertools import repeat
from typing import assert_never

from hotswap.cam import fastdecode, limits
from hotswap.cam.encoding import Reader, sleb, uleb
from hotswap.errors import DecodeError, ValueTypeError
from hotswap.lang.check import MAX_ELEMENTS, MAX_STR_LEN
from hotswap.lang.evaluate import Value
from hotswap.lang.ints import in_range
from hotswap.lang.persistent import EMPTY_LIST, OMap, bulk, make_list, safe_key
from hotswap.lang.types import (
    INT,
    STR,
    UNIT,
    IntT,
    ListT,
    MapT,
    Prod,
    StrT,
    Sum,
    Type,
    UnitT,
    is_key_type,
)
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
    """A standalone type, as its tree in pre-order: 0x00 Unit, 0x01 Int, 0x02 a b, 0x03 a b,
    0x04 Str, 0x05 a (List), 0x06 k v (Map).

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
            case StrT():
                out.append(4)
            case ListT(elem):
                out.append(5)
                stack.append(elem)
            case Prod(left, right) | Sum(left, right) | MapT(left, right):
                out.append(2 if isinstance(node, Prod) else 3 if isinstance(node, Sum) else 6)
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
    if tag == 4:
        return STR
    if tag == 5:
        return ListT(_decode_type(r, depth + 1))
    if tag in (2, 3, 6):
        left = _decode_type(r, depth + 1)
        right = _decode_type(r, depth + 1)
        if tag == 6:
            if not is_key_type(left):
                raise r.fail(f"a map's key type may not hold a list or map ({left})")
            return MapT(left, right)
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


def _build_encoder(t: Type, pace: Callable[[int], None] | None = None) -> _Enc:
    match t:
        case UnitT():
            return _encode_unit
        case IntT():
            return _encode_int
        case Prod(left, right):
            first, second = _build_encoder(left, pace), _build_encoder(right, pace)

            def pair(v: Value, out: bytearray) -> None:
                first(v[0], out)
                second(v[1], out)

            return pair
        case Sum(left, right):
            on_left, on_right = _build_encoder(left, pace), _build_encoder(right, pace)

            def tagged(v: Value, out: bytearray) -> None:
                if v[0]:
                    out.append(1)
                    on_right(v[1], out)
                else:
                    out.append(0)
                    on_left(v[1], out)

            return tagged
        case StrT():
            return _encode_str
        case ListT(elem):
            each = _build_encoder(elem, pace)
            if min_width(elem) == 0:  # Unit-like elements encode in no bytes: the count alone

                def count(v: Value, out: bytearray) -> None:
                    out += uleb(len(v))

                return count

            if pace is not None:

                def paused_items(v: Value, out: bytearray) -> None:
                    out += uleb(len(v))
                    for i, x in enumerate(v, 1):
                        each(x, out)
                        if not i & _PAUSE_MASK:
                            pace(_PAUSE_MASK + 1)
                    pace(len(v) & _PAUSE_MASK)

                return paused_items

            def items(v: Value, out: bytearray) -> None:
                out += uleb(len(v))
                for x in v:
                    each(x, out)

            return items
        case MapT(key, value):
            on_key, on_value = _build_encoder(key, pace), _build_encoder(value, pace)
            if pace is not None:

                def paused_entries(v: Value, out: bytearray) -> None:
                    out += uleb(len(v))
                    for i, (k, x) in enumerate(v.items(), 1):
                        on_key(k, out)
                        on_value(x, out)
                        if not i & _PAUSE_MASK:
                            pace(_PAUSE_MASK + 1)
                    pace(len(v) & _PAUSE_MASK)

                return paused_entries

            def entries(v: Value, out: bytearray) -> None:
                out += uleb(len(v))
                for k, x in v.items():
                    on_key(k, out)
                    on_value(x, out)

            return entries
        case _:
            assert_never(t)


class EncodingStopped(Exception):
    """A yielding encoder stopped at a pause: its thread's stop event is set
    (:func:`stop_yielding_on`)."""


#: Per thread: the event that stops the yielding encoders running on it (:func:`stop_yielding_on`).
_yielding = threading.local()


def stop_yielding_on(event: threading.Event) -> None:
    """Make the yielding encoders this thread runs stop, raising :class:`EncodingStopped`, at
    their first pause once ``event`` is set (a background snapshot's thread: its store closed)."""
    _yielding.stop = event


def _pause() -> None:
    time.sleep(_PAUSE_SECONDS)
    stop = getattr(_yielding, "stop", None)
    if stop is not None and stop.is_set():
        raise EncodingStopped


def _pacer() -> Callable[[int], None]:
    """The pauses of one yielding encoder: ``pace(n)`` says ``n`` more elements of its lists
    and maps are encoded, and sleeps once :data:`_PAUSE_MASK` + 1 have been since the last
    sleep. A large collection calls it every 256 of its own elements, every collection once
    with the rest of its count: so small collections count together (a map of a million
    entries, each a short list, sleeps once every 256 elements, not once per list: that took
    39 s for 200,000 entries of 3-element lists, against 0.5 s on the loop)."""
    left = _PAUSE_MASK + 1

    def pace(n: int) -> None:
        nonlocal left
        left -= n
        if left <= 0:
            left = _PAUSE_MASK + 1
            _pause()

    return pace


def _encode_str(v: Value, out: bytearray) -> None:
    raw = v.encode("utf-8")
    out += uleb(len(raw))
    out += raw


#: A yielding encoder (:func:`value_encoder`) sleeps :data:`_PAUSE_SECONDS` once every this
#: many plus one elements of its lists and maps, nested ones counted together (:func:`_pacer`).
_PAUSE_MASK = 255
_PAUSE_SECONDS = 0.00002


@lru_cache(maxsize=1024)
def value_encoder(t: Type, yielding: bool = False) -> Callable[[Value], bytes]:
    """A fast encoder for values of ``t`` known to be well typed (results of verified code).

    ``yielding`` is for an encoder on a thread of its own beside the event loop (a background
    snapshot): every 256 elements of its lists and maps (small nested ones counted together,
    :func:`_pacer`) it sleeps 20 us, giving the interpreter up.
    Without that, the loop, whenever it came back from a call into SQLite (which releases the
    interpreter) found the encoder holding it, and waited out the interpreter's switch interval
    (5 ms) each time: a batch of 100 inputs to a machine whose state of a million map entries
    was being encoded took up to 600 ms. With it, 99% of such batches took under 40 ms (the
    encoding on the loop itself: a stall of 2 to 2.7 s), and a fully loaded loop still lets
    the encoder take 256 elements at least every switch interval: a million entries within
    about 20 s."""
    if t is INT:
        return sleb  # which writes the short lengths out itself
    if t is UNIT:
        return lambda v: b""
    walk = _build_encoder(t, _pacer() if yielding else None)

    def encode(v: Value) -> bytes:
        out = bytearray()
        walk(v, out)
        return bytes(out)

    return encode


def _decode_int(data: bytes, pos: int) -> tuple[Value, int]:
    b = data[pos]
    if b < 0x80:  # one byte: always minimal
        return (b - 128 if b & 0x40 else b), pos + 1
    # Inline, for the valid encodings (a list of large ints decodes at a few hundred ns an
    # element, not microseconds); anything else is left to the Reader, whose errors say why.
    # Two bytes (-2**13 to 2**13 - 1) and three (-2**20 to 2**20 - 1) first, unrolled:
    # minimal when the last byte is not a mere extension of the sign of the one before, as in
    # the loop below.
    if pos + 1 < len(data):
        c = data[pos + 1]
        if c < 0x80:
            if (c != 0x7F or not b & 0x40) and (c or b & 0x40):
                return (b & 0x7F | c << 7) - (c & 0x40) * 0x100, pos + 2
        elif pos + 2 < len(data):
            d = data[pos + 2]
            if d < 0x80 and (d != 0x7F or not c & 0x40) and (d or c & 0x40):
                return (b & 0x7F | (c & 0x7F) << 7 | d << 14) - (d & 0x40) * 0x8000, pos + 3
    n, shift, end = b & 0x7F, 7, pos + 1
    limit = min(len(data), pos + 10)
    while end < limit:
        c = data[end]
        end += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            prev = data[end - 2]
            # minimal: the last byte is not a mere extension of the sign of the one before
            if c & 0x40:
                if c == 0x7F and prev & 0x40:
                    break
                n -= 1 << shift
            elif c == 0 and not prev & 0x40:
                break
            if shift <= 63 or in_range(n):  # nine bytes or fewer hold 63 bits at most
                return n, end
            break
    r = Reader(data, pos, what="value")
    n = r.sleb()
    if not in_range(n):
        raise DecodeError(f"value: {n} is outside the signed 64-bit range")
    return n, r.pos


def _decode_unit(data: bytes, pos: int) -> tuple[Value, int]:
    return (), pos


class _Budget(threading.local):
    """What a bounded decoder has left of its allowance of zero-width elements, per thread."""

    left = 0


#: A value decoded from a peer (an input) may hold this many elements of zero-width types,
#: summed over all its lists, beyond one per byte of its encoding.
ZERO_WIDTH_ALLOWANCE = 65_536


def _build_decoder(t: Type, budget: _Budget | None = None) -> _Dec:
    match t:
        case UnitT():
            return _decode_unit
        case IntT():
            return _decode_int
        case Prod(left, right):
            first, second = _build_decoder(left, budget), _build_decoder(right, budget)

            def pair(data: bytes, pos: int) -> tuple[Value, int]:
                a, pos = first(data, pos)
                b, pos = second(data, pos)
                return (a, b), pos

            return pair
        case Sum(left, right):
            on_left, on_right = _build_decoder(left, budget), _build_decoder(right, budget)

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
        case StrT():
            return _decode_str
        case ListT(elem):
            each, width = _build_decoder(elem, budget), min_width(elem)
            if width == 0:  # no bytes per element, so no bound from the bytes left

                def repeated(data: bytes, pos: int) -> tuple[Value, int]:
                    """A list of the one value of a Unit-like type: the count is all there is,
                    so the list is built without decoding each element (a 4-byte count of
                    2**24 would otherwise cost seconds of decoding)."""
                    at = pos
                    n, pos = _count(data, pos, "list", 0)
                    if budget is not None:
                        budget.left -= n
                        if budget.left < 0:
                            raise DecodeError(
                                f"value at byte {at}: a list of {n} elements of {elem} takes "
                                "more elements of zero-width types than a value received may "
                                f"hold (one per byte of its encoding, plus {ZERO_WIDTH_ALLOWANCE})"
                            )
                    x, _ = each(data, pos)
                    return make_list(repeat(x, n)), pos

                return repeated

            def items(data: bytes, pos: int) -> tuple[Value, int]:
                n, pos = _count(data, pos, "list", width)
                if n == 0:
                    return EMPTY_LIST, pos
                out = []
                for _ in range(n):
                    x, pos = each(data, pos)
                    out.append(x)
                return make_list(out), pos

            return items
        case MapT(key, value):
            on_key, on_value = _build_decoder(key, budget), _build_decoder(value, budget)
            width = min_width(key) + min_width(value)  # 0: one key at most, the rest repeat it

            def entries(data: bytes, pos: int) -> tuple[Value, int]:
                n, pos = _count(data, pos, "map", width)
                out = []
                seen = set()  # chosen hash collisions cost no more than others: a tuple key
                for _ in range(n):  # is seen by its safe key (an int or a str is safe in a set)
                    at = pos
                    k, pos = on_key(data, pos)
                    safe = safe_key(k) if type(k) is tuple else k
                    if safe in seen:
                        raise DecodeError(f"value at byte {at}: a map key appears twice")
                    seen.add(safe)
                    x, pos = on_value(data, pos)
                    out.append((k, x))
                return OMap(out), pos

            return entries
        case _:
            assert_never(t)


def _count(data: bytes, pos: int, what: str, width: int) -> tuple[int, int]:
    """A collection's count, refused before anything is built when it is past the limit or
    when the bytes left cannot hold that many elements of at least ``width`` bytes each."""
    if pos < len(data) and data[pos] < 0x80:  # one byte: the common case, inline
        n = data[pos]
        if n * width <= len(data) - pos - 1:
            return n, pos + 1
    r = Reader(data, pos, what="value")
    n = r.uleb(MAX_ELEMENTS)
    if n * width > len(data) - r.pos:
        raise DecodeError(
            f"value at byte {pos}: a {what} of {n} elements needs more bytes than are left"
        )
    return n, r.pos


def min_width(t: Type) -> int:
    """The fewest bytes any value of ``t`` encodes in (0 for Unit and products of Units)."""
    match t:
        case UnitT():
            return 0
        case Prod(left, right):
            return min_width(left) + min_width(right)
        case _:
            return 1


def _decode_str(data: bytes, pos: int) -> tuple[Value, int]:
    start = pos
    n = data[pos]
    if n < 0x80 and pos + 1 + n <= len(data):  # a short text: one length byte, always minimal
        raw, end = data[pos + 1 : pos + 1 + n], pos + 1 + n
        try:
            return raw.decode("utf-8"), end
        except UnicodeDecodeError as e:
            msg = f"value at byte {start}: text is not valid UTF-8 ({e.reason})"
            raise DecodeError(msg) from None
    r = Reader(data, pos, what="value")
    raw = r.take(r.uleb(4 * MAX_STR_LEN))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"value at byte {start}: text is not valid UTF-8 ({e.reason})") from None
    if len(text) > MAX_STR_LEN:
        raise DecodeError(f"value at byte {start}: text longer than {MAX_STR_LEN} code points")
    return text, r.pos


#: What a generated decoder reads with (:mod:`hotswap.cam.fastdecode`): the closures' own.
_READERS: dict[str, object] = {
    "_decode_int": _decode_int,
    "_decode_str": _decode_str,
    "_count": _count,
}

#: Values of at least this many bytes are read by a generated decoder (:func:`value_decoder`).
GENERATED_FROM = 1024

#: Values encoded in more bytes than this are decoded with the cyclic collector paused.
_BULK_BYTES = 1 << 16


@lru_cache(maxsize=1024)
def value_decoder(t: Type, bounded: bool = False) -> Callable[[bytes], Value]:
    """A fast decoder for canonical bytes of ``t``; the same checks as :func:`decode_value`.

    ``bounded`` is for values received from a peer (a node's inputs): a list of a zero-width
    type (``List Unit``) encodes in its count alone, so five bytes could ask for 2**24
    elements, and a list of such lists for that many times more. A bounded decoder refuses a
    value whose lists hold more zero-width elements, in total, than its encoding has bytes plus
    :data:`ZERO_WIDTH_ALLOWANCE`. States read back from the store are not bounded: a step may
    have built them, and recovery must read whatever a step could build."""
    if t.depth > limits.MAX_TYPE_DEPTH or t.size > limits.MAX_TYPE_SIZE:
        raise ValueTypeError(f"type {t} exceeds the limits on type depth or size")
    budget = _Budget() if bounded and _has_zero_width_list(t) else None
    walk = _build_decoder(t, budget)
    # Values of GENERATED_FROM bytes or more are read by a generated decoder (the same checks
    # and errors, one function: hotswap.cam.fastdecode), made at the first of them: making one
    # costs about 80 us a node of the type, which a small value (an input, say) would pay on
    # the loop at its code's first input and never win back.
    generable = not _has_zero_width_list(t) and t.size <= fastdecode.MAX_GENERATED_SIZE
    generated: list[_Dec] = []

    def decode(data: bytes) -> Value:
        if budget is not None:
            budget.left = len(data) + ZERO_WIDTH_ALLOWANCE
        if len(data) > _BULK_BYTES:
            with bulk():
                return _decode(data)
        return _decode(data)

    def _decode(data: bytes) -> Value:
        read = walk
        if generable and len(data) >= GENERATED_FROM:
            if not generated:
                generated.append(fastdecode.generated_decoder(t, _READERS, min_width))
            read = generated[0]
        try:
            v, pos = read(data, 0)
        except IndexError:
            raise DecodeError(f"value: unexpected end of data for a value of type {t}") from None
        if pos != len(data):
            raise DecodeError(f"value: {len(data) - pos} trailing bytes after a value of type {t}")
        return v

    return decode


def _has_zero_width_list(t: Type) -> bool:
    match t:
        case ListT(elem):
            return min_width(elem) == 0 or _has_zero_width_list(elem)
        case Prod(left, right) | Sum(left, right):
            return _has_zero_width_list(left) or _has_zero_width_list(right)
        case MapT(key, value):
            return _has_zero_width_list(key) or _has_zero_width_list(value)
        case _:
            return False
