"""Core values: membership checks, constant terms, and the seed's textual syntax.

The seed prints values as ``Unit``, ``Int 1``, ``Pair (Int 1) (Int 2)``, ``L Unit`` and
``R (Int 1)``; :func:`render` and :func:`parse` implement that syntax (negative integers read
``Int (-1)``), and ``parse(render(v, t), t) == v``.
"""

from __future__ import annotations

import re
from typing import assert_never

from hotswap.errors import ValueTypeError
from hotswap.lang.evaluate import Value
from hotswap.lang.ints import in_range
from hotswap.lang.terms import ID, Fanout, Inl, Inr, Lit, Term, Terminal, compose
from hotswap.lang.types import IntT, Prod, Sum, Type, UnitT


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
        case _:
            assert_never(t)


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
        case _:
            assert_never(t)


def _arg(v: Value, t: Type) -> str:
    text = render(v, t)
    return text if isinstance(t, UnitT) else f"({text})"


_TOKEN = re.compile(r"\s*(?:(\()|(\))|(-?[0-9]+)|([A-Za-z]+))")


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
        case _:
            assert_never(t)


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
