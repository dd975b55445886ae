"""Statements: a function body to one term from its arguments to its result.

A block is compiled front to back (the dispatch is :meth:`FunctionCompiler.block`) with a
*continuation* saying what falling off its end means (:mod:`hotswap.dsl.joins`): ``Return``
(the function's implicit ``return None``) or a join point (hand back the variables an
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
rest, uncopied) and when it reads a variable a match narrowed (copies keep it narrowed). Which
way an ``if``/``match`` goes is decided on its syntax alone (:mod:`hotswap.dsl.flow`).

Each function takes the compiler ``c`` of the function being compiled, and compiles the parts
of its statement through it.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hotswap.dsl import flow
from hotswap.dsl.combinators import coercion, if_then_else, substitute
from hotswap.dsl.env import Env, Ref, TupleRef, UnitRef, build_product, component, overlaps, seq
from hotswap.dsl.expressions import place
from hotswap.dsl.joins import Continuation, Join, JoinPoint, Return
from hotswap.dsl.matching import MatchCompiler, Row
from hotswap.dsl.patterns import PatternReader, pattern_schema, specialize
from hotswap.errors import InternalError
from hotswap.lang.optimise import may_trap
from hotswap.lang.terms import DISTL, FST, ID, SND, TERMINAL, Case, Fanout, Inl, Inr, Term
from hotswap.names.schema import NONE_SCHEMA, Schema, TupleSchema, core_type, describe, is_unit

if TYPE_CHECKING:
    from hotswap.dsl.dispatch import FunctionCompiler

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


def unsupported(stmt: ast.stmt) -> str:
    """The error for a statement outside the subset."""
    kind = type(stmt).__name__.removeprefix("Async")
    kind = "For" if kind in ("Break", "Continue") else kind
    kind = "Try" if kind == "TryStar" else kind
    return _UNSUPPORTED.get(kind, f"{kind} statements are not supported")


# --- the end of a block ---------------------------------------------------------------------


def return_statement(c: FunctionCompiler, stmt: ast.Return, env: Env, k: Continuation) -> Term:
    """``return e  =>  e`` (inside a join taking returns, ``e ; inl[vars]``)."""
    value = stmt.value
    if value is None:
        value = ast.copy_location(ast.Constant(None), stmt)
    if isinstance(k, Return):
        return c.expr(value, env, k.schema, "return type").term
    returned = k.mark()  # InternalError when the join takes no returns
    schema = c.function.signature.returns
    return seq(c.expr(value, env, schema, "return type").term, returned)


def fall_off(c: FunctionCompiler, env: Env, k: Continuation, last: ast.AST | None) -> Term:
    """The end of a block: ``return None``, or the variables a join point carries."""
    if isinstance(k, Return):
        conversion = coercion(NONE_SCHEMA, k.schema)
        if conversion is None:
            where = last if last is not None else c.function.node
            msg = (
                f"{c.function.name} can end here without a return, "
                f"but it must return {describe(k.schema)}"
            )
            raise c.error(where, msg)
        return seq(TERMINAL, conversion)
    schemas: list[Schema] = []
    terms: list[Term] = []
    for name in k.names:
        ref = env.vars[name]
        declared = env.declared.get(name, ref.schema)
        widen = coercion(ref.schema, declared)  # a narrowed variable is widened back
        if widen is None:
            raise InternalError(f"{name} is {describe(ref.schema)}, not {describe(declared)}")
        schemas.append(declared)
        terms.append(seq(env.read(ref), widen))
    k.arrive(tuple(schemas))
    if k.result is not None:  # the branch fell through: the right of ``result + vars``
        return seq(build_product(terms), Inr(core_type(k.result)))
    return build_product(terms)


# --- assignment -----------------------------------------------------------------------------


def assignment(
    c: FunctionCompiler,
    target: ast.expr,
    value: ast.expr,
    rest: Sequence[ast.stmt],
    env: Env,
    k: Continuation,
    stmt: ast.stmt,
) -> Term:
    """``x = e; rest  =>  <id, e> ; rest``, and ``a, b = e`` likewise."""
    if isinstance(target, ast.Name):
        expected = env.declared.get(target.id)
        ref = place(c, value, env)
        if ref is not None and (expected is None or ref.schema == expected):
            return c.block(rest, env.bind(target.id, ref), k, stmt)
        typed = c.expr(value, env, expected, f"the value assigned to {target.id}")
        if is_unit(typed.schema) and not may_trap(typed.term):
            unit = UnitRef(typed.schema)  # a unit needs no slot: it is read with !
            return c.block(rest, env.bind(target.id, unit), k, stmt)
        inner, ref = env.push(typed.schema)
        return seq(Fanout(ID, typed.term), c.block(rest, inner.bind(target.id, ref), k, stmt))
    if isinstance(target, ast.Tuple | ast.List):
        ref = place(c, value, env)
        inner = env
        prelude: Term = ID
        if ref is None:
            typed = c.expr(value, env)
            prelude = Fanout(ID, typed.term)
            inner, ref = env.push(typed.schema)
        inner = _unpack(c, target, ref, inner)
        return seq(prelude, c.block(rest, inner, k, stmt))
    if isinstance(target, ast.Attribute):
        msg = "records are immutable: build a new one, e.g. with dataclasses.replace(...)"
        raise c.error(target, msg)
    raise c.error(target, "only names and tuples of names can be assigned")


def augmented_assignment(
    c: FunctionCompiler,
    stmt: ast.AugAssign,
    target: ast.Name,
    rest: Sequence[ast.stmt],
    env: Env,
    k: Continuation,
) -> Term:
    """``x += e`` is ``x = x + e``."""
    load = ast.copy_location(ast.Name(target.id, ast.Load()), target)
    combined = ast.copy_location(ast.BinOp(load, stmt.op, stmt.value), stmt)
    return assignment(c, target, combined, rest, env, k, stmt)


def _unpack(c: FunctionCompiler, target: ast.expr, ref: Ref, env: Env) -> Env:
    match target:
        case ast.Name(id=name):
            declared = env.declared.get(name)
            if declared is not None and declared != ref.schema:
                msg = f"{name} is declared {describe(declared)} but gets {describe(ref.schema)}"
                raise c.error(target, msg)
            return env.bind(name, ref)
        case ast.Tuple(elts) | ast.List(elts):
            schema = ref.schema
            if not isinstance(schema, TupleSchema) or len(schema.items) != len(elts):
                msg = f"cannot unpack {describe(schema)} into {len(elts)} names"
                raise c.error(target, msg)
            for i, elt in enumerate(elts):
                env = _unpack(c, elt, component(ref, i), env)
            return env
        case _:
            raise c.error(target, "only names and tuples of names can be assigned")


# --- branching ------------------------------------------------------------------------------


def if_statement(
    c: FunctionCompiler, stmt: ast.If, rest: Sequence[ast.stmt], env: Env, k: Continuation
) -> Term:
    """``if c: A else: B; rest``, one of the three ways of the module doc."""
    cond = c.bool_test(stmt.test, env)
    branches = [stmt.body, stmt.orelse]
    returns = flow.returns(stmt)
    if rest and returns and flow.falling_through(branches) >= 2:
        point = _join_point(branches, env, result=c.function.signature.returns)
        then = c.block(stmt.body, env, point, stmt)
        orelse = c.block(stmt.orelse, env, point, stmt)
        if point.reached:
            return _after(c, if_then_else(cond, then, orelse), point.close(), rest, env, k, stmt)
        # no path reached the join after all (nested returns): copy, as below
    if returns or not rest:
        c.session.copy(c.function, stmt)
        then = c.block([*stmt.body, *rest], env, k, stmt)
        orelse = c.block([*stmt.orelse, *rest], env, k, stmt)
        return if_then_else(cond, then, orelse)
    point = _join_point(branches, env)
    then = c.block(stmt.body, env, point, stmt)
    orelse = c.block(stmt.orelse, env, point, stmt)
    return _after(c, if_then_else(cond, then, orelse), point.close(), rest, env, k, stmt)


def match_statement(
    c: FunctionCompiler, stmt: ast.Match, rest: Sequence[ast.stmt], env: Env, k: Continuation
) -> Term:
    """``match e: ...; rest``: a decision tree, then one of the three ways of the module doc."""
    prelude, env, root = _subject(c, stmt.subject, env)
    reader = PatternReader(c.function)
    schema = pattern_schema(root)
    rows = [
        Row((narrowed,), (), index)
        for index, case in enumerate(stmt.cases)
        for pat in reader.read(case.pattern, schema)
        if (narrowed := specialize(pat, root)) is not None
    ]
    return _match_cases(c, stmt, rest, env, k, prelude, root, rows, summable=True)


def _match_cases(
    c: FunctionCompiler,
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
    bodies = [case.body for case in cases]
    # Returns with code after them and two cases or more falling through: a join taking
    # returns (``result + vars``), so that the code after is compiled once.
    # Copying keeps the subject narrowed in the code after (see MatchCompiler): a join
    # cannot, so code after that reads the subject's variables is still copied.
    summed = (
        summable
        and bool(rest)
        and flow.returns(stmt)
        and flow.falling_through(bodies) >= 2
        and not any(overlaps(env.vars[n], root) for n in flow.loaded(rest) if n in env.vars)
    )
    early = not summed and (flow.returns(stmt) or not rest)
    # A capture read after the match joins like an assignment (the case that ran bound it).
    live = flow.read_before_assigned(rest) | set(k.names if isinstance(k, JoinPoint) else ())
    captures = [[n for n in flow.pattern_captures(case.pattern) if n in live] for case in cases]
    result = c.function.signature.returns if summed else None
    point = None if early else _join_point(bodies, env, captures, result)

    def leaf(index: int, inner: Env) -> Term:
        if point is None:
            return c.block([*cases[index].body, *rest], inner, k, cases[index].pattern)
        return c.block(cases[index].body, inner, point, cases[index].pattern)

    def guard(index: int, inner: Env) -> Term | None:
        test = cases[index].guard
        return None if test is None else c.bool_test(test, inner)

    matcher = MatchCompiler(c.session, c.function, stmt, root, leaf, guard)
    tree = matcher.compile(env, rows)
    if point is None:
        return seq(prelude, tree)
    if summed and not point.reached:  # no case reached the join after all: copy instead
        return _match_cases(c, stmt, rest, env, k, prelude, root, rows, summable=False)
    return seq(prelude, _after(c, tree, point.close(), rest, env, k, stmt))


def _subject(c: FunctionCompiler, node: ast.expr, env: Env) -> tuple[Term, Env, Ref]:
    """The matched value as a reference; ``match a, b`` reads two references, no pair."""
    elts = node.elts if isinstance(node, ast.Tuple) else [node]
    if len(elts) < 2 and isinstance(node, ast.Tuple):
        raise c.error(node, "tuples must have two or more items")
    prelude: list[Term] = []
    refs: list[Ref] = []
    current = env
    for elt in elts:
        ref = place(c, elt, env)
        if ref is None:
            typed = c.expr(elt, env)
            prelude.append(Fanout(ID, seq(*(FST,) * len(prelude), typed.term)))
            current, ref = current.push(typed.schema)
        refs.append(ref)
    if not isinstance(node, ast.Tuple):
        return seq(*prelude), current, refs[0]
    schema = TupleSchema(tuple(r.schema for r in refs))
    return seq(*prelude), current, TupleRef(tuple(refs), schema)


def _join_point(
    branches: list[list[ast.stmt]],
    env: Env,
    captures: list[list[str]] | None = None,
    result: Schema | None = None,
) -> JoinPoint:
    """The join point after ``branches``: it carries the variables they assign (and
    ``captures``, names each branch's pattern binds) that are bound on every path that falls
    through, each one's own or the value from before. With ``result``, it also takes returns."""
    bound = captures if captures is not None else [[] for _ in branches]
    return JoinPoint(flow.joined(branches, bound, env.vars), result=result)


def _after(
    c: FunctionCompiler,
    term: Term,
    join: Join,
    rest: Sequence[ast.stmt],
    env: Env,
    k: Continuation,
    stmt: ast.If | ast.Match,
) -> Term:
    """Continue after a join point: push the joined variables, then compile the rest."""
    schemas: list[Schema] = []
    for i, name in enumerate(join.names):
        seen = {arrival[i] for arrival in join.arrivals}
        if len(seen) > 1:
            shown = " and ".join(sorted(describe(s) for s in seen))
            msg = f"{name} is {shown} on different paths: declare it first, e.g. {name}: T = ..."
            raise c.error(stmt, msg)
        schemas.append(seen.pop())
    kind = "if" if isinstance(stmt, ast.If) else "match"
    branches = (
        [stmt.body, stmt.orelse] if isinstance(stmt, ast.If) else [case.body for case in stmt.cases]
    )
    dropped = {
        n: f"{n} is not assigned on every path through the {kind} on line {stmt.lineno}"
        for branch in branches
        for n in flow.assigned(branch)
        if n not in join.names
    }
    if isinstance(stmt, ast.Match):
        for name in flow.match_captures(stmt):
            if name not in join.names:
                where = f"the match on line {stmt.lineno}"
                dropped[name] = f"{name} is a capture of {where}: use it inside its case"
    if join.result is None and not join.names and not may_trap(term):
        return c.block(rest, env.forget(dropped), k, stmt)
    joined = schemas[0] if len(schemas) == 1 else TupleSchema(tuple(schemas))
    if not schemas:
        joined = NONE_SCHEMA
    inner, ref = env.push(joined)
    if len(schemas) == 1:
        inner = inner.bind(join.names[0], ref)
    else:
        for i, name in enumerate(join.names):
            inner = inner.bind(name, component(ref, i))
    after = c.block(rest, inner.forget(dropped), k, stmt)
    if join.result is None:
        return seq(Fanout(ID, term), after)
    # ``result + vars``: a returned value goes on as the enclosing code's result (returned,
    # or injected into an enclosing join's sum); otherwise the rest runs on the variables.
    injection = Inl(core_type(joined))
    term = substitute(term, {id(m): injection for m in join.marks})
    returned = SND if isinstance(k, Return) else seq(SND, k.mark())
    return seq(Fanout(ID, term), DISTL, Case(returned, after))
