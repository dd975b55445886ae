"""Core values shown and read by their Python names: ``Deposit(amount=5)``, ``None``, ``(1, 2)``.

:func:`render` writes a core value as the Python expression that would build it (records with
keyword arguments, everything else as a literal)::

    int      5, -5                  bool     True, False
    None     None                   str      "a\\"b", "tab\\there", "café"
    tuple    (1, True)              record   Deposit(amount=5), Incr()
    list[T]  [1, 2], []             dict     {"a": 1, "b": 2}, {} (in the dict's order)
    A | B    the alternative's own syntax

A string is a double-quoted literal that Python and JSON read alike for everything but the rare
astral non-printable character: ``\\"``, ``\\\\``, ``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\f``,
``\\uXXXX`` for any other character that is not printable (controls, format characters such as
bidirectional overrides, separators other than the space), ``\\UXXXXXXXX`` past the BMP; every
printable character stands as itself (``"café"``). :func:`parse` reads that form back with
:func:`ast.parse` (never ``eval``); it also accepts positional fields, a bare name for a record
without fields and any Python string literal (single quotes, escapes). A dict written with a key
twice is refused (Python would keep the last silently). Both work on schemas decoded from a
names section, without the Python classes, so a node or client can show any module's values.
``parse(render(v, s), s) == v``, the order of a dict's entries included.

``render(v, s, limit=n)`` is the form for a trace: at most about ``n`` characters, cut at a
piece boundary, then `` ... (N more elements, M bytes)``.
"""

from __future__ import annotations

import ast
from typing import Any, NoReturn, assert_never

from hotswap.cam.loaded import LoadedModule
from hotswap.cam.values import value_encoder
from hotswap.errors import HotswapError, ValueTypeError
from hotswap.lang.evaluate import Value
from hotswap.lang.ints import in_range
from hotswap.lang.persistent import OMap, PVector, make_list
from hotswap.lang.values import check_text, check_value
from hotswap.names.schema import (
    BoolSchema,
    DictSchema,
    IntSchema,
    ListSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    StrSchema,
    TupleSchema,
    UnionSchema,
    core_type,
    describe,
    from_core,
    inject_value,
    nest_values,
    shown,
    to_core,
)
from hotswap.names.section import module_schemas

MAX_TEXT = 100_000


# --- rendering ------------------------------------------------------------------------------


def render(v: Value, s: Schema, *, limit: int | None = None, size: int | None = None) -> str:
    """The Python-syntax text of core value ``v`` of schema ``s``.

    Without ``limit``, the whole value, checked first (:class:`ValueTypeError` if it is not of
    ``core_type(s)``); ``parse(render(v, s), s) == v``.

    With ``limit`` (a number of characters, for the node's trace and other displays of values
    that may be large), the text stops before the first piece (a number, a name, punctuation or
    part of a string) that would take it past ``limit`` characters and ends with
    `` ... (N more elements, M bytes)`` (``... (M bytes)`` when only closing brackets are left
    out, ``1 more element``): ``N`` counts the list items and dict entries not shown
    (an item shown in part counts as not shown), and the characters of a string cut short; ``M``
    is the size of the whole value's canonical encoding (:mod:`hotswap.cam.values`). A value
    that fits is rendered as without ``limit``. The cost is that of the part shown (the value
    is checked only as far as it is shown), plus one encoding of the value to count its bytes
    when it is cut, unless the caller passes ``size``, the value's encoded size, when it knows
    it. The result is at most ``limit`` characters plus the suffix, and is not meant to parse.
    """
    if limit is None:
        check_value(v, core_type(s))
        out = _Out(None)
        _render(v, s, out)
        return "".join(out.pieces)
    if limit < 0:
        raise ValueError(f"limit must be at least 0, got {limit}")
    out = _Out(limit)
    try:
        _render(v, s, out)
    except _Cut as cut:
        if size is None:
            size = len(value_encoder(core_type(s))(v))
        more = f"{cut.more} more element{'s' if cut.more != 1 else ''}, " if cut.more else ""
        head = "".join(out.pieces).rstrip()
        return f"{head} ... ({more}{size} bytes)" if head else f"... ({more}{size} bytes)"
    return "".join(out.pieces)


class _Cut(Exception):
    """The text reached its limit; ``more`` counts the elements not shown so far."""

    def __init__(self, more: int) -> None:
        super().__init__(more)
        self.more = more


class _Out:
    """The pieces written so far, and the room left for more (None: no limit)."""

    __slots__ = ("left", "pieces")

    def __init__(self, limit: int | None) -> None:
        self.pieces: list[str] = []
        self.left = limit

    def put(self, piece: str) -> None:
        if self.left is not None:
            if len(piece) > self.left:
                raise _Cut(0)
            self.left -= len(piece)
        self.pieces.append(piece)

    def text(self, v: str) -> None:
        """A string literal: whole if it fits, else as many of its characters as fit."""
        if self.left is None:
            self.pieces.append(quote(v))
            return
        if len(v) + 2 <= self.left:  # escapes may still make it too long
            quoted = quote(v)
            if len(quoted) <= self.left:
                self.put(quoted)
                return
        if self.left < 1:
            raise _Cut(len(v))
        parts, room, count = ['"'], self.left - 1, 0
        for c in v[:room]:  # every character takes one or more
            piece = _char(c)
            if len(piece) > room:
                break
            parts.append(piece)
            room -= len(piece)
            count += 1
        self.left = room
        self.pieces.append("".join(parts))
        raise _Cut(len(v) - count)


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def _char(c: str) -> str:
    escaped = _ESCAPES.get(c)
    if escaped is not None:
        return escaped
    if c.isprintable():
        return c
    code = ord(c)
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def quote(text: str) -> str:
    """``text`` as a double-quoted literal (the module docstring says which escapes)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return '"' + "".join(map(_char, text)) + '"'


def _bad(v: object, s: Schema) -> NoReturn:
    raise ValueTypeError(f"not a value of {describe(s)}: {shown(v)}")


def _pair(v: Any, s: Schema) -> tuple[Any, Any]:
    if not (type(v) is tuple and len(v) == 2):
        _bad(v, s)
    return v[0], v[1]


def _parts(v: Value, n: int, s: Schema) -> list[Value]:
    """:func:`~hotswap.names.schema.unnest_values`, checking the shape as it goes."""
    if n == 0:
        if v != () or type(v) is not tuple:
            _bad(v, s)
        return []
    out = []
    for _ in range(n - 1):
        first, v = _pair(v, s)
        out.append(first)
    out.append(v)
    return out


def _render(v: Value, s: Schema, out: _Out) -> None:
    match s:
        case IntSchema():
            if type(v) is not int:
                _bad(v, s)
            out.put(str(v))
        case BoolSchema():
            if v == (1, ()):
                out.put("True")
            elif v == (0, ()):
                out.put("False")
            else:
                _bad(v, s)
        case NoneSchema():
            if v != () or type(v) is not tuple:
                _bad(v, s)
            out.put("None")
        case StrSchema():
            if type(v) is not str:
                _bad(v, s)
            out.text(v)
        case ListSchema(item):
            if not isinstance(v, PVector):
                _bad(v, s)
            _sequence(v, item, out)
        case DictSchema(key, value):
            if not isinstance(v, OMap):
                _bad(v, s)
            _entries(v, key, value, out)
        case TupleSchema(items):
            out.put("(")
            for i, (x, t) in enumerate(zip(_parts(v, len(items), s), items, strict=True)):
                if i:
                    out.put(", ")
                _render(x, t, out)
            out.put(")")
        case RecordSchema(name=name, fields=fields):
            out.put(f"{name}(")
            for i, (f, x) in enumerate(zip(fields, _parts(v, len(fields), s), strict=True)):
                out.put(f", {f.name}=" if i else f"{f.name}=")
                _render(x, f.schema, out)
            out.put(")")
        case UnionSchema(alternatives):
            index = 0
            while index < len(alternatives) - 1:
                tag, payload = _pair(v, s)
                if type(tag) is not int or tag not in (0, 1):
                    _bad(v, s)
                v = payload
                if tag == 0:
                    break
                index += 1
            _render(v, alternatives[index], out)
        case _:
            assert_never(s)


def _sequence(v: PVector[Any], item: Schema, out: _Out) -> None:
    _open(out, "[", len(v))
    for i, x in enumerate(v):
        try:
            if i:
                out.put(", ")
            _render(x, item, out)
        except _Cut as cut:
            cut.more += len(v) - i
            raise
    out.put("]")


def _entries(v: OMap, key: Schema, value: Schema, out: _Out) -> None:
    _open(out, "{", len(v))
    for i, (k, x) in enumerate(v.items()):
        try:
            if i:
                out.put(", ")
            _render(k, key, out)
            out.put(": ")
            _render(x, value, out)
        except _Cut as cut:
            cut.more += len(v) - i
            raise
    out.put("}")


def _open(out: _Out, bracket: str, count: int) -> None:
    try:
        out.put(bracket)
    except _Cut as cut:
        cut.more += count
        raise


def render_python(v: object, s: Schema) -> str:
    """The text of a Python value (a dataclass instance, int, list, ...) of schema ``s``."""
    return render(to_core(s, v), s)


# --- parsing --------------------------------------------------------------------------------


def parse(text: str, s: Schema) -> Value:
    """The core value written as ``text``; :class:`ValueTypeError` says what is wrong."""
    if len(text) > MAX_TEXT:
        raise ValueTypeError(f"value text of {len(text)} characters is too long")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise ValueTypeError(f"cannot parse {shown(text)}: {e}") from None
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
                raise ValueTypeError(f"{n} is outside the signed 64-bit range in {shown(text)}")
            return n
        case BoolSchema():
            if isinstance(node, ast.Constant) and isinstance(node.value, bool):
                return (1, ()) if node.value else (0, ())
            raise _mismatch(node, s, text)
        case NoneSchema():
            if isinstance(node, ast.Constant) and node.value is None:
                return ()
            raise _mismatch(node, s, text)
        case StrSchema():
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                raise _mismatch(node, s, text)
            try:
                check_text(node.value, "string")
            except ValueTypeError as e:
                raise ValueTypeError(f"{e} in {shown(text)}") from None
            return node.value
        case ListSchema(item):
            if not isinstance(node, ast.List):
                raise _mismatch(node, s, text)
            return make_list([_parse(e, item, text) for e in node.elts])
        case DictSchema(key, value):
            return _dict(node, s, key, value, text)
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


def _dict(node: ast.expr, s: DictSchema, key: Schema, value: Schema, text: str) -> Value:
    if not isinstance(node, ast.Dict):
        raise _mismatch(node, s, text)
    entries: list[tuple[Value, Value]] = []
    seen: set[Value] = set()
    for k_node, v_node in zip(node.keys, node.values, strict=True):
        if k_node is None:
            raise ValueTypeError(f"a dict of {describe(s)} cannot unpack (**) in {shown(text)}")
        k = _parse(k_node, key, text)
        if k in seen:
            written = render(k, key, limit=80)
            raise ValueTypeError(f"key {written} appears twice in {shown(text)}")
        seen.add(k)
        entries.append((k, _parse(v_node, value, text)))
    return OMap(entries)


def _record(node: ast.expr, s: RecordSchema, text: str) -> Value:
    if isinstance(node, ast.Name) and node.id == s.name and not s.fields:
        return ()
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise _mismatch(node, s, text)
    if node.func.id != s.name:
        raise _mismatch(node, s, text)
    names = s.field_names()
    if len(node.args) > len(names) or any(isinstance(a, ast.Starred) for a in node.args):
        raise ValueTypeError(f"{s.name} takes {len(names)} fields, in {shown(text)}")
    given: dict[str, ast.expr] = dict(zip(names, node.args, strict=False))
    for kw in node.keywords:
        if kw.arg is None or kw.arg not in names or kw.arg in given:
            raise ValueTypeError(
                f"{s.name} has no field {kw.arg} (or it is given twice) in {shown(text)}"
            )
        given[kw.arg] = kw.value
    missing = [n for n in names if n not in given]
    if missing:
        raise ValueTypeError(f"{s.name} is missing {', '.join(missing)} in {shown(text)}")
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
        case StrSchema():
            return isinstance(node, ast.Constant) and isinstance(node.value, str)
        case ListSchema():
            return isinstance(node, ast.List)
        case DictSchema():
            return isinstance(node, ast.Dict)
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
    return ValueTypeError(
        f"expected {describe(s)}, got {shown(ast.unparse(node))} in {shown(text)}"
    )


def int_literal(node: ast.expr) -> int | None:
    """The value of an int literal, ``5`` or ``-5`` (never a bool), else None."""
    match node:
        case ast.Constant(value=int(v)) if not isinstance(v, bool):
            return v
        case ast.UnaryOp(ast.USub(), ast.Constant(value=int(v))) if not isinstance(v, bool):
            return -v
        case _:
            return None


def render_by_name(value: Value, role: str, code: LoadedModule, *, limit: int | None = None) -> str:
    """``Incr()``, ``Deposit(amount=5)``: a value of a machine's ``role`` (input, state or
    output) by the Python names in its module's names section; :class:`HotswapError` if the
    module carries none (or unreadable ones). ``limit`` cuts a large value short as
    :func:`render` does (``... (N more elements, M bytes)``), for the trace."""
    schemas = module_schemas(code)
    if schemas is None:
        raise HotswapError(f"module {code.identity[:12]} carries no names")
    return render(value, schemas[role], limit=limit)
