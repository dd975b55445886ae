"""Statements: a function body to one term from its arguments to its result.

A block is compiled front to back with a *continuation* saying what falling off its end means:
``Return`` (the function's implicit ``return None``) or ``Join`` (hand back the variables an
``if``/``match`` assigned, as a tuple). The rules::

    x = e; rest             <id, e> ; rest      (an alias such as x = y.f pushes nothing)
    a, b = e; rest          <id, e> ; rest      with a, b the items of the new slot
    return e                e                   (what follows is dead)
    if c: A else: B; rest   no returns:         <id, <id, c> ; distl ; [fst ; B | fst ; A]> ; rest
                                                where A and B end in the tuple of the variables
                                                they assign (a join point)
                            returns, at most one branch falls through:
                                                <id, c> ; distl ; [fst ; B rest | fst ; A rest]
                            returns, both may fall through (a join taking returns):
                                                <id, <id, c> ; distl ; [fst ; B | fst ; A]> ;
                                                distl ; [snd | rest]
                                                where A and B yield result + vars: a return is
                                                e ; inl[vars], falling off vars ; inr[result]
    match e: ...            the same three ways, over the decision tree of hotswap.dsl.matching

So the rest of a block is compiled once, except when a single branch falls through (it gets the
rest, uncopied) and when it reads a variable a match narrowed (copies keep it narrowed).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FunctionType

from hotswap.cam.limits import MAX_TYPE_DEPTH
from hotswap.dsl.calls import CallCompiler
from hotswap.dsl.combinators import coercion, if_then_else, substitute
from hotswap.dsl.env import (
    Env,
    Ref,
    TupleRef,
    UnitRef,
    build_product,
    component,
    overlaps,
    seq,
)
from hotswap.dsl.expressions import Typed
from hotswap.dsl.matching import MatchCompiler, Row
from hotswap.dsl.patterns import PatternReader, pattern_schema, specialize
from hotswap.errors import InternalError
from hotswap.lang.optimise import may_trap
from hotswap.lang.terms import DISTL, FST, ID, SND, TERMINAL, Case, Fanout, Inl, Inr, Term
from hotswap.lang.types import UNIT
from hotswap.names.schema import NONE_SCHEMA, Schema, TupleSchema, core_type, describe, is_unit


@dataclass(frozen=True, slots=True)
class Return:
    """Falling off the end returns None, which must fit ``schema``."""

    schema: Schema


@dataclass(frozen=True, slots=True)
class Join:
    """Falling off the end yields the tuple of ``names``; ``ends`` records their schemas at each
    end, which must agree.

    With ``result`` (the function's return schema) the join also takes returns: the branches
    then yield a sum ``result + vars``, a ``return e`` giving ``e ; inl[vars]`` and falling off
    ``vars ; inr[result]``. The type ``vars`` is known only once every end is compiled, so each
    ``inl`` is first a placeholder recorded in ``marks`` and substituted afterwards."""

    names: tuple[str, ...]
    ends: list[dict[str, Schema]] = field(default_factory=list)
    result: Schema | None = None
    marks: list[Term] = field(default_factory=list)

    def mark(self) -> Term:
        """A placeholder for ``inl[vars]``, the injection of a returned value."""
        if self.result is None:
            raise InternalError("return inside a join point")
        placeholder = Inl(UNIT)
        self.marks.append(placeholder)
        return placeholder


Continuation = Return | Join

#: The context is rebuilt as a balanced tuple when its type grows higher than this, leaving
#: room below the bytecode's MAX_TYPE_DEPTH for what one statement pushes.
COMPACT_ABOVE = MAX_TYPE_DEPTH - 12

_UNSUPPORTED = {
    "For": "loops are not supported: a step must finish in a bounded number of instructions",
    "While": "loops are not supported: a step must finish in a bounded number of instructions",
    "Raise": "raise is not supported: report failures in the output (steps fail only by trapping)",
    "Try": "try is not supported: a step only fails by trapping",
    "With": "with is not supported in a machine",
    "FunctionDef": "nested functions are not supported: define helpers at module level",
    "ClassDef": "nested classes are not supported: define records at module level",
    "Import": "imports belong at module level",
    "ImportFrom": "imports belong at module level",
    "Global": "global is not supported: a machine's only memory is its state",
    "Nonlocal": "nonlocal is not supported: a machine's only memory is its state",
    "Delete": "del is not supported",
    "Assert": "assert is not supported: a step only fails by trapping",
}


class FunctionCompiler(CallCompiler):
    """Compiles one DSL function's body."""

    def compile(self) -> Term:
        """The term ``arguments -> result`` (arguments as in :meth:`Env.for_params`)."""
        signature = self.function.signature
        stack = self.session.stack
        stack.append(self.function.fn)  # calls back into it are recursion (see call_function)
        try:
            env = Env.for_params(list(signature.params), self.function.declarations)
            return self.block(self.function.body(), env, Return(signature.returns))
        finally:
            stack.pop()

    def call_function(self, fn: FunctionType, node: ast.Call, env: Env) -> Typed:
        callee = self.session.function(fn)
        if fn in self.session.stack:
            chain = [f.__name__ for f in self.session.stack[self.session.stack.index(fn) :]]
            msg = f"recursion is not supported: {' -> '.join([*chain, fn.__name__])}"
            raise self.error(node, msg)
        signature = callee.signature
        names = [name for name, _ in signature.params]
        given = self.arguments(node, names, f"{callee.name}()")
        args: list[tuple[ast.expr, Schema, str]] = []
        for (name, schema), arg in zip(signature.params, given, strict=True):
            if arg is None:
                raise self.error(node, f"{callee.name}() is missing argument {name}")
            args.append((arg, schema, f"argument {name} of {callee.name}()"))
        prelude, _, terms = self.in_source_order(env, args)
        if fn not in self.session.compiled:
            self.session.compiled[fn] = FunctionCompiler(self.session, callee).compile()
        body = self.session.compiled[fn]
        return Typed(seq(prelude, build_product(terms), body), signature.returns)

    # --- blocks -----------------------------------------------------------------------------

    def block(
        self, stmts: Sequence[ast.stmt], env: Env, k: Continuation, last: ast.AST | None = None
    ) -> Term:
        if not stmts:
            return self._fall_off(env, k, last)
        if env.height > COMPACT_ABOVE:
            live = _loaded(stmts) | set(k.names if isinstance(k, Join) else ())
            compacted = env.compact(live)
            if compacted is not None:
                return seq(compacted[0], self.block(stmts, compacted[1], k, last))
        stmt, rest = stmts[0], stmts[1:]
        match stmt:
            case ast.Pass():
                return self.block(rest, env, k, stmt)
            case ast.Expr(value=ast.Constant(value=v)) if isinstance(v, str) or v is ...:
                return self.block(rest, env, k, stmt)
            case ast.Expr():
                raise self.error(stmt, "this expression statement has no effect")
            case ast.Return(value=value):
                if value is None:
                    value = ast.copy_location(ast.Constant(None), stmt)
                if isinstance(k, Return):
                    return self.expr(value, env, k.schema, "return type").term
                returned = k.mark()  # InternalError when the join takes no returns
                schema = self.function.signature.returns
                return seq(self.expr(value, env, schema, "return type").term, returned)
            case ast.Assign(targets=[target], value=value):
                return self._assign(target, value, rest, env, k, stmt)
            case ast.Assign():
                raise self.error(stmt, "chained assignment a = b = ... is not supported")
            case ast.AnnAssign(target=ast.Name() as target):  # declared function-wide
                if stmt.value is None:
                    return self.block(rest, env, k, stmt)
                return self._assign(target, stmt.value, rest, env, k, stmt)
            case ast.AugAssign(target=ast.Name(id=name) as target, op=op, value=value):
                load = ast.copy_location(ast.Name(name, ast.Load()), target)
                combined = ast.copy_location(ast.BinOp(load, op, value), stmt)
                return self._assign(target, combined, rest, env, k, stmt)
            case ast.AnnAssign() | ast.AugAssign():
                raise self.error(stmt, "only plain names can be assigned: values are immutable")
            case ast.If():
                return self._if(stmt, rest, env, k)
            case ast.Match():
                return self._match(stmt, rest, env, k)
            case _:
                kind = type(stmt).__name__.removeprefix("Async")
                kind = "For" if kind in ("Break", "Continue") else kind
                kind = "Try" if kind == "TryStar" else kind
                raise self.error(
                    stmt, _UNSUPPORTED.get(kind, f"{kind} statements are not supported")
                )

    def _fall_off(self, env: Env, k: Continuation, last: ast.AST | None) -> Term:
        if isinstance(k, Return):
            conversion = coercion(NONE_SCHEMA, k.schema)
            if conversion is None:
                where = last if last is not None else self.function.node
                msg = (
                    f"{self.function.name} can end here without a return, "
                    f"but it must return {describe(k.schema)}"
                )
                raise self.error(where, msg)
            return seq(TERMINAL, conversion)
        schemas: dict[str, Schema] = {}
        terms: list[Term] = []
        for name in k.names:
            ref = env.vars[name]
            declared = env.declared.get(name, ref.schema)
            widen = coercion(ref.schema, declared)  # a narrowed variable is widened back
            if widen is None:
                raise InternalError(f"{name} is {describe(ref.schema)}, not {describe(declared)}")
            schemas[name] = declared
            terms.append(seq(env.read(ref), widen))
        k.ends.append(schemas)
        if k.result is not None:  # the branch fell through: the right of ``result + vars``
            return seq(build_product(terms), Inr(core_type(k.result)))
        return build_product(terms)

    def _assign(
        self,
        target: ast.expr,
        value: ast.expr,
        rest: Sequence[ast.stmt],
        env: Env,
        k: Continuation,
        stmt: ast.stmt,
    ) -> Term:
        if isinstance(target, ast.Name):
            expected = env.declared.get(target.id)
            ref = self.place(value, env)
            if ref is not None and (expected is None or ref.schema == expected):
                return self.block(rest, env.bind(target.id, ref), k, stmt)
            typed = self.expr(value, env, expected, f"the value assigned to {target.id}")
            if is_unit(typed.schema) and not may_trap(typed.term):
                unit = UnitRef(typed.schema)  # a unit needs no slot: it is read with !
                return self.block(rest, env.bind(target.id, unit), k, stmt)
            inner, ref = env.push(typed.schema)
            return seq(
                Fanout(ID, typed.term), self.block(rest, inner.bind(target.id, ref), k, stmt)
            )
        if isinstance(target, ast.Tuple | ast.List):
            ref = self.place(value, env)
            inner = env
            prelude: Term = ID
            if ref is None:
                typed = self.expr(value, env)
                prelude = Fanout(ID, typed.term)
                inner, ref = env.push(typed.schema)
            inner = self._unpack(target, ref, inner)
            return seq(prelude, self.block(rest, inner, k, stmt))
        if isinstance(target, ast.Attribute):
            msg = "records are immutable: build a new one, e.g. with dataclasses.replace(...)"
            raise self.error(target, msg)
        raise self.error(target, "only names and tuples of names can be assigned")

    def _unpack(self, target: ast.expr, ref: Ref, env: Env) -> Env:
        match target:
            case ast.Name(id=name):
                declared = env.declared.get(name)
                if declared is not None and declared != ref.schema:
                    msg = f"{name} is declared {describe(declared)} but gets {describe(ref.schema)}"
                    raise self.error(target, msg)
                return env.bind(name, ref)
            case ast.Tuple(elts) | ast.List(elts):
                schema = ref.schema
                if not isinstance(schema, TupleSchema) or len(schema.items) != len(elts):
                    msg = f"cannot unpack {describe(schema)} into {len(elts)} names"
                    raise self.error(target, msg)
                for i, elt in enumerate(elts):
                    env = self._unpack(elt, component(ref, i), env)
                return env
            case _:
                raise self.error(target, "only names and tuples of names can be assigned")

    # --- branching --------------------------------------------------------------------------

    def _if(self, stmt: ast.If, rest: Sequence[ast.stmt], env: Env, k: Continuation) -> Term:
        cond = self.bool_test(stmt.test, env)
        if rest and _returns(stmt) and _falling_through([stmt.body, stmt.orelse]) >= 2:
            join = self._join([stmt.body, stmt.orelse], env, result=self.function.signature.returns)
            then = self.block(stmt.body, env, join, stmt)
            orelse = self.block(stmt.orelse, env, join, stmt)
            if join.ends:
                return self._after(if_then_else(cond, then, orelse), join, rest, env, k, stmt)
            # no path reached the join after all (nested returns): copy, as below
        if _returns(stmt) or not rest:
            self.session.copy(self.function, stmt)
            then = self.block([*stmt.body, *rest], env, k, stmt)
            orelse = self.block([*stmt.orelse, *rest], env, k, stmt)
            return if_then_else(cond, then, orelse)
        join = self._join([stmt.body, stmt.orelse], env)
        then = self.block(stmt.body, env, join, stmt)
        orelse = self.block(stmt.orelse, env, join, stmt)
        return self._after(if_then_else(cond, then, orelse), join, rest, env, k, stmt)

    def _match(self, stmt: ast.Match, rest: Sequence[ast.stmt], env: Env, k: Continuation) -> Term:
        prelude, env, root = self._subject(stmt.subject, env)
        reader = PatternReader(self.function)
        schema = pattern_schema(root)
        rows = [
            Row((narrowed,), (), index)
            for index, case in enumerate(stmt.cases)
            for pat in reader.read(case.pattern, schema)
            if (narrowed := specialize(pat, root)) is not None
        ]
        return self._match_cases(stmt, rest, env, k, prelude, root, rows, summable=True)

    def _match_cases(
        self,
        stmt: ast.Match,
        rest: Sequence[ast.stmt],
        env: Env,
        k: Continuation,
        prelude: Term,
        root: Ref,
        rows: list[Row],
        summable: bool,
    ) -> Term:
        cases = stmt.cases
        bodies = [c.body for c in cases]
        # Returns with code after them and two cases or more falling through: a join taking
        # returns (``result + vars``), so that the code after is compiled once.
        # Copying keeps the subject narrowed in the code after (see MatchCompiler): a join
        # cannot, so code after that reads the subject's variables is still copied.
        summed = (
            summable
            and bool(rest)
            and _returns(stmt)
            and _falling_through(bodies) >= 2
            and not any(overlaps(env.vars[n], root) for n in _loaded(rest) if n in env.vars)
        )
        early = not summed and (_returns(stmt) or not rest)
        # A capture read after the match joins like an assignment (the case that ran bound it).
        live = _read_before_assigned(rest) | set(k.names if isinstance(k, Join) else ())
        captures = [[n for n in _assigned_in_pattern(c.pattern) if n in live] for c in cases]
        result = self.function.signature.returns if summed else None
        join = None if early else self._join(bodies, env, captures, result)

        def leaf(index: int, inner: Env) -> Term:
            if join is None:
                return self.block([*cases[index].body, *rest], inner, k, cases[index].pattern)
            return self.block(cases[index].body, inner, join, cases[index].pattern)

        def guard(index: int, inner: Env) -> Term | None:
            test = cases[index].guard
            return None if test is None else self.bool_test(test, inner)

        matcher = MatchCompiler(self.session, self.function, stmt, root, leaf, guard)
        tree = matcher.compile(env, rows)
        if join is None:
            return seq(prelude, tree)
        if summed and not join.ends:  # no case reached the join after all: copy instead
            return self._match_cases(stmt, rest, env, k, prelude, root, rows, summable=False)
        return seq(prelude, self._after(tree, join, rest, env, k, stmt))

    def _subject(self, node: ast.expr, env: Env) -> tuple[Term, Env, Ref]:
        """The matched value as a reference; ``match a, b`` reads two references, no pair."""
        elts = node.elts if isinstance(node, ast.Tuple) else [node]
        if len(elts) < 2 and isinstance(node, ast.Tuple):
            raise self.error(node, "tuples must have two or more items")
        prelude: list[Term] = []
        refs: list[Ref] = []
        current = env
        for elt in elts:
            ref = self.place(elt, env)
            if ref is None:
                typed = self.expr(elt, env)
                prelude.append(Fanout(ID, seq(*(FST,) * len(prelude), typed.term)))
                current, ref = current.push(typed.schema)
            refs.append(ref)
        if not isinstance(node, ast.Tuple):
            return seq(*prelude), current, refs[0]
        schema = TupleSchema(tuple(r.schema for r in refs))
        return seq(*prelude), current, TupleRef(tuple(refs), schema)

    def _join(
        self,
        branches: list[list[ast.stmt]],
        env: Env,
        captures: list[list[str]] | None = None,
        result: Schema | None = None,
    ) -> Join:
        """The variables the branches assign (and ``captures``, names each branch's pattern
        binds) that are bound on every path that falls through: each one's own or the value
        from before. With ``result``, the join also takes returns (see :class:`Join`)."""
        bound = captures if captures is not None else [[] for _ in branches]
        assigned: list[str] = []
        for names_, branch in zip(bound, branches, strict=True):
            assigned.extend(n for n in [*names_, *_assigned(branch)] if n not in assigned)
        definite = _intersection(
            [
                set(n) | _definitely_assigned(b)
                for n, b in zip(bound, branches, strict=True)
                if not _always_returns(b)
            ]
        )
        names = tuple(n for n in assigned if n in env.vars or n in definite)
        return Join(names, result=result)

    def _after(
        self,
        term: Term,
        join: Join,
        rest: Sequence[ast.stmt],
        env: Env,
        k: Continuation,
        stmt: ast.If | ast.Match,
    ) -> Term:
        """Continue after a join point: push the joined variables, then compile the rest."""
        schemas: list[Schema] = []
        for name in join.names:
            seen = {end[name] for end in join.ends}
            if len(seen) > 1:
                shown = " and ".join(sorted(describe(s) for s in seen))
                msg = (
                    f"{name} is {shown} on different paths: declare it first, e.g. {name}: T = ..."
                )
                raise self.error(stmt, msg)
            schemas.append(seen.pop())
        kind = "if" if isinstance(stmt, ast.If) else "match"
        branches = (
            [stmt.body, stmt.orelse] if isinstance(stmt, ast.If) else [c.body for c in stmt.cases]
        )
        dropped = {
            n: f"{n} is not assigned on every path through the {kind} on line {stmt.lineno}"
            for branch in branches
            for n in _assigned(branch)
            if n not in join.names
        }
        if isinstance(stmt, ast.Match):
            for name in _captures(stmt):
                if name not in join.names:
                    where = f"the match on line {stmt.lineno}"
                    dropped[name] = f"{name} is a capture of {where}: use it inside its case"
        if join.result is None and not join.names and not may_trap(term):
            return self.block(rest, env.forget(dropped), k, stmt)
        joined = schemas[0] if len(schemas) == 1 else TupleSchema(tuple(schemas))
        if not schemas:
            joined = NONE_SCHEMA
        inner, ref = env.push(joined)
        if len(schemas) == 1:
            inner = inner.bind(join.names[0], ref)
        else:
            for i, name in enumerate(join.names):
                inner = inner.bind(name, component(ref, i))
        after = self.block(rest, inner.forget(dropped), k, stmt)
        if join.result is None:
            return seq(Fanout(ID, term), after)
        # ``result + vars``: a returned value goes on as the enclosing code's result (returned,
        # or injected into an enclosing join's sum); otherwise the rest runs on the variables.
        injection = Inl(core_type(joined))
        term = substitute(term, {id(m): injection for m in join.marks})
        returned = SND if isinstance(k, Return) else seq(SND, k.mark())
        return seq(Fanout(ID, term), DISTL, Case(returned, after))


def _returns(stmt: ast.stmt) -> bool:
    return any(isinstance(n, ast.Return) for n in ast.walk(stmt))


def _always_returns(stmts: list[ast.stmt]) -> bool:
    """Whether every path through ``stmts`` ends in a return (a match is exhaustive, or it is
    rejected)."""
    for stmt in stmts:
        match stmt:
            case ast.Return():
                return True
            case ast.If(body=body, orelse=orelse) if _always_returns(body) and _always_returns(
                orelse
            ):
                return True
            case ast.Match(cases=cases) if all(_always_returns(c.body) for c in cases):
                return True
            case _:
                pass
    return False


def _falling_through(branches: list[list[ast.stmt]]) -> int:
    """How many of ``branches`` may fall off their end."""
    return sum(1 for b in branches if not _always_returns(b))


def _intersection(sets: list[set[str]]) -> set[str]:
    return set.intersection(*sets) if sets else set()


def _assigned(stmts: list[ast.stmt]) -> list[str]:
    """Names assigned anywhere in ``stmts`` (not pattern captures), in order of appearance."""
    names: list[str] = []
    for stmt in stmts:
        for node in ast.walk(stmt):
            match node:
                case ast.Name(id=name, ctx=ast.Store()) if name not in names:
                    names.append(name)
    return names


def _loaded(stmts: Sequence[ast.stmt]) -> set[str]:
    """Names ``stmts`` read (``x += 1`` reads x)."""
    names: set[str] = set()
    for stmt in stmts:
        for node in ast.walk(stmt):
            match node:
                case ast.Name(id=name, ctx=ast.Load()) | ast.AugAssign(target=ast.Name(id=name)):
                    names.add(name)
    return names


def _read_before_assigned(stmts: Sequence[ast.stmt]) -> set[str]:
    """Names ``stmts`` may read before assigning them (a compound statement reads all it reads)."""
    live: set[str] = set()
    assigned: set[str] = set()
    for stmt in stmts:
        live |= _loaded([stmt]) - assigned
        assigned |= _definitely_assigned([stmt])
    return live


def _captures(stmt: ast.Match) -> list[str]:
    """Names bound by the case patterns of a match."""
    return [name for case in stmt.cases for name in _assigned_in_pattern(case.pattern)]


def _assigned_in_pattern(pattern: ast.pattern) -> list[str]:
    return [
        node.name
        for node in ast.walk(pattern)
        if isinstance(node, ast.MatchAs | ast.MatchStar) and node.name is not None
    ]


def _definitely_assigned(stmts: list[ast.stmt]) -> set[str]:
    """Names assigned on every path through ``stmts``."""
    names: set[str] = set()
    for stmt in stmts:
        match stmt:
            case ast.Assign() | ast.AugAssign() | ast.AnnAssign(value=ast.expr()):
                names.update(_assigned([stmt]))
            case ast.If(body=body, orelse=orelse):  # a branch that returns does not count
                names |= _intersection(
                    [_definitely_assigned(b) for b in (body, orelse) if not _always_returns(b)]
                )
            case ast.Match(cases=cases):  # a case that runs has bound all its captures
                names |= _intersection(
                    [
                        set(_assigned_in_pattern(c.pattern)) | _definitely_assigned(c.body)
                        for c in cases
                        if not _always_returns(c.body)
                    ]
                )
            case _:
                pass
    return names
