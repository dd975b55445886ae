"""The type checker: one forward pass computing a term's codomain from its domain.

Injections carry the other summand, so no unification is ever needed (docs/design.md, "The core
language").
"""

from __future__ import annotations

from typing import assert_never

from hotswap.errors import TermTypeError
from hotswap.lang.ints import in_range
from hotswap.lang.terms import (
    ARITHMETIC,
    COMPARISONS,
    LOGIC,
    Case,
    Compose,
    Distl,
    Fanout,
    Fst,
    Id,
    Inl,
    Inr,
    Lit,
    Op,
    Prim,
    Snd,
    Term,
    Terminal,
)
from hotswap.lang.types import BOOL, INT, UNIT, Prod, Sum, Type

_INT_PAIR = Prod(INT, INT)
_BOOL_PAIR = Prod(BOOL, BOOL)


def prim_signature(op: Op) -> tuple[Type, Type]:
    """``(domain, codomain)`` of a primitive."""
    if op in ARITHMETIC:
        return _INT_PAIR, INT
    if op in COMPARISONS:
        return _INT_PAIR, BOOL
    if op in LOGIC:
        return _BOOL_PAIR, BOOL
    if op is Op.NEG:
        return INT, INT
    return BOOL, BOOL  # Op.NOT


def infer(term: Term, dom: Type) -> Type:
    """The codomain of ``term`` applied to ``dom``, or :class:`TermTypeError` naming the subterm."""
    match term:
        case Id():  # id : A -> A
            return dom
        case Compose(f, g):  # f ; g
            return infer(g, infer(f, dom))
        case Fanout(f, g):  # <f, g> : A -> B x C
            return Prod(infer(f, dom), infer(g, dom))
        case Fst():  # fst : A x B -> A
            if not isinstance(dom, Prod):
                raise TermTypeError(term, "a product", dom)
            return dom.left
        case Snd():  # snd : A x B -> B
            if not isinstance(dom, Prod):
                raise TermTypeError(term, "a product", dom)
            return dom.right
        case Terminal():  # ! : A -> Unit
            return UNIT
        case Lit(n):  # n : A -> Int
            if not in_range(n):
                raise TermTypeError(term, "a signed 64-bit literal", str(n))
            return INT
        case Prim(op):
            expected, result = prim_signature(op)
            if dom != expected:
                raise TermTypeError(term, expected, dom)
            return result
        case Inl(other):  # inl[B] : A -> A + B
            return Sum(dom, other)
        case Inr(other):  # inr[A] : B -> A + B
            return Sum(other, dom)
        case Case(f, g):  # [f | g] : A + B -> C
            if not isinstance(dom, Sum):
                raise TermTypeError(term, "a sum", dom)
            left = infer(f, dom.left)
            right = infer(g, dom.right)
            if left != right:
                raise TermTypeError(term, left, right, "arms of a case disagree")
            return left
        case Distl():  # distl : E x (A + B) -> E x A + E x B
            if not (isinstance(dom, Prod) and isinstance(dom.right, Sum)):
                raise TermTypeError(term, "E x (A + B)", dom)
            env, alts = dom.left, dom.right
            return Sum(Prod(env, alts.left), Prod(env, alts.right))
        case _:
            assert_never(term)


def check(term: Term, dom: Type, cod: Type) -> None:
    """Raise :class:`TermTypeError` unless ``term : dom -> cod``."""
    actual = infer(term, dom)
    if actual != cod:
        raise TermTypeError(term, cod, actual, "wrong codomain")
