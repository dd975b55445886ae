"""Field kinds: the strict CBOR type of every field, checked in both directions.

A kind turns a decoded CBOR item into the event's Python value (``decode``) and an event's value
into the item to encode (``encode``), raising :class:`InvalidField` with a reason that names
what was wrong. The checks are exact: a text string where a byte string is expected is an
error, booleans are not integers, integers are bounded, floats are finite, records have exactly
their keys in canonical order (docs/protocol.md, "Payload encoding"). The codec adds the
message and field names to the reason and raises Local- or RemoteProtocolError by direction.

The kinds are small objects rather than a class hierarchy over values because the codec calls
them once per field per message on the hot path: one method call, one ``type(...) is`` test.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any

from hotswap.protocol.events import (
    HANDSHAKE_MAX_FRAME,
    MAX_FRAME_LIMIT,
    MAX_KEY_BYTES,
    MAX_PAGE,
    MAX_UINT,
    CodeCount,
    DryRunDifference,
    ErrorCode,
    HistoryEntry,
    HistoryKind,
    MachineEntry,
    ReleasedEntry,
    ReleaseItem,
    SweepProgress,
    TrappedInstance,
)


class InvalidField(ValueError):
    """A field's value is not of its kind; the message says why."""


_CBOR_NAMES: dict[type, str] = {
    bytes: "byte string",
    str: "text string",
    int: "integer",
    bool: "boolean",
    float: "float",
    list: "array",
    dict: "map",
    type(None): "null",
}


def describe(value: object) -> str:
    """Name the CBOR item a decoded value came from, for error messages."""
    name = _CBOR_NAMES.get(type(value))
    if name is None:
        return f"a tagged or special item ({type(value).__name__})"
    if value is None:
        return name
    if isinstance(value, (bytes, str, list, dict)):
        return f"{name} of length {len(value)}"
    return f"{name} {value!r}"


def canonical_order(keys: Iterable[str]) -> tuple[str, ...]:
    """Keys in the order of RFC 8949 section 4.2.1: shorter first, then bytewise."""
    return tuple(sorted(keys, key=lambda k: (len(k.encode()), k.encode())))


class Kind:
    """A field kind; subclasses check one CBOR type."""

    __slots__ = ("description",)

    def __init__(self, description: str) -> None:
        self.description = description

    def decode(self, value: object) -> object:
        """Check a received item and return the event's value."""
        raise NotImplementedError

    def encode(self, value: object) -> object:
        """Check an event's value and return the item to send."""
        return self.decode(value)

    def has_float(self) -> bool:
        """Whether items of this kind may contain floats (which need canonical mode)."""
        return False

    def _wrong(self, value: object) -> InvalidField:
        return InvalidField(f"expected {self.description}, got {describe(value)}")


class UInt(Kind):
    """An unsigned integer in ``[low, high]``; booleans are not integers."""

    __slots__ = ("high", "low")

    def __init__(self, low: int = 0, high: int = MAX_UINT) -> None:
        super().__init__(f"an unsigned integer in [{low}, {high}]")
        self.low = low
        self.high = high

    def decode(self, value: object) -> object:
        if type(value) is not int or not self.low <= value <= self.high:
            raise self._wrong(value)
        return value


class Bytes(Kind):
    """A byte string (values, types and modules are opaque here)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("a byte string")

    def decode(self, value: object) -> object:
        if type(value) is not bytes:
            raise self._wrong(value)
        return value


class Text(Kind):
    """A text string of at most ``max_chars`` characters, optionally matching ``pattern``."""

    __slots__ = ("matches", "max_chars")

    def __init__(self, description: str, max_chars: int, pattern: str | None = None) -> None:
        super().__init__(description)
        self.max_chars = max_chars
        self.matches: Callable[[str], object] | None = (
            None if pattern is None else re.compile(pattern).fullmatch
        )

    def decode(self, value: object) -> object:
        if type(value) is not str or len(value) > self.max_chars:
            raise self._wrong(value)
        if self.matches is not None and self.matches(value) is None:
            raise InvalidField(f"expected {self.description}, got {value[:80]!r}")
        return value


class Key(Kind):
    """An instance key: a text string of 1 to ``MAX_KEY_BYTES`` bytes of UTF-8, without NUL
    (a key must fit any SQL text column, PostgreSQL's included, which refuses NUL)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(f"an instance key (1 to {MAX_KEY_BYTES} bytes of UTF-8, no NUL)")

    def decode(self, value: object) -> object:
        if type(value) is not str:
            raise self._wrong(value)
        problem = key_problem(value)
        if problem is not None:
            raise InvalidField(problem)
        return value


def key_problem(key: str) -> str | None:
    """What is wrong with ``key`` as an instance key, or None."""
    if not key:
        return "an instance key is 1 to 256 bytes of UTF-8, not empty"
    if len(key) > MAX_KEY_BYTES:
        return f"an instance key is at most {MAX_KEY_BYTES} bytes of UTF-8, this one is longer"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as e:
        return f"an instance key must be valid UTF-8: {e.reason} at character {e.start}"
    if size > MAX_KEY_BYTES:
        return f"an instance key is at most {MAX_KEY_BYTES} bytes of UTF-8, this one is {size}"
    if "\0" in key:
        return "an instance key may not contain NUL (U+0000)"
    return None


class TextArray(Kind):
    """An array of at most ``max_items`` items of ``item`` (a text kind), decoded to a tuple,
    strictly increasing when ``increasing`` (by code point, which is UTF-8 byte order)."""

    __slots__ = ("increasing", "item", "max_items")

    def __init__(self, item: Kind, max_items: int, *, increasing: bool = False) -> None:
        order = ", strictly increasing" if increasing else ""
        super().__init__(f"an array of at most {max_items} {item.description}s{order}")
        self.item = item
        self.max_items = max_items
        self.increasing = increasing

    def decode(self, value: object) -> object:
        if type(value) is not list or len(value) > self.max_items:
            raise self._wrong(value)
        items = tuple(_item(self.item.decode, element, i) for i, element in enumerate(value))
        self._check(items)
        return items

    def encode(self, value: object) -> object:
        if type(value) is not tuple or len(value) > self.max_items:
            raise InvalidField(f"expected a tuple of at most {self.max_items} items")
        items = [_item(self.item.encode, element, i) for i, element in enumerate(value)]
        self._check(value)
        return items

    def _check(self, items: tuple[Any, ...]) -> None:
        if self.increasing:
            for i in range(1, len(items)):
                if not items[i - 1] < items[i]:
                    raise InvalidField(f"item {i} does not follow item {i - 1} in order")


class Boolean(Kind):
    """A CBOR true or false (never an integer)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("a boolean")

    def decode(self, value: object) -> object:
        if type(value) is not bool:
            raise self._wrong(value)
        return value


class TextList(Kind):
    """An array of at most ``max_items`` text strings of ``item``, decoded to a tuple."""

    __slots__ = ("item", "max_items")

    def __init__(self, item: Text, max_items: int) -> None:
        super().__init__(f"an array of at most {max_items} {item.description}s")
        self.item = item
        self.max_items = max_items

    def decode(self, value: object) -> object:
        if type(value) is not list or len(value) > self.max_items:
            raise self._wrong(value)
        return tuple(_item(self.item.decode, element, i) for i, element in enumerate(value))

    def encode(self, value: object) -> object:
        if type(value) is not tuple or len(value) > self.max_items:
            raise InvalidField(f"expected a tuple of at most {self.max_items} strings")
        return [_item(self.item.encode, element, i) for i, element in enumerate(value)]


class Finite(Kind):
    """A finite float (CBOR major type 7, shortest of half, single or double precision)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("a finite float")

    def decode(self, value: object) -> object:
        if type(value) is not float or not math.isfinite(value):
            raise self._wrong(value)
        return value

    def has_float(self) -> bool:
        return True


class Choice(Kind):
    """A text string from a closed set, decoded to a member of ``enum``."""

    __slots__ = ("enum",)

    def __init__(self, enum: type[StrEnum]) -> None:
        names = ", ".join(repr(member.value) for member in enum)
        super().__init__(f"one of {names}")
        self.enum = enum

    def decode(self, value: object) -> object:
        if type(value) is not str or value not in self.enum._value2member_map_:
            raise self._wrong(value)
        return self.enum(value)

    def encode(self, value: object) -> object:
        if not isinstance(value, str) or value not in self.enum._value2member_map_:
            raise self._wrong(value)
        return str(self.enum(value).value)


class Record(Kind):
    """A map with exactly ``fields`` (in canonical order), decoded to an instance of ``cls``;
    and ``optional`` fields (key -> kind and default), present only when not their default,
    by the rule of top-level optional fields (docs/protocol.md, section 3.2). A kind without
    them never encodes them: a peer of an earlier version gets the record without them."""

    __slots__ = ("cls", "fields", "keys", "optional")

    def __init__(
        self,
        cls: type,
        fields: dict[str, Kind],
        optional: dict[str, tuple[Kind, object]] | None = None,
    ) -> None:
        super().__init__(f"a {cls.__name__} map")
        self.cls = cls
        self.fields = fields  # in the dataclass's field order
        self.keys = canonical_order(fields)
        self.optional = optional or {}

    def decode(self, value: object) -> object:
        if type(value) is not dict:
            raise self._wrong(value)
        if not self.optional or len(value) == len(self.keys):
            check_keys(value, self.keys)
            extra: dict[str, object] = {}
        else:
            present = [key for key in value if key in self.optional]
            check_keys(value, canonical_order([*self.fields, *present]))
            extra = {}
            for key in present:
                kind, default = self.optional[key]
                item = _field(kind.decode, value[key], key)
                if item == default:
                    raise InvalidField(f"field {key!r}: has its default value: leave it out")
                extra[key] = item
        return self.cls(
            *[_field(kind.decode, value[key], key) for key, kind in self.fields.items()],
            **extra,
        )

    def encode(self, value: object) -> object:
        if type(value) is not self.cls:
            msg = f"expected a {self.cls.__name__}, got {type(value).__name__}"
            raise InvalidField(msg)
        item = {key: _field(self.fields[key].encode, getattr(value, key), key) for key in self.keys}
        extra = {
            key: _field(kind.encode, getattr(value, key), key)
            for key, (kind, default) in self.optional.items()
            if getattr(value, key) != default
        }
        if not extra:
            return item
        item.update(extra)
        return {key: item[key] for key in canonical_order(item)}

    def has_float(self) -> bool:
        kinds = [*self.fields.values(), *(kind for kind, _ in self.optional.values())]
        return any(kind.has_float() for kind in kinds)


class ArrayOf(Kind):
    """An array of ``item``, optionally required to be strictly increasing by ``sort_key``."""

    __slots__ = ("item", "sort_key")

    def __init__(self, item: Record, sort_key: str | None = None) -> None:
        order = "" if sort_key is None else f", strictly increasing by {sort_key!r}"
        super().__init__(f"an array of {item.description}s{order}")
        self.item = item
        self.sort_key = sort_key

    def decode(self, value: object) -> object:
        if type(value) is not list:
            raise self._wrong(value)
        items = tuple(_item(self.item.decode, element, i) for i, element in enumerate(value))
        self._check_order(items)
        return items

    def encode(self, value: object) -> object:
        if type(value) is not tuple:
            msg = f"expected a tuple of {self.item.cls.__name__}, got {type(value).__name__}"
            raise InvalidField(msg)
        items = [_item(self.item.encode, element, i) for i, element in enumerate(value)]
        self._check_order(value)
        return items

    def has_float(self) -> bool:
        return self.item.has_float()

    def _check_order(self, items: tuple[Any, ...]) -> None:
        if self.sort_key is None:
            return
        keys = [getattr(item, self.sort_key) for item in items]
        for i in range(1, len(keys)):
            if not keys[i - 1] < keys[i]:
                msg = f"{self.sort_key} {keys[i]!r} at index {i} does not follow {keys[i - 1]!r}"
                raise InvalidField(msg)


def check_keys(value: dict[Any, Any], keys: tuple[str, ...]) -> None:
    """Raise unless ``value`` has exactly ``keys``, in that (canonical) order."""
    got = tuple(value)
    if got == keys:
        return
    missing = [key for key in keys if key not in value]
    if missing:
        raise InvalidField(f"missing field(s) {', '.join(map(repr, missing))}")
    extra = [key for key in got if key not in keys]
    if extra:
        raise InvalidField(f"unknown field(s) {', '.join(map(repr, extra))}")
    msg = f"fields out of canonical order: got {list(got)}, expected {list(keys)}"
    raise InvalidField(msg)


def _field(convert: Callable[[object], object], value: object, key: str) -> object:
    try:
        return convert(value)
    except InvalidField as exc:
        raise InvalidField(f"field {key!r}: {exc}") from None


def _item(convert: Callable[[object], object], value: object, index: int) -> object:
    try:
        return convert(value)
    except InvalidField as exc:
        raise InvalidField(f"item {index}: {exc}") from None


# --- the kinds of docs/protocol.md, "Field types" -------------------------------------------

UINT = UInt()
FRAME_LIMIT = UInt(HANDSHAKE_MAX_FRAME, MAX_FRAME_LIMIT)
BYTES = Bytes()


class Signature(Kind):
    """An Ed25519 signature: 64 bytes (or none, empty, where a field is optional)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("a signature (64 bytes)")

    def decode(self, value: object) -> object:
        if type(value) is not bytes or len(value) not in (0, 64):
            raise self._wrong(value)
        return value


SIGNATURE = Signature()
NAME = Text("a machine name ([A-Za-z0-9_.-]{1,64})", 64, r"[A-Za-z0-9_.\-]{1,64}")
IDENTITY = Text("an identity (64 lowercase hex digits)", 64, r"[0-9a-f]{64}")
SHORT_TEXT = Text("a text string of at most 256 characters", 256)
TOKEN = Text("a token (at most 128 characters)", 128)
MESSAGE_TEXT = Text("a text string of at most 65536 characters", 65536)
FLOAT = Finite()
BOOL = Boolean()
NOTES = TextList(Text("a text string of at most 1024 characters", 1024), 64)
ERROR_CODE = Choice(ErrorCode)
_HISTORY_FIELDS: dict[str, Kind] = {
    "identity": IDENTITY,
    "kind": Choice(HistoryKind),
    "seq": UINT,
    "time": FLOAT,
}
#: A history entry as versions 1 to 3 have it (``by`` and ``signer`` never sent).
HISTORY = ArrayOf(Record(HistoryEntry, _HISTORY_FIELDS))
#: The id of a trusted key (``hotswap.signing.key_id``: 16 lowercase hex digits).
KEY_ID = Text("a key id (at most 64 lowercase hex digits)", 64, r"[0-9a-f]{1,64}")
#: Version 4: who made each change of code, when the node knows.
HISTORY_4 = ArrayOf(
    Record(
        HistoryEntry,
        _HISTORY_FIELDS,
        {"by": (SHORT_TEXT, None), "signer": (KEY_ID, None)},
    )
)
MACHINE_LIST = ArrayOf(Record(MachineEntry, {"name": NAME, "identity": IDENTITY}), "name")
RELEASE_ITEMS = ArrayOf(
    Record(
        ReleaseItem,
        {"machine": NAME, "expected": IDENTITY, "module": BYTES, "migration": BYTES},
    ),
    "machine",
)
DIFFERENCES = ArrayOf(
    Record(
        DryRunDifference,
        {
            "seq": UINT,
            "input": BYTES,
            "old": BYTES,
            "new": BYTES,
            "trap": Text("a text string of at most 1024 characters", 1024),
        },
    ),
    "seq",
)
KEY = Key()
PAGE_LIMIT = UInt(1, MAX_PAGE)
KEY_LIST = TextArray(KEY, MAX_PAGE, increasing=True)
CODE_COUNTS = ArrayOf(Record(CodeCount, {"identity": IDENTITY, "instances": UINT}), "identity")
TRAPPED_LIST = ArrayOf(
    Record(
        TrappedInstance,
        {"key": KEY, "reason": Text("a text string of at most 1024 characters", 1024)},
    ),
    "key",
)
SWEEP = Record(SweepProgress, {"rate": UINT, "migrated": UINT, "remaining": UINT, "trapped": UINT})
RELEASED_LIST = ArrayOf(
    Record(ReleasedEntry, {"machine": NAME, "old": IDENTITY, "new": IDENTITY}), "machine"
)
