"""A large value cut down to its first characters, for the node's trace and the command line.

:func:`clip` cuts a core value down to what the first ``room`` characters of its text can show
(in either syntax: the seed's or the Python names'), and :func:`shorten` writes the text of the
clipped value with a note of what was left out: `` ... (cut at 200 characters: a map of
1,000,000 entries)``. Showing a value then costs what the part shown costs, whatever the
value's size.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotswap.lang.evaluate import Value
from hotswap.lang.persistent import OMap, make_list
from hotswap.lang.types import IntT, ListT, MapT, Prod, StrT, Sum, Type, UnitT

#: The characters shown when no other number is given (the node's trace).
SHOWN = 200


@dataclass(slots=True)
class _Cut:
    """The walk of :func:`clip`: the room left (in pieces of at least one character each) and
    the largest collection or string cut short so far."""

    room: int
    size: int = 0
    what: str = ""

    def cut(self, size: int, what: str) -> None:
        if size > self.size:
            self.size, self.what = size, what


def clip(value: Value, t: Type, room: int = SHOWN) -> tuple[Value, str]:
    """``value`` cut down to what its first ``room`` characters show, in either syntax, and
    the largest collection or string cut (``""`` if none was). Every value renders as at least
    one character and the renderers go in the value's order, so the text of the clipped value
    begins with the first ``room`` characters of the whole value's text. The cost is that of
    ``room`` pieces plus the size of ``t``, not of the value."""
    walk = _Cut(room)
    clipped = _clip(value, t, walk)
    return clipped, walk.what


def _clip(v: Value, t: Type, walk: _Cut) -> Value:
    walk.room -= 1
    match t:
        case UnitT() | IntT():
            return v
        case Prod(left, right):
            a, b = _clip(v[0], left, walk), _clip(v[1], right, walk)
            return v if a is v[0] and b is v[1] else (a, b)
        case Sum(left, right):
            x = _clip(v[1], right if v[0] else left, walk)
            return v if x is v[1] else (v[0], x)
        case StrT():
            if len(v) <= max(walk.room, 0):
                walk.room -= len(v)
                return v
            walk.cut(len(v), f"a string of {len(v):,} characters")
            kept = v[: max(walk.room, 0)]
            walk.room = 0
            return kept
        case ListT(elem):
            items, same = [], True
            for x in v:
                if walk.room <= 0:
                    break
                y = _clip(x, elem, walk)
                same = same and y is x
                items.append(y)
            if len(items) < len(v):
                walk.cut(len(v), f"a list of {len(v):,} items")
            elif same:
                return v
            return make_list(items)
        case MapT(key, value):
            entries, same = [], True
            for k, x in v.items():
                if walk.room <= 0:
                    break
                k2 = _clip(k, key, walk)
                if k2 is not k and k2 in v:  # cut short, the key is another key of the map:
                    k2 = k  # kept whole (rare, and as large as the key), or OMap would merge
                    walk.room = 0  # them; the rest of the text is cut anyway
                y = _clip(x, value, walk)
                same = same and k2 is k and y is x
                entries.append((k2, y))
            if len(entries) < len(v):
                walk.cut(len(v), f"a map of {len(v):,} entries")
            elif same:
                return v
            return OMap(entries)
    raise AssertionError(f"not a type: {t!r}")


def shorten(text: str, cut: str, limit: int = SHOWN) -> str:
    """The text of a value clipped by :func:`clip`, at most ``limit`` characters and a note of
    what was left out."""
    if cut:
        return f"{text[:limit]} ... (cut at {limit} characters: {cut})"
    if len(text) > limit:
        return f"{text[:limit]} ... ({len(text) - limit:,} more characters)"
    return text
