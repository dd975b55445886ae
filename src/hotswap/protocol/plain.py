"""A reader of large payloads in the protocol's canonical CBOR, at the cost of copying their
byte strings once.

The reference decoder (``codec.decode_schema``) decodes a payload with cbor2 and then encodes
what it read again to compare it with the payload, so that only the one canonical encoding of a
message is accepted (docs/protocol.md, section 3). For an upgrade carrying two modules at the
size limit that is 130 ms of the event loop's time for 32 MiB, most of it cbor2 copying the
modules in and out again; a 64 MiB frame took twice that.

:func:`read_plain` reads the same items (maps with text keys, arrays, text, byte strings,
integers, ``true`` and ``false``) and checks each head as it goes: the shortest form, definite
lengths, keys that do not repeat, nothing after the item. What it returns is exactly what
cbor2 returns for the payload, and the payload is exactly what cbor2 encodes it as (the check
the reference makes by encoding again). Anything else (floats, tags, other simple values,
nesting deeper than the protocol's three containers, invalid UTF-8) it does not judge: it
returns None and the reference decoder decides, and writes the error.

:func:`write_plain` is the other way: the bytes cbor2 writes for such an item, a large reply
(a module, a state) copied once. tests/test_protocol_plain.py checks both agree with cbor2 on
random and mutated payloads.
"""

from __future__ import annotations

from hotswap.protocol.fastpath import head

#: Containers nest at most this deep (``codec.MAX_NESTING``: status_reply -> history -> entry).
MAX_DEPTH = 3

_UINT, _NEGATIVE, _BYTES, _TEXT, _ARRAY, _MAP, _SIMPLE = range(7)
_FALSE, _TRUE = 0xF4, 0xF5


class _Decline(Exception):
    """Not for this reader to judge: the reference decoder decides."""


def read_plain(payload: bytes | memoryview) -> object | None:
    """The item ``payload`` (bytes, or a view of them) encodes canonically, or None (not one
    this reader judges, or not canonical: the reference decoder then decides)."""
    if not isinstance(payload, bytes | memoryview):
        return None
    try:
        item, end = _item(payload, 0, 0)
    except (_Decline, IndexError, UnicodeDecodeError):
        return None
    return item if end == len(payload) else None


def _head(payload: bytes | memoryview, position: int) -> tuple[int, int, int]:
    """(major type, argument, next position) of the head at ``position``, in shortest form."""
    initial = payload[position]
    major, info = initial >> 5, initial & 0x1F
    if info < 24:
        return major, info, position + 1
    if info > 27 or major == _SIMPLE:
        raise _Decline  # indefinite lengths, reserved values, floats
    size = 1 << (info - 24)
    end = position + 1 + size
    if end > len(payload):
        raise _Decline
    argument = int.from_bytes(payload[position + 1 : end])
    if argument < (24 if size == 1 else 1 << (4 * size)):
        raise _Decline  # not the shortest form
    return major, argument, end


def _item(payload: bytes | memoryview, position: int, depth: int) -> tuple[object, int]:
    if payload[position] in (_FALSE, _TRUE):
        return payload[position] == _TRUE, position + 1
    major, argument, position = _head(payload, position)
    if major == _UINT:
        return argument, position
    if major == _NEGATIVE:
        return -1 - argument, position
    if major in (_BYTES, _TEXT):
        end = position + argument
        if end > len(payload):
            raise _Decline
        data = bytes(payload[position:end])  # of a view: the one copy
        return (data if major == _BYTES else data.decode("utf-8")), end
    if major == _ARRAY:
        if depth >= MAX_DEPTH:
            raise _Decline
        items = []
        for _ in range(argument):
            if position >= len(payload):
                raise _Decline  # a count no payload of this size could hold
            value, position = _item(payload, position, depth + 1)
            items.append(value)
        return items, position
    if major == _MAP:
        if depth >= MAX_DEPTH:
            raise _Decline
        pairs: dict[str, object] = {}
        for _ in range(argument):
            if position >= len(payload) or payload[position] >> 5 != _TEXT:
                raise _Decline  # the protocol's keys are text
            key, position = _item(payload, position, depth + 1)
            assert isinstance(key, str)
            if key in pairs:
                raise _Decline
            pairs[key], position = _item(payload, position, depth + 1)
        return pairs, position
    raise _Decline  # tags


def write_plain(item: object) -> bytes | None:
    """What ``cbor2.dumps(item)`` returns, for an item of the kinds :func:`read_plain` reads,
    with each byte string copied once; None for anything else (cbor2 then writes it)."""
    parts: list[bytes] = []
    try:
        _write(item, parts, 0)
    except (_Decline, UnicodeEncodeError):
        return None
    return b"".join(parts)


def _write(item: object, parts: list[bytes], depth: int) -> None:
    kind = type(item)
    if kind is bool:
        parts.append(b"\xf5" if item else b"\xf4")
    elif kind is int:
        assert isinstance(item, int)
        if not -(1 << 64) <= item < 1 << 64:
            raise _Decline  # a bignum: a tag
        parts.append(head(0x00, item) if item >= 0 else head(0x20, -1 - item))
    elif kind is bytes:
        assert isinstance(item, bytes)
        parts += (head(0x40, len(item)), item)
    elif kind is str:
        assert isinstance(item, str)
        raw = item.encode("utf-8")
        parts += (head(0x60, len(raw)), raw)
    elif kind is list and depth < MAX_DEPTH:
        assert isinstance(item, list)
        parts.append(head(0x80, len(item)))
        for value in item:
            _write(value, parts, depth + 1)
    elif kind is dict and depth < MAX_DEPTH:
        assert isinstance(item, dict)
        parts.append(head(0xA0, len(item)))
        for key, value in item.items():
            if type(key) is not str:
                raise _Decline
            _write(key, parts, depth + 1)
            _write(value, parts, depth + 1)
    else:
        raise _Decline
