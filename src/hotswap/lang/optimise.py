"""Sound rewrites of terms (docs/design.md, "The core language").

Terms are pure, and total except for traps, so each rule below preserves meaning, traps
included: a rule that drops a subterm applies only when that subterm cannot trap.

    id ; f        = f                 f ; id = f
    <f, g> ; fst  = f                 if g cannot trap
    <f, g> ; snd  = g                 if f cannot trap
    f ; k         = k                 k constant (!, n), if f cannot trap
    inl ; [f | g] = f                 inr ; [f | g] = g
    <fst, snd>    = id                [inl | inr] = id

``f ; <g, h>`` is never rewritten to ``<f ; g, f ; h>``: that would run ``f`` twice.
"""

from __future__ import annotations

from hotswap.lang.terms import (
    ID,
    TRAPPING,
    Case,
    Compose,
    Fail,
    Fanout,
    Fold,
    Fst,
    Id,
    Inl,
    Inr,
    Lit,
    Prim,
    Snd,
    Term,
    Terminal,
    compose,
)


def may_trap(term: Term) -> bool:
    """Whether running ``term`` can trap: it holds a primitive that can, a ``fail``, or a
    ``fold`` (which can run out of fuel)."""
    stack = [term]
    while stack:  # iterative: DSL terms nest deeper than Python's recursion allows
        match stack.pop():
            case Compose(a, b) | Fanout(a, b) | Case(a, b):
                stack.extend((a, b))
            case Prim(op) if op in TRAPPING:
                return True
            case Fold() | Fail():
                return True
    return False


def flatten(term: Term) -> list[Term]:
    """The maximal composition chain of ``term`` as a list, without identities."""
    out: list[Term] = []
    stack = [term]
    while stack:
        t = stack.pop()
        match t:
            case Compose(first, then):
                stack.extend((then, first))
            case Id():
                pass
            case _:
                out.append(t)
    return out


def optimise(term: Term) -> Term:
    """Rewrite ``term`` to a simpler term with the same meaning and the same traps."""
    match term:
        case Compose():
            return compose(*_simplify_chain([optimise(t) for t in flatten(term)]))
        case Fanout(f, g):
            f, g = optimise(f), optimise(g)
            if isinstance(f, Fst) and isinstance(g, Snd):  # <fst, snd> = id
                return ID
            return Fanout(f, g)
        case Case(f, g):
            f, g = optimise(f), optimise(g)
            if isinstance(f, Inl) and isinstance(g, Inr):  # [inl | inr] = id
                return ID
            return Case(f, g)
        case Fold(body):
            return Fold(optimise(body))
        case _:
            return term


def _simplify_chain(items: list[Term]) -> list[Term]:
    out: list[Term] = []
    work = list(reversed(items))
    while work:
        t = work.pop()
        if isinstance(t, Id):
            continue
        if isinstance(t, Compose):
            work.extend(reversed(flatten(t)))
            continue
        if out:
            replacement = _combine(out[-1], t)
            if replacement is not None:
                out.pop()
                work.extend(reversed(flatten(replacement)))
                continue
        out.append(t)
    return out


def _combine(prev: Term, t: Term) -> Term | None:
    """The single term that ``prev ; t`` rewrites to, or None."""
    match prev, t:
        case Fanout(f, g), Fst() if not may_trap(g):  # <f, g> ; fst = f
            return f
        case Fanout(f, g), Snd() if not may_trap(f):  # <f, g> ; snd = g
            return g
        case _, Terminal() | Lit() if not may_trap(prev):  # f ; k = k
            return t
        case Inl(), Case(f, _):  # inl ; [f | g] = f
            return f
        case Inr(), Case(_, g):  # inr ; [f | g] = g
            return g
    return None
