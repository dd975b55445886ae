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
from hotswap.dsl.combinators import FALSE, TRUE, coercion, if_then_else, switch
from hotswap.dsl.env import (
    Env,
    Ref,
    build_product,
    component,
    component_path,
    narrowed_to,
    seq,
)
from hotswap.dsl.functions import DslFunction
from hotswap.errors import SourceError
from hotswap.lang.ints import in_range
from hotswap.lang.optimise import may_trap
from hotswap.lang.terms import ID, TERMINAL, Fanout, Lit, Op, Prim, Term
from hotswap.names.display import int_literal
from hotswap.names.schema import (
    BOOL_SCHEMA,
    INT_SCHEMA,
    NONE_SCHEMA,
    BoolSchema,
    DictSchema,
    IntSchema,
    ListSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    SchemaProblem,
    StrSchema,
    TupleSchema,
    UnionSchema,
    components,
    describe,
    union_of,
)

if TYPE_CHECKING:
    from hotswap.dsl.dispatch import FunctionCompiler

_ARITH = {ast.Add: Op.ADD, ast.Sub: Op.SUB, ast.Mult: Op.MUL, ast.FloorDiv: Op.FLOORDIV}
_ARITH[ast.Mod] = Op.MOD
_ORDER = {ast.Lt: Op.LT, ast.LtE: Op.LE, ast.Gt: Op.GT, ast.GtE: Op.GE}
_EQUALITY = {ast.Eq: Op.EQ, ast.NotEq: Op.NE}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%"}


@dataclass(frozen=True, slots=True)
class View:
    """What a :class:`Typed` list really is in Python, when it is not a list: the view
    ``d.keys()``, ``d.values()``, ``d.items()`` of the dict ``base``, or a ``range``. A view
    may only be looped over or consumed (``len``, ``in``, ``sorted``, ``list``, ``sum``...)."""

    kind: str
    base: Typed | None = None


@dataclass(frozen=True, slots=True)
class Typed:
    """A term from the context to a value of ``schema`` (``view``: see :class:`View`)."""

    term: Term
    schema: Schema
    view: View | None = None


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
            if ref is None or isinstance(ref.schema, ListSchema | StrSchema | DictSchema):
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
    if isinstance(value, bool | int | str) or value is None:
        return constant(c, value, node)
    if isinstance(value, type):
        raise c.error(node, f"{name} is a class: call it to build a value, {name}(...)")
    if callable(value):
        raise c.error(node, f"{name} is a function: functions are not values here")
    kind = type(value).__name__
    msg = f"{name} is a {kind}: only int, bool and str constants can be used"
    if isinstance(value, list | dict | tuple):
        if isinstance(value, tuple) and len({type(v) for v in value}) == 1:
            value = list(value)  # a list, which `in` and `for` take, as a tuple is not
        shown = _constant_schema(value)
        literal = repr(value)
        helper = name.rsplit(".", 1)[-1].lower()
        if shown is not None and len(literal) <= 60:
            msg += f": write a helper function, def {helper}() -> {shown}: return {literal}"
        else:
            msg += f": write a helper function that returns it, def {helper}() -> ...: return ..."
        msg += f", and call it, {helper}()"
    raise c.error(node, msg)


def _constant_schema(value: object) -> str | None:
    """The annotation of a module-level list, dict or tuple of ints, bools or strs, if simple."""
    kinds = {bool: "bool", int: "int", str: "str"}

    def one(items: list[object]) -> str | None:
        found = {type(v) for v in items}
        return kinds.get(found.pop()) if len(found) == 1 else None

    if isinstance(value, list) and value:
        item = one(value)
        return None if item is None else f"list[{item}]"
    if isinstance(value, dict) and value:
        k, v = one(list(value)), one(list(value.values()))
        return None if k is None or v is None else f"dict[{k}, {v}]"
    if isinstance(value, tuple) and len(value) >= 2:
        items = [kinds.get(type(v)) for v in value]
        return None if None in items else f"tuple[{', '.join(i for i in items if i)}]"
    return None


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
    if isinstance(value, str):
        from hotswap.dsl import data  # noqa: PLC0415 - data builds on this module

        return data.string(c, value, node)
    raise c.error(node, f"{type(value).__name__} literals are not supported in a machine")


def attribute(c: FunctionCompiler, node: ast.Attribute, env: Env) -> Typed:
    """``e.f  =>  e ; snd^i ; fst`` (or a module's constant)."""
    if static(c.function, node) is not MISSING:
        return module_constant(c, node)
    inner = c.synth(node.value, env, None)
    return _path_of(inner, _field(c, inner.schema, node.attr, node))


def subscript(c: FunctionCompiler, node: ast.Subscript, env: Env) -> Typed:
    """``e[i]  =>  e ; snd^i ; fst`` on tuples; lists, strs and dicts in :mod:`data`."""
    from hotswap.dsl import data  # noqa: PLC0415 - data builds on this module

    inner = c.synth(node.value, env, None)
    if isinstance(inner.schema, ListSchema | StrSchema | DictSchema):
        return data.index(c, node, inner, env)
    if isinstance(node.slice, ast.Slice):
        raise c.error(node, f"only lists and strs can be sliced, not {describe(inner.schema)}")
    return _path_of(inner, _item(c, inner.schema, node.slice, node))


def arithmetic(c: FunctionCompiler, node: ast.BinOp, env: Env) -> Typed:
    """``a + b  =>  <a, b> ; add`` (on strs and lists, concatenation; ``d | e`` on dicts)."""
    from hotswap.dsl import data  # noqa: PLC0415 - data builds on this module

    op = node.op
    if isinstance(op, ast.BitOr):
        merged = data.merge(c, node, env)
        if merged is not None:
            return merged
    prim = _ARITH.get(type(op))
    if prim is None:
        if isinstance(op, ast.Div):
            raise c.error(node, "/ is true division (a float): use // on ints")
        raise c.error(node, f"operator {_operator(op)} is not supported")
    symbol = _SYMBOL[type(op)]
    if isinstance(op, ast.Add):
        if data.needs_hint(node.left):
            left = c.synth(node.left, env, c.synth(node.right, env, None).schema)
        else:
            left = c.synth(node.left, env, None)
        if isinstance(left.schema, StrSchema | ListSchema):
            return data.concat(c, node, left, env)
        a = Typed(
            data.convert(c, node.left, left, INT_SCHEMA, f"left operand of {symbol}"), INT_SCHEMA
        )
    else:
        try:
            a = c.expr(node.left, env, INT_SCHEMA, f"left operand of {symbol}")
        except SourceError:
            if isinstance(op, ast.Mult):
                _no_repetition(c, node, env)
            raise
    b = c.expr(node.right, env, INT_SCHEMA, f"right operand of {symbol}")
    return Typed(seq(Fanout(a.term, b.term), Prim(prim)), INT_SCHEMA)


def _no_repetition(c: FunctionCompiler, node: ast.BinOp, env: Env) -> None:
    """Raise the error for ``text * n`` or ``items * n``, if that is what ``node`` is."""
    from hotswap.dsl import data  # noqa: PLC0415 - data builds on this module

    if data.needs_hint(node.left):
        return
    try:
        left = c.synth(node.left, env, None)
    except SourceError:
        return  # the operand's own error is the one to report
    if isinstance(left.schema, StrSchema | ListSchema):
        kind = "a str" if isinstance(left.schema, StrSchema) else "a list"
        raise c.error(
            node,
            f"{kind} cannot be repeated with * here: build it with a loop or a comprehension, "
            "or write the repeated value out",
        )


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
            from hotswap.dsl import data  # noqa: PLC0415 - data builds on this module

            typed = c.synth(operand, env, None)
            empty = data.truth(typed)
            if empty is not None:  # not xs: xs is empty
                return Typed(seq(empty, Prim(Op.NOT)), BOOL_SCHEMA)
            a = Typed(data.convert(c, operand, typed, BOOL_SCHEMA, "operand of not"), BOOL_SCHEMA)
            return Typed(seq(a.term, Prim(Op.NOT)), BOOL_SCHEMA)
        case _:
            raise c.error(node, "operator ~ is not supported")


def _optional_operand(node: ast.BoolOp, schema: Schema) -> str | None:
    """``d.get(k) or "none"`` on an optional: the message, with the forms that work."""
    if not (
        isinstance(schema, UnionSchema)
        and any(isinstance(a, NoneSchema) for a in schema.alternatives)
        and len(node.values) == 2
    ):
        return None
    word = "and" if isinstance(node.op, ast.And) else "or"
    shown, other = ast.unparse(node.values[0]), ast.unparse(node.values[1])
    msg = f"{shown} is {describe(schema)}, which is not a condition"
    if word == "and":
        return f"{msg}: test it, {shown} is not None and ..."
    name = shown if isinstance(node.values[0], ast.Name) else "x"
    form = f"{name} if {name} is not None else {other}"
    if name != shown:
        form = f"{name} = {shown}, then {form}"
    msg = f"{msg}: write {form}"
    others = [a for a in schema.alternatives if not isinstance(a, NoneSchema)]
    empty = {StrSchema: '""', ListSchema: "[]", DictSchema: "{}"}
    match node.values[0]:
        case ast.Call(func=ast.Attribute(value=owner, attr="get"), args=[key], keywords=[]) if (
            len(others) == 1 and type(others[0]) in empty
        ):
            # exactly Python's: a missing key and an empty value both give the default
            get = f"{ast.unparse(owner)}.get({ast.unparse(key)}, {empty[type(others[0])]})"
            msg += f" (or {get} or {other}, which also replaces an empty value, as or does)"
        case ast.Name() if any(type(a) in empty for a in others):
            msg += (
                f" (or ({name} or {other}) if {name} is not None else {other}, which also "
                "replaces an empty value, as or does)"
            )
    return msg


def boolean(c: FunctionCompiler, node: ast.BoolOp, env: Env) -> Typed:
    """``a and b  =>  <id, a> ; distl ; [fst ; false | fst ; b]``, or ``<a, b> ; and``."""
    word = "and" if isinstance(node.op, ast.And) else "or"
    from hotswap.dsl import data  # noqa: PLC0415 - data builds on this module

    first = c.synth(node.values[0], env, None)
    if data.truth(first) is not None:  # name or "anonymous": a str, list or dict chosen
        return data.choice(c, node, first, env)
    optional = _optional_operand(node, first.schema)
    if optional is not None:
        raise c.error(node.values[0], optional)
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
    narrowing = _none_test(node.test, env)
    if narrowing is not None:
        return _narrowed_conditional(c, node, env, hint, *narrowing)
    cond = c.bool_test(node.test, env)
    if hint is not None:
        yes = c.expr(node.body, env, hint)
        no = c.expr(node.orelse, env, hint)
    else:
        yes, no = c.expr(node.body, env), c.expr(node.orelse, env)
        if yes.schema != no.schema:
            joined = unify(yes.schema, no.schema)
            to_yes = None if joined is None else coercion(yes.schema, joined)
            to_no = None if joined is None else coercion(no.schema, joined)
            if joined is None or to_yes is None or to_no is None:
                msg = (
                    f"the branches of this conditional are {describe(yes.schema)} and "
                    f"{describe(no.schema)}: annotate the variable it is assigned to"
                )
                raise c.error(node, msg)
            yes, no = Typed(seq(yes.term, to_yes), joined), Typed(seq(no.term, to_no), joined)
    return Typed(if_then_else(cond, yes.term, no.term), yes.schema)


def _none_test(test: ast.expr, env: Env) -> tuple[Ref, bool] | None:
    """``x is None`` / ``x is not None`` on an optional variable: its reference, and whether
    the test is ``is None``."""
    match test:
        case ast.Compare(
            left=ast.Name(id=name), ops=[ast.Is() | ast.IsNot() as op], comparators=[other]
        ) if isinstance(other, ast.Constant) and other.value is None:
            ref = env.vars.get(name)
            if ref is None:
                return None
            return ref, isinstance(op, ast.Is)
    return None


def _narrowed_conditional(
    c: FunctionCompiler,
    node: ast.IfExp,
    env: Env,
    hint: Schema | None,
    ref: Ref,
    is_none: bool,
) -> Typed:
    """``a if x is None else b``: a case on ``x``, narrowed in each branch (as mypy reads it);
    only the live branch when ``x`` is known to be None, or not."""
    from hotswap.dsl import data  # noqa: PLC0415 - data builds on this module

    union = ref.schema
    known = data.static_none(union)
    if known is not None:
        return c.synth(node.body if known == is_none else node.orelse, env, hint)
    assert isinstance(union, UnionSchema)
    arms: list[tuple[Env, Ref, Typed]] = []

    def arm(index: int, inner: Env, payload: Ref) -> Term:
        payload = narrowed_to(payload, union, index)
        inner = inner.rebind_place(ref, payload)
        none = isinstance(union.alternatives[index], NoneSchema)
        branch = node.body if none == is_none else node.orelse
        typed = c.synth(branch, inner, hint)
        arms.append((inner, payload, typed))
        return ID  # replaced below, once the arms' common schema is known

    switch(env, ref, list(union.alternatives), arm)
    schema = arms[0][2].schema if hint is None else hint
    for _, _, typed in arms:
        joined = unify(schema, typed.schema)
        if joined is None:
            msg = (
                f"the branches of this conditional are {describe(schema)} and "
                f"{describe(typed.schema)}: annotate the variable it is assigned to"
            )
            raise c.error(node, msg)
        schema = joined
    converted = iter([seq(t.term, coercion(t.schema, schema) or ID) for _, _, t in arms])
    for _, _, typed in arms:
        if coercion(typed.schema, schema) is None:
            raise c.error(node, f"value is {describe(typed.schema)}, expected {describe(schema)}")
    term = switch(env, ref, list(union.alternatives), lambda i, e, p: next(converted))
    return Typed(term, schema)


def unify(a: Schema, b: Schema) -> Schema | None:
    """The narrowest schema both ``a`` and ``b`` fit in: one of them, or their union (``X |
    None`` for ``x if c else None``); None when there is none."""
    if coercion(b, a) is not None:
        return a
    if coercion(a, b) is not None:
        return b
    alts = list(a.alternatives) if isinstance(a, UnionSchema) else [a]
    alts += [x for x in (b.alternatives if isinstance(b, UnionSchema) else (b,)) if x not in alts]
    try:
        return union_of(alts)
    except SchemaProblem:
        return None


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
    from hotswap.dsl import data  # noqa: PLC0415 - data builds on this module

    if type(op) in _ORDER:
        typed = c.synth(left, env, None)
        if isinstance(typed.schema, StrSchema):
            return data.str_order(c, op, typed, right, env)
        what = "left operand of a comparison"
        a = Typed(data.convert(c, left, typed, INT_SCHEMA, what), INT_SCHEMA)
        b = c.expr(right, env, INT_SCHEMA, "right operand of a comparison")
        return seq(Fanout(a.term, b.term), Prim(_ORDER[type(op)]))
    if type(op) in _EQUALITY:
        a, b = data.operands(c, left, right, env)
        if isinstance(a.schema, BoolSchema) and isinstance(b.schema, BoolSchema):
            negated = seq(b.term, Prim(Op.NOT))
            if isinstance(op, ast.Eq):
                return if_then_else(a.term, b.term, negated)
            return if_then_else(a.term, negated, b.term)
        if isinstance(a.schema, IntSchema) and isinstance(b.schema, IntSchema):
            return seq(Fanout(a.term, b.term), Prim(_EQUALITY[type(op)]))
        return data.equality(c, left, op, a, b)
    if isinstance(op, ast.Is | ast.IsNot):
        if not (isinstance(right, ast.Constant) and right.value is None):
            raise c.error(left, "`is` is supported with None only (x is None): use == instead")
        typed = c.synth(left, env, None)
        test = data.is_none(typed)
        return seq(test, Prim(Op.NOT)) if isinstance(op, ast.IsNot) else test
    return data.membership(c, left, op, right, env)


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
