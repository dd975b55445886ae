"""The compiler of one DSL function: the dispatch over its syntax, in one place.

:class:`FunctionCompiler` routes each construct to the function that compiles it:
:meth:`~FunctionCompiler.block` over statements (:mod:`hotswap.dsl.statements`),
:meth:`~FunctionCompiler.synth` over expressions (:mod:`hotswap.dsl.expressions`) and
:meth:`~FunctionCompiler.call` over what a call calls (:mod:`hotswap.dsl.calls`). Those
functions take the compiler and compile the parts of their construct through it, so every
recursion goes back through this dispatch.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
from collections.abc import Sequence

from hotswap.cam.limits import MAX_TYPE_DEPTH
from hotswap.dsl import calls, data, expressions, flow, loops, mutation, statements, textlib
from hotswap.dsl.annotations import MISSING
from hotswap.dsl.combinators import FALSE, TRUE, coercion, if_then_else
from hotswap.dsl.env import Env, seq
from hotswap.dsl.expressions import Typed
from hotswap.dsl.functions import DslFunction, Session, dsl_function
from hotswap.dsl.joins import Continuation, Return, carried_names
from hotswap.errors import SourceError
from hotswap.lang.optimise import may_trap
from hotswap.lang.terms import ID, Fanout, Op, Prim, Term
from hotswap.names.schema import BOOL_SCHEMA, BoolSchema, Schema, describe

#: The context is rebuilt as a balanced tuple when its type grows higher than this, leaving
#: room below the bytecode's MAX_TYPE_DEPTH for what one statement pushes.
COMPACT_ABOVE = MAX_TYPE_DEPTH - 12


class FunctionCompiler:
    """Compiles one DSL function's body, in a session shared with the functions it calls."""

    def __init__(self, session: Session, function: DslFunction) -> None:
        self.session = session
        self.function = function
        #: Locals assigned an empty ``[]``/``{}`` whose item types are still guessed (see
        #: :mod:`hotswap.dsl.inference`), by name.
        self.tentative: dict[str, Schema] = {}

    def error(self, node: ast.AST | None, message: str) -> SourceError:
        return self.function.error(node, message)

    def compile(self) -> Term:
        """The term ``arguments -> result`` (arguments as in :meth:`Env.for_params`)."""
        signature = self.function.signature
        stack = self.session.stack
        stack.append(self.function.fn)  # calls back into it are recursion (see inline_call)
        try:
            env = Env.for_params(list(signature.params), self.function.declarations)
            return self.block(self.function.body(), env, Return(signature.returns))
        finally:
            stack.pop()

    def callee_body(self, callee: DslFunction) -> Term:
        """The body of a DSL function called from here, compiled once per session."""
        compiled = self.session.compiled
        if callee.fn not in compiled:
            compiled[callee.fn] = FunctionCompiler(self.session, callee).compile()
        return compiled[callee.fn]

    # --- statements -------------------------------------------------------------------------

    def block(
        self, stmts: Sequence[ast.stmt], env: Env, k: Continuation, last: ast.AST | None = None
    ) -> Term:
        """``stmts`` front to back, then ``k``; ``last`` is the statement before them."""
        if not stmts:
            return statements.fall_off(self, env, k, last)
        if env.height > COMPACT_ABOVE:
            live = flow.loaded(stmts) | set(carried_names(k))
            compacted = env.compact(live)
            if compacted is not None:
                return seq(compacted[0], self.block(stmts, compacted[1], k, last))
        stmt, rest = stmts[0], stmts[1:]
        match stmt:
            case ast.Pass():
                return self.block(rest, env, k, stmt)
            case ast.Expr(value=ast.Constant(value=v)) if isinstance(v, str) or v is ...:
                return self.block(rest, env, k, stmt)
            case ast.Expr(value=ast.Call(func=ast.Attribute(attr=attr))) if (
                attr in flow.MUTATING_METHODS
            ):
                return mutation.statement(self, stmt, rest, env, k)
            case ast.Expr(value=ast.Call(func=func) as call) if (
                dsl_function(expressions.static(self.function, func)) is not None
            ):
                return self._call_statement(call, rest, env, k, stmt)
            case ast.Expr(value=value):
                raise self.error(stmt, _no_effect(value))
            case ast.Return():
                return statements.return_statement(self, stmt, env, k)
            case ast.Raise():
                return statements.raise_statement(self, stmt, env, k)
            case ast.Continue() | ast.Break():
                return statements.loop_exit(self, stmt, env, k)
            case ast.For():
                return loops.for_statement(self, stmt, rest, env, k)
            case ast.Assign(targets=[ast.Subscript()]) | ast.Delete(targets=[ast.Subscript()]):
                return mutation.statement(self, stmt, rest, env, k)
            case ast.AugAssign(target=ast.Subscript()):
                return mutation.statement(self, stmt, rest, env, k)
            case ast.Assign(targets=[target], value=value):
                return statements.assignment(self, target, value, rest, env, k, stmt)
            case ast.Assign():
                raise self.error(stmt, "chained assignment a = b = ... is not supported")
            case ast.AnnAssign(target=ast.Name() as target):  # declared function-wide
                if stmt.value is None:
                    return self.block(rest, env, k, stmt)
                return statements.assignment(self, target, stmt.value, rest, env, k, stmt)
            case ast.AugAssign(target=ast.Name() as target):
                if mutation.in_place(self, stmt, env):
                    return mutation.statement(self, stmt, rest, env, k)
                return statements.augmented_assignment(self, stmt, target, rest, env, k)
            case ast.AugAssign(target=ast.Attribute(value=owner, attr=field) as target):
                op = ast.unparse(ast.BinOp(ast.Name("x"), stmt.op, ast.Name("y")))[2:-2]
                changed = f"{ast.unparse(target)} {op} {ast.unparse(stmt.value)}"
                whole = ast.unparse(owner)
                raise self.error(
                    stmt,
                    f"{ast.unparse(target)} may be shared, and values are immutable: write "
                    f"{field} = {changed}, and build the new {whole} with it "
                    f"(dataclasses.replace({whole}, {field}={field}))",
                )
            case ast.AnnAssign() | ast.AugAssign():
                raise self.error(stmt, "only plain names can be assigned: values are immutable")
            case ast.If():
                desugared = statements.none_test(self, stmt, env)
                if isinstance(desugared, list):  # if x is None, where x is known (not) None
                    return self.block([*desugared, *rest], env, k, last)
                if desugared is not None:  # if x is None: narrowing, as a match
                    return statements.match_statement(self, desugared, rest, env, k)
                return statements.if_statement(self, stmt, rest, env, k)
            case ast.Match():
                return statements.match_statement(self, stmt, rest, env, k)
            case _:
                raise self.error(stmt, statements.unsupported(stmt))

    def _call_statement(
        self, call: ast.Call, rest: Sequence[ast.stmt], env: Env, k: Continuation, stmt: ast.stmt
    ) -> Term:
        """``check(x)`` of a DSL function as a statement: evaluated (it may raise), its result
        dropped, as ``_ = check(x)`` without the name."""
        typed = self.expr(call, env)
        if not may_trap(typed.term):
            return self.block(rest, env, k, stmt)
        inner, _ = env.push(typed.schema)
        return seq(Fanout(ID, typed.term), self.block(rest, inner, k, stmt))

    # --- expressions ------------------------------------------------------------------------

    def expr(
        self, node: ast.expr, env: Env, expected: Schema | None = None, what: str = "value"
    ) -> Typed:
        """Compile ``node``; with ``expected``, the result has exactly that schema (a value is
        injected into the union it is expected in)."""
        typed = self.synth(node, env, expected)
        if expected is None:
            return typed
        conversion = coercion(typed.schema, expected)
        if conversion is None:
            msg = f"{what} is {describe(typed.schema)}, expected {describe(expected)}"
            raise self.error(node, msg)
        return Typed(seq(typed.term, conversion), expected)

    def bool_test(self, node: ast.expr, env: Env) -> Term:
        """A condition: a bool, or the truth of a str, list or dict (``if xs:``, not empty),
        also under ``not``, ``and`` and ``or``."""
        try:
            return self.expr(node, env, BOOL_SCHEMA, "condition").term
        except SourceError:
            truth = self._truth(node, env)
            if truth is None:
                raise
            return truth

    def _truth(self, node: ast.expr, env: Env) -> Term | None:
        """The truth of ``node`` when it involves a str, list or dict, else None."""
        match node:
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                inner = self._truth(operand, env)
                return None if inner is None else seq(inner, Prim(Op.NOT))
            case ast.BoolOp(op=op, values=operands):
                terms = [self._truth(v, env) for v in operands]
                if all(t is None for t in terms):
                    return None
                parts = [
                    t if t is not None else self.expr(v, env, BOOL_SCHEMA, "condition").term
                    for t, v in zip(terms, operands, strict=True)
                ]
                result = parts[-1]
                for a in reversed(parts[:-1]):
                    if isinstance(op, ast.And):
                        result = if_then_else(a, result, FALSE)
                    else:
                        result = if_then_else(a, TRUE, result)
                return result
        typed = self.synth(node, env, None)
        if isinstance(typed.schema, BoolSchema):
            return typed.term
        return data.truth(typed)

    def synth(self, node: ast.expr, env: Env, hint: Schema | None) -> Typed:
        """Compile ``node`` at the schema it has; ``hint`` is the schema expected, if any."""
        typed = self.synth_view(node, env, hint)
        if typed.view is not None:
            shown = ast.unparse(node)
            msg = (
                f"{shown} is a view, not a list: loop over it, or give it to len, in, sorted, "
                f"sum, min, max, any or all; write list({shown}) for a list"
            )
            raise self.error(node, msg)
        return typed

    def synth_view(self, node: ast.expr, env: Env, hint: Schema | None) -> Typed:
        """:meth:`synth`, where a view (``d.keys()``, ``range(n)``) may be the result."""
        ref = expressions.place(self, node, env)
        if ref is not None:  # a variable, or a field or item of one  =>  fst^k ; snd ; path
            return Typed(env.read(ref), ref.schema)
        match node:
            case ast.Constant(value=value):  # n  =>  n ;  None  =>  !
                return expressions.constant(self, value, node)
            case ast.JoinedStr():  # f"{n} items"  =>  <n ; int_to_str, " items"> ; str_concat
                return data.fstring(self, node, env)
            case ast.List():  # [a, b]  =>  <<empty, a> ; list_append, b> ; list_append
                return data.list_literal(self, node, env, hint)
            case ast.Dict():  # {k: v}  =>  <empty, <k, v>> ; map_insert
                return data.dict_literal(self, node, env, hint)
            case ast.ListComp() | ast.DictComp():  # a fold
                return loops.comprehension(self, node, env, hint)
            case ast.Name():  # a module constant  =>  n
                return expressions.module_constant(self, node)
            case ast.Attribute():  # e.f  =>  e ; snd^i ; fst
                return expressions.attribute(self, node, env)
            case ast.Subscript():  # e[i]  =>  e ; snd^i ; fst
                return expressions.subscript(self, node, env)
            case ast.BinOp():  # a + b  =>  <a, b> ; add
                return expressions.arithmetic(self, node, env)
            case ast.UnaryOp():  # -a  =>  a ; neg
                return expressions.unary(self, node, env)
            case ast.BoolOp():  # a and b  =>  <id, a> ; distl ; [false | b]
                return expressions.boolean(self, node, env)
            case ast.Compare():  # a < b  =>  <a, b> ; lt
                return expressions.compare(self, node, env)
            case ast.IfExp():  # <id, c> ; distl ; [fst ; d | fst ; b]
                return expressions.conditional(self, node, env, hint)
            case ast.Tuple():  # (a, b, c)  =>  <a, <b, c>>
                return expressions.tuple_of(self, node, env, hint)
            case ast.Call():
                return self.call(node, env, hint)
            case _:
                raise self.error(node, expressions.unsupported(node))

    def call(self, node: ast.Call, env: Env, hint: Schema | None = None) -> Typed:
        """A call of a record class, ``dataclasses.replace``, a builtin, a method or a DSL
        function."""
        target = expressions.static(self.function, node.func)
        name = ast.unparse(node.func)
        if target is MISSING and isinstance(node.func, ast.Attribute):
            return data.method_call(self, node, env)
        if target is MISSING:
            raise self.error(node.func, f"cannot call {name}: it is not a function or a class")
        if target is dataclasses.replace:
            return calls.replace_fields(self, node, env)
        if isinstance(target, type) and dataclasses.is_dataclass(target):
            return calls.construct_record(self, target, node, env)
        if target in (min, max) and loops.folds_over(self, node, env):
            return loops.builtin_fold(self, name, node, env)
        if target in (abs, min, max):
            return calls.builtin_call(self, name, node, env)
        builtin = data.builtin_name(target)
        if builtin is not None:
            return data.builtin_call(self, builtin, node, env, hint)
        intrinsic = textlib.intrinsic(target)
        if intrinsic is not None:
            return data.intrinsic_call(self, intrinsic, node, env)
        if target is reversed and _sorted_call(node):
            msg = "reversed(sorted(...)) is written sorted(..., reverse=True) here"
            raise self.error(node, msg)
        if target in (enumerate, zip, reversed, itertools.pairwise):
            msg = f"{name}(...) can only be looped over: for ... in {name}(...)"
            raise self.error(node, msg)
        fn = dsl_function(target)
        if fn is None:
            msg = (
                f"calling {name} is not supported: call records, builtins (len, str, sorted, "
                "sum, min, max, any, all, abs, range, list, dict), methods or DSL functions"
            )
            if target is isinstance and len(node.args) == 2:
                x, cls = (ast.unparse(a) for a in node.args)
                msg += f"; to tell the alternatives of a union apart, match on them: match {x}:"
                msg += f" case {cls}(): ... case _: ..."
            raise self.error(node.func, msg)
        return calls.inline_call(self, fn, node, env)


def _sorted_call(node: ast.Call) -> bool:
    """Whether ``node`` is ``f(sorted(...))`` (the argument a call of ``sorted``)."""
    return (
        len(node.args) == 1
        and isinstance(arg := node.args[0], ast.Call)
        and isinstance(arg.func, ast.Name)
        and arg.func.id == "sorted"
    )


def _no_effect(value: ast.expr) -> str:
    """Why an expression statement other than a change in place or a DSL call is refused."""
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        name = value.func.id
        if name == "print":
            return (
                "print is not available in a machine: a step has no effects besides its "
                "result (return what it should report in its output)"
            )
        return (
            f"{name}(...) as a statement has no effect: only a call of a DSL function "
            "(which may raise) or a change in place can stand on its own"
        )
    return "this expression statement has no effect"
