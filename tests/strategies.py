"""Hypothesis strategies: types, values of a type, and well-typed terms of a given domain."""

from __future__ import annotations

from hypothesis import strategies as st

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
