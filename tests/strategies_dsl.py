"""Hypothesis strategies and the oracle for DSL tests.

The oracle runs a machine's plain Python function with every int replaced by a
:class:`CheckedInt`, whose arithmetic traps exactly like the core language (signed 64-bit
overflow, division by zero, with the same :class:`Trap`). Then the plain function *is* the
specification, traps included, and any compiled path must give the same outcome.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from hotswap.errors import Trap
from hotswap.lang import ints
from hotswap.names.schema import (
    BoolSchema,
    IntSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    TupleSchema,
    UnionSchema,
)

# --- the oracle -----------------------------------------------------------------------------


def _lift(f: Callable[[int, int], int]) -> Any:
    def forward(self: CheckedInt, other: object) -> object:
        if not isinstance(other, int) or isinstance(other, bool):
            return NotImplemented
        return CheckedInt(f(int(self), int(other)))

    return forward


def _lift_reflected(f: Callable[[int, int], int]) -> Any:
    def reflected(self: CheckedInt, other: object) -> object:
        if not isinstance(other, int) or isinstance(other, bool):
            return NotImplemented
        return CheckedInt(f(int(other), int(self)))

    return reflected


class CheckedInt(int):
    """An int whose arithmetic follows the core language: results outside 64 bits trap."""

    __add__ = _lift(ints.add)
    __radd__ = _lift_reflected(ints.add)
    __sub__ = _lift(ints.sub)
    __rsub__ = _lift_reflected(ints.sub)
    __mul__ = _lift(ints.mul)
    __rmul__ = _lift_reflected(ints.mul)
    __floordiv__ = _lift(ints.floordiv)
    __rfloordiv__ = _lift_reflected(ints.floordiv)
    __mod__ = _lift(ints.mod)
    __rmod__ = _lift_reflected(ints.mod)

    def __neg__(self) -> CheckedInt:
        return CheckedInt(ints.neg(int(self)))

    def __pos__(self) -> CheckedInt:
        return self

    def __abs__(self) -> CheckedInt:
        return -self if self < 0 else self


def checked(v: Any) -> Any:
    """``v`` with every int (not bool) replaced by a :class:`CheckedInt`."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return CheckedInt(v)
    if isinstance(v, tuple):
        return tuple(checked(x) for x in v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return type(v)(**{f.name: checked(getattr(v, f.name)) for f in dataclasses.fields(v)})
    return v


def plain(v: Any) -> Any:
    """The inverse of :func:`checked`."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, tuple):
        return tuple(plain(x) for x in v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return type(v)(**{f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)})
    return v


Outcome = tuple[str, object]


def outcome(run: Callable[..., Any], *args: Any) -> Outcome:
    """``("ok", result)`` or ``("trap", trap)``."""
    try:
        return ("ok", run(*args))
    except Trap as t:
        return ("trap", t)


def python_outcome(fn: Callable[..., Any], *args: Any) -> Outcome:
    """What the plain Python function does under the core language's integer rules."""
    return outcome(lambda *a: plain(fn(*(checked(x) for x in a))), *args)


# --- values of a schema ---------------------------------------------------------------------

INTS = st.one_of(
    st.integers(-1000, 1000),
    st.integers(ints.INT_MIN, ints.INT_MAX),
    st.sampled_from([ints.INT_MIN, ints.INT_MAX, ints.INT_MIN + 1, ints.INT_MAX - 1, 0, -1]),
)


def python_values(s: Schema, small: bool = False) -> st.SearchStrategy[Any]:
    """Python values of a schema whose records have classes; ``small`` keeps ints near zero."""
    match s:
        case IntSchema():
            return st.integers(-100, 100) if small else INTS
        case BoolSchema():
            return st.booleans()
        case NoneSchema():
            return st.none()
        case TupleSchema(items):
            return st.tuples(*(python_values(i, small) for i in items))
        case RecordSchema(fields=fields, cls=cls):
            assert cls is not None
            kwargs = {f.name: python_values(f.schema, small) for f in fields}
            return st.builds(cls, **kwargs)
        case UnionSchema(alternatives):
            return st.one_of(*(python_values(a, small) for a in alternatives))
    raise AssertionError(s)


# --- Python types in the subset -------------------------------------------------------------

_RECORD_NAMES = ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta"]
_FIELD_NAMES = ["a", "b", "c", "amount", "since"]


@st.composite
def record_classes(draw: st.DrawFn, depth: int, name: str | None = None) -> type:
    """A frozen dataclass with zero to three fields of subset types."""
    name = name if name is not None else draw(st.sampled_from(_RECORD_NAMES))
    fields = draw(st.lists(st.sampled_from(_FIELD_NAMES), max_size=3, unique=True))
    types = [draw(python_types(depth - 1)) for _ in fields]
    return dataclasses.make_dataclass(name, list(zip(fields, types, strict=True)), frozen=True)


@st.composite
def python_types(draw: st.DrawFn, depth: int = 3) -> Any:
    """A type object in the DSL subset: int, bool, None, tuples, records and unions."""
    leaves = [int, bool, type(None)]
    if depth <= 0:
        return draw(st.sampled_from(leaves))
    kind = draw(st.sampled_from(["leaf", "tuple", "record", "union"]))
    if kind == "leaf":
        return draw(st.sampled_from(leaves))
    if kind == "tuple":
        items = draw(st.lists(python_types(depth - 1), min_size=2, max_size=3))
        return tuple.__class_getitem__(tuple(items))
    if kind == "record":
        return draw(record_classes(depth))
    names = draw(st.lists(st.sampled_from(_RECORD_NAMES), min_size=0, max_size=3, unique=True))
    alternatives: list[Any] = [draw(record_classes(depth, name)) for name in names]
    if draw(st.booleans()):
        alternatives.append(type(None))
    if draw(st.booleans()):
        alternatives.append(draw(st.sampled_from([int, bool])))
    if draw(st.booleans()):
        items = draw(st.lists(python_types(depth - 1), min_size=2, max_size=3))
        alternatives.append(tuple.__class_getitem__(tuple(items)))
    if len(alternatives) < 2:
        alternatives = [int, type(None)]
    order = draw(st.permutations(alternatives))
    return functools.reduce(operator.or_, order)
