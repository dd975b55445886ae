"""Calls: record construction, ``dataclasses.replace``, ``abs``/``min``/``max``, and inlined
calls of other DSL functions (which callee is which: :meth:`FunctionCompiler.call`).

Python evaluates arguments in source order; a record's fields are built in declaration order.
When the two differ and more than one argument could trap, the arguments are first pushed on
the context in source order, so a step traps with the same error CPython would raise::

    R(y=a, x=b)         <id, a> ; <id, fst ; b> ; <snd, fst ; snd>     (both may trap)
    replace(r, x=a)     <r.x := a, other fields read from r>
    min(a, b)           <a, b> ; <id, le> ; distl ; [fst ; snd | fst ; fst]
    abs(a)              a ; <id, <id, 0> ; lt> ; distl ; [fst | fst ; neg]
    f(a, b)             <a, b> ; body of f      (inlined; recursion is rejected)
"""

from __future__ import annotations

import ast
import dataclasses
from types import FunctionType
from typing import TYPE_CHECKING

from hotswap.dsl.annotations import record_schema
from hotswap.dsl.combinators import if_then_else
from hotswap.dsl.env import Env, Ref, build_product, component, seq
from hotswap.dsl.expressions import Typed, place
from hotswap.errors import ValueTypeError
from hotswap.lang.optimise import may_trap
from hotswap.lang.terms import FST, ID, SND, Fanout, Lit, Op, Prim, Term
from hotswap.lang.values import constant
from hotswap.names.schema import (
    INT_SCHEMA,
    RecordSchema,
    Schema,
    SchemaProblem,
    core_type,
    describe,
    to_core,
)

if TYPE_CHECKING:
    from hotswap.dsl.dispatch import FunctionCompiler


def construct_record(c: FunctionCompiler, cls: type, node: ast.Call, env: Env) -> Typed:
    """``R(a, y=b)``: the fields in declaration order, defaults for those not given."""
    schema = _record(c, cls, node.func)
    positional = [f.name for f in dataclasses.fields(cls) if not f.kw_only]
    given = _arguments(c, node, list(schema.field_names()), schema.name, positional)
    args: list[tuple[ast.expr, Schema, str]] = []
    defaults: dict[int, Term] = {}
    for index, (f, arg) in enumerate(zip(schema.fields, given, strict=True)):
        if arg is not None:
            args.append((arg, f.schema, f"field {f.name} of {schema.name}"))
            continue
        declared = dataclasses.fields(cls)[index]
        default = declared.default
        if default is dataclasses.MISSING and declared.default_factory is not dataclasses.MISSING:
            default = _factory_default(c, node, schema.name, f.name, declared.default_factory)
        if default is dataclasses.MISSING:
            raise c.error(node, f"{schema.name}() is missing field {f.name}")
        try:
            defaults[index] = constant(to_core(f.schema, default), core_type(f.schema))
        except ValueTypeError as e:
            raise c.error(node, f"the default of {schema.name}.{f.name}: {e}") from None
    prelude, _, terms = _in_source_order(c, env, args)
    it = iter(terms)
    fields = [defaults[i] if i in defaults else next(it) for i in range(len(schema.fields))]
    return Typed(seq(prelude, build_product(fields)), schema)


def _factory_default(
    c: FunctionCompiler, node: ast.AST, record: str, name: str, factory: object
) -> object:
    """The value of a field's ``default_factory`` (``list``, ``dict``, a function making a
    value), called once at compile time: values are immutable, so one is as good as a new one
    each time."""
    if not callable(factory):
        raise c.error(node, f"the default_factory of {record}.{name} is not callable")
    try:
        return factory()
    except Exception as e:  # noqa: BLE001 - the user's factory failed: report it at the call
        msg = f"the default_factory of {record}.{name} raised {type(e).__name__}: {e}"
        raise c.error(node, msg) from None


def replace_fields(c: FunctionCompiler, node: ast.Call, env: Env) -> Typed:
    """``dataclasses.replace(r, x=a)``: the fields given, the others read from ``r``."""
    if len(node.args) != 1:
        raise c.error(node, "replace() takes one record and keyword arguments")
    base = c.expr(node.args[0], env)
    if not isinstance(base.schema, RecordSchema):
        raise c.error(node.args[0], f"replace() needs a record, not {describe(base.schema)}")
    schema = base.schema
    ref = place(c, node.args[0], env)
    prelude: Term = ID
    inner = env
    if ref is None:
        prelude = Fanout(ID, base.term)
        inner, ref = env.push(schema)
    names = list(schema.field_names())
    fake = ast.Call(func=node.func, args=[], keywords=node.keywords)
    ast.copy_location(fake, node)
    given = _arguments(c, fake, names, "replace()")
    args = [
        (arg, f.schema, f"field {f.name} of {schema.name}")
        for f, arg in zip(schema.fields, given, strict=True)
        if arg is not None
    ]
    order_prelude, final, terms = _in_source_order(c, inner, args)
    it = iter(terms)
    fields = [
        next(it) if arg is not None else final.read(component(ref, i))
        for i, arg in enumerate(given)
    ]
    return Typed(seq(prelude, order_prelude, build_product(fields)), schema)


def builtin_call(c: FunctionCompiler, name: str, node: ast.Call, env: Env) -> Typed:
    """``abs(a)``, ``min(a, b, ...)``, ``max(a, b, ...)`` on ints."""
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise c.error(node, f"{name}() takes positional int arguments only")
    args = [c.expr(a, env, INT_SCHEMA, f"argument of {name}()").term for a in node.args]
    if name == "abs":
        if len(args) != 1:
            raise c.error(node, "abs() takes one argument")
        negative = seq(Fanout(ID, Lit(0)), Prim(Op.LT))
        return Typed(seq(args[0], if_then_else(negative, Prim(Op.NEG), ID)), INT_SCHEMA)
    if len(args) < 2:
        raise c.error(node, f"{name}() takes two or more arguments")
    keep_first = Prim(Op.LE if name == "min" else Op.GE)
    result = args[0]
    for arg in args[1:]:
        result = seq(Fanout(result, arg), if_then_else(keep_first, FST, SND))
    return Typed(result, INT_SCHEMA)


def inline_call(c: FunctionCompiler, fn: FunctionType, node: ast.Call, env: Env) -> Typed:
    """``f(a, b)``: the arguments, then the body of ``f`` (compiled once per session)."""
    session = c.session
    callee = session.function(fn)
    if fn in session.stack:
        chain = [f.__name__ for f in session.stack[session.stack.index(fn) :]]
        msg = f"recursion is not supported: {' -> '.join([*chain, fn.__name__])}"
        raise c.error(node, msg)
    signature = callee.signature
    names = [name for name, _ in signature.params]
    given = _arguments(c, node, names, f"{callee.name}()")
    args: list[tuple[ast.expr, Schema, str]] = []
    for (name, schema), arg in zip(signature.params, given, strict=True):
        if arg is None:
            raise c.error(node, f"{callee.name}() is missing argument {name}")
        args.append((arg, schema, f"argument {name} of {callee.name}()"))
    prelude, _, terms = _in_source_order(c, env, args)
    body = c.callee_body(callee)
    return Typed(seq(prelude, build_product(terms), body), signature.returns)


def _record(c: FunctionCompiler, cls: type, node: ast.AST) -> RecordSchema:
    try:
        return record_schema(cls)
    except SchemaProblem as e:
        raise c.error(node, str(e)) from None


def _arguments(
    c: FunctionCompiler,
    node: ast.Call,
    names: list[str],
    what: str,
    positional: list[str] | None = None,
) -> list[ast.expr | None]:
    """Positional and keyword arguments matched to ``names`` (None where missing); only the
    ``positional`` names (all by default) can be given by position, in that order."""
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        raise c.error(node, "*args and **kwargs are not supported")
    positional = names if positional is None else positional
    if len(node.args) > len(positional):
        msg = f"{what} takes {len(positional)} positional arguments, got {len(node.args)}"
        raise c.error(node, msg)
    given: dict[str, ast.expr] = dict(zip(positional, node.args, strict=False))
    for kw in node.keywords:
        assert kw.arg is not None
        if kw.arg not in names:
            raise c.error(kw, f"{what} has no parameter {kw.arg}")
        if kw.arg in given:
            raise c.error(kw, f"{what} got two values for {kw.arg}")
        given[kw.arg] = kw.value
    return [given.get(n) for n in names]


def _in_source_order(
    c: FunctionCompiler, env: Env, args: list[tuple[ast.expr, Schema, str]]
) -> tuple[Term, Env, list[Term]]:
    """Compile ``args`` (in parameter order) so they run in source order, as Python does.

    When the orders differ and two arguments could trap, the arguments are pushed on the
    context in source order first, so the first trap is the one CPython would raise.
    """
    compiled = [c.expr(e, env, s, w).term for e, s, w in args]
    order = sorted(range(len(args)), key=lambda i: (args[i][0].lineno, args[i][0].col_offset))
    if order == sorted(order) or sum(map(may_trap, compiled)) < 2:
        return ID, env, compiled
    prelude: list[Term] = []
    refs: dict[int, Ref] = {}
    current = env
    for pushed, i in enumerate(order):
        prelude.append(Fanout(ID, seq(*(FST,) * pushed, compiled[i])))
        current, refs[i] = current.push(args[i][1])
    return seq(*prelude), current, [current.read(refs[i]) for i in range(len(args))]
