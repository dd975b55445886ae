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
    # Module format 2: equality on every type, text, lists and maps (docs/bytecode.md, 5.3).
    EQUAL = 15  # A x A -> Bool, structural
    NOT_EQUAL = 16
    STR_LT = 17  # Str x Str -> Bool, by code point
    STR_LE = 18
    STR_GT = 19
    STR_GE = 20
    STR_LEN = 21  # Str -> Int, in code points
    STR_CONCAT = 22  # Str x Str -> Str
    STR_SLICE = 23  # Str x (Int x Int) -> Str, as Python's s[a:b]
    STR_INDEX = 24  # Str x Int -> Str, s[i]; traps index_error
    STR_CONTAINS = 25  # Str x Str -> Bool, needle in haystack (haystack first)
    INT_TO_STR = 26  # Int -> Str, decimal
    LIST_LEN = 27  # List A -> Int
    LIST_APPEND = 28  # List A x A -> List A
    LIST_CONCAT = 29  # List A x List A -> List A
    LIST_INDEX = 30  # List A x Int -> A, xs[i]; traps index_error
    LIST_SLICE = 31  # List A x (Int x Int) -> List A, as Python's xs[a:b]
    LIST_CONTAINS = 32  # List A x A -> Bool
    LIST_SORT = 33  # List A -> List A, A is Int or Str
    LIST_SET = 34  # List A x (Int x A) -> List A; traps index_error
    MAP_LEN = 35  # Map K V -> Int
    MAP_GET = 36  # Map K V x K -> Unit + V (left: missing)
    MAP_INSERT = 37  # Map K V x (K x V) -> Map K V
    MAP_DELETE = 38  # Map K V x K -> Map K V
    MAP_CONTAINS = 39  # Map K V x K -> Bool
    MAP_KEYS = 40  # Map K V -> List K, in insertion order
    MAP_VALUES = 41  # Map K V -> List V
    MAP_ITEMS = 42  # Map K V -> List (K x V)
    MAP_MERGE = 43  # Map K V x Map K V -> Map K V, as Python's d | e
    RANGE = 44  # Int x Int -> List Int, as Python's range(a, b)
    MAP_INDEX = 45  # Map K V x K -> V, d[k]; traps missing_key
    STR_JOIN = 46  # Str x List Str -> Str, sep.join(xs)
    STR_FIND = 47  # Str x Str -> Int, s.find(sub): the first index, -1 if none
    STR_SPLIT = 48  # Str x Str -> List Str, s.split(sep); s.split() for an empty sep


ARITHMETIC = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.FLOORDIV, Op.MOD})
COMPARISONS = frozenset({Op.LT, Op.LE, Op.EQ, Op.NE, Op.GT, Op.GE})
LOGIC = frozenset({Op.AND, Op.OR})
#: The primitives of module format 1; the others need format 2.
V1_OPS = frozenset(op for op in Op if op.value <= Op.OR.value)
#: Primitives that can trap: overflow, division by zero, an index or key that is not there, a
#: result past the limits on collection and text sizes.
TRAPPING = frozenset(
    {
        Op.ADD,
        Op.SUB,
        Op.MUL,
        Op.FLOORDIV,
        Op.MOD,
        Op.NEG,
        Op.STR_CONCAT,
        Op.STR_INDEX,
        Op.LIST_APPEND,
        Op.LIST_CONCAT,
        Op.LIST_INDEX,
        Op.LIST_SET,
        Op.MAP_INSERT,
        Op.MAP_MERGE,
        Op.RANGE,
        Op.MAP_INDEX,
        Op.STR_JOIN,
    }
)


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
class StrLit(_Combinators):
    """``"text" : A -> Str``, the constant arrow (module format 2)."""

    value: str

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, slots=True)
class Empty(_Combinators):
    """``empty[T] : A -> T`` where ``T`` is a ``List`` or ``Map`` type: the empty collection."""

    type: Type

    def __str__(self) -> str:
        return f"empty[{self.type}]"


@dataclass(frozen=True, slots=True)
class Fold(_Combinators):
    """``fold(f) : E x (List A x S) -> S + R`` when ``f : E x (A x S) -> S + R``.

    Runs ``f`` on each element in order, threading the state ``S``; ``f`` returning ``inl s``
    goes on with ``s``, ``inr r`` stops at once with ``inr r``. An exhausted list gives
    ``inl s``. ``E`` is the environment every iteration sees."""

    body: Term

    def __str__(self) -> str:
        return f"fold({self.body})"


@dataclass(frozen=True, slots=True)
class Fail(_Combinators):
    """``fail[T] : Str x Str -> T``: traps with kind ``raised``, an exception class name and a
    message; ``T`` is any type (the annotation), since no value is ever produced."""

    type: Type

    def __str__(self) -> str:
        return f"fail[{self.type}]"


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


Term = (
    Id
    | Compose
    | Fanout
    | Fst
    | Snd
    | Terminal
    | Lit
    | Prim
    | Inl
    | Inr
    | Case
    | Distl
    | StrLit
    | Empty
    | Fold
    | Fail
)

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
        case Fold(body):
            return 1 + term_size(body)
        case _:
            return 1
