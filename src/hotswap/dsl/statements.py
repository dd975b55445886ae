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
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from hotswap.dsl import data, flow, inference
from hotswap.dsl.combinators import coercion, if_then_else, substitute
from hotswap.dsl.env import Env, Ref, TupleRef, UnitRef, build_product, component, overlaps, seq
from hotswap.dsl.expressions import place
from hotswap.dsl.joins import (
    Continuation,
    Join,
    JoinPoint,
    LoopBody,
    Return,
    Terminal,
    carried_names,
    exit_type,
    terminal_of,
)
from hotswap.dsl.matching import MatchCompiler, Row
from hotswap.dsl.patterns import PatternReader, pattern_schema, specialize
from hotswap.errors import InternalError
from hotswap.lang.optimise import may_trap
from hotswap.lang.terms import DISTL, FST, ID, SND, TERMINAL, Case, Fail, Fanout, Inl, Inr, Term
from hotswap.names.schema import (
    NONE_SCHEMA,
    DictSchema,
    ListSchema,
    NoneSchema,
    Schema,
    TupleSchema,
    core_type,
    describe,
    is_unit,
)

if TYPE_CHECKING:
    from hotswap.dsl.dispatch import FunctionCompiler

_UNSUPPORTED = {
    "While": (
        "while loops are not supported: loop with for over a list, a dict or range(...), "
        "which always ends"
    ),
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
    kind = "Try" if kind == "TryStar" else kind
    return _UNSUPPORTED.get(kind, f"{kind} statements are not supported")


# --- the end of a block ---------------------------------------------------------------------


def return_statement(c: FunctionCompiler, stmt: ast.Return, env: Env, k: Continuation) -> Term:
    """``return e  =>  e`` (in a loop body, ``e ; inl[S] ; inr[S]``; inside a join taking
    exits, then ``; inl[vars]``)."""
    value = stmt.value
    if value is None:
        value = ast.copy_location(ast.Constant(None), stmt)
    if isinstance(k, Return):
        return c.expr(value, env, k.schema, "return type").term
    schema = c.function.signature.returns
    term = c.expr(value, env, schema, "return type").term
    terminal = terminal_of(k)  # InternalError when the join takes no exits
    if isinstance(terminal, LoopBody):
        term = seq(term, terminal.stop_with_return())
    return seq(term, exit_mark(k))


def exit_mark(k: Continuation) -> Term:
    """What follows an exit's value under ``k``: nothing at a terminal, the join's ``inl``."""
    return k.mark() if isinstance(k, JoinPoint) else ID


def fall_off(c: FunctionCompiler, env: Env, k: Continuation, last: ast.AST | None) -> Term:
    """The end of a block: ``return None``, the next iteration of a loop, or the variables a
    join point carries."""
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
    if isinstance(k, LoopBody):
        return seq(carried_state(c, env, k, last), k.go_on())
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
        return seq(build_product(terms), Inr(k.result))
    return build_product(terms)


def carried_state(c: FunctionCompiler, env: Env, loop: LoopBody, where: ast.AST | None) -> Term:
    """The loop-carried variables of ``loop`` as its state ``S``, read here."""
    terms: list[Term] = []
    for name, schema in zip(loop.names, loop.schemas, strict=True):
        ref = env.vars.get(name)
        if ref is None:
            reason = env.unbound.get(name, f"{name} is not assigned here")
            raise c.error(where, f"{reason}, but the loop goes on with it")
        widen = coercion(ref.schema, schema)
        if widen is None:
            united = wider([schema, ref.schema])
            if united is not None and isinstance(schema, NoneSchema) and name not in env.declared:
                raise inference.Widen(loop.node, name, united)
            if inference.guessed(schema) and inference.completed([schema, ref.schema]):
                # ``acc = []`` before the loop, ``acc = [x]`` in it: what is put in it first
                inference.learned(c, name, schema, ref.schema)
            unknown = inference.unknown_message(name, [schema, ref.schema])
            if unknown is not None:
                raise c.error(where, unknown)
            msg = (
                f"{name} is {inference.shown(schema)} when the loop starts but "
                f"{inference.shown(ref.schema)} "
                f"here: a variable keeps its type across iterations (declare it, {name}: T = ...)"
            )
            raise c.error(where, msg)
        terms.append(seq(env.read(ref), widen))
    return build_product(terms)


def loop_exit(
    c: FunctionCompiler, stmt: ast.Continue | ast.Break, env: Env, k: Continuation
) -> Term:
    """``continue  =>  S ; inl[R]``, ``break  =>  S ; inr`` (then the join's ``inl``)."""
    word = "continue" if isinstance(stmt, ast.Continue) else "break"
    terminal = k.terminal if isinstance(k, JoinPoint) else k
    if not isinstance(terminal, LoopBody):
        raise c.error(stmt, f"{word} outside a loop")
    state = carried_state(c, env, terminal, stmt)
    step = terminal.go_on() if word == "continue" else terminal.stop_with_state()
    return seq(state, step, exit_mark(k))


def raise_statement(c: FunctionCompiler, stmt: ast.Raise, env: Env, k: Continuation) -> Term:
    """``raise E(message)  =>  <"E", message> ; fail[T]``: the step traps with kind ``raised``."""
    failure = data.raised(c, stmt, env)
    terminal = terminal_of(k)
    return seq(failure, Fail(exit_type(terminal)), exit_mark(k))


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
        if expected is None and data.needs_hint(value):
            return _empty_assignment(c, target.id, value, rest, env, k, stmt)
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


def _empty_assignment(
    c: FunctionCompiler,
    name: str,
    value: ast.expr,
    rest: Sequence[ast.stmt],
    env: Env,
    k: Continuation,
    stmt: ast.stmt,
) -> Term:
    """``out = []`` without an annotation: the item type from the code after it
    (:mod:`hotswap.dsl.inference`)."""
    kind = ListSchema if isinstance(value, ast.List) or _called(value, "list") else DictSchema
    hint = inference.usage_hint(c, name, rest, env, kind)
    tentative = hint is None
    schema = hint if hint is not None else inference.guess(kind)
    before = env.vars.get(name)
    if hint is None and before is not None and isinstance(before.schema, kind):
        # ``acc = []`` again (in a loop, on one path of an if): the type it has, tentatively
        # when it is one (a change of type is then learned as after a first ``acc = []``); a
        # guess from an earlier ``acc = []`` is left to that assignment to learn
        schema = before.schema
        tentative = not inference.guessed(schema) or c.tentative.get(name) != schema
    for _ in range(_MAX_RETRIES):
        typed = c.synth(value, env, schema)
        inner, ref = env.push(typed.schema)
        previous = c.tentative.get(name)
        if tentative:
            c.tentative[name] = typed.schema
        try:
            after = c.block(rest, inner.bind(name, ref), k, stmt)
        except inference.Retry as retry:
            if retry.name != name or not tentative:
                raise
            # still tentative while it holds a guess: rows.append(row) of a guessed row = []
            schema, tentative = retry.schema, inference.holds_guess(retry.schema)
            continue
        finally:
            if previous is None:
                c.tentative.pop(name, None)
            else:
                c.tentative[name] = previous
        return seq(Fanout(ID, typed.term), after)
    raise c.error(stmt, inference.unknown_message(name, [schema]) or f"{name} changes type")


#: How many times an empty ``[]``/``{}`` may learn a new type before it is given up.
_MAX_RETRIES = 16


def _called(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


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


def unpack(c: FunctionCompiler, target: ast.expr, ref: Ref, env: Env) -> Env:
    """Bind the names of ``target`` (a name or nested tuple of names) to the parts of ``ref``."""
    return _unpack(c, target, ref, env)


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


def widening(
    c: FunctionCompiler,
    stmt: ast.If | ast.Match | ast.For,
    env: Env,
    compile_: Callable[[Env], Term],
) -> Term:
    """``compile_(env)``, again with a variable declared wider each time the statement asks
    (:class:`inference.Widen`)."""
    for _ in range(64):
        try:
            return compile_(env)
        except inference.Widen as widen:
            if widen.node is not stmt:
                raise
            env = replace(env, declared={**env.declared, widen.name: widen.schema})
    raise c.error(stmt, "the variables of this statement change type too many times")


def wider(schemas: Sequence[Schema]) -> Schema | None:
    """The narrowest schema all of ``schemas`` fit in, if any."""
    from hotswap.dsl.expressions import unify  # noqa: PLC0415 - expressions is a sibling

    result: Schema | None = schemas[0]
    for s in schemas[1:]:
        result = None if result is None else unify(result, s)
    return result


def _partial(env: Env, name: str) -> bool:
    """Whether ``name`` is None before a statement and undeclared: mypy completes the type of
    such a variable from its next assignment (``x = None; if c: x = 5`` makes ``int | None``)."""
    ref = env.vars.get(name)
    return ref is not None and isinstance(ref.schema, NoneSchema) and name not in env.declared


def if_statement(
    c: FunctionCompiler, stmt: ast.If, rest: Sequence[ast.stmt], env: Env, k: Continuation
) -> Term:
    """``if c: A else: B; rest``, one of the three ways of the module doc."""
    return widening(c, stmt, env, lambda e: _if_statement(c, stmt, rest, e, k))


def _if_statement(
    c: FunctionCompiler, stmt: ast.If, rest: Sequence[ast.stmt], env: Env, k: Continuation
) -> Term:
    cond = c.bool_test(stmt.test, env)
    branches = [stmt.body, stmt.orelse]
    returns = flow.returns(stmt)
    if rest and returns and flow.falling_through(branches) >= 2:
        point = _join_point(branches, env, terminal=terminal_of(k))
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


def none_test(c: FunctionCompiler, stmt: ast.If, env: Env) -> ast.Match | list[ast.stmt] | None:
    """``if x is None: A else: B`` on an optional ``x``, as ``match x: case None: A; case _:
    B``, so that ``x`` is narrowed in each branch (and after, where the match continues):

        if x is None: A else: B                match x: case None: A / case _: B
        if x is not None: A else: B            match x: case None: B / case _: A
        if x is not None and c: A else: B      match x: case None: B / case _ if c: A /
                                                        case _: B
        if x is None or c: A else: B           match x: case None: A / case _ if c: A /
                                                        case _: B

    When ``x`` is known here to be None, or not (it was narrowed, or is not optional), the
    statements that run instead: the live branch (or ``if c: A else: B``), as mypy reads it.
    """
    test = stmt.test
    rest: list[ast.expr] = []
    if isinstance(test, ast.BoolOp) and len(test.values) >= 2:
        first, rest = test.values[0], test.values[1:]
        word = "and" if isinstance(test.op, ast.And) else "or"
    else:
        first, word = test, ""
    match first:
        case ast.Compare(left=ast.Name(id=name) as subject, ops=[op], comparators=[other]) if (
            isinstance(other, ast.Constant) and other.value is None
        ):
            pass
        case _:
            return None
    if not isinstance(op, ast.Is | ast.IsNot):
        return None
    is_none = isinstance(op, ast.Is)
    ref = env.vars.get(name)
    if ref is None:
        return None
    others: ast.expr | None = None
    if len(rest) == 1:
        others = rest[0]
    elif rest:
        assert isinstance(test, ast.BoolOp)
        others = ast.copy_location(ast.BoolOp(test.op, rest), rest[0])
    known = data.static_none(ref.schema)
    if known is not None:
        holds = known == is_none
        if others is None:
            return list(stmt.body if holds else stmt.orelse)
        if holds == (word == "or"):  # True or c / False and c: decided
            return list(stmt.body if holds else stmt.orelse)
        return [ast.copy_location(ast.If(test=others, body=stmt.body, orelse=stmt.orelse), stmt)]
    if rest and (word == "and") == is_none:  # x is None and c / x is not None or c
        return None

    def case(
        pattern: ast.pattern, body: list[ast.stmt], guard: ast.expr | None = None
    ) -> ast.match_case:
        return ast.match_case(pattern=pattern, guard=guard, body=body or [_pass(stmt)])

    def none() -> ast.pattern:
        return ast.copy_location(ast.MatchSingleton(None), subject)

    def anything() -> ast.pattern:
        return ast.copy_location(ast.MatchAs(pattern=None, name=None), subject)

    then, orelse = stmt.body, stmt.orelse
    guard = others
    if is_none:
        cases = [case(none(), then)]
        if guard is not None:
            cases.append(case(anything(), then, guard))
        cases.append(case(anything(), orelse))
    else:
        cases = [case(none(), orelse)]
        cases.append(case(anything(), then, guard))
        if guard is not None:
            cases.append(case(anything(), orelse))
    subject_copy = ast.copy_location(ast.Name(name, ast.Load()), subject)
    return ast.copy_location(ast.Match(subject=subject_copy, cases=cases), stmt)


def _pass(stmt: ast.stmt) -> ast.stmt:
    return ast.copy_location(ast.Pass(), stmt)


def match_statement(
    c: FunctionCompiler, stmt: ast.Match, rest: Sequence[ast.stmt], env: Env, k: Continuation
) -> Term:
    """``match e: ...; rest``: a decision tree, then one of the three ways of the module doc."""
    return widening(c, stmt, env, lambda e: _match_statement(c, stmt, rest, e, k))


def _match_statement(
    c: FunctionCompiler, stmt: ast.Match, rest: Sequence[ast.stmt], env: Env, k: Continuation
) -> Term:
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
    live = flow.read_before_assigned(rest) | set(carried_names(k))
    captures = [[n for n in flow.pattern_captures(case.pattern) if n in live] for case in cases]
    terminal = terminal_of(k) if summed else None
    point = None if early else _join_point(bodies, env, captures, terminal)

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
    terminal: Terminal | None = None,
) -> JoinPoint:
    """The join point after ``branches``: it carries the variables they assign (and
    ``captures``, names each branch's pattern binds) that are bound on every path that falls
    through, each one's own or the value from before. With ``terminal``, it also takes exits."""
    bound = captures if captures is not None else [[] for _ in branches]
    return JoinPoint(flow.joined(branches, bound, env.vars), terminal)


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
            united = wider([arrival[i] for arrival in join.arrivals])
            if united is not None and _partial(env, name):
                raise inference.Widen(stmt, name, united)
            arrived = [arrival[i] for arrival in join.arrivals]
            completed = inference.completed(arrived)
            if completed is not None:
                before = env.vars.get(name)
                if before is None and name not in env.declared:
                    # ``row = []`` on one path, ``row = [x]`` on another: declare it so
                    raise inference.Widen(stmt, name, completed)
                if before is not None and inference.guessed(before.schema):
                    inference.learned(c, name, before.schema, completed)
            unknown = inference.unknown_message(name, arrived)
            if unknown is not None:
                raise c.error(stmt, unknown)
            shown = " and ".join(sorted(inference.shown(s) for s in seen))
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
    # ``result + vars``: an exit's value goes on as the enclosing code's result (returned, the
    # fold body's value, or injected into an enclosing join's sum); otherwise the rest runs on
    # the variables.
    injection = Inl(core_type(joined))
    term = substitute(term, {id(m): injection for m in join.marks})
    returned = seq(SND, exit_mark(k))
    return seq(Fanout(ID, term), DISTL, Case(returned, after))
