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

Given a ``limit``, it counts the items it reads (every integer, text, byte string, boolean,
array and map, keys included) and raises :class:`TooManyItems` past it, checking an array's or
map's count against what is left before reading any of its contents: so a frame of millions of
one-byte items is refused after at most ``limit`` of them, not decoded whole. With ``strict``,
a payload it does not judge is refused (:class:`NotPlain`, saying where and why) instead of
being left to the reference decoder: what a client sends holds nothing but the kinds it reads.

:func:`write_plain` is the other way: the bytes cbor2 writes for such an item, a large reply
(a module, a state) copied once. tests/test_protocol_plain.py checks both agree with cbor2 on
random and mutated payloads.
"""

from __future__ import annotations

from hotswap.protocol.fastpath import head

#: Containers nest at most this deep (``codec.MAX_NESTING``: status_reply -> history -> entry).
MAX_DEPTH = 3

_UINT, _NEGATIVE, _BYTES, _TEXT, _ARRAY, _MAP, _TAG, _SIMPLE = range(8)
_FALSE, _TRUE = 0xF4, 0xF5


class _Decline(Exception):
    """Not for this reader to judge: the reference decoder decides (the argument says why)."""


class TooManyItems(Exception):
    """The payload holds more items than the reader's ``limit``."""


class NotPlain(Exception):
    """With ``strict``: the payload is not one this reader judges, so not a client's message."""


class _Budget(Exception):
    """The item budget ran out."""


def read_plain(
    payload: bytes | memoryview, limit: int | None = None, *, strict: bool = False
) -> object | None:
    """The item ``payload`` (bytes, or a view of them) encodes canonically, or None (not one
    this reader judges, or not canonical: the reference decoder then decides; with
    ``strict``, :class:`NotPlain` instead). Past ``limit`` items, :class:`TooManyItems`."""
    if not isinstance(payload, bytes | memoryview):
        return None
    budget = [1 << 62 if limit is None else limit]
    try:
        item, end = _item(payload, 0, 0, budget)
    except (_Decline, IndexError, UnicodeDecodeError) as e:
        if not strict:
            return None
        if isinstance(e, IndexError):
            raise NotPlain("it ends inside an item") from None
        if isinstance(e, UnicodeDecodeError):
            raise NotPlain("a text is not valid UTF-8") from None
        raise NotPlain(str(e)) from None
    except _Budget:
        raise TooManyItems(f"more than {limit}") from None
    if end != len(payload):
        if strict:
            raise NotPlain(f"{len(payload) - end} trailing byte(s) after the map")
        return None
    return item


def _head(payload: bytes | memoryview, position: int) -> tuple[int, int, int]:
    """(major type, argument, next position) of the head at ``position``, in shortest form."""
    initial = payload[position]
    major, info = initial >> 5, initial & 0x1F
    if info < 24:
        return major, info, position + 1
    if major == _TAG:
        raise _Decline(f"byte {position} holds a tag")
    if major == _SIMPLE:  # floats and simple values (true and false are read before the head)
        raise _Decline(f"byte {position} holds a float or a simple value")
    if info > 27:
        raise _Decline(f"byte {position} holds an indefinite length or a reserved value")
    size = 1 << (info - 24)
    end = position + 1 + size
    if end > len(payload):
        raise _Decline("it ends inside an item")
    argument = int.from_bytes(payload[position + 1 : end])
    if argument < (24 if size == 1 else 1 << (4 * size)):
        raise _Decline(f"the head at byte {position} is not in its shortest form")
    return major, argument, end


def _item(
    payload: bytes | memoryview, position: int, depth: int, budget: list[int]
) -> tuple[object, int]:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Budget
    if payload[position] in (_FALSE, _TRUE):
        return payload[position] == _TRUE, position + 1
    at = position
    major, argument, position = _head(payload, position)
    if major == _UINT:
        return argument, position
    if major == _NEGATIVE:
        return -1 - argument, position
    if major in (_BYTES, _TEXT):
        end = position + argument
        if end > len(payload):
            raise _Decline("it ends inside an item")
        data = bytes(payload[position:end])  # of a view: the one copy
        return (data if major == _BYTES else data.decode("utf-8")), end
    if major in (_ARRAY, _MAP):
        if depth >= MAX_DEPTH:
            raise _Decline(f"the container at byte {at} nests deeper than {MAX_DEPTH}")
        # checked before any of its contents is read: a count no payload this size holds,
        # and one past the budget (each entry is one item, a map's two), are refused at once
        if argument > len(payload) - position:
            raise _Decline("it ends inside an item")
        if argument * (1 + (major == _MAP)) > budget[0]:
            raise _Budget
    if major == _ARRAY:
        items = []
        for _ in range(argument):
            value, position = _item(payload, position, depth + 1, budget)
            items.append(value)
        return items, position
    if major == _MAP:
        pairs: dict[str, object] = {}
        for _ in range(argument):
            if position >= len(payload) or payload[position] >> 5 != _TEXT:
                raise _Decline(f"a key of the map at byte {at} is not a text")
            key, position = _item(payload, position, depth + 1, budget)
            assert isinstance(key, str)
            if key in pairs:
                raise _Decline(f"the map at byte {at} repeats the key {key[:40]!r}")
            pairs[key], position = _item(payload, position, depth + 1, budget)
        return pairs, position
    raise _Decline(f"byte {at} holds {'a tag' if major == _TAG else 'a float or a simple value'}")


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
