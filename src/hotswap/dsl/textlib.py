"""Methods of ``str`` written in the DSL itself, over the text primitives.

``s.split(sep)`` in a machine compiles to an inlined call of :func:`split_on` (``s`` first,
then the arguments, as Python evaluates them): each function here is plain Python within the
DSL's subset, and means exactly what the ``str`` method means, which the tests check against
Python's own methods. Whitespace is Python's (``str.isspace``), all of Unicode's.

Splitting and searching are one primitive each (:func:`str_split`, ``STR_SPLIT``;
:func:`str_find`, ``STR_FIND``), whose fuel is linear in the text: written with a slice at each
index, as they once were, they cost fuel quadratic in it (a slice costs the length of the text
it is taken from), and a text of a few thousand characters ran out of the default fuel.
"""

from __future__ import annotations

from hotswap.lang.terms import Op

#: Every character ``str.isspace`` holds true for, as ``str.split()`` and ``str.strip()`` do.
WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


def str_split(s: str, sep: str) -> list[str]:
    """The primitive ``STR_SPLIT``: ``s.split(sep)``, and ``s.split()`` when ``sep`` is empty."""
    return s.split(sep) if sep else s.split()


def str_find(s: str, sub: str) -> int:
    """The primitive ``STR_FIND``: ``s.find(sub)``."""
    return s.find(sub)


#: Functions a call of which compiles to one primitive of their two ``str`` arguments.
INTRINSICS = ((str_split, Op.STR_SPLIT), (str_find, Op.STR_FIND))


def intrinsic(target: object) -> Op | None:
    """The primitive a call of ``target`` compiles to, if it is one of :data:`INTRINSICS`."""
    return next((op for fn, op in INTRINSICS if fn is target), None)


def split_on(s: str, sep: str) -> list[str]:
    """``s.split(sep)``."""
    if sep == "":
        raise ValueError("empty separator")
    return str_split(s, sep)


def split_whitespace(s: str) -> list[str]:
    """``s.split()``: runs of whitespace separate, and none is kept."""
    return str_split(s, "")


def _start(s: str, chars: str) -> int:
    """The index of the first character of ``s`` not in ``chars`` (``len(s)`` if none): the
    fuel of the characters it looks at, and one a character for the range."""
    start = 0
    for i in range(len(s)):
        if s[i] not in chars:
            break
        start += 1
    return start


def _end(s: str, chars: str) -> int:
    """One past the last character of ``s`` not in ``chars`` (0 if none), looking from the end."""
    end = len(s)
    for _ in range(len(s)):
        if s[end - 1] not in chars:
            break
        end -= 1
    return end


def strip_chars(s: str, chars: str) -> str:
    """``s.strip(chars)``."""
    start = _start(s, chars)
    if start == len(s):
        return ""
    return s[start : _end(s, chars)]


def lstrip_chars(s: str, chars: str) -> str:
    """``s.lstrip(chars)``."""
    return s[_start(s, chars) :]


def rstrip_chars(s: str, chars: str) -> str:
    """``s.rstrip(chars)``."""
    return s[: _end(s, chars)]


def strip(s: str) -> str:
    """``s.strip()``."""
    return strip_chars(s, WHITESPACE)


def lstrip(s: str) -> str:
    """``s.lstrip()``."""
    return lstrip_chars(s, WHITESPACE)


def rstrip(s: str) -> str:
    """``s.rstrip()``."""
    return rstrip_chars(s, WHITESPACE)


def find(s: str, sub: str) -> int:
    """``s.find(sub)``: the first index of ``sub``, or -1."""
    return str_find(s, sub)


def count(s: str, sub: str) -> int:
    """``s.count(sub)``: non-overlapping occurrences."""
    if sub == "":
        return len(s) + 1
    return len(str_split(s, sub)) - 1


def replace(s: str, old: str, new: str) -> str:
    """``s.replace(old, new)``: every non-overlapping ``old``, left to right."""
    if old == "":
        return new + new.join(list(s)) + new if s else new
    return new.join(split_on(s, old))


#: The methods compiled by a call of a function here, by name and number of arguments.
METHODS = {
    ("split", 0): split_whitespace,
    ("split", 1): split_on,
    ("strip", 0): strip,
    ("strip", 1): strip_chars,
    ("lstrip", 0): lstrip,
    ("lstrip", 1): lstrip_chars,
    ("rstrip", 0): rstrip,
    ("rstrip", 1): rstrip_chars,
    ("find", 1): find,
    ("count", 1): count,
    ("replace", 2): replace,
}
