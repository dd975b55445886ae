"""Core values: membership checks, constant terms, and the seed's textual syntax.

The seed prints values as ``Unit``, ``Int 1``, ``Pair (Int 1) (Int 2)``, ``L Unit`` and
``R (Int 1)``; :func:`render` and :func:`parse` implement that syntax (negative integers read
``Int (-1)``), and ``parse(render(v, t), t) == v``. Format 2's types extend it: ``Str "text"``
(JSON string escapes), ``List [Int 1, Int 2]`` and ``Map [Str "a" => Int 1]`` (in order).
"""

from __future__ import annotations

import json
import re
from typing import assert_never

from hotswap.errors import ValueTypeError
from hotswap.lang.check import MAX_ELEMENTS, MAX_STR_LEN
from hotswap.lang.evaluate import Value
from hotswap.lang.ints import in_range
from hotswap.lang.persistent import OMap, PVector, make_list
from hotswap.lang.terms import (
    ID,
    Empty,
    Fanout,
    Inl,
    Inr,
    Lit,
    Op,
    Prim,
    StrLit,
    Term,
    Terminal,
    compose,
)
from hotswap.lang.types import INT as INT_T
from hotswap.lang.types import STR as STR_T
from hotswap.lang.types import IntT, ListT, MapT, Prod, StrT, Sum, Type, UnitT


def check_value(v: object, t: Type, path: str = "value") -> None:
    """Raise :class:`ValueTypeError` naming the first place where ``v`` is not of type ``t``."""
    match t:
        case UnitT():
            if v != () or not isinstance(v, tuple):
                raise ValueTypeError(f"{path}: expected Unit (), got {v!r}")
        case IntT():
            if type(v) is not int:
                raise ValueTypeError(f"{path}: expected Int, got {v!r}")
            if not in_range(v):
                raise ValueTypeError(f"{path}: {v} is outside the signed 64-bit range")
        case Prod(left, right):
            if not (isinstance(v, tuple) and len(v) == 2):
                raise ValueTypeError(f"{path}: expected a pair for {t}, got {v!r}")
            check_value(v[0], left, f"{path}.fst")
            check_value(v[1], right, f"{path}.snd")
        case Sum(left, right):
            if not (isinstance(v, tuple) and len(v) == 2 and type(v[0]) is int and v[0] in (0, 1)):
                raise ValueTypeError(f"{path}: expected (0, _) or (1, _) for {t}, got {v!r}")
            if v[0] == 0:
                check_value(v[1], left, f"{path}.inl")
            else:
                check_value(v[1], right, f"{path}.inr")
        case StrT():
            check_text(v, path)
        case ListT(elem):
            if not isinstance(v, PVector):
                raise ValueTypeError(f"{path}: expected a persistent list for {t}, got {v!r}")
            if len(v) > MAX_ELEMENTS:
                raise ValueTypeError(f"{path}: {len(v)} elements, more than {MAX_ELEMENTS}")
            if elem is INT_T and all(type(x) is int and in_range(x) for x in v):
                return  # the common cases, without a walk per element
            if elem is STR_T and all(type(x) is str and len(x) <= MAX_STR_LEN for x in v):
                for i, x in enumerate(v):
                    check_text(x, f"{path}[{i}]")
                return
            for i, x in enumerate(v):
                check_value(x, elem, f"{path}[{i}]")
        case MapT(key, value):
            if not isinstance(v, OMap):
                raise ValueTypeError(f"{path}: expected an OMap for {t}, got {v!r}")
            if len(v) > MAX_ELEMENTS:
                raise ValueTypeError(f"{path}: {len(v)} entries, more than {MAX_ELEMENTS}")
            for i, (k, x) in enumerate(v.items()):
                check_value(k, key, f"{path}.key[{i}]")
                check_value(x, value, f"{path}[{k!r}]")
        case _:
            assert_never(t)


def check_text(v: object, path: str = "value") -> None:
    """Raise :class:`ValueTypeError` unless ``v`` is a Str: a ``str`` of at most 2**20 code
    points with a UTF-8 encoding (no lone surrogates)."""
    if type(v) is not str:
        raise ValueTypeError(f"{path}: expected Str, got {v!r}")
    if len(v) > MAX_STR_LEN:
        raise ValueTypeError(f"{path}: text of {len(v)} code points, more than {MAX_STR_LEN}")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueTypeError(
            f"{path}: text holds a lone surrogate, which UTF-8 cannot encode"
        ) from None


def constant(v: Value, t: Type) -> Term:
    """A term of any domain whose result is always ``v`` (``v`` must have type ``t``)."""
    check_value(v, t)
    return _constant(v, t)


def _constant(v: Value, t: Type) -> Term:
    match t:
        case UnitT():
            return Terminal()
        case IntT():
            return Lit(v)
        case Prod(left, right):
            return Fanout(_constant(v[0], left), _constant(v[1], right))
        case Sum(left, right):
            if v[0] == 0:
                return compose(_constant(v[1], left), Inl(right))
            return compose(_constant(v[1], right), Inr(left))
        case StrT():
            return StrLit(v)
        case ListT(elem):
            term: Term = Empty(t)
            for x in v:
                term = compose(Fanout(term, _constant(x, elem)), Prim(Op.LIST_APPEND))
            return term
        case MapT(key, value):
            term = Empty(t)
            for k, x in v.items():
                entry = Fanout(_constant(k, key), _constant(x, value))
                term = compose(Fanout(term, entry), Prim(Op.MAP_INSERT))
            return term
        case _:
            assert_never(t)
    return ID  # pragma: no cover - unreachable, keeps mypy's return analysis simple


def render(v: Value, t: Type) -> str:
    """The seed's syntax for a value of type ``t``."""
    match t:
        case UnitT():
            return "Unit"
        case IntT():
            return f"Int {v}" if v >= 0 else f"Int ({v})"
        case Prod(left, right):
            return f"Pair {_arg(v[0], left)} {_arg(v[1], right)}"
        case Sum(left, right):
            if v[0] == 0:
                return f"L {_arg(v[1], left)}"
            return f"R {_arg(v[1], right)}"
        case StrT():
            return f"Str {quote(v)}"
        case ListT(elem):
            return "List [" + ", ".join(render(x, elem) for x in v) + "]"
        case MapT(key, value):
            entries = (f"{render(k, key)} => {render(x, value)}" for k, x in v.items())
            return "Map [" + ", ".join(entries) + "]"
        case _:
            assert_never(t)


def quote(text: str) -> str:
    """A JSON string literal of ``text`` that shows printable characters as they are and
    escapes the rest (controls, bidi overrides, separators) as ``\\uXXXX``."""
    out = json.dumps(text, ensure_ascii=False)
    if out.isprintable():
        return out
    return "".join(c if c.isprintable() else _escape(c) for c in out)


def _escape(c: str) -> str:
    n = ord(c)
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def _arg(v: Value, t: Type) -> str:
    text = render(v, t)
    return text if isinstance(t, UnitT) else f"({text})"


_TOKEN = re.compile(
    r'\s*(?:(\()|(\))|(-?[0-9]+)|([A-Za-z]+)|("(?:[^"\\]|\\.)*")|(\[)|(\])|(,)|(=>))'
)


def parse(text: str, t: Type) -> Value:
    """Parse the seed's syntax against type ``t``; :class:`ValueTypeError` says what is wrong."""
    tokens = _tokenize(text)
    pos, v = _parse(tokens, 0, t, text)
    if pos != len(tokens):
        raise ValueTypeError(f"unexpected {tokens[pos]!r} after a complete value in {text!r}")
    return v


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None:
            raise ValueTypeError(
                f"unexpected character {stripped[pos:].lstrip()[:1]!r} in {text!r}"
            )
        tokens.append(m.group(m.lastindex or 0))
        pos = m.end()
    return tokens


def _parse(tokens: list[str], pos: int, t: Type, text: str) -> tuple[int, Value]:
    if pos >= len(tokens):
        raise ValueTypeError(f"{text!r} ends where a value of type {t} was expected")
    tok = tokens[pos]
    if tok == "(":
        pos, v = _parse(tokens, pos + 1, t, text)
        if pos >= len(tokens) or tokens[pos] != ")":
            raise ValueTypeError(f"missing ')' in {text!r}")
        return pos + 1, v
    match t:
        case UnitT():
            _expect(tok, "Unit", t, text)
            return pos + 1, ()
        case IntT():
            _expect(tok, "Int", t, text)
            pos, n = _parse_int(tokens, pos + 1, text)
            return pos, n
        case Prod(left, right):
            _expect(tok, "Pair", t, text)
            pos, a = _parse(tokens, pos + 1, left, text)
            pos, b = _parse(tokens, pos, right, text)
            return pos, (a, b)
        case Sum(left, right):
            if tok == "L":
                pos, a = _parse(tokens, pos + 1, left, text)
                return pos, (0, a)
            if tok != "R":
                raise ValueTypeError(f"expected 'L' or 'R' for a value of type {t}, got {tok!r}")
            pos, b = _parse(tokens, pos + 1, right, text)
            return pos, (1, b)
        case StrT():
            _expect(tok, "Str", t, text)
            if pos + 1 >= len(tokens) or not tokens[pos + 1].startswith('"'):
                raise ValueTypeError(f"expected a quoted string after 'Str' in {text!r}")
            try:
                s = json.loads(tokens[pos + 1])
            except ValueError as e:
                raise ValueTypeError(f"bad string {tokens[pos + 1]!r}: {e}") from None
            check_text(s)
            return pos + 2, s
        case ListT(elem):
            _expect(tok, "List", t, text)
            items: list[Value] = []
            pos = _open(tokens, pos + 1, text)
            while tokens[pos] != "]":
                if items:
                    pos = _comma(tokens, pos, text)
                pos, x = _parse(tokens, pos, elem, text)
                items.append(x)
                if pos >= len(tokens):
                    raise ValueTypeError(f"missing ']' in {text!r}")
            return pos + 1, make_list(items)
        case MapT(key, value):
            _expect(tok, "Map", t, text)
            entries: list[tuple[Value, Value]] = []
            seen: set[object] = set()
            pos = _open(tokens, pos + 1, text)
            while tokens[pos] != "]":
                if entries:
                    pos = _comma(tokens, pos, text)
                pos, k = _parse(tokens, pos, key, text)
                if pos >= len(tokens) or tokens[pos] != "=>":
                    raise ValueTypeError(f"expected '=>' after a map key in {text!r}")
                pos, x = _parse(tokens, pos + 1, value, text)
                if k in seen:
                    raise ValueTypeError(f"key {render(k, key)} appears twice in {text!r}")
                seen.add(k)
                entries.append((k, x))
                if pos >= len(tokens):
                    raise ValueTypeError(f"missing ']' in {text!r}")
            return pos + 1, OMap(entries)
        case _:
            assert_never(t)


def _open(tokens: list[str], pos: int, text: str) -> int:
    if pos >= len(tokens) or tokens[pos] != "[":
        raise ValueTypeError(f"expected '[' in {text!r}")
    if pos + 1 >= len(tokens):
        raise ValueTypeError(f"missing ']' in {text!r}")
    return pos + 1


def _comma(tokens: list[str], pos: int, text: str) -> int:
    if tokens[pos] != ",":
        raise ValueTypeError(f"expected ',' or ']' in {text!r}, got {tokens[pos]!r}")
    if pos + 1 >= len(tokens):
        raise ValueTypeError(f"missing ']' in {text!r}")
    return pos + 1


def _parse_int(tokens: list[str], pos: int, text: str) -> tuple[int, int]:
    if pos < len(tokens) and tokens[pos] == "(":
        pos, n = _parse_int(tokens, pos + 1, text)
        if pos >= len(tokens) or tokens[pos] != ")":
            raise ValueTypeError(f"missing ')' in {text!r}")
        return pos + 1, n
    if pos >= len(tokens) or not tokens[pos].lstrip("-").isdigit():
        raise ValueTypeError(f"expected an integer after 'Int' in {text!r}")
    n = int(tokens[pos])
    if not in_range(n):
        raise ValueTypeError(f"{n} is outside the signed 64-bit range")
    return pos + 1, n


def _expect(tok: str, word: str, t: Type, text: str) -> None:
    if tok != word:
        raise ValueTypeError(f"expected {word!r} for a value of type {t}, got {tok!r} in {text!r}")
