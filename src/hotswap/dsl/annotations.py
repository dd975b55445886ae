"""From Python annotations to schemas.

Two readers share one set of rules (see :mod:`hotswap.names.schema`):

* :func:`schema_of_annotation` reads an annotation's *syntax* (a function's parameters and
  return, a local ``x: T = ...``), resolving names in the function's scope. Reading the syntax
  rather than the evaluated object lets it reject ``int | int``, which Python silently collapses.
* :func:`schema_of_type` reads a run-time type object: a dataclass field's type, a type alias.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from hotswap.names.schema import (
    BOOL_SCHEMA,
    INT_SCHEMA,
    NONE_SCHEMA,
    DictSchema,
    Field,
    ListSchema,
    RecordSchema,
    Schema,
    SchemaProblem,
    StrSchema,
    TupleSchema,
    describe,
    union_of,
    unkeyable,
)

_MAX_DEPTH = 64
_SUPPORTED = (
    "supported: int, bool, None, str, list[T], dict[K, V], tuple[...], frozen dataclasses "
    "and unions of these"
)
STR_SCHEMA: Schema = StrSchema()


def list_schema(item: Schema) -> ListSchema:
    return ListSchema(item)


def dict_schema(key: Schema, value: Schema) -> DictSchema:
    """``dict[key, value]``; :class:`SchemaProblem` when the key holds a list or a dict."""
    found = unkeyable(key)
    if found is not None:
        raise SchemaProblem(
            f"dict[{describe(key)}, {describe(value)}]: a dict's key may not hold a list or a "
            f"dict ({found}); use a tuple or a record as the key"
        )
    return DictSchema(key, value)


#: Looks a name up in a function's scope; returns MISSING when it is not defined.
Lookup = Callable[[str], object]
MISSING: Any = object()


def schema_of_type(tp: object, _seen: tuple[type, ...] = ()) -> Schema:
    """The schema of a run-time type object; :class:`SchemaProblem` if outside the subset."""
    if len(_seen) > _MAX_DEPTH:
        raise SchemaProblem("type is nested too deeply")
    if tp is int:
        return INT_SCHEMA
    if tp is bool:
        return BOOL_SCHEMA
    if tp is None or tp is type(None):
        return NONE_SCHEMA
    if tp is str:
        return STR_SCHEMA
    if tp is list or tp is dict:
        name = tp.__name__
        example = "list[int]" if tp is list else "dict[str, int]"
        raise SchemaProblem(f"{name} needs its item types, e.g. {example}")
    origin = typing.get_origin(tp)
    if origin is list:
        args = typing.get_args(tp)
        if len(args) != 1:
            raise SchemaProblem(f"{_show(tp)}: list takes one item type, list[T]")
        return list_schema(schema_of_type(args[0], _seen))
    if origin is dict:
        args = typing.get_args(tp)
        if len(args) != 2:
            raise SchemaProblem(f"{_show(tp)}: dict takes a key and a value type, dict[K, V]")
        return dict_schema(schema_of_type(args[0], _seen), schema_of_type(args[1], _seen))
    if origin is types.UnionType or origin is typing.Union:
        return union_of([schema_of_type(a, _seen) for a in typing.get_args(tp)])
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) < 2 or Ellipsis in args:
            raise SchemaProblem(f"{_show(tp)}: tuples must have a fixed length of two or more")
        return TupleSchema(tuple(schema_of_type(a, _seen) for a in args))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return record_schema(tp, _seen)
    if isinstance(tp, str):
        raise SchemaProblem(f"cannot resolve the forward reference {tp!r}")
    if isinstance(tp, type) and tp.__module__ != "builtins":
        raise SchemaProblem(f"{tp.__name__} must be a frozen dataclass: @dataclass(frozen=True)")
    raise SchemaProblem(f"{_show(tp)} is not supported ({_SUPPORTED})")


def record_schema(cls: type, _seen: tuple[type, ...] = ()) -> RecordSchema:
    """The schema of a frozen dataclass; its fields' types are read with ``get_type_hints``."""
    name = cls.__name__
    if cls in _seen:
        raise SchemaProblem(f"recursive type {name} is not supported")
    if not dataclasses.is_dataclass(cls):
        raise SchemaProblem(f"{name} is not a dataclass ({_SUPPORTED})")
    params = getattr(cls, "__dataclass_params__", None)
    if not getattr(params, "frozen", False):
        raise SchemaProblem(f"{name} must be a frozen dataclass: @dataclass(frozen=True)")
    if hasattr(cls, "__post_init__") or not _plain_init(cls):
        raise SchemaProblem(
            f"{name} has its own __init__ or __post_init__, which compiled code would not run: "
            "records must be plain frozen dataclasses"
        )
    try:
        hints = typing.get_type_hints(cls, globalns=_module_globals(cls))
    except Exception as e:
        raise SchemaProblem(f"cannot resolve the field types of {name}: {e}") from e
    fields = []
    for f in dataclasses.fields(cls):
        if not f.init:
            raise SchemaProblem(f"field {name}.{f.name} has init=False, which is not supported")
        try:
            schema = schema_of_type(hints[f.name], (*_seen, cls))
        except SchemaProblem as e:
            raise SchemaProblem(f"in field {name}.{f.name}: {e}") from e
        fields.append(Field(f.name, schema))
    return RecordSchema(name, tuple(fields), cls)


def _plain_init(cls: type) -> bool:
    """Whether ``cls.__init__`` takes the fields in order, like the one dataclass generates."""
    params = getattr(cls, "__dataclass_params__", None)
    if not getattr(params, "init", False):
        return False
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    names = list(signature.parameters)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    positional = [f.name for f in fields if not f.kw_only]
    return names == positional + [f.name for f in fields if f.kw_only]


def _module_globals(cls: type) -> dict[str, Any] | None:
    module = sys.modules.get(cls.__module__)
    return vars(module) if module is not None else None


def _show(tp: object) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return repr(tp)


def schema_of_annotation(node: ast.expr, lookup: Lookup) -> Schema:
    """The schema an annotation's syntax denotes; :class:`SchemaProblem` if outside the subset
    (its ``node`` is the innermost offending part of the annotation)."""
    try:
        return _annotation(node, lookup)
    except SchemaProblem as e:
        if e.node is None:
            e.node = node
        raise


def _annotation(node: ast.expr, lookup: Lookup) -> Schema:
    match node:
        case ast.Constant(value=None):
            return NONE_SCHEMA
        case ast.Constant(value=str(text)):
            try:
                inner = ast.parse(text, mode="eval").body
            except SyntaxError as e:
                raise SchemaProblem(f"the annotation {text!r} is not valid Python") from e
            try:
                return schema_of_annotation(inner, lookup)
            except SchemaProblem as e:  # positions inside the string are not the file's
                e.node = node
                raise
        case ast.BinOp(op=ast.BitOr()):
            alternatives = _union_operands(node)
            schemas = [schema_of_annotation(a, lookup) for a in alternatives]
            for i, s in enumerate(schemas):
                if s in schemas[:i]:
                    shown = " | ".join(describe(x) for x in schemas)
                    raise SchemaProblem(f"ambiguous union {shown}: {describe(s)} appears twice")
            return union_of(schemas)
        case ast.Subscript(value, index):
            origin = _resolve(value, lookup)
            args = list(index.elts) if isinstance(index, ast.Tuple) else [index]
            if origin is tuple:
                if len(args) < 2 or any(
                    isinstance(a, ast.Constant) and a.value is ... for a in args
                ):
                    raise SchemaProblem("tuples must have a fixed length of two or more")
                return TupleSchema(tuple(schema_of_annotation(a, lookup) for a in args))
            if origin is list or origin is typing.List:  # noqa: UP006 - the typing alias too
                if len(args) != 1:
                    raise SchemaProblem(f"{ast.unparse(node)}: list takes one item type, list[T]")
                return list_schema(schema_of_annotation(args[0], lookup))
            if origin is dict or origin is typing.Dict:  # noqa: UP006 - the typing alias too
                if len(args) != 2:
                    msg = f"{ast.unparse(node)}: dict takes a key and a value type, dict[K, V]"
                    raise SchemaProblem(msg)
                key_schema, value_schema = (schema_of_annotation(a, lookup) for a in args)
                return dict_schema(key_schema, value_schema)
            if origin is typing.Optional and len(args) == 1:
                return union_of([schema_of_annotation(args[0], lookup), NONE_SCHEMA])
            if origin is typing.Union:
                return union_of([schema_of_annotation(a, lookup) for a in args])
            raise SchemaProblem(f"{ast.unparse(node)} is not supported ({_SUPPORTED})")
        case ast.Name() | ast.Attribute():
            return schema_of_type(_resolve(node, lookup))
        case _:
            raise SchemaProblem(f"{ast.unparse(node)} is not supported ({_SUPPORTED})")


def _union_operands(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union_operands(node.left) + _union_operands(node.right)
    return [node]


def _resolve(node: ast.expr, lookup: Lookup) -> object:
    match node:
        case ast.Name(id=name):
            value = lookup(name)
            if value is MISSING:
                raise SchemaProblem(f"name {name} is not defined")
            return value
        case ast.Attribute(value=base, attr=attr):
            owner = _resolve(base, lookup)
            if not isinstance(owner, types.ModuleType) or not hasattr(owner, attr):
                raise SchemaProblem(f"cannot resolve {ast.unparse(node)}")
            return getattr(owner, attr)
        case _:
            raise SchemaProblem(f"{ast.unparse(node)} is not supported ({_SUPPORTED})")
