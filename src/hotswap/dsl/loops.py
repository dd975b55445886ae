"""Loops: ``for`` statements, comprehensions and the builtins that consume an iterable, each
compiled to a ``fold`` (:class:`hotswap.lang.terms.Fold`).

``fold(f) : E x (List A x S) -> S + R`` runs ``f : E x (A x S) -> S + R`` on each item in order:
``E`` is the context before the loop, ``A`` the item, ``S`` the *state* (the loop-carried
variables: those the body assigns that exist before the loop), ``inl s`` goes on and ``inr r``
stops at once::

    for x in xs: body; rest
        <id, <id, <xs, S>> ; fold(body)> ; rest          the body falls off (or continue) with
                                                         S ; inl, break stops with S ; inr
    ... with a return in the body (R = Ret + S):
        <id, <id, <xs, S>> ; fold(body) ; [inr | [inl | inr]]> ; distl ; [snd | rest]
                                                         return e is e ; inl[S] ; inr[S]
    [f(x) for x in xs if p(x)]
        <id, <xs, empty>> ; fold(if p(x) then <snd ; snd, f(x)> ; list_append ; inl else
                                  snd ; snd ; inl) ; [id | id]
    sum(xs), any(...), all(...), min(...), max(...), sep.join(...), sorted(...), list(...)
        the same with another state and step (any and all stop early, as Python does)

What is iterated: a list; a dict (its keys); ``d.keys()``, ``d.values()``, ``d.items()``;
``range(a, b)``; a str (its characters); ``enumerate(xs)``, ``zip(xs, ys)``, ``reversed(xs)``.
The iterable is evaluated once, before the loop, as in Python. A variable first assigned in a
loop body is local to one iteration, and the loop variable to the loop: neither is readable
after the loop (Python would leave the last iteration's value, or none for an empty loop).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hotswap.dsl import flow
from hotswap.dsl.annotations import STR_SCHEMA, dict_schema
from hotswap.dsl.combinators import FALSE, TRUE, coercion, if_then_else
from hotswap.dsl.data import alternative, prim
from hotswap.dsl.env import Env, Ref, build_product, component, seq
from hotswap.dsl.expressions import Typed, static
from hotswap.dsl.joins import Continuation, JoinPoint, LoopBody, Return, exit_type, terminal_of
from hotswap.dsl.statements import unpack, widening
from hotswap.lang.terms import (
    DISTL,
    FST,
    ID,
    SND,
    Case,
    Empty,
    Fail,
    Fanout,
    Fold,
    Inl,
    Inr,
    Lit,
    Op,
    Prim,
    StrLit,
    Term,
)
from hotswap.lang.types import BOOL, INT, ListT
from hotswap.names.schema import (
    BOOL_SCHEMA,
    INT_SCHEMA,
    NONE_SCHEMA,
    DictSchema,
    IntSchema,
    ListSchema,
    Schema,
    SchemaProblem,
    StrSchema,
    TupleSchema,
    core_type,
    describe,
)

if TYPE_CHECKING:
    from hotswap.dsl.dispatch import FunctionCompiler

#: The name of the item of a builtin's implicit loop (``sum(xs)`` is ``sum(x for x in xs)``).
_ITEM = "\u00b7item"

Element = Callable[[Env, Ref], tuple[Term, Env, Ref]]


@dataclass(frozen=True)
class Source:
    """What a loop iterates: ``prelude`` (``ctx -> ctx'``) pushes what the items are read
    from, ``items : ctx' -> List item``; ``element`` turns an item into the loop's element
    (``enumerate``: an index into ``(i, xs[i])``), pushing it, or is None."""

    prelude: Term
    env: Env
    items: Term
    item: Schema
    element: Element | None = None


def _pushed(env: Env, schema: Schema, term: Term) -> tuple[Term, Env, Ref]:
    inner, ref = env.push(schema)
    return Fanout(ID, term), inner, ref


def source(c: FunctionCompiler, node: ast.expr, env: Env) -> Source:
    """The :class:`Source` of ``for _ in node`` (a tuple display is read as a list)."""
    if isinstance(node, ast.Tuple):
        node = ast.copy_location(ast.List(node.elts, ast.Load()), node)
    if isinstance(node, ast.Call):
        target = static(c.function, node.func)
        if target is enumerate or target is zip or target is itertools.pairwise:
            return _indexed(c, node, env, target)
        if target is reversed and not node.keywords:
            if len(node.args) != 1:
                raise c.error(node, "reversed() takes one list")
            xs = c.synth(node.args[0], env, None)
            if not isinstance(xs.schema, ListSchema):
                raise c.error(node, f"reversed() of {describe(xs.schema)}: only lists here")
            return Source(ID, env, seq(xs.term, reverse_list(xs.schema)), xs.schema.item)
    typed = c.synth_view(node, env, None)
    match typed.schema:
        case ListSchema(item=item):
            return Source(ID, env, typed.term, item)
        case DictSchema(key=key):
            return Source(ID, env, prim(Op.MAP_KEYS, typed.term), key)
        case StrSchema():
            prelude, inner, ref = _pushed(env, STR_SCHEMA, typed.term)

            def char(body: Env, i: Ref) -> tuple[Term, Env, Ref]:
                return _pushed(body, STR_SCHEMA, prim(Op.STR_INDEX, body.read(ref), body.read(i)))

            items = prim(Op.RANGE, Lit(0), prim(Op.STR_LEN, inner.read(ref)))
            return Source(prelude, inner, items, INT_SCHEMA, char)
    raise c.error(node, f"cannot loop over {describe(typed.schema)}: loop over a list, dict or str")


def _reversed_list(c: FunctionCompiler, node: ast.expr, env: Env) -> Typed | None:
    """``reversed(xs)`` of a list as an argument of ``zip``/``enumerate``: the reversed list."""
    if not (
        isinstance(node, ast.Call)
        and static(c.function, node.func) is reversed
        and len(node.args) == 1
        and not node.keywords
        and not isinstance(node.args[0], ast.Starred)
    ):
        return None
    xs = c.synth(node.args[0], env, None)
    if not isinstance(xs.schema, ListSchema):
        raise c.error(node, f"reversed() of {describe(xs.schema)}: only lists here")
    return Typed(seq(xs.term, reverse_list(xs.schema)), xs.schema)


def _indexed(c: FunctionCompiler, node: ast.Call, env: Env, kind: object) -> Source:
    """Loops over indices: ``enumerate(xs)`` gives ``(i, xs[i])``; ``zip(xs, ys)`` gives
    ``(xs[i], ys[i])`` up to the shorter length; ``pairwise(xs)`` gives ``(xs[i], xs[i + 1])``."""
    name = "zip" if kind is zip else "enumerate" if kind is enumerate else "pairwise"
    arity = 2 if kind is zip else 1
    args = list(node.args)
    start: ast.expr | None = None
    if kind is enumerate and len(args) == 2:
        start = args.pop()
    if len(args) != arity or any(isinstance(a, ast.Starred) for a in args):
        msg = {
            "zip": "zip() takes two lists here",
            "enumerate": "enumerate() takes one list, and a start",
            "pairwise": "pairwise() takes one list",
        }[name]
        raise c.error(node, msg)
    for kw in node.keywords:
        lenient = isinstance(kw.value, ast.Constant) and kw.value.value is False
        if kind is enumerate and kw.arg == "start" and start is None:
            start = kw.value
        elif not (kind is zip and kw.arg == "strict" and lenient):
            raise c.error(kw, f"{name}() takes no {kw.arg}= here (zip takes strict=False)")
    prelude: list[Term] = []
    refs: list[Ref] = []
    schemas: list[Schema] = []
    current = env
    for arg in args:
        typed = _reversed_list(c, arg, env) or c.synth(arg, env, None)
        if not isinstance(typed.schema, ListSchema | StrSchema):
            raise c.error(arg, f"{name}() of {describe(typed.schema)}: only lists and strs here")
        prelude.append(Fanout(ID, seq(*(FST,) * len(prelude), typed.term)))
        current, ref = current.push(typed.schema)
        refs.append(ref)
        schemas.append(typed.schema)
    offset: Ref | None = None
    if start is not None:  # evaluated after the list, as Python does
        first = c.expr(start, env, INT_SCHEMA, "the start of enumerate()").term
        prelude.append(Fanout(ID, seq(*(FST,) * len(prelude), first)))
        current, offset = current.push(INT_SCHEMA)
    lengths = [_length(current.read(r), s) for r, s in zip(refs, schemas, strict=True)]
    end = lengths[0]
    if kind is zip:
        a, b = lengths
        end = seq(Fanout(a, b), if_then_else(Prim(Op.LE), FST, SND))
    elif kind is not enumerate:
        end = prim(Op.SUB, end, Lit(1))
    items = prim(Op.RANGE, Lit(0), end)

    def element(body: Env, i: Ref) -> tuple[Term, Env, Ref]:
        index = body.read(i)
        if kind is enumerate:
            (coll,), (schema,) = refs, schemas
            shown = index if offset is None else prim(Op.ADD, index, body.read(offset))
            parts = [shown, _at(body.read(coll), schema, index)]
            items_ = [INT_SCHEMA, _item_of(schema)]
        elif kind is zip:
            parts = [_at(body.read(r), s, index) for r, s in zip(refs, schemas, strict=True)]
            items_ = [_item_of(s) for s in schemas]
        else:
            (coll,), (schema,) = refs, schemas
            xs = body.read(coll)
            parts = [_at(xs, schema, index), _at(xs, schema, prim(Op.ADD, index, Lit(1)))]
            items_ = [_item_of(schema)] * 2
        return _pushed(body, TupleSchema(tuple(items_)), build_product(parts))

    return Source(seq(*prelude), current, items, INT_SCHEMA, element)


def _length(term: Term, schema: Schema) -> Term:
    return prim(Op.STR_LEN if isinstance(schema, StrSchema) else Op.LIST_LEN, term)


def _at(coll: Term, schema: Schema, i: Term) -> Term:
    return prim(Op.STR_INDEX if isinstance(schema, StrSchema) else Op.LIST_INDEX, coll, i)


def _item_of(schema: Schema) -> Schema:
    return schema.item if isinstance(schema, ListSchema) else STR_SCHEMA


def _names(target: ast.expr) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def _bind_target(c: FunctionCompiler, target: ast.expr, ref: Ref, env: Env) -> Env:
    """Bind a comprehension's target (its own scope: no declared types apply)."""
    match target:
        case ast.Name(id=name):
            return env.bind(name, ref)
        case ast.Tuple(elts) | ast.List(elts):
            schema = ref.schema
            if not isinstance(schema, TupleSchema) or len(schema.items) != len(elts):
                msg = f"cannot unpack {describe(schema)} into {len(elts)} names"
                raise c.error(target, msg)
            for i, elt in enumerate(elts):
                env = _bind_target(c, elt, component(ref, i), env)
            return env
    raise c.error(target, "a loop variable must be a name or a tuple of names")


def _body_env(src: Source, state: Schema) -> tuple[Env, Ref, Ref, Term]:
    """The environment of a fold body over ``src`` with state ``state``: the item (after the
    element's push), the state, and the term pushing the element (``id`` when none)."""
    slot = TupleSchema((src.item, state))
    body, ref = src.env.push(slot)
    item, acc = component(ref, 0), component(ref, 1)
    if src.element is None:
        return body, item, acc, ID
    push, body, element = src.element(body, item)
    return body, element, acc, push


# --- for statements -------------------------------------------------------------------------


def for_statement(
    c: FunctionCompiler, stmt: ast.For, rest: Sequence[ast.stmt], env: Env, k: Continuation
) -> Term:
    """``for target in iterable: body`` then ``rest`` (the module doc's first two rules); a
    carried variable first None and then an int becomes ``int | None``, as in mypy."""
    return widening(c, stmt, env, lambda e: _for_statement(c, stmt, rest, e, k))


def _for_statement(
    c: FunctionCompiler, stmt: ast.For, rest: Sequence[ast.stmt], env: Env, k: Continuation
) -> Term:
    if stmt.orelse:
        raise c.error(stmt.orelse[0], "for ... else is not supported")
    targets = _names(stmt.target)
    for name in targets:
        if name in env.vars:
            msg = (
                f"{name} is already a variable here: name the loop variable differently "
                "(after the loop, Python would leave it at the last item)"
            )
            raise c.error(stmt.target, msg)
    src = source(c, stmt.iter, env)
    assigned = flow.assigned(stmt.body)
    carried = [n for n in assigned if n in env.vars and n not in targets]
    schemas: list[Schema] = []
    initial: list[Term] = []
    for name in carried:
        ref = env.vars[name]
        declared = env.declared.get(name, ref.schema)
        widen = coercion(ref.schema, declared)
        if widen is None:
            declared, widen = ref.schema, ID
        schemas.append(declared)
        initial.append(seq(src.env.read(ref), widen))
    state = _state_schema(schemas)
    returns = c.function.signature.returns if flow.loop_returns(stmt) else None
    loop = LoopBody(tuple(carried), tuple(schemas), core_type(state), returns, stmt)
    slot = TupleSchema((src.item, *schemas)) if schemas else TupleSchema((src.item, NONE_SCHEMA))
    body_env, ref = src.env.push(slot)
    item: Ref = component(ref, 0)
    push: Term = ID
    if src.element is not None:
        push, body_env, item = src.element(body_env, item)
    for i, name in enumerate(carried):
        body_env = body_env.bind(name, component(ref, i + 1))
    body_env = unpack(c, stmt.target, item, body_env)
    body = seq(push, c.block(stmt.body, body_env, loop, stmt))
    fold = seq(src.prelude, Fanout(ID, Fanout(src.items, build_product(initial))), Fold(body))
    dropped = {
        n: (
            f"{n} is the loop variable of the for on line {stmt.lineno}: use it inside the loop"
            if n in targets
            else f"{n} is first assigned inside the for on line {stmt.lineno}: assign it before "
            "the loop to use it after"
        )
        for n in [*targets, *assigned]
        if n not in carried
    }
    inner, state_ref = env.push(state)
    if len(carried) == 1:
        inner = inner.bind(carried[0], state_ref)
    else:
        for i, name in enumerate(carried):
            inner = inner.bind(name, component(state_ref, i))
    after = c.block(rest, inner.forget(dropped), k, stmt)
    if returns is None:
        return seq(Fanout(ID, seq(fold, Case(ID, ID))), after)
    terminal = terminal_of(k)
    exit_ = exit_type(terminal)
    s = core_type(state)
    leave = ID if isinstance(terminal, Return) else terminal.stop_with_return()
    converted = Case(Inr(exit_), Case(seq(leave, Inl(s)), Inr(exit_)))
    mark = k.mark() if isinstance(k, JoinPoint) else ID
    return seq(Fanout(ID, seq(fold, converted)), DISTL, Case(seq(SND, mark), after))


def _state_schema(schemas: list[Schema]) -> Schema:
    if not schemas:
        return NONE_SCHEMA
    if len(schemas) == 1:
        return schemas[0]
    return TupleSchema(tuple(schemas))


# --- folds with an accumulator: comprehensions and builtins ---------------------------------


Step = Callable[[Env, Ref], Term]


def reduce(
    c: FunctionCompiler,
    generators: list[ast.comprehension],
    env: Env,
    state: Schema,
    init: Callable[[Env], Term],
    step: Step,
) -> Term:
    """``ctx -> S``: run ``step`` (``body ctx -> S + S``, given the state) on every element the
    ``generators`` (a comprehension's ``for ... in ... if ...`` clauses) produce, from
    ``init`` (read in the environment of the first loop); ``inr`` stops early."""
    first = generators[0]
    src = source(c, first.iter, env)
    body = _generator_body(c, generators, src, state, step)
    return seq(
        src.prelude,
        Fanout(ID, Fanout(src.items, init(src.env))),
        Fold(body),
        Case(ID, ID),
    )


def _generator_body(
    c: FunctionCompiler,
    generators: list[ast.comprehension],
    src: Source,
    state: Schema,
    step: Step,
) -> Term:
    generator, rest = generators[0], generators[1:]
    if generator.is_async:
        raise c.error(generator.iter, "async comprehensions are not supported")
    body, element, acc, push = _body_env(src, state)
    body = _bind_target(c, generator.target, element, body)
    s = core_type(state)

    def inner(e: Env) -> Term:
        if not rest:
            return step(e, acc)
        nested = source(c, rest[0].iter, e)
        return seq(
            nested.prelude,
            Fanout(ID, Fanout(nested.items, nested.env.read(acc))),
            Fold(_generator_body(c, rest, nested, state, step)),
        )

    term = inner(body)
    for test in reversed(generator.ifs):
        term = if_then_else(c.bool_test(test, body), term, seq(body.read(acc), Inl(s)))
    return seq(push, term)


def probe(
    c: FunctionCompiler, generators: list[ast.comprehension], env: Env, elts: list[ast.expr]
) -> list[Schema]:
    """The schemas of ``elts`` inside the comprehension (compiled once to learn them)."""
    found: list[Schema] = []

    def step(e: Env, acc: Ref) -> Term:
        found.extend(c.synth(elt, e, None).schema for elt in elts)
        return seq(e.read(acc), Inl(core_type(NONE_SCHEMA)))

    reduce(c, generators, env, NONE_SCHEMA, lambda e: build_product([]), step)
    return found[: len(elts)]


def comprehension(
    c: FunctionCompiler, node: ast.ListComp | ast.DictComp, env: Env, hint: Schema | None
) -> Typed:
    """``[e for ...]`` and ``{k: v for ...}``."""
    generators = node.generators
    if isinstance(node, ast.ListComp):
        expected = alternative(hint, ListSchema)
        if isinstance(expected, ListSchema):
            item = expected.item
        else:
            (item,) = probe(c, generators, env, [node.elt])
        return Typed(_list_fold(c, generators, env, node.elt, item), ListSchema(item))
    expected = alternative(hint, DictSchema)
    if isinstance(expected, DictSchema):
        schema = expected
    else:
        key, value = probe(c, generators, env, [node.key, node.value])
        try:
            schema = dict_schema(key, value)
        except SchemaProblem as e:
            raise c.error(node.key, str(e)) from None
    t = core_type(schema)

    def step(e: Env, acc: Ref) -> Term:
        k = c.expr(node.key, e, schema.key, "a key of the comprehension").term
        v = c.expr(node.value, e, schema.value, "a value of the comprehension").term
        return seq(Fanout(e.read(acc), Fanout(k, v)), Prim(Op.MAP_INSERT), Inl(t))

    return Typed(reduce(c, generators, env, schema, lambda e: Empty(t), step), schema)


def _list_fold(
    c: FunctionCompiler,
    generators: list[ast.comprehension],
    env: Env,
    elt: ast.expr,
    item: Schema,
) -> Term:
    schema = ListSchema(item)
    t = core_type(schema)

    def step(e: Env, acc: Ref) -> Term:
        value = c.expr(elt, e, item, "an item of the comprehension").term
        return seq(Fanout(e.read(acc), value), Prim(Op.LIST_APPEND), Inl(t))

    return reduce(c, generators, env, schema, lambda e: Empty(t), step)


def _generator(c: FunctionCompiler, node: ast.expr) -> tuple[list[ast.comprehension], ast.expr]:
    """A generator expression's clauses and element; any other iterable ``xs`` as
    ``(x for x in xs)``."""
    if isinstance(node, ast.GeneratorExp):
        return node.generators, node.elt
    if isinstance(node, ast.ListComp):  # sum([...]) sums the list it builds: the same values
        return node.generators, node.elt
    target = ast.copy_location(ast.Name(_ITEM, ast.Store()), node)
    load = ast.copy_location(ast.Name(_ITEM, ast.Load()), node)
    clause = ast.comprehension(target=target, iter=node, ifs=[], is_async=0)
    return [clause], load


def to_list(c: FunctionCompiler, node: ast.expr, env: Env, hint: Schema | None) -> Typed:
    """``list(x)``: a list as it is, a view or range as the list it shows, the keys of a dict,
    the characters of a str, what a generator produces."""
    if not isinstance(node, ast.GeneratorExp | ast.ListComp):
        typed = c.synth_view(node, env, hint)
        match typed.schema:
            case ListSchema():
                return Typed(typed.term, typed.schema)
            case DictSchema(key=key):
                return Typed(prim(Op.MAP_KEYS, typed.term), ListSchema(key))
            case StrSchema():
                pass
            case schema:
                raise c.error(node, f"list() of {describe(schema)}: give it a list, dict or str")
    generators, elt = _generator(c, node)
    expected = alternative(hint, ListSchema)
    if isinstance(expected, ListSchema):
        item = expected.item
    else:
        (item,) = probe(c, generators, env, [elt])
    return Typed(_list_fold(c, generators, env, elt, item), ListSchema(item))


def to_dict(c: FunctionCompiler, node: ast.expr, env: Env, hint: Schema | None) -> Typed:
    """``dict(d)`` (a copy: the same value) or ``dict(pairs)`` of (key, value) tuples."""
    if not isinstance(node, ast.GeneratorExp):
        typed = c.synth_view(node, env, hint)
        if isinstance(typed.schema, DictSchema):
            return Typed(typed.term, typed.schema)
    generators, elt = _generator(c, node)
    (pair,) = probe(c, generators, env, [elt])
    if not (isinstance(pair, TupleSchema) and len(pair.items) == 2):
        raise c.error(node, f"dict() takes a dict or (key, value) pairs, not {describe(pair)}")
    try:
        schema = dict_schema(*pair.items)
    except SchemaProblem as e:
        raise c.error(node, str(e)) from None
    t = core_type(schema)

    def step(e: Env, acc: Ref) -> Term:
        value = c.expr(elt, e, pair, "a (key, value) pair").term
        return seq(Fanout(e.read(acc), value), Prim(Op.MAP_INSERT), Inl(t))

    return Typed(reduce(c, generators, env, schema, lambda e: Empty(t), step), schema)


def folds_over(c: FunctionCompiler, node: ast.Call, env: Env) -> bool:
    """Whether ``min``/``max`` here take an iterable (or strs), rather than ints."""
    args = node.args
    if len(args) == 1 or node.keywords:
        return True
    if len(args) >= 2 and not any(isinstance(a, ast.Starred) for a in args):
        return isinstance(c.synth(args[0], env, None).schema, StrSchema)
    return False


_EMPTY_MESSAGE = {"min": "min() arg is an empty sequence", "max": "max() arg is an empty sequence"}


def builtin_fold(c: FunctionCompiler, name: str, node: ast.Call, env: Env) -> Typed:
    """``sum``, ``any``, ``all``, ``min``, ``max`` of an iterable (``min``/``max`` of strs)."""
    args = node.args
    if node.keywords:
        raise c.error(node, f"{name}() takes no keyword arguments here")
    if name in ("min", "max") and len(args) >= 2:
        return _str_extremum(c, name, node, env)
    if len(args) != 1:
        raise c.error(node, f"{name}() takes one iterable here")
    generators, elt = _generator(c, args[0])
    if name == "sum":

        def add(e: Env, acc: Ref) -> Term:
            x = c.expr(elt, e, INT_SCHEMA, "an item of sum()").term
            return seq(Fanout(e.read(acc), x), Prim(Op.ADD), Inl(INT))

        return Typed(reduce(c, generators, env, INT_SCHEMA, lambda e: Lit(0), add), INT_SCHEMA)
    if name in ("any", "all"):
        stop = name == "any"  # any stops at the first True, all at the first False

        def test(e: Env, acc: Ref) -> Term:
            x = c.expr(elt, e, BOOL_SCHEMA, f"an item of {name}()").term
            found = seq(TRUE if stop else FALSE, Inr(BOOL))
            go_on = seq(FALSE if stop else TRUE, Inl(BOOL))
            return if_then_else(x, found, go_on) if stop else if_then_else(x, go_on, found)

        start = FALSE if stop else TRUE
        return Typed(reduce(c, generators, env, BOOL_SCHEMA, lambda e: start, test), BOOL_SCHEMA)
    (item,) = probe(c, generators, env, [elt])
    if not isinstance(item, IntSchema | StrSchema):
        raise c.error(args[0], f"{name}() compares ints or strs, not {describe(item)}")
    state = TupleSchema((BOOL_SCHEMA, item))
    t = core_type(state)
    less = Op.LT if isinstance(item, IntSchema) else Op.STR_LT
    greater = Op.GT if isinstance(item, IntSchema) else Op.STR_GT
    better = less if name == "min" else greater
    zero: Term = Lit(0) if isinstance(item, IntSchema) else StrLit("")

    def keep(e: Env, acc: Ref) -> Term:
        x = c.expr(elt, e, item, f"an item of {name}()").term
        inner, x_ref = e.push(item)
        seen, current = component(acc, 0), component(acc, 1)
        take = seq(Fanout(TRUE, inner.read(x_ref)), Inl(t))
        stay = seq(inner.read(acc), Inl(t))
        wins = prim(better, inner.read(x_ref), inner.read(current))
        return seq(
            Fanout(ID, x), if_then_else(inner.read(seen), if_then_else(wins, take, stay), take)
        )

    folded = reduce(c, generators, env, state, lambda e: Fanout(FALSE, zero), keep)
    failure = seq(Fanout(StrLit("ValueError"), StrLit(_EMPTY_MESSAGE[name])), Fail(core_type(item)))
    finish = seq(Fanout(ID, FST), DISTL, Case(seq(FST, failure), seq(FST, SND)))
    return Typed(seq(folded, finish), item)


def _str_extremum(c: FunctionCompiler, name: str, node: ast.Call, env: Env) -> Typed:
    """``min(a, b, ...)`` of strs: the first least (greatest), as Python keeps it."""
    args = [c.expr(a, env, STR_SCHEMA, f"argument of {name}()").term for a in node.args]
    keep_first = Prim(Op.STR_LE if name == "min" else Op.STR_GE)
    result = args[0]
    for arg in args[1:]:
        result = seq(Fanout(result, arg), if_then_else(keep_first, FST, SND))
    return Typed(result, STR_SCHEMA)


def join(c: FunctionCompiler, node: ast.Call, sep: Typed, arg: ast.expr, env: Env) -> Typed:
    """``sep.join(xs)``: ``sep`` first, then the items (each a str) as a list, joined by the
    one primitive ``STR_JOIN`` (a copy of the result, not one per item)."""
    items = to_list(c, arg, env, ListSchema(STR_SCHEMA))
    if items.schema != ListSchema(STR_SCHEMA):
        raise c.error(arg, f"join() joins strs, not {describe(items.schema)}")
    return Typed(prim(Op.STR_JOIN, sep.term, items.term), STR_SCHEMA)


def reverse_list(schema: ListSchema) -> Term:
    """``List A -> List A``, the items in reverse order: a fold over the indices appending
    ``xs[-1 - i]``."""
    t = core_type(schema)
    assert isinstance(t, ListT)
    # body : List A x (Int x List A) -> List A + List A
    i, acc, xs = seq(SND, FST), seq(SND, SND), FST
    index = prim(Op.SUB, Lit(-1), i)
    body = seq(Fanout(acc, prim(Op.LIST_INDEX, xs, index)), Prim(Op.LIST_APPEND), Inl(t))
    items = prim(Op.RANGE, Lit(0), Prim(Op.LIST_LEN))
    return seq(Fanout(ID, Fanout(items, Empty(t))), Fold(body), Case(ID, ID))
