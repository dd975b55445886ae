"""Persistent values of ``List A`` and ``Map K V`` (docs/design.md, "Lists and maps").

Both are immutable and share structure, so a step that reads or updates one entry of a
collection of n entries costs O(log n) time and memory, never a copy:

- a list is a :class:`~hotswap.lang.vector.PVector`, a 32-way trie of tuples: index, set and
  append are O(log32 n), concatenation and slicing copy only what they return;
- a map is :class:`OMap`: up to :data:`SMALL` entries, a ``dict`` copied to change; past it,
  an ``immutables.Map`` (a hash array mapped trie, in C) from each key's :func:`safe_key` to
  its slot, and a vector of ``(key, value)`` slots in insertion order. Lookup and update are
  O(log n); deleting leaves an empty slot. Once empty slots outnumber live ones, the map
  starts a *rebuild*, a second index and vector holding the live entries only, and each later
  change copies :data:`REBUILD_STEP` more slots into it; when all are copied the rebuild
  replaces the old pair. So every operation is O(log n) in the worst case, on any version of
  a map (a version kept and deleted from again and again costs what the first delete did),
  and the slots never exceed about three times the live entries plus 32. Iteration follows
  insertion order, as Python's ``dict`` does; equality ignores order, as ``dict`` equality
  does.

Values of these types are compared with ``==`` by every executor; a list equals only a list.
"""

from __future__ import annotations

import gc
import itertools
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import immutables

from hotswap.lang import vector
from hotswap.lang.vector import PVector, count_width

__all__ = [
    "EMPTY_LIST",
    "EMPTY_MAP",
    "OMap",
    "PVector",
    "is_list",
    "make_list",
    "safe_key",
    "small_map",
    "state_size",
]

EMPTY_LIST: PVector[Any] = PVector()


def is_list(v: object) -> bool:
    return isinstance(v, PVector)


def make_list(items: Iterable[Any]) -> PVector[Any]:
    return PVector(items)


_EMPTY_INDEX: immutables.Map[Any, int] = immutables.Map()

#: The map's index is keyed by :func:`safe_key`, not by the key: hashes of keys chosen to
#: collide would put every key in one bucket and make each insert walk or copy the others.
#:
#: - An int hashes to itself and the trie folds hashes to 32 bits, so ints ``i * (2**32 + 1)``
#:   would collide there (20,000 of them in one input blocked a node for seconds). Paired with
#:   a salt random per process, ``(_SALT, i)``, the hash mixes in the salt's: unknown outside.
#: - A tuple's hash is a fixed function of its items' hashes, with no secret in it: for a key
#:   ``(a, b)`` of ints, anyone can solve for keys with one full 64-bit hash (a 380 KB input of
#:   such keys took 99 s to decode), and no salt around it helps. A tuple key is indexed by its
#:   ``repr`` instead, a ``str``, whose hash is keyed by the process's secret (SipHash): the
#:   ``repr`` of a key (ints, texts and tuples of them) is one-to-one.
#: - A ``str`` hashes with that secret already.
_SALT = secrets.randbits(62)


def safe_key(key: Any) -> Any:
    """What a map's index (and the decoder's duplicate check) keys ``key`` by: equal exactly
    when the keys are equal, with a hash no one outside the process can make collide."""
    return repr(key) if type(key) is tuple else (_SALT, key)


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


#: A map of at most this many entries is a plain ``dict`` that no one else holds, copied to
#: change it: copying 32 entries is cheaper than a trie's path copy and a slot's update, and
#: the map's own cost (converting Python values at ``.run``'s boundary, building a small map
#: in a step) is that of a ``dict``. Past it, the map is the trie and the slots.
SMALL = 32
#: Slots a large map's rebuild copies at each change (a set or a delete) while it runs: more
#: than the one slot a change can add, so a rebuild of L slots ends within L / 7 changes.
REBUILD_STEP = 8


#: A rebuild in progress: the live entries of the slots before ``copied``, their index and
#: slots (``nslots[nindex[safe_key(k)]] == (k, v)`` for each).
Rebuild = tuple["immutables.Map[Any, int]", PVector[Any], int]


def _new_small(d: dict[Any, Any], size: int = -1) -> OMap:
    m = _new(OMap)
    _put_small(m, d)
    _put_size(m, size)
    _put_next(m, None)
    return m


#: ``small_map(d)``: the small map that owns ``d``, a dict of at most :data:`SMALL` entries
#: that nothing changes after (neither is checked), its size not measured: what ``set`` and
#: ``delete`` of a small map of unmeasured size make (the fast path's inline forms of them).
#: The constructor itself, with no call around it.
small_map: Callable[[dict[Any, Any]], OMap] = _new_small


def _new_large(
    index: immutables.Map[Any, int],
    slots: PVector[Any],
    size: int = -1,
    rebuild: Rebuild | None = None,
) -> OMap:
    m = _new(OMap)
    _put_small(m, None)
    _put_index(m, index)
    _put_slots(m, slots)
    _put_size(m, size)
    _put_next(m, rebuild)
    return m


def _step(
    index: immutables.Map[Any, int], slots: PVector[Any], rebuild: Rebuild, size: int
) -> OMap:
    """A large map whose rebuild has copied :data:`REBUILD_STEP` more slots; once it has
    copied them all, the rebuild is the map (a small one if it holds few enough entries)."""
    nindex, nslots, copied = rebuild
    end = min(copied + REBUILD_STEP, len(slots))
    if copied < end:
        building = nindex.mutate()
        for at in range(copied, end):
            slot = slots[at]
            if slot is not None:
                building[safe_key(slot[0])] = len(nslots)
                nslots = nslots.append(slot)
        nindex = building.finish()
    if end < len(slots):
        return _new_large(index, slots, size, (nindex, nslots, end))
    if len(nindex) <= SMALL:
        return _new_small(dict(s for s in nslots if s is not None), size)
    return _new_large(nindex, nslots, size)


class OMap:
    """An immutable map that keeps insertion order. Updating an existing key keeps its place.

    Small (at most :data:`SMALL` entries): ``_small`` is a ``dict`` owned by this map alone,
    never changed after the map is made. Large: ``_small`` is None, ``_index`` maps each salted
    key to its slot and ``_slots`` holds ``(key, value)`` or None (deleted) in insertion order.
    Which one a map is never shows: every operation gives the same results either way.

    ``_size`` is the map's :func:`state_size` when known, else -1 (as a vector's): ``set``
    and ``delete`` keep a known size up to date from the entry they change. ``_next`` is a
    large map's rebuild in progress, or None (:data:`Rebuild`); the index and slots stay the
    map's until it ends."""

    __slots__ = ("_index", "_next", "_size", "_slots", "_small")
    _size: int
    _small: dict[Any, Any] | None
    _index: immutables.Map[Any, int]
    _slots: PVector[tuple[Any, Any] | None]
    _next: Rebuild | None

    def __init__(self, items: Iterable[tuple[Any, Any]] = ()) -> None:
        _put_size(self, -1)
        _put_next(self, None)
        pairs = items if isinstance(items, list) else list(items)
        if len(pairs) <= SMALL:  # a dict of a few keys: collisions cost nothing
            _put_small(self, dict(pairs))
            return
        index: dict[Any, int] = {}
        slots: list[tuple[Any, Any]] = []
        with bulk():
            for k, v in pairs:
                safe = safe_key(k)
                at = index.get(safe)
                if at is None:
                    index[safe] = len(slots)
                    slots.append((k, v))
                else:  # a key again: its last value, in its first place (as dict does)
                    slots[at] = (k, v)
            if len(slots) <= SMALL:
                _put_small(self, dict(slots))
                return
            _put_small(self, None)
            _put_index(self, immutables.Map(index))
            _put_slots(self, PVector(slots))

    @staticmethod
    def from_dict(d: dict[Any, Any]) -> OMap:
        """The map of ``d``'s entries in its order; ``d`` is the caller's to give away: the map
        may keep it (and then no one may change it)."""
        return _new_small(d) if len(d) <= SMALL else OMap(d.items())

    def __setattr__(self, name: str, value: object) -> None:
        msg = "maps are immutable: use set() or delete(), which return a new map"
        raise AttributeError(msg)

    def __len__(self) -> int:
        small = self._small
        return len(small) if small is not None else len(self._index)

    def __contains__(self, key: object) -> bool:
        small = self._small
        return key in small if small is not None else safe_key(key) in self._index

    def get(self, key: Any, default: Any = None) -> Any:
        small = self._small
        if small is not None:
            return small.get(key, default)
        at = self._index.get(safe_key(key))
        if at is None:
            return default
        slot = self._slots[at]
        assert slot is not None
        return slot[1]

    def __getitem__(self, key: Any) -> Any:
        small = self._small
        if small is not None:
            return small[key]
        slot = self._slots[self._index[safe_key(key)]]
        assert slot is not None
        return slot[1]

    def set(self, key: Any, value: Any) -> OMap:
        small, size = self._small, self._size
        if size >= 0:  # the new size, from the entry that changes
            old = self.get(key, _ABSENT)
            if old is _ABSENT:
                n = len(self)
                size += state_size(key) + state_size(value) + count_width(n + 1)
                size -= count_width(n)
            else:
                size += state_size(value) - state_size(old)
        if small is not None:
            if len(small) < SMALL or key in small:
                d = small.copy()
                d[key] = value
                return _new_small(d, size)
            d = small.copy()
            d[key] = value
            big = OMap(d.items())
            _put_size(big, size)
            return big
        salted = safe_key(key)
        index, slots, rebuild = self._index, self._slots, self._next
        at = index.get(salted)
        if at is None:  # a new key goes last: the rebuild copies it when it gets there
            index, slots = index.set(salted, len(slots)), slots.append((key, value))
        else:
            slots = slots.set(at, (key, value))
            if rebuild is not None and at < rebuild[2]:  # copied already: change the copy
                nindex, nslots, copied = rebuild
                rebuild = (nindex, nslots.set(nindex[salted], (key, value)), copied)
        if rebuild is None:
            return _new_large(index, slots, size)
        return _step(index, slots, rebuild, size)

    def delete(self, key: Any) -> OMap:
        """The map without ``key`` (the same map if ``key`` is absent)."""
        old = self.get(key, _ABSENT)
        if old is _ABSENT:
            return self
        size = self._size
        if size >= 0:
            n = len(self)
            size -= state_size(key) + state_size(old) + count_width(n) - count_width(n - 1)
        small = self._small
        if small is not None:
            d = small.copy()
            del d[key]
            return _new_small(d, size) if d else EMPTY_MAP
        salted = safe_key(key)
        rebuild = self._next
        at = self._index[salted]
        index = self._index.delete(salted)
        if not index:
            return EMPTY_MAP
        slots = self._slots.set(at, None)
        if rebuild is not None:
            nindex, nslots, copied = rebuild
            if at < copied:  # copied already: delete the copy too
                nslots = nslots.set(nindex[salted], None)
                rebuild = (nindex.delete(salted), nslots, copied)
        elif len(slots) > 2 * len(index) + 32:  # empty slots outnumber live ones: rebuild
            rebuild = (_EMPTY_INDEX, EMPTY_LIST, 0)
        if rebuild is None:
            return _new_large(index, slots, size)
        return _step(index, slots, rebuild, size)

    def items(self) -> Iterator[tuple[Any, Any]]:
        small = self._small
        if small is not None:
            return iter(small.items())
        return (s for s in self._slots if s is not None)

    def keys(self) -> Iterator[Any]:
        small = self._small
        if small is not None:
            return iter(small)
        return (s[0] for s in self._slots if s is not None)

    def values(self) -> Iterator[Any]:
        small = self._small
        if small is not None:
            return iter(small.values())
        return (s[1] for s in self._slots if s is not None)

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def key_list(self) -> PVector[Any]:
        small = self._small
        if small is not None:  # at most 32: the vector's tail alone
            return vector.small(tuple(small))
        return PVector(list(self.keys()))

    def value_list(self) -> PVector[Any]:
        small = self._small
        if small is not None:
            return vector.small(tuple(small.values()))
        return PVector(list(self.values()))

    def item_list(self) -> PVector[Any]:
        small = self._small
        if small is not None:
            return vector.small(tuple(small.items()))
        return PVector(list(self.items()))

    def update(self, other: OMap) -> OMap:
        """``self | other``: ``other``'s entries win, new keys go last in ``other``'s order."""
        small, theirs = self._small, other._small
        if (
            self._size < 0
            and small is not None
            and theirs is not None
            and len(small) + len(theirs) <= SMALL
        ):
            d = small.copy()
            d.update(theirs)
            return _new_small(d)
        result = self
        for k, v in other.items():
            result = result.set(k, v)
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OMap):
            return NotImplemented
        small, theirs = self._small, other._small
        if small is not None and theirs is not None:
            return small == theirs
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


_new = object.__new__
#: The slots' own setters: what ``object.__setattr__`` does, without looking the name up.
_put_small: Any = vars(OMap)["_small"].__set__
_put_index: Any = vars(OMap)["_index"].__set__
_put_slots: Any = vars(OMap)["_slots"].__set__
_put_size: Any = vars(OMap)["_size"].__set__
_put_next: Any = vars(OMap)["_next"].__set__
_ABSENT = object()


EMPTY_MAP = OMap()


def _uleb_width(n: int) -> int:
    return (n.bit_length() + 6) // 7 or 1


def _sleb_width(n: int) -> int:
    return (n.bit_length() + 7) // 7 if n >= 0 else ((~n).bit_length() + 7) // 7


def state_size(v: Any, cap: int = 1 << 62) -> int:
    """The size the state limit counts (docs/bytecode.md, section 11.3): the length of ``v``'s
    canonical encoding, except that a text that is not all ASCII counts four bytes per code
    point (the most UTF-8 can take), so that no text is ever scanned to measure it. Computed
    from the value alone: an injection ``(tag, payload)`` takes the byte of its tag as an Int
    pair's small first component does, and a value of a zero-width type is ``()`` or a tuple of
    them. A list or map remembers its size once measured (``_size``; never an empty one, which
    may be a shared constant), and its updates keep it, so measuring a state again after a step
    costs what the step changed.

    Exact up to ``cap``; past it, some number above ``cap`` (the walk stops there)."""
    t = type(v)
    if t is int:
        return _sleb_width(v)
    if t is tuple:
        total = 0
        for x in v:
            total += state_size(x, cap - total)
            if total > cap:
                return total
        return total
    if t is str:
        n = len(v) if v.isascii() else 4 * len(v)
        return _uleb_width(n) + n
    size: int = v._size
    if size >= 0:
        return size
    n = len(v)
    if not n:
        return 1
    total = _uleb_width(n)
    if t is OMap:
        for k, x in v.items():
            total += state_size(k, cap - total) + state_size(x, cap - total)
            if total > cap:
                return total
        _put_size(v, total)
        return total
    first = state_size(v[0], cap - total)
    if first == 0:  # a zero-width type: every element is the same, in no bytes
        v._size = total
        return total
    total += first
    for x in itertools.islice(v, 1, None):
        total += state_size(x, cap - total)
        if total > cap:
            return total
    v._size = total
    return total


vector.measure = state_size
