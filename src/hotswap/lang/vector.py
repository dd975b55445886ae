"""A persistent vector: a 32-way trie of tuples with a tail, as in Clojure.

Immutable by contract: no method changes a vector, and its four slots are private (a vector is
core data; users see Python lists).

Index, set and append cost O(log32 n) (at most 5 levels for 2**24 elements); every version
shares all but the path it changed. The trie's nodes are plain tuples, so the garbage collector
sees each version as its root, its tail and the few tuples it made: a new version costs the
collector O(log n), not O(n) (a vector whose one object holds the whole tree is traversed in
full at every collection that meets it, which made each step of a machine holding a million
entries cost tens of milliseconds).

A vector may know its size for the state limit (``hotswap.lang.persistent.state_size``) in
``_size``, -1 when it does not: ``state_size`` records it when it measures a vector, and
``append`` and ``set`` keep it up to date from the one element they change, so a node can
check the size of a state after every step without walking it.

Invariants: ``_tail`` holds the last 1 to 32 elements (none when the vector is empty); the
trie ``_root`` holds the first ``tailoff = n - len(_tail)`` elements in full leaves of 32,
left-packed; ``_shift`` is 5 times the trie's height (at least 5).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
_BITS = 5
_WIDTH = 1 << _BITS
_MASK = _WIDTH - 1


class PVector(Generic[T]):
    """An immutable sequence: ``append``, ``set`` and ``extend`` return new vectors."""

    __slots__ = ("_n", "_root", "_shift", "_size", "_tail")
    _n: int
    _size: int
    _shift: int
    _root: tuple[Any, ...]
    _tail: tuple[Any, ...]

    def __init__(self, items: Iterable[T] = ()) -> None:
        values = items if isinstance(items, _SEQUENCES) else list(items)
        n = len(values)
        self._size = -1
        if n <= _WIDTH:  # all in the tail
            self._n, self._shift, self._root, self._tail = n, _BITS, (), tuple(values)
            return
        tailoff = ((n - 1) >> _BITS) << _BITS if n else 0
        nodes: list[Any] = [tuple(values[i : i + _WIDTH]) for i in range(0, tailoff, _WIDTH)]
        shift = _BITS
        while len(nodes) > _WIDTH:
            nodes = [tuple(nodes[i : i + _WIDTH]) for i in range(0, len(nodes), _WIDTH)]
            shift += _BITS
        self._set(n, shift, tuple(nodes), tuple(values[tailoff:]))

    def _set(self, n: int, shift: int, root: tuple[Any, ...], tail: tuple[Any, ...]) -> None:
        self._n, self._shift, self._root, self._tail = n, shift, root, tail

    @classmethod
    def _make(cls, n: int, shift: int, root: tuple[Any, ...], tail: tuple[Any, ...]) -> PVector[T]:
        v: PVector[T] = object.__new__(cls)
        v._n, v._shift, v._root, v._tail, v._size = n, shift, root, tail, -1
        return v

    def __len__(self) -> int:
        return self._n

    def _leaf(self, i: int) -> tuple[Any, ...]:
        """The leaf (or the tail) holding index ``0 <= i < n``."""
        if i >= self._n - len(self._tail):
            return self._tail
        node = self._root
        level = self._shift
        while level > 0:
            node = node[(i >> level) & _MASK]
            level -= _BITS
        return node

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> PVector[T]: ...

    def __getitem__(self, i: int | slice) -> T | PVector[T]:
        if isinstance(i, slice):
            lo, hi, step = i.indices(self._n)
            if step == 1 and lo == 0 and hi >= self._n:
                return self
            return PVector(self._leaf(k)[k & _MASK] for k in range(lo, hi, step))
        n = self._n
        if i < 0:
            i += n
        if not 0 <= i < n:
            msg = "vector index out of range"
            raise IndexError(msg)
        leaf: tuple[T, ...] = self._leaf(i)
        return leaf[i & _MASK]

    def __iter__(self) -> Iterator[T]:
        if not self._root:
            return iter(self._tail)
        tailoff = self._n - len(self._tail)
        leaves = (self._leaf(start) for start in range(0, tailoff, _WIDTH))
        return itertools.chain(itertools.chain.from_iterable(leaves), self._tail)

    def tolist(self) -> list[T]:
        return list(self)

    def __contains__(self, x: object) -> bool:
        return any(y == x for y in self)

    def append(self, x: T) -> PVector[T]:
        n, tail, size = self._n, self._tail, self._size
        if size >= 0:
            size += measure(x) + count_width(n + 1) - count_width(n)
        if len(tail) < _WIDTH:
            v: PVector[T] = _new(PVector)
            v._n, v._shift, v._root, v._tail = n + 1, self._shift, self._root, (*tail, x)
            v._size = size
            return v
        shift, root = self._shift, self._root
        if (n >> _BITS) > (1 << shift):  # the trie is full: grow a level
            root, shift = (root, _path(shift, tail)), shift + _BITS
        else:
            root = _push_tail(n, shift, root, tail)
        v = PVector._make(n + 1, shift, root, (x,))
        v._size = size
        return v

    def set(self, i: int, x: T) -> PVector[T]:
        n = self._n
        if i < 0:
            i += n
        if not 0 <= i < n:
            msg = "vector index out of range"
            raise IndexError(msg)
        tailoff = n - len(self._tail)
        v: PVector[T]
        if i >= tailoff:
            tail = self._tail
            j = i - tailoff
            v = PVector._make(n, self._shift, self._root, (*tail[:j], x, *tail[j + 1 :]))
        else:
            v = PVector._make(n, self._shift, _assoc(self._shift, self._root, i, x), self._tail)
        if self._size >= 0:
            v._size = self._size - measure(self[i]) + measure(x)
        return v

    def extend(self, items: Iterable[T]) -> PVector[T]:
        result = self
        for x in items:
            result = result.append(x)
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PVector):
            return NotImplemented
        if self is other:
            return True
        if self._n != other._n:
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __lt__(self, other: PVector[T]) -> bool:
        return tuple(self) < tuple(other)

    def __repr__(self) -> str:
        return f"pvector({list(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PVector, (list(self),))


_new = object.__new__
#: What ``PVector(items)`` reads as it is (a tuple of types, not a union made at each call).
_SEQUENCES = (list, tuple)


def of_list(items: list[T]) -> PVector[T]:
    """``PVector(items)``, a list's elements; one of at most 32 is its tail alone at once."""
    if len(items) <= _WIDTH:
        v: PVector[T] = _new(PVector)
        v._n, v._shift, v._root, v._tail, v._size = len(items), _BITS, (), tuple(items), -1
        return v
    return PVector(items)


def small(items: tuple[T, ...]) -> PVector[T]:
    """The vector of at most 32 ``items``: its tail alone (no check that they are so few)."""
    v: PVector[T] = _new(PVector)
    v._n, v._shift, v._root, v._tail, v._size = len(items), _BITS, (), items, -1
    return v


def count_width(n: int) -> int:
    """The bytes of ``n``'s minimal unsigned LEB128 (a collection's count)."""
    return (n.bit_length() + 6) // 7 or 1


def _unset(x: object) -> int:
    raise AssertionError("hotswap.lang.persistent sets the measure of elements")


#: The size of an element: ``hotswap.lang.persistent.state_size``, which knows maps too, set
#: when that module is imported (it imports this one).
measure: Callable[[Any], int] = _unset


def _path(level: int, node: tuple[Any, ...]) -> tuple[Any, ...]:
    while level > 0:
        node = (node,)
        level -= _BITS
    return node


def _push_tail(n: int, level: int, parent: tuple[Any, ...], tail: tuple[Any, ...]) -> Any:
    """``parent`` with the full ``tail`` (elements ``n - 32`` to ``n - 1``) added as a leaf."""
    sub = ((n - 1) >> level) & _MASK
    if level == _BITS:
        child: Any = tail
    elif sub < len(parent):
        child = _push_tail(n, level - _BITS, parent[sub], tail)
    else:
        child = _path(level - _BITS, tail)
    return (*parent[:sub], child, *parent[sub + 1 :])


def _assoc(level: int, node: tuple[Any, ...], i: int, x: object) -> tuple[Any, ...]:
    sub = (i >> level) & _MASK
    if level == 0:
        return (*node[:sub], x, *node[sub + 1 :])
    return (*node[:sub], _assoc(level - _BITS, node[sub], i, x), *node[sub + 1 :])
