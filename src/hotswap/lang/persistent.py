"""Persistent values of ``List A`` and ``Map K V`` (docs/design.md, "Lists and maps").

Both are immutable and share structure, so a step that reads or updates one entry of a
collection of n entries costs O(log n) time and memory, never a copy:

- a list is a :class:`~hotswap.lang.vector.PVector`, a 32-way trie of tuples: index, set and
  append are O(log32 n), concatenation and slicing copy only what they return;
- a map is :class:`OMap`: an ``immutables.Map`` (a hash array mapped trie, in C) from each
  key to its slot, and a vector of ``(key, value)`` slots in insertion order. Lookup and update
  are O(log n); deleting leaves an empty slot, and the slots are compacted once empty ones
  outnumber live ones, so deletion is O(log n) amortised. Iteration follows insertion order,
  as Python's ``dict`` does; equality ignores order, as ``dict`` equality does.

Values of these types are compared with ``==`` by every executor; a list equals only a list.
"""

from __future__ import annotations

import gc
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import immutables

from hotswap.lang.vector import PVector

__all__ = ["EMPTY_LIST", "EMPTY_MAP", "OMap", "PVector", "is_list", "make_list"]

EMPTY_LIST: PVector[Any] = PVector()


def is_list(v: object) -> bool:
    return isinstance(v, PVector)


def make_list(items: Iterable[Any]) -> PVector[Any]:
    return PVector(items)


_EMPTY_INDEX: immutables.Map[Any, int] = immutables.Map()

#: The map's index is keyed by ``(_SALT, key)``, not by ``key``: the trie hashes keys to 32
#: bits, and ints hash to themselves, so keys chosen to collide (``i * (2**32 + 1)``) would all
#: land in one bucket and make every insert copy the others (an input of 20,000 such keys
#: blocked a node for seconds). A tuple's hash mixes the salt's hash, random per process, into
#: the key's, so collisions cannot be chosen from outside.
_SALT = secrets.randbits(62)


@contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large value is built: the millions of tuples
    a big map or list is made of would otherwise set off collections that walk all the objects
    made so far, again and again (building a map of a million entries took 7 s, not 1.5 s).
    Nothing built here holds a cycle, so nothing is left for the collector to find."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class OMap:
    """An immutable map that keeps insertion order. Updating an existing key keeps its place."""

    __slots__ = ("_index", "_slots")
    _index: immutables.Map[Any, int]
    _slots: PVector[tuple[Any, Any] | None]

    def __init__(self, items: Iterable[tuple[Any, Any]] = ()) -> None:
        index: dict[Any, int] = {}
        slots: list[tuple[Any, Any] | None] = []
        with bulk():
            for k, v in items:
                salted = (_SALT, k)
                at = index.get(salted)
                if at is None:
                    index[salted] = len(slots)
                    slots.append((k, v))
                else:
                    slots[at] = (k, v)
            object.__setattr__(self, "_index", immutables.Map(index) if index else _EMPTY_INDEX)
            object.__setattr__(self, "_slots", PVector(slots))

    @classmethod
    def _make(cls, index: immutables.Map[Any, int], slots: PVector[Any]) -> OMap:
        m = object.__new__(cls)
        object.__setattr__(m, "_index", index)
        object.__setattr__(m, "_slots", slots)
        return m

    def __setattr__(self, name: str, value: object) -> None:
        msg = "maps are immutable: use set() or delete(), which return a new map"
        raise AttributeError(msg)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return (_SALT, key) in self._index

    def get(self, key: Any, default: Any = None) -> Any:
        at = self._index.get((_SALT, key))
        if at is None:
            return default
        slot = self._slots[at]
        assert slot is not None
        return slot[1]

    def __getitem__(self, key: Any) -> Any:
        slot = self._slots[self._index[(_SALT, key)]]
        assert slot is not None
        return slot[1]

    def set(self, key: Any, value: Any) -> OMap:
        salted = (_SALT, key)
        at = self._index.get(salted)
        if at is None:
            return OMap._make(
                self._index.set(salted, len(self._slots)), self._slots.append((key, value))
            )
        return OMap._make(self._index, self._slots.set(at, (key, value)))

    def delete(self, key: Any) -> OMap:
        """The map without ``key`` (the same map if ``key`` is absent)."""
        salted = (_SALT, key)
        at = self._index.get(salted)
        if at is None:
            return self
        index = self._index.delete(salted)
        if not index:
            return EMPTY_MAP
        slots = self._slots.set(at, None)
        if len(slots) > 2 * len(index) + 32:  # compact: empty slots outnumber live ones
            return OMap(self.items_of(slots))
        return OMap._make(index, slots)

    @staticmethod
    def items_of(slots: PVector[tuple[Any, Any] | None]) -> Iterator[tuple[Any, Any]]:
        return (s for s in slots if s is not None)

    def items(self) -> Iterator[tuple[Any, Any]]:
        return self.items_of(self._slots)

    def keys(self) -> Iterator[Any]:
        return (s[0] for s in self._slots if s is not None)

    def values(self) -> Iterator[Any]:
        return (s[1] for s in self._slots if s is not None)

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def update(self, other: OMap) -> OMap:
        """``self | other``: ``other``'s entries win, new keys go last in ``other``'s order."""
        result = self
        for k, v in other.items():
            result = result.set(k, v)
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OMap):
            return NotImplemented
        if len(self) != len(other):
            return False
        missing = object()
        return all(other.get(k, missing) == v for k, v in self.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in self.items())
        return f"OMap({{{inner}}})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (OMap, (list(self.items()),))


EMPTY_MAP = OMap()
