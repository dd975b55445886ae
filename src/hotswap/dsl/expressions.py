"""Expressions: typed Python expressions to terms from the context to the expression's value.

Typing is bidirectional: an expected schema (from an annotation, a parameter, a record field)
flows down into tuples, conditionals and constructors, and :meth:`coerce` injects a value into
the union it is expected in. The rules, one per construct::

    x                   the variable's reference: fst^k ; snd ; path
    e.f / e[i]          e ; projections to the field or item
    n, True, None       literal n / inl or inr of ! / !
    a + b               <a, b> ; add           (likewise - * // %; comparisons give Bool)
    -a, not a           a ; neg / a ; not
    a and b             <id, a> ; distl ; [fst ; false | fst ; b]   (<a, b> ; and when b cannot
                        trap: short-circuiting only matters for traps, terms are pure)
    b if c else d       <id, c> ; distl ; [fst ; d | fst ; b]
    (a, b, c)           <a, <b, c>>
    R(x=a, y=b)         <a, b>, then the injection the expected union needs
    f(a, b)             <a, b> ; body of f      (inlined; recursion is rejected)
"""

from __future__ import annotations

import ast
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import ModuleType

from hotswap.dsl.annotations import MISSING
from hotswap.dsl.combinators import FALSE, TRUE, coercion, if_then_else
from hotswap.dsl.env import Env, Ref, build_product, component, component_path, seq
from hotswap.dsl.functions import DslFunction, Session
from hotswap.errors import SourceError
from hotswap.lang.ints import in_range
from hotswap.lang.optimise import may_trap
from hotswap.lang.terms import TERMINAL, Fanout, Lit, Op, Prim, Term
from hotswap.names.display import int_literal
from hotswap.names.schema import (
    BOOL_SCHEMA,
    INT_SCHEMA,
    NONE_SCHEMA,
    BoolSchema,
    IntSchema,
    RecordSchema,
    Schema,
    TupleSchema,
    UnionSchema,
    components,
    describe,
)

_ARITH = {ast.Add: Op.ADD, ast.Sub: Op.SUB, ast.Mult: Op.MUL, ast.FloorDiv: Op.FLOORDIV}
_ARITH[ast.Mod] = Op.MOD
_ORDER = {ast.Lt: Op.LT, ast.LtE: Op.LE, ast.Gt: Op.GT, ast.GtE: Op.GE}
_EQUALITY = {ast.Eq: Op.EQ, ast.NotEq: Op.NE}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%"}


@dataclass(frozen=True, slots=True)
class Typed:
    """A term from the context to a value of ``schema``."""

    term: Term
    schema: Schema


class ExpressionCompiler(ABC):
    """Compiles the expressions of one function; statements build on it."""

    def __init__(self, session: Session, function: DslFunction) -> None:
        self.session = session
        self.function = function

    def error(self, node: ast.AST | None, message: str) -> SourceError:
        return self.function.error(node, message)

    @abstractmethod
    def call(self, node: ast.Call, env: Env) -> Typed:
        """Compile a call (of a record class, a builtin or another DSL function)."""

    # --- entry points -----------------------------------------------------------------------

    def expr(
        self, node: ast.expr, env: Env, expected: Schema | None = None, what: str = "value"
    ) -> Typed:
        """Compile ``node``; with ``expected``, the result has exactly that schema."""
        typed = self._synth(node, env, expected)
        if expected is None:
            return typed
        return Typed(self.coerce(typed, expected, node, what), expected)

    def coerce(self, typed: Typed, expected: Schema, node: ast.AST, what: str) -> Term:
        conversion = coercion(typed.schema, expected)
        if conversion is None:
            msg = f"{what} is {describe(typed.schema)}, expected {describe(expected)}"
            raise self.error(node, msg)
        return seq(typed.term, conversion)

    def place(self, node: ast.expr, env: Env) -> Ref | None:
        """The reference ``node`` denotes when it is a variable, a field or item of one."""
        match node:
            case ast.Name(id=name):
                if name in env.vars:
                    return env.vars[name]
                if name in self.function.local_names:
                    reason = env.unbound.get(name, f"{name} is used before it is assigned")
                    raise self.error(node, reason)
                return None
            case ast.Attribute(value=base, attr=attr):
                ref = self.place(base, env)
                if ref is None:
                    return None
                return component(ref, self._field(ref.schema, attr, node))
            case ast.Subscript(value=base, slice=index):
                ref = self.place(base, env)
                if ref is None:
                    return None
                return component(ref, self._item(ref.schema, index, node))
            case _:
                return None

    def bool_test(self, node: ast.expr, env: Env) -> Term:
        return self.expr(node, env, BOOL_SCHEMA, "condition").term

    # --- the rules --------------------------------------------------------------------------

    def _synth(self, node: ast.expr, env: Env, hint: Schema | None) -> Typed:
        ref = self.place(node, env)
        if ref is not None:
            return Typed(env.read(ref), ref.schema)
        match node:
            case ast.Constant(value=value):  # n  =>  n ;  None  =>  !
                return self._constant(value, node)
            case ast.Name():  # a module constant  =>  n
                return self._global(node)
            case ast.Attribute(value=base, attr=attr):  # e.f  =>  e ; snd^i ; fst
                if self.static(node) is not MISSING:
                    return self._global(node)
                inner = self._synth(base, env, None)
                path = self._path(inner.schema, self._field(inner.schema, attr, node))
                return path_of(inner, path)
            case ast.Subscript(value=base, slice=index):  # e[i]  =>  e ; snd^i ; fst
                inner = self._synth(base, env, None)
                return path_of(
                    inner, self._path(inner.schema, self._item(inner.schema, index, node))
                )
            case ast.BinOp(left, op, right):  # a + b  =>  <a, b> ; add
                return self._arithmetic(left, op, right, node, env)
            case ast.UnaryOp(op, operand):  # -a  =>  a ; neg
                return self._unary(op, operand, node, env)
            case ast.BoolOp(op, values):  # a and b  =>  <id, a> ; distl ; [false | b]
                return self._boolean(op, values, env)
            case ast.Compare(left, ops, comparators):  # a < b  =>  <a, b> ; lt
                return self._compare(left, ops, comparators, env)
            case ast.IfExp(test, body, orelse):  # <id, c> ; distl ; [fst ; d | fst ; b]
                return self._conditional(test, body, orelse, node, env, hint)
            case ast.Tuple(elts):  # (a, b, c)  =>  <a, <b, c>>
                return self._tuple(elts, node, env, hint)
            case ast.Call():  # see hotswap.dsl.calls
                return self.call(node, env)
            case _:
                raise self.error(node, f"{_construct(node)} is not supported in a machine")

    def _constant(self, value: object, node: ast.expr) -> Typed:
        if isinstance(value, bool):
            return Typed(TRUE if value else FALSE, BOOL_SCHEMA)
        if isinstance(value, int):
            if not in_range(value):
                raise self.error(node, f"integer {value} is outside the signed 64-bit range")
            return Typed(Lit(int(value)), INT_SCHEMA)  # exact int: an IntEnum becomes its value
        if value is None:
            return Typed(TERMINAL, NONE_SCHEMA)
        raise self.error(node, f"{type(value).__name__} literals are not supported in a machine")

    def static(self, node: ast.expr) -> object:
        """The value of a non-local name or a module attribute, or ``MISSING``."""
        match node:
            case ast.Name(id=name) if name not in self.function.local_names:
                return self.function.lookup(name)
            case ast.Attribute(value=base, attr=attr):
                owner = self.static(base)
                if isinstance(owner, ModuleType):
                    return getattr(owner, attr, MISSING)
        return MISSING

    def _global(self, node: ast.expr) -> Typed:
        value = self.static(node)
        name = ast.unparse(node)
        if value is MISSING:
            raise self.error(node, f"name {name} is not defined")
        if isinstance(value, bool | int) or value is None:
            return self._constant(value, node)
        if isinstance(value, type):
            raise self.error(node, f"{name} is a class: call it to build a value, {name}(...)")
        if callable(value):
            raise self.error(node, f"{name} is a function: functions are not values here")
        kind = type(value).__name__
        raise self.error(node, f"{name} is a {kind}: only int and bool constants can be used")

    def _field(self, schema: Schema, attr: str, node: ast.AST) -> int:
        if isinstance(schema, RecordSchema):
            names = schema.field_names()
            if attr not in names:
                raise self.error(node, f"{schema.name} has no field {attr}")
            return names.index(attr)
        if isinstance(schema, UnionSchema):
            msg = f"{describe(schema)} has no field {attr}: use match to tell the cases apart"
            raise self.error(node, msg)
        raise self.error(node, f"{describe(schema)} has no field {attr}")

    def _item(self, schema: Schema, index: ast.expr, node: ast.AST) -> int:
        if not isinstance(schema, TupleSchema):
            raise self.error(node, f"only tuples can be indexed, not {describe(schema)}")
        value = int_literal(index)
        if value is None:
            raise self.error(index, "a tuple index must be an integer literal")
        n = len(schema.items)
        if not -n <= value < n:
            raise self.error(index, f"index {value} is out of range for {describe(schema)}")
        return value % n

    def _path(self, schema: Schema, index: int) -> tuple[Term, Schema]:
        assert isinstance(schema, TupleSchema | RecordSchema)
        items = components(schema)
        return seq(*component_path(index, len(items))), items[index]

    def _arithmetic(
        self, left: ast.expr, op: ast.operator, right: ast.expr, node: ast.expr, env: Env
    ) -> Typed:
        prim = _ARITH.get(type(op))
        if prim is None:
            if isinstance(op, ast.Div):
                raise self.error(node, "/ is true division (a float): use // on ints")
            raise self.error(node, f"operator {_operator(op)} is not supported")
        symbol = _SYMBOL[type(op)]
        a = self.expr(left, env, INT_SCHEMA, f"left operand of {symbol}")
        b = self.expr(right, env, INT_SCHEMA, f"right operand of {symbol}")
        return Typed(seq(Fanout(a.term, b.term), Prim(prim)), INT_SCHEMA)

    def _unary(self, op: ast.unaryop, operand: ast.expr, node: ast.expr, env: Env) -> Typed:
        match op:
            case ast.USub():
                literal = int_literal(node)
                if literal is not None:
                    return self._constant(literal, node)
                a = self.expr(operand, env, INT_SCHEMA, "operand of unary -")
                return Typed(seq(a.term, Prim(Op.NEG)), INT_SCHEMA)
            case ast.UAdd():
                return self.expr(operand, env, INT_SCHEMA, "operand of unary +")
            case ast.Not():
                a = self.expr(operand, env, BOOL_SCHEMA, "operand of not")
                return Typed(seq(a.term, Prim(Op.NOT)), BOOL_SCHEMA)
            case _:
                raise self.error(node, "operator ~ is not supported")

    def _boolean(self, op: ast.boolop, values: list[ast.expr], env: Env) -> Typed:
        word = "and" if isinstance(op, ast.And) else "or"
        terms = [self.expr(v, env, BOOL_SCHEMA, f"operand of {word}").term for v in values]
        result = terms[-1]
        for a in reversed(terms[:-1]):
            if not may_trap(result):
                result = seq(Fanout(a, result), Prim(Op.AND if word == "and" else Op.OR))
            elif word == "and":
                result = if_then_else(a, result, FALSE)
            else:
                result = if_then_else(a, TRUE, result)
        return Typed(result, BOOL_SCHEMA)

    def _compare(
        self, left: ast.expr, ops: list[ast.cmpop], comparators: list[ast.expr], env: Env
    ) -> Typed:
        lefts = [left, *comparators[:-1]]
        tests = [
            self._comparison(a, op, b, env)
            for a, op, b in zip(lefts, ops, comparators, strict=True)
        ]
        result = tests[-1]
        for t in reversed(tests[:-1]):
            result = (
                if_then_else(t, result, FALSE)
                if may_trap(result)
                else seq(Fanout(t, result), Prim(Op.AND))
            )
        return Typed(result, BOOL_SCHEMA)

    def _comparison(self, left: ast.expr, op: ast.cmpop, right: ast.expr, env: Env) -> Term:
        if type(op) in _ORDER:
            a = self.expr(left, env, INT_SCHEMA, "left operand of a comparison")
            b = self.expr(right, env, INT_SCHEMA, "right operand of a comparison")
            return seq(Fanout(a.term, b.term), Prim(_ORDER[type(op)]))
        if type(op) in _EQUALITY:
            a = self.expr(left, env)
            if isinstance(a.schema, BoolSchema):
                b = self.expr(right, env, BOOL_SCHEMA, "right operand of ==")
                negated = seq(b.term, Prim(Op.NOT))
                if isinstance(op, ast.Eq):
                    return if_then_else(a.term, b.term, negated)
                return if_then_else(a.term, negated, b.term)
            if isinstance(a.schema, IntSchema):
                b = self.expr(right, env, INT_SCHEMA, "right operand of ==")
                return seq(Fanout(a.term, b.term), Prim(_EQUALITY[type(op)]))
            msg = f"== compares int or bool values, not {describe(a.schema)}: use match"
            raise self.error(left, msg)
        if isinstance(op, ast.Is | ast.IsNot):
            raise self.error(left, "`is` is not supported: use match (case None: ...) instead")
        raise self.error(left, "`in` is not supported in a machine")

    def _conditional(
        self,
        test: ast.expr,
        body: ast.expr,
        orelse: ast.expr,
        node: ast.expr,
        env: Env,
        hint: Schema | None,
    ) -> Typed:
        cond = self.bool_test(test, env)
        if hint is not None:
            yes = self.expr(body, env, hint)
            no = self.expr(orelse, env, hint)
        else:
            yes, no = self.expr(body, env), self.expr(orelse, env)
            if yes.schema != no.schema:
                msg = (
                    f"the branches of this conditional are {describe(yes.schema)} and "
                    f"{describe(no.schema)}: annotate the variable it is assigned to"
                )
                raise self.error(node, msg)
        return Typed(if_then_else(cond, yes.term, no.term), yes.schema)

    def _tuple(self, elts: list[ast.expr], node: ast.expr, env: Env, hint: Schema | None) -> Typed:
        if len(elts) < 2 or any(isinstance(e, ast.Starred) for e in elts):
            raise self.error(node, "tuples must have two or more items (and no *unpacking)")
        hints: list[Schema | None] = [None] * len(elts)
        for candidate in hint.alternatives if isinstance(hint, UnionSchema) else (hint,):
            if isinstance(candidate, TupleSchema) and len(candidate.items) == len(elts):
                hints = list(candidate.items)
        items = [self.expr(e, env, h) for e, h in zip(elts, hints, strict=True)]
        schema = TupleSchema(tuple(i.schema for i in items))
        return Typed(build_product([i.term for i in items]), schema)


def path_of(typed: Typed, path: tuple[Term, Schema]) -> Typed:
    return Typed(seq(typed.term, path[0]), path[1])


def _operator(op: ast.operator) -> str:
    symbols = {ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|"}
    symbols |= {ast.BitAnd: "&", ast.BitXor: "^", ast.MatMult: "@"}
    return symbols.get(type(op), type(op).__name__)


def _construct(node: ast.AST) -> str:
    names = {
        "Lambda": "lambda",
        "ListComp": "a list comprehension",
        "SetComp": "a set comprehension",
        "DictComp": "a dict comprehension",
        "GeneratorExp": "a generator expression",
        "JoinedStr": "an f-string",
        "List": "a list",
        "Dict": "a dict",
        "Set": "a set",
        "NamedExpr": "the walrus operator :=",
        "Await": "await",
        "Yield": "yield",
        "YieldFrom": "yield from",
        "Starred": "*unpacking",
        "Slice": "slicing",
    }
    return names.get(type(node).__name__, type(node).__name__)
