"""Hypothesis strategies for every test, and the oracle of the DSL tests.

Core language: types, values of a type, and well-typed terms of a given domain. DSL: Python
types in the subset and Python values of a schema, and the oracle, which runs a machine's plain
Python function with every int replaced by a :class:`CheckedInt`, whose arithmetic traps exactly
like the core language (signed 64-bit overflow, division by zero, with the same :class:`Trap`).
Then the plain function *is* the specification, traps included, and any compiled path must give
the same outcome.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from hotswap.errors import Trap
from hotswap.lang import ints as core_ints
from hotswap.lang.check import infer
from hotswap.lang.evaluate import Value
from hotswap.lang.ints import INT_MAX, INT_MIN
from hotswap.lang.terms import (
    ARITHMETIC,
    COMPARISONS,
    DISTL,
    FST,
    ID,
    SND,
    TERMINAL,
    Case,
    Compose,
    Fanout,
    Inl,
    Inr,
    Lit,
    Op,
    Prim,
    Term,
)
from hotswap.lang.types import BOOL, INT, UNIT, IntT, Prod, Sum, Type, UnitT
from hotswap.names.schema import (
    BoolSchema,
    IntSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    TupleSchema,
    UnionSchema,
)

# --- core types, values and well-typed terms ------------------------------------------------------

leaf_types = st.sampled_from([UNIT, INT, BOOL])


def types(max_leaves: int = 6) -> st.SearchStrategy[Type]:
    return st.recursive(
        leaf_types,
        lambda inner: st.builds(Prod, inner, inner) | st.builds(Sum, inner, inner),
        max_leaves=max_leaves,
    )


#: Mostly small integers, sometimes near the edges of the range so that traps happen.
ints = st.one_of(
    st.integers(-5, 5),
    st.integers(INT_MIN, INT_MAX),
    st.sampled_from([INT_MIN, INT_MIN + 1, INT_MAX - 1, INT_MAX, 2**62, -(2**62)]),
)


def values(t: Type) -> st.SearchStrategy[Value]:
    """Values of type ``t``."""
    match t:
        case UnitT():
            return st.just(())
        case IntT():
            return ints
        case Prod(left, right):
            return st.tuples(values(left), values(right))
        case Sum(left, right):
            return st.one_of(
                values(left).map(lambda v: (0, v)), values(right).map(lambda v: (1, v))
            )
    raise AssertionError(t)


def _int_paths(t: Type, path: Term = ID) -> list[Term]:
    """Projections from ``t`` to each of its Int (or Bool) components reachable by fst/snd."""
    if t is INT or t is BOOL:
        return [path]
    if isinstance(t, Prod):
        return _int_paths(t.left, Compose(path, FST)) + _int_paths(t.right, Compose(path, SND))
    return []


@st.composite
def terms(draw: st.DrawFn, dom: Type, depth: int = 4) -> Term:
    """A term well typed at ``dom``, of any codomain."""
    choices: list[str] = ["id", "terminal", "lit", "inl", "inr"]
    if depth > 0:
        choices += ["compose", "fanout", "compose", "prim"]
    if isinstance(dom, Prod):
        choices += ["fst", "snd", "fst", "snd"]
        if isinstance(dom.right, Sum):
            choices.append("distl")
        if depth > 0:
            choices.append("match")
    if isinstance(dom, Sum) and depth > 0:
        choices += ["case", "case"]
    kind = draw(st.sampled_from(choices))
    sub = depth - 1
    match kind:
        case "id":
            return ID
        case "terminal":
            return TERMINAL
        case "lit":
            return Lit(draw(ints))
        case "inl":
            return Inl(draw(types(3)))
        case "inr":
            return Inr(draw(types(3)))
        case "fst":
            return FST
        case "snd":
            return SND
        case "distl":
            return DISTL
        case "compose":
            f = draw(terms(dom, sub))
            return Compose(f, draw(terms(infer(f, dom), sub)))
        case "fanout":
            return Fanout(draw(terms(dom, sub)), draw(terms(dom, sub)))
        case "prim":
            return draw(_prim_term(dom, sub))
        case "case":
            assert isinstance(dom, Sum)
            return _case(draw(terms(dom.left, sub)), draw(terms(dom.right, sub)), dom)
        case "match":
            scrutinee = draw(_sum_term(dom, sub))
            s = infer(scrutinee, dom)
            assert isinstance(s, Sum)
            left = draw(terms(Prod(dom, s.left), sub))
            right = draw(terms(Prod(dom, s.right), sub))
            return Compose(
                Fanout(ID, scrutinee),
                Compose(DISTL, _case(left, right, Sum(Prod(dom, s.left), Prod(dom, s.right)))),
            )
    raise AssertionError(kind)


def _case(f: Term, g: Term, dom: Sum) -> Term:
    """``[f | g]``, with the arms' codomains made to agree by injecting into their sum."""
    a, b = infer(f, dom.left), infer(g, dom.right)
    if a is b:
        return Case(f, g)
    return Case(Compose(f, Inl(b)), Compose(g, Inr(a)))


@st.composite
def _int_term(draw: st.DrawFn, dom: Type, depth: int) -> Term:
    paths = [p for p in _int_paths(dom) if infer(p, dom) is INT]
    options = [Lit(draw(ints)), *paths]
    if depth > 0:
        op = draw(st.sampled_from(sorted(ARITHMETIC, key=lambda o: o.value)))
        a, b = draw(_int_term(dom, depth - 1)), draw(_int_term(dom, depth - 1))
        options.append(Compose(Fanout(a, b), Prim(op)))
        options.append(Compose(a, Prim(Op.NEG)))
    return draw(st.sampled_from(options))


@st.composite
def _bool_term(draw: st.DrawFn, dom: Type, depth: int) -> Term:
    paths = [p for p in _int_paths(dom) if infer(p, dom) is BOOL]
    op = draw(st.sampled_from(sorted(COMPARISONS, key=lambda o: o.value)))
    a, b = draw(_int_term(dom, depth)), draw(_int_term(dom, depth))
    options = [Compose(Fanout(a, b), Prim(op)), *paths]
    if depth > 0:
        x, y = draw(_bool_term(dom, depth - 1)), draw(_bool_term(dom, depth - 1))
        logic = draw(st.sampled_from([Op.AND, Op.OR]))
        options += [Compose(Fanout(x, y), Prim(logic)), Compose(x, Prim(Op.NOT))]
    return draw(st.sampled_from(options))


@st.composite
def _prim_term(draw: st.DrawFn, dom: Type, depth: int) -> Term:
    if draw(st.booleans()):
        return draw(_int_term(dom, min(depth, 2)))
    return draw(_bool_term(dom, min(depth, 2)))


@st.composite
def _sum_term(draw: st.DrawFn, dom: Type, depth: int) -> Term:
    """A term from ``dom`` into some sum type: a comparison, a projection, or an injection."""
    sums = [p for p in _sum_paths(dom)]
    options = [
        draw(_bool_term(dom, min(depth, 2))),
        Compose(draw(terms(dom, depth)), Inl(draw(types(3)))),
    ]
    return draw(st.sampled_from(options + sums))


def _sum_paths(t: Type, path: Term = ID) -> list[Term]:
    if isinstance(t, Sum):
        return [path]
    if isinstance(t, Prod):
        return _sum_paths(t.left, Compose(path, FST)) + _sum_paths(t.right, Compose(path, SND))
    return []


@st.composite
def typed_terms(draw: st.DrawFn, depth: int = 4) -> tuple[Term, Type, Type, Value]:
    """``(term, dom, cod, value)`` with ``term : dom -> cod`` and ``value : dom``."""
    dom = draw(types())
    term = draw(terms(dom, depth))
    return term, dom, infer(term, dom), draw(values(dom))


# --- the DSL oracle: plain Python under the core language's integer rules -------------------------


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

    __add__ = _lift(core_ints.add)
    __radd__ = _lift_reflected(core_ints.add)
    __sub__ = _lift(core_ints.sub)
    __rsub__ = _lift_reflected(core_ints.sub)
    __mul__ = _lift(core_ints.mul)
    __rmul__ = _lift_reflected(core_ints.mul)
    __floordiv__ = _lift(core_ints.floordiv)
    __rfloordiv__ = _lift_reflected(core_ints.floordiv)
    __mod__ = _lift(core_ints.mod)
    __rmod__ = _lift_reflected(core_ints.mod)

    def __neg__(self) -> CheckedInt:
        return CheckedInt(core_ints.neg(int(self)))

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


# --- Python values of a schema --------------------------------------------------------------------

#: Ints for Python values: mostly near zero, sometimes at the edges of the range.
python_ints = st.one_of(
    st.integers(-1000, 1000),
    st.integers(INT_MIN, INT_MAX),
    st.sampled_from([INT_MIN, INT_MAX, INT_MIN + 1, INT_MAX - 1, 0, -1]),
)


def python_values(s: Schema, small: bool = False) -> st.SearchStrategy[Any]:
    """Python values of a schema whose records have classes; ``small`` keeps ints near zero."""
    match s:
        case IntSchema():
            return st.integers(-100, 100) if small else python_ints
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


# --- Python types in the DSL subset ---------------------------------------------------------------

_RECORD_NAMES = ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta"]
_FIELD_NAMES = ["a", "b", "c", "amount", "since"]


@st.composite
def record_classes(draw: st.DrawFn, depth: int, name: str | None = None) -> type:
    """A frozen dataclass with zero to three fields of subset types."""
    name = name if name is not None else draw(st.sampled_from(_RECORD_NAMES))
    fields = draw(st.lists(st.sampled_from(_FIELD_NAMES), max_size=3, unique=True))
    spec = [(f, draw(python_types(depth - 1))) for f in fields]
    return dataclasses.make_dataclass(name, spec, frozen=True)


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
