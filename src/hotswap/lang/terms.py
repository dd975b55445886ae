"""Terms of the free bicartesian category with primitives: the core language.

Each class's docstring states its typing rule, read ``term : domain -> codomain``. ``Compose(f, g)``
is diagrammatic: first ``f``, then ``g`` (written ``f ; g`` or ``f >> g``).

The combinator API mirrors the seed's Cartesian class::

    copy = ID & ID                   # <id, id>
    swap = copy >> (SND * FST)       # copy >>> snd *** fst
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import cast

from hotswap.lang.types import Type


class Op(Enum):
    """Primitive operations. The value is the opcode byte used by ``PRIM`` in bytecode."""

    ADD = 0  # Int x Int -> Int
    SUB = 1
    MUL = 2
    FLOORDIV = 3
    MOD = 4
    NEG = 5  # Int -> Int
    LT = 6  # Int x Int -> Bool
    LE = 7
    EQ = 8
    NE = 9
    GT = 10
    GE = 11
    NOT = 12  # Bool -> Bool
    AND = 13  # Bool x Bool -> Bool
    OR = 14


ARITHMETIC = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.FLOORDIV, Op.MOD})
COMPARISONS = frozenset({Op.LT, Op.LE, Op.EQ, Op.NE, Op.GT, Op.GE})
LOGIC = frozenset({Op.AND, Op.OR})
#: Primitives that can trap (overflow or division by zero).
TRAPPING = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.FLOORDIV, Op.MOD, Op.NEG})


class _Combinators:
    """Operators shared by every term: ``f >> g`` composes, ``f & g`` fans out, ``f * g`` is par."""

    __slots__ = ()

    def __rshift__(self, other: Term) -> Term:
        return Compose(cast("Term", self), other)

    def __and__(self, other: Term) -> Term:
        return Fanout(cast("Term", self), other)

    def __mul__(self, other: Term) -> Term:
        return par(cast("Term", self), other)


@dataclass(frozen=True, slots=True)
class Id(_Combinators):
    """``id : A -> A``."""

    def __str__(self) -> str:
        return "id"


@dataclass(frozen=True, slots=True)
class Compose(_Combinators):
    """``f ; g : A -> C`` when ``f : A -> B`` and ``g : B -> C``."""

    first: Term
    then: Term

    def __str__(self) -> str:
        return f"({self.first} ; {self.then})"


@dataclass(frozen=True, slots=True)
class Fanout(_Combinators):
    """``<f, g> : A -> B x C`` when ``f : A -> B`` and ``g : A -> C``."""

    left: Term
    right: Term

    def __str__(self) -> str:
        return f"<{self.left}, {self.right}>"


@dataclass(frozen=True, slots=True)
class Fst(_Combinators):
    """``fst : A x B -> A``."""

    def __str__(self) -> str:
        return "fst"


@dataclass(frozen=True, slots=True)
class Snd(_Combinators):
    """``snd : A x B -> B``."""

    def __str__(self) -> str:
        return "snd"


@dataclass(frozen=True, slots=True)
class Terminal(_Combinators):
    """``! : A -> Unit``."""

    def __str__(self) -> str:
        return "!"


@dataclass(frozen=True, slots=True)
class Lit(_Combinators):
    """``n : A -> Int``, the constant arrow; ``n`` must lie in the signed 64-bit range."""

    value: int

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True, slots=True)
class Prim(_Combinators):
    """``op : Int x Int -> Int`` (arithmetic), ``Int x Int -> Bool`` (comparisons),
    ``Int -> Int`` (neg), ``Bool -> Bool`` (not), ``Bool x Bool -> Bool`` (and, or)."""

    op: Op

    def __str__(self) -> str:
        return self.op.name.lower()


@dataclass(frozen=True, slots=True)
class Inl(_Combinators):
    """``inl[B] : A -> A + B``; the annotation is the other summand ``B``."""

    other: Type

    def __str__(self) -> str:
        return f"inl[{self.other}]"


@dataclass(frozen=True, slots=True)
class Inr(_Combinators):
    """``inr[A] : B -> A + B``; the annotation is the other summand ``A``."""

    other: Type

    def __str__(self) -> str:
        return f"inr[{self.other}]"


@dataclass(frozen=True, slots=True)
class Case(_Combinators):
    """``[f | g] : A + B -> C`` when ``f : A -> C`` and ``g : B -> C``."""

    left: Term
    right: Term

    def __str__(self) -> str:
        return f"[{self.left} | {self.right}]"


@dataclass(frozen=True, slots=True)
class Distl(_Combinators):
    """``distl : E x (A + B) -> (E x A) + (E x B)``."""

    def __str__(self) -> str:
        return "distl"


Term = Id | Compose | Fanout | Fst | Snd | Terminal | Lit | Prim | Inl | Inr | Case | Distl

ID: Term = Id()
FST: Term = Fst()
SND: Term = Snd()
TERMINAL: Term = Terminal()
DISTL: Term = Distl()


def par(f: Term, g: Term) -> Term:
    """``f *** g : A x B -> C x D``, sugar for ``<fst ; f, snd ; g>``."""
    return Fanout(Compose(FST, f), Compose(SND, g))


def compose(*terms: Term) -> Term:
    """Left-to-right composition of any number of terms; ``compose()`` is ``id``."""
    if not terms:
        return ID
    result = terms[-1]
    for t in reversed(terms[:-1]):
        result = Compose(t, result)
    return result


def match_on(scrutinee: Term, left: Term, right: Term) -> Term:
    """``<id, scrutinee> ; distl ; [left | right]``: branch on a sum while keeping the context.

    Each arm receives ``(context, payload)``.
    """
    return compose(Fanout(ID, scrutinee), DISTL, Case(left, right))


def term_size(t: Term) -> int:
    """Number of nodes in the term tree."""
    match t:
        case Compose(a, b) | Fanout(a, b) | Case(a, b):
            return 1 + term_size(a) + term_size(b)
        case _:
            return 1
