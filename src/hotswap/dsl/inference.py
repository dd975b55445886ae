"""The item types of empty collections assigned without an annotation: ``out = []``.

Python users rarely annotate ``out = []``; its type is what is put in it later. Two ways find it,
without asking the user to write ``out: list[int] = []``:

1. *where it goes*, read from the syntax after the assignment: ``return out`` (the return
   type, or its item in a returned tuple), ``R(..., out)`` (the record's field), ``y: T = out``,
   ``rows.append(out)`` or ``rows[k] = out`` for a list or dict ``rows`` in scope;
2. *what goes in it*: the rest is compiled with ``out`` as ``list[None]`` (``dict[None, None]``)
   marked *tentative*; the first ``out.append(e)``, ``out[k] = v``, ``out += [e]``,
   ``out + [e]`` or ``out | {k: v}`` that puts in something else raises :class:`Retry` with the
   type it needs, and the assignment compiles the rest again with that type.

An empty ``[]`` assigned to a name that already holds a list (``acc = []`` to reset it in a
loop) starts from that list's type; one that reaches the end of an ``if``, ``match`` or a
loop's iteration where another path brings a list of a known type takes that type (the
variable is declared so and the statement compiled again, or the first ``[]`` learns it).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hotswap.dsl.annotations import MISSING, record_schema
from hotswap.dsl.env import Env
from hotswap.names.schema import (
    NONE_SCHEMA,
    DictSchema,
    ListSchema,
    Schema,
    SchemaProblem,
    TupleSchema,
    UnionSchema,
    describe,
)

if TYPE_CHECKING:
    from hotswap.dsl.dispatch import FunctionCompiler


class Retry(Exception):
    """The tentative collection ``name`` needs the schema ``schema``: compile again."""

    def __init__(self, name: str, schema: Schema) -> None:
        super().__init__(name)
        self.name = name
        self.schema = schema


class Widen(Exception):
    """The variable ``name`` reaches the end of the ``if``, ``match`` or loop ``node`` at
    different types, which ``schema`` unites (``None`` and ``int``: ``int | None``, as mypy
    completes a variable first assigned None): compile ``node`` again, ``name`` declared so."""

    def __init__(self, node: object, name: str, schema: Schema) -> None:
        super().__init__(name)
        self.node = node
        self.name = name
        self.schema = schema


def guess(kind: type) -> Schema:
    """The tentative schema of an empty list or dict."""
    return ListSchema(NONE_SCHEMA) if kind is ListSchema else DictSchema(NONE_SCHEMA, NONE_SCHEMA)


def guessed(schema: Schema | None) -> bool:
    """Whether ``schema`` is the tentative guess for an empty ``[]`` or ``{}`` (its item type
    not known yet): never shown to a user."""
    return schema == guess(ListSchema) or schema == guess(DictSchema)


def holds_guess(schema: Schema | None) -> bool:
    """Whether ``schema`` is a guess or a list or dict of one (``list[list[None]]``, from
    ``rows.append(row)`` of a guessed ``row = []``): still to be learned."""
    match schema:
        case ListSchema(item=item):
            return guessed(schema) or holds_guess(item)
        case DictSchema(value=value):
            return guessed(schema) or holds_guess(value)
    return False


def completed(schemas: Sequence[Schema]) -> Schema | None:
    """The one list or dict schema that completes the guesses among ``schemas`` (``list[None]``
    and ``list[int]``: ``list[int]``), if there is one."""
    known = {s for s in schemas if not guessed(s)}
    if len(known) != 1 or len(known) == len(set(schemas)):
        return None
    (found,) = known
    for s in schemas:
        if guessed(s) and not isinstance(found, type(s)):
            return None
    return found


def unknown_message(name: str, schemas: Sequence[Schema]) -> str | None:
    """The message for a variable that is a guessed ``[]`` or ``{}`` where its type is needed."""
    empties = [s for s in schemas if guessed(s)]
    if not empties:
        return None
    kind = "list" if isinstance(empties[0], ListSchema) else "dict"
    if not all(isinstance(s, type(empties[0])) for s in schemas):
        return None
    known = [s for s in schemas if not guessed(s)]
    fallback = "list[int]" if kind == "list" else "dict[str, int]"
    example = describe(known[0]) if known else fallback
    literal = "[]" if kind == "list" else "{}"
    return (
        f"the type of this empty {kind} is not known here: declare it, "
        f"{name}: {example} = {literal}"
    )


def shown(schema: Schema) -> str:
    """``describe(schema)``, a guess as the bare ``list`` or ``dict``."""
    if guessed(schema):
        return "list" if isinstance(schema, ListSchema) else "dict"
    return describe(schema)


def _fits(schema: Schema | None, kind: type) -> Schema | None:
    if isinstance(schema, kind):
        return schema
    if isinstance(schema, UnionSchema):
        found = [a for a in schema.alternatives if isinstance(a, kind)]
        return found[0] if len(found) == 1 else None
    return None


def usage_hint(
    c: FunctionCompiler, name: str, rest: Sequence[ast.stmt], env: Env, kind: type
) -> Schema | None:
    """The schema of ``name`` from where its value goes in ``rest`` (rule 1 of the module doc)."""
    returns = c.function.signature.returns
    for stmt in rest:
        for node in ast.walk(stmt):
            found = _use(c, node, name, returns, env)
            fitting = _fits(found, kind)
            if fitting is not None and not holds_guess(fitting):
                return fitting
    return None


def _is(node: ast.AST | None, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _use(c: FunctionCompiler, node: ast.AST, name: str, returns: Schema, env: Env) -> Schema | None:
    match node:
        case ast.Return(value=value) if _is(value, name):
            return returns
        case ast.Return(value=ast.Tuple(elts=elts)) if isinstance(returns, TupleSchema):
            if len(elts) == len(returns.items):
                for elt, item in zip(elts, returns.items, strict=True):
                    if _is(elt, name):
                        return item
        case ast.AnnAssign(annotation=annotation, value=value) if _is(value, name):
            return c.function.schema(annotation)
        case ast.Call(func=func, args=args, keywords=keywords):
            return _argument(c, func, args, keywords, name, env)
        case ast.Assign(targets=[ast.Subscript(value=ast.Name(id=owner))], value=value):
            if _is(value, name) and owner in env.vars:
                schema = env.vars[owner].schema
                if isinstance(schema, DictSchema):
                    return schema.value
                if isinstance(schema, ListSchema):
                    return schema.item
    return None


def _argument(
    c: FunctionCompiler,
    func: ast.expr,
    args: list[ast.expr],
    keywords: list[ast.keyword],
    name: str,
    env: Env,
) -> Schema | None:
    if (
        isinstance(func, ast.Attribute)
        and func.attr == "append"
        and isinstance(func.value, ast.Name)
    ):
        owner = env.vars.get(func.value.id)
        if (
            owner is not None
            and isinstance(owner.schema, ListSchema)
            and any(_is(a, name) for a in args)
        ):
            return owner.schema.item
        return None
    from hotswap.dsl.expressions import static  # noqa: PLC0415 - expressions builds on us

    cls = static(c.function, func)
    if cls is MISSING or not (isinstance(cls, type) and hasattr(cls, "__dataclass_fields__")):
        return None
    try:
        record = record_schema(cls)
    except SchemaProblem:
        return None
    for f, arg in zip(record.fields, args, strict=False):
        if _is(arg, name):
            return f.schema
    for kw in keywords:
        if _is(kw.value, name):
            for f in record.fields:
                if f.name == kw.arg:
                    return f.schema
    return None


def learned(c: FunctionCompiler, name: str, current: Schema, needed: Schema) -> None:
    """``name`` is tentative at ``current`` and what is put in it needs ``needed``: retry."""
    if c.tentative.get(name) == current and needed != current:
        raise Retry(name, needed)
