"""Expressions: typed Python expressions to terms from the context to the expression's value.

Typing is bidirectional: an expected schema (from an annotation, a parameter, a record field)
flows down into tuples, conditionals and constructors, and a value is injected into the union
it is expected in (:meth:`FunctionCompiler.expr`). The rules, one per construct (the dispatch
is :meth:`FunctionCompiler.synth`, calls are in :mod:`hotswap.dsl.calls`)::

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

Each function takes the compiler ``c`` of the function being compiled, and compiles the parts
of its construct through it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from hotswap.dsl.annotations import MISSING
from hotswap.dsl.combinators import FALSE, TRUE, if_then_else
from hotswap.dsl.env import Env, Ref, build_product, component, component_path, seq
from hotswap.dsl.functions import DslFunction
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

if TYPE_CHECKING:
    from hotswap.dsl.dispatch import FunctionCompiler

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


# --- names and places -----------------------------------------------------------------------


def place(c: FunctionCompiler, node: ast.expr, env: Env) -> Ref | None:
    """The reference ``node`` denotes when it is a variable, a field or item of one."""
    match node:
        case ast.Name(id=name):
            if name in env.vars:
                return env.vars[name]
            if name in c.function.local_names:
                reason = env.unbound.get(name, f"{name} is used before it is assigned")
                raise c.error(node, reason)
            return None
        case ast.Attribute(value=base, attr=attr):
            ref = place(c, base, env)
            if ref is None:
                return None
            return component(ref, _field(c, ref.schema, attr, node))
        case ast.Subscript(value=base, slice=index):
            ref = place(c, base, env)
            if ref is None:
                return None
            return component(ref, _item(c, ref.schema, index, node))
        case _:
            return None


def static(function: DslFunction, node: ast.expr) -> object:
    """The value of a non-local name or a module attribute, or ``MISSING``."""
    match node:
        case ast.Name(id=name) if name not in function.local_names:
            return function.lookup(name)
        case ast.Attribute(value=base, attr=attr):
            owner = static(function, base)
            if isinstance(owner, ModuleType):
                return getattr(owner, attr, MISSING)
    return MISSING


def module_constant(c: FunctionCompiler, node: ast.expr) -> Typed:
    """A non-local name or module attribute, which must be an int or bool constant."""
    value = static(c.function, node)
    name = ast.unparse(node)
    if value is MISSING:
        raise c.error(node, f"name {name} is not defined")
    if isinstance(value, bool | int) or value is None:
        return constant(c, value, node)
    if isinstance(value, type):
        raise c.error(node, f"{name} is a class: call it to build a value, {name}(...)")
    if callable(value):
        raise c.error(node, f"{name} is a function: functions are not values here")
    kind = type(value).__name__
    raise c.error(node, f"{name} is a {kind}: only int and bool constants can be used")


# --- the rules ------------------------------------------------------------------------------


def constant(c: FunctionCompiler, value: object, node: ast.expr) -> Typed:
    """``n  =>  n``, ``True  =>  ! ; inr[Unit]``, ``None  =>  !``."""
    if isinstance(value, bool):
        return Typed(TRUE if value else FALSE, BOOL_SCHEMA)
    if isinstance(value, int):
        if not in_range(value):
            raise c.error(node, f"integer {value} is outside the signed 64-bit range")
        return Typed(Lit(int(value)), INT_SCHEMA)  # exact int: an IntEnum becomes its value
    if value is None:
        return Typed(TERMINAL, NONE_SCHEMA)
    raise c.error(node, f"{type(value).__name__} literals are not supported in a machine")


def attribute(c: FunctionCompiler, node: ast.Attribute, env: Env) -> Typed:
    """``e.f  =>  e ; snd^i ; fst`` (or a module's constant)."""
    if static(c.function, node) is not MISSING:
        return module_constant(c, node)
    inner = c.synth(node.value, env, None)
    return _path_of(inner, _field(c, inner.schema, node.attr, node))


def subscript(c: FunctionCompiler, node: ast.Subscript, env: Env) -> Typed:
    """``e[i]  =>  e ; snd^i ; fst``."""
    inner = c.synth(node.value, env, None)
    return _path_of(inner, _item(c, inner.schema, node.slice, node))


def arithmetic(c: FunctionCompiler, node: ast.BinOp, env: Env) -> Typed:
    """``a + b  =>  <a, b> ; add``."""
    op = node.op
    prim = _ARITH.get(type(op))
    if prim is None:
        if isinstance(op, ast.Div):
            raise c.error(node, "/ is true division (a float): use // on ints")
        raise c.error(node, f"operator {_operator(op)} is not supported")
    symbol = _SYMBOL[type(op)]
    a = c.expr(node.left, env, INT_SCHEMA, f"left operand of {symbol}")
    b = c.expr(node.right, env, INT_SCHEMA, f"right operand of {symbol}")
    return Typed(seq(Fanout(a.term, b.term), Prim(prim)), INT_SCHEMA)


def unary(c: FunctionCompiler, node: ast.UnaryOp, env: Env) -> Typed:
    """``-a  =>  a ; neg``, ``not a  =>  a ; not``."""
    operand = node.operand
    match node.op:
        case ast.USub():
            literal = int_literal(node)
            if literal is not None:
                return constant(c, literal, node)
            a = c.expr(operand, env, INT_SCHEMA, "operand of unary -")
            return Typed(seq(a.term, Prim(Op.NEG)), INT_SCHEMA)
        case ast.UAdd():
            return c.expr(operand, env, INT_SCHEMA, "operand of unary +")
        case ast.Not():
            a = c.expr(operand, env, BOOL_SCHEMA, "operand of not")
            return Typed(seq(a.term, Prim(Op.NOT)), BOOL_SCHEMA)
        case _:
            raise c.error(node, "operator ~ is not supported")


def boolean(c: FunctionCompiler, node: ast.BoolOp, env: Env) -> Typed:
    """``a and b  =>  <id, a> ; distl ; [fst ; false | fst ; b]``, or ``<a, b> ; and``."""
    word = "and" if isinstance(node.op, ast.And) else "or"
    terms = [c.expr(v, env, BOOL_SCHEMA, f"operand of {word}").term for v in node.values]
    result = terms[-1]
    for a in reversed(terms[:-1]):
        if not may_trap(result):
            result = seq(Fanout(a, result), Prim(Op.AND if word == "and" else Op.OR))
        elif word == "and":
            result = if_then_else(a, result, FALSE)
        else:
            result = if_then_else(a, TRUE, result)
    return Typed(result, BOOL_SCHEMA)


def compare(c: FunctionCompiler, node: ast.Compare, env: Env) -> Typed:
    """``a < b  =>  <a, b> ; lt``; a chain is the conjunction of its comparisons."""
    comparators = node.comparators
    lefts = [node.left, *comparators[:-1]]
    tests = [
        _comparison(c, a, op, b, env) for a, op, b in zip(lefts, node.ops, comparators, strict=True)
    ]
    result = tests[-1]
    for t in reversed(tests[:-1]):
        result = (
            if_then_else(t, result, FALSE)
            if may_trap(result)
            else seq(Fanout(t, result), Prim(Op.AND))
        )
    return Typed(result, BOOL_SCHEMA)


def conditional(c: FunctionCompiler, node: ast.IfExp, env: Env, hint: Schema | None) -> Typed:
    """``b if c else d  =>  <id, c> ; distl ; [fst ; d | fst ; b]``."""
    cond = c.bool_test(node.test, env)
    if hint is not None:
        yes = c.expr(node.body, env, hint)
        no = c.expr(node.orelse, env, hint)
    else:
        yes, no = c.expr(node.body, env), c.expr(node.orelse, env)
        if yes.schema != no.schema:
            msg = (
                f"the branches of this conditional are {describe(yes.schema)} and "
                f"{describe(no.schema)}: annotate the variable it is assigned to"
            )
            raise c.error(node, msg)
    return Typed(if_then_else(cond, yes.term, no.term), yes.schema)


def tuple_of(c: FunctionCompiler, node: ast.Tuple, env: Env, hint: Schema | None) -> Typed:
    """``(a, b, c)  =>  <a, <b, c>>``; a tuple expected in a union takes its items' schemas."""
    elts = node.elts
    if len(elts) < 2 or any(isinstance(e, ast.Starred) for e in elts):
        raise c.error(node, "tuples must have two or more items (and no *unpacking)")
    hints: list[Schema | None] = [None] * len(elts)
    for candidate in hint.alternatives if isinstance(hint, UnionSchema) else (hint,):
        if isinstance(candidate, TupleSchema) and len(candidate.items) == len(elts):
            hints = list(candidate.items)
    items = [c.expr(e, env, h) for e, h in zip(elts, hints, strict=True)]
    schema = TupleSchema(tuple(i.schema for i in items))
    return Typed(build_product([i.term for i in items]), schema)


def unsupported(node: ast.expr) -> str:
    """The error for an expression outside the subset."""
    return f"{_construct(node)} is not supported in a machine"


# --- helpers --------------------------------------------------------------------------------


def _field(c: FunctionCompiler, schema: Schema, attr: str, node: ast.AST) -> int:
    if isinstance(schema, RecordSchema):
        names = schema.field_names()
        if attr not in names:
            raise c.error(node, f"{schema.name} has no field {attr}")
        return names.index(attr)
    if isinstance(schema, UnionSchema):
        msg = f"{describe(schema)} has no field {attr}: use match to tell the cases apart"
        raise c.error(node, msg)
    raise c.error(node, f"{describe(schema)} has no field {attr}")


def _item(c: FunctionCompiler, schema: Schema, index: ast.expr, node: ast.AST) -> int:
    if not isinstance(schema, TupleSchema):
        raise c.error(node, f"only tuples can be indexed, not {describe(schema)}")
    value = int_literal(index)
    if value is None:
        raise c.error(index, "a tuple index must be an integer literal")
    n = len(schema.items)
    if not -n <= value < n:
        raise c.error(index, f"index {value} is out of range for {describe(schema)}")
    return value % n


def _path_of(typed: Typed, index: int) -> Typed:
    """Component ``index`` of the tuple or record ``typed`` computes."""
    schema = typed.schema
    assert isinstance(schema, TupleSchema | RecordSchema)
    items = components(schema)
    return Typed(seq(typed.term, seq(*component_path(index, len(items)))), items[index])


def _comparison(
    c: FunctionCompiler, left: ast.expr, op: ast.cmpop, right: ast.expr, env: Env
) -> Term:
    if type(op) in _ORDER:
        a = c.expr(left, env, INT_SCHEMA, "left operand of a comparison")
        b = c.expr(right, env, INT_SCHEMA, "right operand of a comparison")
        return seq(Fanout(a.term, b.term), Prim(_ORDER[type(op)]))
    if type(op) in _EQUALITY:
        a = c.expr(left, env)
        if isinstance(a.schema, BoolSchema):
            b = c.expr(right, env, BOOL_SCHEMA, "right operand of ==")
            negated = seq(b.term, Prim(Op.NOT))
            if isinstance(op, ast.Eq):
                return if_then_else(a.term, b.term, negated)
            return if_then_else(a.term, negated, b.term)
        if isinstance(a.schema, IntSchema):
            b = c.expr(right, env, INT_SCHEMA, "right operand of ==")
            return seq(Fanout(a.term, b.term), Prim(_EQUALITY[type(op)]))
        msg = f"== compares int or bool values, not {describe(a.schema)}: use match"
        raise c.error(left, msg)
    if isinstance(op, ast.Is | ast.IsNot):
        raise c.error(left, "`is` is not supported: use match (case None: ...) instead")
    raise c.error(left, "`in` is not supported in a machine")


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
