"""Term shapes the DSL compiler emits: constants, injections into unions, branching.

All of them are built from the core combinators of :mod:`hotswap.lang.terms`; nothing here is
new semantics. ``switch`` is the heart of ``match``: ``<id, x> ; distl ; [arm0 | distl ; [...]]``
hands each arm the context paired with the payload of its alternative.
"""

from __future__ import annotations

from collections.abc import Callable

from hotswap.dsl.env import Env, Ref, UnitRef, build_product, component_path, seq
from hotswap.lang.terms import (
    DISTL,
    FST,
    ID,
    TERMINAL,
    Case,
    Compose,
    Fanout,
    Fold,
    Inl,
    Inr,
    Term,
)
from hotswap.lang.types import UNIT, Sum, Type
from hotswap.names.schema import Schema, TupleSchema, UnionSchema, core_type, is_unit

#: ``false``/``true`` from any domain.
FALSE: Term = Compose(TERMINAL, Inl(UNIT))
TRUE: Term = Compose(TERMINAL, Inr(UNIT))


def inject(union: UnionSchema, index: int) -> Term:
    """The injection of alternative ``index`` into ``union`` (a right-nested sum).

    For ``A + (B + C)``: ``inl[B + C]``, ``inl[C] ; inr[A]`` and ``inr[B] ; inr[A]``.
    """
    types = [core_type(a) for a in union.alternatives]
    n = len(types)
    suffix: list[Type] = [types[-1]]
    for t in reversed(types[:-1]):
        suffix.insert(0, Sum(t, suffix[0]))
    steps: list[Term] = [Inl(suffix[index + 1])] if index < n - 1 else []
    steps.extend(Inr(types[k]) for k in range(index - 1, -1, -1))
    return seq(*steps)


def if_then_else(cond: Term, then: Term, orelse: Term) -> Term:
    """Branch on a Bool computed from the context; both arms run in the unchanged context."""
    return seq(Fanout(ID, cond), DISTL, Case(Compose(FST, orelse), Compose(FST, then)))


Arm = Callable[[int, Env, Ref], Term]


def switch(env: Env, scrutinee: Ref, payloads: list[Schema], arm: Arm) -> Term:
    """Case analysis of a right-nested sum read from ``scrutinee``; ``payloads`` are the schemas
    of its alternatives.

    ``arm(i, env_i, payload_i)`` builds arm ``i`` in the extended context; a Unit payload is
    dropped with ``fst`` instead of pushed.
    """
    arms: list[Term] = []
    for index, schema in enumerate(payloads):
        if is_unit(schema):
            arms.append(Compose(FST, arm(index, env, UnitRef(schema))))
        else:
            inner, ref = env.push(schema)
            arms.append(arm(index, inner, ref))
    chain = arms[-1]
    for a in reversed(arms[:-1]):
        chain = seq(DISTL, Case(a, chain))
    return seq(Fanout(ID, env.read(scrutinee)), chain)


def case_nesting(term: Term) -> int:
    """How deeply the term's case analyses nest (the bytecode bounds it: ``MAX_NESTING``)."""
    deepest = 0
    stack = [(term, 0)]
    while stack:
        t, depth = stack.pop()
        match t:
            case Case(a, b):
                deepest = max(deepest, depth + 1)
                stack.extend(((a, depth + 1), (b, depth + 1)))
            case Compose(a, b) | Fanout(a, b):
                stack.extend(((a, depth), (b, depth)))
            case Fold(body):
                stack.append((body, depth))
            case _:
                pass
    return deepest


def fold_nesting(term: Term) -> int:
    """How deeply the term's folds nest (the bytecode bounds it: ``MAX_FOLD_NESTING``)."""
    deepest = 0
    stack = [(term, 0)]
    while stack:
        t, depth = stack.pop()
        match t:
            case Fold(body):
                deepest = max(deepest, depth + 1)
                stack.append((body, depth + 1))
            case Compose(a, b) | Fanout(a, b) | Case(a, b):
                stack.extend(((a, depth), (b, depth)))
            case _:
                pass
    return deepest


def coercion(actual: Schema, expected: Schema) -> Term | None:
    """The term turning a value of ``actual`` into one of ``expected``: the identity, an
    injection into a union, a case over a smaller union, or the same item-wise on tuples."""
    if actual == expected:
        return ID
    if isinstance(expected, UnionSchema):
        if isinstance(actual, UnionSchema):
            arms = [coercion(a, expected) for a in actual.alternatives]
            if any(a is None for a in arms):
                return None
            chain = arms[-1]
            for arm in reversed(arms[:-1]):
                assert arm is not None and chain is not None
                chain = Case(arm, chain)
            return chain
        for index, alt in enumerate(expected.alternatives):
            inner = coercion(actual, alt)
            if inner is not None:
                return seq(inner, inject(expected, index))
        return None
    if isinstance(actual, TupleSchema) and isinstance(expected, TupleSchema):
        n = len(actual.items)
        if n != len(expected.items):
            return None
        parts = [coercion(a, e) for a, e in zip(actual.items, expected.items, strict=True)]
        if any(p is None for p in parts):
            return None
        return build_product(
            [seq(*component_path(i, n), p) for i, p in enumerate(parts) if p is not None]
        )
    return None


def substitute(term: Term, replacements: dict[int, Term]) -> Term:
    """``term`` with each subterm whose ``id`` is a key of ``replacements`` (a placeholder
    object, found by identity) replaced; shared subterms stay shared."""
    if not replacements:
        return term
    done: dict[int, Term] = {}
    stack: list[tuple[Term, bool]] = [(term, False)]
    while stack:
        t, expanded = stack.pop()
        if id(t) in done:
            continue
        if id(t) in replacements:
            done[id(t)] = replacements[id(t)]
            continue
        match t:
            case Compose(a, b) | Fanout(a, b) | Case(a, b):
                if not expanded:
                    stack.append((t, True))
                    stack.extend(((b, False), (a, False)))
                    continue
                left, right = done[id(a)], done[id(b)]
                if left is a and right is b:
                    done[id(t)] = t
                else:
                    done[id(t)] = type(t)(left, right)
            case _:
                done[id(t)] = t
    return done[id(term)]
