"""Text, lists and dicts in expressions: literals, operators, indexing, methods and builtins.

Each construct is one or two primitives of the core (:class:`hotswap.lang.terms.Op`); what
needs a loop (``sum``, ``min``, ``any``, ``"".join``, comprehensions) is a fold, built in
:mod:`hotswap.dsl.loops`. Python evaluates operands left to right and so do the terms: a pair
``<a, b>`` runs ``a`` first, and where a primitive wants its operands in another order than
Python evaluates them (``x in xs``) they are swapped after both ran, when both could trap::

    "text"              "text"                         (StrLit)
    f"{n} items"        <n ; int_to_str, " items"> ; str_concat
    [a, b]              <<empty, a> ; list_append, b> ; list_append
    {k: v, **d}         <<empty, <k, v>> ; map_insert, d> ; map_merge
    a + b               <a, b> ; str_concat / list_concat        (str, list)
    d | {k: v}          <d, <k, v>> ; map_insert     (d | e: map_merge)
    a == b              <a, b> ; equal             (ints keep eq, bools their own test)
    a < b               <a, b> ; str_lt            (strs; ints keep lt)
    x in xs             <xs, x> ; list_contains / map_contains / str_contains
    xs[i], d[k]         <xs, i> ; list_index / <d, k> ; map_index   (traps index_error,
                                                                      missing_key)
    xs[a:b]             <xs, <a, b>> ; list_slice  (an omitted bound is 0 or 2**63 - 1)
    d.get(k)            <d, k> ; map_get ; [inject None | inject V]   (into V | None)
    d.keys()            d ; map_keys               (a view: loop over it, len, in, sorted)
    len(x)              str_len / list_len / map_len
    str(n)              n ; int_to_str
    sorted(xs)          xs ; list_sort

A view (``d.keys()``, ``d.values()``, ``d.items()``, ``range(...)``) is not a list in Python
(``d.keys() == [...]`` is False), so it may only be looped over or given to ``len``, ``in``,
``sorted``, ``list`` and the other builtins that consume an iterable.
"""

from __future__ import annotations

import ast
import builtins
from typing import TYPE_CHECKING

from hotswap.dsl.annotations import MISSING, STR_SCHEMA, dict_schema
from hotswap.dsl.combinators import FALSE, TRUE, coercion, if_then_else
from hotswap.dsl.env import Env, seq
from hotswap.dsl.expressions import Typed, View, static
from hotswap.errors import SourceError
from hotswap.lang.check import MAX_STR_LEN
from hotswap.lang.ints import INT_MAX
from hotswap.lang.optimise import may_trap
from hotswap.lang.terms import (
    DISTL,
    FST,
    ID,
    SND,
    Case,
    Empty,
    Fanout,
    Lit,
    Op,
    Prim,
    StrLit,
    Term,
)
from hotswap.names.schema import (
    BOOL_SCHEMA,
    INT_SCHEMA,
    NONE_SCHEMA,
    BoolSchema,
    DictSchema,
    IntSchema,
    ListSchema,
    NoneSchema,
    Schema,
    SchemaProblem,
    StrSchema,
    TupleSchema,
    UnionSchema,
    core_type,
    describe,
    union_of,
)

if TYPE_CHECKING:
    from hotswap.dsl.dispatch import FunctionCompiler

_STR_ORDER = {ast.Lt: Op.STR_LT, ast.LtE: Op.STR_LE, ast.Gt: Op.STR_GT, ast.GtE: Op.STR_GE}
#: ``xs[a:]`` is ``xs[a:2**63 - 1]``: Python's slices clamp their bounds.
_END = Lit(INT_MAX)


def prim(op: Op, *args: Term) -> Term:
    """``<a, b> ; op`` (``<a, <b, c>>`` for three arguments; one argument: ``a ; op``)."""
    if len(args) == 1:
        return seq(args[0], Prim(op))
    operand = args[-1]
    for a in reversed(args[:-1]):
        operand = Fanout(a, operand)
    return seq(operand, Prim(op))


def swapped(first: Term, second: Term) -> Term:
    """``<second, first>``, with ``first`` evaluated first (as Python does) when both may trap."""
    if may_trap(first) and may_trap(second):
        return seq(Fanout(first, second), Fanout(SND, FST))
    return Fanout(second, first)


def needs_hint(node: ast.expr) -> bool:
    """Whether the type of ``node`` comes only from where it is used: ``[]``, ``{}``,
    ``list()``, ``dict()``."""
    match node:
        case ast.List(elts=[]) | ast.Dict(keys=[]):
            return True
        case ast.Call(func=ast.Name(id="list" | "dict"), args=[], keywords=[]):
            return True
    return False


def operands(c: FunctionCompiler, left: ast.expr, right: ast.expr, env: Env) -> tuple[Typed, Typed]:
    """Both operands of a binary operator, each a hint for the other: ``xs + [x]``,
    ``[] == xs``."""
    if needs_hint(left) and not needs_hint(right):
        b = c.synth(right, env, None)
        return c.synth(left, env, b.schema), b
    a = c.synth(left, env, None)
    return a, c.synth(right, env, a.schema)


def convert(c: FunctionCompiler, node: ast.AST, typed: Typed, expected: Schema, what: str) -> Term:
    """``typed`` as a value of ``expected`` (injected into a union), or a SourceError."""
    conversion = coercion(typed.schema, expected)
    if conversion is None:
        msg = f"{what} is {describe(typed.schema)}, expected {describe(expected)}"
        raise c.error(node, msg)
    return seq(typed.term, conversion)


def alternative(hint: Schema | None, kind: type) -> Schema | None:
    """The alternative of ``kind`` in ``hint`` (itself or one of its union's), if any."""
    if isinstance(hint, kind):
        return hint
    if isinstance(hint, UnionSchema):
        for alt in hint.alternatives:
            if isinstance(alt, kind):
                return alt
    return None


def truth(typed: Typed) -> Term | None:
    """``bool(x)`` of a str, list or dict: not empty (None for other types)."""
    ops = {StrSchema: Op.STR_LEN, ListSchema: Op.LIST_LEN, DictSchema: Op.MAP_LEN}
    op = ops.get(type(typed.schema))
    if op is None:
        return None
    return prim(Op.NE, prim(op, typed.term), Lit(0))


def static_none(schema: Schema) -> bool | None:
    """Whether a value of ``schema`` is None (True), is not (False), or may be (None)."""
    if isinstance(schema, NoneSchema):
        return True
    if isinstance(schema, UnionSchema) and any(
        isinstance(a, NoneSchema) for a in schema.alternatives
    ):
        return None
    return False


def is_none(typed: Typed) -> Term:
    """``x is None``: true on the None alternative of a union (always, or never, otherwise)."""
    schema = typed.schema
    if isinstance(schema, NoneSchema):
        return seq(typed.term, TRUE)
    if not isinstance(schema, UnionSchema):
        return seq(typed.term, FALSE)
    arms = [TRUE if isinstance(a, NoneSchema) else FALSE for a in schema.alternatives]
    chain = arms[-1]
    for arm in reversed(arms[:-1]):
        chain = Case(arm, chain)
    return seq(typed.term, chain)


def choice(c: FunctionCompiler, node: ast.BoolOp, first: Typed, env: Env) -> Typed:
    """``a or b`` on strs, lists or dicts: ``a`` when it is not empty, else ``b``; ``a and b``:
    ``b`` when ``a`` is not empty, else ``a`` (each operand evaluated at most once, in order)."""
    schema = first.schema
    word = "and" if isinstance(node.op, ast.And) else "or"
    rest = node.values[1:]
    later = c.expr(rest[-1], env, schema, f"an operand of {word}").term
    for value in reversed(rest[:-1]):
        pushed, ref = env.push(schema)
        here = c.expr(value, env, schema, f"an operand of {word}")
        test = truth(Typed(pushed.read(ref), schema))
        assert test is not None
        kept = pushed.read(ref)
        other = seq(FST, later)
        later = seq(Fanout(ID, here.term), _pick(test, kept, other, word))
    pushed, ref = env.push(schema)
    test = truth(Typed(pushed.read(ref), schema))
    assert test is not None
    term = seq(Fanout(ID, first.term), _pick(test, pushed.read(ref), seq(FST, later), word))
    return Typed(term, schema)


def _pick(test: Term, kept: Term, other: Term, word: str) -> Term:
    """In the context with the operand pushed: keep it (``or`` when truthy, ``and`` when not)
    or go on with ``other``."""
    if word == "or":
        return if_then_else(test, kept, other)
    return if_then_else(test, other, kept)


# --- literals -------------------------------------------------------------------------------


def string(c: FunctionCompiler, text: str, node: ast.AST) -> Typed:
    """``"text"  =>  StrLit``."""
    if len(text) > MAX_STR_LEN:
        raise c.error(node, f"this string has {len(text)} characters, more than {MAX_STR_LEN}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise c.error(node, "this string holds a lone surrogate, which is not text") from None
    return Typed(StrLit(text), STR_SCHEMA)


def fstring(c: FunctionCompiler, node: ast.JoinedStr, env: Env) -> Typed:
    """``f"a{x}b"  =>  <<"a", x ; int_to_str> ; str_concat, "b"> ; str_concat``."""
    pieces: list[Term] = []
    for value in node.values:
        match value:
            case ast.Constant(value=str(text)):
                pieces.append(string(c, text, value).term)
            case ast.FormattedValue(value=inner, conversion=conversion, format_spec=spec):
                if spec is not None:
                    msg = "format specs (f'{x:...}') are not supported: write f'{x}' or str(x)"
                    raise c.error(value, msg)
                if conversion not in (-1, ord("s")):
                    raise c.error(value, "!r and !a are not supported in f-strings: use {x}")
                pieces.append(text_of(c, inner, env, "a value in an f-string"))
            case _:
                raise c.error(value, "this part of an f-string is not supported")
    if not pieces:
        return Typed(StrLit(""), STR_SCHEMA)
    result = pieces[0]
    for piece in pieces[1:]:
        result = prim(Op.STR_CONCAT, result, piece)
    return Typed(result, STR_SCHEMA)


def text_of(c: FunctionCompiler, node: ast.expr, env: Env, what: str) -> Term:
    """``str(x)`` of an int, bool or str expression."""
    typed = c.synth(node, env, None)
    match typed.schema:
        case StrSchema():
            return typed.term
        case IntSchema():
            return prim(Op.INT_TO_STR, typed.term)
        case BoolSchema():
            return seq(typed.term, Case(StrLit("False"), StrLit("True")))
        case schema:
            msg = f"{what} must be int, bool or str, not {describe(schema)}"
            raise c.error(node, msg)


def list_literal(c: FunctionCompiler, node: ast.List, env: Env, hint: Schema | None) -> Typed:
    """``[a, *xs, b]  =>  <<<empty, a> ; list_append, xs> ; list_concat, b> ; list_append``."""
    expected = alternative(hint, ListSchema)
    item = expected.item if isinstance(expected, ListSchema) else None
    elts = node.elts
    if item is None:
        if not elts:
            msg = "the item type of [] is not known here: annotate it, e.g. xs: list[int] = []"
            raise c.error(node, msg)
        first = elts[0]
        if isinstance(first, ast.Starred):
            spread = c.synth(first.value, env, None)
            if not isinstance(spread.schema, ListSchema):
                raise c.error(first, f"*{describe(spread.schema)} in a list: only lists spread")
            item = spread.schema.item
        else:
            item = c.synth(first, env, None).schema
    schema = ListSchema(item)
    term: Term = Empty(core_type(schema))
    for elt in elts:
        if isinstance(elt, ast.Starred):
            spread = c.expr(elt.value, env, schema, "a list spread with *")
            term = prim(Op.LIST_CONCAT, term, spread.term)
        else:
            value = c.expr(elt, env, item, "a list item")
            term = prim(Op.LIST_APPEND, term, value.term)
    return Typed(term, schema)


def dict_literal(c: FunctionCompiler, node: ast.Dict, env: Env, hint: Schema | None) -> Typed:
    """``{k: v, **d}  =>  <<empty, <k, v>> ; map_insert, d> ; map_merge``; ``{**d, k: v}``
    starts from ``d``."""
    expected = alternative(hint, DictSchema)
    schema = expected if isinstance(expected, DictSchema) else None
    entries = list(zip(node.keys, node.values, strict=True))
    start: Term | None = None
    if schema is None:
        if not entries:
            msg = "the types of {} are not known here: annotate it, e.g. d: dict[str, int] = {}"
            raise c.error(node, msg)
        key, value = entries[0]
        if key is None:
            spread = c.synth(value, env, None)
            if not isinstance(spread.schema, DictSchema):
                raise c.error(value, f"**{describe(spread.schema)} in a dict: only dicts spread")
            schema, start = spread.schema, spread.term
            entries = entries[1:]
        else:
            k = c.synth(key, env, None)
            try:
                schema = dict_schema(k.schema, c.synth(value, env, None).schema)
            except SchemaProblem as e:
                raise c.error(key, str(e)) from None
    term: Term = start if start is not None else Empty(core_type(schema))
    for key, value in entries:
        if key is None:
            spread = c.expr(value, env, schema, "a dict spread with **")
            term = prim(Op.MAP_MERGE, term, spread.term)
        else:
            k = c.expr(key, env, schema.key, "a dict key")
            v = c.expr(value, env, schema.value, "a dict value")
            term = seq(Fanout(term, Fanout(k.term, v.term)), Prim(Op.MAP_INSERT))
    return Typed(term, schema)


def empty(c: FunctionCompiler, node: ast.Call, kind: type, hint: Schema | None) -> Typed:
    """``list()`` and ``dict()`` with no arguments, typed by where they are used."""
    expected = alternative(hint, kind)
    if expected is None:
        example = "xs: list[int] = list()" if kind is ListSchema else "d: dict[str, int] = dict()"
        raise c.error(node, f"the type of {ast.unparse(node)} is not known here: e.g. {example}")
    return Typed(Empty(core_type(expected)), expected)


# --- operators ------------------------------------------------------------------------------


def concat(c: FunctionCompiler, node: ast.BinOp, a: Typed, env: Env) -> Typed:
    """``a + b`` on str or list: ``<a, b> ; str_concat`` or ``list_concat``."""
    schema = a.schema
    _learn(c, node.left, schema, node.right, env)
    b = c.expr(node.right, env, schema, "right operand of +")
    op = Op.STR_CONCAT if isinstance(schema, StrSchema) else Op.LIST_CONCAT
    return Typed(prim(op, a.term, b.term), schema)


def _learn(c: FunctionCompiler, left: ast.expr, schema: Schema, right: ast.expr, env: Env) -> None:
    """``out + [e]`` or ``d | {k: v}`` on a tentative empty collection: the type it needs."""
    if not (isinstance(left, ast.Name) and c.tentative.get(left.id) == schema):
        return
    try:
        needed = c.synth(right, env, None).schema
    except SourceError:
        return
    from hotswap.dsl import inference  # noqa: PLC0415 - a leaf module, imported when needed

    inference.learned(c, left.id, schema, needed)


def merge(c: FunctionCompiler, node: ast.BinOp, env: Env) -> Typed | None:
    """``d | e`` on dicts: ``<d, e> ; map_merge`` (``<d, <k, v>> ; map_insert`` for a literal
    ``{k: v}``); None when ``d`` is not a dict."""
    if needs_hint(node.left):
        b = c.synth(node.right, env, None)
        a = c.synth(node.left, env, b.schema)
    else:
        a = c.synth(node.left, env, None)
    schema = a.schema
    if not isinstance(schema, DictSchema):
        return None
    _learn(c, node.left, schema, node.right, env)
    right = node.right
    if isinstance(right, ast.Dict) and right.keys and None not in right.keys:
        term = a.term
        for key, value in zip(right.keys, right.values, strict=True):
            assert key is not None
            k = c.expr(key, env, schema.key, "a dict key")
            v = c.expr(value, env, schema.value, "a dict value")
            term = seq(Fanout(term, Fanout(k.term, v.term)), Prim(Op.MAP_INSERT))
        return Typed(term, schema)
    b = c.expr(right, env, schema, "right operand of |")
    return Typed(prim(Op.MAP_MERGE, a.term, b.term), schema)


def equality(c: FunctionCompiler, node: ast.expr, op: ast.cmpop, a: Typed, b: Typed) -> Term:
    """``a == b  =>  <a, b> ; equal`` (``not_equal`` for ``!=``), structural on any type; the
    operands must have one type (one may be injected into the other's union)."""
    if a.schema != b.schema:
        to_a, to_b = coercion(b.schema, a.schema), coercion(a.schema, b.schema)
        if to_a is not None:
            b = Typed(seq(b.term, to_a), a.schema)
        elif to_b is not None:
            a = Typed(seq(a.term, to_b), b.schema)
        else:
            word = "==" if isinstance(op, ast.Eq) else "!="
            msg = (
                f"{word} compares values of one type, but these are {describe(a.schema)} and "
                f"{describe(b.schema)}"
            )
            raise c.error(node, msg)
    return prim(Op.EQUAL if isinstance(op, ast.Eq) else Op.NOT_EQUAL, a.term, b.term)


def str_order(c: FunctionCompiler, op: ast.cmpop, a: Typed, right: ast.expr, env: Env) -> Term:
    """``a < b`` on strs: ``<a, b> ; str_lt`` (by code point, as Python compares)."""
    b = c.expr(right, env, STR_SCHEMA, "right operand of a comparison")
    return prim(_STR_ORDER[type(op)], a.term, b.term)


def membership(
    c: FunctionCompiler, left: ast.expr, op: ast.cmpop, right: ast.expr, env: Env
) -> Term:
    """``x in xs  =>  <xs, x> ; list_contains`` (a dict's keys: ``map_contains``, a substring:
    ``str_contains``); ``not in`` then ``not``. A tuple display ``x in (a, b)`` is read as the
    list ``[a, b]`` (its items have one type)."""
    if isinstance(right, ast.Tuple):
        right = ast.copy_location(ast.List(right.elts, ast.Load()), right)
    coll = c.synth_view(right, env, None)
    schema = coll.schema
    if coll.view is not None and coll.view.kind == "keys" and coll.view.base is not None:
        coll = coll.view.base  # k in d.keys() is k in d
        schema = coll.schema
    match schema:
        case StrSchema():
            x = c.expr(left, env, STR_SCHEMA, "the left operand of in")
            test = prim(Op.STR_CONTAINS, swapped(x.term, coll.term))
        case DictSchema(key=key):
            x = c.expr(left, env, key, "the key tested with in")
            test = prim(Op.MAP_CONTAINS, swapped(x.term, coll.term))
        case ListSchema(item=item):
            x = c.expr(left, env, item, "the item tested with in")
            test = prim(Op.LIST_CONTAINS, swapped(x.term, coll.term))
        case _:
            msg = f"in looks into a str, list or dict, not {describe(schema)}"
            raise c.error(right, msg)
    return seq(test, Prim(Op.NOT)) if isinstance(op, ast.NotIn) else test


# --- indexing -------------------------------------------------------------------------------


def index(c: FunctionCompiler, node: ast.Subscript, base: Typed, env: Env) -> Typed:
    """``xs[i]``, ``s[i]``, ``d[k]`` and the slices ``xs[a:b]``, ``s[a:b]``."""
    schema = base.schema
    where = node.slice
    if isinstance(where, ast.Slice):
        if not isinstance(schema, ListSchema | StrSchema):
            raise c.error(node, f"only lists and strs can be sliced, not {describe(schema)}")
        if where.step is not None:
            raise c.error(where.step, "slices with a step (xs[a:b:c]) are not supported")
        lower = Lit(0) if where.lower is None else bound(c, where.lower, env)
        upper = _END if where.upper is None else bound(c, where.upper, env)
        op = Op.LIST_SLICE if isinstance(schema, ListSchema) else Op.STR_SLICE
        return Typed(prim(op, base.term, lower, upper), schema)
    match schema:
        case ListSchema(item=item):
            i = c.expr(where, env, INT_SCHEMA, "a list index")
            return Typed(prim(Op.LIST_INDEX, base.term, i.term), item)
        case StrSchema():
            i = c.expr(where, env, INT_SCHEMA, "a str index")
            return Typed(prim(Op.STR_INDEX, base.term, i.term), STR_SCHEMA)
        case DictSchema(key=key, value=value):
            k = c.expr(where, env, key, "a dict key")
            return Typed(prim(Op.MAP_INDEX, base.term, k.term), value)
    raise c.error(node, f"{describe(schema)} cannot be indexed")


def bound(c: FunctionCompiler, node: ast.expr, env: Env) -> Term:
    return c.expr(node, env, INT_SCHEMA, "a slice bound").term


# --- methods --------------------------------------------------------------------------------

_VIEWS = {"keys": Op.MAP_KEYS, "values": Op.MAP_VALUES, "items": Op.MAP_ITEMS}


def method_call(c: FunctionCompiler, node: ast.Call, env: Env) -> Typed:
    """``d.get(k)``, ``d.get(k, default)``, ``d.keys()``/``values()``/``items()``,
    ``x.copy()``, ``s.startswith(p)``/``endswith(p)``, ``sep.join(xs)``."""
    func = node.func
    assert isinstance(func, ast.Attribute)
    name = func.attr
    receiver = c.synth(func.value, env, None)
    schema = receiver.schema
    shown = ast.unparse(func)
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise c.error(node, f"{shown}() takes positional arguments only")
    args = node.args
    match schema, name:
        case DictSchema(), "get":
            return _get(c, node, receiver, env)
        case DictSchema(key=key, value=value), ("keys" | "values" | "items"):
            _arity(c, node, 0)
            item = {"keys": key, "values": value, "items": TupleSchema((key, value))}[name]
            view = View(name, receiver)
            return Typed(prim(_VIEWS[name], receiver.term), ListSchema(item), view)
        case ((DictSchema() | ListSchema()), "copy"):
            _arity(c, node, 0)
            return receiver
        case StrSchema(), ("startswith" | "endswith"):
            _arity(c, node, 1)
            p = c.expr(args[0], env, STR_SCHEMA, f"the argument of {name}()")
            return Typed(_affix(receiver.term, p.term, name == "endswith"), BOOL_SCHEMA)
        case StrSchema(), _ if name in _TEXT_METHODS:
            return _text_method(c, node, env)
        case StrSchema(), "join":
            from hotswap.dsl import loops  # noqa: PLC0415 - loops builds on this module

            _arity(c, node, 1)
            return loops.join(c, node, receiver, args[0], env)
        case ((ListSchema() | DictSchema()), "pop" | "setdefault"):
            raise c.error(node, _value_of_change(c, node, schema))
        case ((ListSchema() | DictSchema()), _) if name in _MUTATING:
            msg = (
                f"{shown}() changes {ast.unparse(func.value)} in place and gives None: "
                "use it as a statement of its own"
            )
            raise c.error(node, msg)
    raise c.error(func, f"{describe(schema)} has no method {name} here")


def _value_of_change(c: FunctionCompiler, node: ast.Call, schema: Schema) -> str:
    """``last = xs.pop()``, ``v = d.pop(k, -1)``, ``d.setdefault(k, v)`` as a value: not
    supported, with the forms that are."""
    func = node.func
    assert isinstance(func, ast.Attribute)
    owner = ast.unparse(func.value)
    args = [ast.unparse(a) for a in node.args]
    shown = f"{owner}.{func.attr}({', '.join(args)})"
    parent = c.function.aliasing.parent.get(node)
    target = "x"
    if isinstance(parent, ast.Assign | ast.AnnAssign) and parent.value is node:
        targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
        if len(targets) == 1 and isinstance(targets[0], ast.Name):
            target = targets[0].id
    if func.attr == "setdefault":
        k = args[0] if args else "k"
        v = args[1] if len(args) > 1 else "None"
        return (
            f"{shown} is not supported: write {target} = {owner}.get({k}, {v}), and "
            f"{owner}[{k}] = {target} to store it"
        )
    if isinstance(schema, ListSchema):
        i = args[0] if args else "-1"
        form = f"{target} = {owner}[{i}], then {shown}"
        if not args:
            form += f" (or {owner} = {owner}[:-1])"
    elif len(args) == 2:
        form = f"{target} = {owner}.get({args[0]}, {args[1]}), then {shown} as a statement"
    else:
        k = args[0] if args else "k"
        form = f"{target} = {owner}[{k}], then del {owner}[{k}]"
    return f"{shown} as a value is not supported: write {form}"


_TEXT_METHODS = frozenset({"split", "strip", "lstrip", "rstrip", "find", "count", "replace"})


def _text_method(c: FunctionCompiler, node: ast.Call, env: Env) -> Typed:
    """``s.split(sep)`` and the other methods of :mod:`hotswap.dsl.textlib`: an inlined call of
    the DSL function that means the same, ``s`` its first argument."""
    from hotswap.dsl import calls, textlib  # noqa: PLC0415 - calls and textlib build on us

    func = node.func
    assert isinstance(func, ast.Attribute)
    args = list(node.args)
    if func.attr == "split" and len(args) == 1:
        only = args[0]
        if isinstance(only, ast.Constant) and only.value is None:
            args = []
    fn = textlib.METHODS.get((func.attr, len(args)))
    if fn is None:
        raise c.error(node, f"str.{func.attr}() with {len(args)} arguments is not supported")
    call = ast.copy_location(ast.Call(func=func, args=[func.value, *args], keywords=[]), node)
    return calls.inline_call(c, fn, call, env)  # type: ignore[arg-type]


_MUTATING = frozenset({"append", "extend", "insert", "pop", "remove", "sort", "update", "clear"})


def _arity(c: FunctionCompiler, node: ast.Call, n: int) -> None:
    if len(node.args) != n:
        shown = ast.unparse(node.func)
        raise c.error(node, f"{shown}() takes {n} argument{'s' if n != 1 else ''} here")


def optional(schema: Schema) -> Schema:
    """``V | None`` (``V`` itself when it already holds None)."""
    alts = schema.alternatives if isinstance(schema, UnionSchema) else (schema,)
    if any(isinstance(a, NoneSchema) for a in alts):
        return schema
    return union_of([*alts, NONE_SCHEMA])


def _get(c: FunctionCompiler, node: ast.Call, d: Typed, env: Env) -> Typed:
    """``d.get(k)  =>  <d, k> ; map_get ; [None | V]`` into ``V | None``; with a default,
    ``<<d, k>, default> ; <snd, fst ; map_get> ; distl ; [fst | snd]``."""
    schema = d.schema
    assert isinstance(schema, DictSchema)
    args = node.args
    if len(args) not in (1, 2):
        raise c.error(node, "get() takes a key and, optionally, a default")
    k = c.expr(args[0], env, schema.key, "the key of get()")
    lookup = prim(Op.MAP_GET, d.term, k.term)
    if len(args) == 1:
        result = optional(schema.value)
        missing, found = coercion(NONE_SCHEMA, result), coercion(schema.value, result)
        assert missing is not None and found is not None
        return Typed(seq(lookup, Case(missing, found)), result)
    default = c.synth(args[1], env, schema.value)
    result = schema.value
    if coercion(default.schema, result) is None:
        alts = [*_alternatives(schema.value), *_alternatives(default.schema)]
        try:
            result = union_of(alts) if len(alts) > 1 else alts[0]
        except SchemaProblem as e:
            raise c.error(args[1], f"the default of get(): {e}") from None
    if_default, if_found = coercion(default.schema, result), coercion(schema.value, result)
    if if_default is None or if_found is None:
        msg = f"the default of get() is {describe(default.schema)}, expected {describe(result)}"
        raise c.error(args[1], msg)
    both = Fanout(Fanout(d.term, k.term), default.term)  # Python's order: d, k, default
    term = seq(
        both,
        Fanout(SND, seq(FST, Prim(Op.MAP_GET))),
        DISTL,
        Case(seq(FST, if_default), seq(SND, if_found)),
    )
    return Typed(term, result)


def _alternatives(s: Schema) -> list[Schema]:
    return list(s.alternatives) if isinstance(s, UnionSchema) else [s]


def _affix(s: Term, p: Term, end: bool) -> Term:
    """``s.startswith(p)``: ``s[:len(p)] == p``; ``endswith``: ``len(p) <= len(s) and
    s[len(s) - len(p):] == p`` (both operands read once)."""
    pair = Fanout(s, p)  # (s, p), evaluated in Python's order
    s_, p_ = FST, SND
    length = prim(Op.STR_LEN, p_)
    if not end:
        head = prim(Op.STR_SLICE, s_, Lit(0), length)
        return seq(pair, prim(Op.EQUAL, head, p_))
    start = prim(Op.SUB, prim(Op.STR_LEN, s_), length)
    fits = prim(Op.LE, length, prim(Op.STR_LEN, s_))
    tail = prim(Op.EQUAL, prim(Op.STR_SLICE, s_, start, _END), p_)
    return seq(pair, if_then_else(fits, tail, FALSE))


# --- builtins -------------------------------------------------------------------------------

#: The builtins compiled here, by name; ``abs``, ``min`` and ``max`` of ints are in calls.
BUILTINS = frozenset(
    {"len", "str", "list", "dict", "sorted", "sum", "any", "all", "range", "min", "max"}
)


def builtin_name(target: object) -> str | None:
    """The name of a supported builtin ``target`` is, if it is one."""
    for name in BUILTINS:
        if target is getattr(builtins, name):
            return name
    return None


def intrinsic_call(c: FunctionCompiler, op: Op, node: ast.Call, env: Env) -> Typed:
    """A call of a function of :data:`hotswap.dsl.textlib.INTRINSICS`: its primitive ``op``
    of its two ``str`` arguments (``STR_SPLIT``, ``STR_FIND``)."""
    if node.keywords or len(node.args) != 2:
        raise c.error(node, f"{ast.unparse(node.func)}() takes two strs here")
    a, b = (
        c.expr(arg, env, STR_SCHEMA, f"argument of {ast.unparse(node.func)}()") for arg in node.args
    )
    result = ListSchema(STR_SCHEMA) if op is Op.STR_SPLIT else INT_SCHEMA
    return Typed(prim(op, a.term, b.term), result)


def builtin_call(
    c: FunctionCompiler, name: str, node: ast.Call, env: Env, hint: Schema | None
) -> Typed:
    """``len``, ``str``, ``list``, ``dict``, ``sorted``, ``range``; the folds (``sum``,
    ``min``, ``max``, ``any``, ``all``) are in :mod:`hotswap.dsl.loops`."""
    from hotswap.dsl import loops  # noqa: PLC0415 - loops builds on this module

    args = node.args
    if any(isinstance(a, ast.Starred) for a in args):
        raise c.error(node, f"{name}(*...) is not supported")
    keywords = {k.arg: k.value for k in node.keywords}
    if None in keywords or (keywords and name != "sorted"):
        raise c.error(node, f"{name}() takes positional arguments only here")
    match name:
        case "len":
            _arity(c, node, 1)
            return Typed(_length(c, args[0], env), INT_SCHEMA)
        case "str":
            if not args:
                return Typed(StrLit(""), STR_SCHEMA)
            _arity(c, node, 1)
            return Typed(text_of(c, args[0], env, "the argument of str()"), STR_SCHEMA)
        case "range":
            if len(args) not in (1, 2):
                msg = "range() takes an end, or a start and an end (no step)"
                raise c.error(node, msg)
            ends = [c.expr(a, env, INT_SCHEMA, "a bound of range()").term for a in args]
            lo, hi = (Lit(0), ends[0]) if len(ends) == 1 else (ends[0], ends[1])
            term = prim(Op.RANGE, lo, hi)
            return Typed(term, ListSchema(INT_SCHEMA), View("range"))
        case "list":
            if not args:
                return empty(c, node, ListSchema, hint)
            _arity(c, node, 1)
            return loops.to_list(c, args[0], env, hint)
        case "dict":
            if not args:
                return empty(c, node, DictSchema, hint)
            _arity(c, node, 1)
            return loops.to_dict(c, args[0], env, hint)
        case "sorted":
            _arity(c, node, 1)
            return _sorted(c, node, keywords, env)
        case _:
            return loops.builtin_fold(c, name, node, env)


def _length(c: FunctionCompiler, node: ast.expr, env: Env) -> Term:
    coll = c.synth_view(node, env, None)
    if coll.view is not None and coll.view.base is not None:
        return prim(Op.MAP_LEN, coll.view.base.term)
    match coll.schema:
        case StrSchema():
            return prim(Op.STR_LEN, coll.term)
        case ListSchema():
            return prim(Op.LIST_LEN, coll.term)
        case DictSchema():
            return prim(Op.MAP_LEN, coll.term)
    raise c.error(node, f"len() measures a str, list or dict, not {describe(coll.schema)}")


def _sorted(
    c: FunctionCompiler, node: ast.Call, keywords: dict[str | None, ast.expr], env: Env
) -> Typed:
    from hotswap.dsl import loops  # noqa: PLC0415 - loops builds on this module

    reverse = False
    for key, value in keywords.items():
        if key != "reverse":
            raise c.error(value, f"sorted() takes no {key}= here (only reverse=)")
        if not (isinstance(value, ast.Constant) and isinstance(value.value, bool)):
            raise c.error(value, "reverse= must be True or False")
        reverse = value.value
    items = loops.to_list(c, node.args[0], env, None)
    schema = items.schema
    assert isinstance(schema, ListSchema)
    if not isinstance(schema.item, IntSchema | StrSchema):
        msg = f"sorted() sorts lists of int or str, not {describe(schema)} (key= is not supported)"
        raise c.error(node, msg)
    term = prim(Op.LIST_SORT, items.term)
    if reverse:
        term = seq(term, loops.reverse_list(schema))
    return Typed(term, schema)


def raised(c: FunctionCompiler, stmt: ast.Raise, env: Env) -> Term:
    """``raise E(message)``: the term of the pair (class name, message) a ``fail`` takes."""
    if stmt.exc is None:
        raise c.error(stmt, "a bare raise re-raises nothing here: raise E(message)")
    if stmt.cause is not None and not (
        isinstance(stmt.cause, ast.Constant) and stmt.cause.value is None
    ):
        raise c.error(stmt.cause, "raise ... from e is not supported (from None is)")
    exc = stmt.exc
    call = exc if isinstance(exc, ast.Call) else None
    func = call.func if call is not None else exc
    cls = static(c.function, func)
    shown = ast.unparse(func)
    if cls is MISSING:
        raise c.error(func, f"name {shown} is not defined")
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        raise c.error(func, f"{shown} is not an exception class: raise E(message)")
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            break
        if "__init__" in vars(klass) or "__new__" in vars(klass):
            msg = (
                f"{shown} has its own __init__ (in {klass.__name__}): raise exceptions whose "
                "only argument is their message"
            )
            raise c.error(func, msg)
    message: Term = StrLit("")
    if call is not None:
        if call.keywords or len(call.args) > 1:
            raise c.error(call, f"raise {shown}(message): one message argument at most")
        if call.args:
            message = text_of(c, call.args[0], env, "the message of an exception")
    return Fanout(StrLit(cls.__name__), message)
