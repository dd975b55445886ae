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
    V1_OPS,
    Case,
    Compose,
    Distl,
    Empty,
    Fail,
    Fanout,
    Fold,
    Fst,
    Id,
    Inl,
    Inr,
    Lit,
    Op,
    Prim,
    Snd,
    StrLit,
    Term,
    Terminal,
)
from hotswap.lang.types import (
    BOOL,
    INT,
    STR,
    UNIT,
    ListT,
    MapT,
    Prod,
    Sum,
    Type,
)

_INT_PAIR = Prod(INT, INT)
_BOOL_PAIR = Prod(BOOL, BOOL)
_STR_PAIR = Prod(STR, STR)
_BOUNDS = Prod(INT, INT)

#: Longest text a Str holds, in code points, and most elements of a list or map.
MAX_STR_LEN = 1 << 20
MAX_ELEMENTS = 1 << 24
#: Most bytes a machine's state may encode in after a step, an init or a migration (256 MiB):
#: a state past it could not be written to the store, and sharing lets a few steps build one
#: (a list holding one big list a million times is small in memory, huge encoded).
MAX_STATE_BYTES = 1 << 28


def prim_signature(op: Op) -> tuple[Type, Type]:
    """``(domain, codomain)`` of a primitive of module format 1 (monomorphic)."""
    if op in ARITHMETIC:
        return _INT_PAIR, INT
    if op in COMPARISONS:
        return _INT_PAIR, BOOL
    if op in LOGIC:
        return _BOOL_PAIR, BOOL
    if op is Op.NEG:
        return INT, INT
    if op is Op.NOT:
        return BOOL, BOOL
    raise ValueError(f"{op.name.lower()} is polymorphic: use prim_codomain")


def prim_codomain(op: Op, dom: Type) -> Type | str:
    """The codomain of primitive ``op`` at domain ``dom``, or a description of the domain it
    needs (docs/bytecode.md, "Primitives")."""
    if op in V1_OPS:
        expected, result = prim_signature(op)
        return result if dom is expected else str(expected)
    match op:
        case Op.EQUAL | Op.NOT_EQUAL:
            ok = isinstance(dom, Prod) and dom.left is dom.right
            return BOOL if ok else "A x A"
        case Op.STR_LT | Op.STR_LE | Op.STR_GT | Op.STR_GE | Op.STR_CONTAINS:
            return BOOL if dom is _STR_PAIR else "Str x Str"
        case Op.STR_LEN:
            return INT if dom is STR else "Str"
        case Op.STR_CONCAT:
            return STR if dom is _STR_PAIR else "Str x Str"
        case Op.STR_SLICE:
            return STR if dom is Prod(STR, _BOUNDS) else "Str x (Int x Int)"
        case Op.STR_INDEX:
            return STR if dom is Prod(STR, INT) else "Str x Int"
        case Op.INT_TO_STR:
            return STR if dom is INT else "Int"
        case Op.RANGE:
            return ListT(INT) if dom is _INT_PAIR else "Int x Int"
        case Op.STR_JOIN:
            return STR if dom is Prod(STR, ListT(STR)) else "Str x List Str"
        case Op.STR_FIND:
            return INT if dom is _STR_PAIR else "Str x Str"
        case Op.STR_SPLIT:
            return ListT(STR) if dom is _STR_PAIR else "Str x Str"
    return _collection_codomain(op, dom)


def _collection_codomain(op: Op, dom: Type) -> Type | str:
    coll = dom.left if isinstance(dom, Prod) else dom
    arg = dom.right if isinstance(dom, Prod) else None
    if op in _LIST_OPS:
        if not isinstance(coll, ListT):
            return _LIST_OPS[op]
        a = coll.elem
        match op:
            case Op.LIST_LEN:
                return INT if dom is coll else _LIST_OPS[op]
            case Op.LIST_SORT:
                return coll if dom is coll and a in (INT, STR) else "List Int or List Str"
            case Op.LIST_APPEND:
                return coll if arg is a else _LIST_OPS[op]
            case Op.LIST_CONTAINS:
                return BOOL if arg is a else _LIST_OPS[op]
            case Op.LIST_CONCAT:
                return coll if arg is coll else _LIST_OPS[op]
            case Op.LIST_INDEX:
                return a if arg is INT else _LIST_OPS[op]
            case Op.LIST_SLICE:
                return coll if arg is _BOUNDS else _LIST_OPS[op]
            case Op.LIST_SET:
                return coll if arg is Prod(INT, a) else _LIST_OPS[op]
    if op in _MAP_OPS:
        if not isinstance(coll, MapT):
            return _MAP_OPS[op]
        k, v = coll.key, coll.value
        match op:
            case Op.MAP_LEN:
                return INT if dom is coll else _MAP_OPS[op]
            case Op.MAP_KEYS:
                return ListT(k) if dom is coll else _MAP_OPS[op]
            case Op.MAP_VALUES:
                return ListT(v) if dom is coll else _MAP_OPS[op]
            case Op.MAP_ITEMS:
                return ListT(Prod(k, v)) if dom is coll else _MAP_OPS[op]
            case Op.MAP_GET:
                return Sum(UNIT, v) if arg is k else _MAP_OPS[op]
            case Op.MAP_INDEX:
                return v if arg is k else _MAP_OPS[op]
            case Op.MAP_CONTAINS:
                return BOOL if arg is k else _MAP_OPS[op]
            case Op.MAP_DELETE:
                return coll if arg is k else _MAP_OPS[op]
            case Op.MAP_INSERT:
                return coll if arg is Prod(k, v) else _MAP_OPS[op]
            case Op.MAP_MERGE:
                return coll if arg is coll else _MAP_OPS[op]
    return f"a domain for {op.name.lower()}"


_LIST_OPS = {
    Op.LIST_LEN: "List A",
    Op.LIST_SORT: "List Int or List Str",
    Op.LIST_APPEND: "List A x A",
    Op.LIST_CONTAINS: "List A x A",
    Op.LIST_CONCAT: "List A x List A",
    Op.LIST_INDEX: "List A x Int",
    Op.LIST_SLICE: "List A x (Int x Int)",
    Op.LIST_SET: "List A x (Int x A)",
}
_MAP_OPS = {
    Op.MAP_LEN: "Map K V",
    Op.MAP_KEYS: "Map K V",
    Op.MAP_VALUES: "Map K V",
    Op.MAP_ITEMS: "Map K V",
    Op.MAP_GET: "Map K V x K",
    Op.MAP_INDEX: "Map K V x K",
    Op.MAP_CONTAINS: "Map K V x K",
    Op.MAP_DELETE: "Map K V x K",
    Op.MAP_INSERT: "Map K V x (K x V)",
    Op.MAP_MERGE: "Map K V x Map K V",
}


def collection_type_problem(t: Type) -> str | None:
    """Why ``t`` may not be the type of an ``empty`` (None if it may)."""
    if isinstance(t, ListT):
        return None
    if isinstance(t, MapT):
        return None
    return f"{t} is not a List or Map type"


def fold_codomain(dom: Type) -> tuple[Type, Type] | str:
    """For ``fold`` at ``dom = E x (List A x S)``: ``(body domain E x (A x S), S)``, or what
    was expected."""
    if not (
        isinstance(dom, Prod) and isinstance(dom.right, Prod) and isinstance(dom.right.left, ListT)
    ):
        return "E x (List A x S)"
    env, (lst, acc) = dom.left, (dom.right.left, dom.right.right)
    return Prod(env, Prod(lst.elem, acc)), acc


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
            result = prim_codomain(op, dom)
            if isinstance(result, str):
                raise TermTypeError(term, result, dom)
            return result
        case StrLit(text):  # "text" : A -> Str
            if not isinstance(text, str) or len(text) > MAX_STR_LEN or not _valid_text(text):
                raise TermTypeError(term, "text of at most 2**20 code points", repr(text)[:60])
            return STR
        case Empty(t):  # empty[T] : A -> T
            problem = collection_type_problem(t)
            if problem is not None:
                raise TermTypeError(term, "a List or Map type", t, problem)
            return t
        case Fail(t):  # fail[T] : Str x Str -> T
            if dom is not _STR_PAIR:
                raise TermTypeError(term, "Str x Str", dom)
            return t
        case Fold(body):  # fold(f) : E x (List A x S) -> S + R
            shape = fold_codomain(dom)
            if isinstance(shape, str):
                raise TermTypeError(term, shape, dom)
            body_dom, acc = shape
            out = infer(body, body_dom)
            if not (isinstance(out, Sum) and out.left is acc):
                raise TermTypeError(term, f"{acc} + R", out, "a fold's body must give S + R")
            return out
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


def _valid_text(text: str) -> bool:
    """No lone surrogates: the text has a UTF-8 encoding."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check(term: Term, dom: Type, cod: Type) -> None:
    """Raise :class:`TermTypeError` unless ``term : dom -> cod``."""
    actual = infer(term, dom)
    if actual != cod:
        raise TermTypeError(term, cod, actual, "wrong codomain")
