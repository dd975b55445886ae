"""Meaning and cost of the primitives of module format 2: equality, text, lists and maps.

Every executor calls these functions, so they agree on results and traps by construction; the
cost functions give the part of an instruction's fuel that depends on its operands
(docs/bytecode.md, "Costs"). The fixed part, 1 per instruction, is the executor's.

Values: a Str is a Python ``str``; a list a persistent vector; a map an :class:`OMap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from hotswap.errors import Trap
from hotswap.lang.check import MAX_ELEMENTS, MAX_STR_LEN
from hotswap.lang.persistent import EMPTY_LIST, OMap, is_list, make_list
from hotswap.lang.terms import Op
from hotswap.lang.vector import small as small_vector

Value = Any
FALSE: Value = (0, ())
TRUE: Value = (1, ())
NOTHING: Value = (0, ())  # the left injection of Unit + V: no value

#: Code points per unit of cost when text is copied or scanned.
TEXT_CHUNK = 16


def _bool(b: bool) -> Value:
    return TRUE if b else FALSE


def too_large(what: str, n: int, limit: int) -> Trap:
    return Trap("too_large", f"{what} of {n} would exceed the limit of {limit}")


def index_error(what: str, i: int, n: int) -> Trap:
    return Trap("index_error", f"{what} index {i} out of range for length {n}")


def missing_key(key: Value) -> Trap:
    text = repr(key)
    if len(text) > 80:
        text = text[:77] + "..."
    return Trap("missing_key", f"key {text} is not in the map")


def raised(name: str, message: str) -> Trap:
    return Trap("raised", f"{name}: {message}" if message else name)


#: The cap a cost function is given when the caller has no budget to compare with.
NO_CAP = 1 << 62


def weight(v: Value, cap: int = NO_CAP) -> int:
    """The size that structural equality is charged for: each pair and injection, elements of
    lists and maps, and text in chunks of :data:`TEXT_CHUNK` code points. (Pairs count: a
    record of 8,192 Ints compares in milliseconds, which a weight of 0 charged as one unit.)

    Exact up to ``cap``; past it, some number above ``cap``: the walk stops as soon as the
    total passes the fuel left, so charging for a huge value costs no more time than the fuel
    it could buy (a list of 2**24 units, built in a few steps, would otherwise take a second
    to weigh before the step traps ``out_of_fuel``)."""
    if type(v) is str:
        return len(v) // TEXT_CHUNK
    if type(v) is int:
        return 0
    total = 0
    stack = [v]
    while stack:
        x = stack.pop()
        if type(x) is tuple:
            if x:  # a pair or an injection (Unit, the empty tuple, weighs nothing)
                total += 1
                if total > cap:
                    return total
                stack.extend(x)
        elif type(x) is str:
            total += len(x) // TEXT_CHUNK
        elif isinstance(x, OMap):
            total += len(x)
            if total > cap:
                return total
            for k, val in x.items():
                stack.append(k)
                stack.append(val)
        elif is_list(x):
            total += len(x)
            if total > cap:
                return total
            stack.extend(x)
    return total


# --- text -----------------------------------------------------------------------------------


def str_concat(v: Value) -> Value:
    a, b = v
    n = len(a) + len(b)
    if n > MAX_STR_LEN:
        raise too_large("text", n, MAX_STR_LEN)
    return a + b


def str_index(v: Value) -> Value:
    s, i = v
    if not -len(s) <= i < len(s):
        raise index_error("text", i, len(s))
    return s[i]


def _joined_length(v: Value) -> int:
    sep, xs = v
    n = xs._n
    # a vector of at most 32 elements is its tail alone: a tuple, iterated without a call of
    # a Python method
    return sum(map(len, xs if xs._root else xs._tail)) + len(sep) * (n - 1 if n else 0)


def str_join(v: Value) -> Value:
    n = _joined_length(v)
    if n > MAX_STR_LEN:
        raise too_large("text", n, MAX_STR_LEN)
    sep, xs = v
    return sep.join(xs if xs._root else xs._tail)


def str_slice(v: Value) -> Value:
    s, (a, b) = v
    return s[a:b]


def str_find(v: Value) -> Value:
    s, sub = v
    return s.find(sub)


def str_split(v: Value) -> Value:
    """``s.split(sep)``; ``s.split()`` (runs of whitespace) when ``sep`` is empty."""
    s, sep = v
    return make_list(s.split(sep) if sep else s.split())


# --- lists ----------------------------------------------------------------------------------


def list_append(v: Value) -> Value:
    xs, x = v
    if len(xs) >= MAX_ELEMENTS:
        raise too_large("list", len(xs) + 1, MAX_ELEMENTS)
    return xs.append(x)


def list_concat(v: Value) -> Value:
    xs, ys = v
    n = len(xs) + len(ys)
    if n > MAX_ELEMENTS:
        raise too_large("list", n, MAX_ELEMENTS)
    return xs.extend(ys) if ys else xs


def list_index(v: Value) -> Value:
    xs, i = v
    if not -len(xs) <= i < len(xs):
        raise index_error("list", i, len(xs))
    return xs[i]


def list_slice(v: Value) -> Value:
    xs, (a, b) = v
    lo, hi, _ = slice(a, b).indices(len(xs))
    if hi <= lo:
        return EMPTY_LIST
    if lo == 0 and hi == len(xs):
        return xs
    return xs[lo:hi]


def list_set(v: Value) -> Value:
    xs, (i, x) = v
    if not -len(xs) <= i < len(xs):
        raise index_error("list", i, len(xs))
    return xs.set(i if i >= 0 else len(xs) + i, x)


def list_sort(xs: Value) -> Value:
    if xs._root:
        return make_list(sorted(xs))
    return small_vector(tuple(sorted(xs._tail)))


def int_range(v: Value) -> Value:
    a, b = v
    n = max(0, b - a)
    if n > MAX_ELEMENTS:
        raise too_large("range", n, MAX_ELEMENTS)
    return make_list(range(a, b))


def list_contains(v: Value) -> Value:
    xs, x = v
    return _bool(x in xs)


# --- maps -----------------------------------------------------------------------------------


def map_get(v: Value) -> Value:
    m, k = v
    found = m.get(k, MISSING)
    return NOTHING if found is MISSING else (1, found)


#: What ``get`` gives for a missing key, where None could be a value.
MISSING = object()


def map_index(v: Value) -> Value:
    m, k = v
    found = m.get(k, MISSING)
    if found is MISSING:
        raise missing_key(k)
    return found


def map_insert(v: Value) -> Value:
    m, (k, x) = v
    if len(m) >= MAX_ELEMENTS and k not in m:
        raise too_large("map", len(m) + 1, MAX_ELEMENTS)
    return m.set(k, x)


def map_merge(v: Value) -> Value:
    m, other = v
    result = m.update(other)
    if len(result) > MAX_ELEMENTS:
        raise too_large("map", len(result), MAX_ELEMENTS)
    return result


#: The meaning of each primitive of format 2, on its argument value.
IMPL: dict[Op, Callable[[Value], Value]] = {
    Op.EQUAL: lambda v: _bool(v[0] == v[1]),
    Op.NOT_EQUAL: lambda v: _bool(v[0] != v[1]),
    Op.STR_LT: lambda v: _bool(v[0] < v[1]),
    Op.STR_LE: lambda v: _bool(v[0] <= v[1]),
    Op.STR_GT: lambda v: _bool(v[0] > v[1]),
    Op.STR_GE: lambda v: _bool(v[0] >= v[1]),
    Op.STR_LEN: len,
    Op.STR_CONCAT: str_concat,
    Op.STR_SLICE: str_slice,
    Op.STR_INDEX: str_index,
    Op.STR_CONTAINS: lambda v: _bool(v[1] in v[0]),
    Op.INT_TO_STR: str,
    Op.LIST_LEN: len,
    Op.LIST_APPEND: list_append,
    Op.LIST_CONCAT: list_concat,
    Op.LIST_INDEX: list_index,
    Op.LIST_SLICE: list_slice,
    Op.LIST_CONTAINS: list_contains,
    Op.LIST_SORT: list_sort,
    Op.LIST_SET: list_set,
    Op.MAP_LEN: len,
    Op.MAP_GET: map_get,
    Op.MAP_INSERT: map_insert,
    Op.MAP_DELETE: lambda v: v[0].delete(v[1]),
    Op.MAP_CONTAINS: lambda v: _bool(v[1] in v[0]),
    Op.MAP_KEYS: OMap.key_list,
    Op.MAP_VALUES: OMap.value_list,
    Op.MAP_ITEMS: OMap.item_list,
    Op.MAP_MERGE: map_merge,
    Op.RANGE: int_range,
    Op.MAP_INDEX: map_index,
    Op.STR_JOIN: str_join,
    Op.STR_FIND: str_find,
    Op.STR_SPLIT: str_split,
}


class Cost(Protocol):
    """A primitive's variable cost: exact up to ``cap``, above ``cap`` past it."""

    def __call__(self, v: Value, cap: int = ..., /) -> int: ...


def _contains_cost(v: Value, cap: int = NO_CAP) -> int:
    """Each element compared costs 1 plus the weight of ``x``, which bounds the work of one
    comparison (equality stops at the smaller value)."""
    xs, x = v
    if not xs:
        return 0
    each = 1 + weight(x, cap)
    if each > cap:
        return each
    for i, y in enumerate(xs):
        if y == x:
            return (i + 1) * each
        if (i + 1) * each > cap:
            return (i + 1) * each
    return len(xs) * each


def _sort_cost(xs: Value, cap: int = NO_CAP) -> int:
    """``n log n`` comparisons, each costing 1 plus the largest element's weight."""
    n: int = xs._n
    comparisons = n * max(1, n.bit_length())
    if comparisons > cap:
        return comparisons
    items = xs if xs._root else xs._tail
    for first in items:  # a List Int or a List Str: the first element says which
        if type(first) is str:  # n <= cap: this walk is O(fuel left)
            return comparisons * (1 + max(map(len, items)) // TEXT_CHUNK)
        break
    return comparisons


def _join_cost(v: Value, cap: int = NO_CAP) -> int:
    xs = v[1]
    n: int = xs._n
    if n > cap:
        return n
    return n + _joined_length(v) // TEXT_CHUNK


def _pieces(v: Value) -> int:
    """How many pieces ``STR_SPLIT`` makes of ``(s, sep)`` (without making them, for ``sep``)."""
    s, sep = v
    return s.count(sep) + 1 if sep else len(s.split())


def _text_cost(v: Value, cap: int = NO_CAP) -> int:
    return min(len(v[0]), len(v[1])) // TEXT_CHUNK


#: The variable part of a primitive's cost, from its argument (before it runs) and the fuel
#: left (``cap``): exact when it is at most ``cap``, and otherwise some number above it, so
#: that weighing a huge argument stops once the instruction is sure to run out of fuel.
#: Primitives not listed cost nothing beyond the 1 of their instruction.
COST: dict[Op, Cost] = {
    Op.EQUAL: lambda v, cap=NO_CAP: weight(v[0], cap),
    Op.NOT_EQUAL: lambda v, cap=NO_CAP: weight(v[0], cap),
    Op.STR_LT: _text_cost,
    Op.STR_LE: _text_cost,
    Op.STR_GT: _text_cost,
    Op.STR_GE: _text_cost,
    Op.STR_CONCAT: lambda v, cap=NO_CAP: (len(v[0]) + len(v[1])) // TEXT_CHUNK,
    Op.STR_SLICE: lambda v, cap=NO_CAP: len(v[0]) // TEXT_CHUNK,
    Op.STR_CONTAINS: lambda v, cap=NO_CAP: len(v[0]) // TEXT_CHUNK,
    Op.LIST_CONCAT: lambda v, cap=NO_CAP: len(v[1]),
    Op.LIST_SLICE: lambda v, cap=NO_CAP: len(range(*slice(*v[1]).indices(len(v[0])))),
    Op.LIST_CONTAINS: _contains_cost,
    Op.LIST_SORT: _sort_cost,
    Op.MAP_KEYS: lambda m, cap=NO_CAP: len(m),
    Op.MAP_VALUES: lambda m, cap=NO_CAP: len(m),
    Op.MAP_ITEMS: lambda m, cap=NO_CAP: len(m),
    Op.MAP_MERGE: lambda v, cap=NO_CAP: len(v[1]),
    Op.RANGE: lambda v, cap=NO_CAP: max(0, min(v[1] - v[0], MAX_ELEMENTS + 1)),
    Op.STR_JOIN: _join_cost,
    Op.STR_FIND: lambda v, cap=NO_CAP: len(v[0]) // TEXT_CHUNK,
    Op.STR_SPLIT: lambda v, cap=NO_CAP: _pieces(v) + len(v[0]) // TEXT_CHUNK,
}


def _sort_charged(xs: Value, cap: int, short: bool = False) -> tuple[int, Value]:
    """``LIST_SORT``'s cost and result; ``short`` when each item is known to be an int or a
    text of under :data:`TEXT_CHUNK` code points (the fast path's lists of such text), which
    makes the texts' factor 1 without measuring them."""
    if xs._root:
        cost = _sort_cost(xs, cap) if not short else xs._n * max(1, xs._n.bit_length())
        if cost > cap:
            return cost, None
        return cost, make_list(sorted(xs))
    tail = xs._tail  # at most 32 elements: :func:`_sort_cost` inline
    n = len(tail)
    cost = n * (n.bit_length() or 1)
    if cost > cap:
        return cost, None
    if n and not short and type(tail[0]) is str:
        cost *= 1 + max(map(len, tail)) // TEXT_CHUNK
        if cost > cap:
            return cost, None
    return cost, small_vector(tuple(sorted(tail)))


#: At most this many items are joined before they are measured, when the fuel covers the
#: most they could cost (:func:`_join_charged`).
_JOIN_FIRST = 32


def _join_charged(v: Value, cap: int) -> tuple[int, Value]:
    sep, xs = v
    n = xs._n
    if n > cap:
        return n, None
    items = xs if xs._root else xs._tail
    if n <= _JOIN_FIRST and n + (n * MAX_STR_LEN + len(sep) * n) // TEXT_CHUNK <= cap:
        # the cost fits whatever the items hold (none holds more than MAX_STR_LEN): the text
        # the VM would make next is made first, and measured
        text = sep.join(items)
        if len(text) > MAX_STR_LEN:
            raise too_large("text", len(text), MAX_STR_LEN)
        return n + len(text) // TEXT_CHUNK, text
    length = sum(map(len, items)) + len(sep) * (n - 1 if n else 0)
    cost = n + length // TEXT_CHUNK
    if cost > cap:
        return cost, None
    if length > MAX_STR_LEN:
        raise too_large("text", length, MAX_STR_LEN)
    return cost, sep.join(items)


#: For some primitives of :data:`COST`, the cost and the result in one call: ``(cost, result)``
#: with the result computed (and any trap of the primitive raised) only when the cost is at
#: most ``cap`` (else None), so a caller passing the fuel left after the instruction's fixed
#: part takes the cost and runs the primitive in the VM's order.
CHARGED: dict[Op, Callable[[Value, int], tuple[int, Value]]] = {
    Op.LIST_SORT: _sort_charged,
    Op.STR_JOIN: _join_charged,
}


def fail(v: Value) -> Value:
    """``fail``: trap with kind ``raised``; ``v`` is (exception class name, message)."""
    name, message = v
    raise raised(name, message)
