"""The reference evaluator: a direct reading of each term's meaning. It is the oracle.

Values: Unit is ``()``, Int a Python ``int``, a pair a 2-tuple, ``inl v`` is ``(0, v)`` and
``inr v`` is ``(1, v)``. Bool is ``(0, ())`` for false and ``(1, ())`` for true. A Str is a
Python ``str``, a list a persistent vector and a map an ordered persistent map
(:mod:`hotswap.lang.persistent`).
"""

from __future__ import annotations

from typing import Any, assert_never

from hotswap.errors import InternalError
from hotswap.lang import ints, prims
from hotswap.lang.persistent import EMPTY_LIST, EMPTY_MAP
from hotswap.lang.terms import (
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
from hotswap.lang.types import ListT

Value = Any  # (), int, (Value, Value) or (0|1, Value)

FALSE: Value = (0, ())
TRUE: Value = (1, ())


def from_bool(b: bool) -> Value:
    return TRUE if b else FALSE


def apply_prim(op: Op, v: Value) -> Value:
    """Apply a primitive to its argument value; traps are :class:`hotswap.errors.Trap`."""
    if op in ints.ARITH:
        return ints.ARITH[op](v[0], v[1])
    if op in ints.COMPARE:
        return from_bool(ints.COMPARE[op](v[0], v[1]))
    match op:
        case Op.NEG:
            return ints.neg(v)
        case Op.NOT:
            return from_bool(not v[0])
        case Op.AND:
            return from_bool(bool(v[0][0] and v[1][0]))
        case Op.OR:
            return from_bool(bool(v[0][0] or v[1][0]))
    impl = prims.IMPL.get(op)
    if impl is not None:
        return impl(v)
    raise InternalError(f"primitive {op} has no meaning")


def evaluate(term: Term, v: Value) -> Value:
    """The value of ``term`` at ``v``; ``term`` must be well typed at the type of ``v``."""
    match term:
        case Id():
            return v
        case Compose(f, g):
            return evaluate(g, evaluate(f, v))
        case Fanout(f, g):
            return (evaluate(f, v), evaluate(g, v))
        case Fst():
            return v[0]
        case Snd():
            return v[1]
        case Terminal():
            return ()
        case Lit(n):
            return n
        case Prim(op):
            return apply_prim(op, v)
        case Inl():
            return (0, v)
        case Inr():
            return (1, v)
        case Case(f, g):
            return evaluate(g if v[0] else f, v[1])
        case Distl():
            env, (tag, payload) = v
            return (tag, (env, payload))
        case StrLit(text):
            return text
        case Empty(t):
            return EMPTY_LIST if isinstance(t, ListT) else EMPTY_MAP
        case Fail():
            return prims.fail(v)
        case Fold(body):
            env, (items, acc) = v
            for item in items:
                out = evaluate(body, (env, (item, acc)))
                if out[0]:
                    return out
                acc = out[1]
            return (0, acc)
        case _:
            assert_never(term)
