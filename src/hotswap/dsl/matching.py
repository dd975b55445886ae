"""Compiling ``match`` to a decision tree (Maranget, "Compiling pattern matching to good decision
trees", 2008), with exhaustiveness and reachability checks.

The matrix has one column per value still to inspect (a reference into the context) and one row
per case alternative. Each step either finishes (the first row matches anything: bind its
captures and run its body, or test its guard and fall back to the remaining rows) or inspects
the first column the first row constrains:

    union / bool      <id, x> ; distl ; [arm0 | distl ; [arm1 | ...]]   one arm per alternative,
                      each with the rows that accept it; the payload becomes a new column
    int literal n     <id, x == n> ; distl ; [fst ; rest | fst ; rows accepting n]

Records and tuples never branch: their columns are replaced by their fields. When no row is left
the match is not exhaustive, and the constructors chosen on the way name a missing value.
Variables that are the inspected value are narrowed to the alternative in each arm.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar, assert_never

from hotswap.dsl.combinators import coercion, if_then_else, switch
from hotswap.dsl.env import Env, Ref, component, narrowed_to, seq
from hotswap.dsl.functions import DslFunction, Session
from hotswap.dsl.patterns import Con, IntLit, Pat, Prod, Wild, alternatives
from hotswap.lang.terms import Fanout, Lit, Op, Prim, StrLit, Term
from hotswap.names.schema import (
    BoolSchema,
    DictSchema,
    IntSchema,
    ListSchema,
    NoneSchema,
    RecordSchema,
    StrSchema,
    TupleSchema,
    UnionSchema,
    components,
    describe,
)


@dataclass(frozen=True, slots=True)
class Row:
    pats: tuple[Pat, ...]
    bindings: tuple[tuple[str, Ref], ...]
    case: int


@dataclass(frozen=True, slots=True)
class Chosen:
    """On this path the value is alternative ``index``, whose payload is ``payload``."""

    index: int
    payload: Ref


@dataclass(frozen=True, slots=True)
class Ints:
    """On this path the int (or str) equals ``equal``, or differs from every one of
    ``excluded``."""

    equal: int | str | None = None
    excluded: tuple[int | str, ...] = ()


Fact = Chosen | Ints
Leaf = Callable[[int, Env], Term]
Guard = Callable[[int, Env], Term | None]


class MatchCompiler:
    """Compiles one ``match`` statement; ``leaf(case, env)`` and ``guard(case, env)`` compile a
    case's body and guard in the environment with its captures bound."""

    def __init__(
        self,
        session: Session,
        function: DslFunction,
        node: ast.Match,
        root: Ref,
        leaf: Leaf,
        guard: Guard,
    ) -> None:
        self.session = session
        self.function = function
        self.node = node
        self.root = root
        self.leaf = leaf
        self.guard = guard
        self.used: set[int] = set()

    def compile(self, env: Env, rows: list[Row]) -> Term:
        term = self._tree(env, (self.root,), rows, {}, guarded=False)
        # A match copied into several branches is compiled once per copy, and a subject narrowed
        # by an enclosing match leaves other cases to each copy: a case is unreachable when no
        # copy reaches it, which the session checks once the whole function is compiled.
        self.session.reach(self.function, self.node, self.used)
        return term

    def _tree(
        self,
        env: Env,
        cols: tuple[Ref, ...],
        rows: list[Row],
        facts: dict[Ref, Fact],
        guarded: bool,
    ) -> Term:
        cols, rows = _simplify(cols, rows)
        if not rows:
            witness = _show(self.root, facts)
            tail = " when the guards are false" if guarded else ""
            raise self.function.error(
                self.node, f"non-exhaustive match: {witness} not handled{tail}"
            )
        first = rows[0]
        column = next((j for j, p in enumerate(first.pats) if not isinstance(p, Wild)), None)
        if column is None:
            return self._leaf(env, cols, rows, facts)
        pat = first.pats[column]
        col = cols[column]
        if isinstance(pat, IntLit):
            return self._int_test(env, cols, rows, facts, column, pat.value, guarded)
        alts = alternatives(col.schema)
        assert alts is not None

        def arm(index: int, inner: Env, payload: Ref) -> Term:
            if isinstance(col.schema, UnionSchema):
                payload = narrowed_to(payload, col.schema, index)
            kept = []
            for row in rows:
                p = row.pats[column]
                if isinstance(p, Con) and p.index != index:
                    continue
                sub = p.payload if isinstance(p, Con) else Wild()
                bindings = row.bindings
                if isinstance(col.schema, UnionSchema):  # narrowing
                    bindings = tuple((n, payload if r == col else r) for n, r in bindings)
                kept.append(replace(row, pats=_put(row.pats, column, sub), bindings=bindings))
            if isinstance(col.schema, UnionSchema):
                inner = inner.rebind_place(col, payload)
            new_facts = {**facts, col: Chosen(index, payload)}
            return self._tree(inner, _put(cols, column, payload), kept, new_facts, guarded)

        return switch(env, col, alts, arm)

    def _leaf(
        self, env: Env, cols: tuple[Ref, ...], rows: list[Row], facts: dict[Ref, Fact]
    ) -> Term:
        self.session.copy(self.function, self.node)
        first = rows[0]
        self.used.add(first.case)
        inner = env
        for name, ref in first.bindings:
            declared = env.declared.get(name)
            if declared is not None and coercion(ref.schema, declared) is None:
                msg = (
                    f"{name} is declared {describe(declared)}, "
                    f"but this pattern captures {describe(ref.schema)} in it"
                )
                pattern = self.node.cases[first.case].pattern
                where = next(
                    (n for n in ast.walk(pattern) if getattr(n, "name", None) == name), pattern
                )
                raise self.function.error(where, msg)
            inner = inner.bind(name, ref)
        guard = self.guard(first.case, inner)
        body = self.leaf(first.case, inner)
        if guard is None:
            return body
        # A failed guard fails the whole case, as in Python: the case's other |-alternatives
        # are not tried, even if they would match with other captures. Python binds the
        # captures as soon as the pattern matches, before the guard, so they keep their new
        # values in the cases below (and after the match).
        others = [row for row in rows[1:] if row.case != first.case]
        rest = self._tree(inner, cols, others, facts, guarded=True)
        return if_then_else(guard, body, rest)

    def _int_test(
        self,
        env: Env,
        cols: tuple[Ref, ...],
        rows: list[Row],
        facts: dict[Ref, Fact],
        column: int,
        value: int | str,
        guarded: bool,
    ) -> Term:
        col = cols[column]
        equal, differ = [], []
        for row in rows:
            p = row.pats[column]
            if not isinstance(p, IntLit) or p.value == value:
                equal.append(replace(row, pats=_put(row.pats, column, Wild())))
            if not isinstance(p, IntLit) or p.value != value:
                differ.append(row)
        previous = facts.get(col)
        excluded = previous.excluded if isinstance(previous, Ints) else ()
        yes = self._tree(env, cols, equal, {**facts, col: Ints(equal=value)}, guarded)
        no_facts: dict[Ref, Fact] = {**facts, col: Ints(excluded=(*excluded, value))}
        no = self._tree(env, cols, differ, no_facts, guarded)
        if isinstance(value, str):
            test = seq(Fanout(env.read(col), StrLit(value)), Prim(Op.EQUAL))
        else:
            test = seq(Fanout(env.read(col), Lit(value)), Prim(Op.EQ))
        return if_then_else(test, yes, no)


T = TypeVar("T")


def _put(items: tuple[T, ...], index: int, item: T) -> tuple[T, ...]:
    return (*items[:index], item, *items[index + 1 :])


def _simplify(cols: tuple[Ref, ...], rows: list[Row]) -> tuple[tuple[Ref, ...], list[Row]]:
    """Move capture names into bindings, split record and tuple columns into their fields, and
    drop columns no row constrains."""
    j = 0
    while j < len(cols):
        col = cols[j]
        named = []
        for row in rows:
            p = row.pats[j]
            bindings = row.bindings + tuple((n, col) for n in p.names)
            named.append(
                replace(row, pats=_put(row.pats, j, replace(p, names=())), bindings=bindings)
            )
        rows = named
        if any(isinstance(r.pats[j], Prod) for r in rows):
            assert isinstance(col.schema, TupleSchema | RecordSchema)
            n = len(components(col.schema))
            parts = tuple(component(col, i) for i in range(n))
            cols = (*cols[:j], *parts, *cols[j + 1 :])
            rows = [replace(r, pats=_split(r.pats, j, n)) for r in rows]
            continue
        if all(isinstance(r.pats[j], Wild) for r in rows):
            cols = (*cols[:j], *cols[j + 1 :])
            rows = [replace(r, pats=(*r.pats[:j], *r.pats[j + 1 :])) for r in rows]
            continue
        j += 1
    return cols, rows


def _split(pats: tuple[Pat, ...], j: int, n: int) -> tuple[Pat, ...]:
    p = pats[j]
    items: tuple[Pat, ...] = p.items if isinstance(p, Prod) else (Wild(),) * n
    return (*pats[:j], *items, *pats[j + 1 :])


def _show(ref: Ref, facts: dict[Ref, Fact]) -> str:
    """A value (with ``_`` for anything) that no case matches, for the exhaustiveness error."""
    fact = facts.get(ref)
    schema = ref.schema
    if isinstance(fact, Ints):
        if fact.equal is not None:
            return repr(fact.equal)
        kind = "a str" if isinstance(schema, StrSchema) else "an int"
        return f"{kind} other than {', '.join(map(repr, fact.excluded))}"
    if isinstance(fact, Chosen):
        if isinstance(schema, BoolSchema):
            return "True" if fact.index else "False"
        payload = fact.payload
        if isinstance(payload.schema, IntSchema | BoolSchema | StrSchema) and payload not in facts:
            return describe(payload.schema)
        return _show(payload, facts)
    match schema:
        case TupleSchema(items):
            return f"({', '.join(_show(component(ref, i), facts) for i in range(len(items)))})"
        case RecordSchema(name=name, fields=fields):
            shown = [(f.name, _show(component(ref, i), facts)) for i, f in enumerate(fields)]
            constrained = [f"{n}={s}" for n, s in shown if s != "_"]
            return f"{name}({', '.join(constrained)})" if constrained else name
        case NoneSchema():
            return "None"
        case IntSchema() | BoolSchema() | UnionSchema() | StrSchema() | ListSchema() | DictSchema():
            return "_"
        case _:
            assert_never(schema)
