"""Core values shown and read by their Python names: ``Deposit(amount=5)``, ``None``, ``(1, 2)``.

:func:`render` writes a core value as the Python expression that would build it (records with
keyword arguments); :func:`parse` reads that form back with :func:`ast.parse` (never ``eval``),
also accepting positional fields and a bare name for a record without fields. Both work on
schemas decoded from a names section, without the Python classes, so a node or client can show
any module's values. ``parse(render(v, s), s) == v``.
"""

from __future__ import annotations

import ast
from typing import Any, assert_never

from hotswap.cam.loaded import LoadedModule
from hotswap.errors import HotswapError, ValueTypeError
from hotswap.lang.evaluate import Value
from hotswap.lang.ints import in_range
from hotswap.lang.values import check_value
from hotswap.names.schema import (
    BoolSchema,
    IntSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    TupleSchema,
    UnionSchema,
    core_type,
    describe,
    from_core,
    inject_value,
    nest_values,
    project_value,
    to_core,
    unnest_values,
)
from hotswap.names.section import module_schemas

MAX_TEXT = 100_000


def render(v: Value, s: Schema) -> str:
    """The Python-syntax text of core value ``v`` of schema ``s`` (checked first)."""
    check_value(v, core_type(s))
    return _render(v, s)


def _render(v: Value, s: Schema) -> str:
    match s:
        case IntSchema():
            return str(v)
        case BoolSchema():
            return "True" if v[0] else "False"
        case NoneSchema():
            return "None"
        case TupleSchema(items):
            values = unnest_values(v, len(items))
            return f"({', '.join(_render(x, t) for x, t in zip(values, items, strict=True))})"
        case RecordSchema(name=name, fields=fields):
            values = unnest_values(v, len(fields))
            shown = ", ".join(
                f"{f.name}={_render(x, f.schema)}" for f, x in zip(fields, values, strict=True)
            )
            return f"{name}({shown})"
        case UnionSchema(alternatives):
            index, payload = project_value(v, len(alternatives))
            return _render(payload, alternatives[index])
        case _:
            assert_never(s)


def render_python(v: object, s: Schema) -> str:
    """The text of a Python value (a dataclass instance, int, ...) of schema ``s``."""
    return _render(to_core(s, v), s)


def parse(text: str, s: Schema) -> Value:
    """The core value written as ``text``; :class:`ValueTypeError` says what is wrong."""
    if len(text) > MAX_TEXT:
        raise ValueTypeError(f"value text of {len(text)} characters is too long")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise ValueTypeError(f"cannot parse {text!r}: {e}") from None
    return _parse(tree.body, s, text)


def parse_python(text: str, s: Schema) -> Any:
    """The Python value written as ``text`` (records need their classes)."""
    return from_core(s, parse(text, s))


def _parse(node: ast.expr, s: Schema, text: str) -> Value:
    match s:
        case IntSchema():
            n = int_literal(node)
            if n is None:
                raise _mismatch(node, s, text)
            if not in_range(n):
                raise ValueTypeError(f"{n} is outside the signed 64-bit range in {text!r}")
            return n
        case BoolSchema():
            if isinstance(node, ast.Constant) and isinstance(node.value, bool):
                return (1, ()) if node.value else (0, ())
            raise _mismatch(node, s, text)
        case NoneSchema():
            if isinstance(node, ast.Constant) and node.value is None:
                return ()
            raise _mismatch(node, s, text)
        case TupleSchema(items):
            if not (isinstance(node, ast.Tuple) and len(node.elts) == len(items)):
                raise _mismatch(node, s, text)
            return nest_values([_parse(e, t, text) for e, t in zip(node.elts, items, strict=True)])
        case RecordSchema():
            return _record(node, s, text)
        case UnionSchema(alternatives):
            for index, alt in enumerate(alternatives):
                if _looks_like(node, alt):
                    return inject_value(index, len(alternatives), _parse(node, alt, text))
            raise _mismatch(node, s, text)
        case _:
            assert_never(s)


def _record(node: ast.expr, s: RecordSchema, text: str) -> Value:
    if isinstance(node, ast.Name) and node.id == s.name and not s.fields:
        return ()
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise _mismatch(node, s, text)
    if node.func.id != s.name:
        raise _mismatch(node, s, text)
    names = s.field_names()
    if len(node.args) > len(names) or any(isinstance(a, ast.Starred) for a in node.args):
        raise ValueTypeError(f"{s.name} takes {len(names)} fields, in {text!r}")
    given: dict[str, ast.expr] = dict(zip(names, node.args, strict=False))
    for kw in node.keywords:
        if kw.arg is None or kw.arg not in names or kw.arg in given:
            raise ValueTypeError(
                f"{s.name} has no field {kw.arg} (or it is given twice) in {text!r}"
            )
        given[kw.arg] = kw.value
    missing = [n for n in names if n not in given]
    if missing:
        raise ValueTypeError(f"{s.name} is missing {', '.join(missing)} in {text!r}")
    return nest_values([_parse(given[f.name], f.schema, text) for f in s.fields])


def _looks_like(node: ast.expr, s: Schema) -> bool:
    """Whether ``node`` is written in the syntax of alternative ``s`` (the union's tag)."""
    match s:
        case IntSchema():
            return int_literal(node) is not None
        case BoolSchema():
            return isinstance(node, ast.Constant) and isinstance(node.value, bool)
        case NoneSchema():
            return isinstance(node, ast.Constant) and node.value is None
        case TupleSchema():
            return isinstance(node, ast.Tuple)
        case RecordSchema(name=name):
            head = node.func if isinstance(node, ast.Call) else node
            return isinstance(head, ast.Name) and head.id == name
        case UnionSchema():
            return False
        case _:
            assert_never(s)


def _mismatch(node: ast.expr, s: Schema, text: str) -> ValueTypeError:
    return ValueTypeError(f"expected {describe(s)}, got {ast.unparse(node)!r} in {text!r}")


def int_literal(node: ast.expr) -> int | None:
    """The value of an int literal, ``5`` or ``-5`` (never a bool), else None."""
    match node:
        case ast.Constant(value=int(v)) if not isinstance(v, bool):
            return v
        case ast.UnaryOp(ast.USub(), ast.Constant(value=int(v))) if not isinstance(v, bool):
            return -v
        case _:
            return None


def render_by_name(value: Value, role: str, code: LoadedModule) -> str:
    """``Incr()``, ``Deposit(amount=5)``: a value of a machine's ``role`` (input, state or
    output) by the Python names in its module's names section; :class:`HotswapError` if the
    module carries none (or unreadable ones)."""
    schemas = module_schemas(code)
    if schemas is None:
        raise HotswapError(f"module {code.identity[:12]} carries no names")
    return render(value, schemas[role])
