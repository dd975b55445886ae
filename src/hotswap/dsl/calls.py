"""Calls: record construction, ``dataclasses.replace``, ``abs``/``min``/``max``, and the
argument handling shared with inlined DSL functions.

Python evaluates arguments in source order; a record's fields are built in declaration order.
When the two differ and more than one argument could trap, the arguments are first pushed on
the context in source order, so a step traps with the same error CPython would raise::

    R(y=a, x=b)         <id, a> ; <id, fst ; b> ; <snd, fst ; snd>     (both may trap)
    replace(r, x=a)     <r.x := a, other fields read from r>
    min(a, b)           <a, b> ; <id, le> ; distl ; [fst ; snd | fst ; fst]
    abs(a)              a ; <id, <id, 0> ; lt> ; distl ; [fst | fst ; neg]
"""

from __future__ import annotations

import ast
import dataclasses
from abc import abstractmethod
from types import FunctionType

from hotswap.dsl.annotations import MISSING, record_schema
from hotswap.dsl.combinators import if_then_else
from hotswap.dsl.env import Env, Ref, build_product, component, seq
from hotswap.dsl.expressions import ExpressionCompiler, Typed
from hotswap.dsl.functions import dsl_function
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


class CallCompiler(ExpressionCompiler):
    """Calls; inlining another DSL function is left to the statement compiler."""

    @abstractmethod
    def call_function(self, fn: FunctionType, node: ast.Call, env: Env) -> Typed:
        """Inline a call of another DSL function."""

    def call(self, node: ast.Call, env: Env) -> Typed:
        target = self.static(node.func)
        name = ast.unparse(node.func)
        if target is MISSING:
            raise self.error(node.func, f"cannot call {name}: it is not a function or a class")
        if target is dataclasses.replace:
            return self._replace(node, env)
        if isinstance(target, type) and dataclasses.is_dataclass(target):
            return self._construct(target, node, env)
        if target in (abs, min, max):
            return self._builtin(name, node, env)
        fn = dsl_function(target)
        if fn is None:
            msg = f"calling {name} is not supported: call records, abs, min, max or DSL functions"
            raise self.error(node.func, msg)
        return self.call_function(fn, node, env)

    def record(self, cls: type, node: ast.AST) -> RecordSchema:
        try:
            return record_schema(cls)
        except SchemaProblem as e:
            raise self.error(node, str(e)) from None

    def arguments(
        self, node: ast.Call, names: list[str], what: str, positional: list[str] | None = None
    ) -> list[ast.expr | None]:
        """Positional and keyword arguments matched to ``names`` (None where missing); only the
        ``positional`` names (all by default) can be given by position, in that order."""
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            raise self.error(node, "*args and **kwargs are not supported")
        positional = names if positional is None else positional
        if len(node.args) > len(positional):
            msg = f"{what} takes {len(positional)} positional arguments, got {len(node.args)}"
            raise self.error(node, msg)
        given: dict[str, ast.expr] = dict(zip(positional, node.args, strict=False))
        for kw in node.keywords:
            assert kw.arg is not None
            if kw.arg not in names:
                raise self.error(kw, f"{what} has no parameter {kw.arg}")
            if kw.arg in given:
                raise self.error(kw, f"{what} got two values for {kw.arg}")
            given[kw.arg] = kw.value
        return [given.get(n) for n in names]

    def in_source_order(
        self, env: Env, args: list[tuple[ast.expr, Schema, str]]
    ) -> tuple[Term, Env, list[Term]]:
        """Compile ``args`` (in parameter order) so they run in source order, as Python does.

        When the orders differ and two arguments could trap, the arguments are pushed on the
        context in source order first, so the first trap is the one CPython would raise.
        """
        compiled = [self.expr(e, env, s, w).term for e, s, w in args]
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

    def _construct(self, cls: type, node: ast.Call, env: Env) -> Typed:
        schema = self.record(cls, node.func)
        positional = [f.name for f in dataclasses.fields(cls) if not f.kw_only]
        given = self.arguments(node, list(schema.field_names()), schema.name, positional)
        args: list[tuple[ast.expr, Schema, str]] = []
        defaults: dict[int, Term] = {}
        for index, (f, arg) in enumerate(zip(schema.fields, given, strict=True)):
            if arg is not None:
                args.append((arg, f.schema, f"field {f.name} of {schema.name}"))
                continue
            default = dataclasses.fields(cls)[index].default
            if default is dataclasses.MISSING:
                raise self.error(node, f"{schema.name}() is missing field {f.name}")
            try:
                defaults[index] = constant(to_core(f.schema, default), core_type(f.schema))
            except ValueTypeError as e:
                raise self.error(node, f"the default of {schema.name}.{f.name}: {e}") from None
        prelude, _, terms = self.in_source_order(env, args)
        it = iter(terms)
        fields = [defaults[i] if i in defaults else next(it) for i in range(len(schema.fields))]
        return Typed(seq(prelude, build_product(fields)), schema)

    def _replace(self, node: ast.Call, env: Env) -> Typed:
        if len(node.args) != 1:
            raise self.error(node, "replace() takes one record and keyword arguments")
        base = self.expr(node.args[0], env)
        if not isinstance(base.schema, RecordSchema):
            raise self.error(node.args[0], f"replace() needs a record, not {describe(base.schema)}")
        schema = base.schema
        ref = self.place(node.args[0], env)
        prelude: Term = ID
        inner = env
        if ref is None:
            prelude = Fanout(ID, base.term)
            inner, ref = env.push(schema)
        names = list(schema.field_names())
        fake = ast.Call(func=node.func, args=[], keywords=node.keywords)
        ast.copy_location(fake, node)
        given = self.arguments(fake, names, "replace()")
        args = [
            (arg, f.schema, f"field {f.name} of {schema.name}")
            for f, arg in zip(schema.fields, given, strict=True)
            if arg is not None
        ]
        order_prelude, final, terms = self.in_source_order(inner, args)
        it = iter(terms)
        fields = [
            next(it) if arg is not None else final.read(component(ref, i))
            for i, arg in enumerate(given)
        ]
        return Typed(seq(prelude, order_prelude, build_product(fields)), schema)

    def _builtin(self, name: str, node: ast.Call, env: Env) -> Typed:
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.error(node, f"{name}() takes positional int arguments only")
        args = [self.expr(a, env, INT_SCHEMA, f"argument of {name}()").term for a in node.args]
        if name == "abs":
            if len(args) != 1:
                raise self.error(node, "abs() takes one argument")
            negative = seq(Fanout(ID, Lit(0)), Prim(Op.LT))
            return Typed(seq(args[0], if_then_else(negative, Prim(Op.NEG), ID)), INT_SCHEMA)
        if len(args) < 2:
            raise self.error(node, f"{name}() takes two or more arguments")
        keep_first = Prim(Op.LE if name == "min" else Op.GE)
        result = args[0]
        for arg in args[1:]:
            result = seq(Fanout(result, arg), if_then_else(keep_first, FST, SND))
        return Typed(result, INT_SCHEMA)
